"""Pieces of the DDPM variational bound (Ho et al. 2020, eq. 5–7, 13; Nichol & Dhariwal 2021, eq. 15), shared by
the `ddpm_vlb` / `ddpm_hybrid` objectives and the bound's NLL in `likelihood`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .models.parameterization import bcast
from .processes import DDPM

__all__ = [
    "ddpm_posterior",
    "discretized_gaussian_log_likelihood",
    "ddpm_reverse_log_var",
    "ddpm_vlb_term",
    "ddpm_prior_kl",
    "denoise_for_bound",
]

_LOG2PI = math.log(2 * math.pi)


def denoise_for_bound(denoiser, x: Tensor, sigma: Tensor, class_labels, variance: str):
    """(D(x, σ), raw variance output v or None): v from `denoise_with_variance` when the variances are learned."""
    if variance != "learned":
        return denoiser(x, sigma, class_labels), None
    if not hasattr(denoiser, "denoise_with_variance"):
        raise ValueError("learned reverse variances need a denoiser whose network returns 2C channels")
    return denoiser.denoise_with_variance(x, sigma, class_labels)


def ddpm_posterior(process: DDPM, step: Tensor) -> dict[str, Tensor]:
    """q(x_{i−1} | x_i, x0) = N(c0·x0 + c1·x_i, β̃_i) (Ho et al. 2020, eq. 6–7) for 0-based steps i (float64).

    At i = 0 (c0 = 1, c1 = 0) the "posterior mean" is x0 itself; `log_var_clipped` replaces β̃_0 = 0 by β̃_1.
    """
    step = step.to(torch.long).cpu()
    abar = process.alphas_cumprod
    abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    beta = process.betas
    var = beta * (1 - abar_prev) / (1 - abar)
    var_clipped = torch.cat([var[1:2], var[1:]])
    c0 = abar_prev.sqrt() * beta / (1 - abar)
    c1 = (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar)
    return {
        "c0": c0[step],
        "c1": c1[step],
        "var": var[step],
        "log_var_clipped": var_clipped.log()[step],
        "log_beta": beta.log()[step],
        "log_beta_large": torch.cat([var[1:2], beta[1:]]).log()[step],
        "scale": abar[step].sqrt(),
    }


def _normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_var: Tensor, num_bins: int = 256) -> Tensor:
    """log P(x) of 8-bit data in [-1, 1] under N(mean, e^log_var) integrated over its bin (Ho et al. 2020, eq. 13).

    Bins have width 2/(num_bins − 1); the edge bins extend to ±∞.
    """
    half = 1.0 / (num_bins - 1)
    inv_std = torch.exp(-0.5 * log_var)
    cdf_plus = _std_normal_cdf((x - mean + half) * inv_std)
    cdf_min = _std_normal_cdf((x - mean - half) * inv_std)
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    edge = 1.0 - half / 2
    return torch.where(x < -edge, log_cdf_plus, torch.where(x > edge, log_one_minus_cdf_min, log_delta))


def _bc(v: Tensor, x: Tensor) -> Tensor:
    return bcast(v.to(device=x.device, dtype=x.dtype), x)


def ddpm_reverse_log_var(process: DDPM, step: Tensor, variance: str, v_raw: Tensor | None, like: Tensor) -> Tensor:
    """log Σ_θ of p(x_{i−1} | x_i): β̃ ("small"), β ("large") or learned (Nichol & Dhariwal 2021, eq. 15)."""
    post = ddpm_posterior(process, step)
    if variance == "small":
        return _bc(post["log_var_clipped"], like).expand_as(like)
    if variance == "large":
        return _bc(post["log_beta_large"], like).expand_as(like)
    if variance == "learned":
        if v_raw is None:
            raise ValueError("learned variances need the network's variance output")
        frac = (v_raw + 1) / 2  # the released code maps the output from [-1, 1] to [0, 1]
        return frac * _bc(post["log_beta"], like) + (1 - frac) * _bc(post["log_var_clipped"], like)
    raise ValueError(f"reverse variance must be small, large or learned, got {variance!r}")


def ddpm_vlb_term(
    process: DDPM,
    x0: Tensor,
    x_sigma: Tensor,
    step: Tensor,
    denoised: Tensor,
    variance: str = "small",
    v_raw: Tensor | None = None,
    decoder: str = "gaussian",
) -> Tensor:
    """L_{i−1} = KL(q(x_{i−1}|x_i, x0) ‖ p_θ(x_{i−1}|x_i)) for i ≥ 1, L_0 = −log p_θ(x0|x_0) at i = 0 ([B], nats).

    `x_sigma` is the σ-space noisy point x0 + σ_i n (process space x_i = √ᾱ_i·x_sigma) and `denoised` = D(x_sigma,
    σ_i); the model mean is the posterior mean with x0 replaced by D (Ho et al. 2020, eq. 7 and §3.2).
    """
    post = ddpm_posterior(process, step)
    x_t = _bc(post["scale"], x0) * x_sigma
    c0, c1 = _bc(post["c0"], x0), _bc(post["c1"], x0)
    mean_q = c0 * x0 + c1 * x_t
    mean_p = c0 * denoised + c1 * x_t
    log_var_p = ddpm_reverse_log_var(process, step, variance, v_raw, x0)
    log_var_q = _bc(post["var"].clamp(min=1e-300).log(), x0).expand_as(x0)
    kl = _normal_kl(mean_q, log_var_q, mean_p, log_var_p).flatten(1).sum(1)
    if decoder == "discretized":
        nll0 = -discretized_gaussian_log_likelihood(x0, denoised, log_var_p)
    elif decoder == "gaussian":
        nll0 = 0.5 * (_LOG2PI + log_var_p + (x0 - denoised) ** 2 * torch.exp(-log_var_p))
    else:
        raise ValueError(f"decoder must be 'discretized' or 'gaussian', got {decoder!r}")
    nll0 = nll0.flatten(1).sum(1)
    return torch.where(step.to(x0.device) == 0, nll0, kl)


def ddpm_prior_kl(process: DDPM, x0: Tensor) -> Tensor:
    """L_T = KL(q(x_T | x0) ‖ N(0, I)) summed over dimensions ([B], nats)."""
    abar = process.alphas_cumprod[-1]
    mean = abar.sqrt().to(x0.dtype) * x0
    log_var = torch.full_like(x0, float(torch.log1p(-abar)))
    return _normal_kl(mean, log_var, torch.zeros_like(x0), torch.zeros_like(x0)).flatten(1).sum(1)
