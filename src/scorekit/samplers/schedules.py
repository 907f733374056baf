"""σ schedules: uniform in the process's t, log-uniform in σ, log-SNR, Karras ρ, or an explicit list; final 0 appended.

`sigma_max` may be a [B] tensor: each sample then gets its own schedule from its own starting σ
(Denoising MCMC hands the integrator per-sample noise levels), returned as [B, N+1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..processes import Process

__all__ = [
    "Schedule",
    "default_sigma_range",
    "get_sigmas",
    "SCHEDULES",
    "karras_sigmas",
    "log_sigmas",
    "logsnr_sigmas",
    "uniform_t_sigmas",
    "read_schedule_file",
]

SCHEDULES = ("uniform_t", "log", "logsnr", "karras")


def _u(steps: int, sigma_max: Tensor) -> Tensor:
    u = torch.linspace(0, 1, steps, dtype=torch.float64)
    return u if sigma_max.ndim == 0 else u[None].expand(sigma_max.shape[0], -1)


def _append_zero(s: Tensor) -> Tensor:
    return torch.cat([s, torch.zeros_like(s[..., :1])], dim=-1)


def _col(v: Tensor) -> Tensor:
    return v if v.ndim == 0 else v[:, None]


def karras_sigmas(steps: int, sigma_min: float, sigma_max, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, eq. 5: (σ_max^{1/ρ} + u·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ."""
    smax = torch.as_tensor(sigma_max, dtype=torch.float64)
    u = _u(steps, smax)
    a, b = _col(smax) ** (1 / rho), sigma_min ** (1 / rho)
    return _append_zero((a + u * (b - a)) ** rho)


def log_sigmas(steps: int, sigma_min: float, sigma_max) -> Tensor:
    """Geometric σ_max → σ_min (NCSN's noise levels)."""
    smax = torch.as_tensor(sigma_max, dtype=torch.float64)
    u = _u(steps, smax)
    a, b = _col(smax).log(), math.log(sigma_min)
    return _append_zero(torch.exp(a + u * (b - a)))


def logsnr_sigmas(steps: int, sigma_min: float, sigma_max) -> Tensor:
    """Uniform in log-SNR λ = −log σ over steps+1 points from σ_max to σ_min, the last replaced by 0 (DPM-Solver's
    logSNR spacing, Lu et al. 2022 §3.3, with the final step taken straight to σ = 0: σ_min itself is not visited)."""
    full = log_sigmas(steps + 1, sigma_min, sigma_max)
    return torch.cat([full[..., :-2], full[..., -1:]], dim=-1)


def uniform_t_sigmas(steps: int, process: Process, sigma_max, t_end: float | None = None) -> Tensor:
    """σ(t) at t uniform from t(σ_max) down to the process's t_min (score_sde's discretisation)."""
    smax = torch.as_tensor(sigma_max, dtype=torch.float64)
    t0 = process.t_of_sigma(smax).to(torch.float64)
    t1 = float(process.t_min if t_end is None else t_end)
    u = _u(steps, smax)
    t = _col(t0) + u * (t1 - _col(t0))
    return _append_zero(process.sigma(t).to(torch.float64))


def read_schedule_file(path) -> dict:
    """A tuned schedule file (samplers.tuning: {"format", "sampler", "nfe", "sigmas", "model", "teacher", …}), checked:
    "sigmas" is a finite decreasing list from σ_max to 0 with "nfe" + 1 entries. One-line ValueError otherwise."""
    import json
    from pathlib import Path

    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"schedule file not found: {p}") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"schedule file {p} is not readable JSON: {e}") from None
    sig = data.get("sigmas") if isinstance(data, dict) else None
    if not isinstance(sig, list) or len(sig) < 2 or not all(isinstance(v, (int, float)) for v in sig):
        raise ValueError(f"schedule file {p} has no list of numbers 'sigmas'")
    t = torch.tensor(sig, dtype=torch.float64)
    if not torch.isfinite(t).all() or t[-1] != 0 or (t[:-1] <= 0).any() or (t[1:] >= t[:-1]).any():
        raise ValueError(f"schedule file {p}: 'sigmas' must decrease strictly from σ_max to a final 0")
    if "nfe" in data and int(data["nfe"]) != len(sig) - 1:
        raise ValueError(f"schedule file {p}: {len(sig) - 1} steps but nfe {data['nfe']}")
    return data


def get_sigmas(
    schedule: str | list | tuple | Tensor,
    steps: int,
    *,
    process: Process | None = None,
    sigma_min: float | None = None,
    sigma_max=None,
    rho: float = 7.0,
) -> Tensor:
    """A decreasing σ schedule with `steps` positive levels and a final 0: [steps+1] or [B, steps+1].

    `schedule` may also be the path of a tuned schedule file (`*.json`, samplers.tuning); its step count must be
    `steps`."""
    if isinstance(schedule, str) and schedule.endswith(".json"):
        s = torch.tensor(read_schedule_file(schedule)["sigmas"], dtype=torch.float64)
        if s.numel() - 1 != int(steps):
            raise ValueError(f"schedule file {schedule} has {s.numel() - 1} steps, not {steps}")
        return s
    if not isinstance(schedule, str):
        s = torch.as_tensor(schedule, dtype=torch.float64).flatten()
        if s.numel() < 1 or (s < 0).any() or not torch.isfinite(s).all():
            raise ValueError("an explicit σ schedule must be finite non-negative numbers")
        if (s[1:] > s[:-1]).any():
            raise ValueError("an explicit σ schedule must be non-increasing")
        return s if s[-1] == 0 else _append_zero(s)
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    steps = int(steps)
    if sigma_min is None:
        sigma_min = process.sigma_min if process is not None else 0.002
    if sigma_max is None:
        sigma_max = process.sigma_max if process is not None else 80.0
    smax = torch.as_tensor(sigma_max, dtype=torch.float64)
    if (smax <= sigma_min).any():
        raise ValueError(f"sigma_max must exceed sigma_min={sigma_min}")
    if process is not None and (smax > process.sigma_max * (1 + 1e-6)).any():
        raise ValueError(f"sigma_max {float(smax.max()):g} exceeds the process's σ_max {process.sigma_max:g}")
    if schedule == "karras":
        return karras_sigmas(steps, sigma_min, smax, rho)
    if schedule == "log":
        return log_sigmas(steps, sigma_min, smax)
    if schedule == "logsnr":
        return logsnr_sigmas(steps, sigma_min, smax)
    if schedule == "uniform_t":
        if process is None:
            raise ValueError("the uniform_t schedule needs a process")
        return uniform_t_sigmas(
            steps,
            process,
            smax,
            t_end=float(process.t_of_sigma(torch.tensor(float(sigma_min), dtype=torch.float64))),
        )
    raise ValueError(f"unknown schedule {schedule!r} (choose from {', '.join(SCHEDULES)} or give a list)")


def default_sigma_range(process: Process | None = None, model=None) -> tuple[float, float]:
    """The σ range sampling uses when none is given: the model's own (`sigma_min`, `sigma_max`; a trained VE/EDM
    run's are fitted to its data, `run_config.fitted_sigma_range`) within the process's range (a `--process` given
    at sampling may be narrower); without a model the process's; without either 0.002 … 80."""
    if model is not None and getattr(model, "sigma_max", None) is not None:
        smin, smax = float(model.sigma_min), float(model.sigma_max)
        if process is not None:
            smin, smax = max(smin, float(process.sigma_min)), min(smax, float(process.sigma_max))
        if smin < smax:
            return smin, smax
    if process is not None:
        return float(process.sigma_min), float(process.sigma_max)
    return 0.002, 80.0


@dataclass(frozen=True)
class Schedule:
    """How every sampling path builds its σ table: a spacing (a name in SCHEDULES, an explicit σ list, or None
    for the sampler's default), Karras ρ, and an optional σ range overriding the model's.

    One builder for plain, guided and Denoising-MCMC sampling: `table` gives a [N+1] schedule, or [B, N+1] when
    `sigma_max` is a per-sample tensor (DMCMC's σ_start). A sampler whose default is `uniform_t` falls back to
    `log` without a process (σ-space is the VE SDE's space, where uniform t is log-uniform σ). An explicit list
    ignores `steps`; started per sample at σ_start it is cut to its levels below σ_start (`groups`).
    """

    spacing: str | tuple[float, ...] | None = None
    rho: float = 7.0
    sigma_min: float | None = None
    sigma_max: float | None = None

    def __post_init__(self):
        sp = self.spacing
        if sp is not None and not isinstance(sp, str):
            object.__setattr__(self, "spacing", tuple(float(v) for v in sp))
        elif isinstance(sp, str) and sp not in SCHEDULES and not sp.endswith(".json"):
            raise ValueError(f"unknown schedule {sp!r} (choose from {', '.join(SCHEDULES)} or give a σ list)")
        if not (math.isfinite(float(self.rho)) and float(self.rho) > 0):
            raise ValueError(f"rho must be positive and finite, got {self.rho}")
        for name in ("sigma_min", "sigma_max"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(float(v)) and float(v) > 0):
                raise ValueError(f"{name} must be positive and finite, got {v}")

    @classmethod
    def parse(cls, text: str | None, **kw) -> Schedule:
        """`--schedule` text: a name in SCHEDULES, a comma-separated σ list ("1,0.5"), a schedule file (*.json, a
        fixed σ list), or None (a sequence of σ is taken as it is)."""
        if text is not None and not isinstance(text, str):
            return cls(tuple(float(v) for v in torch.as_tensor(text, dtype=torch.float64).flatten()), **kw)
        if text is None or str(text).strip() in SCHEDULES or str(text).strip().endswith(".json"):
            return cls(None if text is None else str(text).strip(), **kw)
        try:
            vals = tuple(float(v) for v in str(text).split(",") if v.strip())
        except ValueError:
            raise ValueError(
                f"schedule must be {', '.join(SCHEDULES)} or a comma-separated list of σ; got {text!r}"
            ) from None
        if not vals:
            raise ValueError(f"schedule {text!r} has no σ values")
        return cls(vals, **kw)

    def spacing_for(self, default: str, process: Process | None):
        """The spacing actually used by a sampler whose default spacing is `default`."""
        sp = self.spacing if self.spacing is not None else default
        return "log" if sp == "uniform_t" and process is None else sp

    def _range(self, process, model, sigma_min, sigma_max):
        """(σ_min, σ_max): the caller's (e.g. DMCMC's per-sample start), else this schedule's, else the model's
        range (`default_sigma_range`)."""
        dmin, dmax = default_sigma_range(process, model)
        smin = sigma_min if sigma_min is not None else self.sigma_min
        smax = sigma_max if sigma_max is not None else self.sigma_max
        return (dmin if smin is None else float(smin)), (dmax if smax is None else smax)

    def groups(
        self,
        steps: int,
        *,
        default: str = "karras",
        process: Process | None = None,
        model=None,
        sigma_min: float | None = None,
        sigma_max=None,
    ) -> list[tuple[Tensor | None, Tensor]]:
        """[(rows, table)]: the σ tables of a batch. One group (rows None) unless an explicit list is started per
        sample, where rows with the same number of levels below their σ_start share a table."""
        smin, smax = self._range(process, model, sigma_min, sigma_max)
        sp = self.spacing_for(default, process)
        if isinstance(sp, str) and not sp.endswith(".json"):
            return [(None, get_sigmas(sp, steps, process=process, sigma_min=smin, sigma_max=smax, rho=self.rho))]
        levels = get_sigmas(sp, steps)
        start = torch.as_tensor(smax, dtype=torch.float64)
        if start.ndim == 0:
            return [(None, levels)]
        pos = levels[levels > 0]
        n_below = (pos[None, :] < start[:, None]).sum(1)
        out = []
        for m in torch.unique(n_below).tolist():
            rows = (n_below == m).nonzero().squeeze(1)
            tail = pos[len(pos) - m :][None].expand(len(rows), -1)
            table = torch.cat([start[rows, None], tail, torch.zeros(len(rows), 1, dtype=torch.float64)], 1)
            out.append((rows, table))
        return out

    def table(self, steps: int, **kw) -> Tensor:
        """The σ table ([N+1], or [B, N+1] for a per-sample `sigma_max`); see `groups` for the arguments."""
        groups = self.groups(steps, **kw)
        if len(groups) != 1:
            raise ValueError("an explicit σ list started at per-sample σ gives tables of different lengths")
        rows, table = groups[0]
        return table if rows is None else table[torch.argsort(rows)]
