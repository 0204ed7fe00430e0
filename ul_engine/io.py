"""Model files: safetensors + JSON metadata, written atomically, read without unpickling anything.

A file that is a pickle (torch.save, numpy's allow_pickle) is refused with a clear message: loading
one would run code from the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ul_engine.errors import CheckpointError, DiskFullError

_PICKLE_PREFIXES = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    from ul_engine.user_paths import check_file

    h = hashlib.sha256()
    with open(check_file(path, allow_empty=True), "rb") as f:  # checked first: a FIFO or /dev/zero never ends
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through a temp file in the same folder, fsync, then rename over `path`.

    A crash leaves either the old file or the new one, never a half-written file; ENOSPC becomes
    DiskFullError and the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        _silent_unlink(tmp)
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"disk full while writing {path.name}; earlier files are kept") from exc
        raise
    except BaseException:
        _silent_unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _silent_unlink(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def save_tensors(path: Path, tensors: dict[str, Any], metadata: dict[str, Any]) -> str:
    """Atomically write tensors + JSON metadata as one safetensors file; returns its sha256."""
    from safetensors.torch import save

    flat_meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    blob = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=flat_meta)
    atomic_write_bytes(path, lambda f: f.write(blob))
    return hashlib.sha256(blob).hexdigest()


def load_tensors(path: Path, *, prefix: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Read a safetensors file (optionally only keys under `prefix.`) and its metadata."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_PICKLE_PREFIXES):
        raise CheckpointError(
            f"{path.name} is a pickle file, not safetensors; it is refused because loading it would run code"
        )
    try:
        tensors: dict[str, Any] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if prefix is None:
                    tensors[key] = f.get_tensor(key)
                elif key.startswith(prefix + "."):
                    tensors[key[len(prefix) + 1 :]] = f.get_tensor(key)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({exc})") from None
    return tensors, meta


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        raise CheckpointError(f"{Path(path).name} is not a readable safetensors file ({exc})") from None


def write_json(path: Path, data: Any) -> None:
    blob = json.dumps(data, indent=2, sort_keys=True).encode()
    atomic_write_bytes(path, lambda f: f.write(blob))
