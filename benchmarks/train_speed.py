"""Training-loop overhead: steps/s of `scorekit.training.train` vs a bare forward/backward/AdamW loop on the same
U-Net, objective and batch, in one run (rounds interleaved so machine load affects both alike).

    .venv/bin/python benchmarks/train_speed.py [--steps 40] [--rounds 3] [--batch-size 128] [--threads 1]

Writes benchmarks/results/train_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from scorekit.commands.quickstart import quickstart_config
from scorekit.data import load_data
from scorekit.losses import get_objective
from scorekit.training import build_denoiser_from_config, train

RESULTS = Path(__file__).parent / "results"


def bare_loop(cfg: dict, data, steps: int) -> float:
    """The minimum: sample a batch, loss, backward, AdamW step. Returns steps/s (after 3 warm-up steps)."""
    den = build_denoiser_from_config(cfg)
    obj = get_objective(cfg["objective"], den.process)
    opt = torch.optim.AdamW(den.net.parameters(), lr=cfg["training"]["lr"])
    gen = torch.Generator().manual_seed(0)
    bs = cfg["training"]["batch_size"]
    x_all = data.data
    t0 = None
    for i in range(steps + 3):
        if i == 3:
            t0 = time.perf_counter()
        idx = torch.randint(0, len(x_all), (bs,), generator=gen)
        loss = obj(den, x_all[idx], gen).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def ours(cfg: dict, data, steps: int) -> float:
    """scorekit's loop (EMA, clipping, warm-up, logging, progress off, no checkpoints in the timed span)."""
    out = Path(tempfile.mkdtemp(prefix="train_speed_"))
    try:
        c = json.loads(json.dumps(cfg))
        c["training"].update({"steps": steps + 3, "checkpoint_every": 0, "log_every": 1, "sample_every": 0})
        stamps: dict[int, float] = {}
        train(
            c, out, progress=False, data=data, log_fn=lambda rec: stamps.__setitem__(rec["step"], time.perf_counter())
        )
        return steps / (stamps[steps + 3] - stamps[3])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = quickstart_config(args.steps, 0)
    cfg["training"]["batch_size"] = args.batch_size
    data = load_data("digits", split="all")
    params = sum(p.numel() for p in build_denoiser_from_config(cfg).parameters())
    rows = []
    for r in range(args.rounds):
        if r % 2 == 0:  # alternate the order so a load change hits both loops alike
            b = bare_loop(cfg, data, args.steps)
            o = ours(cfg, data, args.steps)
        else:
            o = ours(cfg, data, args.steps)
            b = bare_loop(cfg, data, args.steps)
        rows.append(
            {"round": r, "bare_steps_per_s": b, "scorekit_steps_per_s": o, "overhead_percent": (b / o - 1) * 100}
        )
        print(f"round {r}: bare {b:.3f} steps/s, scorekit {o:.3f} steps/s")
    bare = statistics.median(x["bare_steps_per_s"] for x in rows)
    sk = statistics.median(x["scorekit_steps_per_s"] for x in rows)
    overhead = statistics.median(x["overhead_percent"] for x in rows)  # paired per round
    result = {
        "network_params": params,
        "batch_size": args.batch_size,
        "steps_per_round": args.steps,
        "threads": args.threads,
        "rounds": rows,
        "median_bare_steps_per_s": bare,
        "median_scorekit_steps_per_s": sk,
        "overhead_percent": overhead,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Training-loop overhead (CPU)",
        "",
        f"U-Net of the quickstart ({params:,} parameters), digits 8×8, batch {args.batch_size}, "
        f"{args.threads} thread(s), {args.rounds} interleaved rounds of {args.steps} steps.",
        "",
        "| loop | median steps/s |",
        "| --- | ---: |",
        f"| bare forward/backward/AdamW | {bare:.3f} |",
        f"| scorekit.training.train (EMA, clipping, warm-up, logging) | {sk:.3f} |",
        "",
        f"Overhead (median of the per-round paired ratios): {overhead:+.1f} %",
        "",
        "| round | bare | scorekit | overhead |",
        "| --- | ---: | ---: | ---: |",
        *[
            f"| {x['round']} | {x['bare_steps_per_s']:.3f} | {x['scorekit_steps_per_s']:.3f} | "
            f"{x['overhead_percent']:+.1f} % |"
            for x in rows
        ],
        "",
        "Command: `.venv/bin/python benchmarks/train_speed.py` "
        f"--steps {args.steps} --rounds {args.rounds} --batch-size {args.batch_size} --threads {args.threads}",
    ]
    (RESULTS / "train_speed.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
