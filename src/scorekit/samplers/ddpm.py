"""DDPM ancestral sampling and DDIM, written in σ-space on the denoiser D (x_σ = x_process / s).

Both move from σ to σ' < σ as x' = D + (σ_down/σ)(x − D) + σ_up·z. Ancestral sampling keeps the mean of the
Gaussian bridge x_σ' | x_σ, x0 = D (Ho et al. 2020, eq. 7 divided by s(t')): σ_down = σ'²/σ, with σ_up from
β̃ or β. DDIM keeps the marginal std: σ_down² = σ'² − σ_up², σ_up = η·σ_bridge.
"""

from __future__ import annotations

import torch

from .base import (
    CountingDenoiser,
    SamplerOutput,
    bcast,
    check_choice,
    noise_like,
    resolve_process,
    sigma_steps,
    sigma_table,
)

__all__ = ["sample_ancestral", "sample_ddim", "ANCESTRAL_VARIANCES", "posterior_sigma_up", "shifted_mean"]

ANCESTRAL_VARIANCES = ("posterior", "forward", "beta_tilde", "beta", "small", "large")


def posterior_sigma_up(sigma, sigma_next):
    """Std of the σ-space bridge x_σ' | x_σ, x0: σ'·√(σ² − σ'²)/σ (DDPM's β̃_t divided by s(t')²)."""
    return sigma_next * ((sigma**2 - sigma_next**2).clamp(min=0)).sqrt() / sigma


def _sigma_space_step(D, x, sig, sigma_down, sigma_up, generator, noisy=True):
    """x' = D + (σ_down/σ)(x − D) + σ_up·z from σ."""
    den = D(x, sig)
    x = den + bcast(sigma_down / sig, x) * (x - den)
    if noisy:
        x = x + bcast(sigma_up, x) * noise_like(x, generator)
    return x, den


def shifted_mean(mean, grad, sigma, sigma_next, variance, process=None):
    """Dhariwal & Nichol 2021, Alg. 1 in σ-space: μ + (s_next/s_t)·Σ̂·g, g = s·∇_x̂ log p(y | x̂, σ) (the process-space
    shift s·Σ·∇_{x_t} with x_t = s_t·x̂); `variance` Σ̂ is [B] or shaped like `mean`."""
    if process is None:
        ratio = torch.ones_like(sigma)
    else:
        s_t = process.scale_of_sigma(sigma.to(torch.float64))
        s_n = process.scale_of_sigma(sigma_next.clamp(min=process.sigma_min).to(torch.float64))
        ratio = (s_n / s_t).to(mean.dtype)
    var = bcast(variance, mean) if variance.ndim == 1 else variance
    return mean + bcast(ratio, mean) * var * grad


@torch.no_grad()
def sample_ancestral(
    denoiser,
    x,
    sigmas,
    *,
    process=None,
    generator=None,
    callback=None,
    class_labels=None,
    variance: str = "posterior",
    mean_shift: bool = False,
):
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2) on any σ schedule; the step to σ = 0 is x ← D. NFE = N.

    variance="posterior" (β̃_t): σ_up² = σ'²(σ² − σ'²)/σ². variance="forward" (β_t, the forward step's
    variance): σ_up² = (s_t/s_t')²(σ² − σ'²) from the process. The mean is the bridge mean in both.
    mean_shift: classifier guidance as Alg. 1's shift of the mean by Σ·s·∇log p instead of through D; needs a
    classifier-guided denoiser (one with `base` and `guidance_grad`, e.g. `ClassifierGuidedDenoiser`).
    """
    check_choice("variance", variance, ANCESTRAL_VARIANCES)
    forward = variance in ("forward", "beta", "large")
    proc = resolve_process(process)
    table = sigma_table(sigmas, x)
    if mean_shift and not hasattr(denoiser, "guidance_grad"):
        raise ValueError("mean_shift needs classifier guidance (--guidance classifier)")
    D = CountingDenoiser(denoiser.base if mean_shift else denoiser, class_labels)
    for i, sig, sig_next, last in sigma_steps(table):
        if last:
            den = D(x, sig)
            x = den
        else:
            if forward:
                ratio = proc.scale(proc.t_of_sigma(sig)) / proc.scale(proc.t_of_sigma(sig_next))
                up = ratio * (sig**2 - sig_next**2).clamp(min=0).sqrt()
            else:
                up = posterior_sigma_up(sig, sig_next)
            if mean_shift:
                sig_b = sig.expand(x.shape[0])
                den = D(x, sig_b)
                mean = den + bcast(sig_next**2 / sig**2, x) * (x - den)
                grad = denoiser.guidance_grad(x, sig_b, class_labels)
                mean = shifted_mean(mean, grad, sig_b, sig_next.expand(x.shape[0]), up**2, process)
                x = mean + bcast(up, x) * noise_like(x, generator)
            else:  # the mean is the bridge posterior mean whatever the variance: σ_down = σ'²/σ
                x, den = _sigma_space_step(D, x, sig, sig_next**2 / sig, up, generator)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig.expand(x.shape[0]), "denoised": den})
    return SamplerOutput(x, float(D.calls))


@torch.no_grad()
def sample_ddim(
    denoiser,
    x,
    sigmas,
    *,
    process=None,
    generator=None,
    callback=None,
    class_labels=None,
    eta: float = 0.0,
):
    """DDIM (Song, Meng & Ermon 2021, eq. 12) with σ_up = η·σ'√(σ² − σ'²)/σ; η = 0 is the probability-flow
    ODE's first-order exponential step, η = 1 is ancestral sampling. NFE = N."""
    del process  # σ-space: DDIM's update is the same for every process
    eta = float(eta)
    if not (0.0 <= eta <= 1.0):
        raise ValueError(f"eta must be in [0, 1]; got {eta!r}")
    table = sigma_table(sigmas, x)
    D = CountingDenoiser(denoiser, class_labels)
    for i, sig, sig_next, last in sigma_steps(table):
        if last:
            den = D(x, sig)
            x = den
        else:
            up = eta * posterior_sigma_up(sig, sig_next)
            down = (sig_next**2 - up**2).clamp(min=0).sqrt()
            x, den = _sigma_space_step(D, x, sig, down, up, generator, noisy=eta > 0)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig.expand(x.shape[0]), "denoised": den})
    return SamplerOutput(x, float(D.calls))
