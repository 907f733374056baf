"""Training objectives. An objective maps (denoiser, clean batch, generator) to a per-sample loss [B].

All denoising objectives regress the network output F onto its target F* = (x0 − c_skip·x)/c_out
(`NetworkDenoiser.target`): for an ε-network this is the DDPM ε-loss, for a score network the
σ²-weighted DSM loss of NCSN, for `edm` the EDM loss (Karras et al. 2022, eq. 8).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .models.parameterization import NetworkDenoiser, bcast
from .processes import DDPM, Process

__all__ = ["Objective", "OBJECTIVES", "get_objective", "sample_training_sigma", "DenoisingObjective"]


def sample_training_sigma(process: Process, n: int, generator=None, device=None, t_min: float | None = None) -> Tensor:
    """σ at training time: t ~ U(t_min, 1) mapped through σ(t); DDPM: integer steps uniform on {0, …, T−1}."""
    if isinstance(process, DDPM):
        i = torch.randint(0, process.num_steps, (n,), generator=generator)
        return process.sigmas[i].float().to(device)
    lo = process.t_min if t_min is None else t_min
    hi = process.t_max
    t = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    return process.sigma(t).float().to(device)


class Objective:
    """Base class: `__call__(denoiser, x0, generator, class_labels=None) -> loss per sample [B]`."""

    name = "objective"

    def __call__(self, denoiser: NetworkDenoiser, x0: Tensor, generator=None, class_labels=None) -> Tensor:
        raise NotImplementedError


class DenoisingObjective(Objective):
    """E_σ E_n ‖F(c_in(x0 + σn), c_noise) − F*‖² with σ from `sigma_sampler(n, generator)`.

    With the default σ sampler this is continuous-time DSM for VE/VP/sub-VP (t ~ U) and the DDPM simple
    loss for the discrete chain (ε-parameterisation).
    """

    def __init__(self, process: Process, sigma_sampler: Callable | None = None, name: str = "dsm"):
        self.process = process
        self.sigma_sampler = sigma_sampler
        self.name = name

    def __call__(self, denoiser, x0, generator=None, class_labels=None):
        n = x0.shape[0]
        if self.sigma_sampler is not None:
            sigma = self.sigma_sampler(n, generator).to(x0.device, x0.dtype)
        else:
            sigma = sample_training_sigma(self.process, n, generator, x0.device).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x = x0 + bcast(sigma, x0) * noise
        target = denoiser.target(x0, x, sigma)
        out = denoiser.network_output(x, sigma, class_labels)
        return (out.float() - target.float()).pow(2).flatten(1).mean(1)


def _edm_sigma_sampler(p_mean: float = -1.2, p_std: float = 1.2):
    def sampler(n, generator=None):
        return torch.exp(p_mean + p_std * torch.randn(n, generator=generator))

    return sampler


OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "dsm": lambda process, **kw: DenoisingObjective(process, name="dsm"),
    "ddpm_simple": lambda process, **kw: DenoisingObjective(process, name="ddpm_simple"),
    "edm": lambda process, p_mean=-1.2, p_std=1.2, **kw: DenoisingObjective(
        process, _edm_sigma_sampler(p_mean, p_std), name="edm"
    ),
}


def get_objective(name: str, process: Process, **options) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r} (choose from {', '.join(sorted(OBJECTIVES))})")
    return OBJECTIVES[name](process, **options)
