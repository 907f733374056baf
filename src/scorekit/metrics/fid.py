"""Fréchet distance between Gaussians fitted to features (FID, Heusel et al. 2017), in float64.

d² = |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}); the trace of the matrix square root is computed as
Σᵢ √λᵢ(Σ₁^{1/2} Σ₂ Σ₁^{1/2}) with symmetric eigendecompositions, which stays real and stable for
singular (rank-deficient) covariances where scipy.linalg.sqrtm returns complex noise.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "as_features",
    "gaussian_stats",
    "sqrtm_psd",
    "trace_sqrt_product",
    "frechet_distance",
    "frechet_distance_from_features",
    "fid_from_features",
]


def as_features(x, name: str = "features") -> np.ndarray:
    """A float64 [N, F] array from a tensor/array; NaN or Inf → ValueError."""
    if torch.is_tensor(x):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contain NaN or Inf")
    return x


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof=1, as pytorch-fid) of [N, F] features, float64."""
    f = as_features(features)
    if len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {len(f)}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric positive semi-definite square root via eigh; negative round-off eigenvalues are clipped to 0."""
    a = np.asarray(a, dtype=np.float64)
    a = 0.5 * (a + a.T)
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((Σ₁Σ₂)^{1/2}) = Σ √λ(Σ₁^{1/2} Σ₂ Σ₁^{1/2}) (the eigenvalues of Σ₁Σ₂ are those of this PSD matrix)."""
    s1 = sqrtm_psd(sigma1)
    m = s1 @ np.asarray(sigma2, dtype=np.float64) @ s1
    w = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂) (Dowson & Landau 1982)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"Gaussian statistics disagree in shape: mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {sigma1.shape} vs {sigma2.shape}"
        )
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or Inf")
    diff = mu1 - mu2
    d2 = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(max(d2, 0.0))


def fid_from_features(features1, features2) -> float:
    """FID between two [N, F] feature sets (Heusel et al. 2017, eq. 6)."""
    f1, f2 = as_features(features1), as_features(features2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} and {f2.shape[1]}")
    if min(len(f1), len(f2)) <= f1.shape[1]:  # a low-rank covariance: use its N×N factor form
        if len(f2) < len(f1):
            f1, f2 = f2, f1
        return frechet_distance_from_features(f1, *gaussian_stats(f2))
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


def frechet_distance_from_features(features1, mu2, sigma2) -> float:
    """FID of features [N, F] against Gaussian statistics, exact and O(N²F) when N ≤ F: with
    Σ₁ = AᵀA, A = (X − μ₁)/√(N−1), the non-zero eigenvalues of Σ₁Σ₂ are those of the PSD N×N matrix AΣ₂Aᵀ."""
    f1 = as_features(features1)
    mu2, sigma2 = np.atleast_1d(np.asarray(mu2, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    n, d = f1.shape
    if n < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {n}")
    if mu2.shape != (d,) or sigma2.shape != (d, d):
        raise ValueError(f"statistics of dimension {mu2.shape} do not match features of dimension {d}")
    if n > d:
        return frechet_distance(*gaussian_stats(f1), mu2, sigma2)
    mu1 = f1.mean(0)
    a = (f1 - mu1) / np.sqrt(n - 1)
    m = a @ sigma2 @ a.T
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0, None)).sum())
    diff = mu1 - mu2
    d2 = diff @ diff + float((a * a).sum()) + np.trace(sigma2) - 2.0 * tr_sqrt
    return float(max(d2, 0.0))
