"""What `ul bench` runs: training throughput, the app, latents, video, peers and quality per CPU-minute."""
