"""Probability-flow ODE integrators (Song et al. 2021, eq. 13) in the process's own time and space."""

from __future__ import annotations

import torch

from .base import CountingDenoiser, SamplerOutput, as_sigma_table, bcast, resolve_process, sigma_at
from .sde import process_score

__all__ = ["sample_pf_euler"]


@torch.no_grad()
def sample_pf_euler(denoiser, x, sigmas, *, process=None, generator=None, callback=None, class_labels=None):
    """Euler on dx/dt = f(t)x − ½g(t)²∇log p_t(x); the step to σ = 0 is x ← D(x, σ_{N−1}).

    With process=None (σ-space) each step is x ← x + (σ_next − σ)(x − D)/σ (EDM's Euler). NFE = N.
    """
    del generator  # deterministic
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
            xp = xp + proc.reverse_drift(xp, t, score, probability_flow=True) * bcast(t_next - t, x)
            x = xp / bcast(s_next, x)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig, "denoised": den})
    return SamplerOutput(x, float(D.calls))
