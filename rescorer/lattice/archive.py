"""Kaldi lattice archives (`ark:` files of CompactLattice), text or binary, plain or gzip.

An archive is a sequence of a key and a space (a tab or a newline are taken too) followed by one lattice, in text form (`text_format`) or
binary form (`binary_format`), the two recognised per lattice, as Kaldi does. Keys are
non-empty and hold no whitespace. Reading is bounded: the whole archive at most
MAX_ARCHIVE_BYTES (decompressed), each lattice at most MAX_STATES states and MAX_ARCS arcs;
every error names the archive, the key and the byte offset. `-` is standard input or output; a
path ending in `.gz` is written gzip-compressed, and a gzip file is read whatever its name.
"""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path

from rescorer.atomic import atomic_file
from rescorer.bounded_read import MAX_WHOLE_FILE_BYTES, read_stream_bounded
from rescorer.errors import InputError, OutputError
from rescorer.lattice.binary_format import (
    BinaryLatticeError,
    format_binary_lattice,
    is_binary_lattice,
    read_binary_lattice,
)
from rescorer.lattice.compact_lattice import CompactLattice
from rescorer.lattice.text_format import TextLatticeError, format_lattice, parse_lattice

MAX_ARCHIVE_BYTES = MAX_WHOLE_FILE_BYTES
MAX_STATES = 10_000_000
MAX_ARCS = 50_000_000
WHITESPACE = b" \t\r\n\x0b\x0c"


class LatticeError(InputError):
    pass


def _read_bytes(path: str) -> bytes:
    try:
        if path == "-":
            data = read_stream_bounded(sys.stdin.buffer, "standard input", MAX_ARCHIVE_BYTES)
        else:
            with open(path, "rb") as f:
                data = read_stream_bounded(f, path, MAX_ARCHIVE_BYTES)
        if data[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:
                data = read_stream_bounded(g, path, MAX_ARCHIVE_BYTES)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise LatticeError(f"{path}: a corrupt gzip file ({e})") from None
    except OSError as e:
        raise LatticeError(f"{path}: cannot read ({e.strerror or e})") from None
    return data


def read_lattices(path: str | Path, max_states: int = MAX_STATES, max_arcs: int = MAX_ARCS) -> list[
        tuple[str, CompactLattice]]:
    """Every (key, lattice) of the archive at `path`, in order."""
    path = str(path)
    data = _read_bytes(path)
    out: list[tuple[str, CompactLattice]] = []
    offset, end = 0, len(data)
    while True:
        while offset < end and data[offset] in WHITESPACE:
            offset += 1
        if offset >= end:
            return out
        space = offset
        while space < end and data[space] not in WHITESPACE:
            space += 1
        if space >= end or data[space] not in b" \t\n":
            raise LatticeError(f"{path}: offset {offset}: expected a key and a space before a lattice")
        try:
            key = data[offset:space].decode("utf-8")
        except UnicodeDecodeError:
            raise LatticeError(f"{path}: offset {offset}: a key that is not UTF-8") from None
        body = space if data[space] == 0x0A else space + 1  # as Kaldi: a newline after the key is the lattice's
        if data[body:body + 2] == b"\0B":
            body += 2
        try:
            if is_binary_lattice(data, body):
                lattice, offset = read_binary_lattice(data, body, max_states, max_arcs)
            else:
                lattice, offset = _read_text_lattice(data, body, max_states, max_arcs)
        except (BinaryLatticeError, TextLatticeError) as e:
            raise LatticeError(f"{path}: lattice {key!r} (at offset {space + 1}): {e}") from None
        out.append((key, lattice))


def _read_text_lattice(data: bytes, offset: int, max_states: int, max_arcs: int) -> tuple[CompactLattice, int]:
    newline = data.find(b"\n", offset)
    if newline < 0 or data[offset:newline].strip():
        raise TextLatticeError("expected a newline after the key (a text lattice starts on the next line)")
    close = data.find(b"\n\n", newline)  # the lattice ends at its first empty line
    stop = len(data) if close < 0 else close + 1
    try:
        text = data[newline + 1:stop].decode("ascii")
    except UnicodeDecodeError as e:
        raise TextLatticeError(f"a byte that is not ASCII at offset {newline + 1 + e.start}") from None
    lines = [line for line in text.split("\n") if line.strip()]
    return parse_lattice(lines, max_states, max_arcs), stop + 1 if close >= 0 else stop


def archive_bytes(items: Iterable[tuple[str, CompactLattice]], binary: bool) -> bytes:
    out = []
    for key, lattice in items:
        if not key or any(c in key for c in " \t\r\n\x0b\x0c"):
            raise LatticeError(f"key {key!r}: a Kaldi key is non-empty and holds no whitespace")
        out.append(key.encode("utf-8") + b" " + format_binary_lattice(lattice) if binary
                   else format_lattice(key, lattice).encode("utf-8"))
    return b"".join(out)


def write_lattices(items: Iterable[tuple[str, CompactLattice]], path: str | Path, binary: bool) -> None:
    """Write an archive (atomically, unless `path` is `-` or a device)."""
    data = archive_bytes(items, binary)
    path = str(path)
    if path.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    try:
        if target.exists() and not target.is_file():
            target.write_bytes(data)
            return
        with atomic_file(target) as tmp:
            tmp.write_bytes(data)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
