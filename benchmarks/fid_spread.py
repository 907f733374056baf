"""How far apart must two 1000-sample Fashion-MNIST FIDs be to mean something?

The spread of the FID (pinned Fashion-MNIST features, against the 10,000 test images) over independent draws:
- the floor: `--draws` sets of N random training images (iid, as the benchmark's floor row) and of N training images
  with N/10 of each class (balanced, like the test split);
- a class-conditional run's samples (`--run`, `sample --nfe NFE --no-tune`) at sampling seeds `--seeds`, with iid
  random class labels (the default) and with `--class balanced`.
Writes benchmarks/results/fashion_fid_spread.md / .json.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fid_spread.py --run /work/runs/fashion_cpu_v2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import ROOT, evaluate, publish, scorekit  # noqa: E402 — the Fashion benchmark's runners


def fid_of(npz: Path, out: Path) -> dict:
    d = evaluate(npz, out, log=None)
    return {"fid": d["fid"], "precision": d["precision"], "recall": d["recall"]}


def floor_draws(work: Path, n: int, draws: int, balanced: bool) -> list[dict]:
    import torch

    from scorekit.metrics.fashion_classifier import fashion_split

    x, y = fashion_split("train")
    rows = []
    for d in range(1, draws + 1):
        g = torch.Generator().manual_seed((200 if balanced else 100) + d)
        if balanced:
            per = [torch.nonzero(y == c).flatten() for c in range(10)]
            idx = torch.cat([p[torch.randperm(len(p), generator=g)[: n // 10]] for p in per])
        else:
            idx = torch.randperm(len(x), generator=g)[:n]
        npz = work / f"floor_{int(balanced)}_{d}.npz"
        np.savez(npz, samples=x[idx].numpy(), labels=y[idx].numpy())
        rows.append({"draw": d, **fid_of(npz, work / f"floor_{int(balanced)}_{d}.json"),
                     "class_counts": torch.bincount(y[idx], minlength=10).tolist()})  # fmt: skip
        print(f"floor {'balanced' if balanced else 'iid'} draw {d}: FID {rows[-1]['fid']:.3f}", flush=True)
    return rows


def run_draws(work: Path, run: str, n: int, nfe: int, seeds, balanced: bool) -> list[dict]:
    rows = []
    for s in seeds:
        npz = work / f"run_{int(balanced)}_{s}.npz"
        labels = ["--class", "balanced"] if balanced else []
        scorekit("sample", "--run", run, "--nfe", str(nfe), "--no-tune", "--num", str(n), "--seed", str(s),
                 "--out", str(npz), *labels)  # fmt: skip
        rows.append({"seed": s, **fid_of(npz, work / f"run_{int(balanced)}_{s}.json")})
        print(f"run {'balanced' if balanced else 'iid'} seed {s}: FID {rows[-1]['fid']:.3f}", flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    f = np.array([r["fid"] for r in rows])
    sd = f"{f.std(ddof=1):.2f}" if len(f) > 1 else "–"
    return f"{' / '.join(f'{v:.2f}' for v in f)} | {f.mean():.2f} | {sd}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="a class-conditional run directory (optional)")
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=5, help="floor draws of each kind")
    ap.add_argument("--seeds", default="1,2,3", help="sampling seeds for --run")
    ap.add_argument("--nfe", type=int, default=10)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    res = {"num": args.num, "nfe": args.nfe, "run": args.run}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        res["floor_iid"] = floor_draws(work, args.num, args.draws, balanced=False)
        res["floor_balanced"] = floor_draws(work, args.num, args.draws, balanced=True)
        if args.run:
            res["run_iid"] = run_draws(work, args.run, args.num, args.nfe, seeds, balanced=False)
            res["run_balanced"] = run_draws(work, args.run, args.num, args.nfe, seeds, balanced=True)
    cmd = "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fid_spread.py " + " ".join(sys.argv[1:])
    L = [
        "# How far apart must two 1000-sample Fashion-MNIST FIDs be?",
        "",
        f"Command: `{cmd}`  ",
        "Machine: the shared 2-core x86 CPU, 1 torch thread. FID in the pinned Fashion-MNIST features against the",
        f"10,000 test images (1000 of each class), {args.num} images or samples per FID.",
        "",
        "| what | draws (FID) | mean | std |",
        "|---|---|---:|---:|",
        f"| floor: {args.num} random training images (iid classes) | {summary(res['floor_iid'])} |",
        f"| floor: {args.num} training images, {args.num // 10} of each class | {summary(res['floor_balanced'])} |",
    ]
    if args.run:
        L += [
            f"| `sample --nfe {args.nfe} --no-tune`, seeds {args.seeds} (iid random class labels) | "
            f"{summary(res['run_iid'])} |",
            f"| `sample --nfe {args.nfe} --no-tune --class balanced`, seeds {args.seeds} | "
            f"{summary(res['run_balanced'])} |",
            "",
            f"Run: `{args.run}`.",
        ]
    L += ["", "Class counts of the iid floor draws: "
          + "; ".join(str(r["class_counts"]) for r in res["floor_iid"]) + ".", ""]  # fmt: skip
    publish("fashion_fid_spread", res, L)
    return 0


if __name__ == "__main__":
    sys.exit(main())
