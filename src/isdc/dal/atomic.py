"""Atomic, durable file writes: temporary file beside the target, fsync, os.replace, fsync folder.

A temporary file is hidden and named after its target: `.<stem>.<8 random>.tmp<suffix>`
(`.isgri_events.k2x9_a0q.tmp.fits` for `isgri_events.fits`). Its writer holds an
exclusive `flock` on it from creation until after the rename, so a temporary file that
nobody holds a lock on is *stale*: its writer died (kill -9, a crash of the machine) or
failed. Locks die with their process, so this needs no clock and no process table, and
it holds between hosts on file systems that lock (NFS emulates flock with POSIX locks).
`remove_stale_temps(path)` removes the stale temporary files of one target (the FITS
writer calls it before each write, so rerunning a killed task cleans up what its
predecessor left); `clean_stale_temps(folder)` those of every target in a folder.
A temporary file is never taken as a product: readers skip hidden names.
"""
from __future__ import annotations

import fcntl
import os
import re
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "atomic_write_bytes", "make_temp", "temp_target", "remove_stale_temps", "clean_stale_temps"]

# tempfile's names: 8 characters of [a-z0-9_] between our prefix and suffix.
_TEMP = re.compile(r"\.(?P<stem>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(?:\.[^./]+)*)")


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_temp(folder: str | os.PathLike, prefix: str, suffix: str) -> tuple[int, str]:
    """`tempfile.mkstemp` in `folder`, returned locked (flock LOCK_EX) by this process.

    The lock tells `remove_stale_temps` that the file is being written. A cleaner may
    take the file in the instant between its creation and our lock: then the name no
    longer leads to our file and we make another.
    """
    while True:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            cur = os.stat(tmp, follow_symlinks=False)
            if (cur.st_ino, cur.st_dev) == (st.st_ino, st.st_dev):
                return fd, tmp
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def temp_target(name: str) -> str | None:
    """The file name a temporary file name stands for ('.x.ab12cd34.tmp.fits' -> 'x.fits'), or None."""
    m = _TEMP.fullmatch(name)
    return None if m is None else m.group("stem") + m.group("suffix")


def _remove_if_stale(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))  # O_RDWR: NFS locks need write access
    except OSError:  # gone, a symlink, or not ours to remove
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # locked: its writer is alive
            return False
        st = os.fstat(fd)
        try:
            cur = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if (cur.st_ino, cur.st_dev) != (st.st_ino, st.st_dev):
            return False  # renamed into place or replaced since we opened it
        os.unlink(path)
        return True
    finally:
        os.close(fd)


def _stale(folder: Path, want) -> list[Path]:
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for e in entries:
        if not e.name.startswith("."):
            continue
        target = temp_target(e.name)
        if target is not None and want(target) and e.is_file(follow_symlinks=False) and _remove_if_stale(e.path):
            removed.append(Path(e.path))
    return removed


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of `path` left by writers that died; return them."""
    path = Path(path)
    return _stale(path.parent, lambda target: target == path.name)


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove every stale temporary file directly in `folder`; return them."""
    return _stale(Path(folder), lambda target: True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> Path:
    """Write `data` to `path` so that a reader sees the old file or the whole new one."""
    path = Path(path)
    fd, tmp = make_temp(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # still locked: a cleaner never takes a file about to be renamed
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
