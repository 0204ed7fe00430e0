"""Rewrite an exported bundle folder in fp16 (half the size; the loader casts back to the nets' dtype)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from ul_engine import weights


def main(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in sorted(src.iterdir()):
        if path.suffix == ".safetensors":
            tensors, metadata = weights.load_tensors(path)
            half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
            weights.save_tensors(dst / path.name, half, metadata)
        elif path.suffix == ".json":
            shutil.copy2(path, dst / path.name)
        total += (dst / path.name).stat().st_size if (dst / path.name).exists() else 0
    print(f"{dst}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
