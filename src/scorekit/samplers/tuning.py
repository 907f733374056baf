"""σ-schedule optimisation for a given model, solver and NFE, GITS-style (Chen et al. ICML 2024, "On the Trajectory
Regularity of ODE-based Diffusion Sampling", §4: dynamic programming over a fine σ grid, the cost of a step being its
local truncation error against teacher trajectories from a few seeds).

1. Teacher: `teachers` initial noises are integrated accurately (DPM-Solver++(3M), `refine` steps per grid interval)
   through a fine grid — log-uniform σ_max … σ_min, the start schedule's levels, and 0 — recording x and D at every
   grid level.
2. Cost of a step j → l with previous level i: the chosen solver's own step formula (`local_step`), fed the teacher's
   (σ, x, D) at i and j, against the teacher's x at l (mean over trajectories of the RMS over coordinates), weighted
   by σ_d/√(σ_l² + σ_d²) (how an error at σ_l reaches σ = 0 for data of scale σ_d) or unweighted. Solvers that use
   more history are costed with two points; UniPC by its predictor. No model evaluation is spent here.
3. Dynamic programming over (previous, current) level pairs gives the N-step path of least summed cost, from σ_max
   and from lower first levels (x = σ_0·z, whose mismatch the endpoint error then counts); the best candidate on the
   tuning trajectories (whole-solver endpoint error) is refined by coordinate search in log σ.
4. Held-out check on `teachers` fresh trajectories: the tuned list is kept only if its endpoint error is below the
   start schedule's; otherwise the start is returned (``"chosen": "start"``). The result never does worse there.

The result is a JSON-able dict (`save_schedule` / `load_schedule`; `schedules.get_sigmas` takes the path).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from .base import bcast
from .deis import deis_step
from .ipndm import ipndm_step
from .multistep import sample_dpmpp_3m
from .schedules import default_sigma_range
from .unipc import unipc_correct, unipc_predict

__all__ = [
    "FORMAT",
    "tune_schedule",
    "tune_for_budget",
    "local_step",
    "save_schedule",
    "load_schedule",
    "gmm_fingerprint",
    "run_fingerprint",
    "endpoint_error",
]

FORMAT = "scorekit-schedule/1"


# --- one step of each solver, from a history of (σ, x, D) ---------------------------------------------------------
def local_step(sampler: str, options: dict, hist, sig_next, den_next=None):
    """x at σ_next after one step of `sampler` from hist[-1] = (σ_i, x_i, D_i) with hist[:-1] older points (at most
    the order the solver uses); `den_next` (D at σ_next) feeds UniPC's corrector. Samplers without a formula here are
    costed as their first-order (DDIM / Euler in σ) step."""
    k = len(hist)
    sig, x, den = hist[-1]
    final = bool((sig_next == 0).all())
    if sampler == "ipndm":
        return ipndm_step(hist, sig_next, min(k, int(options.get("max_order", 4))))
    if sampler == "deis":
        return deis_step(hist, sig_next, min(k, int(options.get("order", 3))))
    if final:
        return den.expand_as(x) if den.shape != x.shape else den
    if sampler == "unipc":
        order, variant = min(k, int(options.get("order", 3))), options.get("variant", "bh1")
        if den_next is None or not options.get("corrector", True):
            return unipc_predict(hist, sig_next, order, variant)
        return unipc_correct(hist, sig_next, den_next, order, variant)
    ratio = bcast(sig_next / sig, x)
    if sampler in ("dpmpp_2m", "dpmpp_3m") and k >= 2:  # DPM-Solver++(2M) step
        h = torch.log(sig / sig_next)
        c = bcast(h / (2 * torch.log(hist[-2][0] / sig)), x)
        d = (1 + c) * den - c * hist[-2][2]
        return ratio * x + (1 - ratio) * d
    return ratio * x + (1 - ratio) * den


# --- teacher trajectories -------------------------------------------------------------------------------------------
@torch.no_grad()
def _teacher(denoiser, z, grid, refine: int):
    """x and D on every grid level for initial noise z (x = σ_0 z): [M, K, *shape] each."""
    M = grid.numel()
    u = torch.linspace(0, 1, refine + 1, dtype=torch.float64)[:-1]
    fine = []
    for a, b in zip(grid[:-2], grid[1:-1]):  # log-uniform substeps between positive levels
        fine.append(torch.exp(a.log() + u * (b.log() - a.log())))
    fine = torch.cat(fine + [grid[-2:-1], torch.zeros(1, dtype=torch.float64)])
    keep = {refine * m: m for m in range(M - 1)}
    xs = [None] * M
    xs[0] = z * grid[0]

    def grab(info):
        m = keep.get(info["i"] + 1)
        if m is not None:
            xs[m] = info["x"]

    out = sample_dpmpp_3m(denoiser, (z * grid[0]).to(z.dtype), fine.to(z.dtype), callback=grab)
    xs[M - 1] = out.x
    xs = torch.stack(xs)
    K = z.shape[0]
    sig = grid[:-1].to(z.dtype).repeat_interleave(K)
    flat = xs[:-1].reshape(-1, *z.shape[1:])
    dens = torch.cat([denoiser(c, s) for c, s in zip(flat.split(4096), sig.split(4096))])
    dens = torch.cat([dens.reshape(M - 1, *z.shape), xs[-1:]])
    return xs, dens, fine.numel() - 1


def endpoint_error(sampler_fn, denoiser, z, sigmas, target, options) -> float:
    """Mean over trajectories of the RMS (over coordinates) distance between the solver's output from σ_0·z on `sigmas`
    and the teacher's endpoint. A mean of distances, not of squares: a few trajectories that change mode would
    dominate a mean square and make the search overfit its teacher seeds."""
    s = torch.as_tensor(sigmas, dtype=z.dtype)
    x = sampler_fn(denoiser, z * s[0], s, **options).x
    err = (x - target).reshape(x.shape[0], -1).pow(2).mean(1).sqrt().mean()
    return float(err) if torch.isfinite(err) else math.inf


# --- the dynamic programme ------------------------------------------------------------------------------------------
def _cost_tables(sampler, options, grid, xs, dens, weights, starts):
    """cost1[s][l]: first step s → l from the prior state starts[s] = (σ_s·z, D there); cost2[i, j, l]: step
    j → l after i on the teacher (inf where not i < j < l)."""
    M = grid.numel()
    K = xs.shape[1]
    cost2 = torch.full((M, M, M), math.inf, dtype=torch.float64)

    def dist(pred, ls):
        d = (pred.reshape(len(ls), K, -1) - xs[ls].reshape(len(ls), K, -1)).pow(2).mean(2).sqrt().mean(1)
        return d.double() * weights[ls]

    def steps_from(hist_idx, j, first=None):
        """Cost of the step from level j (history hist_idx, ending in j; or the state `first`) to every l > j."""
        ls_all, costs = torch.arange(j + 1, M), []
        for ls in (ls_all[:-1], ls_all[-1:]):  # positive levels together; the final step to 0 alone
            if len(ls) == 0:
                continue
            rep = lambda t: t.unsqueeze(0).expand(len(ls), *t.shape).reshape(-1, *t.shape[1:])  # noqa: E731, B023
            hist = [(grid[m : m + 1].to(xs.dtype), rep(xs[m]), rep(dens[m])) for m in hist_idx]
            if first is not None:
                hist = [(grid[j : j + 1].to(xs.dtype), rep(first[0]), rep(first[1]))]
            sig_next = grid[ls].to(xs.dtype).repeat_interleave(K)
            pred = local_step(sampler, options, hist, sig_next)
            costs.append(torch.nan_to_num(dist(pred, ls), nan=math.inf))
        return ls_all, torch.cat(costs)

    cost1 = {}
    for s0, first in starts.items():
        ls, c = steps_from([s0], s0, first)
        cost1[s0] = torch.full((M,), math.inf, dtype=torch.float64)
        cost1[s0][ls] = c
    for j in range(1, M - 1):
        for i in range(j):
            ls, c = steps_from([i, j], j)
            cost2[i, j, ls] = c
    return cost1, cost2


def _dp(cost1, cost2, n: int, s0: int = 0) -> list[int] | None:
    """The n-step path s0 → M−1 of least total cost, over (previous, current) level pairs."""
    M = cost1.numel()
    if n == 1:
        return [s0, M - 1] if math.isfinite(float(cost1[M - 1])) else None
    F = torch.full((M, M), math.inf, dtype=torch.float64)
    F[s0] = cost1  # state (s0, j)
    back = []
    for _ in range(n - 1):
        tot = F[:, :, None] + cost2  # [i, j, l]
        F, arg = tot.min(0)  # state (j, l)
        back.append(arg)
    if not bool(torch.isfinite(F[:, M - 1]).any()):
        return None
    j = int(F[:, M - 1].argmin())
    path = [M - 1, j]
    cur_j, cur_l = j, M - 1
    for arg in reversed(back):
        i = int(arg[cur_j, cur_l])
        path.append(i)
        cur_j, cur_l = i, cur_j
    return path[::-1]


# --- the search ------------------------------------------------------------------------------------------------------
def _polish(err_fn, sig: torch.Tensor, sigma_max: float, sweeps: int = 4, step: float = 0.3):
    """Coordinate search on log σ of the positive levels (σ_0 ≤ σ_max; the final 0 fixed), order kept."""
    best = err_fn(sig)
    logs = sig[:-1].log()
    for _ in range(sweeps):
        improved = False
        for m in range(logs.numel()):
            for d in (-step, step):
                cand = logs.clone()
                cand[m] = min(float(cand[m] + d), math.log(sigma_max))
                hi = cand[m - 1] if m > 0 else math.inf
                lo = cand[m + 1] if m + 1 < cand.numel() else -math.inf
                if not (lo < cand[m] < hi):
                    continue
                s = torch.cat([cand.exp(), sig[-1:]])
                e = err_fn(s)
                if e < best:
                    best, logs, improved = e, cand, True
                    break
        if not improved:
            step /= 2
    return torch.cat([logs.exp(), sig[-1:]]), best


@torch.no_grad()
def tune_schedule(
    denoiser,
    sampler: str,
    nfe: int,
    *,
    shape,
    start,
    options: dict | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    teachers: int = 16,
    seed: int = 0,
    grid_size: int = 40,
    refine: int = 4,
    polish: bool = True,
    model: dict | None = None,
    dtype=torch.float64,
) -> dict:
    """A tuned σ list for `sampler` at `nfe` evaluations (one step each; multistep solvers) as a schedule-file dict.

    `start`: the schedule to improve on ([nfe + 1] σ's from σ_max to 0); `teachers` trajectories tune and as many
    fresh ones decide between tuned and start. `model` is recorded as given (see gmm_fingerprint / run_fingerprint).
    """
    from . import get_sampler

    spec = get_sampler(sampler)
    if not spec.deterministic or spec.nfe is None:
        raise ValueError(f"schedule tuning needs a deterministic fixed-step sampler, not {sampler!r}")
    options = dict(options or {})
    spec.check_options(options)
    nfe = int(nfe)
    if spec.nfe(nfe, **options) != nfe:
        raise ValueError(f"tuning is for samplers with one evaluation per step; {sampler!r} is not")
    start = torch.as_tensor(start, dtype=torch.float64).flatten().clone()
    if start.numel() != nfe + 1 or float(start[-1]) != 0:
        raise ValueError(f"the start schedule must have {nfe + 1} entries ending in 0, got {start.numel()}")
    sigma_max = float(start[0])
    g = torch.Generator().manual_seed(int(seed))
    z_all = torch.randn(2 * int(teachers), *shape, generator=g, dtype=torch.float64).to(dtype)
    z_tune, z_hold = z_all[: int(teachers)], z_all[int(teachers) :]

    base = torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), grid_size, dtype=torch.float64))
    levels = [sigma_max]  # the fine grid and the start's levels, merged (levels closer than 1% in σ are one)
    for s in torch.cat([base, start[1:-1]]).sort(descending=True).values.tolist():
        if s < levels[-1] * 0.99:
            levels.append(s)
    grid = torch.tensor(levels + [0.0], dtype=torch.float64)
    xs, dens, teacher_steps = _teacher(denoiser, z_all, grid, refine)
    xs_t, dens_t = xs[:, : int(teachers)], dens[:, : int(teachers)]
    target_t, target_h = xs[-1, : int(teachers)], xs[-1, int(teachers) :]
    data_scale = float(target_t.reshape(target_t.shape[0], -1).std()) or 1.0

    def err(z, target):
        return lambda s: endpoint_error(spec.fn, denoiser, z, s, target, options)

    cands = {"start": start}
    weighted = data_scale / torch.sqrt(grid**2 + data_scale**2)
    # the first level may lie below σ_max (x = σ_0·z is then an approximation the endpoint error accounts for)
    starts = {}
    for s0 in range(grid.numel() - 1):
        if s0 > 0 and (float(grid[s0]) < sigma_max / 100 or s0 > grid.numel() - 2 - nfe):
            break
        x0 = z_tune * grid[s0].to(dtype)
        starts[s0] = (x0, denoiser(x0, grid[s0].to(dtype).expand(x0.shape[0])))
    for label, w in (("dp-weighted", weighted), ("dp", torch.ones_like(grid))):
        cost1, cost2 = _cost_tables(sampler, options, grid, xs_t, dens_t, w, starts)
        for s0 in starts:
            path = _dp(cost1[s0], cost2, nfe, s0)
            if path is not None:
                cands[f"{label}-from-{float(grid[s0]):.3g}"] = grid[path]
    scores = {k: err(z_tune, target_t)(v) for k, v in cands.items()}
    best = min(scores, key=scores.get)
    tuned = cands[best]
    if polish:
        tuned, _ = _polish(err(z_tune, target_t), tuned, sigma_max)
    hold_start = err(z_hold, target_h)(start)
    hold_tuned = err(z_hold, target_h)(tuned)
    chosen = "tuned" if hold_tuned < hold_start else "start"
    sig = tuned if chosen == "tuned" else start
    return {
        "format": FORMAT,
        "model": model or {},
        "sampler": sampler,
        "options": options,
        "nfe": nfe,
        "sigmas": [float(s) for s in sig],
        "start": [float(s) for s in start],
        "chosen": chosen,
        "teacher": {
            "sampler": "dpmpp_3m",
            "steps": teacher_steps,
            "trajectories": int(teachers),
            "heldout_trajectories": int(teachers),
            "grid": int(grid.numel()),
        },
        "seed": int(seed),
        "endpoint_error": {"tuning": scores, "heldout_start": hold_start, "heldout_tuned": hold_tuned},
    }


def tune_for_budget(
    denoiser,
    nfe: int,
    *,
    shape,
    process=None,
    sampler: str | None = None,
    options: dict | None = None,
    start=None,
    teachers: int = 16,
    grid_size: int = 40,
    seed: int = 0,
    model: dict | None = None,
    dtype=torch.float32,
) -> dict:
    """`tune_schedule` for a budget of `nfe` evaluations, starting from what `plan_for_budget` would do without a
    tuned schedule (its solver, options and σ steps on the denoiser's σ range within the process's); `sampler`,
    `options` and `start` ([nfe + 1] σ's) override that start. Returns the schedule-file dict."""
    from . import get_sampler
    from .budget import plan_for_budget

    smin, smax = default_sigma_range(process, denoiser)
    plan = plan_for_budget(int(nfe), sigma_min=smin, sigma_max=smax)
    name = sampler or plan.sampler
    opts = dict(options) if options is not None else (plan.options if name == plan.sampler else {})
    get_sampler(name).check_options(opts)
    begin = plan.sigmas_tensor(sigma_min=smin, sigma_max=smax, process=process) if start is None else start
    with torch.no_grad():  # not torch.set_grad_enabled(False): that would leak into the caller
        return tune_schedule(denoiser, name, int(nfe), shape=shape, start=begin, options=opts, sigma_min=smin,
                             sigma_max=smax, teachers=teachers, seed=seed, grid_size=grid_size, model=model,
                             dtype=dtype)  # fmt: skip


# --- files and fingerprints ------------------------------------------------------------------------------------------
def save_schedule(path, schedule: dict) -> Path:
    """Write a schedule dict (from `tune_schedule`) as JSON; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(schedule, indent=2) + "\n")
    tmp.replace(p)
    return p


def load_schedule(path) -> dict:
    """Read and check a schedule file (see schedules.read_schedule_file)."""
    from .schedules import read_schedule_file

    return read_schedule_file(path)


def gmm_fingerprint(gmm) -> dict:
    """{"kind": "gmm", "sha256": …} of a GaussianMixture's spec."""
    text = json.dumps(gmm.to_spec(), sort_keys=True)
    return {"kind": "gmm", "sha256": hashlib.sha256(text.encode()).hexdigest()}


def run_fingerprint(run_dir) -> dict:
    """{"kind": "run", "sha256": …} of a run directory's config.json."""
    data = (Path(run_dir) / "config.json").read_bytes()
    return {"kind": "run", "sha256": hashlib.sha256(data).hexdigest(), "path": str(run_dir)}
