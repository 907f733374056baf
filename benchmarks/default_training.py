"""Do the `scorekit train` defaults give good models? Every default (`run_config.default_config(DATA)`: process,
preconditioning, objective, network size, optimiser, EMA) on a 2-D and a 16-D Gaussian mixture and the four toy
sets, and the digits quickstart re-measured.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/default_training.py            # vectors
    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/default_training.py --quickstart  # + digits

Quality of vector data: sliced W2 (256 projections) of N Heun-40 samples against N exact samples (mixtures: the
mixture's own sampler; toys: fresh draws of the toy's test stream), mean ± std over 5 reference draws; `floor`: the
same distance between two independent exact N-samples. Target: ratio ≤ 1.3. Scatter plots of every set are saved.
Quickstart: `scorekit quickstart` defaults (train + sample), digits FID / precision / recall and the pinned digits
classifier's mean confidence of 1000 samples against the same numbers of the held-out (test split) real digits.
Writes benchmarks/results/default_training.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from scorekit.analytic import load_gmm_spec  # noqa: E402
from scorekit.checkpoint import load_denoiser  # noqa: E402
from scorekit.data import DataTransform, load_data  # noqa: E402
from scorekit.metrics.vector import sliced_wasserstein  # noqa: E402
from scorekit.sampling import generate  # noqa: E402
from scorekit.training import default_config, train  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
TOYS = ("moons", "swissroll", "rings", "checkerboard")


def mixture_2d(k=8, radius=4.0, var=0.03):
    ang = [2 * np.pi * i / k for i in range(k)]
    return {
        "weights": [1.0 / k] * k,
        "means": [[radius * np.cos(a), radius * np.sin(a)] for a in ang],
        "variances": [[var, var]] * k,
    }


def mixture_16d(k=6, dim=16, seed=0):
    g = np.random.default_rng(seed)
    return {
        "weights": (g.dirichlet(np.full(k, 5.0))).tolist(),
        "means": (3.0 * g.standard_normal((k, dim))).tolist(),
        "variances": (g.uniform(0.05, 0.5, (k, dim))).tolist(),
    }


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure_vector(name: str, spec: str, reference, n: int, reps: int, run_dir: Path, overrides: dict) -> dict:
    cfg = default_config(spec)
    for k, v in overrides.items():
        sec, key = k.split(".", 1)
        if sec == "objective":
            cfg["objective"] = v
        elif sec == "objective_options":
            if v is None:
                cfg["objective_options"].pop(key, None)
            else:
                cfg["objective_options"][key] = v
        else:
            cfg[sec][key] = v
    w0, c0 = time.perf_counter(), _cpu_s()
    res = train(cfg, run_dir, progress=False)
    wall, cpu = time.perf_counter() - w0, _cpu_s() - c0
    den = load_denoiser(run_dir)
    transform = DataTransform.from_config(cfg["data"]["transform"])
    x = transform.to_user(generate(den, "heun", 40, n, seed=0, batch_size=2000).samples).double()
    dist, floor = [], []
    for r in range(reps):
        ref, ref2 = reference(n, 100 + r), reference(n, 200 + r)
        g = torch.Generator().manual_seed(r)
        dist.append(sliced_wasserstein(x, ref, generator=g))
        floor.append(sliced_wasserstein(ref2, ref, generator=torch.Generator().manual_seed(r)))
    net = cfg["network"]
    return {
        "data": name,
        "dim": int(x.shape[1]),
        "steps": res.step,
        "network": f"{net['arch']} {net.get('hidden')}×{net.get('depth')}",
        "objective": cfg["objective"],
        "sw2": float(np.mean(dist)),
        "sw2_std": float(np.std(dist, ddof=1)),
        "floor": float(np.mean(floor)),
        "floor_std": float(np.std(floor, ddof=1)),
        "ratio": float(np.mean(dist) / np.mean(floor)),
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "steps_per_s": res.steps_per_second,
        "samples": x.float().numpy(),
    }


def vector_sets(work: Path):
    out = []
    for name, spec_obj in (("gmm 2-D", mixture_2d()), ("gmm 16-D", mixture_16d())):
        path = work / f"{name.split()[1]}.json"
        path.write_text(json.dumps(spec_obj))
        gmm = load_gmm_spec(str(path))

        def ref(n, seed, gmm=gmm):
            return gmm.sample(n, generator=torch.Generator().manual_seed(seed))[0].double()

        out.append((name, f"gmm:{path}", ref))
    for toy in TOYS:

        def ref(n, seed, toy=toy):
            d = load_data(toy, split="test", num=n, seed=seed)
            return d.transform.to_user(d.data).double()

        out.append((toy, toy, ref))
    return out


def scatter_png(rows, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(3 * len(rows), 3.2))
    for ax, r in zip(np.atleast_1d(axes), rows):
        x = r["samples"]
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
        ax.set_title(f"{r['data']}: {r['ratio']:.2f}× floor", fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=2000, help="samples per set (default 2000)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default=None, help="comma-separated subset of: gmm 2-D, gmm 16-D, " + ", ".join(TOYS))
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON", help="override (experiments)")
    ap.add_argument("--quickstart", action="store_true", help="also re-measure the digits quickstart")
    ap.add_argument("--quickstart-run", default=None, help="measure this quickstart's OUT/run instead of training")
    ap.add_argument("--no-vectors", action="store_true")
    ap.add_argument("--out", default=str(OUT / "default_training"), help="output stem (default results/...)")
    args = ap.parse_args(argv)
    overrides = {}
    for s in args.set:
        k, v = s.split("=", 1)
        overrides[k] = json.loads(v)
    threads = torch.get_num_threads()
    cmd = "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/default_training.py " + " ".join(argv or sys.argv[1:])
    rows, qs = [], None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.no_vectors:
            only = None if args.only is None else {s.strip() for s in args.only.split(",")}
            for name, spec, ref in vector_sets(work):
                if only and name not in only:
                    continue
                r = measure_vector(name, spec, ref, args.num, args.reps, work / name.replace(" ", "_"), overrides)
                print(
                    f"{name:<13} SW2 {r['sw2']:.4f} ± {r['sw2_std']:.4f}  floor {r['floor']:.4f}  "
                    f"ratio {r['ratio']:.2f}  {r['steps']} steps  {r['train_cpu_s']:.0f} CPU-s  {r['network']}",
                    flush=True,
                )
                rows.append(r)
        if args.quickstart:
            qs = measure_quickstart(work / "qs", Path(args.quickstart_run) if args.quickstart_run else None)
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if rows:
        scatter_png([r for r in rows if r["dim"] == 2], stem.with_suffix(".png"))
    lines = [
        "# Training with every default",
        "",
        f"Command: `{cmd}`  ",
        f"torch threads: {threads}; CPU shared with other jobs, so times are CPU seconds (user + sys) of this "
        "process as well as wall seconds.",
        "",
    ]
    if rows:
        lines += [
            f"Sliced W2 (256 projections) of {args.num} Heun-40 samples vs {args.num} exact samples, mean ± std over "
            f"{args.reps} reference draws; floor = two independent exact samples. Target ratio ≤ 1.3."
            + (f" Overrides: `{overrides}`." if overrides else ""),
            "",
            "| data | network | objective | steps | SW2 | floor | ratio | train CPU s | train wall s | steps/s |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['data']} | {r['network']} | {r['objective']} | {r['steps']} | {r['sw2']:.4f} ± "
                f"{r['sw2_std']:.4f} | {r['floor']:.4f} ± {r['floor_std']:.4f} | {r['ratio']:.2f} | "
                f"{r['train_cpu_s']:.0f} | {r['train_wall_s']:.0f} | {r['steps_per_s']:.1f} |"
            )
        lines += ["", f"Scatter plots: `{stem.with_suffix('.png').name}`.", ""]
    if qs:
        lines += quickstart_lines(qs)
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    js = {"command": cmd, "threads": threads, "overrides": overrides,
          "vectors": [{k: v for k, v in r.items() if k != "samples"} for r in rows], "quickstart": qs}  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(js, indent=1))
    print("\n".join(lines))


def measure_quickstart(work: Path, run: Path | None = None) -> dict:
    """Train the quickstart's model (or take an existing quickstart `run`), then compare 1000 samples of the ODE
    (Heun 18 steps) and of the quickstart's grid sampler with the held-out real digits."""
    from scorekit.commands.quickstart import DEFAULT_STEPS, GRID_SAMPLER, GRID_STEPS, quickstart_config
    from scorekit.metrics.features import DigitsExtractor
    from scorekit.metrics.fid import fid_from_features
    from scorekit.metrics.precision_recall import precision_recall

    cfg = quickstart_config(DEFAULT_STEPS, 0)
    if run is None:
        w0, c0 = time.perf_counter(), _cpu_s()
        train(cfg, work, progress=False)
        wall, cpu = time.perf_counter() - w0, _cpu_s() - c0
        run = work
    else:
        summary = json.loads((run.parent / "summary.json").read_text())
        wall, cpu = summary["timings"]["train_score_model_s"], None
        cfg = json.loads((run / "config.json").read_text())
    den = load_denoiser(run)
    transform = DataTransform.from_config(cfg["data"]["transform"])
    test = load_data("digits", split="test")
    real = test.transform.to_user(test.data)
    trainset = load_data("digits", split="train")
    real_train = trainset.transform.to_user(trainset.data)
    ext = DigitsExtractor()
    ft, lt = ext.features_and_logits(real.float())
    fr = ext.features(real_train.float())
    conf_r = float(torch.softmax(torch.as_tensor(lt), 1).max(1).values.mean())
    p_r, r_r = precision_recall(fr, ft)
    rows = {}
    for name, steps in (("heun", 18), (GRID_SAMPLER, GRID_STEPS)):
        t = time.perf_counter()
        res = generate(den, name, steps, 1000, batch_size=500, seed=0)
        x = transform.to_user(res.samples)
        fs, ls = ext.features_and_logits(x.float())
        p_s, r_s = precision_recall(fr, fs)
        rows[f"{name} {steps} steps ({res.nfe:.0f} NFE)"] = {
            "fid_vs_test": float(fid_from_features(fs, ft)),
            "precision": float(p_s),
            "recall": float(r_s),
            "confidence": float(torch.softmax(torch.as_tensor(ls), 1).max(1).values.mean()),
            "sample_wall_s": time.perf_counter() - t,
        }
    return {
        "run": str(run),
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "fid_train_vs_test": float(fid_from_features(fr, ft)),
        "samplers": rows,
        "real_test": {"precision": float(p_r), "recall": float(r_r), "confidence": conf_r},
        "num_samples": 1000,
        "num_test": len(real),
        "network": cfg["network"],
        "training": {k: cfg["training"].get(k) for k in ("steps", "batch_size", "lr", "warmup", "ema_sigma_rel")},
        "objective": cfg["objective"],
    }


def quickstart_lines(q: dict) -> list[str]:
    r = q["real_test"]
    cpu = f" / {q['train_cpu_s']:.0f} CPU s" if q.get("train_cpu_s") else ""
    L = [
        f"## Digits quickstart (`quickstart_config`, {q['training']['steps']} steps)",
        "",
        f"Model: `{q['run']}`; training {q['train_wall_s']:.0f} s wall{cpu}. 1000 samples per sampler (seed 0). "
        "Precision/recall (k = 3 neighbourhoods of the training digits' features) and mean max-probability of the "
        f"pinned digits classifier, for samples and for the held-out real digits ({q['num_test']}). Targets: "
        "|samples − real| ≤ 0.05 for precision and confidence.",
        "",
        "| samples | FID vs test | precision | recall | classifier confidence | |precision − real| | "
        "|confidence − real| |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in q["samplers"].items():
        L.append(f"| {name} | {s['fid_vs_test']:.2f} | {s['precision']:.3f} | {s['recall']:.3f} | "
                 f"{s['confidence']:.3f} | {abs(s['precision'] - r['precision']):.3f} | "
                 f"{abs(s['confidence'] - r['confidence']):.3f} |")  # fmt: skip
    L += [
        f"| real held-out digits | {q['fid_train_vs_test']:.2f} (train vs test) | {r['precision']:.3f} | "
        f"{r['recall']:.3f} | {r['confidence']:.3f} | | |",
        "",
    ]
    return L


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
