"""Reproduce the Denoising MCMC paper's CIFAR-10 FID-vs-NFE table (Kim & Ye 2022, sec. 5) with scorekit.

Six reverse-S/ODE integrators, each run plainly from σ_max and as the finisher of Denoising Langevin Gibbs
(DLG), on score_sde's published VE NCSN++ CIFAR-10 checkpoint. Everything is local: the checkpoint, the FID
Inception weights and the CIFAR-10 python batches. Nothing is downloaded.

GPU run (about a day on one A100 for 50k samples per cell; use --num 10000 for a quicker table):

    python benchmarks/reproduce/dmcmc_cifar10.py \
        --checkpoint /data/score_sde/ve/cifar10_ncsnpp_deep_continuous/checkpoint_12.pth \
        --config cifar10_ncsnpp_deep_continuous --cifar10 /data/cifar-10-batches-py \
        --inception /data/pt_inception-2015-12-05.pth --out benchmarks/results/dmcmc_cifar10 --device cuda

CPU dry run (tiny fixture model, random reference images and features; checks the plumbing only):

    python benchmarks/reproduce/dmcmc_cifar10.py --dry-run --out /tmp/dmcmc_dry

Writes OUT/dmcmc_cifar10.{json,md,png}: one row per (integrator, with/without DLG, steps) with NFE and FID.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Timer,
    fid_against,
    fixtures_dir,
    make_extractor,
    quantize_uint8,
    reference_stats,
    write_results,
)

# The paper's six integrators, with and without DLG: KAR1 (heun), KAR2 (edm_stochastic, S_churn 80, S_tmin 0.05,
# S_tmax 1, S_noise 1.007), reverse diffusion, Euler–Maruyama, probability flow (pf_euler) and score_sde's RK45
# (rtol = atol = 1e-5). With DLG every setting is the official one: `DLGConfig.reference` (dmcmc/reference.py).
INTEGRATORS = ["heun", "edm_stochastic", "reverse_diffusion", "euler_maruyama", "pf_euler", "rk45"]
PLAIN_STEPS = {
    "euler_maruyama": [100, 200, 500, 1000],
    "reverse_diffusion": [100, 200, 500, 1000],
    "pf_euler": [100, 200, 500, 1000],
    "rk45": [2],  # adaptive: the tolerance sets the cost
    "heun": [5, 10, 18, 35],
    "edm_stochastic": [5, 10, 18, 35],
}
DLG_FINISHER_STEPS = {
    "euler_maruyama": [5, 10, 20, 50],
    "reverse_diffusion": [5, 10, 20, 50],
    "pf_euler": [5, 10, 20, 50],
    "rk45": [2],
    "heun": [1, 2, 3, 5],
    "edm_stochastic": [1, 2, 3, 5],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="score_sde checkpoint_*.pth of a VE NCSN++ CIFAR-10 model")
    p.add_argument("--config", default="cifar10_ncsnpp_deep_continuous", help="score_sde config name or JSON")
    p.add_argument("--run", help="an already imported run directory (skips --checkpoint)")
    p.add_argument("--cifar10", help="CIFAR-10 python batches folder (reference statistics, noise classifier)")
    p.add_argument("--inception", help="FID Inception weights file (pt_inception-2015-12-05)")
    p.add_argument("--inception-sha256", default=None, help="expected SHA-256 of --inception (default: published)")
    p.add_argument("--noise-classifier", help="trained noise_classifier run; trained here when absent")
    p.add_argument("--nc-steps", type=int, default=20000, help="noise classifier training steps (when trained here)")
    p.add_argument("--nc-levels", type=int, default=1000, help="noise levels of the classifier grid")
    p.add_argument("--num", type=int, default=50000, help="samples per table cell")
    p.add_argument("--num-ref", type=int, default=50000, help="reference images for the FID statistics")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--integrators", default=",".join(INTEGRATORS))
    p.add_argument("--plain-steps", default=None, help="override: comma list of steps for every integrator")
    p.add_argument("--dlg-steps", default=None, help="override: comma list of finisher steps for every integrator")
    p.add_argument(
        "--preset",
        default="reference-cifar10",
        choices=("reference-cifar10", "reference-celebahq"),
        help="the official DLG setting (DLGConfig.reference); default: CIFAR-10's",
    )
    p.add_argument(
        "--official-steps",
        action="store_true",
        help="DLG finisher steps as in the official code (20 points) instead of the --dlg-steps sweep",
    )
    p.add_argument("--dlg-chains", type=int, default=None, help="default: the official batch (200)")
    p.add_argument("--dlg-skip", type=int, default=None, help="default: the official 10")
    p.add_argument("--dlg-eta", type=float, default=None, help="default: the official 0.8")
    p.add_argument("--dlg-burn-in", type=int, default=None, help="default: the official second warm-up phase")
    p.add_argument("--dlg-init-steps", type=int, default=None, help="default: the official KAR2 N = 20 (19 steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", required=True, help="output folder for the table, JSON and plot")
    p.add_argument("--dry-run", action="store_true", help="tiny fixture model, random data and features (CPU)")
    return p.parse_args(argv)


def _steps(override, table, name):
    return [int(s) for s in override.split(",")] if override else table[name]


def _import_run(args, out: Path) -> Path:
    from scorekit.importers import import_score_sde

    if args.run:
        return Path(args.run)
    run = out / "run"
    if (run / "config.json").exists():
        return run
    if args.dry_run:
        fx = fixtures_dir()
        return import_score_sde(fx / "ncsnpp_ve_tiny_checkpoint.pth", str(fx / "ncsnpp_ve_tiny.json"), run)
    if not args.checkpoint:
        raise ValueError("--checkpoint (or --run) is required")
    return import_score_sde(args.checkpoint, args.config, run)


def _reference_images(args, shape) -> torch.Tensor:
    """User-range [0, 1] reference images."""
    if args.dry_run:
        g = torch.Generator().manual_seed(99)
        return torch.rand((64, *shape), generator=g)
    from scorekit.data import load_data

    if not args.cifar10:
        raise ValueError("--cifar10 DIR (the CIFAR-10 python batches) is required")
    return load_data(args.cifar10, split="train", num=args.num_ref, seed=args.seed).user_data()


def _noise_classifier(args, out: Path, run: Path, ref_user):
    """A trained noise-level classifier: --noise-classifier RUN, or trained here with
    `scorekit train-noise-classifier` on CIFAR-10 (random images in the dry run)."""
    from scorekit.cli import main as scorekit_main
    from scorekit.dmcmc import TrainedNoiseClassifier

    if args.noise_classifier:
        return TrainedNoiseClassifier(args.noise_classifier, device=args.device)
    nc_dir = out / "noise_classifier"
    if not (nc_dir / "config.json").exists():
        if args.dry_run:
            data = out / "dry_run_images.npy"
            np.save(data, ref_user.numpy().astype(np.float32))
            extra = ["--steps", "3", "--batch-size", "16", "--levels", "50"]
        else:
            if not args.cifar10:
                raise ValueError("--cifar10 DIR is needed to train the noise classifier (or give --noise-classifier)")
            data = args.cifar10
            extra = ["--steps", str(args.nc_steps), "--levels", str(args.nc_levels), "--device", str(args.device)]
        cmd = ["train-noise-classifier", "--run", str(run), "--data", str(data), "--out", str(nc_dir), *extra]
        if scorekit_main(cmd) != 0:
            raise ValueError("training the noise classifier failed (see the message above)")
    return TrainedNoiseClassifier(nc_dir, device=args.device)


def main(argv=None) -> int:
    args = parse_args(argv)
    from dataclasses import replace

    from scorekit.checkpoint import load_denoiser, read_config
    from scorekit.data import DataTransform
    from scorekit.dmcmc import REFERENCE_INTEGRATORS, DLGConfig, sample_dlg
    from scorekit.sampling import generate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        args.num, args.batch_size, args.dlg_chains = 8, 8, 4
        args.dlg_skip = 2 if args.dlg_skip is None else args.dlg_skip
        args.plain_steps = args.plain_steps or "2"
        args.dlg_steps = args.dlg_steps or "1"
        args.dlg_burn_in = 1 if args.dlg_burn_in is None else args.dlg_burn_in
        args.dlg_init_steps = 2 if args.dlg_init_steps is None else args.dlg_init_steps
        args.device = "cpu"
    run = _import_run(args, out)
    cfg = read_config(run)
    transform = DataTransform.from_config(cfg["data"]["transform"])
    den = load_denoiser(run, device=args.device)
    shape = tuple(cfg["data"]["shape"])
    extractor = make_extractor(args, shape[0])
    ref_user = _reference_images(args, shape)
    ref = reference_stats(extractor, ref_user, None if args.dry_run else out / f"ref_stats_{extractor.name}.npz")
    estimator = _noise_classifier(args, out, run, ref_user)

    def fid(samples_model):
        return fid_against(extractor, quantize_uint8(transform.to_user(samples_model.float())), ref)

    rows = []
    for name in args.integrators.split(","):
        for steps in _steps(args.plain_steps, PLAIN_STEPS, name):
            with Timer() as t:
                res = generate(
                    den,
                    name,
                    steps,
                    args.num,
                    batch_size=args.batch_size,
                    seed=args.seed,
                    device=args.device,
                    sampler_options=REFERENCE_INTEGRATORS[name][2] if name == "rk45" else None,
                )
            rows.append(
                {
                    "integrator": name,
                    "dlg": False,
                    "steps": steps,
                    "nfe": float(res.nfe),
                    "fid": fid(res.samples),
                    "seconds": round(t.seconds, 1),
                }
            )
        dlg_steps = [REFERENCE_INTEGRATORS[name][1]] if args.official_steps else None
        for steps in dlg_steps or _steps(args.dlg_steps, DLG_FINISHER_STEPS, name):
            kw = {
                k: v
                for k, v in {
                    "chains": args.dlg_chains,
                    "skip": args.dlg_skip,
                    "eta": args.dlg_eta,
                    "burn_in": args.dlg_burn_in,
                    "init_steps": args.dlg_init_steps,
                }.items()
                if v is not None
            }
            dcfg = DLGConfig.reference(args.preset.split("-", 1)[1], finisher=name, **kw)
            if name != "rk45":
                dcfg = replace(dcfg, finisher_steps=steps)
            gen = torch.Generator(device=args.device).manual_seed(args.seed)
            with Timer() as t:
                res = sample_dlg(den, estimator, args.num, dcfg, generator=gen, device=args.device)
            rows.append(
                {
                    "integrator": name,
                    "dlg": True,
                    "steps": steps,
                    "nfe": float(res.nfe_per_sample),
                    "fid": fid(res.samples),
                    "seconds": round(t.seconds, 1),
                }
            )
    meta = {
        "run": str(run),
        "num": args.num,
        "extractor": extractor.describe(),
        "dry_run": args.dry_run,
        "device": str(args.device),
        "dlg_preset": args.preset,
        "dlg_overrides": {"chains": args.dlg_chains, "skip": args.dlg_skip, "eta": args.dlg_eta},
    }
    write_results(
        out,
        "dmcmc_cifar10",
        "DMCMC CIFAR-10: FID vs NFE with and without DLG",
        ["integrator", "dlg", "steps", "nfe", "fid", "seconds"],
        rows,
        meta,
    )
    _plot(rows, out / "dmcmc_cifar10.png")
    return 0


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, name in enumerate(dict.fromkeys(r["integrator"] for r in rows)):
        for dlg, style in ((False, "-"), (True, "--")):
            pts = sorted((r["nfe"], r["fid"]) for r in rows if r["integrator"] == name and r["dlg"] == dlg)
            if pts:
                x, y = np.array(pts).T
                ax.plot(x, y, style, marker="o", color=f"C{i}", label=f"{name}{' + DLG' if dlg else ''}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("NFE per sample")
    ax.set_ylabel("FID")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
