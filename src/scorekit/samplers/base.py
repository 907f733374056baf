"""What every sampler shares: the output type, NFE counting, σ-schedule indexing, the process default."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..models.parameterization import bcast
from ..processes import EDM, Process

__all__ = [
    "SamplerOutput",
    "CountingDenoiser",
    "sigma_at",
    "sigma_table",
    "sigma_steps",
    "resolve_process",
    "noise_like",
    "bcast",
    "check_choice",
    "ProcessGrid",
    "check_positive",
]


@dataclass
class SamplerOutput:
    """Final samples (σ-space, i.e. data space at σ = 0) and denoiser evaluations per sample."""

    x: Tensor
    nfe: float
    extra: dict = field(default_factory=dict)


class CountingDenoiser:
    """Wraps D and counts batched calls: each call costs one NFE for every sample in the batch."""

    def __init__(self, denoiser: Callable, class_labels: Tensor | None = None):
        self.denoiser = denoiser
        self.class_labels = class_labels
        self.calls = 0

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        self.calls += 1
        if sigma.ndim == 1 and sigma.shape[0] == 1 and x.shape[0] != 1:
            sigma = sigma.expand(x.shape[0])  # a shared schedule's [1] level, as a free [B] view
        if self.class_labels is None:
            return self.denoiser(x, sigma)
        return self.denoiser(x, sigma, self.class_labels)


def sigma_table(sigmas, x: Tensor) -> Tensor:
    """The σ schedule as a checked [1 or B, N+1] table in x's dtype/device: finite, non-increasing, positive and
    ending in 0. A shared [N+1] schedule stays one row (coefficients computed once, broadcast against x)."""
    s = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device)
    if s.ndim == 1:
        s = s[None]
    if s.ndim != 2 or s.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"sigmas must be [N+1] or [batch, N+1]; got {tuple(s.shape)} for batch {x.shape[0]}")
    if s.shape[1] < 2:
        raise ValueError("a σ schedule needs at least two entries (σ_max … 0)")
    if not bool(torch.isfinite(s).all()):
        raise ValueError("σ schedule has NaN or infinite entries")
    if bool((s[:, -1] != 0).any()):
        raise ValueError("a σ schedule must end in 0")
    if bool((s[:, :-1] <= 0).any()):
        raise ValueError("every σ level before the final 0 must be positive")
    if bool((s[:, 1:] > s[:, :-1]).any()):
        raise ValueError("a σ schedule must be non-increasing")
    return s


def sigma_steps(table: Tensor) -> Iterator[tuple[int, Tensor, Tensor, bool]]:
    """(i, σ_i, σ_{i+1}, last) for the N steps of a σ table. On the last step (σ_N = 0) every sampler ends with
    the Tweedie step x ← D(x, σ_{N−1}) (Euler to σ = 0 gives the same, EDM Alg. 1 line 8)."""
    n = table.shape[1] - 1
    for i in range(n):
        yield i, table[:, i], table[:, i + 1], i == n - 1


def sigma_at(table: Tensor, i: int) -> Tensor:
    """σ_i for every sample: [B] (or [1] for a shared schedule)."""
    return table[:, i]


class ProcessGrid:
    """A process's t, s(t), f(t), g(t)² and forward-step (a, v) at every positive level of a σ table, computed
    once (column i ↔ σ_i), so an integrator's step is only arithmetic on x."""

    def __init__(self, process: Process, table: Tensor):
        pos = table[:, :-1]
        self.t = process.t_of_sigma(pos).to(table.dtype)
        self.s = process.scale(self.t).to(table.dtype)
        self.f = process.drift_coef(self.t).to(table.dtype)
        self.g2 = (process.diffusion(self.t) ** 2).to(table.dtype)
        n = pos.shape[1]
        if n > 1:  # (a, v) of x_{t_i} = a·x_{t_{i+1}} + √v·z (process.discretize)
            a, v = process.discretize(self.t[:, :-1], self.t[:, 1:])
            self.a, self.v = a.to(table.dtype), v.to(table.dtype)
        else:
            self.a = self.v = table[:, :0]


def resolve_process(process: Process | None) -> Process:
    """None means plain σ-space (σ(t) = t, s = 1)."""
    return process if process is not None else EDM()


def noise_like(x: Tensor, generator: torch.Generator | Sequence[torch.Generator] | None) -> Tensor:
    """Standard normal noise shaped like x, from one generator or from one generator per sample.

    A list of generators (one per row, as EDM's StackedRandomGenerator) makes every sample's noise
    independent of what else is in the batch, so a sample's trajectory does not depend on its batch.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    gens = list(generator)
    if len(gens) != x.shape[0]:
        raise ValueError(f"got {len(gens)} generators for a batch of {x.shape[0]}")
    return torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype, device=x.device) for g in gens])


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    v = float(value)
    if not (v >= 0 if allow_zero else v > 0) or v != v or v == float("inf"):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite; got {value!r}")
    return v
