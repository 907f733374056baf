"""Metrics between two samples of vectors, in float64."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sliced_wasserstein"]


def sliced_wasserstein(
    a: Tensor, b: Tensor, num_projections: int = 256, p: int = 2, generator: torch.Generator | None = None
) -> float:
    """Sliced p-Wasserstein distance (Rabin et al. 2011): (E_θ W_p(θ·a, θ·b)^p)^{1/p} over random unit θ.

    Equal sample sizes use sorted matching exactly; unequal sizes compare quantiles on a common grid.
    """
    a = torch.as_tensor(a, dtype=torch.float64).reshape(len(a), -1)
    b = torch.as_tensor(b, dtype=torch.float64).reshape(len(b), -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"samples have different dimensions: {a.shape[1]} and {b.shape[1]}")
    if len(a) == 0 or len(b) == 0:
        raise ValueError("sliced Wasserstein needs non-empty samples")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    theta = torch.randn(a.shape[1], num_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    pa, pb = (a @ theta).sort(0).values, (b @ theta).sort(0).values
    if len(a) != len(b):
        n = max(len(a), len(b))
        q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        pa = torch.quantile(pa, q, dim=0, interpolation="nearest")
        pb = torch.quantile(pb, q, dim=0, interpolation="nearest")
    return float((pa - pb).abs().pow(p).mean().pow(1.0 / p))
