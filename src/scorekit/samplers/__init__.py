"""The sampler family. Every sampler: fn(denoiser, x, sigmas, *, process, generator, callback, class_labels, **opts)
→ SamplerOutput(x, nfe).

`SAMPLERS` maps the command-line name to a `SamplerSpec`; `get_sampler(name)` looks one up, and
`spec.check_options(opts)` validates `--sampler-opt key=value` pairs against the options it accepts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from .base import SamplerOutput
from .ddpm import sample_ancestral, sample_ddim
from .deis import sample_deis
from .edm import sample_edm_stochastic, sample_heun
from .ipndm import sample_ipndm
from .langevin import sample_annealed_langevin, sample_langevin
from .multistep import sample_dpmpp_2m, sample_dpmpp_3m
from .ode import sample_pf_euler, sample_rk45
from .schedules import SCHEDULES, Schedule, get_sigmas
from .sde import sample_euler_maruyama, sample_pc, sample_reverse_diffusion
from .unipc import sample_unipc

__all__ = [
    "SAMPLERS",
    "SamplerSpec",
    "SamplerOutput",
    "get_sampler",
    "get_sigmas",
    "SCHEDULES",
    "Schedule",
    "register",
    "sample_ancestral",
    "sample_annealed_langevin",
    "sample_ddim",
    "sample_deis",
    "sample_ipndm",
    "sample_unipc",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
    "sample_edm_stochastic",
    "sample_euler_maruyama",
    "sample_heun",
    "sample_langevin",
    "sample_pc",
    "sample_pf_euler",
    "sample_reverse_diffusion",
    "sample_rk45",
]


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its function, whether it is deterministic, its default σ schedule, its NFE for N
    steps when that is fixed (`nfe(steps, **options)`; None for adaptive solvers) and the options it accepts."""

    name: str
    fn: Callable
    deterministic: bool
    default_schedule: str
    nfe: Callable[..., int] | None
    description: str = ""
    options: tuple[str, ...] = ()

    def option_defaults(self) -> dict:
        """The default value of each option, read from the function's signature."""
        params = inspect.signature(self.fn).parameters
        return {k: params[k].default for k in self.options}

    def check_options(self, options: dict) -> dict:
        """Raise ValueError for an option this sampler does not take; returns the options unchanged."""
        bad = sorted(set(options) - set(self.options))
        if bad:
            takes = ", ".join(self.options) if self.options else "no options"
            raise ValueError(f"sampler {self.name!r} has no option {', '.join(bad)} (it takes {takes})")
        return options


SAMPLERS: dict[str, SamplerSpec] = {}


def register(spec: SamplerSpec) -> SamplerSpec:
    SAMPLERS[spec.name] = spec
    return spec


def _pc_nfe(n, corrector_steps=1, **_):
    return n * (int(corrector_steps) + 1)


def _langevin_nfe(n, denoise=True, **_):
    return n + int(bool(denoise))


def _annealed_nfe(n, n_steps_each=5, denoise=True, **_):
    return n * int(n_steps_each) + int(bool(denoise))


# Each sampler's default schedule is the built-in spacing measured best for it over the exact mixtures and the digits
# model (benchmarks/results/sampler_defaults.md; tests/test_sampler_defaults.py keeps the two in step).
for _spec in (
    SamplerSpec(
        "euler_maruyama",
        sample_euler_maruyama,
        False,
        "uniform_t",
        lambda n, **_: n,
        "Euler–Maruyama on the reverse SDE of the process",
    ),
    SamplerSpec(
        "reverse_diffusion",
        sample_reverse_diffusion,
        False,
        "logsnr",
        lambda n, **_: n,
        "reverse-diffusion predictor (the forward discretisation run backwards)",
    ),
    SamplerSpec(
        "pc",
        sample_pc,
        False,
        "uniform_t",
        _pc_nfe,
        "predictor + Langevin corrector with the signal-to-noise step rule",
        ("snr", "corrector_steps", "predictor"),
    ),
    SamplerSpec(
        "ancestral",
        sample_ancestral,
        False,
        "logsnr",
        lambda n, **_: n,
        "DDPM ancestral sampling (β̃ 'posterior' or β 'forward' variance; mean_shift: Alg. 1 classifier guidance)",
        ("variance", "mean_shift"),
    ),
    SamplerSpec("ddim", sample_ddim, True, "logsnr", lambda n, **_: n, "DDIM; eta=0 deterministic", ("eta",)),
    SamplerSpec(
        "pf_euler",
        sample_pf_euler,
        True,
        "karras",
        lambda n, **_: n,
        "Euler on the probability-flow ODE of the process",
    ),
    SamplerSpec(
        "rk45",
        sample_rk45,
        True,
        "uniform_t",
        None,
        "adaptive RK45 on the probability-flow ODE (NFE from the solver)",
        ("rtol", "atol", "backend"),
    ),
    SamplerSpec("heun", sample_heun, True, "logsnr", lambda n, **_: 2 * n - 1, "EDM Algorithm 1 (Heun)"),
    SamplerSpec(
        "edm_stochastic",
        sample_edm_stochastic,
        False,
        "logsnr",
        lambda n, **_: 2 * n - 1,
        "EDM Algorithm 2 (stochastic Heun with churn)",
        ("s_churn", "s_tmin", "s_tmax", "s_noise"),
    ),
    SamplerSpec("dpmpp_2m", sample_dpmpp_2m, True, "logsnr", lambda n, **_: n, "DPM-Solver++(2M)"),
    SamplerSpec(
        "dpmpp_3m", sample_dpmpp_3m, True, "logsnr", lambda n, **_: n, "DPM-Solver++(3M), third-order multistep"
    ),
    SamplerSpec(
        "ipndm",
        sample_ipndm,
        True,
        "logsnr",  # measured: benchmarks/results/sampler_defaults.md
        lambda n, **_: n,
        "improved PNDM (Adams–Bashforth ≤ 4 on ε in σ)",
        ("max_order", "lower_order_final"),
    ),
    SamplerSpec(
        "unipc",
        sample_unipc,
        True,
        "logsnr",  # measured: benchmarks/results/sampler_defaults.md
        lambda n, **_: n,
        "UniPC: UniP predictor + free UniC corrector",
        ("order", "variant", "corrector", "lower_order_final"),
    ),
    SamplerSpec(
        "deis",
        sample_deis,
        True,
        "logsnr",  # measured: benchmarks/results/sampler_defaults.md
        lambda n, **_: n,
        "DEIS tAB (orders 1–3) in σ",
        ("order", "lower_order_final"),
    ),
    SamplerSpec(
        "langevin",
        sample_langevin,
        False,
        "log",
        _langevin_nfe,
        "unadjusted Langevin at a fixed σ (default: the schedule's smallest)",
        ("sigma", "step_scale", "step_size", "denoise"),
    ),
    SamplerSpec(
        "annealed_langevin",
        sample_annealed_langevin,
        False,
        "log",
        _annealed_nfe,
        "NCSN annealed Langevin dynamics (T steps per level)",
        ("n_steps_each", "step_scale", "step_size", "denoise"),
    ),
):
    register(_spec)


def get_sampler(name: str) -> SamplerSpec:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r} (choose from {', '.join(sorted(SAMPLERS))})")
    return SAMPLERS[name]
