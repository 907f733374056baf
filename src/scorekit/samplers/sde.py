"""Reverse-SDE integrators in the process's own time and space (Song et al. 2021, score_sde).

State is kept in σ-space (x̂ = x/s); each step maps to process space x = s(t)·x̂, takes the step there
with the process's f, g or discretize, and maps back. With process=None (σ-space, f = 0, g² = 2σ) this is
the EDM-form reverse SDE dx = −2σ∇log p dσ + √(2σ) dw̄. Every step's last move (σ → 0) is x ← D(x, σ).
"""

from __future__ import annotations

import torch

from .base import (
    CountingDenoiser,
    SamplerOutput,
    as_sigma_table,
    bcast,
    check_choice,
    check_positive,
    noise_like,
    resolve_process,
    sigma_at,
)

__all__ = ["sample_euler_maruyama", "sample_reverse_diffusion", "sample_pc", "process_score", "PREDICTORS"]

PREDICTORS = ("reverse_diffusion", "euler_maruyama")


def process_score(D, x_hat, sigma, scale):
    """Process-space score ∇_x log p_t(x) at x = s·x̂: (D(x̂, σ) − x̂)/(s·σ²). Also returns D."""
    den = D(x_hat, sigma)
    return (den - x_hat) / (bcast(scale, x_hat) * bcast(sigma, x_hat) ** 2), den


def _em_step(proc, x, score, t, t_next, s, generator):
    """One Euler–Maruyama step of the reverse SDE in process space; x is σ-space, returns process space."""
    xp = bcast(s, x) * x
    dt = bcast(t_next - t, x)
    drift = proc.reverse_drift(xp, t, score)
    g = bcast(proc.diffusion(t), x)
    return xp + drift * dt + g * (-dt).sqrt() * noise_like(x, generator)


def _rd_step(proc, x, score, t, t_next, s, generator):
    """score_sde's reverse-diffusion predictor: x ← x − (a−1)x + v·∇log p + √v·z, (a, v) = discretize(t, t_next)."""
    a, v = proc.discretize(t, t_next)
    xp = bcast(s, x) * x
    v = bcast(v, x)
    return xp - (bcast(a, x) - 1) * xp + v * score + v.sqrt() * noise_like(x, generator)


@torch.no_grad()
def sample_euler_maruyama(denoiser, x, sigmas, *, process=None, generator=None, callback=None, class_labels=None):
    """Euler–Maruyama on the reverse SDE dx = [f(t)x − g(t)²∇log p_t(x)]dt + g(t)dw̄ (Song et al. 2021, eq. 6).

    NFE = number of positive σ levels (N − 1 SDE steps + the final D evaluation).
    """
    return _predictor_corrector(denoiser, x, sigmas, process, generator, callback, class_labels, "euler_maruyama", 0)


@torch.no_grad()
def sample_reverse_diffusion(denoiser, x, sigmas, *, process=None, generator=None, callback=None, class_labels=None):
    """Reverse-diffusion predictor (Song et al. 2021, eq. 46): the forward discretisation run backwards. NFE = N."""
    return _predictor_corrector(denoiser, x, sigmas, process, generator, callback, class_labels, "reverse_diffusion", 0)


@torch.no_grad()
def sample_pc(
    denoiser,
    x,
    sigmas,
    *,
    process=None,
    generator=None,
    callback=None,
    class_labels=None,
    snr: float = 0.16,
    corrector_steps: int = 1,
    predictor: str = "reverse_diffusion",
):
    """Predictor–corrector sampling (Song et al. 2021, Alg. 1/4–5): Langevin corrector steps at each level, then
    a predictor step. Corrector step size ε = 2α(snr·‖z‖/‖∇log p‖)² with α = a² from process.discretize
    (1 for VE, 1 − β_i for VP); the norms are batch means as in score_sde (per-sample norms blow up in low
    dimension), with each score norm scaled by its sample's s·σ so per-sample schedules share one rule.
    NFE = N·(corrector_steps + 1).
    """
    check_choice("predictor", predictor, PREDICTORS)
    snr = check_positive("snr", snr)
    if int(corrector_steps) != corrector_steps or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be a non-negative integer; got {corrector_steps!r}")
    return _predictor_corrector(
        denoiser, x, sigmas, process, generator, callback, class_labels, predictor, int(corrector_steps), snr
    )


def _predictor_corrector(denoiser, x, sigmas, process, generator, callback, class_labels, predictor, n_corr, snr=0.16):
    proc = resolve_process(process)
    table = as_sigma_table(sigmas, x)
    D = CountingDenoiser(denoiser, class_labels)
    n = table.shape[1] - 1
    step = {"euler_maruyama": _em_step, "reverse_diffusion": _rd_step}[predictor]
    alpha = torch.ones_like(table[:, 0])
    for i in range(n):
        sig, sig_next = sigma_at(table, i), sigma_at(table, i + 1)
        last = i == n - 1 or bool((sig_next <= 0).all())
        t = proc.t_of_sigma(sig)
        s = proc.scale(t)
        t_next = None if last else proc.t_of_sigma(sig_next)
        if n_corr:
            if not last:  # α of the forward step into this level (the last level keeps the previous one)
                alpha = proc.discretize(t, t_next)[0] ** 2
            for _ in range(n_corr):
                score, _ = process_score(D, x, sig, s)
                z = noise_like(x, generator)
                # score_sde's rule with batch-mean norms; the score norm is measured in units of 1/(s·σ)
                # (its natural scale) so samples at different σ share one rule
                unit = s * sig
                gnorm = (score.flatten(1).norm(dim=1) * unit).mean()
                ratio = snr * z.flatten(1).norm(dim=1).mean() / gnorm.clamp(min=1e-30)
                eps = bcast(2 * alpha * (ratio * unit) ** 2, x)
                xp = bcast(s, x) * x + eps * score + (2 * eps).sqrt() * z
                x = xp / bcast(s, x)
        if last:
            den = D(x, sig)
            x = den
        else:
            score, den = process_score(D, x, sig, s)
            xp = step(proc, x, score, t, t_next, s, generator)
            x = xp / bcast(proc.scale(t_next), x)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig, "denoised": den})
    return SamplerOutput(x, float(D.calls))
