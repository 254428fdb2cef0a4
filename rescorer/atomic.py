"""Atomic writes: a reader sees the old file or directory or the new one, never half of one."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from rescorer.errors import OutputError


def check_directory_can_be_made(path: str | Path) -> None:
    """The OutputError `make_directory` would raise for a file in the way or an existing
    ancestor that cannot be written, found without creating anything: checked before long
    work, so that bad input later leaves no empty directory behind."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"{path}: cannot create the directory ({blocker} is a file, not a directory)")
    missing = _outermost_missing(path)
    if missing is not None and not os.access(missing.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot create the directory ({missing.parent} is not writable)")


def _outermost_missing(path: Path) -> Path | None:
    """The outermost directory of `path` (itself included) that does not exist yet; None if it exists."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def make_directory(path: str | Path) -> Path | None:
    """Create an output directory and its parents; where none can be made (a file in the way,
    no permission) it is an OutputError naming the path, not a traceback. Returns the outermost
    directory it created (None if `path` existed), for a caller that removes it again on failure."""
    path = Path(path)
    check_directory_can_be_made(path)
    created = _outermost_missing(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot create the directory ({e.strerror or e})") from None
    return created


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path`.

    Only regular files are replaced: an existing device, pipe or directory at `path` is an
    OutputError (a rename would replace /dev/stdout itself), and so is a place the temporary
    file cannot be made (a read-only or missing directory). `text_output` writes devices in place.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise OutputError(f"{path}: not a regular file (a directory, device or pipe); expected an output file")
    make_directory(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes 0600 whatever the umask: give the file the mode a plain open() would (the
    # mode of the file it replaces, else 0666 less the umask), so models written by one user
    # stay readable by the service's user
    mode = path.stat().st_mode & 0o777 if path.is_file() else 0o666 & ~_umask()
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def text_output(path: str | Path) -> Iterator[TextIO]:
    """A text stream to write an output to: '-' is stdout; an existing device or pipe
    (/dev/stdout, a FIFO) is written in place; anything else atomically (`atomic_file`)."""
    if str(path) == "-":
        yield sys.stdout
        return
    target = Path(path)
    try:
        if target.exists() and not target.is_file() and not target.is_dir():
            with target.open("w", encoding="utf-8") as f:
                yield f
            return
        with atomic_file(target) as tmp, tmp.open("w", encoding="utf-8") as f:
            yield f
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None


def _umask() -> int:
    """The process's umask: from /proc where Linux offers it (no change to process state, safe
    beside other threads), else by setting it and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_directory_atomic(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Call `fill(tmp_dir)`, then swap `tmp_dir` into place at `path`.

    An existing directory at `path` is moved aside first and removed only after the new one
    is in place, so a crash leaves either the old or the new directory (plus a stray
    `.old`/`.tmp` sibling), never a half-written one.
    """
    path = Path(path)
    make_directory(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        fill(tmp)
        # mkdtemp makes 0700 and some writers (safetensors) 0600 whatever the umask: give every
        # entry the mode a plain mkdir or open() would
        mask = _umask()
        for entry in [tmp, *tmp.rglob("*")]:
            if not entry.is_symlink():
                os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            old.rmdir()
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
