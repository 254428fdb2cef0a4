"""Text inputs as Kaldi reads them: plain or gzip (by magic bytes), UTF-8, lines ended by `\n`
only, fields split on ASCII whitespace; every error names the file and the line.

Lines are read as bytes and decoded one by one, so a bad byte is reported on its own line
(a decoder working in blocks reports the block's first line). A line ends at `\n` alone: a lone
`\r`, U+2028, U+0085, `\x0b`, `\x0c` or `\x1c` is part of a line, as in Kaldi. Fields are
separated by ASCII whitespace (space, tab, `\r`, `\x0b`, `\x0c`): a `\r` before `\n` (a file
written on Windows) and tabs between fields are separators, other characters are word content.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rescorer import bounded_read
from rescorer.nbest import NbestError
from rescorer.words import split_words

CORRUPT_GZIP = (gzip.BadGzipFile, EOFError, zlib.error)
# Memory bounds (rescorer.bounded_read): a file without newlines (/dev/zero, a binary file, a
# one-line dump) would otherwise be read into memory until the machine runs out.


def split_fields(line: str) -> list[str]:
    """The whitespace-separated fields of a line, as Kaldi splits them (rescorer.words)."""
    return split_words(line)


def split_lines(text: str) -> list[str]:
    """Lines of a text that ends each with `\n` (a last line without one counts too)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


class TextFile:
    """UTF-8 lines of a plain or gzip file: iterate for lines, `read()` for the whole text."""

    def __init__(self, raw: BinaryIO, path: str, error: type[Exception] = NbestError) -> None:
        self._raw, self._path, self._error = raw, path, error

    def __enter__(self) -> TextFile:
        return self

    def __exit__(self, *exc) -> None:
        self._raw.close()

    def close(self) -> None:
        self._raw.close()

    def __iter__(self) -> Iterator[str]:
        line_no = 0
        try:
            limit = bounded_read.MAX_LINE_BYTES
            while raw := self._raw.readline(limit + 1):
                line_no += 1
                if len(raw) > limit:
                    raise self._error(f"{self._path}:{line_no}: a line longer than {bounded_read.describe_bytes(limit)}"
                                      " (a binary file, or text without newlines?); expected one record per line")
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise self._error(f"{self._path}:{line_no}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None
        except CORRUPT_GZIP as e:
            raise self._error(f"{self._path}: corrupt or truncated gzip data after line {line_no} ({e})") from None

    def read(self) -> str:
        try:
            data = bounded_read.read_stream_bounded(self._raw, self._path)
        except CORRUPT_GZIP as e:
            raise self._error(f"{self._path}: corrupt or truncated gzip data ({e})") from None
        except bounded_read.TooLargeToRead as e:
            raise self._error(f"{self._path}: {e.strerror}") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            line_no = data.count(b"\n", 0, e.start) + 1
            raise self._error(f"{self._path}:{line_no}: not UTF-8 ({e.reason})") from None


def open_binary(path: str | Path, error: type[Exception] = NbestError, what: str = "file") -> BinaryIO:
    """A byte stream of `path`, gunzipped when it starts with the gzip magic bytes."""
    path = Path(path)
    try:
        raw = path.open("rb")
        magic = raw.read(2)
        raw.seek(0)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a {what}") from None
    except OSError as e:  # a symlink loop, a device that cannot seek, no permission
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    return gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw


def open_text(path: str | Path, error: type[Exception] = NbestError) -> TextFile:
    return TextFile(open_binary(path, error), str(path), error)


def parse_keyed_lines(lines: Iterable[str], where: str) -> tuple[list[str], list[list[str]]]:
    """Kaldi's `key word word ...` lines (one sentence each, possibly no words): keys and words,
    in order. A line without a key is an error naming it: one line in, one line out."""
    keys, sentences = [], []
    for line_no, line in enumerate(lines, start=1):
        fields = split_fields(line)
        if not fields:
            raise NbestError(f"{where}:{line_no}: empty line (expected 'key word word ...')")
        keys.append(fields[0])
        sentences.append(fields[1:])
    return keys, sentences


def read_keyed_lines(path: str | Path) -> dict[str, str]:
    """`key rest-of-line` per line (Kaldi `text`, ESPnet `score`/`scores`); blank lines are
    skipped, a repeated key is an error naming the line."""
    out: dict[str, str] = {}
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            fields = split_fields(line)
            if not fields:
                continue
            key = fields[0]
            if key in out:
                raise NbestError(f"{path}:{line_no}: utterance {key!r} appears twice")
            out[key] = " ".join(fields[1:])
    return out


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


def parse_json(text: str, where: str, what: str = "valid JSON") -> Any:
    """json.loads for every JSON reader: each way it can fail (bad syntax, a number beyond
    Python's digit limit, nesting too deep for the recursion limit) is one NbestError naming
    `where`."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except _NonFinite as e:
        raise NbestError(f"{where}: not {what} ({e} is not a number JSON allows; scores must be finite)") from None
    except json.JSONDecodeError as e:
        raise NbestError(f"{where}: not {what} ({e.msg} at line {e.lineno} column {e.colno})") from None
    except ValueError as e:  # e.g. an integer beyond Python's digit limit
        raise NbestError(f"{where}: not {what} ({str(e)[:120]})") from None
    except RecursionError:
        raise NbestError(f"{where}: JSON nested too deeply") from None
