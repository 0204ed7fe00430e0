"""The main window's pages and status texts, without Qt."""

from __future__ import annotations

from typing import Any

PAGES: tuple[tuple[str, str, str], ...] = (
    ("runs", "Runs", "Every run, the queue, and the run actions"),
    ("monitor", "Monitor", "Live curves, previews, progress and controls of a run"),
    ("reconstruct", "Reconstruct", "Encode and decode your images and compare the results"),
    ("latents", "Latents", "Look inside a run's latent space: channels, rate, scrubbers"),
    ("generate", "Generate", "Sample images with a stage-2 run"),
    ("rd", "Rate–distortion", "Every checkpoint at (bits/pixel, PSNR); click a point for its reconstructions"),
)
PAGE_IDS: tuple[str, ...] = tuple(p[0] for p in PAGES)


def devices_text(cpu: dict[str, Any] | None, gpus: list[str], error: str | None) -> tuple[str, str | None]:
    """The status bar's devices line and its tooltip (None: keep the tooltip it has)."""
    if cpu is None:
        return "Devices: unknown", error
    cores = cpu.get("cores") or "?"
    threads = cpu.get("threads") or "?"
    names = ", ".join(gpus) if gpus else "none"
    return f"CPU: {cores} cores · GPU: {names}", f"CPU cores {cores}, torch threads {threads}\nGPUs: {names}"
