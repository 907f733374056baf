"""The sampler family. Every sampler: fn(denoiser, x, sigmas, *, process, generator, callback, **opts).

`SAMPLERS` maps the command-line name to a `SamplerSpec`; `get_sampler(name)` looks one up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import SamplerOutput
from .ode import sample_pf_euler
from .schedules import SCHEDULES, get_sigmas
from .sde import sample_euler_maruyama

__all__ = ["SAMPLERS", "SamplerSpec", "SamplerOutput", "get_sampler", "get_sigmas", "SCHEDULES", "register"]


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its function, whether it is deterministic, its default σ schedule, and
    its NFE for N steps when that is fixed (None for adaptive solvers)."""

    name: str
    fn: Callable
    deterministic: bool
    default_schedule: str
    nfe: Callable[[int], int] | None
    description: str = ""


SAMPLERS: dict[str, SamplerSpec] = {}


def register(spec: SamplerSpec) -> SamplerSpec:
    SAMPLERS[spec.name] = spec
    return spec


register(
    SamplerSpec(
        "euler_maruyama",
        sample_euler_maruyama,
        False,
        "uniform_t",
        lambda n: n,
        "Euler–Maruyama on the reverse SDE of the process",
    )
)
register(
    SamplerSpec(
        "pf_euler",
        sample_pf_euler,
        True,
        "uniform_t",
        lambda n: n,
        "Euler on the probability-flow ODE of the process",
    )
)


def get_sampler(name: str) -> SamplerSpec:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r} (choose from {', '.join(sorted(SAMPLERS))})")
    return SAMPLERS[name]
