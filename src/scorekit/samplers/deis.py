"""DEIS tAB (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator", §4, eq. 14) in
σ-space (EDM form): in σ the probability-flow ODE is dx/dσ = ε(x, σ) with no linear part, so the exponential
integrator reduces to x_{i+1} = x_i + Σ_j C_ij ε_{i−j}, C_ij = ∫_{σ_i}^{σ_{i+1}} ℓ_j(τ) dτ with ℓ_j the Lagrange
basis through the last r+1 levels σ_i, σ_{i−1}, … (order r+1 ≤ 3). Coefficients are exact for any spacing (3-point
Gauss–Legendre is exact for the degree ≤ 2 integrand). The step to σ = 0 needs no call at σ = 0.
"""

from __future__ import annotations

import torch

from .base import bcast, check_choice
from .ipndm import run_linear_multistep

__all__ = ["sample_deis", "deis_step", "deis_coefficients"]

_GL_NODES = (-(0.6**0.5), 0.0, 0.6**0.5)
_GL_WEIGHTS = (5 / 9, 8 / 9, 5 / 9)


def deis_coefficients(nodes, sig_next):
    """C_j = ∫_{nodes[0]}^{sig_next} ℓ_j(τ) dτ for the Lagrange basis over `nodes` (newest first; each [R])."""
    a, b = nodes[0], sig_next
    coef = []
    for j, sj in enumerate(nodes):
        c = 0
        for xi, w in zip(_GL_NODES, _GL_WEIGHTS):
            tau = a + (b - a) * (1 + xi) / 2
            ell = 1
            for m, sm in enumerate(nodes):
                if m != j:
                    ell = ell * (tau - sm) / (sj - sm)
            c = c + w * ell
        coef.append(c * (b - a) / 2)
    return coef


def deis_step(hist, sig_next, order: int):
    """One DEIS-tAB step of the given order from hist[-1] = (σ_i, x_i, D_i) to σ_{i+1}."""
    pts = list(reversed(hist[-order:]))
    coef = deis_coefficients([s for s, _, _ in pts], sig_next)
    x = hist[-1][1]
    for c, (s, xk, dk) in zip(coef, pts):
        x = x + bcast(c, xk) * (xk - dk) / bcast(s, xk)
    return x


@torch.no_grad()
def sample_deis(
    denoiser,
    x,
    sigmas,
    *,
    process=None,
    generator=None,
    callback=None,
    class_labels=None,
    order: int = 3,
    lower_order_final: bool = False,
):
    """DEIS tAB-`order` (Zhang & Chen 2023, eq. 14) on ε = (x − D)/σ in σ, orders 1…3, lower orders for the first
    steps (and, with `lower_order_final`, the last; k-diffusion's deis: off). NFE = N."""
    del process, generator
    check_choice("order", int(order), (1, 2, 3))
    return run_linear_multistep(denoiser, x, sigmas, deis_step, int(order), lower_order_final, class_labels, callback)
