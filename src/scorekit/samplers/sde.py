"""Reverse-SDE integrators in the process's own time and space (Song et al. 2021, score_sde).

State is kept in σ-space (x̂ = x/s); each step maps to process space x = s(t)·x̂, takes the step there
with the process's f, g or discretize, and maps back. With process=None (σ-space, f = 0, g² = 2σ) this is
the EDM-form reverse SDE dx = −2σ∇log p dσ + √(2σ) dw̄. Every step's last move (σ → 0) is x ← D(x, σ).
"""

from __future__ import annotations

import torch

from .base import (
    CountingDenoiser,
    ProcessGrid,
    SamplerOutput,
    bcast,
    check_choice,
    check_positive,
    noise_like,
    resolve_process,
    sigma_steps,
    sigma_table,
)

__all__ = ["sample_euler_maruyama", "sample_reverse_diffusion", "sample_pc", "process_score", "PREDICTORS"]

PREDICTORS = ("reverse_diffusion", "euler_maruyama")


def process_score(D, x_hat, sigma, scale):
    """Process-space score ∇_x log p_t(x) at x = s·x̂: (D(x̂, σ) − x̂)/(s·σ²). Also returns D."""
    den = D(x_hat, sigma)
    return (den - x_hat) / (bcast(scale, x_hat) * bcast(sigma, x_hat) ** 2), den


def _em_step(grid, i, x, score, generator):
    """One Euler–Maruyama step of the reverse SDE in process space; x is σ-space, returns process space."""
    s, f, g2 = (bcast(v[:, i], x) for v in (grid.s, grid.f, grid.g2))
    dt = bcast(grid.t[:, i + 1] - grid.t[:, i], x)
    xp = s * x
    return xp + (f * xp - g2 * score) * dt + (g2 * -dt).sqrt() * noise_like(x, generator)


def _rd_step(grid, i, x, score, generator):
    """score_sde's reverse-diffusion predictor: x ← x − (a−1)x + v·∇log p + √v·z, (a, v) = discretize(t, t_next)."""
    a, v = bcast(grid.a[:, i], x), bcast(grid.v[:, i], x)
    xp = bcast(grid.s[:, i], x) * x
    return xp - (a - 1) * xp + v * score + v.sqrt() * noise_like(x, generator)


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
    table = sigma_table(sigmas, x)
    grid = ProcessGrid(resolve_process(process), table)
    D = CountingDenoiser(denoiser, class_labels)
    step = {"euler_maruyama": _em_step, "reverse_diffusion": _rd_step}[predictor]
    alpha = torch.ones_like(table[:, 0])
    for i, sig, _, last in sigma_steps(table):
        s = grid.s[:, i]
        if n_corr:
            if not last:  # α of the forward step into this level (the last level keeps the previous one)
                alpha = grid.a[:, i] ** 2
            for _ in range(n_corr):
                score, _ = process_score(D, x, sig, s)
                z = noise_like(x, generator)
                # score_sde's rule with batch-mean norms; the score norm is measured in units of 1/(s·σ)
                # (its natural scale) so samples at different σ share one rule
                unit = s * sig
                gnorm = (score.flatten(1).norm(dim=1) * unit).mean()
                ratio = snr * z.flatten(1).norm(dim=1).mean() / gnorm.clamp(min=1e-30)
                eps = bcast(2 * alpha * (ratio * unit) ** 2, x)
                x = x + (eps * score + (2 * eps).sqrt() * z) / bcast(s, x)
        if last:
            den = D(x, sig)
            x = den
        else:
            score, den = process_score(D, x, sig, s)
            x = step(grid, i, x, score, generator) / bcast(grid.s[:, i + 1], x)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig.expand(x.shape[0]), "denoised": den})
    return SamplerOutput(x, float(D.calls))
