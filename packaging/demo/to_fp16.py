"""Rewrite an exported bundle folder in fp16 (half the size; the loader casts back to the nets' dtype).

    python packaging/demo/to_fp16.py SRC DST [--sampling decoder_steps=8 sampler=ancestral]

`--sampling` sets the shipped defaults (the `sampling` section of every component's JSON config), which the
app and the CLI use when nothing else is asked for; the values are the ones measured in docs/demo-model.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from ul_engine import weights


def parse_sampling(pairs: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        values[key] = value if key == "sampler" else json.loads(value)
    return values


def write_json(src: Path, dst: Path, sampling: dict[str, object]) -> None:
    if not sampling:
        shutil.copy2(src, dst)
        return
    data = json.loads(src.read_text())
    if isinstance(data.get("config"), dict) and isinstance(data["config"].get("sampling"), dict):
        data["config"]["sampling"].update(sampling)
    dst.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def main(src: Path, dst: Path, sampling: dict[str, object]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in sorted(src.iterdir()):
        if path.suffix == ".safetensors":
            tensors, metadata = weights.load_tensors(path)
            half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
            weights.save_tensors(dst / path.name, half, metadata)
        elif path.suffix == ".json":
            write_json(path, dst / path.name, sampling)
        total += (dst / path.name).stat().st_size if (dst / path.name).exists() else 0
    print(f"{dst}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--sampling", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    main(args.src, args.dst, parse_sampling(args.sampling))
