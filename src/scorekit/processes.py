"""Diffusion processes as maps from time t to a noise level σ(t) and a scale s(t).

A process perturbs data as x_t = s(t)·(x0 + σ(t)·n) (Karras et al. 2022, eq. 1–4). Everything a sampler
needs — the forward SDE's drift f and diffusion g, the reverse SDE, the probability-flow ODE, the marginal,
the prior — follows from σ(t) and s(t); each subclass gives them in closed form.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Process",
    "VESDE",
    "VPSDE",
    "SubVPSDE",
    "DDPM",
    "EDM",
    "get_process",
    "PROCESSES",
    "fit_sigma_max",
]


def fit_sigma_max(x: Tensor, max_points: int = 5000) -> float:
    """The largest noise level a model of data `x` ([N, …]) needs: twice the largest distance among the points and
    the origin (the prior's centre). Song & Ermon (2020, technique 1) take σ_max as large as the largest pairwise
    distance so that p_σmax covers every pair of modes; a sampler that starts from N(0, σ_max²·I) must also cover
    the data's offset from the origin, and the factor 2 is room for both. benchmarks/results/sigma_range.md measures
    the start's mismatch: invisible in digits FID, visible in converged sampling of narrow 2-D mixtures (why only
    VE/EDM runs, whose σ_max is a modelling choice, take this value). Up to `max_points` rows, drawn with a fixed
    seed, so the value is a property of the data, not of the call."""
    pts = x.detach().reshape(x.shape[0], -1).to(torch.float64).cpu()
    if pts.shape[0] == 0 or not bool(torch.isfinite(pts).all()):
        raise ValueError("fit_sigma_max needs finite data with at least one point")
    if pts.shape[0] > max_points:
        pts = pts[torch.randperm(pts.shape[0], generator=torch.Generator().manual_seed(0))[:max_points]]
    pts = torch.cat([pts, torch.zeros(1, pts.shape[1], dtype=pts.dtype)])
    far = max(float(torch.cdist(pts[i : i + 1024], pts).max()) for i in range(0, pts.shape[0], 1024))
    return 2.0 * far


def _as_tensor(t: Any, like: Tensor | None = None) -> Tensor:
    if isinstance(t, Tensor):
        return t
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.get_default_dtype()
    device = like.device if like is not None else None
    return torch.as_tensor(t, dtype=dtype, device=device)


class Process:
    """Abstract process: subclasses define σ(t), s(t), their t-derivatives and t(σ)."""

    name = "process"
    t_min: float = 1e-3
    t_max: float = 1.0

    # --- the two functions that define a process -------------------------------------------------
    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def scale(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma_deriv(self, t: Tensor) -> Tensor:
        """dσ/dt."""
        raise NotImplementedError

    def scale_deriv(self, t: Tensor) -> Tensor:
        """ds/dt."""
        raise NotImplementedError

    def t_of_sigma(self, sigma: Tensor) -> Tensor:
        """Inverse of σ(t)."""
        raise NotImplementedError

    # --- everything else follows -----------------------------------------------------------------
    @property
    def sigma_min(self) -> float:
        return float(self.sigma(torch.tensor(self.t_min, dtype=torch.float64)))

    @property
    def sigma_max(self) -> float:
        return float(self.sigma(torch.tensor(self.t_max, dtype=torch.float64)))

    @property
    def prior_std(self) -> float:
        """Std of x_process at t = t_max, per dimension, for data of ~unit scale."""
        return 1.0

    def scale_of_sigma(self, sigma: Tensor) -> Tensor:
        sigma = _as_tensor(sigma)
        return self.scale(self.t_of_sigma(sigma))

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of p_t(x | x0) in process space: s(t)·x0 and s(t)·σ(t)."""
        t = _as_tensor(t, x0)
        s = _bcast(self.scale(t), x0)
        return s * x0, s * _bcast(self.sigma(t), x0)

    def drift_coef(self, t: Tensor) -> Tensor:
        """f(t) in dx = f(t)·x dt + g(t) dw (f(t) = ṡ/s, EDM eq. 4)."""
        return self.scale_deriv(t) / self.scale(t)

    def diffusion(self, t: Tensor) -> Tensor:
        """g(t) = s·sqrt(2 σ σ̇) (EDM eq. 4)."""
        return self.scale(t) * torch.sqrt(2.0 * self.sigma(t) * self.sigma_deriv(t))

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Forward SDE (drift f(x,t), diffusion g(t)) in process space."""
        t = _as_tensor(t, x)
        return _bcast(self.drift_coef(t), x) * x, self.diffusion(t)

    def reverse_drift(self, x: Tensor, t: Tensor, score: Tensor, probability_flow: bool = False) -> Tensor:
        """Drift of the reverse SDE f − g²∇log p (Anderson 1982), or of the PF ODE f − ½g²∇log p."""
        t = _as_tensor(t, x)
        f, g = self.sde(x, t)
        g2 = _bcast(g, x) ** 2
        return f - (0.5 if probability_flow else 1.0) * g2 * score

    def discretize(self, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """Exact forward transition from t_next < t to t: x_t = a·x_{t_next} + sqrt(v)·z, returns (a, v)."""
        s_t, s_n = self.scale(t), self.scale(t_next)
        a = s_t / s_n
        v = s_t**2 * (self.sigma(t) ** 2 - self.sigma(t_next) ** 2)
        return a, v

    def prior_sample(self, shape, generator: torch.Generator | None = None, device=None, dtype=None) -> Tensor:
        """Sample of x_process at t_max."""
        return self.prior_std * torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def prior_logp(self, x: Tensor) -> Tensor:
        """log N(x; 0, prior_std²·I) summed over all but the first dimension."""
        d = x[0].numel()
        var = self.prior_std**2
        return -0.5 * d * math.log(2 * math.pi * var) - x.flatten(1).pow(2).sum(1) / (2 * var)

    def default_t_eps(self) -> float:
        return self.t_min

    def to_config(self) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.to_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a scalar or [B] tensor so it broadcasts against x of shape [B, ...]."""
    v = _as_tensor(v, x)
    if v.ndim == 0:
        return v.to(dtype=x.dtype, device=x.device)
    return v.to(dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))


class VESDE(Process):
    """Variance-exploding SDE (Song et al. 2021, eq. 30): σ(t) = σ_min (σ_max/σ_min)^t, s = 1."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 1e-5):
        if not (0 < sigma_min < sigma_max):
            raise ValueError(f"VE process needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self._smin, self._smax = float(sigma_min), float(sigma_max)
        self.t_min = float(t_min)
        self._log_ratio = math.log(self._smax / self._smin)

    @property
    def sigma_min(self) -> float:  # σ(0): the VE SDE's own σ_min
        return self._smin

    @property
    def sigma_max(self) -> float:
        return self._smax

    @property
    def prior_std(self) -> float:
        return self._smax

    def sigma(self, t):
        t = _as_tensor(t)
        return self._smin * torch.exp(t * self._log_ratio)

    def sigma_deriv(self, t):
        return self.sigma(t) * self._log_ratio

    def scale(self, t):
        t = _as_tensor(t)
        return torch.ones_like(t)

    def scale_deriv(self, t):
        t = _as_tensor(t)
        return torch.zeros_like(t)

    def t_of_sigma(self, sigma):
        sigma = _as_tensor(sigma)
        return torch.log(sigma / self._smin) / self._log_ratio

    def drift_coef(self, t):
        return torch.zeros_like(_as_tensor(t))

    def diffusion(self, t):
        return self.sigma(t) * math.sqrt(2 * self._log_ratio)

    def to_config(self):
        return {"name": self.name, "sigma_min": self._smin, "sigma_max": self._smax, "t_min": self.t_min}


class _LinearBeta:
    """Shared algebra of VP and sub-VP: β(t) = β_min + t(β_max − β_min), log α(t) = −½∫β."""

    def _init_beta(self, beta_min: float, beta_max: float):
        if not (0 < beta_min < beta_max):
            raise ValueError(f"needs 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t):
        return self.beta_min + _as_tensor(t) * (self.beta_max - self.beta_min)

    def log_alpha(self, t):
        t = _as_tensor(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def t_of_log_alpha(self, log_alpha):
        """Solve ¼Δβ t² + ½β_min t + log α = 0 for t ≥ 0."""
        db, b0 = self.beta_max - self.beta_min, self.beta_min
        return (torch.sqrt(b0**2 - 4.0 * db * log_alpha) - b0) / db


class VPSDE(_LinearBeta, Process):
    """Variance-preserving SDE (Song et al. 2021, eq. 32): s = α(t), σ = sqrt(1 − α²)/α."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3):
        self._init_beta(beta_min, beta_max)
        self.t_min = float(t_min)

    def scale(self, t):
        return torch.exp(self.log_alpha(t))

    def scale_deriv(self, t):
        return -0.5 * self.beta(t) * self.scale(t)

    def sigma(self, t):
        # σ² = 1/α² − 1 = expm1(−2 log α)
        return torch.sqrt(torch.expm1(-2.0 * self.log_alpha(t)))

    def sigma_deriv(self, t):
        # dσ²/dt = β/α² → dσ/dt = β/(2α²σ)
        s = self.sigma(t)
        return self.beta(t) * torch.exp(-2.0 * self.log_alpha(t)) / (2.0 * s)

    def t_of_sigma(self, sigma):
        sigma = _as_tensor(sigma)
        return self.t_of_log_alpha(-0.5 * torch.log1p(sigma**2))

    def drift_coef(self, t):
        return -0.5 * self.beta(t)

    def diffusion(self, t):
        return torch.sqrt(self.beta(t))

    def to_config(self):
        return {"name": self.name, "beta_min": self.beta_min, "beta_max": self.beta_max, "t_min": self.t_min}


class SubVPSDE(_LinearBeta, Process):
    """sub-VP SDE (Song et al. 2021, eq. 34): s = α(t), std = 1 − α², so σ = (1 − α²)/α."""

    name = "subvp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3):
        self._init_beta(beta_min, beta_max)
        self.t_min = float(t_min)

    def scale(self, t):
        return torch.exp(self.log_alpha(t))

    def scale_deriv(self, t):
        return -0.5 * self.beta(t) * self.scale(t)

    def sigma(self, t):
        la = self.log_alpha(t)
        return -torch.expm1(2.0 * la) / torch.exp(la)

    def sigma_deriv(self, t):
        # σ = 1/α − α → dσ/dt = (−1/α² − 1)·α' with α' = −½βα
        a = self.scale(t)
        return 0.5 * self.beta(t) * (1.0 / a + a)

    def t_of_sigma(self, sigma):
        sigma = _as_tensor(sigma)
        # α² + σα − 1 = 0 → α = (sqrt(σ² + 4) − σ)/2 = 2/(sqrt(σ²+4) + σ)
        alpha = 2.0 / (torch.sqrt(sigma**2 + 4.0) + sigma)
        return self.t_of_log_alpha(torch.log(alpha))

    def drift_coef(self, t):
        return -0.5 * self.beta(t)

    def diffusion(self, t):
        # g² = β(1 − α⁴)
        return torch.sqrt(self.beta(t) * -torch.expm1(4.0 * self.log_alpha(t)))

    def to_config(self):
        return {"name": self.name, "beta_min": self.beta_min, "beta_max": self.beta_max, "t_min": self.t_min}


class DDPM(Process):
    """Discrete DDPM chain (Ho et al. 2020) with T steps; linear or cosine (Nichol & Dhariwal 2021) β.

    Step i ∈ {0, …, T−1} sits at t = (i+1)/T with s = sqrt(ᾱ_i), σ = sqrt((1 − ᾱ_i)/ᾱ_i). Between steps
    log σ is interpolated linearly in t, which gives a continuous σ(t) for samplers and t(σ) for
    any σ in [σ_0, σ_{T−1}].
    """

    name = "ddpm"

    def __init__(
        self,
        num_steps: int = 1000,
        schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        cosine_s: float = 0.008,
        betas: list[float] | None = None,
    ):
        if betas is not None:  # an explicit β table (diffusers' trained_betas); its length sets T
            num_steps, schedule = len(betas), "explicit"
        if int(num_steps) < 2:
            raise ValueError(f"DDPM needs num_steps >= 2, got {num_steps}")
        self.num_steps = int(num_steps)
        self.schedule = schedule
        self.beta_start, self.beta_end, self.cosine_s = float(beta_start), float(beta_end), float(cosine_s)
        T = self.num_steps
        if schedule == "linear":
            if not (0 < beta_start < beta_end < 1):
                raise ValueError(
                    f"DDPM linear schedule needs 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}"
                )
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        elif schedule == "cosine":
            f = lambda u: torch.cos((u + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
            u = torch.arange(T + 1, dtype=torch.float64) / T
            abar = f(u) / f(torch.zeros((), dtype=torch.float64))
            betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
        elif schedule == "scaled_linear":  # linear in sqrt(β) (latent diffusion's schedule)
            if not (0 < beta_start < beta_end < 1):
                raise ValueError(
                    f"DDPM scaled_linear schedule needs 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}"
                )
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
        elif schedule == "explicit":
            if betas is None:
                raise ValueError("DDPM schedule 'explicit' needs betas=[...]")
            betas = torch.as_tensor(betas, dtype=torch.float64).reshape(-1)
            if not bool(((betas > 0) & (betas < 1)).all()):
                raise ValueError("DDPM explicit betas must all lie in (0, 1)")
        else:
            raise ValueError(f"unknown DDPM schedule {schedule!r} (linear, cosine, scaled_linear, or betas=[...])")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)
        self.sigmas = torch.sqrt((1 - self.alphas_cumprod) / self.alphas_cumprod)
        self.log_sigmas = self.sigmas.log()
        self.t_min = 1.0 / T

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def _index(self, t):
        return _as_tensor(t) * self.num_steps - 1.0

    def index_of_sigma(self, sigma) -> Tensor:
        """Fractional step index i(σ) (the conditioning an ε-network trained on integer steps expects)."""
        sigma = _as_tensor(sigma)
        ls = self.log_sigmas.to(sigma.device)
        x = sigma.to(torch.float64).clamp(min=1e-30).log()
        idx = torch.searchsorted(ls, x.clamp(ls[0], ls[-1]).contiguous()).clamp(1, self.num_steps - 1)
        lo, hi = ls[idx - 1], ls[idx]
        w = ((x - lo) / (hi - lo)).clamp(0, 1)
        return (idx - 1 + w).to(sigma.dtype if sigma.is_floating_point() else torch.float64)

    def sigma(self, t):
        t = _as_tensor(t)
        i = self._index(t).to(torch.float64).clamp(0, self.num_steps - 1)
        lo = i.floor().long().clamp(0, self.num_steps - 2)
        w = i - lo
        ls = self.log_sigmas.to(t.device)
        return torch.exp((1 - w) * ls[lo] + w * ls[lo + 1]).to(t.dtype)

    def sigma_deriv(self, t):
        t = _as_tensor(t)
        i = self._index(t).to(torch.float64).clamp(0, self.num_steps - 1)
        lo = i.floor().long().clamp(0, self.num_steps - 2)
        ls = self.log_sigmas.to(t.device)
        return (self.sigma(t).to(torch.float64) * (ls[lo + 1] - ls[lo]) * self.num_steps).to(t.dtype)

    def scale(self, t):
        return torch.rsqrt(1 + self.sigma(t) ** 2)

    def scale_deriv(self, t):
        s = self.sigma(t)
        return -s * self.sigma_deriv(t) * (1 + s**2) ** -1.5

    def t_of_sigma(self, sigma):
        return (self.index_of_sigma(sigma) + 1.0) / self.num_steps

    def to_config(self):
        return {
            "name": self.name,
            "num_steps": self.num_steps,
            "schedule": self.schedule,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "cosine_s": self.cosine_s,
            **({"betas": [float(b) for b in self.betas]} if self.schedule == "explicit" else {}),
        }


class EDM(Process):
    """Plain σ-space (Karras et al. 2022): σ(t) = t, s(t) = 1. The reverse SDE here is dx = −2σ∇log p dσ + …"""

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        if not (0 < sigma_min < sigma_max):
            raise ValueError(f"EDM process needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self._smin, self._smax = float(sigma_min), float(sigma_max)
        self.t_min, self.t_max = self._smin, self._smax

    @property
    def sigma_min(self):
        return self._smin

    @property
    def sigma_max(self):
        return self._smax

    @property
    def prior_std(self):
        return self._smax

    def sigma(self, t):
        return _as_tensor(t).clone()

    def sigma_deriv(self, t):
        return torch.ones_like(_as_tensor(t))

    def scale(self, t):
        return torch.ones_like(_as_tensor(t))

    def scale_deriv(self, t):
        return torch.zeros_like(_as_tensor(t))

    def t_of_sigma(self, sigma):
        return _as_tensor(sigma).clone()

    def to_config(self):
        return {"name": self.name, "sigma_min": self._smin, "sigma_max": self._smax}


PROCESSES = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE, "ddpm": DDPM, "edm": EDM}


def get_process(spec: str | dict | Process, **overrides) -> Process:
    """Build a process from a name (`ve`, `vp`, `subvp`, `ddpm`, `edm`), a config dict, or pass one through."""
    if isinstance(spec, Process):
        return spec
    if isinstance(spec, str):
        cfg = {"name": spec}
    elif isinstance(spec, dict):
        cfg = dict(spec)
    else:
        raise TypeError(f"cannot build a process from {type(spec).__name__}")
    cfg.update(overrides)
    name = cfg.pop("name", None)
    if name not in PROCESSES:
        raise ValueError(f"unknown process {name!r} (choose from {', '.join(PROCESSES)})")
    try:
        return PROCESSES[name](**cfg)
    except TypeError as e:
        raise ValueError(f"bad settings for process {name!r}: {e}") from None
