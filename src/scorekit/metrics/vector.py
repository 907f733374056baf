"""Metrics between two samples of vectors, in float64."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "sliced_wasserstein",
    "mmd_rbf",
    "median_bandwidth",
    "wasserstein2_exact",
    "mean_std",
    "per_class_accuracy",
]


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


def _as_vectors(a, b) -> tuple[Tensor, Tensor]:
    a = torch.as_tensor(a, dtype=torch.float64).reshape(len(a), -1)
    b = torch.as_tensor(b, dtype=torch.float64).reshape(len(b), -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"samples have different dimensions: {a.shape[1]} and {b.shape[1]}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("samples contain NaN or Inf")
    return a, b


def median_bandwidth(a: Tensor, b: Tensor) -> float:
    """Median heuristic: the median pairwise distance in the pooled sample (Gretton et al. 2012, sec. 8)."""
    z = torch.cat([a, b])
    d = torch.pdist(z[:2000])
    med = float(d.median()) if d.numel() else 1.0
    return med if med > 0 else 1.0


def mmd_rbf(a, b, bandwidth: float | None = None) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) with the Gaussian kernel exp(−|x−y|²/(2h²));
    h defaults to the median heuristic of the pooled samples. Can be slightly negative when p = q."""
    from .kid import mmd2_unbiased

    a, b = _as_vectors(a, b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("MMD needs at least 2 samples on each side")
    h = median_bandwidth(a, b) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth must be positive, got {h}")

    def k(x, y):
        return torch.exp(-torch.cdist(x, y).pow(2) / (2 * h * h))

    return mmd2_unbiased(k(a, a), k(b, b), k(a, b))


def wasserstein2_exact(a, b, backend: str = "auto", max_n: int = 5000) -> float:
    """Exact W₂ between the two empirical measures (uniform weights): √ of the optimal-transport cost with
    squared Euclidean ground cost (Villani 2009, def. 6.1). backend "pot" uses POT's network simplex
    (`pip install POT`); "scipy" solves it exactly too (assignment for equal sizes, HiGHS LP otherwise);
    "auto" takes POT when installed. O(n³): meant for small n (≤ max_n)."""
    a, b = _as_vectors(a, b)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("W2 needs non-empty samples")
    if max(len(a), len(b)) > max_n:
        raise ValueError(f"exact W2 is O(n^3): {max(len(a), len(b))} samples exceed max_n={max_n}; subsample first")
    if backend not in ("auto", "pot", "scipy"):
        raise ValueError(f"unknown W2 backend {backend!r} (choose auto, pot or scipy)")
    cost = (torch.cdist(a, b) ** 2).numpy()
    ot = None
    if backend in ("auto", "pot"):
        try:
            import ot  # noqa: F811  (Python Optimal Transport, optional)
        except ImportError:
            if backend == "pot":
                raise ValueError(
                    "exact W2 with backend='pot' needs POT: pip install POT (or use backend='scipy')"
                ) from None
    if ot is not None:
        wa, wb = np.full(len(a), 1.0 / len(a)), np.full(len(b), 1.0 / len(b))
        value = float(ot.emd2(wa, wb, cost, numItermax=10_000_000))
    elif len(a) == len(b):
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        value = float(cost[rows, cols].mean())
    else:
        value = _transport_lp(cost)
    return float(np.sqrt(max(value, 0.0)))


def _transport_lp(cost: np.ndarray) -> float:
    """min Σ c_ij π_ij over couplings of uniform marginals, as a sparse LP (HiGHS)."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, vstack

    m, n = cost.shape
    idx = np.arange(m * n)
    rows = coo_matrix((np.ones(m * n), (idx // n, idx)), shape=(m, m * n))
    cols = coo_matrix((np.ones(m * n), (idx % n, idx)), shape=(n, m * n))
    a_eq = vstack([rows, cols]).tocsr()
    b_eq = np.concatenate([np.full(m, 1.0 / m), np.full(n, 1.0 / n)])
    res = linprog(cost.ravel(), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if not res.success:
        raise ValueError(f"transport LP failed: {res.message}")
    return float(res.fun)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of repeated metric estimates."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def per_class_accuracy(predicted, labels) -> tuple[float, dict[str, float]]:
    """Fraction of samples a classifier assigns to their requested label, overall and per label (keys: the
    label as a string, so the dict is JSON-ready)."""
    p = np.asarray(predicted).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} predictions for {y.size} labels")
    if y.size == 0:
        raise ValueError("no labelled samples")
    per = {str(int(c)): float((p[y == c] == c).mean()) for c in np.unique(y)}
    return float((p == y).mean()), per
