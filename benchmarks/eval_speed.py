"""Evaluation speed: feature extraction throughput and metric times for 10k digit images (CPU).

    python benchmarks/eval_speed.py [--num 10000] [--threads 1] [--inception-num 32]

Features: the pinned digits classifier on N 8×8 images (the 1797 scikit-learn digits tiled with ±1-pixel
shifts to reach N); the FID Inception-v3 (299×299 after resizing) on a few images with synthetic weights
(the speed does not depend on the weight values). Metrics: FID, KID (100 subsets of 1000), IS (10 splits)
and precision/recall (k=3) between two N-image feature sets. Writes benchmarks/results/eval_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from scorekit.data import load_data
from scorekit.metrics import fid_from_features, inception_score, kernel_inception_distance, precision_recall
from scorekit.metrics.features import get_extractor
from scorekit.metrics.inception import FIDInceptionV3

RESULTS = Path(__file__).parent / "results"


def tiled_digits(num: int, seed: int) -> torch.Tensor:
    x = load_data("digits", split="all").user_data()
    g = torch.Generator().manual_seed(seed)
    reps = []
    while sum(len(r) for r in reps) < num:
        pad = torch.nn.functional.pad(x, (1, 1, 1, 1))
        dy, dx = (int(v) for v in torch.randint(0, 3, (2,), generator=g))
        reps.append(pad[:, :, dy : dy + 8, dx : dx + 8])
    return torch.cat(reps)[:num].contiguous()


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--num", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--inception-num", type=int, default=32)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ext = get_extractor("digits", "image", (1, 8, 8))
    a, b = tiled_digits(args.num, 0), tiled_digits(args.num, 1)
    ext.features(a[:100])  # warm-up
    (fa, la), t_feat = timed(lambda: ext.features_and_logits(a), repeat=3)
    fb = ext.features(b)
    rows = [("digits features + logits", f"{args.num} images", t_feat, args.num / t_feat)]
    fid, t_fid = timed(lambda: fid_from_features(fa, fb), repeat=3)
    rows.append(("FID (64-d, float64)", f"{args.num} vs {args.num}", t_fid, None))
    kid, t_kid = timed(lambda: kernel_inception_distance(fa, fb, num_subsets=100, subset_size=1000))
    rows.append(("KID (100 subsets x 1000)", f"{args.num} vs {args.num}", t_kid, None))
    is_, t_is = timed(lambda: inception_score(la, splits=10), repeat=3)
    rows.append(("IS (10 splits)", f"{args.num}", t_is, None))
    pr, t_pr = timed(lambda: precision_recall(fa, fb, k=3))
    rows.append(("precision/recall (k=3)", f"{args.num} vs {args.num}", t_pr, None))

    net = FIDInceptionV3().eval()  # random weights: throughput only
    imgs = torch.rand(args.inception_num, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net(imgs[:2])
        _, t_inc = timed(lambda: [net(imgs[i : i + 16]) for i in range(0, len(imgs), 16)])
    rows.append(("Inception-v3 pool3 (299x299, synthetic weights)", f"{args.inception_num} images", t_inc,
                 args.inception_num / t_inc))  # fmt: skip

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    env = (
        f"torch {torch.__version__}, {args.threads} CPU thread(s), {platform.machine()}, {os.cpu_count()} cores, "
        f"1-min load average {load:.1f} at the end (a shared machine: times are upper bounds)"
    )
    lines = [
        "# Evaluation speed (CPU)",
        "",
        f"`python benchmarks/eval_speed.py --num {args.num} --threads {args.threads} "
        f"--inception-num {args.inception_num}` — {env}.",
        "",
        "| step | size | seconds | images/s |",
        "|---|---|---:|---:|",
    ]
    for name, size, sec, rate in rows:
        lines.append(f"| {name} | {size} | {sec:.3f} | {'' if rate is None else f'{rate:,.1f}'} |")
    lines += [
        "",
        f"Values (two shifted tilings of the digits): FID {fid:.3f}, KID {kid[0]:.3f} ± {kid[1]:.3f}, "
        f"IS {is_[0]:.3f} ± {is_[1]:.3f}, precision {pr[0]:.3f}, recall {pr[1]:.3f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval_speed.md").write_text(text)
    record = {
        "num": args.num,
        "threads": args.threads,
        "env": env,
        "rows": [{"step": n, "size": s, "seconds": sec, "images_per_s": r} for n, s, sec, r in rows],
        "values": {
            "fid": fid,
            "kid": kid[0],
            "kid_std": kid[1],
            "is": is_[0],
            "is_std": is_[1],
            "precision": pr[0],
            "recall": pr[1],
        },  # fmt: skip
        "digits_classifier_sha256": ext.sha256,
    }
    (RESULTS / "eval_speed.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
