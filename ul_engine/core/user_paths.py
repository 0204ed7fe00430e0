"""Checks on paths a user hands us, made before anything opens, reads or hashes them.

Why one module: a path can name a FIFO (an open blocks for ever), a device such as /dev/zero (a read
never ends), a symlink loop, a folder called `photo.png`, or a file inside something that is not a
folder. Every reader — images, videos, folders, PNG settings, model folders, the reconstruction cache's
sha256 — calls these first, so each of those cases is one line naming the path, never a hang or a
traceback. The checks only `stat` the path (following symlinks); they never open it.

Torch-free and Qt-free: the app and the engine both import it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ul_engine.core.errors import DataError, ULError

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _stat(p: Path, noun: str = "file") -> os.stat_result:
    """os.stat with every failure turned into one line: missing, symlink loop, broken link, permission…"""
    try:
        return os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise DataError(f"{p}: broken symbolic link (its target does not exist)") from None
        raise DataError(f"{p}: {noun} not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{p}: symlink loop (the symbolic links point at each other)") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise DataError(f"{p}: permission denied") from None
        if exc.errno == errno.ENOTDIR:
            raise DataError(f"{p}: a part of this path is a file, not a folder") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise DataError(f"{p}: the path is too long") from None
        raise DataError(f"{p}: cannot access ({exc.strerror or exc})") from None


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def check_file(path: str | Path, *, allow_empty: bool = False) -> Path:
    """`path` if it is a regular file (after symlinks) that is not empty; else DataError naming it.

    A FIFO, a device, a socket or a folder is refused without being opened."""
    p = Path(path)
    st = _stat(p)
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{p}: is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{p}: is {_kind(st.st_mode)}, not a regular file; refused without reading it")
    if st.st_size == 0 and not allow_empty:
        raise DataError(f"{p}: file is empty (0 bytes)")
    return p


def check_folder(path: str | Path, *, what: str = "folder") -> Path:
    """`path` if it is a folder (after symlinks); else DataError naming it and what it is instead."""
    p = Path(path)
    st = _stat(p, "folder")
    if not stat.S_ISDIR(st.st_mode):
        kind = "a file" if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)
        raise DataError(f"{p}: is {kind}, not a {what}")
    return p


def check_output_folder(path: str | Path, *, writable: bool = True) -> Path:
    """A folder we may create (or write into): refused with one line when it, or a folder above it, exists as
    something other than a folder, or (with `writable`) when the nearest existing folder is not writable.
    Called before any work, so a mistake never costs a computation."""
    p = Path(path)
    _creatable(p, p, writable)
    return p


def check_output_file(path: str | Path) -> Path:
    """A file we may (over)write: not a folder or a special file, in a folder check_output_folder accepts."""
    p = Path(path)
    if p.is_dir():
        raise ULError(f"{p}: is a folder; give a file name")
    if os.path.lexists(p) and not p.is_file():
        raise ULError(f"{p}: exists and is {_describe(p)}, not a regular file")
    _creatable(p.parent, p, True)
    return p


def _creatable(folder: Path, named: Path, writable: bool) -> None:
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        what = "is" if existing == named else f"cannot be created: {existing} is"
        raise ULError(f"{named}: {what} {_describe(existing)}, not a folder")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        raise ULError(f"{named}: the folder {existing} is not writable")


def _describe(p: Path) -> str:
    try:
        mode = os.stat(p).st_mode
    except OSError:
        return "a broken symbolic link" if os.path.islink(p) else "unreadable"
    if stat.S_ISREG(mode):
        return "a file"
    return "a folder" if stat.S_ISDIR(mode) else _kind(mode)


def _nearest_existing(p: Path) -> Path:
    """`p` or its closest ancestor that exists (a symlink loop or dangling link counts as existing)."""
    current = p
    while not os.path.lexists(current):
        parent = current.parent
        if parent == current:
            break
        current = parent
    try:
        os.stat(current)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ULError(f"{current}: symlink loop (the symbolic links point at each other)") from None
        if not isinstance(exc, FileNotFoundError):
            raise ULError(f"{current}: cannot access ({exc.strerror or exc})") from None
    return current
