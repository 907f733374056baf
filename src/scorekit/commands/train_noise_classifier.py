"""`scorekit train-noise-classifier`: the noise-level classifier that Denoising MCMC reads σ from.

Kim & Ye 2022, Sec. 4: cross-entropy on x0 + σ_y·ε, y uniform over a geometric σ grid between the score model's
σ_min and σ_max, trained by the one training loop (EMA, checkpoints, --resume); accuracy → config.json["accuracy"].
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from . import add_ema_arguments

NAME = "train-noise-classifier"
HELP = "train the noise-level classifier used by Denoising MCMC (scorekit sample --dmcmc dlg)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        required=True,
        help="score-model run directory (its data, transform and process; --run-dir under torchrun)",
    )
    p.add_argument("--data", default=None, help="data to train on (default: the run's data)")
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    p.add_argument("--out", default=None, help="output run directory (default: RUN/noise_classifier)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--levels", type=int, default=1000, help="number of σ levels (default 1000)")
    p.add_argument("--sigma-min", type=float, default=None, help="smallest σ (default: the process's)")
    p.add_argument("--sigma-max", type=float, default=None, help="largest σ (default: the process's)")
    p.add_argument("--eval-num", type=int, default=2000, help="noisy held-out samples for the accuracy")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    add_ema_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")


def run(args) -> int:
    from ..distributed import init_distributed, is_main_process, resolve_device
    from ..dmcmc.noise_training import train_noise_classifier_run

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    device = resolve_device(args.device)
    init_distributed(device)  # under torchrun the ranks share the global batch (training.train)
    out = Path(args.out) if args.out else Path(args.run) / "noise_classifier"

    def log(rec):
        if "loss" in rec:
            print(f"step {rec['step']:6d}  loss {rec['loss']:.4f}", flush=True)

    cfg = train_noise_classifier_run(
        args.run,
        out,
        data=args.data,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=device,
        num_levels=args.levels,
        sigma_min=args.sigma_min,
        sigma_max=args.sigma_max,
        eval_num=args.eval_num,
        log=log,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        ema_sigma_rel=args.ema_sigma_rel,
        ema_snapshot_every=args.ema_snapshot_every,
    )
    if "accuracy" not in cfg:
        print(f"stopped; checkpoint saved in {out} (continue with --resume)")
        return 130
    if not is_main_process():
        return 0
    acc = cfg["accuracy"]
    print(
        f"noise classifier → {out}: exact {acc['exact']:.3f} (chance {acc['chance_exact']:.4f}), "
        f"±1 {acc['within_1']:.3f}, ±5 {acc['within_5']:.3f}, ±20 {acc['within_20']:.3f} "
        f"(chance {acc['chance_within_20']:.3f})"
    )
    return 0
