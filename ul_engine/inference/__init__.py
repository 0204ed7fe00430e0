"""Using a trained run: load it, reconstruct, sample, explore latents, window clips, tile photos."""
