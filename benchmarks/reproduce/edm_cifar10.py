"""Few-step sampling of EDM's CIFAR-10 network: FID at NFE 5 and 10 for the budget solvers (GPU recipe).

Imports an EDM snapshot (`edm-cifar10-32x32-{cond,uncond}-{vp,ve}.pkl`, given as a local path; nothing is
downloaded) with `scorekit import edm`, draws `--num` samples (default 50 000) per solver and NFE budget with
`scorekit sample` on EDM's schedule (Karras ρ = 7, σ ∈ [0.002, 80]), and computes FID against the CIFAR-10
training set with the pinned FID Inception (`scorekit.metrics`, local weights file), so the table can be set
beside the published few-step tables (EDM, DPM-Solver++, UniPC, DEIS report this checkpoint; pass their numbers
with `--published FILE.json` as {"SAMPLER": {"NFE": FID}} to get a comparison column — none are built in).

Solvers: `heun` (EDM Alg. 1, NFE = 2N − 1), `dpmpp_2m` (NFE = N), and `ipndm`, `unipc`, `deis` when the
sampler registry has them at run time. For each NFE budget the largest step count whose NFE fits is used and
the real NFE is reported.

GPU run:

    python benchmarks/reproduce/edm_cifar10.py --snapshot /data/edm/edm-cifar10-32x32-uncond-vp.pkl \
        --cifar10 /data/cifar-10-batches-py --inception /data/pt_inception-2015-12-05-6726825d.pth \
        --out benchmarks/results/edm_cifar10 --device cuda

CPU dry run (tiny fixture snapshot made by EDM's own code, random reference images, a fixed random-conv
feature net instead of Inception; seconds, FIDs meaningless, plumbing real):

    python benchmarks/reproduce/edm_cifar10.py --dry-run --out /tmp/edm_dry
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "edm" / "edm-ddpmpp-vp.pkl"
BASE_SOLVERS = ["heun", "dpmpp_2m"]
OPTIONAL_SOLVERS = ["ipndm", "unipc", "deis"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--snapshot", help="EDM CIFAR-10 snapshot .pkl (imported into OUT/run)")
    src.add_argument("--run", help="an already imported run directory")
    p.add_argument("--cifar10", help="CIFAR-10 python batches folder (the FID reference: its training set)")
    p.add_argument("--inception", help="FID Inception weights file (pt_inception-2015-12-05-6726825d.pth)")
    p.add_argument("--inception-sha256", default=None)
    p.add_argument("--samplers", default=None, help="comma list (default: heun, dpmpp_2m and any of ipndm/unipc/deis)")
    p.add_argument("--nfe", default="5,10", help="comma list of NFE budgets")
    p.add_argument("--num", type=int, default=50000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--published", default=None, help="JSON {sampler: {nfe: fid}} to compare with")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", required=True, help="folder for the run, samples and the result table")
    p.add_argument("--dry-run", action="store_true")
    return p.parse_args(argv)


def solvers(requested: str | None) -> list[str]:
    from scorekit.samplers import SAMPLERS

    if requested:
        names = [s.strip() for s in requested.split(",") if s.strip()]
        for n in names:
            if n not in SAMPLERS:
                raise ValueError(f"unknown sampler {n!r}")
        return names
    return BASE_SOLVERS + [s for s in OPTIONAL_SOLVERS if s in SAMPLERS]


def steps_for_budget(sampler: str, budget: int) -> tuple[int, int]:
    """(steps, nfe): the largest step count whose NFE is at most `budget`."""
    from scorekit.samplers import get_sampler

    spec = get_sampler(sampler)
    if spec.nfe is None:
        raise ValueError(f"sampler {sampler!r} has no fixed NFE")
    best = None
    for n in range(1, budget + 1):
        if spec.nfe(n) <= budget:
            best = (n, int(spec.nfe(n)))
    if best is None:
        raise ValueError(f"sampler {sampler!r} cannot run within {budget} evaluations")
    return best


class _RandomConvFeatures:
    """Dry-run stand-in for Inception: a fixed random conv layer, tanh, global average pool (32 features)."""

    name = "random_conv_dryrun"

    def __init__(self, channels: int):
        g = torch.Generator().manual_seed(1234)
        self.weight = torch.randn(32, channels, 3, 3, generator=g) * 0.3

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(images, dtype=np.float32))
        return torch.tanh(torch.nn.functional.conv2d(x, self.weight, padding=1)).mean((2, 3)).double().numpy()


def _fid(args, samples: np.ndarray, ref_cache: dict, out: Path) -> float:
    if args.dry_run:
        from scorekit.metrics.fid import fid_from_features

        feats = _RandomConvFeatures(samples.shape[1])
        if "ref" not in ref_cache:
            ref = torch.rand((64, *samples.shape[1:]), generator=torch.Generator().manual_seed(7)).numpy()
            ref_cache["ref"] = feats(ref)
        return float(fid_from_features(feats(samples), ref_cache["ref"]))
    from scorekit.metrics.evaluate import evaluate_samples

    if not (args.cifar10 and args.inception):
        raise ValueError("--cifar10 DIR and --inception FILE are required for FID")
    res = evaluate_samples(
        samples,
        args.cifar10,
        metrics="fid",
        extractor="inception",
        inception_path=args.inception,
        inception_sha256=args.inception_sha256,
        ref_stats=out / "cifar10_train_inception.npz",
        split="train",
        device=args.device,
    )
    return float(res["fid"])


def _table(rows: list[dict], published: dict) -> str:
    lines = [
        "| sampler | steps | NFE | FID | published FID | samples | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        pub = (published.get(r["sampler"]) or {}).get(str(r["nfe_budget"]))
        pub_s = f"{float(pub):.2f}" if pub is not None else "—"
        lines.append(
            f"| {r['sampler']} | {r['steps']} | {r['nfe']:g} | {r['fid']:.2f} | {pub_s} | {r['num']} | "
            f"{r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    from scorekit.cli import main as cli

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        args.num, args.batch_size, args.device = 8, 8, "cpu"
        args.snapshot = args.snapshot or str(FIXTURE)
    run = Path(args.run) if args.run else out / "run"
    if not args.run and not (run / "config.json").exists():
        if not args.snapshot:
            raise SystemExit("give --snapshot PKL (EDM's CIFAR-10 network) or --run RUN")
        if cli(["import", "edm", args.snapshot, "--out", str(run)]) != 0:
            return 2
    published = json.loads(Path(args.published).read_text()) if args.published else {}
    budgets = [int(b) for b in args.nfe.split(",") if b.strip()]
    rows, ref_cache = [], {}
    for sampler in solvers(args.samplers):
        for budget in budgets:
            steps, nfe = steps_for_budget(sampler, budget)
            npz = out / f"samples_{sampler}_nfe{budget}.npz"
            t0 = time.time()
            cmd = ["sample", "--run", str(run), "--sampler", sampler, "--steps", str(steps), "--num", str(args.num)]
            cmd += ["--batch-size", str(args.batch_size), "--seed", str(args.seed), "--out", str(npz)]
            cmd += ["--sigma-min", "0.002", "--sigma-max", "80", "--device", args.device, "--no-progress"]
            if cli(cmd) != 0:
                return 2
            seconds = time.time() - t0
            with np.load(npz) as f:
                samples, nfe_real = f["samples"], float(f["nfe"])
            fid = _fid(args, samples, ref_cache, out)
            rows.append(
                {
                    "sampler": sampler,
                    "nfe_budget": budget,
                    "steps": steps,
                    "nfe": nfe_real,
                    "nfe_expected": nfe,
                    "fid": fid,
                    "num": int(samples.shape[0]),
                    "seconds": seconds,
                }
            )
            print(f"{sampler:10s} steps={steps:3d} nfe={nfe_real:g} fid={fid:.3f} ({seconds:.1f}s)", flush=True)
            if not args.dry_run:
                npz.unlink()  # 50k samples per row: keep only the table
    name = "edm_cifar10_dryrun" if args.dry_run else "edm_cifar10"
    result = {
        "snapshot": str(args.snapshot or args.run),
        "feature_extractor": "random_conv_dryrun" if args.dry_run else "inception",
        "schedule": {"kind": "karras", "rho": 7.0, "sigma_min": 0.002, "sigma_max": 80.0},
        "rows": rows,
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(
        f"# EDM CIFAR-10, few-step FID ({result['snapshot']})\n\n" + _table(rows, published)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
