"""sclite `trn` transcripts: `word word ... (utt-id)` per line."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from rescorer.formats.text_files import open_text
from rescorer.nbest import NbestError, normalize_text

_ID = r"[^()\s]+"
_TRN = re.compile(rf"^(?P<text>.*?)\s*\((?P<id>{_ID})\)\s*$")


def trn_id(utt_id: str) -> str:
    """`utt_id`, if the reader (and sclite) can take it back: non-empty, no whitespace or parentheses."""
    if not re.fullmatch(_ID, utt_id):
        raise NbestError(f"utterance id {utt_id!r} cannot be an sclite trn id: an id is non-empty and holds no"
                         " whitespace or parentheses (rename the utterance, or write jsonl)")
    return utt_id


def write_trn(texts: Iterable[tuple[str, str]], out: TextIO) -> None:
    """`text (id)` lines; an id the reader could not take back is refused (`trn_id`)."""
    for utt_id, text in texts:
        out.write(f"{text} ({trn_id(utt_id)})\n")


def read_trn(path: str | Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            match = _TRN.match(line.rstrip("\n"))
            if not match:
                raise NbestError(f"{path}:{line_no}: expected 'words (utt-id)', found {line.strip()!r}")
            if match.group("id") in out:
                raise NbestError(f"{path}:{line_no}: id {match.group('id')!r} appears twice")
            out[match.group("id")] = normalize_text(match.group("text"))
    return out
