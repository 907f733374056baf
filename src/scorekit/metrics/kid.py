"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel, over subsets."""

from __future__ import annotations

import numpy as np
import torch

from .fid import as_features

__all__ = ["polynomial_kernel", "mmd2_unbiased", "kernel_inception_distance"]


def polynomial_kernel(
    x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
):
    """k(x, y) = (γ x·y + c)^d with γ = 1/F by default (Bińkowski et al. 2018, sec. 3)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor) -> float:
    """Unbiased MMD² from kernel matrices (Gretton et al. 2012, eq. 3): diagonals of K_xx, K_yy left out."""
    m, n = kxx.shape[0], kyy.shape[0]
    if m < 2 or n < 2:
        raise ValueError("unbiased MMD needs at least 2 samples on each side")
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(
    features1,
    features2,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
) -> tuple[float, float]:
    """KID = mean ± std over `num_subsets` random subsets (without replacement) of the unbiased MMD²
    (Bińkowski et al. 2018); `subset_size` is capped at the smaller set's size. Unbiased: E[KID] = 0 when
    both sets come from one distribution."""
    f1 = torch.from_numpy(as_features(features1, "features1"))
    f2 = torch.from_numpy(as_features(features2, "features2"))
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} and {f2.shape[1]}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    m = min(int(subset_size), len(f1), len(f2))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(f1)} and {len(f2)}")
    gen = torch.Generator().manual_seed(int(seed))
    values = []
    for _ in range(int(num_subsets)):
        x = f1[torch.randperm(len(f1), generator=gen)[:m]]
        y = f2[torch.randperm(len(f2), generator=gen)[:m]]
        kxx, kyy, kxy = (polynomial_kernel(a, b, degree) for a, b in ((x, x), (y, y), (x, y)))
        values.append(mmd2_unbiased(kxx, kyy, kxy))
    v = np.asarray(values)
    return float(v.mean()), float(v.std(ddof=1) if len(v) > 1 else 0.0)
