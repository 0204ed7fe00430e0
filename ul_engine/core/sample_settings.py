"""The settings a sample PNG carries (`ul-run`, `ul-run-name`, `ul-checkpoint-sha256`, `ul-seed`, `ul-params`),
read and validated as one record before anything uses them.

A PNG is whatever the user drops, so it is read defensively: the file must be a regular file; only its text
chunks are read, each refused above `MAX_CHUNK_BYTES` before it is decompressed or decoded (a zTXt chunk is
inflated with that cap, so a compression bomb stops there); `ul-params` is refused when nested deeper than
`MAX_DEPTH` before the JSON parser sees it. The values are then checked by pydantic models whose bounds are
the run config's own (`SamplingConfig`): a step count, sampler or guidance the config would refuse is refused
here with the same range. Every problem is one `DataError` line naming the file and the field.

Torch-free and Qt-free: the app's Generate page calls `read_sample_settings` on a dropped file.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ul_engine.core.config import SamplingConfig
from ul_engine.core.errors import DataError
from ul_engine.core.user_paths import check_file

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNK_BYTES = 64 * 1024
"""Largest text chunk read (stored and inflated size): the settings are a few hundred bytes."""
MAX_DEPTH = 4
"""Deepest nesting of `ul-params` accepted (it is one flat object)."""
MAX_CHUNKS = 10_000
SEED_MAX = 2**63 - 1
KEYS = ("ul-run", "ul-run-name", "ul-checkpoint-sha256", "ul-seed", "ul-params")

RANDOM_CLASS = "random"
"""The class choice "a class per sample, drawn from its seed": every class of a class-conditional run, each
sample still reproducible from its seed alone (its PNG records the class it got)."""

ClassChoice = int | str | None
"""None (unconditional: the null label), a class index, or RANDOM_CLASS."""


def class_choice(value: object) -> ClassChoice:
    """A requested class as the samplers take it; one clear error for anything else (a CLI word, a JSON value)."""
    if value is None or value == RANDOM_CLASS:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**31 - 1:
        return value
    raise DataError(f"class must be a class index (0, 1, …) or '{RANDOM_CLASS}', not {value!r}")


_SAMPLING = SamplingConfig.model_fields
Steps = Annotated[int, *_SAMPLING["base_steps"].metadata]
Guidance = Annotated[float, *_SAMPLING["guidance"].metadata]
Sampler = _SAMPLING["sampler"].annotation


class SampleParams(BaseModel):
    """`ul-params`: what `ul sample` and Generate write; the bounds are the run config's."""

    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)

    base_steps: Steps | None = None
    decoder_steps: Steps | None = None
    sampler: Sampler | None = None  # type: ignore[valid-type]
    guidance: Guidance | None = None
    class_label: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = Field(None, alias="class")


class SampleSettings(BaseModel):
    """The whole record of one sample PNG."""

    model_config = ConfigDict(strict=True, extra="forbid")

    run: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None
    run_name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    checkpoint_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)]
    params: SampleParams = SampleParams()


def read_png_text_chunks(path: str | Path, keys: tuple[str, ...] = KEYS) -> dict[str, str]:
    """The `keys` among a PNG's tEXt/zTXt/iTXt chunks, each bounded by MAX_CHUNK_BYTES (DataError otherwise)."""
    path = check_file(path)  # a FIFO or a device is refused before it is opened (it would block the GUI)
    out: dict[str, str] = {}
    try:
        with path.open("rb") as fh:
            if fh.read(8) != PNG_SIGNATURE:
                raise DataError(f"{path.name}: not a PNG file")
            for _ in range(MAX_CHUNKS):
                head = fh.read(8)
                if len(head) < 8:
                    break
                length, kind = struct.unpack(">I4s", head)
                if kind == b"IEND":
                    break
                if kind not in (b"tEXt", b"zTXt", b"iTXt"):
                    fh.seek(length + 4, 1)  # data and CRC
                    continue
                if length > MAX_CHUNK_BYTES:
                    raise DataError(f"{path.name}: a text chunk of {length:,} bytes (at most {MAX_CHUNK_BYTES:,})")
                data = fh.read(length)
                fh.seek(4, 1)
                key, value = _text_chunk(kind, data, path.name)
                if key in keys:
                    out[key] = value
    except OSError as exc:
        raise DataError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None
    return out


def _inflate(data: bytes, name: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, MAX_CHUNK_BYTES + 1)
    except zlib.error:
        raise DataError(f"{name}: a compressed text chunk is corrupt") from None
    if len(raw) > MAX_CHUNK_BYTES or inflater.unconsumed_tail:
        raise DataError(f"{name}: a compressed text chunk inflates beyond {MAX_CHUNK_BYTES:,} bytes")
    return raw


def _text_chunk(kind: bytes, data: bytes, name: str) -> tuple[str, str]:
    key, sep, rest = data.partition(b"\0")
    if not sep:
        return "", ""
    label = key.decode("latin-1")
    if kind == b"tEXt":
        return label, rest.decode("latin-1")
    if kind == b"zTXt":
        return label, _inflate(rest[1:], name).decode("latin-1")
    if len(rest) < 2:  # iTXt: compression flag, method, language\0, translated keyword\0, text
        return label, ""
    compressed, body = rest[0], rest[2:]
    parts = body.split(b"\0", 2)
    text = parts[2] if len(parts) == 3 else b""
    if compressed:
        text = _inflate(text, name)
    return label, text.decode("utf-8", errors="replace")


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _int_text(text: str, what: str, name: str) -> int:
    text = text.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 19:
        raise DataError(f"{name}: {what} {text[:40]!r} is not a whole number between 0 and {SEED_MAX}")
    return int(text)


def parse_sample_settings(text: Mapping[str, str], name: str = "the PNG") -> SampleSettings | None:
    """Validate the text chunks as one record; None when they carry no sample settings at all."""
    if "ul-seed" not in text or not ("ul-run" in text or "ul-run-name" in text):
        return None
    raw_params = text.get("ul-params") or "{}"
    if nesting_depth(raw_params) > MAX_DEPTH:
        raise DataError(f"{name}: ul-params is nested deeper than {MAX_DEPTH} levels")
    try:
        params = json.loads(raw_params)
    except (ValueError, RecursionError):
        raise DataError(f"{name}: ul-params is not valid JSON") from None
    if not isinstance(params, dict):
        raise DataError(f"{name}: ul-params is not a JSON object")
    run_text = (text.get("ul-run") or "").strip()
    record: dict[str, Any] = {
        "run": _int_text(run_text, "ul-run", name) if run_text else None,
        "run_name": text.get("ul-run-name") or None,
        "checkpoint_sha256": text.get("ul-checkpoint-sha256") or None,
        "seed": _int_text(text["ul-seed"], "ul-seed", name),
        "params": params,
    }
    try:
        return SampleSettings.model_validate(record)
    except ValidationError as exc:
        raise DataError(f"{name}: {_first_problem(exc)}") from None


def _first_problem(exc: ValidationError) -> str:
    errors = exc.errors()
    e = errors[0]
    loc = ".".join(str(p) for p in e["loc"] if p != "params")
    loc = {"run": "ul-run", "seed": "ul-seed", "run_name": "ul-run-name",
           "checkpoint_sha256": "ul-checkpoint-sha256"}.get(loc, loc)  # fmt: skip
    value = repr(e.get("input"))
    value = value if len(value) <= 40 else value[:37] + "…"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc} = {value}: {e['msg'].lower()}{more}"


def read_sample_settings(path: str | Path) -> SampleSettings | None:
    """A sample PNG's settings, validated as a whole; None when it carries none; DataError when they are bad."""
    path = Path(path)
    return parse_sample_settings(read_png_text_chunks(path), path.name)
