"""Langevin dynamics on the score (D − x)/σ²: unadjusted Langevin at one σ, and NCSN's annealed Langevin."""

from __future__ import annotations

import torch

from .base import CountingDenoiser, SamplerOutput, bcast, check_positive, noise_like, sigma_table

__all__ = ["sample_langevin", "sample_annealed_langevin"]


def _langevin_steps(D, x, sigma, eps, steps, generator, callback, i0=0):
    """x ← x + ε/2·∇log p_σ(x) + √ε·z, `steps` times (Song & Ermon 2019, eq. 4); sigma, eps are [B]."""
    sig_b, eps_b = bcast(sigma, x), bcast(eps, x)
    half = 0.5 * eps_b / sig_b**2
    root = eps_b.sqrt()
    den = None
    for k in range(steps):
        den = D(x, sigma)
        x = x + half * (den - x) + root * noise_like(x, generator)
        if callback is not None:
            callback({"i": i0 + k, "x": x, "sigma": sigma.expand(x.shape[0]), "denoised": den})
    return x, den


def _step_sizes(sig, sig_last, step_scale, step_size):
    if step_size is not None:
        return check_positive("step_size", step_size) * sig**2 / sig_last**2
    return check_positive("step_scale", step_scale) * sig**2


@torch.no_grad()
def sample_langevin(
    denoiser,
    x,
    sigmas,
    *,
    process=None,
    generator=None,
    callback=None,
    class_labels=None,
    sigma: float | None = None,
    step_scale: float = 0.1,
    step_size: float | None = None,
    denoise: bool = True,
):
    """Unadjusted Langevin at a fixed σ (Roberts & Tweedie 1996; Song & Ermon 2019, eq. 4): N steps of
    x ← x + ε/2·∇log p_σ(x) + √ε·z with ε = step_size, or step_scale·σ². σ defaults to the schedule's last
    positive level; the schedule's length sets N. With denoise, a final x ← D(x, σ). NFE = N (+1)."""
    del process
    table = sigma_table(sigmas, x)
    n = table.shape[1] - 1
    sig = table[:, -2] if sigma is None else torch.full_like(table[:, 0], check_positive("sigma", sigma))
    eps = _step_sizes(sig, sig, step_scale, step_size)
    D = CountingDenoiser(denoiser, class_labels)
    x, den = _langevin_steps(D, x, sig, eps, n, generator, callback)
    if denoise:
        x = D(x, sig)
    return SamplerOutput(x, float(D.calls))


@torch.no_grad()
def sample_annealed_langevin(
    denoiser,
    x,
    sigmas,
    *,
    process=None,
    generator=None,
    callback=None,
    class_labels=None,
    n_steps_each: int = 5,
    step_scale: float = 0.1,
    step_size: float | None = None,
    denoise: bool = True,
):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): T = n_steps_each Langevin steps at each positive
    level σ_i with ε_i = ε·σ_i²/σ_L² (ε = step_size, or step_scale·σ_L²), then optionally x ← D(x, σ_L)
    (Song & Ermon 2020, denoising). NFE = N·T (+1)."""
    del process
    if int(n_steps_each) != n_steps_each or n_steps_each < 1:
        raise ValueError(f"n_steps_each must be a positive integer; got {n_steps_each!r}")
    T = int(n_steps_each)
    table = sigma_table(sigmas, x)
    n = table.shape[1] - 1
    sig_last = table[:, -2]
    D = CountingDenoiser(denoiser, class_labels)
    for i in range(n):
        sig = table[:, i]
        x, _ = _langevin_steps(
            D, x, sig, _step_sizes(sig, sig_last, step_scale, step_size), T, generator, callback, i * T
        )
    if denoise:
        x = D(x, sig_last)
    return SamplerOutput(x, float(D.calls))
