"""Scale: training throughput at world size 1 and 2 (torchrun, gloo, this CPU) and peak memory of
`scorekit sample --num 100000` vs `--num 10000` (the output is streamed, so memory should not grow with N).

    .venv/bin/python benchmarks/scaling.py [--train-steps 30] [--batch-size 64]

On GPUs the same commands scale with NCCL, e.g.
    torchrun --standalone --nproc_per_node=8 --no-python scorekit train --data DATA --device cuda --batch-size 64 ...
(under torchrun write --num-samples / --run-dir for sample's --num / --run: torchrun's parser claims those prefixes).
Writes benchmarks/results/scaling.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """Run cmd in a fresh wrapper process; return (peak RSS of the command in MB, wall seconds)."""
    wrapper = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t, r.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=ENV, check=True)
    kb, secs, rc = out.stdout.split()
    if int(rc) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return int(kb) / 1024, float(secs)


def train_throughput(world: int, steps: int, batch: int, tmp: Path) -> float:
    out = tmp / f"train_w{world}"
    cmd = [str(BIN / "scorekit"), "train", "--data", "digits", "--process", "ve", "--steps", str(steps)]
    cmd += ["--batch-size", str(batch), "--checkpoint-every", "0", "--out", str(out), "--no-progress"]
    if world > 1:
        cmd = [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={world}", "--no-python", *cmd]
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return log[-1]["steps_per_s"] * batch * world  # images per second (global)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scaling_"))
    rows = {}
    for w in (1, 2):
        t0 = time.perf_counter()
        rows[f"train_images_per_s_world{w}"] = train_throughput(w, args.train_steps, args.batch_size, tmp)
        print(f"world {w}: {rows[f'train_images_per_s_world{w}']:.1f} images/s ({time.perf_counter() - t0:.0f} s)")
    spec = tmp / "gmm.json"
    spec.write_text(
        json.dumps({"weights": [0.5, 0.5], "means": [[-2, 0], [2, 0]], "variances": [[0.1, 0.1], [0.1, 0.1]]})
    )
    for n in (10_000, 100_000):
        cmd = [str(BIN / "scorekit"), "sample", "--model", f"gmm:{spec}", "--sampler", "heun", "--steps", "10"]
        cmd += ["--num", str(n), "--batch-size", "1000", "--out", str(tmp / f"s{n}.npz"), "--no-progress"]
        mb, secs = peak_rss_mb(cmd)
        rows[f"sample_peak_rss_mb_num{n}"] = mb
        rows[f"sample_seconds_num{n}"] = secs
        print(f"sample --num {n}: peak RSS {mb:.1f} MB, {secs:.1f} s")
    ratio = rows["sample_peak_rss_mb_num100000"] / rows["sample_peak_rss_mb_num10000"]
    rows["peak_rss_ratio_100k_over_10k"] = ratio
    rows["train_speedup_world2"] = rows["train_images_per_s_world2"] / rows["train_images_per_s_world1"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = [
        "# Scaling on this machine (2 CPU cores, gloo)",
        "",
        f"Training: digits U-Net, per-rank batch {args.batch_size}, {args.train_steps} steps, 1 thread per rank.",
        "",
        "| world size | images/s (global) |",
        "| --- | ---: |",
        f"| 1 | {rows['train_images_per_s_world1']:.1f} |",
        f"| 2 | {rows['train_images_per_s_world2']:.1f} |",
        "",
        f"Speed-up at world size 2: {rows['train_speedup_world2']:.2f}×",
        "",
        "Sampling (exact 2-D mixture denoiser, heun 10 steps, batch 1000), streamed to .npz:",
        "",
        "| --num | peak RSS (MB) | seconds |",
        "| ---: | ---: | ---: |",
        f"| 10,000 | {rows['sample_peak_rss_mb_num10000']:.1f} | {rows['sample_seconds_num10000']:.1f} |",
        f"| 100,000 | {rows['sample_peak_rss_mb_num100000']:.1f} | {rows['sample_seconds_num100000']:.1f} |",
        "",
        f"Peak memory ratio 100k / 10k: {ratio:.3f}",
        "",
        "Command: `.venv/bin/python benchmarks/scaling.py "
        f"--train-steps {args.train_steps} --batch-size {args.batch_size}`",
    ]
    (RESULTS / "scaling.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
