"""`scorekit quickstart`: the main job on the built-in digits — train a score model, sample, show a grid, train a
noise-level classifier and compare plain Heun with Denoising Langevin Gibbs + Heun at equal NFE (digits FID)."""

from __future__ import annotations

import json
import time
from pathlib import Path

NAME = "quickstart"
HELP = "train on the built-in 8x8 digits, sample, and compare Heun with DLG + Heun (minutes on a CPU)"


def add_arguments(p):
    p.add_argument("--out", default="scorekit-quickstart", help="output folder (default scorekit-quickstart)")
    p.add_argument("--steps", type=int, default=3000, help="score-model training steps (default 3000)")
    p.add_argument("--classifier-steps", type=int, default=1500, help="noise-classifier training steps")
    p.add_argument("--num", type=int, default=1000, help="samples per method for the comparison (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")


def quickstart_config(steps: int, seed: int) -> dict:
    from ..training import default_config

    cfg = default_config("digits", "ve", steps=steps, seed=seed, batch_size=64, lr=1e-3, warmup=200)
    cfg["process"]["sigma_max"] = 20.0  # 8×8 digits in [-1, 1] lie within ~16 of each other
    cfg["network"].update({"model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4]})
    cfg["training"].update({"ema_decay": 0.999, "checkpoint_every": 1000, "log_every": 100})
    return cfg


def run(args) -> int:
    from ..checkpoint import load_denoiser, write_json_atomic
    from ..data import DataTransform, load_data, save_image_grid
    from ..distributed import resolve_device
    from ..sampling import generate
    from ..training import train

    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. score model
    if (run_dir / "model.safetensors").exists():
        print(f"[1/4] reusing the trained model in {run_dir}")
    else:
        print(f"[1/4] training a score model on digits ({args.steps} steps) → {run_dir}")
        train(quickstart_config(args.steps, args.seed), run_dir, device=device, progress=not args.no_progress)
    timings["train_score_model_s"] = time.perf_counter() - t0

    # 2. samples + grid
    t1 = time.perf_counter()
    den = load_denoiser(run_dir, device=device)
    transform = DataTransform.from_config(json.loads((run_dir / "config.json").read_text())["data"]["transform"])
    res = generate(den, "heun", 18, 100, batch_size=100, seed=args.seed, device=device)
    grid = out / "samples_heun.png"
    save_image_grid(grid, transform.to_user(res.samples), nrow=10)
    timings["sample_grid_s"] = time.perf_counter() - t1
    print(f"[2/4] 100 samples with heun (18 steps, {res.nfe:.0f} NFE) → {grid}")

    # 3 + 4. noise classifier and heun vs DLG + heun at equal NFE
    summary = {"run": str(run_dir), "grid": str(grid), "heun_nfe": res.nfe}
    try:
        from ..dmcmc import quickstart_comparison
    except ImportError:
        quickstart_comparison = None
    if quickstart_comparison is not None:
        t2 = time.perf_counter()
        data = load_data("digits")
        table = quickstart_comparison(
            run_dir,
            out,
            data=data,
            num=args.num,
            classifier_steps=args.classifier_steps,
            seed=args.seed,
            device=device,
            progress=not args.no_progress,
        )
        timings["dmcmc_comparison_s"] = time.perf_counter() - t2
        summary["comparison"] = table
        if args.no_progress:  # with progress on, the comparison prints its own table
            print("[4/4] plain heun vs DLG + heun at equal NFE (FID in the pinned digits classifier's features):")
            print(f"{'method':<10} {'steps':>5} {'NFE':>6} {'clf evals':>9} {'FID':>9}")
            for row in table:
                print(
                    f"{row['method']:<10} {row['steps']:>5} {row['nfe']:>6.1f} {row['classifier_evals']:>9.1f} "
                    f"{row['fid_digits']:>9.2f}"
                )
        print(f"side-by-side grid: {out / 'heun_vs_dlg.png'}")
    timings["total_s"] = time.perf_counter() - t0
    summary["timings"] = timings
    write_json_atomic(out / "summary.json", summary)
    print(f"done in {timings['total_s'] / 60:.1f} min; summary in {out / 'summary.json'}")
    return 0
