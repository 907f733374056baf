"""Sampling at a budget: which solver, options and σ steps to use for N denoiser evaluations per sample.

`plan_for_budget(N, ...)` returns a `BudgetPlan`. In order of preference:
1. a tuned schedule file (samplers.tuning) given as `tuned_schedule_path`, or found as RUN/schedules/*.json with the
   same NFE (and sampler, when one is asked for) and, where recorded, the same run config;
2. the built-in rule (`BUDGET_RULE`): UniPC-3 at 3 evaluations or fewer, above them the solver and spacing measured
   best across exact mixtures and two image models (benchmarks/results/budget_rule.md; `budget_sigmas`).
Every plan costs exactly its `nfe` ≤ N evaluations per sample (one per step, no evaluation at σ = 0).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .schedules import default_sigma_range, get_sigmas, read_schedule_file

__all__ = ["BudgetPlan", "plan_for_budget", "find_tuned_schedule", "budget_sigmas", "rule_solver", "BUDGET_RULE"]

# Built-in rule (no tuned schedule): (up to N evaluations, solver, options, spacing); the spacing runs σ_max … σ_min
# with its last level replaced by 0. At 3 evaluations or fewer UniPC-3 (bh1) on log-SNR steps, measured on the exact
# mixtures (benchmarks/results/samplers.md); above, the candidate with the lowest error across three problem families
# — exact mixtures, the digits quickstart model, the Fashion-MNIST CPU-preset model (benchmarks/budget_rule.py →
# results/budget_rule.md; tests/test_budget_rule.py keeps the two in step).
BUDGET_RULE = {
    "solvers": (
        (3, "unipc", {"order": 3, "variant": "bh1"}, "logsnr"),
        (None, "dpmpp_2m", {}, "logsnr"),
    ),
}


@dataclass(frozen=True)
class BudgetPlan:
    """What to run for a budget: `sampler` with `options` for `steps` steps on `sigmas` (explicit σ list ending in
    0, when the plan fixes one) or the built-in `schedule` name; `nfe` evaluations per sample; `reason` says why."""

    sampler: str
    steps: int
    schedule: str | None
    sigmas: tuple[float, ...] | None
    options: dict = field(default_factory=dict)
    reason: str = ""
    nfe: int = 0

    def to_dict(self) -> dict:
        """A JSON-ready record of the plan (what `--nfe` chose and why)."""
        return {
            "nfe_budget": self.nfe,
            "sampler": self.sampler,
            "steps": self.steps,
            "options": dict(self.options),
            "schedule": self.schedule,
            "sigmas": None if self.sigmas is None else list(self.sigmas),
            "reason": self.reason,
        }

    def sigmas_tensor(self, *, sigma_min: float | None = None, sigma_max=None, process=None) -> Tensor:
        """The plan's σ schedule as a float64 tensor [steps + 1] (a named schedule is built for the σ range)."""
        if self.sigmas is not None:
            return torch.tensor(self.sigmas, dtype=torch.float64)
        from .schedules import get_sigmas

        return get_sigmas(self.schedule, self.steps, process=process, sigma_min=sigma_min, sigma_max=sigma_max)


def budget_sigmas(nfe: int, sigma_min: float, sigma_max: float) -> Tensor:
    """The built-in rule's σ list for `nfe` steps: its spacing for that budget over [σ_min, σ_max] (one step: σ_max,
    0)."""
    if int(nfe) == 1:
        return torch.tensor([float(sigma_max), 0.0], dtype=torch.float64)
    spacing = _rule_entry(nfe)[3]
    return get_sigmas(spacing, int(nfe), sigma_min=float(sigma_min), sigma_max=float(sigma_max))


def _rule_entry(nfe: int) -> tuple:
    for entry in BUDGET_RULE["solvers"]:
        if entry[0] is None or int(nfe) <= entry[0]:
            return entry
    raise AssertionError("BUDGET_RULE needs a catch-all entry")


def rule_solver(nfe: int) -> tuple[str, dict]:
    """The built-in rule's sampler and options for `nfe` evaluations."""
    _, name, opts, _ = _rule_entry(nfe)
    return name, dict(opts)


def _run_config_sha(run_dir) -> str | None:
    import hashlib

    p = Path(run_dir) / "config.json"
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def find_tuned_schedule(run_dir, nfe: int, sampler: str | None = None) -> Path | None:
    """RUN/schedules/*.json tuned for exactly `nfe` (and `sampler` if given) and for this run's config (when the file
    records one); the one with the lowest held-out endpoint error, or None."""
    folder = Path(run_dir) / "schedules"
    if not folder.is_dir():
        return None
    sha = _run_config_sha(run_dir)
    best, best_err = None, math.inf
    for p in sorted(folder.glob("*.json")):
        try:
            data = read_schedule_file(p)
        except ValueError:
            continue
        if int(data.get("nfe", -1)) != int(nfe) or (sampler is not None and data.get("sampler") != sampler):
            continue
        rec = data.get("model", {}).get("sha256")
        if sha is not None and rec is not None and rec != sha:
            continue
        err = float(data.get("endpoint_error", {}).get("heldout_tuned", math.inf))
        if best is None or err < best_err:
            best, best_err = p, err
    return best


def _plan_from_file(path, nfe: int) -> BudgetPlan:
    from . import get_sampler

    data = read_schedule_file(path)
    sampler, options = data.get("sampler"), dict(data.get("options", {}))
    spec = get_sampler(sampler)
    spec.check_options(options)
    steps = len(data["sigmas"]) - 1
    cost = spec.nfe(steps, **options) if spec.nfe is not None else None
    if cost is None or cost > nfe:
        raise ValueError(f"tuned schedule {path} costs {cost} evaluations, more than the budget {nfe}")
    return BudgetPlan(
        sampler,
        steps,
        str(path),
        tuple(float(s) for s in data["sigmas"]),
        options,
        f"tuned schedule {path} ({data.get('chosen', 'tuned')}, teacher {json.dumps(data.get('teacher', {}))})",
        int(cost),
    )


def plan_for_budget(
    nfe: int,
    *,
    denoiser=None,
    process=None,
    tuned_schedule_path=None,
    run_dir=None,
    sampler: str | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> BudgetPlan:
    """The solver, options and σ steps for `nfe` denoiser evaluations per sample (never more).

    A tuned schedule (`tuned_schedule_path`, or one for this NFE in `run_dir`/schedules/) wins; else the built-in
    rule (BUDGET_RULE, measured in benchmarks/results/budget_rule.md) on the σ range of `sigma_min`/`sigma_max`, else
    the denoiser's within the process's (`schedules.default_sigma_range`). `sampler` restricts the choice to one
    solver (it must take one evaluation per step)."""
    from . import get_sampler

    nfe = int(nfe)
    if nfe < 1:
        raise ValueError(f"an NFE budget must be >= 1, got {nfe}")
    if tuned_schedule_path is not None:
        return _plan_from_file(tuned_schedule_path, nfe)
    if run_dir is not None:
        found = find_tuned_schedule(run_dir, nfe, sampler)
        if found is not None:
            return _plan_from_file(found, nfe)
    dmin, dmax = default_sigma_range(process, denoiser)
    sigma_min = dmin if sigma_min is None else sigma_min
    sigma_max = dmax if sigma_max is None else sigma_max
    _, name, options, spacing = _rule_entry(nfe)
    options = dict(options)
    if sampler is not None and sampler != name:
        name, options = sampler, {}
    spec = get_sampler(name)
    if spec.nfe is None or spec.nfe(nfe, **options) != nfe:
        raise ValueError(f"sampler {name!r} does not take one evaluation per step; give a multistep solver")
    sig = budget_sigmas(nfe, sigma_min, sigma_max)
    reason = (
        f"built-in rule for NFE {nfe}: {name}{f' {options}' if options else ''} on the {spacing} spacing "
        f"{sigma_max:g} … {float(sig[-2]):.3g}, 0 (no tuned schedule found)"
    )
    return BudgetPlan(name, nfe, spacing, tuple(float(s) for s in sig), options, reason, nfe)
