"""Denoising MCMC benchmark: quality vs NFE for six integrators, with and without DLG, in one run.

Problems: analytic Gaussian mixtures in 2-D and 16-D with the exact noise posterior (metric: sliced W2 to
exact mixture samples), and a digits score model with a trained noise classifier (metric: FID in the pinned
digits classifier's feature space). DLG's NFE is amortised honestly (start-up sample and burn-in of every
chain divided over its outputs); noise-classifier evaluations are reported separately.

    python benchmarks/dmcmc.py                                  # mixtures (a few minutes on one CPU core)
    python benchmarks/dmcmc.py --digits-run RUN --digits-classifier RUN2   # adds the digits rows

Writes benchmarks/results/dmcmc.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from scorekit.analytic import GaussianMixture
from scorekit.dmcmc import DLGConfig, ExactNoisePosterior, TrainedNoiseClassifier, make_levels, sample_dlg
from scorekit.metrics.vector import sliced_wasserstein
from scorekit.samplers import Schedule, get_sampler

INTEGRATORS = ["heun", "edm_stochastic", "reverse_diffusion", "euler_maruyama", "pf_euler", "rk45"]
# "k-diffusion / diffusers" family for the 5-NFE baseline (σ-space samplers with their usual schedules)
KDIFF = ["heun", "dpmpp_2m", "ddim", "pf_euler", "ancestral", "edm_stochastic", "euler_maruyama"]
PLAIN_STEPS = {"heun": [2, 3, 4, 6, 8, 10], "edm_stochastic": [2, 3, 4, 6, 8, 10]}
PLAIN_STEPS_DEFAULT = [3, 5, 8, 12, 20]
RK45_TOLS = [3e-1, 1e-1, 3e-2, 1e-2]
# finisher steps with DLG; 1 step is the Tweedie step D(x, σ_start) alone, the same for every integrator, so it
# is run once per DLG variant (integrator "tweedie") and is not counted as any integrator's point
DLG_STEPS = {"heun": [2, 3, 5, 8], "edm_stochastic": [2, 3, 5, 8]}
DLG_STEPS_DEFAULT = [2, 3, 5, 8, 12]
DLG_RK45_TOLS = [3e-1, 1e-1, 1e-2]
# DLG settings per problem as (label, outputs per chain, DLGConfig fields). The start-up sample of each chain is
# amortised over its outputs: more outputs per chain = cheaper start-up but more correlated outputs.
# 2-D: the reference-like setting (20-step EDM-stochastic start-up, 10 burn-in steps, η = 0.01).
# 16-D: reference-like chains are too correlated at 40 outputs each (mode weights fixed by 1 start-up sample per
# chain), so: 10 outputs per chain, a 5-step Heun start-up, no burn-in, η = σ² (mixes within a mode in ~2 steps).
# digits: dmcmc.DIGITS_DLG (the quickstart's setting, 2 outputs per chain), the same at 10 outputs per chain, and
# that with the finisher stopping at σ = 0.5 (see below).
MIXTURE_DLG = {
    "2d": [("40/chain", 40, dict(skip=1, eta=0.01, burn_in=10, init_sampler="edm_stochastic", init_steps=20))],
    "16d": [
        (
            "10/chain",
            10,
            dict(skip=1, eta=1.0, eta_schedule="sigma2", burn_in=0, init_sampler="heun", init_steps=5),
        )
    ],
}


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


def _plain(denoiser, name, steps, num, gen, process, smax, schedule=None, options=None, shape=(2,)):
    spec = get_sampler(name)  # the σ table as every scorekit path builds it (samplers.Schedule)
    sigmas = Schedule(schedule).table(steps, default=spec.default_schedule, process=process, sigma_max=smax)
    x = smax * torch.randn((num, *shape), generator=gen)
    out = spec.fn(denoiser, x, sigmas.float(), process=process, generator=gen, **(options or {}))
    return out.x, float(out.nfe)


def run_problem(
    label,
    denoiser,
    estimator,
    metric,
    num,
    dlg_variants: list[tuple[str, DLGConfig]],
    *,
    process=None,
    smax=80.0,
    shape=(2,),
    seed=0,
    quick=False,
    kdiff_baseline=False,
):
    rows = []

    def add(**r):
        r["problem"] = label
        rows.append(r)
        print(
            f"{label:8s} {r['integrator']:18s} dlg={str(r['dlg']):5s} {r['setting']:>10s} "
            f"NFE {r['nfe']:7.2f}  err {r['error']:.4f}",
            flush=True,
        )

    for name in INTEGRATORS:
        gen = torch.Generator().manual_seed(seed)
        if name == "rk45":
            plain_settings = [("tol", t) for t in RK45_TOLS]
            dlg_settings = [("tol", t) for t in DLG_RK45_TOLS]
        else:
            plain_settings = [("steps", s) for s in PLAIN_STEPS.get(name, PLAIN_STEPS_DEFAULT)]
            dlg_settings = [("steps", s) for s in DLG_STEPS.get(name, DLG_STEPS_DEFAULT)]
        if name == INTEGRATORS[0]:  # the Tweedie-only point, once per variant
            dlg_settings = [("tweedie", 1)] + dlg_settings
        if quick:
            plain_settings, dlg_settings = plain_settings[::2], dlg_settings[:2]
        for kind, v in plain_settings:
            steps, opts = (2, {"rtol": v, "atol": v}) if kind == "tol" else (v, {})
            t0 = time.time()
            x, nfe = _plain(denoiser, name, steps, num, gen, process, smax, options=opts, shape=shape)
            add(
                integrator=name,
                dlg=False,
                setting=f"{kind}={v:g}",
                nfe=nfe,
                classifier_evals=0.0,
                error=metric(x),
                seconds=round(time.time() - t0, 1),
            )
        for vlabel, dlg_base in dlg_variants:
            for kind, v in dlg_settings:
                steps, opts = (2, {"rtol": v, "atol": v}) if kind == "tol" else (v, {})
                cfg = DLGConfig(
                    **{**dlg_base.__dict__, "finisher": name, "finisher_steps": steps, "finisher_options": opts}
                )
                t0 = time.time()
                res = sample_dlg(denoiser, estimator, num, cfg, process=process, generator=gen)
                add(
                    integrator="tweedie" if kind == "tweedie" else name,
                    dlg=True,
                    variant=vlabel,
                    setting=("steps=1" if kind == "tweedie" else f"{kind}={v:g}") + f", {vlabel}",
                    nfe=res.nfe_per_sample,
                    classifier_evals=res.classifier_evals_per_sample,
                    error=metric(res.samples),
                    sigma_start_median=float(res.sigma_start.median()),
                    amortised_startup_nfe=res.info["amortised_startup_nfe"],
                    seconds=round(time.time() - t0, 1),
                )
    baseline = None
    if kdiff_baseline:
        best = None
        for name in KDIFF:
            spec = get_sampler(name)
            for steps in range(1, 6):
                if spec.nfe(steps) > 5:
                    continue
                for sched in ("karras", "log"):
                    gen = torch.Generator().manual_seed(seed)
                    x, nfe = _plain(denoiser, name, steps, num, gen, process, smax, schedule=sched, shape=shape)
                    err = metric(x)
                    if best is None or err < best["error"]:
                        best = {"sampler": name, "schedule": sched, "steps": steps, "nfe": nfe, "error": err}
        baseline = best
    return rows, baseline


def _config_record(cfg: DLGConfig) -> dict:
    return {k: v for k, v in cfg.__dict__.items() if k not in ("finisher", "finisher_steps", "finisher_options")}


def summarise(rows, max_nfe=20.0, rk45_max_nfe=40.0):
    """Per problem and integrator, at the NFE n of every DLG point (n ≤ max_nfe): the best DLG + integrator error
    at NFE ≤ n against the best plain error at NFE ≤ n (both curves' lower envelopes, i.e. the best setting a
    user could pick for that budget). DLG improves the integrator if it wins at every such n. rk45 cannot go
    below ~15–21 NFE (adaptive RK45 with 6 evaluations a step), so its limit is rk45_max_nfe.
    Also counted: how many single DLG points beat the plain envelope at their own NFE."""
    out = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        for name in INTEGRATORS:
            limit = rk45_max_nfe if name == "rk45" else max_nfe
            plain = [r for r in rows if r["problem"] == problem and r["integrator"] == name and not r["dlg"]]
            dlg = [r for r in rows if r["problem"] == problem and r["integrator"] == name and r["dlg"]]
            cmp = []
            for d in sorted(dlg, key=lambda r: r["nfe"]):
                n = d["nfe"]
                if n > limit:
                    continue
                best_plain = min((p["error"] for p in plain if p["nfe"] <= n + 1e-9), default=None)
                best_dlg = min(q["error"] for q in dlg if q["nfe"] <= n + 1e-9)
                cmp.append(
                    {
                        "nfe": n,
                        "setting": d["setting"],
                        "dlg_error": d["error"],
                        "best_dlg_at_or_below": best_dlg,
                        "best_plain_at_or_below": best_plain,
                    }
                )
            if not cmp:
                continue
            wins = [c for c in cmp if c["best_plain_at_or_below"] is not None]
            out.append(
                {
                    "problem": problem,
                    "integrator": name,
                    "improves_at_equal_nfe": all(c["best_dlg_at_or_below"] < c["best_plain_at_or_below"] for c in wins),
                    "single_points_better": sum(c["dlg_error"] < c["best_plain_at_or_below"] for c in wins),
                    "single_points": len(wins),
                    "nfe_range": [cmp[0]["nfe"], cmp[-1]["nfe"]],
                    "points": cmp,
                }
            )
    return out


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(r["problem"] for r in rows))
    fig, axes = plt.subplots(len(problems), 6, figsize=(20, 3.2 * len(problems)), squeeze=False)
    for i, problem in enumerate(problems):
        for j, name in enumerate(INTEGRATORS):
            ax = axes[i][j]
            variants = dict.fromkeys(r.get("variant") for r in rows if r["problem"] == problem and r["dlg"])
            for dlg, variant, style in [(False, None, "o-")] + [(True, v, "s-") for v in variants]:
                pts = sorted(
                    (r["nfe"], r["error"])
                    for r in rows
                    if r["problem"] == problem
                    and r["integrator"] == name
                    and r["dlg"] == dlg
                    and (not dlg or r.get("variant") == variant)
                )
                if pts:
                    ax.plot(*zip(*pts), style, label=f"DLG + {name} ({variant})" if dlg else name)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(0.8, 60)
            ax.set_title(f"{problem}: {name}", fontsize=9)
            ax.set_xlabel("NFE / sample (DLG: amortised)")
            if j == 0:
                ax.set_ylabel("digits FID" if problem == "digits" else "sliced W2")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def render_markdown(result: dict) -> str:
    floors, summary, configs, target2 = (
        result["noise_floor"],
        result["summary"],
        result["dlg_configs"],
        result["target_2d"],
    )
    all_rows = result["rows"]
    md = [
        "# Denoising MCMC benchmark",
        "",
        f"Command: `{result.get('command', 'python benchmarks/dmcmc.py')}` (OMP_NUM_THREADS=1, 2-core CPU)",
        "",
        "Error: sliced W2 to as many exact mixture samples (mixtures), digits FID (digits). "
        "DLG NFE includes the amortised start-up; classifier evaluations listed separately.",
        "",
        f"Noise floor (exact samples of the same size): {json.dumps({k: round(v, 4) for k, v in floors.items()})}",
        "",
        "| problem | integrator | DLG | setting | NFE / sample | classifier evals | error |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in all_rows:
        md.append(
            f"| {r['problem']} | {r['integrator']} | {'yes' if r['dlg'] else 'no'} | {r['setting']} | "
            f"{r['nfe']:.2f} | {r['classifier_evals']:.2f} | {r['error']:.4f} |"
        )
    md += [
        "",
        "## DLG vs plain at equal NFE (≤ 20; rk45 ≤ 40)",
        "",
        "At the NFE n of each DLG point: best DLG + integrator error at NFE ≤ n vs best plain error at NFE ≤ n. "
        "'single DLG points better' counts the DLG settings that beat the plain envelope on their own.",
        "",
        "| problem | integrator | DLG NFE range | DLG better at every n | single DLG points better |",
        "|---|---|---|---|---|",
    ]
    md += [
        f"| {s['problem']} | {s['integrator']} | {s['nfe_range'][0]:.1f}–{s['nfe_range'][1]:.1f} | "
        f"{s['improves_at_equal_nfe']} | {s['single_points_better']} / {s['single_points']} |"
        for s in summary
    ]
    md += ["", "DLG settings: " + json.dumps(configs, default=str)]
    if target2:
        md += [
            "",
            "## 2-D target: DLG at ≤ 6 NFE vs the best k-diffusion-style sampler at ≤ 5 NFE",
            "",
            f"best DLG: {target2['best_dlg_at_most_6_nfe']}",
            "",
            f"best baseline: {target2['best_kdiffusion_at_most_5_nfe']}",
            "",
            f"ratio: {target2['ratio']:.3f} (target ≤ 0.7)",
        ]
    failures = [
        (s, c)
        for s in summary
        for c in s["points"]
        if c["best_plain_at_or_below"] is not None and not c["best_dlg_at_or_below"] < c["best_plain_at_or_below"]
    ]
    if failures:
        md += ["", "Budgets where DLG does not win:", ""]
        md += [
            f"- {s['problem']} {s['integrator']} at {c['nfe']:.2f} NFE ({c['setting']}): best DLG "
            f"{c['best_dlg_at_or_below']:.4f} vs best plain {c['best_plain_at_or_below']:.4f}"
            for s, c in failures
        ]
    return "\n".join(md) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--num", type=int, default=4000, help="samples per mixture point")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--problems", default="2d,16d")
    ap.add_argument("--digits-run", default=None)
    ap.add_argument("--digits-classifier", default=None)
    ap.add_argument("--digits-num", type=int, default=2000)
    ap.add_argument("--digits-chains", type=int, default=None, help="default: 2 outputs per chain, as DIGITS_DLG")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="dmcmc", help="output file stem (default dmcmc)")
    ap.add_argument("--render", default=None, help="only rewrite the .md (and .png) of an existing result .json")
    args = ap.parse_args(argv)
    if args.render:
        src = Path(args.render)
        result = json.loads(src.read_text())
        result["summary"] = summarise(result["rows"])
        src.write_text(json.dumps(result, indent=1, default=str))
        src.with_suffix(".md").write_text(render_markdown(result))
        plot(result["rows"], src.with_suffix(".png"))
        return
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_rows, baselines, floors, configs = [], {}, {}, {}
    problems = [p for p in args.problems.split(",") if p]
    for label, gmm in (("2d", ring_mixture()), ("16d", mixture_16d())):
        if label not in problems:
            continue
        ref, _ = gmm.sample(args.num, torch.Generator().manual_seed(1))  # equal sizes: exact sorted matching
        proj = torch.Generator().manual_seed(2)

        def metric(x, ref=ref):
            return sliced_wasserstein(x.double(), ref, num_projections=256, generator=torch.Generator().manual_seed(2))

        floors[label] = metric(gmm.sample(args.num, proj)[0])
        est = ExactNoisePosterior(gmm, make_levels(0.002, 80.0, 1000))
        variants = [
            (vl, DLGConfig(chains=max(1, args.num // per_chain), **kw)) for vl, per_chain, kw in MIXTURE_DLG[label]
        ]
        configs[label] = {vl: _config_record(c) for vl, c in variants}
        rows, baseline = run_problem(
            label,
            gmm.denoiser(),
            est,
            metric,
            args.num,
            variants,
            seed=args.seed,
            quick=args.quick,
            kdiff_baseline=(label == "2d"),
            shape=(gmm.dim,),
        )
        all_rows += rows
        if baseline:
            baselines[label] = baseline
    if args.digits_run and args.digits_classifier and "digits" not in problems:
        problems.append("digits")
    if "digits" in problems and args.digits_run and args.digits_classifier:
        from scorekit.checkpoint import load_denoiser
        from scorekit.commands.quickstart import DIGITS_DLG, digits_fid
        from scorekit.data import DataTransform, load_data

        den = load_denoiser(args.digits_run)
        est = TrainedNoiseClassifier(args.digits_classifier)
        cfg_run = json.loads((Path(args.digits_run) / "config.json").read_text())
        tr = DataTransform.from_config(cfg_run["data"]["transform"])
        ref_user = load_data("digits").user_data()

        def fid(x):
            return digits_fid(tr.to_user(x), ref_user)

        floors["digits"] = fid(tr.to_model(load_data("digits", split="test").user_data()))
        # DIGITS_DLG is tuned for the quickstart's 1000 samples over 500 chains: keep 2 outputs per chain
        chains = args.digits_chains or max(1, args.digits_num * DIGITS_DLG["chains"] // 1000)
        per_chain = max(1, args.digits_num // chains)
        variants = [(f"{per_chain}/chain", DLGConfig(**{**DIGITS_DLG, "chains": chains}))]
        short = {**DIGITS_DLG, "chains": max(1, args.digits_num // 10)}
        if per_chain != 10:
            variants.append(("10/chain", DLGConfig(**short)))
        # The reference's Tweedie σ (0.01) makes a 2–3 step finisher take one huge step from σ_start ≈ 1 to
        # 0.01; stopping at σ = 0.5 (start-up and finisher) and taking D there suits short finishers. Added after
        # the 10/chain run lost to plain pf_euler at 3.9 NFE; it costs quality with longer finishers, so it is an
        # extra variant, not the default.
        variants.append(("10/chain, tweedie 0.5", DLGConfig(**{**short, "tweedie_sigma": 0.5})))
        configs["digits"] = {vl: _config_record(c) for vl, c in variants}
        configs["digits"]["classifier_accuracy"] = est.accuracy
        rows, _ = run_problem(
            "digits",
            den,
            est,
            fid,
            args.digits_num,
            variants,
            process=den.process,
            smax=den.process.sigma_max,
            shape=tuple(den.data_shape),
            seed=args.seed,
            quick=args.quick,
        )
        all_rows += rows
    summary = summarise(all_rows)
    target2 = None
    if "2d" in baselines:
        dlg6 = [r for r in all_rows if r["problem"] == "2d" and r["dlg"] and r["nfe"] <= 6.0]
        if dlg6:
            best = min(dlg6, key=lambda r: r["error"])
            target2 = {
                "best_dlg_at_most_6_nfe": {k: best[k] for k in ("integrator", "setting", "nfe", "error")},
                "best_kdiffusion_at_most_5_nfe": baselines["2d"],
                "ratio": best["error"] / baselines["2d"]["error"],
            }
    result = {
        "rows": all_rows,
        "summary": summary,
        "noise_floor": floors,
        "kdiff_baseline": baselines,
        "target_2d": target2,
        "dlg_configs": configs,
        "num": args.num,
        "digits_num": args.digits_num if "digits" in problems else None,
        "command": "python benchmarks/dmcmc.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1, default=str))
    text = render_markdown(result)
    (out / f"{args.name}.md").write_text(text)
    plot(all_rows, out / f"{args.name}.png")
    print(text)


if __name__ == "__main__":
    main()
