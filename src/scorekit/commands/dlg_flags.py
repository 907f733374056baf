"""Flags of `scorekit sample --dmcmc dlg` and the library objects they build (DLGConfig, an estimator)."""

from __future__ import annotations

import argparse

from ..dmcmc import DLGConfig, ExactNoisePosterior, NoiseLevelEstimator, TrainedNoiseClassifier, make_levels


def add_dlg_arguments(parser: argparse.ArgumentParser) -> None:
    """The `sample --dmcmc dlg` flags (a flag the parser already has is left as it is)."""
    d = DLGConfig()
    existing = {a for action in parser._actions for a in action.option_strings}

    def add(flag, **kw):
        if flag not in existing:
            parser.add_argument(flag, **kw)

    add("--dmcmc", choices=["dlg"], default=None, help="run Denoising Langevin Gibbs first")
    add("--noise-classifier", default=None, help="run directory of a trained noise-level classifier")
    add("--noise-posterior", choices=["exact"], default=None, help="exact p(σ|x) (mixtures only)")
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
    add(
        "--dlg-tweedie-sigma",
        type=float,
        default=None,
        help=f"lowest σ of the finisher schedule (default --sigma-min, else {d.tweedie_sigma})",
    )
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


def dlg_from_args(
    args, denoiser, process=None, *, gmm=None, device="cpu", shape=None
) -> tuple[DLGConfig | None, NoiseLevelEstimator | None]:
    """(DLGConfig, noise-level estimator) for `sample --dmcmc dlg`, or (None, None) without --dmcmc: the estimator
    from --noise-classifier RUN2 or --noise-posterior exact, the settings from the --dlg-* flags. The finisher is
    --sampler/--steps with --sampler-opt; its schedule is the command's one `Schedule`."""
    if args.dmcmc is None:
        for flag in ("noise_classifier", "noise_posterior"):
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
    else:
        raise ValueError(
            "--dmcmc dlg needs --noise-classifier DIR (a noise-classifier run directory made by "
            "train-noise-classifier) or --noise-posterior exact (gmm: models)"
        )
    return dlg_config_from_args(args), estimator
