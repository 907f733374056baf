"""Improved precision and recall (Kynkäänniemi et al. 2019): k-NN hypersphere manifolds in feature space."""

from __future__ import annotations

import torch

from .fid import as_features

__all__ = ["knn_radii", "manifold_coverage", "precision_recall"]


def _cdist_blocks(a: torch.Tensor, b: torch.Tensor, block: int):
    for i in range(0, len(a), block):
        yield i, torch.cdist(a[i : i + block], b)


def knn_radii(features: torch.Tensor, k: int = 3, block: int = 1024) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point (Kynkäänniemi et al. 2019, eq. 1)."""
    if len(features) <= k:
        raise ValueError(f"k-NN radii need more than k={k} points, got {len(features)}")
    radii = torch.empty(len(features), dtype=features.dtype)
    for i, d in _cdist_blocks(features, features, block):
        radii[i : i + len(d)] = d.topk(k + 1, dim=1, largest=False).values[:, k]  # the nearest is the point itself
    return radii


def manifold_coverage(
    manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, block: int = 1024
) -> torch.Tensor:
    """For each query, whether it lies in some ball B(manifold_i, radii_i) (eq. 2): a bool tensor [Q]."""
    inside = torch.empty(len(queries), dtype=torch.bool)
    for i, d in _cdist_blocks(queries, manifold, block):
        inside[i : i + len(d)] = (d <= radii[None, :]).any(dim=1)
    return inside


def precision_recall(real_features, fake_features, k: int = 3) -> tuple[float, float]:
    """(precision, recall): the fraction of fake samples inside the real manifold, and of real samples inside
    the fake manifold (Kynkäänniemi et al. 2019, eqs. 1–3), with k-NN radii (k=3 as in the paper)."""
    real = torch.from_numpy(as_features(real_features, "real features"))
    fake = torch.from_numpy(as_features(fake_features, "fake features"))
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} and {fake.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    # One pass over the fake × real distances serves both directions.
    fake_in_real = torch.zeros(len(fake), dtype=torch.bool)
    real_in_fake = torch.zeros(len(real), dtype=torch.bool)
    for i, d in _cdist_blocks(fake, real, 2048):
        fake_in_real[i : i + len(d)] = (d <= r_real[None, :]).any(dim=1)
        real_in_fake |= (d <= r_fake[i : i + len(d), None]).any(dim=0)
    return float(fake_in_real.double().mean()), float(real_in_fake.double().mean())
