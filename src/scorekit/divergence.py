"""Divergence tr ∇_x f of a per-sample map: exact (d backward rows) or Hutchinson's estimator (Hutchinson 1989;
Grathwohl et al. 2019, eq. 9). Used by the ODE likelihood and by implicit / sliced score matching."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .models.parameterization import sigma_vector

__all__ = ["PROBE_NOISES", "probe_vectors", "exact_divergence", "hutchinson_divergence"]

PROBE_NOISES = ("gaussian", "rademacher", "sphere")


def probe_vectors(shape, noise: str, generator=None, dtype=torch.float32, device=None) -> Tensor:
    """Hutchinson probes with E[vvᵀ] = I: standard Gaussian, Rademacher (±1), or uniform on the sphere of radius √d.

    Sphere probes (a normalised Gaussian) give d·uᵀAu, exact when A ∝ I: along the probability-flow ODE
    ∇D ≈ I at small σ and ≈ 0 at large σ, so they and Rademacher probes have far less variance than Gaussian.
    """
    if noise in ("gaussian", "sphere"):
        v = torch.randn(shape, generator=generator, dtype=dtype)
        if noise == "sphere":
            flat = v.flatten(1)
            v = (flat * (flat.shape[1] ** 0.5 / flat.norm(dim=1, keepdim=True))).reshape(shape)
    elif noise == "rademacher":
        v = torch.randint(0, 2, shape, generator=generator).to(dtype) * 2 - 1
    else:
        raise ValueError(f"probe noise must be one of {', '.join(PROBE_NOISES)}, got {noise!r}")
    return v.to(device)


def _replicate(t: Tensor | None, k: int) -> Tensor | None:
    if t is None:
        return None
    return t.repeat(k, *([1] * (t.ndim - 1)))


def exact_divergence(fn: Callable, x: Tensor, sigma: Tensor, class_labels=None, create_graph: bool = False):
    """(fn(x, σ, y), tr ∇_x fn) for a per-sample map fn: one backward pass over a d-fold replicated batch.

    Copy k of the batch is contracted with the basis vector e_k, so row k of each Jacobian is read once.
    """
    b, d = x.shape[0], x[0].numel()
    sigma = sigma_vector(sigma, x)
    xr = _replicate(x.detach(), d).requires_grad_(True)
    basis = torch.eye(d, dtype=x.dtype, device=x.device).repeat_interleave(b, 0).reshape(xr.shape)
    with torch.enable_grad():
        out = fn(xr, sigma.repeat(d), _replicate(class_labels, d))
        (g,) = torch.autograd.grad((out * basis).sum(), xr, create_graph=create_graph)
    trace = (g * basis).flatten(1).sum(1).reshape(d, b).sum(0)
    return out[:b], trace


def hutchinson_divergence(
    fn: Callable, x: Tensor, sigma: Tensor, probes: Tensor, class_labels=None, create_graph: bool = False
):
    """(fn(x, σ, y), mean_m v_mᵀ ∇_x fn v_m) with `probes` of shape [M·B, *x.shape[1:]] (Hutchinson 1989)."""
    b = x.shape[0]
    m = probes.shape[0] // b
    if probes.shape[0] != m * b or m < 1:
        raise ValueError(f"probes must have a multiple of the batch size ({b}) rows, got {probes.shape[0]}")
    sigma = sigma_vector(sigma, x)
    xr = _replicate(x.detach(), m).requires_grad_(True)
    with torch.enable_grad():
        out = fn(xr, sigma.repeat(m), _replicate(class_labels, m))
        (g,) = torch.autograd.grad((out * probes).sum(), xr, create_graph=create_graph)
    est = (g * probes).flatten(1).sum(1).reshape(m, b).mean(0)
    return out[:b], est
