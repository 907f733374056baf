"""`scorekit train-noise-classifier`: the noise-level classifier that Denoising MCMC reads σ from.

Kim & Ye 2022, Sec. 4: cross-entropy on x0 + σ_y·ε with y uniform over a 1,000-level geometric σ grid
between the score model's σ_min and σ_max. The score-model run supplies the data, its transform and the
process; the classifier is trained on data alone. Accuracy (exact level and within ±k levels) goes to the
log and to config.json["accuracy"].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

NAME = "train-noise-classifier"
HELP = "train the noise-level classifier used by Denoising MCMC (scorekit sample --dmcmc dlg)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="score-model run directory (its data, transform and process)")
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


def _model_range_data(spec: str, run_cfg: dict, split: str):
    """The data in the *score model's* model range (the run's recorded transform), whatever the spec."""
    from ..data import DataTransform, load_data

    ds = load_data(spec, split=split)
    transform = run_cfg.get("data", {}).get("transform")
    if transform is None:
        return ds.data.float(), ds
    t = DataTransform.from_config(transform)
    if t.kind != ds.kind:
        raise ValueError(f"data {spec!r} is {ds.kind} data but the run was trained on {t.kind} data")
    x = t.to_model(ds.user_data()).float()
    expected = tuple(run_cfg.get("data", {}).get("shape", x.shape[1:]))
    if tuple(x.shape[1:]) != expected:
        raise ValueError(f"data {spec!r} has sample shape {tuple(x.shape[1:])}, the run expects {expected}")
    return x, ds


def run(args) -> int:
    from ..checkpoint import read_config
    from ..dmcmc import (
        make_levels,
        noise_classifier_network_config,
        noise_level_accuracy,
        save_noise_classifier_run,
        train_noise_classifier,
    )
    from ..processes import get_process

    if args.steps < 1 or args.batch_size < 1 or args.levels < 2 or args.eval_num < 1:
        raise ValueError("--steps, --batch-size, --eval-num must be >= 1 and --levels >= 2")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    run_cfg = read_config(args.run)
    if run_cfg.get("kind", "score_model") != "score_model":
        raise ValueError(f"{args.run} holds a {run_cfg.get('kind')!r}, not a score model run")
    if "process" not in run_cfg:
        raise ValueError(f"{Path(args.run) / 'config.json'} has no 'process' section")
    process = get_process(run_cfg["process"])
    spec = args.data or run_cfg.get("data", {}).get("spec")
    if not spec:
        raise ValueError("the run records no data spec; pass --data")
    train_x, ds = _model_range_data(spec, run_cfg, "train")
    try:
        test_x, _ = _model_range_data(spec, run_cfg, "test")
    except ValueError:
        test_x = train_x
    sigma_min = args.sigma_min if args.sigma_min is not None else process.sigma_min
    sigma_max = args.sigma_max if args.sigma_max is not None else process.sigma_max
    if sigma_max > process.sigma_max * (1 + 1e-6):
        raise ValueError(f"--sigma-max {sigma_max:g} exceeds the process's σ_max {process.sigma_max:g}")
    levels = make_levels(sigma_min, sigma_max, args.levels)
    out = Path(args.out) if args.out else Path(args.run) / "noise_classifier"
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    log_f = open(log_path, "w")

    def log(rec):
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()
        print(f"step {rec['step']:6d}  loss {rec['loss']:.4f}", flush=True)

    try:
        net_cfg = noise_classifier_network_config(tuple(train_x.shape[1:]), args.levels)
        net, net_cfg = train_noise_classifier(
            train_x,
            levels,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            device=args.device,
            network=net_cfg,
            log=log,
        )
        acc = noise_level_accuracy(
            lambda x: torch.log_softmax(net(x), 1),
            test_x,
            levels,
            num=args.eval_num,
            generator=torch.Generator().manual_seed(args.seed + 1),
            device=args.device,
        )
        log_f.write(json.dumps({"step": args.steps, "accuracy": acc}) + "\n")
    finally:
        log_f.close()
    config = {
        "kind": "noise_classifier",
        "score_run": str(Path(args.run)),
        "data": {**run_cfg.get("data", ds.to_config()), "spec": spec},
        "process": process.to_config(),
        "network": net_cfg,
        "levels": {
            "sigma_min": float(sigma_min),
            "sigma_max": float(sigma_max),
            "num": int(args.levels),
            "grid": "sigma_min*(sigma_max/sigma_min)**linspace(1, 1e-3, num)",
            "values": levels.tolist(),
        },
        "training": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "optimizer": "adam",
            "loss": "cross_entropy",
        },
        "accuracy": acc,
    }
    save_noise_classifier_run(out, net.cpu(), config)
    print(
        f"noise classifier → {out}: exact {acc['exact']:.3f} (chance {acc['chance_exact']:.4f}), "
        f"±1 {acc['within_1']:.3f}, ±5 {acc['within_5']:.3f}, ±20 {acc['within_20']:.3f} "
        f"(chance {acc['chance_within_20']:.3f})"
    )
    return 0
