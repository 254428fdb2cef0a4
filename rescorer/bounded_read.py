"""Files read whole, bounded in memory.

A path a user gives may name something that never ends (`/dev/zero`, a FIFO, a symlink to a
device) or a file far larger than the document it should be: read whole, it fills the memory
until the process is killed. Everything read whole (weights JSON, symbol tables, an artifact's
config.json and words.txt, Kaldi archives, HyPoradise JSON) is read through here, at most
MAX_WHOLE_FILE_BYTES; lines read one by one are bounded by MAX_LINE_BYTES
(rescorer.formats.text_files).
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import BinaryIO

MAX_WHOLE_FILE_BYTES = 1024 * 1024 * 1024
# A line of an N-best JSONL file at the service's limits (1,000 hypotheses of 200 words) is a
# few MB; a corpus line is a sentence.
MAX_LINE_BYTES = 64 * 1024 * 1024


class TooLargeToRead(OSError):
    """A file past the bound: an OSError (EFBIG), so that every reader's existing handling of
    unreadable files names the path and says why."""


def too_large(path: str | Path, limit: int) -> TooLargeToRead:
    return TooLargeToRead(errno.EFBIG, f"larger than {describe_bytes(limit)}, the most read whole", str(path))


def describe_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size and count % size == 0:
            return f"{count // size:,} {unit}"
    return f"{count:,} bytes"


def read_stream_bounded(stream: BinaryIO, path: str | Path, limit: int | None = None) -> bytes:
    """The rest of an open binary stream (a gzip stream counts its decompressed bytes)."""
    limit = MAX_WHOLE_FILE_BYTES if limit is None else limit
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(path, limit)
    return data


def read_bytes_bounded(path: str | Path, limit: int | None = None) -> bytes:
    """Path(path).read_bytes(), refused past `limit` (default MAX_WHOLE_FILE_BYTES) with TooLargeToRead."""
    with Path(path).open("rb") as stream:
        return read_stream_bounded(stream, path, limit)


def read_text_bounded(path: str | Path, limit: int | None = None) -> str:
    """Path(path).read_text(encoding="utf-8"), bounded as read_bytes_bounded."""
    return read_bytes_bounded(path, limit).decode("utf-8")
