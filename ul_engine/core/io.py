"""Model files without torch: safetensors headers + JSON metadata, written atomically, read without unpickling.

A file that is a pickle (torch.save, numpy's allow_pickle) is refused with a clear message: loading
one would run code from the file. `read_header` parses a safetensors header (the 8-byte length and the
JSON that follows) without reading any tensor data, so a file is judged before anything is allocated;
`ul_engine.weights` compares it with the model a config describes and reads the tensors (torch).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ul_engine.core import faults
from ul_engine.core.errors import DiskFullError, ModelFileError
from ul_engine.core.user_paths import check_file

MAX_HEADER_BYTES = 100 * 1024 * 1024
"""The safetensors library's own limit on the JSON header."""
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E4M3FNUZ": 1, "F8_E5M2": 1, "F8_E5M2FNUZ": 1,
    "C64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}  # fmt: skip
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
"""The dtypes a weight may be stored in (exports use F16, training checkpoints F32)."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
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
        faults.kill_point("before_rename", path)
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


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header declares it: dtype name (F32, I64, …) and shape."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


@dataclass(frozen=True)
class Header:
    """A safetensors file's header: every tensor's dtype and shape, its string metadata, the file's size."""

    path: Path
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    size: int

    def under(self, prefix: str | None) -> dict[str, TensorEntry]:
        """The tensors named `prefix.<key>`, keyed by `<key>` (all of them when `prefix` is None)."""
        if prefix is None:
            return dict(self.tensors)
        lead = prefix + "."
        return {k[len(lead) :]: v for k, v in self.tensors.items() if k.startswith(lead)}


def regular_file(path: Path, what: str = "model file") -> os.stat_result:
    """stat() of `path`, refusing what is not a regular file (a FIFO or /dev/zero would block or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(f"{what} not found: {path}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ModelFileError(f"{what} {path} is a symlink loop") from None
        raise ModelFileError(f"{what} {path} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{what} {path} is not a regular file")
    return st


def pickle_kind(head: bytes, last: bytes = b"") -> str | None:
    """Which kind of pickle the first bytes (and the last byte) look like, or None.

    Called only once the bytes are known not to start a safetensors header: a safetensors header whose
    length happens to begin with 0x80 0x02 must not be taken for a pickle.
    """
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive as torch.save writes it"
    if head.startswith(b"\x93NUMPY"):
        return "or a NumPy file that may hold one"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"protocol {head[1]}"
    if last == b"." and head[:1] in (b"(", b"}", b"]", b"c"):  # a container or a global, then STOP
        return "protocol 0 or 1"
    return None


def read_header(path: Path, what: str = "model file") -> Header:
    """Parse a safetensors header without reading tensor data; a pickle or a damaged header is one line."""
    path = Path(path)
    size = regular_file(path, what).st_size
    try:
        return _parse_header(path, size)
    except OSError as exc:
        raise ModelFileError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None


def _parse_header(path: Path, size: int) -> Header:
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        first = f.read(1) if length > 0 else b""
        if length < 2 or length > min(MAX_HEADER_BYTES, size - 8) or first != b"{":
            f.seek(max(size - 1, 0))
            kind = pickle_kind(head, f.read(1))
            if kind is not None:
                raise ModelFileError(
                    f"{path} is a pickle, {kind} (refused: loading a pickle runs code from the file; "
                    "UL Studio reads safetensors only)"
                )
            if len(head) < 8:
                raise ModelFileError(f"{path} is not a readable safetensors file: it has only {size} bytes")
            raise ModelFileError(
                f"{path} is not a readable safetensors file: its first 8 bytes declare a {length}-byte header "
                f"and the file has {size} bytes"
            )
        blob = first + f.read(length - 1)
    try:
        raw = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} has a damaged safetensors header (not JSON: {exc})") from None
    except RecursionError:
        raise ModelFileError(f"{path} has a damaged safetensors header (nested too deeply)") from None
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path} has a damaged safetensors header (not a JSON object)")
    return Header(path, _tensor_entries(raw, path, size - 8 - length), _header_metadata(raw, path), size)


def _header_metadata(raw: dict[str, Any], path: Path) -> dict[str, str]:
    meta = raw.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelFileError(f"{path} has a damaged safetensors header (__metadata__ must map names to strings)")
    return dict(meta)


def _tensor_entries(raw: dict[str, Any], path: Path, data_bytes: int) -> dict[str, TensorEntry]:
    """Each tensor's entry, checked: a known dtype, a shape of whole numbers, offsets inside the data that
    hold exactly that many bytes."""
    out: dict[str, TensorEntry] = {}
    for key, entry in raw.items():
        if key == "__metadata__":
            continue
        bad = _entry_fault(entry, data_bytes)
        if bad:
            raise ModelFileError(f"{path} has a damaged safetensors header: tensor {key} {bad}")
        out[key] = TensorEntry(entry["dtype"], tuple(entry["shape"]))
    return out


def _entry_fault(entry: Any, data_bytes: int) -> str | None:
    if not isinstance(entry, dict):
        return "is not described by a JSON object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        return f"has unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return f"has shape {shape!r}, not a list of whole numbers"
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_bytes
    ):
        return f"has data offsets {offsets!r} outside the file's {data_bytes} data bytes"
    numel = 1
    for d in shape:
        numel *= d
    if offsets[1] - offsets[0] != numel * DTYPE_BYTES[dtype]:
        return f"holds {offsets[1] - offsets[0]} bytes, but {dtype} {tuple(shape)} needs {numel * DTYPE_BYTES[dtype]}"
    return None


def read_metadata(path: Path) -> dict[str, str]:
    """A safetensors file's string metadata, from its header alone (a pickle is refused, not opened)."""
    return read_header(Path(path)).metadata


def write_json(path: Path, data: Any) -> None:
    blob = json.dumps(data, indent=2, sort_keys=True).encode()
    atomic_write_bytes(path, lambda f: f.write(blob))
