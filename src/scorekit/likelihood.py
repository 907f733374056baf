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

from .ddpm_bound import (
    ddpm_posterior,
    ddpm_prior_kl,
    ddpm_reverse_log_var,
    ddpm_vlb_term,
    denoise_for_bound,
    discretized_gaussian_log_likelihood,
)
from .divergence import PROBE_NOISES, exact_divergence, hutchinson_divergence, probe_vectors
from .models.parameterization import bcast
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
    "ddpm_reverse_log_var",
    "PROBE_NOISES",
]


@dataclass
class LikelihoodResult:
    """Per-sample negative log-likelihood in nats (model space) and the denoiser evaluations it cost."""

    nll_nats: Tensor
    nfe: float


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
            den, v_raw = denoise_for_bound(denoiser, x, sigma, class_labels, variance)
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
