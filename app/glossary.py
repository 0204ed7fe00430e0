"""Plain words for the method's terms, in one place for every page.

The labels keep the precise term (c_lf, "KL at t = 1", λ, "Samples K"); the tooltip or hint says in plain
words what the knob or number does to the result. Pages look texts up with `tip(key)`, so one wording is
shown everywhere and a test can check that none is missing.
"""

from __future__ import annotations

from typing import Any

TOOLTIP_ROLE = 3  # Qt.ItemDataRole.ToolTipRole (this module stays free of Qt imports)

TERMS: dict[str, str] = {
    # ---- numbers on the plots and pages ----
    "kl1": (
        "KL at t = 1: how much the most heavily noised latent still differs from pure noise. It should stay "
        "near zero; if it grows, the latent keeps information the noise was meant to wash out."
    ),
    "bits_per_pixel": (
        "Bits / pixel: how many bits the latent of an image costs, per pixel, under the learned prior. Lower "
        "means a smaller, more compressible latent; higher means the latent keeps more of the picture."
    ),
    "bits_per_latent_dim": (
        "Bits / latent dim: the same cost per number in the latent (channels × height × width). Near 0 means "
        "that number carries almost no information about the image."
    ),
    "psnr": "PSNR (dB): how close the reconstruction is to the input; higher is closer (+6 dB ≈ half the error).",
    "samples_k": (
        "Samples K: decode each image K times with different seeds. With 2 or more you also get their mean "
        "and a map of where they differ: the parts the decoder invents rather than reads from the latent."
    ),
    "noise_level": (
        "λ (log signal-to-noise) and α² (the share of the latent that is still signal): at λ = +5.00, "
        "α² = 0.993 the latent is almost untouched; towards the left more of it is replaced by noise and the "
        "model re-imagines the picture."
    ),
    # ---- samplers ----
    "sampler": (
        "The sampler: how the model walks from noise to the result. Ancestral adds fresh noise at each step "
        "(varied, needs more steps); DDIM is deterministic (the same seed, the same picture, fewer steps); "
        "DPM-Solver++ (2M) reaches a similar quality in the fewest steps."
    ),
    "ancestral": (
        "Ancestral: adds fresh random noise at every step. Robust and faithful to the model, but it needs "
        "more steps than the others for the same sharpness."
    ),
    "ddim": "DDIM: no fresh noise between steps, so the result is deterministic and holds up with fewer steps.",
    "dpmpp2m": (
        "DPM-Solver++ (2M): a higher-order solver; usually the best quality when only a few steps (8–20) are allowed."
    ),
    # ---- the New run form ----
    "name": "A name you will recognise in every list; leave empty for <preset>-NNN.",
    "preset": (
        "A ready-made recipe (image size, model size, training length). Hover an entry for what it trains and "
        "how long it takes; every value can still be changed below."
    ),
    "speed": "Time per 1,000 training steps on this machine, measured by a short trial of this preset.",
    "measure": "Train this preset for a few steps in the background and time them (about 20 s).",
    "parent_run": "The stage-1 run whose latents the base model learns to generate.",
    "checkpoint": "Which saved state of that stage-1 run encodes the images into latents (the latest is usual).",
    "dataset": "The images to train on: the built-in shapes, or a folder of your own pictures.",
    "resolution": "Side of the square training images in pixels; larger is slower and needs a larger model.",
    "loss_factor": (
        "Loss factor (c_lf): how much the training values exact reconstructions over a cheap latent. Higher "
        "keeps more of the picture in the latent (more bits, sharper reconstructions). At the paper's values "
        "(1.3–2.1) a small model's latent may carry almost nothing; shapes-32 uses 10."
    ),
    "sigmoid_bias": (
        "Sigmoid bias (b): shifts which noise levels the reconstruction loss cares about. Higher values push "
        "more detail into the latent (more bits); lower values leave more to the decoder's imagination."
    ),
    "latent_channels": (
        "Latent channels: numbers per latent position. More channels can hold more of the picture but make "
        "stage 2 (generation) harder."
    ),
    "downsampling": (
        "Pixels per latent position along each side: ×4 turns 32×32 pixels into an 8×8 latent. Higher gives a "
        "smaller latent that keeps less detail."
    ),
    "budget": "How long to train: a number of steps, or minutes of wall-clock time.",
    "steps": "Optimizer steps to train; the Speed line above says how long that takes here.",
    "minutes": "Wall-clock minutes to train; the run stops with a checkpoint when they are up.",
    "batch_size": "Images per training step: larger is smoother but slower per step and needs more memory.",
    "device": "Where the run trains; runs on the same device wait in the queue for each other.",
    "advanced": "Every setting of the run's config, generated from the engine's schema, each with its range.",
}

EXPECT_EMPTY_LATENT = (
    "At this loss factor a small model's latent may carry almost nothing: reconstructions then become the "
    "decoder's own guesses (on 32×32 shapes ≈ 0.001 bits/pixel and ≈ 11 dB). Raise the loss factor (shapes-32 "
    "uses 10: ≈ 0.17 bits/pixel, ≈ 26 dB after 2,000 steps) for a latent that keeps the picture."
)
EXPECT_FULL_LATENT = "At this loss factor the latent should keep the picture: expect sharp reconstructions."
EMPTY_LATENT_BELOW = 3.0
"""Loss factors below this left the latent nearly empty on the small presets (README, docs/results.md)."""


def tip(key: str) -> str:
    """The plain-words text of a term (KeyError for an unknown key: a typo must fail a test, not show "")."""
    return TERMS[key]


def metrics_tip() -> str:
    """The tooltip of a metrics panel: what its numbers mean."""
    return "\n\n".join(tip(k) for k in ("psnr", "bits_per_pixel", "bits_per_latent_dim", "samples_k"))


def tip_items(combo: Any, keys: list[str]) -> None:
    """Give each entry of a combo box (in order) the tooltip of its term."""
    for i, key in enumerate(keys):
        combo.setItemData(i, tip(key), TOOLTIP_ROLE)


def expectation(loss_factor: float | None, resolution: int | None) -> str:
    """What a run with this loss factor should give, in one or two sentences (small models only)."""
    if loss_factor is None:
        return ""
    if loss_factor < EMPTY_LATENT_BELOW and (resolution or 0) <= 128:
        return EXPECT_EMPTY_LATENT
    return EXPECT_FULL_LATENT
