"""The window's pages: Runs, Monitor, and placeholders for Reconstruct, Latents and Generate."""
