"""A trained run in other people's tools: datasets encoded to latent shards (`ul encode`), the nets as a
diffusers pipeline (`ul export --format diffusers`), metrics out to CSV/JSONL/TensorBoard (`ul metrics`).

Nothing here is imported by the core at start-up; diffusers and tensorboard are optional extras.
"""
