"""Fréchet distance (the formula behind FID) and kernel distance (KID) between two sets of features.

FD = ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2·(Σ1^½ Σ2 Σ1^½)^½), in float64. tr((Σ1 Σ2)^½) is computed as the sum of the
square roots of the eigenvalues of the symmetric PSD matrix Σ1^½ Σ2 Σ1^½ (same eigenvalues as Σ1 Σ2), so
there is no complex round-off to discard, unlike sqrtm of the non-symmetric product. The feature network
decides what the number means: `fd_shapes` (the shapes classifier) or `fid_inception_v3` (Inception).

KID (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y/d + 1)³,
averaged over random subsets; unlike FD it is unbiased in the number of samples.
"""

from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features → mean (D,) and unbiased covariance (D, D), float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N ≥ 2, D) features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein²) distance between N(μ1, Σ1) and N(μ2, Σ2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: μ {mu1.shape} vs {mu2.shape}, Σ {s1.shape} vs {s2.shape}")
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance_features(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def _poly_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, coef: float = 1.0) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + coef) ** degree
    kyy = (y @ y.T / d + coef) ** degree
    kxy = (x @ y.T / d + coef) ** degree
    m, n = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    )


def kernel_distance(
    a: np.ndarray, b: np.ndarray, *, subsets: int = 50, subset_size: int = 100, seed: int = 0
) -> tuple[float, float]:
    """KID: mean and standard deviation of the unbiased polynomial-kernel MMD² over random subsets."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    values = [
        _poly_mmd2(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))
