"""Flags of `scorekit sample --dmcmc dlg` and the library objects they build (DLGConfig, an estimator)."""

from __future__ import annotations

import argparse

import torch

from ..dmcmc import DLGConfig, ExactNoisePosterior, TrainedNoiseClassifier, make_levels, sample_dlg


def add_dlg_arguments(parser: argparse.ArgumentParser) -> None:
    """Extra DLG flags (the lead's `sample` command adds --dmcmc, --noise-classifier/--noise-posterior,
    --dlg-skip, --dlg-eta, --dlg-chains; we add them here too unless already present)."""
    d = DLGConfig()
    existing = {a for action in parser._actions for a in action.option_strings}

    def add(flag, **kw):
        if flag not in existing:
            parser.add_argument(flag, **kw)

    add("--dlg-skip", type=int, default=d.skip, help="Gibbs steps per output sample")
    add("--dlg-eta", type=float, default=d.eta, help="Langevin step size η (or the factor of σ² with sigma2)")
    add("--dlg-chains", type=int, default=d.chains, help="persistent chains (memory bound)")
    add("--dlg-burn-in", type=int, default=d.burn_in, help="Gibbs steps after the start-up sample")
    add("--dlg-kernel", choices=("ula", "mala"), default=d.kernel, help="Langevin kernel on x")
    add(
        "--dlg-sigma-update",
        choices=("argmax", "sample"),
        default=d.sigma_update,
        help="σ ← argmax p(σ|x) (reference) or a draw",
    )
    add("--dlg-eta-schedule", choices=("constant", "sigma2"), default=d.eta_schedule, help="η constant or η·σ²")
    add("--dlg-init-sampler", default=d.init_sampler, help="integrator of the start-up sample")
    add("--dlg-init-steps", type=int, default=d.init_steps, help="steps of the start-up integrator")
    add("--dlg-init-noise", type=float, default=d.init_noise, help="std of noise added to the start-up sample")
    add("--dlg-tweedie-sigma", type=float, default=d.tweedie_sigma, help="lowest σ of the finisher schedule")
    add(
        "--dlg-finisher-schedule",
        default=None,
        help="σ schedule of the finisher (default: the sampler's own)",
    )


def dlg_config_from_args(args: argparse.Namespace) -> DLGConfig:
    """DLGConfig from parsed flags; the finisher is `--sampler NAME --steps N` (and --schedule if present)."""
    d = DLGConfig()

    def get(name, default):
        v = getattr(args, name, None)
        return default if v is None else v

    cfg = DLGConfig(
        chains=int(get("dlg_chains", d.chains)),
        skip=int(get("dlg_skip", d.skip)),
        eta=float(get("dlg_eta", d.eta)),
        eta_schedule=get("dlg_eta_schedule", d.eta_schedule),
        sigma_update=get("dlg_sigma_update", d.sigma_update),
        kernel=get("dlg_kernel", d.kernel),
        burn_in=int(get("dlg_burn_in", d.burn_in)),
        init_sampler=get("dlg_init_sampler", d.init_sampler),
        init_steps=int(get("dlg_init_steps", d.init_steps)),
        init_noise=float(get("dlg_init_noise", d.init_noise)),
        finisher=get("sampler", d.finisher),
        finisher_steps=int(get("steps", d.finisher_steps)),
        finisher_schedule=get("dlg_finisher_schedule", None) or getattr(args, "schedule", None),
        tweedie_sigma=float(get("dlg_tweedie_sigma", d.tweedie_sigma)),
    )
    return cfg.validate()


def run_dlg_from_args(
    args, denoiser, process=None, *, gmm=None, device="cpu", shape=None, class_labels=None, sink=None
):
    """The `sample --dmcmc dlg` path: estimator from --noise-classifier RUN2 or --noise-posterior exact, DLG
    settings from the --dlg-* flags, the finisher from --sampler/--steps (--sampler-opt as its options).
    Returns a DMCMCResult; with class labels, result.info["labels"] holds each output's label. `sink` is passed
    to `sample_dlg` (outputs streamed round by round instead of kept)."""
    if getattr(args, "dmcmc", "dlg") not in (None, "dlg"):
        raise ValueError(f"unknown DMCMC method {args.dmcmc!r} (choose dlg)")
    process = process if process is not None else getattr(denoiser, "process", None)
    posterior, clf = getattr(args, "noise_posterior", None), getattr(args, "noise_classifier", None)
    if posterior and clf:
        raise ValueError("give either --noise-classifier or --noise-posterior exact, not both")
    if posterior == "exact":
        if gmm is None:
            raise ValueError("--noise-posterior exact needs an analytic model (--model gmm:SPEC.json)")
        smin = max(float(getattr(denoiser, "sigma_min", 0.002)), 0.002)
        smax = float(process.sigma_max if process is not None else getattr(denoiser, "sigma_max", 80.0))
        estimator = ExactNoisePosterior(gmm, make_levels(smin, smax, int(getattr(args, "dlg_levels", None) or 1000)))
    elif posterior is not None:
        raise ValueError(f"unknown noise posterior {posterior!r} (choose exact)")
    elif clf:
        estimator = TrainedNoiseClassifier(clf, device=device)
        want = tuple(estimator.config.get("data", {}).get("shape", ()))
        have = tuple(shape) if shape is not None else tuple(getattr(denoiser, "data_shape", ()) or ())
        if want and have and want != have:
            raise ValueError(f"noise classifier {clf} was trained on shape {want}, the model makes {have}")
    else:
        raise ValueError("--dmcmc dlg needs --noise-classifier RUN2 or --noise-posterior exact")
    cfg = dlg_config_from_args(args)
    opts = getattr(args, "sampler_opt", None)
    if opts:
        from .samplers import get_sampler
        from .sampling import parse_sampler_options

        cfg.finisher_options = parse_sampler_options(opts, getattr(get_sampler(cfg.finisher), "options", None))
    gen = torch.Generator(device=device).manual_seed(int(getattr(args, "seed", 0) or 0))
    return sample_dlg(
        denoiser,
        estimator,
        int(args.num),
        cfg,
        process=process,
        generator=gen,
        device=device,
        class_labels=class_labels,
        sink=sink,
    )
