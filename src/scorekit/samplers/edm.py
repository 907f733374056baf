"""Karras et al. 2022 (EDM) samplers in σ-space: Heun's 2nd-order ODE solver (Alg. 1) and the stochastic
sampler with churn (Alg. 2). Both take the step to σ = 0 with Euler, which gives x ← D(x, σ_{N−1})."""

from __future__ import annotations

import math

import torch

from .base import CountingDenoiser, SamplerOutput, bcast, check_positive, noise_like, sigma_steps, sigma_table

__all__ = ["sample_heun", "sample_edm_stochastic"]


def _heun_step(D, x, sig, sig_next, last):
    """x at σ → σ_next: Euler, then the trapezoidal correction (EDM Alg. 1, lines 4–8); the last step is x ← D."""
    den = D(x, sig)
    if last:
        return den, den
    d = (x - den) / bcast(sig, x)
    h = bcast(sig_next - sig, x)
    x_next = x + h * d
    den2 = D(x_next, sig_next)
    d2 = (x_next - den2) / bcast(sig_next, x)
    return x + h * 0.5 * (d + d2), den


@torch.no_grad()
def sample_heun(denoiser, x, sigmas, *, process=None, generator=None, callback=None, class_labels=None):
    """EDM Algorithm 1: Heun's method on dx/dσ = (x − D(x, σ))/σ. NFE = 2N − 1."""
    del process, generator  # σ-space and deterministic
    table = sigma_table(sigmas, x)
    D = CountingDenoiser(denoiser, class_labels)
    for i, sig, sig_next, last in sigma_steps(table):
        x, den = _heun_step(D, x, sig, sig_next, last)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig.expand(x.shape[0]), "denoised": den})
    return SamplerOutput(x, float(D.calls))


@torch.no_grad()
def sample_edm_stochastic(
    denoiser,
    x,
    sigmas,
    *,
    process=None,
    generator=None,
    callback=None,
    class_labels=None,
    s_churn: float = 40.0,
    s_tmin: float = 0.05,
    s_tmax: float = 50.0,
    s_noise: float = 1.0,
):
    """EDM Algorithm 2: raise σ to σ̂ = σ(1 + γ), γ = min(S_churn/N, √2 − 1) for σ ∈ [S_tmin, S_tmax], by adding
    noise of std S_noise·√(σ̂² − σ²), then a Heun step σ̂ → σ_next. NFE = 2N − 1."""
    del process
    s_churn = check_positive("s_churn", s_churn, allow_zero=True)
    s_noise = check_positive("s_noise", s_noise, allow_zero=True)
    s_tmin = check_positive("s_tmin", s_tmin, allow_zero=True)
    s_tmax = float(s_tmax)
    if not s_tmax >= s_tmin:
        raise ValueError(f"s_tmax must be >= s_tmin; got {s_tmax!r} < {s_tmin!r}")
    table = sigma_table(sigmas, x)
    D = CountingDenoiser(denoiser, class_labels)
    n = table.shape[1] - 1
    gamma_max = min(s_churn / n, math.sqrt(2.0) - 1.0)
    for i, sig, sig_next, last in sigma_steps(table):
        gamma = torch.where((sig >= s_tmin) & (sig <= s_tmax), gamma_max, 0.0).to(sig.dtype)
        sig_hat = sig * (1 + gamma)
        if gamma_max > 0:  # drawn for every sample so a sample's noise does not depend on its batch
            x = x + bcast(s_noise * (sig_hat**2 - sig**2).sqrt(), x) * noise_like(x, generator)
        x, den = _heun_step(D, x, sig_hat, sig_next, last)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig_hat.expand(x.shape[0]), "denoised": den})
    return SamplerOutput(x, float(D.calls))
