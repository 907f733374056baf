"""`plan_dlg`: split an amortised budget of `nfe` denoiser evaluations per sample between the start-up, the Gibbs
steps and the finisher of Denoising Langevin Gibbs, and size chains and outputs per chain from `num`.

Per sample, with C chains making num outputs (m = ⌈num/C⌉ rounds), a start-up of S NFE (the start-up sampler),
B adaptive MALA burn-in steps (2 NFE each), `skip` ULA Gibbs steps per output (1 NFE each) and an F-NFE finisher:

    cost = C·(S + 2B + e₀) / num + C·m·skip / num + F + κ·(classifier calls per sample)

where e₀ is the start-up σ estimate's NFE (2 for the residual estimate, 0 otherwise) and κ the classifier's cost
in denoiser evaluations (`estimators.estimator_cost`). The plan picks the fewest outputs per chain that fit the
budget (more chains = more independent start-up samples, which fix the mode weights) and checks the exact cost.

The rules and the measurements behind them are in benchmarks/results/dmcmc_defaults.md:
- finisher: `dpmpp_2m` on the logSNR spacing from the chain's σ; 2 NFE below a 6-NFE budget, 3 up to 12, else 4;
- chains live at σ ≥ σ_floor (argmax p(σ | x) otherwise drifts to the lowest level, where η = c·σ² → 0 and the
  chain freezes): σ_floor = `FLOOR_PER_FINISHER_NFE[F]` × the data scale (the σ from which an F-NFE finisher is
  accurate on the exact mixtures);
- Langevin step η = c·σ², c adapted during burn-in to MALA acceptance 0.574 (Roberts & Rosenthal's optimum),
  then ULA at that c;
- start-up: `dpmpp_2m` (logSNR spacing) with `startup_steps(nfe)` steps; 2 ULA burn-in steps after η is tuned on
  32 chains (16 MALA steps, their cost shared by all chains; dropped when it would cost more than 20 % of the
  chains, i.e. for small --num).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from ..samplers import get_sampler
from .dlg import DLGConfig

# σ floor per finisher NFE, in units of the data scale (measured: benchmarks/results/dmcmc_defaults.md); chains
# live in [floor, CAP_FACTOR·floor]: above it the ULA step η = c·σ² (c tuned for MALA) lets σ climb to where
# the few-step finisher is inaccurate
FLOOR_PER_FINISHER_NFE = {1: 0.05, 2: 0.1, 3: 0.2, 4: 0.35}
CAP_FACTOR = 2.0
BURN_IN = 2
STARTUP_SAMPLER = "dpmpp_2m"
STARTUP_SCHEDULE = "logsnr"
FINISHER = "dpmpp_2m"
FINISHER_SCHEDULE = "logsnr"


def finisher_nfe(nfe: float) -> int:
    return 2 if nfe < 6 else 3 if nfe <= 12 else 4


def startup_steps(nfe: float) -> int:
    """Start-up steps: the budget itself, 6 to 20 (the mode weights come from the start-up samples; fewer, cheaper
    steps buy more chains, i.e. more independent start-up samples)."""
    return int(min(max(math.ceil(nfe), 6), 20))


@dataclass
class DLGPlan:
    """A budget split: the config, chains, outputs per chain and the NFE per sample of each part."""

    config: DLGConfig
    nfe_budget: float
    num: int
    chains: int
    outputs_per_chain: int
    startup_nfe_per_chain: float
    split: dict

    def describe(self) -> str:
        s = self.split
        return (
            f"DLG budget {self.nfe_budget:g} NFE/sample: start-up {s['startup']:.2f} "
            f"({self.startup_nfe_per_chain:g} per chain over {self.outputs_per_chain} outputs, {self.chains} chains) "
            f"+ Gibbs {s['gibbs']:.2f} + finisher {s['finisher']:.2f} + classifier {s['classifier']:.2f} "
            f"= {s['total']:.2f}"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["config"] = asdict(self.config)
        return d


def _cost(num, chains, startup, skip, fin, cc, est0, startup_calls, estimator_calls_per_step) -> dict:
    m = math.ceil(num / chains)
    startup_total = chains * (startup + est0)
    gibbs = chains * m * skip
    clf_calls = chains * startup_calls * estimator_calls_per_step + chains * m * skip * estimator_calls_per_step
    split = {
        "startup": startup_total / num,
        "gibbs": gibbs / num,
        "finisher": float(fin),
        "classifier": cc * clf_calls / num,
        "classifier_calls": clf_calls / num,
    }
    split["total"] = split["startup"] + split["gibbs"] + split["finisher"] + split["classifier"]
    return split


def plan_dlg(
    nfe: float,
    num: int,
    *,
    classifier_cost: float = 0.0,
    sigma_update: str = "argmax",
    data_scale: float = 1.0,
    skip: int = 1,
    max_chains: int | None = None,
    **overrides,
) -> DLGPlan:
    """The DLG setting for an amortised budget of `nfe` denoiser evaluations per sample (never exceeded) and
    `num` samples. `classifier_cost`: one noise-classifier call in denoiser evaluations (counted against the
    budget); `sigma_update="residual"` needs no classifier; `data_scale` scales the σ floor; `max_chains` caps
    memory; `overrides` replace DLGConfig fields (their cost is still checked)."""
    nfe, num = float(nfe), int(num)
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    fin = int(overrides.pop("finisher_steps", finisher_nfe(nfe)))
    finisher = overrides.pop("finisher", FINISHER)
    fspec = get_sampler(finisher)
    fin_cost = fspec.nfe(fin, **overrides.get("finisher_options", {})) if fspec.nfe else fin
    init_steps = int(overrides.pop("init_steps", startup_steps(nfe)))
    init_sampler = overrides.pop("init_sampler", STARTUP_SAMPLER)
    ispec = get_sampler(init_sampler)
    burn_in = int(overrides.pop("burn_in", BURN_IN))
    adapt = overrides.get("adapt_target", DLGConfig.adapt_target) is not None
    adapt_steps = int(overrides.pop("adapt_steps", DLGConfig.adapt_steps)) if adapt else 0
    adapt_chains = int(overrides.get("adapt_chains", DLGConfig.adapt_chains))
    kernel_nfe = 2 if overrides.get("kernel", "ula") == "mala" else 1
    residual = sigma_update == "residual"
    est0 = 2 if residual else 0
    calls_per_step = 0 if residual else 1
    cc = 0.0 if residual else float(classifier_cost)
    per_output = kernel_nfe * int(skip) * (1 + cc) + fin_cost
    if per_output >= nfe:
        raise ValueError(
            f"a budget of {nfe:g} NFE per sample leaves nothing for the start-up: each output costs {per_output:g} "
            f"(Gibbs {kernel_nfe * int(skip)} + finisher {fin_cost} + classifier); give --nfe > {per_output:g}"
        )

    def fit(init_steps, burn_in, adapt_steps):
        """(chains, split) of the fewest outputs per chain that fit, or None."""
        init_cost = ispec.nfe(init_steps, **overrides.get("init_options", {})) if ispec.nfe else init_steps
        base = init_cost + burn_in * kernel_nfe
        m = max(1, math.ceil((base + est0 + cc * (1 + burn_in)) / (nfe - per_output)))
        chains = max(1, math.ceil(num / m))
        if max_chains is not None:
            chains = min(chains, int(max_chains))
        while True:
            share = adapt_steps * min(adapt_chains, chains) / chains
            startup = base + 2 * share  # the adaptation's MALA steps (2 NFE) on min(adapt_chains, chains) chains
            split = _cost(
                num, chains, startup, kernel_nfe * int(skip), fin_cost, cc, est0, 1 + burn_in + share, calls_per_step
            )
            if split["total"] <= nfe + 1e-9:
                return chains, split, startup
            if chains == 1:
                return None
            chains = max(1, min(chains - 1, math.ceil(num / (math.ceil(num / chains) + 1))))

    # few samples cannot amortise a long start-up: drop the adaptation, the burn-in, then start-up steps
    ladder = [(init_steps, burn_in, adapt_steps), (init_steps, burn_in, 0), (init_steps, 0, 0)]
    ladder += [(s, 0, 0) for s in range(init_steps - 1, 0, -1)]
    # (with few samples the adaptation's share can cost more chains than it is worth: the first rung with at least
    # 80 % of the most chains any rung reaches wins)
    fits = [(rung, fit(*rung)) for rung in ladder[:3]]  # the full start-up, with and without adaptation/burn-in
    fits = [(rung, got) for rung, got in fits if got is not None]
    for rung in ladder[3:]:  # else the longest start-up that fits
        if fits:
            break
        got = fit(*rung)
        if got is not None:
            fits = [(rung, got)]
    if not fits:
        raise ValueError(f"no DLG setting fits {nfe:g} NFE per sample for {num} samples")
    most = max(got[0] for _, got in fits)
    (init_steps, burn_in, adapt_steps), got = next((r, g) for r, g in fits if g[0] >= 0.8 * most)
    chains, split, startup = got
    if init_steps == ladder[0][0]:  # budget left over at this chain count: spend it on a longer start-up
        for more in range(init_steps + 1, 21):
            longer = fit(more, burn_in, adapt_steps)
            if longer is None or longer[0] != chains:
                break
            init_steps, (chains, split, startup) = more, longer
    if adapt and adapt_steps == 0:
        overrides["adapt_target"] = None
    floor = FLOOR_PER_FINISHER_NFE.get(fin, FLOOR_PER_FINISHER_NFE[max(FLOOR_PER_FINISHER_NFE)]) * float(data_scale)
    cfg = DLGConfig(
        chains=chains,
        skip=int(skip),
        sigma_update=sigma_update,
        sigma_floor=floor,
        sigma_cap=CAP_FACTOR * floor,
        burn_in=burn_in,
        adapt_steps=adapt_steps,
        init_sampler=init_sampler,
        init_steps=init_steps,
        init_schedule=overrides.pop("init_schedule", STARTUP_SCHEDULE),
        finisher=finisher,
        finisher_steps=fin,
        finisher_schedule=overrides.pop("finisher_schedule", FINISHER_SCHEDULE),
    )
    cfg = replace(cfg, **overrides).validate()
    return DLGPlan(cfg, nfe, num, chains, math.ceil(num / chains), startup + est0, split)
