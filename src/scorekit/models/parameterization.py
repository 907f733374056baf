"""From a network to the denoiser D(x, σ): preconditioning D = c_skip·x + c_out·F(c_in·x, c_noise).

Karras et al. 2022, Table 1 / eq. 7. A network trained to predict ε, the score, x0 or v under any process is
wrapped once into D; samplers, guidance, DMCMC and likelihood only ever see D.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..processes import DDPM, Process, get_process
from .registry import build_network

__all__ = [
    "Denoiser",
    "NetworkDenoiser",
    "Preconditioning",
    "PARAMETERIZATIONS",
    "CONDITIONINGS",
    "sigma_vector",
    "bcast",
    "denoiser_from_config",
]

PARAMETERIZATIONS = ("eps", "score", "x0", "v", "edm")
CONDITIONINGS = ("t", "t999", "sigma", "log_sigma", "index")


def sigma_vector(sigma, x: Tensor) -> Tensor:
    """σ as a [B] tensor in x's dtype/device, from a float, 0-d tensor or [B] tensor."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    return s.reshape(x.shape[0])


def bcast(v: Tensor, x: Tensor) -> Tensor:
    """[B] → [B, 1, …, 1] to broadcast against x."""
    return v.reshape(-1, *([1] * (x.ndim - 1)))


class Denoiser(nn.Module):
    """The denoiser protocol: all that samplers, guidance and Denoising MCMC may ask of a model.

    - `denoise(x, σ, class_labels)` (or calling it): D(x, σ) ≈ E[x0 | x0 + σ·n = x] (Karras et al. 2022, §2);
      `score(x, σ)` = (D − x)/σ².
    - `data_shape`, `num_classes` (0 if unconditional), `process` (decides default schedules; None = σ-space),
      `sigma_min`, `sigma_max` (the range it is valid for).
    - `null_label`: the label value meaning "no class" (None: class_labels=None is the unconditional call);
      `unconditional(x, σ)` is D(x, σ | ∅). `labels_required`: sampling must give a label per sample.
    - `has_log_density`, `log_density(x, σ)`: log p_σ(x) where known in closed form (MALA's Metropolis test).
    - `network_evals_per_call`: network evaluations behind one call (1; classifier-free guidance: 2), so budgets
      and reports count the network, not the wrapper; `network_evals_at(σ)`: those of a call at noise level σ
      (differs where the cost depends on σ: guidance in a σ interval).
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    num_classes: int = 0
    has_log_density: bool = False

    def __init__(self, process: Process | None = None, data_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.process = process
        self.data_shape = tuple(data_shape) if data_shape is not None else None
        if process is not None:
            self.sigma_min, self.sigma_max = process.sigma_min, process.sigma_max

    def forward(self, x: Tensor, sigma, class_labels: Tensor | None = None) -> Tensor:
        return self.denoise(x, sigma_vector(sigma, x), class_labels)

    def denoise(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def score(self, x: Tensor, sigma, class_labels: Tensor | None = None) -> Tensor:
        """∇_x log p_σ(x) = (D − x)/σ² in σ-space."""
        s = bcast(sigma_vector(sigma, x), x)
        return (self(x, sigma, class_labels) - x) / s**2

    @property
    def null_label(self) -> int | None:
        """The label trained as "no class" (classifier-free guidance's ∅); None: call with class_labels=None."""
        return None

    @property
    def labels_required(self) -> bool:
        """Whether the model must be called with a label per sample (a class-conditional network)."""
        return False

    @property
    def network_evals_per_call(self) -> float:
        """Network evaluations per call of this denoiser (one forward pass of the model)."""
        return 1.0

    def network_evals_at(self, sigma: float) -> float:
        """Network evaluations of one call at noise level `sigma` (here the same at every σ)."""
        return self.network_evals_per_call

    def unconditional(self, x: Tensor, sigma) -> Tensor:
        """D(x, σ | ∅)."""
        null = self.null_label
        return self(x, sigma, None if null is None else torch.full((x.shape[0],), null, device=x.device))

    def log_density(self, x: Tensor, sigma) -> Tensor:
        """log p_σ(x) [B] in σ-space; only where `has_log_density`."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form log-density")


class Preconditioning:
    """c_skip, c_out, c_in, c_noise for a parameterisation under a process (all functions of σ)."""

    def __init__(
        self,
        process: Process,
        parameterization: str = "eps",
        conditioning: str = "t",
        sigma_data: float = 0.5,
    ):
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"unknown parameterization {parameterization!r} (choose from {', '.join(PARAMETERIZATIONS)})"
            )
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {conditioning!r} (choose from {', '.join(CONDITIONINGS)})")
        if conditioning == "index" and not isinstance(process, DDPM):
            raise ValueError("conditioning 'index' needs the discrete ddpm process")
        self.process = process
        self.parameterization = parameterization
        self.conditioning = conditioning
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in) as [B] tensors."""
        p = self.parameterization
        if p in ("eps", "score", "x0"):
            s = self.process.scale_of_sigma(sigma.to(torch.float64)).to(sigma.dtype)
            if p == "eps":
                return torch.ones_like(sigma), -sigma, s
            if p == "score":
                return torch.ones_like(sigma), sigma**2 * s, s
            return torch.zeros_like(sigma), torch.ones_like(sigma), s
        sd = 1.0 if p == "v" else self.sigma_data
        denom = sigma**2 + sd**2
        c_skip = sd**2 / denom
        c_out = sigma * sd / denom.sqrt()
        c_in = 1.0 / denom.sqrt()
        if p == "v":
            c_out = -c_out
        return c_skip, c_out, c_in

    def c_noise(self, sigma: Tensor) -> Tensor:
        c = self.conditioning
        if c == "sigma":
            return sigma
        if c == "log_sigma":
            return 0.25 * sigma.clamp(min=1e-20).log()
        if c == "index":
            return self.process.index_of_sigma(sigma).to(sigma.dtype)
        t = self.process.t_of_sigma(sigma.to(torch.float64)).to(sigma.dtype)
        return 999.0 * t if c == "t999" else t

    def to_config(self) -> dict:
        return {
            "parameterization": self.parameterization,
            "conditioning": self.conditioning,
            "sigma_data": self.sigma_data,
        }


class NetworkDenoiser(Denoiser):
    """D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise[, class_labels]) for a network F.

    `output_channels`: keep only the first C output channels (ADM's learned-variance networks return 2C).
    """

    def __init__(
        self,
        net: nn.Module,
        process: Process | dict | str,
        parameterization: str = "eps",
        conditioning: str = "t",
        sigma_data: float = 0.5,
        data_shape: tuple[int, ...] | None = None,
        num_classes: int = 0,
        output_channels: int | None = None,
    ):
        process = get_process(process)
        super().__init__(process, data_shape)
        self.net = net
        self.precond = Preconditioning(process, parameterization, conditioning, sigma_data)
        self.num_classes = int(num_classes)
        self.output_channels = output_channels

    @property
    def null_label(self) -> int | None:
        """Index `num_classes`: the "no label" embedding of networks trained with condition dropout."""
        return self.num_classes if self.num_classes > 0 else None

    @property
    def labels_required(self) -> bool:
        return self.num_classes > 0

    def network_output(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """F(c_in·x, c_noise) — the raw network output (first `output_channels` channels)."""
        _, _, c_in = self.precond.coefficients(sigma)
        out = self.net(bcast(c_in, x) * x, self.precond.c_noise(sigma), class_labels)
        if self.output_channels is not None:
            out = out[:, : self.output_channels]
        return out

    def denoise(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None) -> Tensor:
        c_skip, c_out, _ = self.precond.coefficients(sigma)
        f = self.network_output(x, sigma, class_labels)
        return bcast(c_skip, x) * x + bcast(c_out, x) * f.to(x.dtype)

    def denoise_with_variance(self, x: Tensor, sigma, class_labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(D(x, σ), v) for a network with 2C output channels: D from the first C, v the raw variance output of the
        other C (learned reverse variances, Nichol & Dhariwal 2021, eq. 15)."""
        sigma = sigma_vector(sigma, x)
        c = x.shape[1]
        c_skip, c_out, c_in = self.precond.coefficients(sigma)
        out = self.net(bcast(c_in, x) * x, self.precond.c_noise(sigma), class_labels)
        if out.shape[1] != 2 * c:
            raise ValueError(
                f"learned variances need a network with {2 * c} output channels (mean and variance), it returns "
                f"{out.shape[1]}"
            )
        den = bcast(c_skip, x) * x + bcast(c_out, x) * out[:, :c].to(x.dtype)
        return den, out[:, c:].to(x.dtype)

    def target(self, x0: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """Network-output-space regression target F* = (x0 − c_skip·x)/c_out for noisy x of clean x0."""
        c_skip, c_out, _ = self.precond.coefficients(sigma)
        return (x0 - bcast(c_skip, x) * x) / bcast(c_out, x)


def log_sigma_uniform(n: int, sigma_min: float, sigma_max: float, generator=None, device=None) -> Tensor:
    """σ log-uniform on [σ_min, σ_max] (a common training distribution)."""
    u = torch.rand(n, generator=generator, device=device)
    return torch.exp(math.log(sigma_min) + u * (math.log(sigma_max) - math.log(sigma_min)))


def denoiser_from_config(config: dict, net: nn.Module | None = None) -> NetworkDenoiser:
    """A run's config (sections "network", "process", "denoiser", "data") as D(x, σ): the one place this happens.

    `net` replaces the network built from config["network"] (trained or loaded weights, a DDP wrapper).
    """
    d = config["denoiser"]
    net = build_network(config["network"]) if net is None else net
    return NetworkDenoiser(
        net,
        get_process(config["process"]),
        parameterization=d.get("parameterization", "eps"),
        conditioning=d.get("conditioning", "t"),
        sigma_data=d.get("sigma_data", 0.5),
        data_shape=tuple(config["data"]["shape"]),
        num_classes=int(config["data"].get("num_classes", 0)) if d.get("class_conditional") else 0,
        output_channels=d.get("output_channels"),
    )
