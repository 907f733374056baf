"""`scorekit sample`: draw samples from a trained run or an analytic mixture with any sampler,
optionally through Denoising MCMC and/or classifier guidance."""

from __future__ import annotations

import math

import numpy as np
import torch

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
    src.add_argument("--model", help="gmm:SPEC.json — the exact denoiser of a Gaussian mixture")
    p.add_argument(
        "--process",
        default=None,
        help="process whose time/space the S/ODE integrators use (default: the run's; vp for --model gmm:)",
    )
    p.add_argument("--sampler", required=True, help="sampler name (see docs; e.g. heun, euler_maruyama, dpmpp_2m)")
    p.add_argument("--steps", type=int, required=True, help="number of sampler steps (noise levels)")
    p.add_argument(
        "--num",
        "--num-samples",
        dest="num",
        type=int,
        required=True,
        help="number of samples (--num-samples under torchrun, whose parser claims --num)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", required=True, help="output .npz")
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
    _add_dmcmc_arguments(p)
    _add_guidance_arguments(p)


def _has(p, flag: str) -> bool:
    return flag in p._option_string_actions


def _add_dmcmc_arguments(p):
    g = p.add_argument_group("Denoising MCMC")
    try:
        from .dlg_flags import add_dlg_arguments
    except ImportError:
        add_dlg_arguments = None
    if add_dlg_arguments is not None:
        add_dlg_arguments(g)
    if not _has(p, "--dmcmc"):
        g.add_argument("--dmcmc", choices=["dlg"], default=None, help="run Denoising Langevin Gibbs first")
    if not _has(p, "--noise-classifier"):
        g.add_argument("--noise-classifier", default=None, help="run directory of a trained noise-level classifier")
    if not _has(p, "--noise-posterior"):
        g.add_argument("--noise-posterior", choices=["exact"], default=None, help="exact p(σ|x) (mixtures only)")
    for flag, typ, hlp in [
        ("--dlg-skip", int, "Gibbs steps between outputs"),
        ("--dlg-eta", float, "Langevin step size η"),
        ("--dlg-chains", int, "number of persistent chains"),
    ]:
        if not _has(p, flag):
            g.add_argument(flag, type=typ, default=None, help=hlp)


def _add_guidance_arguments(p):
    g = p.add_argument_group("guidance")
    try:
        from .guidance_flags import add_guidance_arguments
    except ImportError:
        add_guidance_arguments = None
    if add_guidance_arguments is not None:
        add_guidance_arguments(g)
    if not _has(p, "--guidance"):
        g.add_argument("--guidance", choices=["classifier", "cfg"], default=None)
    if not _has(p, "--classifier"):
        g.add_argument("--classifier", default=None, help="classifier run directory, or 'exact' for a labelled gmm")
    if not _has(p, "--class"):
        g.add_argument("--class", dest="class_label", default=None, help="class index (or 'random')")
    if not _has(p, "--scale"):
        g.add_argument("--scale", type=float, default=None, help="guidance scale s")


def load_model(args, device):
    """(denoiser, process, data transform or None, gmm or None, data kind, data shape) for --run/--model."""
    from ..processes import get_process

    if args.model:
        if not args.model.startswith("gmm:"):
            raise ValueError(f"--model must be gmm:SPEC.json, got {args.model!r}")
        from ..analytic import load_gmm_spec

        gmm = load_gmm_spec(args.model[4:])
        proc = get_process(args.process or "vp")
        return gmm.denoiser(proc), proc, None, gmm, "vector", (gmm.dim,)
    from ..checkpoint import load_denoiser, read_config
    from ..data import DataTransform

    cfg = read_config(args.run)
    den = load_denoiser(args.run, ema=not args.no_ema, device=device)
    proc = get_process(args.process) if args.process else den.process
    transform = DataTransform.from_config(cfg["data"]["transform"])
    return den, proc, transform, None, cfg["data"]["kind"], tuple(cfg["data"]["shape"])


def parse_schedule(text):
    from ..samplers import SCHEDULES

    if text is None or text in SCHEDULES:
        return text
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"--schedule must be uniform_t, log, logsnr, karras or a comma-separated list of σ; got {text!r}"
        ) from None
    return vals


def _preview_rows(shape) -> int:
    """Rows kept in memory for the --grid picture: 100 images or 2000 points."""
    return 100 if len(shape) == 3 else 2000


def save_preview(path, samples_user: torch.Tensor, kind: str, reference: torch.Tensor | None = None) -> None:
    from ..data import save_image_grid, save_scatter

    if kind == "image":
        n = min(len(samples_user), 100)
        save_image_grid(path, samples_user[:n], nrow=max(1, int(math.ceil(math.sqrt(n)))))
    elif samples_user.ndim == 2 and samples_user.shape[1] == 2:
        save_scatter(path, samples_user, ref=reference)
    else:
        raise ValueError("--grid needs image data or 2-D vector data")


def run(args) -> int:
    from ..distributed import init_distributed, is_main_process, resolve_device
    from ..samplers import get_sampler
    from ..sampling import parse_sampler_options

    if args.steps <= 0:
        raise ValueError(f"--steps must be > 0, got {args.steps}")
    if args.num <= 0:
        raise ValueError(f"--num must be > 0, got {args.num}")
    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be > 0, got {args.batch_size}")
    if not str(args.out).endswith(".npz"):
        raise ValueError(f"--out must end in .npz, got {args.out}")
    spec = get_sampler(args.sampler)
    options = parse_sampler_options(args.sampler_opt, getattr(spec, "options", None))
    device = resolve_device(args.device)
    init_distributed(device)
    den, proc, transform, gmm, kind, shape = load_model(args, device)
    schedule = parse_schedule(args.schedule)

    from ..analytic import GMMDenoiser
    from .guidance_flags import guided_denoiser_from_args

    den, labels = guided_denoiser_from_args(args, den, gmm=gmm, device=device)
    if labels is None and getattr(den, "num_classes", 0) > 0 and not isinstance(den, GMMDenoiser):
        # a class-conditional network needs a label per sample: random classes from the seed unless --class
        labels = torch.randint(0, den.num_classes, (args.num,), generator=torch.Generator().manual_seed(args.seed))

    if args.dmcmc:
        from ..sampling import NpzStreamWriter
        from .dlg_flags import run_dlg_from_args

        # outputs are streamed round by round into the .npz: memory is bounded by the chain count, not --num
        writer = NpzStreamWriter(args.out, "samples", (args.num, *shape)) if is_main_process() else None
        cap = _preview_rows(shape)
        kept = []

        def sink(x, _sigma):
            if writer is None:
                return
            if not torch.isfinite(x).all():
                raise ValueError("DLG produced non-finite values; try a smaller --dlg-eta or more --steps")
            u = transform.to_user(x) if transform is not None else x
            writer.append(u.float().cpu().numpy())
            if sum(len(k) for k in kept) < cap:
                kept.append(u.float().cpu())

        try:
            res = run_dlg_from_args(
                args, den, proc, gmm=gmm, device=device, shape=shape, class_labels=labels, sink=sink
            )
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is None:
            return 0
        arrays = {
            "nfe": np.float64(res.nfe_per_sample),
            "sigma_start": res.sigma_start.float().numpy(),
            "classifier_evals": np.float64(res.classifier_evals_per_sample),
        }
        if labels is not None:  # DLG output i comes from chain i mod C: its label is that chain's
            arrays["labels"] = res.info.get("labels", labels).cpu().numpy().astype(np.int64)
        writer.close(**arrays)
        preview = torch.cat(kept)[:cap] if kept else torch.empty((0, *shape))
        nfe = res.nfe_per_sample
        extra = f"; noise-classifier evaluations per sample {res.classifier_evals_per_sample:.2f}"
    else:
        preview, nfe = _generate_streaming(args, den, proc, schedule, options, device, shape, labels, transform)
        extra = ""
        if not is_main_process():
            return 0
    if args.grid:
        ref = None
        if gmm is not None and gmm.dim == 2:
            ref = gmm.sample(min(2000, args.num), torch.Generator().manual_seed(args.seed + 1))[0].float()
        save_preview(args.grid, preview, kind, ref)
    print(
        f"wrote {args.num} samples to {args.out} ({args.sampler}, {args.steps} steps, {nfe:.2f} NFE per sample){extra}"
    )
    return 0


def _generate_streaming(args, den, proc, schedule, options, device, shape, labels, transform):
    """Each round, rank r makes batch round·world + r; rank 0 appends the gathered batches in order to the .npz.
    Memory stays flat in --num; the samples equal a single-process run's (batch seeds depend on the index)."""
    from ..distributed import gather_batches, rank_world
    from ..sampling import NpzStreamWriter, generate

    rank, world = rank_world()
    nb = math.ceil(args.num / args.batch_size)
    writer = NpzStreamWriter(args.out, "samples", (args.num, *shape)) if rank == 0 else None
    preview, nfe_sum = [], 0.0
    cap = _preview_rows(shape)
    bar = None
    if not args.no_progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=nb, desc=f"sample {args.sampler}", unit="batch", dynamic_ncols=True)
    try:
        for r in range(math.ceil(nb / world)):
            b = r * world + rank
            local = {}
            if b < nb:
                res = generate(
                    den,
                    args.sampler,
                    args.steps,
                    args.num,
                    process=proc,
                    schedule=schedule,
                    sigma_min=args.sigma_min,
                    sigma_max=args.sigma_max,
                    rho=args.rho,
                    batch_size=args.batch_size,
                    seed=args.seed,
                    device=device,
                    class_labels=labels,
                    sampler_options=options,
                    data_shape=shape,
                    batches=[b],
                )
                x = transform.to_user(res.samples) if transform is not None else res.samples
                local[b] = (x, res.nfe)
            got = gather_batches(local)
            if writer is not None:
                for bb in sorted(got):
                    x, nfe = got[bb]
                    writer.append(x.numpy())
                    nfe_sum += nfe * len(x)
                    kept = sum(len(p) for p in preview)
                    if kept < cap:
                        preview.append(x[: cap - kept])
                    if bar is not None:
                        bar.update(1)
        if writer is None:
            return None, 0.0
        nfe = nfe_sum / args.num
        small = {"nfe": np.float64(nfe)}
        if labels is not None:
            small["labels"] = labels.cpu().numpy().astype(np.int64)
        writer.close(**small)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return torch.cat(preview), nfe
