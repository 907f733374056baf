"""Denoising MCMC with scorekit's defaults against the best plain samplers at equal cost.

What a user runs: `scorekit sample --model gmm:SPEC --dmcmc dlg --noise-posterior exact --nfe N` (CLI defaults, no
--dlg-* flag). For each budget N it is compared with (a) its own finisher alone (dpmpp_2m on log-SNR σ steps) and
(b) the best plain sampler at NFE ≤ N of scorekit (every solver × schedule of benchmarks/samplers.py, the budget
rule) and of the peers (k-diffusion: euler, heun, dpm_2, lms, dpmpp_2m × karras/exponential σ; diffusers: Euler,
Heun, DPM-Solver++, UniPC, DDIM × every spacing option), each picked with hindsight per budget. Error: sliced W2
(256 projections) to as many exact mixture samples; floor: the same between two exact sample sets. DLG's cost is
everything (start-up, adaptation, burn-in, Gibbs, finisher) over the outputs; the exact posterior costs no network.
With --digits-run/--digits-classifier the digits model joins (trained classifier, its cost counted in --nfe).

    python benchmarks/dmcmc.py                      # 2-D (20k) and 16-D (10k) mixtures, ~10 CPU-minutes
    python benchmarks/dmcmc.py --digits-run Q/run --digits-classifier Q/noise_classifier --problems digits \
        --name dmcmc_digits

Writes benchmarks/results/NAME.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from samplers import load_diffusers, load_k_diffusion, methods  # noqa: E402

from scorekit.analytic import GaussianMixture  # noqa: E402
from scorekit.cli import main as cli_main  # noqa: E402
from scorekit.metrics.vector import sliced_wasserstein  # noqa: E402

BUDGETS = (5, 6, 8, 10)


def ring_mixture() -> GaussianMixture:
    k = 8
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = torch.stack([3 * ang.cos(), 3 * ang.sin()], 1)
    return GaussianMixture(torch.tensor([1, 2, 3, 4, 1, 2, 3, 4.0]), means, torch.full((k, 2), 0.05))


def mixture_16d() -> GaussianMixture:
    g = torch.Generator().manual_seed(16)
    k, d = 8, 16
    means = 2.0 * torch.randn(k, d, generator=g, dtype=torch.float64)
    variances = 0.05 + 0.25 * torch.rand(k, d, generator=g, dtype=torch.float64)
    weights = 0.5 + torch.rand(k, generator=g, dtype=torch.float64)
    return GaussianMixture(weights, means, variances)


def dlg_cli(model_args: list[str], nfe: int, num: int, seed: int, tmp: Path) -> dict:
    """`scorekit sample ... --dmcmc dlg --nfe N` with the CLI defaults; its printed split and the .npz."""
    out = tmp / f"dlg_{nfe}.npz"
    cmd = ["sample", *model_args, "--dmcmc", "dlg", "--nfe", str(nfe), "--num", str(num), "--seed", str(seed)]
    t0 = time.time()
    rc = cli_main([*cmd, "--out", str(out), "--no-progress"])
    if rc != 0:
        raise SystemExit(f"scorekit {' '.join(cmd)} failed ({rc})")
    z = np.load(out)
    split = z["nfe_split"].tolist()
    return {
        "method": "scorekit DLG (defaults)",
        "command": "scorekit " + " ".join(cmd),
        "samples": torch.from_numpy(z["samples"]).double(),
        "nfe": float(z["nfe"]),
        "classifier_calls": float(z["classifier_evals"]),
        "classifier_nfe": float(z["classifier_denoiser_equivalent_nfe"]),
        "split": {"startup": split[0], "gibbs": split[1], "finisher": split[2]},
        "distinct_fraction": float(z["distinct_fraction"]),
        "ess": float(z["ess"]),
        "lag1_autocorrelation": float(z["lag1_autocorrelation"]),
        "chains": int(z["chain"].max()) + 1,
        "seconds": round(time.time() - t0, 1),
    }


def plain_rows(den, dim, num, budget, seed, kd, df) -> list[dict]:
    rows = []
    z = torch.randn(num, dim, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64).float()
    for label, run in methods(budget, kd, df, None).items():
        calls = [0]

        def counted(x, sigma, *a, calls=calls, **k):
            calls[0] += 1
            return den(x, sigma)

        try:
            x = run(counted, z.clone(), torch.Generator().manual_seed(seed + 2))
        except Exception as e:  # a peer that cannot run this budget
            print(f"  {label}: skipped ({type(e).__name__}: {e})", flush=True)
            continue
        if calls[0] > budget:
            continue
        rows.append({"method": label, "budget": budget, "nfe": calls[0], "samples": x.double()})
    return rows


def best(rows, prefix, budget):
    c = [r for r in rows if r["method"].startswith(prefix) and r["nfe"] <= budget and math.isfinite(r["error"])]
    return min(c, key=lambda r: r["error"]) if c else None


def run_mixture(label, gmm, num, seed, kd, df, budgets, tmp: Path) -> dict:
    ref = gmm.sample(num, torch.Generator().manual_seed(seed + 100))[0]

    def err(x):
        if not torch.isfinite(x).all():
            return float("nan")
        return float(
            sliced_wasserstein(x.double(), ref, num_projections=256, generator=torch.Generator().manual_seed(2))
        )

    floor = err(gmm.sample(num, torch.Generator().manual_seed(seed + 200))[0])
    spec = tmp / f"{label}.json"
    spec.write_text(json.dumps(gmm.to_spec()))
    model = ["--model", f"gmm:{spec}", "--noise-posterior", "exact"]
    den = gmm.denoiser()
    plain, dlg = [], []
    for b in budgets:
        for r in plain_rows(den, gmm.dim, num, b, seed, kd, df):
            r["error"] = err(r.pop("samples"))
            plain.append(r)
        if b >= 5:
            try:
                d = dlg_cli(model, b, num, seed, tmp)
            except ValueError as e:
                print(f"  DLG at {b}: {e}")
                continue
            d["error"] = err(d.pop("samples"))
            d["budget"] = b
            dlg.append(d)
            print(f"{label} DLG nfe {b}: err {d['error']:.4f} (floor {floor:.4f}) {d['split']}", flush=True)
    table = []
    for d in dlg:
        b = d["budget"]
        same = next(
            (r for r in plain if r["method"] == "scorekit:dpmpp_2m+logsnr" and r["budget"] == b and r["nfe"] <= b), None
        )
        row = {"budget": b, "dlg": d, "same_integrator": same}
        for key, pre in (("scorekit", "scorekit:"), ("k-diffusion", "k-diffusion:"), ("diffusers", "diffusers:")):
            row[key] = best([r for r in plain if r["budget"] == b], pre, b)
        table.append(row)
    best5 = {
        k: best([r for r in plain if r["budget"] == 5], p, 5) for k, p in (("scorekit", "scorekit:"), ("peers", ""))
    }
    best5["peers"] = min(
        (x for x in (best([r for r in plain if r["budget"] == 5], p, 5) for p in ("k-diffusion:", "diffusers:")) if x),
        key=lambda r: r["error"],
        default=None,
    )
    return {"floor": floor, "num": num, "plain": plain, "table": table, "best_at_5": best5}


def _fmt(r):
    return "—" if r is None else f"{r['error']:.4f} ({r['method']}, {r['nfe']})"


def write(results, name, command):
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    md = [
        "# Denoising MCMC with the defaults vs the best plain sampler at equal cost",
        "",
        f"Command: `{command}` (OMP_NUM_THREADS=1, 2 shared CPU cores)",
        "",
        "DLG = `scorekit sample --model gmm:SPEC --dmcmc dlg --noise-posterior exact --nfe N` with no other flag. "
        "Error: sliced W2 (256 projections) to as many exact samples; floor: two exact sample sets of that size. "
        "Baselines: the best of every solver × σ-spacing option at NFE ≤ N (hindsight per budget; cell: error "
        "(method, NFE)). ESS: batch means over chains; distinct: fraction of distinct output rows.",
        "",
    ]
    for label, res in results.items():
        fl = res["floor"]
        md += [f"## {label} (N = {res['num']}, floor {fl:.4f})", ""]
        md += [
            "| NFE budget | DLG NFE (start-up + Gibbs + finisher) | DLG error | distinct | ESS / N | chains | "
            "its finisher alone (dpmpp_2m logSNR) | best scorekit plain | best k-diffusion | best diffusers | "
            "DLG / best peer |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in res["table"]:
            d = row["dlg"]
            peers = [r for r in (row["k-diffusion"], row["diffusers"]) if r]
            bp = min((r["error"] for r in peers), default=float("nan"))
            s = d["split"]
            md.append(
                f"| {row['budget']} | {d['nfe']:.2f} ({s['startup']:.2f} + {s['gibbs']:.2f} + {s['finisher']:.2f}) "
                f"| **{d['error']:.4f}** | {d['distinct_fraction']:.3f} | {d['ess'] / res['num']:.3f} | {d['chains']} "
                f"| {_fmt(row['same_integrator'])} | {_fmt(row['scorekit'])} | {_fmt(row['k-diffusion'])} "
                f"| {_fmt(row['diffusers'])} | {d['error'] / bp:.2f} |"
            )
        b5 = res["best_at_5"]
        six = next((r for r in res["table"] if r["budget"] == 6), None)
        if six and b5["peers"]:
            ratio = six["dlg"]["error"] / b5["peers"]["error"]
            md += [
                "",
                f"Target (DLG at --nfe 6 ≤ 0.7 × the best k-diffusion/diffusers sampler at 5 NFE): "
                f"{six['dlg']['error']:.4f} / {b5['peers']['error']:.4f} ({b5['peers']['method']}) = {ratio:.2f} "
                f"→ {'met' if ratio <= 0.7 else 'missed'}.",
            ]
        md.append("")
    (out / f"{name}.md").write_text("\n".join(md))
    js = {"command": command, "results": results}
    (out / f"{name}.json").write_text(json.dumps(js, indent=1, default=lambda o: None))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
        for ax, (label, res) in zip(axes[0], results.items()):
            bs = [r["budget"] for r in res["table"]]
            ax.plot(bs, [r["dlg"]["error"] for r in res["table"]], "o-", label="DLG (defaults)")
            for key in ("scorekit", "k-diffusion", "diffusers"):
                ys = [r[key]["error"] if r[key] else np.nan for r in res["table"]]
                ax.plot(bs, ys, "s--", label=f"best {key} plain")
            ax.axhline(res["floor"], color="gray", lw=0.8, label="floor")
            ax.set_yscale("log")
            ax.set_xlabel("NFE per sample")
            ax.set_ylabel("sliced W2")
            ax.set_title(label)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
    except Exception as e:  # plotting is optional
        print("no plot:", e)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="2d,16d")
    ap.add_argument("--num-2d", type=int, default=20000)
    ap.add_argument("--num-16d", type=int, default=10000)
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="dmcmc")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    budgets = [int(b) for b in args.budgets.split(",")]
    kd, df = load_k_diffusion(), load_diffusers()
    command = "python benchmarks/dmcmc.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, gmm, num in (("2d", ring_mixture(), args.num_2d), ("16d", mixture_16d(), args.num_16d)):
            if label in args.problems.split(","):
                results[label] = run_mixture(label, gmm, num, args.seed, kd, df, budgets, Path(tmp))
                write(results, args.name, command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
