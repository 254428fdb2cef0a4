"""Opening text inputs: plain or gzip (by magic bytes), UTF-8, with errors that name the file."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import BinaryIO, TextIO

from rescorer.nbest import NbestError


class _NamedDecodeErrors(io.TextIOWrapper):
    """A text stream whose decoding errors name the file and line."""

    def __init__(self, buffer, path: str) -> None:
        super().__init__(buffer, encoding="utf-8", newline=None)
        self._path, self._line = path, 0

    def __next__(self) -> str:
        try:
            line = super().__next__()
        except UnicodeDecodeError as e:
            raise NbestError(f"{self._path}:{self._line + 1}: not UTF-8 ({e.reason})") from None
        self._line += 1
        return line


def open_binary(path: str | Path, error: type[Exception] = NbestError, what: str = "file") -> BinaryIO:
    """A byte stream of `path`, gunzipped when it starts with the gzip magic bytes."""
    path = Path(path)
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a {what}") from None
    magic = raw.read(2)
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw


def open_text(path: str | Path) -> TextIO:
    return _NamedDecodeErrors(open_binary(path), str(path))


def read_keyed_lines(path: str | Path) -> dict[str, str]:
    """`key rest-of-line` per line (Kaldi `text`, ESPnet `score`/`scores`); blank lines are
    skipped, a repeated key is an error naming the line."""
    out: dict[str, str] = {}
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            key, _, rest = line.strip().partition(" ")
            if key in out:
                raise NbestError(f"{path}:{line_no}: utterance {key!r} appears twice")
            out[key] = rest
    return out
