"""`scorekit sample`: draw samples from a trained run or an analytic mixture with any sampler,
optionally through Denoising MCMC and/or classifier guidance."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..analytic import load_gmm_spec
from ..checkpoint import load_denoiser, read_config
from ..data import DataTransform, save_image_grid, save_scatter
from ..distributed import init_distributed, is_main_process, resolve_device
from ..guidance import default_class_labels
from ..processes import get_process
from ..samplers import Schedule
from ..sampling import parse_sampler_options, sample_stream, write_npz
from .dlg_flags import add_dlg_arguments, dlg_from_args
from .guidance_flags import add_guidance_arguments, guided_denoiser_from_args, training_class_counts

NAME = "sample"
HELP = "draw samples with any sampler (optionally Denoising MCMC and classifier guidance) into an .npz"


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        help="run directory of a trained (or imported) score model "
        "(--run-dir under torchrun, whose parser claims --run)",
    )
    src.add_argument(
        "--model", help="gmm:SPEC.json — the exact denoiser of a Gaussian mixture (format: docs/formats.md)"
    )
    p.add_argument(
        "--process",
        default=None,
        help="process whose time/space the S/ODE integrators use (default: the run's; vp for --model gmm:)",
    )
    p.add_argument(
        "--sampler",
        default=None,
        help="sampler name (e.g. heun, dpmpp_2m, ipndm, unipc); with --nfe: restrict the budget's choice to it",
    )
    p.add_argument("--steps", type=int, default=None, help="number of sampler steps (noise levels)")
    p.add_argument(
        "--nfe",
        type=int,
        default=None,
        help="denoiser evaluations per sample instead of --sampler/--steps: scorekit picks the solver and σ steps "
        "(a tuned schedule in RUN/schedules/; with --run and none there yet, it tunes one first and keeps it) and "
        "never spends more",
    )
    p.add_argument(
        "--no-tune",
        action="store_true",
        help="with --nfe: take the built-in rule (neither tune a schedule for the run nor use one kept there)",
    )
    p.add_argument(
        "--num",
        "--num-samples",
        dest="num",
        type=int,
        required=True,
        help="number of samples (--num-samples under torchrun, whose parser claims --num)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="samples per batch (default by data size and device: 1024 vectors on a CPU, 16384 on a GPU; images "
        "about 2^21 values per batch on a CPU, 2^23 on a GPU); the samples of a seed depend on it",
    )
    p.add_argument("--out", required=True, help="output .npz: samples, nfe, labels, provenance (keys: docs/formats.md)")
    p.add_argument("--grid", default=None, help="also write a PNG grid (images) or scatter plot (2-D data)")
    p.add_argument(
        "--schedule",
        default=None,
        help="uniform_t | log | karras | logsnr | comma-separated σ list (default: the sampler's)",
    )
    p.add_argument("--sigma-min", type=float, default=None)
    p.add_argument("--sigma-max", type=float, default=None)
    p.add_argument("--rho", type=float, default=7.0, help="Karras schedule ρ")
    p.add_argument(
        "--sampler-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sampler option, repeatable (e.g. snr=0.16, eta=0.5, s_churn=10)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--no-progress", action="store_true")
    add_dlg_arguments(p.add_argument_group("Denoising MCMC"))
    add_guidance_arguments(p.add_argument_group("guidance"))


def load_model(args, device):
    """(denoiser, process, data transform or None, gmm or None, data kind, data shape) for --run/--model."""
    if args.model:
        if not args.model.startswith("gmm:"):
            raise ValueError(f"--model must be gmm:SPEC.json, got {args.model!r}")
        gmm = load_gmm_spec(args.model[4:])
        proc = get_process(args.process or "vp")
        return gmm.denoiser(proc), proc, None, gmm, "vector", (gmm.dim,)
    cfg = read_config(args.run)
    den = load_denoiser(args.run, ema=not args.no_ema, device=device)
    proc = get_process(args.process) if args.process else den.process
    transform = DataTransform.from_config(cfg["data"]["transform"])
    return den, proc, transform, None, cfg["data"]["kind"], tuple(cfg["data"]["shape"])


def schedule_from_args(args) -> Schedule:
    """--schedule (name or σ list), --rho, --sigma-min, --sigma-max: one `Schedule` for every sampling path."""
    return Schedule.parse(args.schedule, rho=args.rho, sigma_min=args.sigma_min, sigma_max=args.sigma_max)


def _preview_rows(shape) -> int:
    """Rows kept in memory for the --grid picture: 100 images or 2000 points."""
    return 100 if len(shape) == 3 else 2000


def save_preview(
    path, samples_user: torch.Tensor, kind: str, reference: torch.Tensor | None = None, title: str | None = None
) -> None:
    if kind == "image":
        n = min(len(samples_user), 100)
        save_image_grid(path, samples_user[:n], nrow=max(1, int(math.ceil(math.sqrt(n)))))
    elif samples_user.ndim == 2 and samples_user.shape[1] == 2:
        save_scatter(path, samples_user, ref=reference, title=title)
    else:
        raise ValueError("--grid needs image data or 2-D vector data")


def _tune_on_first_use(args, den, shape) -> None:
    """`--nfe N --run RUN` with no schedule tuned for N in RUN/schedules/: tune one (samplers.tuning.tune_for_budget,
    16 teacher trajectories and 16 held out) and keep it there, so this and every later `--nfe N` uses it."""
    import time

    from ..distributed import rank_world
    from ..samplers.budget import find_tuned_schedule
    from ..samplers.tuning import run_fingerprint, save_schedule, tune_for_budget

    if args.nfe is None or args.run is None or args.no_tune or find_tuned_schedule(args.run, args.nfe, args.sampler):
        return
    if rank_world()[1] > 1:  # every rank must plan alike: tune once with `scorekit tune-schedule` first
        print(f"--nfe {args.nfe}: no tuned schedule in {args.run}/schedules/ (not tuned under torchrun)")
        return
    from ..provenance import attach_to_json, provenance

    t = time.perf_counter()
    result = tune_for_budget(den, args.nfe, shape=shape, process=den.process, sampler=args.sampler,
                             seed=0, model=run_fingerprint(args.run))  # fmt: skip
    out = Path(args.run) / "schedules" / f"{result['sampler']}-nfe{args.nfe}.json"
    record = provenance(model=args.run, sampler=result["sampler"], options=result.get("options", {}), nfe=args.nfe,
                        teachers=16, seed=0, tuned_by="sample --nfe")  # fmt: skip
    record["wall_s"] = round(time.perf_counter() - t, 3)
    try:
        save_schedule(out, attach_to_json(result, record))
    except OSError as e:  # a read-only run folder: sample with the rule, say so
        print(f"--nfe {args.nfe}: could not keep the tuned schedule ({e.strerror}); using the built-in rule")
        return
    e = result["endpoint_error"]
    print(
        f"--nfe {args.nfe}: tuned a {result['sampler']} schedule for this run in {time.perf_counter() - t:.0f} s "
        f"({result['chosen']}; held-out endpoint error {e['heldout_tuned']:.3g} vs {e['heldout_start']:.3g} for "
        f"the built-in rule) → {out} (--no-tune skips this)"
    )


def _check_budget_flags(args) -> None:
    if args.nfe is None:
        preset = getattr(args, "dlg_preset", None) and args.dmcmc == "dlg"  # the preset has its own steps
        if (args.sampler is None or args.steps is None) and not preset:
            raise ValueError("give --sampler NAME --steps N, or an evaluation budget --nfe N")
        return
    if args.steps is not None:
        raise ValueError("give either --steps or --nfe, not both")
    if args.nfe < 1:
        raise ValueError(f"--nfe must be >= 1, got {args.nfe}")
    if args.schedule is not None:
        raise ValueError("--nfe picks its own σ steps; drop --schedule (or use --sampler/--steps)")


def _note_adaptive(args) -> None:
    """rk45 chooses its own steps (rtol/atol): --steps only fixes the σ range it integrates over."""
    from ..samplers import get_sampler

    if args.sampler is None or args.steps is None or args.nfe is not None:
        return
    spec = get_sampler(args.sampler)
    if spec.name == "rk45":
        if args.steps < 2:
            raise ValueError(
                "rk45 is adaptive (its evaluations follow --sampler-opt rtol/atol); --steps only sets the σ range "
                f"and must be >= 2, got {args.steps}"
            )
        if is_main_process():
            print(f"note: rk45 is adaptive; --steps {args.steps} does not set its cost (use --sampler-opt rtol=…)")


def _provenance(args, guidance: dict, label_note: str | None = None) -> dict:
    from ..provenance import provenance

    settings = {}
    if label_note:
        settings["class_labels"] = label_note
    if args.nfe is not None:
        settings["nfe_budget"] = args.nfe
    if guidance:
        settings["guidance"] = guidance
    if args.run and args.no_ema:
        settings["weights"] = "raw (--no-ema)"
    return provenance(model=args.run or args.model, **settings)


def _guidance_settings(args) -> dict:
    if getattr(args, "guidance", None) in (None, "none"):
        return {}
    keys = ("guidance", "classifier", "class_label", "scale", "cfg_weight", "guidance_interval")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def run(args) -> int:
    from ..outputs import check_output_file

    check_output_file(args.out, "--out", ".npz")
    if args.grid:
        check_output_file(args.grid, "--grid", ".png")
    _check_budget_flags(args)
    _note_adaptive(args)
    schedule = schedule_from_args(args)
    options = parse_sampler_options(args.sampler_opt)
    device = resolve_device(args.device)
    init_distributed(device)
    den, proc, transform, gmm, kind, shape = load_model(args, device)
    den, labels = guided_denoiser_from_args(args, den, gmm=gmm, device=device)
    label_note = None
    if labels is None and den.labels_required:  # a label per sample: classes as often as training saw them
        counts = training_class_counts(args)
        labels = default_class_labels(args.num, den.num_classes, args.seed, counts)
        label_note = f"random, {'as often as in training' if counts else 'uniform'} (no --class)"
    dlg, estimator = dlg_from_args(args, den, proc, gmm=gmm, device=device, shape=shape)
    if dlg is None and getattr(args, "guidance", "none") in (None, "none"):
        _tune_on_first_use(args, den, shape)
    sampler, steps = _sampler_and_steps(args, dlg)
    plan = getattr(args, "dlg_plan", None)
    if plan is not None and is_main_process():
        print(plan.describe())
    stream = sample_stream(
        den,
        sampler,
        steps,
        args.num,
        nfe=args.nfe if dlg is None else None,
        run_dir=None if args.no_tune else args.run,  # --no-tune: the built-in rule, not a kept tuned file
        schedule=schedule,
        process=proc,
        batch_size=args.batch_size,
        seed=args.seed,
        device=device,
        class_labels=labels,
        sampler_options=options,
        data_shape=shape,
        dlg=dlg,
        estimator=estimator,
        distributed=True,
        progress=not args.no_progress,
    )
    to_user = transform.to_user if transform is not None else None
    if stream.plan is not None and is_main_process():
        print(f"--nfe {args.nfe}: {stream.plan.reason}")
    record = _provenance(args, _guidance_settings(args), label_note) if is_main_process() else None
    preview = write_npz(
        stream, args.out, args.num, shape, to_user=to_user, keep=_preview_rows(shape), provenance=record
    )
    if not is_main_process():
        return 0
    if args.grid:
        ref = None
        if gmm is not None and gmm.dim == 2:
            ref = gmm.sample(min(2000, args.num), torch.Generator().manual_seed(args.seed + 1))[0].float()
        from ..plots import panel_title

        method = stream.plan.sampler if stream.plan is not None else args.sampler
        method = f"dlg+{method}" if dlg is not None else method
        save_preview(args.grid, preview, kind, ref, title=panel_title(method, stream.nfe))
    extra = ""
    if "classifier_evals" in stream.extra:
        x = stream.extra
        extra = (
            f"; noise-classifier evaluations per sample {float(x['classifier_evals']):.2f} "
            f"(= {float(x['classifier_denoiser_equivalent_nfe']):.2f} denoiser evaluations); "
            f"distinct outputs {float(x['distinct_fraction']):.3f}, ESS {float(x['ess']):.0f} of {args.num} "
            f"(lag-1 autocorrelation {float(x['lag1_autocorrelation']):.3f})"
        )
    if "network_nfe" in stream.extra:
        why = (
            "2 a call"
            if getattr(args, "guidance_interval", None) is None
            else "2 a call inside its σ interval, 1 outside"
        )
        extra += f"; {float(stream.extra['network_nfe']):.2f} network evaluations per sample (guidance runs {why})"
    if dlg is not None:
        name = f"dlg+{sampler}"
    else:
        name, steps = (stream.plan.sampler, stream.plan.steps) if stream.plan is not None else (sampler, steps)
    print(f"wrote {args.num} samples to {args.out} ({name}, {steps} steps, {stream.nfe:.2f} NFE per sample){extra}")
    return 0


def _sampler_and_steps(args, dlg):
    """(sampler, steps): the DLG config's finisher with --dmcmc dlg (planned from --nfe by `dmcmc.plan_dlg`),
    else --sampler/--steps as given (a plain --nfe budget is planned by the front end)."""
    if dlg is not None:
        return dlg.finisher, dlg.finisher_steps
    return args.sampler, args.steps
