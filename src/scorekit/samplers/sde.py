"""Reverse-SDE integrators in the process's own time and space (Song et al. 2021, score_sde).

State is kept in σ-space (x̂ = x/s); each step maps to process space x = s(t)·x̂, takes the step there
with the process's f and g, and maps back. With process=None (σ-space, f = 0, g² = 2σ) this is the
EDM-form reverse SDE dx = −2σ∇log p dσ + √(2σ) dw̄.
"""

from __future__ import annotations

import torch

from .base import (
    CountingDenoiser,
    SamplerOutput,
    as_sigma_table,
    bcast,
    noise_like,
    resolve_process,
    sigma_at,
)

__all__ = ["sample_euler_maruyama", "process_score"]


def process_score(D, x_hat, sigma, scale):
    """Process-space score ∇_x log p_t(x) at x = s·x̂: (D(x̂, σ) − x̂)/(s·σ²). Also returns D."""
    den = D(x_hat, sigma)
    return (den - x_hat) / (bcast(scale, x_hat) * bcast(sigma, x_hat) ** 2), den


@torch.no_grad()
def sample_euler_maruyama(denoiser, x, sigmas, *, process=None, generator=None, callback=None, class_labels=None):
    """Euler–Maruyama on the reverse SDE dx = [f(t)x − g(t)²∇log p_t(x)]dt + g(t)dw̄, then a final denoise.

    NFE = number of positive σ levels (N − 1 SDE steps + the final D evaluation).
    """
    proc = resolve_process(process)
    table = as_sigma_table(sigmas, x)
    D = CountingDenoiser(denoiser, class_labels)
    n = table.shape[1] - 1
    for i in range(n):
        sig, sig_next = sigma_at(table, i), sigma_at(table, i + 1)
        if i == n - 1 or bool((sig_next <= 0).all()):
            den = D(x, sig)
            x = den
        else:
            t, t_next = proc.t_of_sigma(sig), proc.t_of_sigma(sig_next)
            s, s_next = proc.scale(t), proc.scale(t_next)
            score, den = process_score(D, x, sig, s)
            xp = bcast(s, x) * x
            dt = bcast(t_next - t, x)
            drift = proc.reverse_drift(xp, t, score)
            g = bcast(proc.diffusion(t), x)
            xp = xp + drift * dt + g * (-dt).sqrt() * noise_like(x, generator)
            x = xp / bcast(s_next, x)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig, "denoised": den})
    return SamplerOutput(x, float(D.calls))
