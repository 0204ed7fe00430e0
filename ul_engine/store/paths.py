"""Paths in the database are relative to the store's home, so a data folder can be moved or synced.

The API takes and returns absolute paths. A path outside the home (an export the user saved elsewhere)
is kept absolute; a relative path given to the store is taken as relative to the home.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


def to_stored(home: Path, path: Path | str) -> str:
    """The text stored for `path`: POSIX-style relative to `home` when inside it, else absolute."""
    p = Path(path)
    if not p.is_absolute():
        return PurePosixPath(*p.parts).as_posix()
    for base, candidate in ((home, p), (home.resolve(), p.resolve())):
        try:
            return PurePosixPath(*candidate.relative_to(base).parts).as_posix()
        except ValueError:
            continue
    return str(p)


def from_stored(home: Path, stored: str) -> Path:
    """The absolute path for stored text."""
    p = Path(stored)
    return p if p.is_absolute() else home / p


SAMPLES = "samples"
_UNSAFE = '\\/:*?"<>|'


def samples_dir(home: Path | str, run_name: str) -> Path:
    """home/samples/<run name>/: where the app saves a run's generated samples (not created here).

    Named by the run's name, which the user chose and recognises (the demo's samples go to samples/demo/,
    not runs/1/samples/). Characters a file system refuses become "_". Samples written earlier under
    runs/<id>/samples/ stay where they are and open as before."""
    safe = "".join("_" if c in _UNSAFE or ord(c) < 32 else c for c in run_name).strip(" .") or "run"
    return Path(home) / SAMPLES / safe
