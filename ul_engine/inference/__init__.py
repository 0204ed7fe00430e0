"""Using a trained run, one module per job: loading (a run or bundle → models), files (inputs and outputs: the
media interface images and videos share), reconstruct, sample, latents (exploring the latent space), clips
(video windows) and tiling (large images through a model trained on small crops)."""
