"""Flags of `scorekit sample --dmcmc dlg` and the library objects they build (DLGConfig, an estimator).

Settings come from one base, then the --dlg-* flags given override single fields:
- `--nfe N`: `dmcmc.plan_dlg(N, --num, ...)`, the derived defaults for an amortised budget of N NFE per sample
  (start-up + Gibbs + finisher + the classifier's cost in denoiser evaluations), never exceeded;
- `--dlg-preset reference-cifar10|reference-celebahq`: the official code's setting (`DLGConfig.reference`);
- neither: `DLGConfig()` with the finisher from --sampler/--steps.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from ..dmcmc import (
    DLGConfig,
    ExactNoisePosterior,
    NoiseLevelEstimator,
    TrainedNoiseClassifier,
    estimator_cost,
    make_levels,
    plan_dlg,
)
from ..dmcmc.budget import CAP_FACTOR, FLOOR_PER_FINISHER_NFE
from ..samplers import get_sampler

PRESETS = ("reference-cifar10", "reference-celebahq")
# flag → (DLGConfig field, type)
_FIELDS = {
    "dlg_skip": ("skip", int),
    "dlg_eta": ("eta", float),
    "dlg_chains": ("chains", int),
    "dlg_burn_in": ("burn_in", int),
    "dlg_kernel": ("kernel", str),
    "dlg_sigma_update": ("sigma_update", str),
    "dlg_eta_schedule": ("eta_schedule", str),
    "dlg_init_sampler": ("init_sampler", str),
    "dlg_init_steps": ("init_steps", int),
    "dlg_init_noise": ("init_noise", float),
    "dlg_sigma_floor": ("sigma_floor", float),
    "dlg_tweedie_sigma": ("tweedie_sigma", float),
}


def add_dlg_arguments(parser: argparse.ArgumentParser) -> None:
    """The `sample --dmcmc dlg` flags (a flag the parser already has is left as it is). Every --dlg-* flag
    defaults to None: unset, the plan (--nfe), the preset or DLGConfig() decides."""
    existing = {a for action in parser._actions for a in action.option_strings}

    def add(flag, **kw):
        if flag not in existing:
            parser.add_argument(flag, **kw)

    add("--dmcmc", choices=["dlg"], default=None, help="run Denoising Langevin Gibbs first")
    add("--noise-classifier", default=None, help="run directory of a trained noise-level classifier")
    add("--noise-posterior", choices=["exact"], default=None, help="exact p(σ|x) (mixtures only)")
    add(
        "--dlg-preset",
        choices=PRESETS,
        default=None,
        help="the official code's setting (Kim & Ye 2022); the finisher is --sampler (one of the six integrators)",
    )
    add("--dlg-skip", type=int, default=None, help="Gibbs steps per output sample")
    add("--dlg-eta", type=float, default=None, help="Langevin step size η (or the factor of σ² with sigma2)")
    add("--dlg-adapt", type=float, default=None, help="MALA acceptance the step is adapted to in burn-in (0: off)")
    add("--dlg-chains", type=int, default=None, help="persistent chains (memory bound)")
    add("--dlg-burn-in", type=int, default=None, help="Gibbs steps after the start-up sample")
    add("--dlg-kernel", choices=("ula", "mala"), default=None, help="Langevin kernel on x")
    add(
        "--dlg-sigma-update",
        choices=("argmax", "sample", "residual"),
        default=None,
        help="σ ← argmax p(σ|x) (reference), a draw, or the residual estimate from D itself (no classifier)",
    )
    add("--dlg-eta-schedule", choices=("constant", "sigma2"), default=None, help="η constant or η·σ²")
    add("--dlg-sigma-floor", type=float, default=None, help="chains stay at σ >= this")
    add("--dlg-init-sampler", default=None, help="integrator of the start-up sample")
    add("--dlg-init-steps", type=int, default=None, help="steps of the start-up integrator")
    add("--dlg-init-noise", type=float, default=None, help="std of noise added to the start-up sample")
    add("--dlg-tweedie-sigma", type=float, default=None, help="lowest σ of the finisher schedule (default --sigma-min)")
    add("--dlg-finisher-schedule", default=None, help="σ schedule of the finisher (default: the base setting's)")


def _overrides(args) -> dict:
    out = {}
    for flag, (field, typ) in _FIELDS.items():
        v = getattr(args, flag, None)
        if v is not None:
            out[field] = typ(v)
    adapt = getattr(args, "dlg_adapt", None)
    if adapt is not None:
        out["adapt_target"] = None if float(adapt) == 0 else float(adapt)
    fs = getattr(args, "dlg_finisher_schedule", None)
    if fs:
        out["finisher_schedule"] = fs
    return out


def dlg_config_from_args(args: argparse.Namespace, *, classifier_cost: float = 0.0) -> DLGConfig:
    """DLGConfig from parsed flags: the base (--nfe plan, --dlg-preset, or DLGConfig()), the finisher from
    --sampler/--steps when given, then the --dlg-* flags given. With --nfe the plan is kept in `args.dlg_plan`."""
    over = _overrides(args)
    sampler, steps = getattr(args, "sampler", None), getattr(args, "steps", None)
    nfe, preset = getattr(args, "nfe", None), getattr(args, "dlg_preset", None)
    args.dlg_plan = None
    if preset and nfe is not None:
        raise ValueError("give --dlg-preset (the reference's own costs) or --nfe, not both")
    if nfe is not None:
        fin = {}
        if sampler is not None:
            fin["finisher"] = sampler
            if steps is not None:
                fin["finisher_steps"] = int(steps)
        if getattr(args, "schedule", None) and "finisher_schedule" not in over:
            fin["finisher_schedule"] = args.schedule
        num = int(getattr(args, "num", None) or 1000)
        plan = plan_dlg(
            float(nfe),
            num,
            classifier_cost=classifier_cost,
            sigma_update=over.pop("sigma_update", "argmax"),
            skip=over.pop("skip", 1),
            max_chains=over.pop("chains", None),
            **fin,
            **over,
        )
        args.dlg_plan = plan
        return plan.config
    if preset:
        cfg = DLGConfig.reference(preset.split("-", 1)[1], finisher=sampler or "edm_stochastic")
        if steps is not None:
            cfg = replace(cfg, finisher_steps=int(steps))
        return replace(cfg, **over).validate()
    d = DLGConfig()
    base = {}
    if sampler is not None:
        base["finisher"] = sampler
        if getattr(args, "schedule", None) is None and "finisher_schedule" not in over:
            base["finisher_schedule"] = None  # the sampler's own spacing
    if steps is not None:
        base["finisher_steps"] = int(steps)
    if getattr(args, "schedule", None):
        base["finisher_schedule"] = args.schedule
    if "sigma_floor" not in over:  # the σ band plan_dlg derives for this finisher (unbounded chains run away)
        spec = get_sampler(base.get("finisher", d.finisher))
        fin_nfe = spec.nfe(int(base.get("finisher_steps", d.finisher_steps))) if spec.nfe is not None else 4
        floor = FLOOR_PER_FINISHER_NFE[min(max(int(fin_nfe), 1), max(FLOOR_PER_FINISHER_NFE))]
        base["sigma_floor"], base["sigma_cap"] = floor, over.get("sigma_cap", CAP_FACTOR * floor)
    return replace(d, **base, **over).validate()


def dlg_from_args(
    args, denoiser, process=None, *, gmm=None, device="cpu", shape=None
) -> tuple[DLGConfig | None, NoiseLevelEstimator | None]:
    """(DLGConfig, noise-level estimator) for `sample --dmcmc dlg`, or (None, None) without --dmcmc: the estimator
    from --noise-classifier RUN2 or --noise-posterior exact (none with --dlg-sigma-update residual), the setting
    from --nfe / --dlg-preset / the --dlg-* flags. The finisher's schedule is the command's one `Schedule`."""
    if args.dmcmc is None:
        for flag in ("noise_classifier", "noise_posterior", "dlg_preset"):
            if getattr(args, flag, None):
                raise ValueError(f"--{flag.replace('_', '-')} needs --dmcmc dlg")
        return None, None
    if args.dmcmc != "dlg":
        raise ValueError(f"unknown DMCMC method {args.dmcmc!r} (choose dlg)")
    if args.dlg_tweedie_sigma is not None and args.sigma_min is not None:
        if args.dlg_tweedie_sigma != args.sigma_min:
            raise ValueError("give the finisher's lowest σ once: --sigma-min or --dlg-tweedie-sigma")
    posterior, clf = args.noise_posterior, args.noise_classifier
    if posterior and clf:
        raise ValueError("give either --noise-classifier or --noise-posterior exact, not both")
    residual = getattr(args, "dlg_sigma_update", None) == "residual"
    if posterior == "exact":
        if gmm is None:
            raise ValueError("--noise-posterior exact needs an analytic model (--model gmm:SPEC.json)")
        smin = max(float(denoiser.sigma_min), 0.002)
        smax = float(args.sigma_max if args.sigma_max is not None else (process or denoiser).sigma_max)
        estimator = ExactNoisePosterior(gmm, make_levels(smin, smax, int(getattr(args, "dlg_levels", None) or 1000)))
    elif clf:
        estimator = TrainedNoiseClassifier(clf, device=device)
        want = tuple(estimator.config.get("data", {}).get("shape", ()))
        have = tuple(shape) if shape is not None else tuple(denoiser.data_shape or ())
        if want and have and want != have:
            raise ValueError(f"noise classifier {clf} was trained on shape {want}, the model makes {have}")
    elif residual:
        estimator = None
    else:
        raise ValueError(
            "--dmcmc dlg needs --noise-classifier DIR (a noise-classifier run directory made by "
            "train-noise-classifier), --noise-posterior exact (gmm: models) or --dlg-sigma-update residual"
        )
    cost = estimator_cost(estimator, denoiser)["relative_cost"] if estimator is not None else 0.0
    return dlg_config_from_args(args, classifier_cost=cost), estimator
