"""Metrics of reconstructions and samples. This package's root stays torch-free (cache keys import it)."""

# Names the SSIM definition in every cache key that stores an SSIM, so results computed under an earlier
# definition (a reflection-padded border average) are recomputed instead of reused.
SSIM_DEFINITION = "wang2004-gauss11-cropped"
SSIM_SIGMA = 1.5
SSIM_WINDOW = 2 * int(3.5 * SSIM_SIGMA + 0.5) + 1  # 11: scikit-image's window for gaussian_weights=True
