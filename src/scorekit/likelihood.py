"""Likelihood: probability-flow ODE NLL, the DDPM variational bound, and bits per dimension.

- `log_likelihood(..., method="ode")`: the instantaneous change of variables along the probability-flow ODE
  (Song et al. 2021, §D.2; Chen et al. 2018, Thm 1), log p_{t_min}(x) = log p_T(x_T) + ∫ ∇·f̃(x_t, t) dt, with an
  adaptive Dormand–Prince solver (torchdiffeq) and the divergence exact (d backward rows) or by Hutchinson's
  estimator (Grathwohl et al. 2019, eq. 9) with Rademacher, Gaussian or sphere probes fixed for the whole solve.
- `log_likelihood(..., method="vlb")`: the DDPM bound L_T + Σ L_{t−1} + L_0 (Ho et al. 2020, eq. 5) with a
  discretised Gaussian decoder for 8-bit images (their eq. 13) or a continuous one for vectors.
- `bits_per_dim`: model-space NLL → bits/dim of 8-bit data, with the log-Jacobian of the [0, 1] ↔ [-1, 1]
  scaling and the log 256 of uniform dequantisation (Theis et al. 2016, §3.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .models.parameterization import bcast, sigma_vector
from .processes import DDPM, EDM, Process

__all__ = [
    "LikelihoodResult",
    "log_likelihood",
    "ode_log_likelihood",
    "ddpm_vlb_nll",
    "ddpm_vlb_term",
    "ddpm_prior_kl",
    "ddpm_posterior",
    "discretized_gaussian_log_likelihood",
    "exact_divergence",
    "hutchinson_divergence",
    "probe_vectors",
    "bits_per_dim",
    "dequantize",
    "discrete_nll_nats",
]

_LOG2PI = math.log(2 * math.pi)


@dataclass
class LikelihoodResult:
    """Per-sample negative log-likelihood in nats (model space) and the denoiser evaluations it cost."""

    nll_nats: Tensor
    nfe: float


# ------------------------------------------------------------------------------------------------------------
# Divergence of the denoiser
# ------------------------------------------------------------------------------------------------------------
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


def _denoiser_dtype(denoiser) -> torch.dtype:
    for p in getattr(denoiser, "parameters", lambda: [])():
        return p.dtype
    return torch.float64


# ------------------------------------------------------------------------------------------------------------
# Probability-flow ODE likelihood
# ------------------------------------------------------------------------------------------------------------
def _resolve_process(denoiser, process: Process | None) -> Process:
    if process is not None:
        return process
    proc = getattr(denoiser, "process", None)
    if proc is not None:
        return proc
    return EDM(float(denoiser.sigma_min), float(denoiser.sigma_max))


def ode_log_likelihood(
    denoiser,
    x_model: Tensor,
    *,
    process: Process | None = None,
    divergence: str = "exact",
    probes: int = 1,
    noise: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator=None,
    class_labels=None,
    solver: str = "dopri5",
) -> LikelihoodResult:
    """NLL of p_{t_min} at x by the probability-flow ODE dx/dt = f x − ½g²∇log p_t (Song et al. 2021, eq. 13, 39).

    Process space: with y = x/s and the σ-space denoiser, ∇log p_t(x) = (D(y, σ) − y)/(σ² s), so the drift is
    f·x − (σ̇/σ)·s·(D − y) and its divergence f·d − (σ̇/σ)(tr ∇_y D − d) (g² = 2s²σσ̇, EDM eq. 4). The prior is
    the process's `prior_logp` at t = 1 (σ-space, process None and no denoiser process: N(0, σ_max²)).
    """
    from torchdiffeq import odeint

    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if int(probes) < 1:
        raise ValueError(f"probes must be a positive integer, got {probes!r}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
            raise ValueError(f"{name} must be a positive number, got {tol!r}")
    proc = _resolve_process(denoiser, process)
    if x_model.ndim < 2 or x_model.shape[0] == 0:
        raise ValueError(f"likelihood needs a batch [B, ...] of data, got shape {tuple(x_model.shape)}")
    shape = x_model.shape[1:]
    b, d = x_model.shape[0], x_model[0].numel()
    ddtype = _denoiser_dtype(denoiser)
    device = x_model.device
    nfe = [0]

    probe = None
    if divergence == "hutchinson":
        probe = probe_vectors((int(probes) * b, *shape), noise, generator, ddtype, device)

    def den_fn(y, sig, lab):
        return denoiser(y.to(ddtype), sig.to(ddtype), lab).to(y.dtype)

    def rhs(t, state):
        x, _ = state
        nfe[0] += 1
        t64 = t.to(torch.float64)
        s = proc.scale(t64).to(x.dtype)
        sig = proc.sigma(t64).to(x.dtype)
        rate = (proc.sigma_deriv(t64) / proc.sigma(t64)).to(x.dtype)  # σ̇/σ = g²/(2 s² σ²)
        f = proc.drift_coef(t64).to(x.dtype)
        y = (x / s).reshape(b, *shape)
        sigv = sig.expand(b)
        if divergence == "exact":
            den, tr = exact_divergence(den_fn, y.to(ddtype), sigv.to(ddtype), class_labels)
        else:
            den, tr = hutchinson_divergence(den_fn, y.to(ddtype), sigv.to(ddtype), probe, class_labels)
        den, tr = den.detach().to(x.dtype).reshape(b, d), tr.detach().to(x.dtype)
        y = y.reshape(b, d)
        dx = f * x - rate * s * (den - y)
        div = f * d - rate * (tr - d)
        return dx, div

    x0 = x_model.detach().to(torch.float64).reshape(b, d)
    t_span = torch.tensor([proc.t_min, proc.t_max], dtype=torch.float64, device=device)
    with torch.no_grad():
        xs, deltas = odeint(
            rhs, (x0, torch.zeros(b, dtype=torch.float64, device=device)), t_span, rtol=rtol, atol=atol, method=solver
        )
    x_t, delta = xs[-1], deltas[-1]
    prior = proc.prior_logp(x_t.reshape(b, *shape))
    return LikelihoodResult(nll_nats=-(prior + delta), nfe=float(nfe[0]))


# ------------------------------------------------------------------------------------------------------------
# DDPM variational bound
# ------------------------------------------------------------------------------------------------------------
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


def ddpm_vlb_nll(
    denoiser,
    x_model: Tensor,
    process: DDPM | None = None,
    *,
    variance: str = "auto",
    decoder: str = "auto",
    generator=None,
    class_labels=None,
    clip_denoised: bool = False,
    progress: Callable[[int], None] | None = None,
) -> LikelihoodResult:
    """The full bound L_T + Σ_{i≥1} L_{i−1} + L_0 with one noise draw per step (T evaluations of D per sample)."""
    from .losses import network_mean_and_variance

    proc = _resolve_process(denoiser, process)
    if not isinstance(proc, DDPM):
        raise ValueError(f"the variational bound needs a discrete ddpm model, got process {proc.name!r}")
    if variance == "auto":
        variance = "learned" if getattr(denoiser, "output_channels", None) is not None else "small"
    if decoder == "auto":
        decoder = "discretized" if x_model.ndim == 4 else "gaussian"
    ddtype = _denoiser_dtype(denoiser)
    x0 = x_model.to(ddtype)
    b = x0.shape[0]
    total = ddpm_prior_kl(proc, x0.double())
    with torch.no_grad():
        for i in range(proc.num_steps):
            step = torch.full((b,), i, dtype=torch.long)
            sigma = proc.sigmas[step].to(device=x0.device, dtype=ddtype)
            noise = torch.randn(x0.shape, generator=generator, dtype=ddtype).to(x0.device)
            x = x0 + bcast(sigma, x0) * noise
            den, v_raw = network_mean_and_variance(denoiser, x, sigma, class_labels, variance)
            if clip_denoised:
                den = den.clamp(-1, 1)
            term = ddpm_vlb_term(
                proc,
                x0.double(),
                x.double(),
                step,
                den.double(),
                variance,
                None if v_raw is None else v_raw.double(),
                decoder,
            )
            total = total + term
            if progress is not None:
                progress(i)
    return LikelihoodResult(nll_nats=total, nfe=float(proc.num_steps))


# ------------------------------------------------------------------------------------------------------------
# Front door
# ------------------------------------------------------------------------------------------------------------
def log_likelihood(
    denoiser,
    x_model: Tensor,
    *,
    process: Process | None = None,
    method: str = "ode",
    divergence: str = "exact",
    probes: int = 1,
    noise: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator=None,
    class_labels=None,
    **options,
) -> LikelihoodResult:
    """NLL (nats, model space) of a batch: `method="ode"` (probability flow) or `"vlb"` (DDPM bound)."""
    if method == "ode":
        if options:
            raise ValueError(f"unknown option(s) for the ODE likelihood: {', '.join(sorted(options))}")
        return ode_log_likelihood(
            denoiser,
            x_model,
            process=process,
            divergence=divergence,
            probes=probes,
            noise=noise,
            rtol=rtol,
            atol=atol,
            generator=generator,
            class_labels=class_labels,
        )
    if method == "vlb":
        return ddpm_vlb_nll(denoiser, x_model, process, generator=generator, class_labels=class_labels, **options)
    raise ValueError(f"likelihood method must be 'ode' or 'vlb', got {method!r}")


# ------------------------------------------------------------------------------------------------------------
# Bits per dimension
# ------------------------------------------------------------------------------------------------------------
def _transform_scale(data_transform) -> float:
    """user → model is x_model = (x_user − shift)/scale; images default to scale ½ ([0, 1] → [-1, 1])."""
    if data_transform is None:
        return 0.5
    scale = getattr(data_transform, "scale", None)
    if scale is None:
        raise ValueError("data_transform must have a 'scale' (x_model = (x_user - shift) / scale)")
    return float(scale)


def discrete_nll_nats(nll_nats: Tensor, dim: int, data_transform=None, num_bins: int = 256) -> Tensor:
    """−log P(k) bound of 8-bit data from the model-space NLL of its dequantised copy y = (k + u)/num_bins.

    p_user(y) = p_model(x)·|dx/dy|^D gives NLL_user = NLL_model + D·ln(scale); the bins have volume num_bins^−D,
    so −log P(k) ≤ E_u[NLL_user] + D·ln(num_bins) (Theis et al. 2016, eq. 9).
    """
    scale = _transform_scale(data_transform)
    return nll_nats + dim * (math.log(scale) + math.log(num_bins))


def bits_per_dim(
    nll_nats: Tensor, dim: int, data_transform=None, dequantize: bool = True, num_bins: int = 256
) -> Tensor:
    """Bits per dimension of 8-bit data. `dequantize=True`: `nll_nats` is a continuous model-space NLL of the
    dequantised data (offsets added: for [-1, 1] models this is NLL/(D ln 2) + 7); False: it is already a
    discrete NLL (e.g. the DDPM bound with a discretised decoder) and is only divided by D ln 2."""
    if int(dim) < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    nll = discrete_nll_nats(nll_nats, dim, data_transform, num_bins) if dequantize else nll_nats
    return nll / (dim * math.log(2.0))


def dequantize(x_user: Tensor, generator=None, num_bins: int = 256) -> Tensor:
    """Uniform dequantisation of 8-bit images in [0, 1]: k = round(x·(num_bins−1)), y = (k + u)/num_bins."""
    k = torch.round(x_user.to(torch.float64).clamp(0, 1) * (num_bins - 1))
    u = torch.rand(x_user.shape, generator=generator, dtype=torch.float64)
    return ((k + u) / num_bins).to(x_user.dtype)
