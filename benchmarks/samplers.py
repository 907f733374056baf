"""Sampler accuracy vs NFE and per-step overhead, scorekit against k-diffusion and diffusers, on exact denoisers.

For a Gaussian mixture in 2 and in 16 dimensions the exact D(x, σ) (scorekit.analytic) drives every sampler:
scorekit's, k-diffusion's (euler, heun, dpm_2, lms, dpmpp_2m; Karras σ, 0.002..80) and diffusers' schedulers
(Euler, Heun, DPM-Solver++, UniPC, DDIM on the DDPM linear-β chain; default spacing and, where offered, Karras
σ), all from the same initial noise in the same run. Error: sliced W2 (256 projections) to a fresh reference
sample of the same size; the two-sample floor is the same statistic between two exact samples. Every method
integrates the DDPM chain's σ range [0.0100, 157.4] from the same initial noise, so converged methods agree
and the differences are discretisation error. scorekit's process-space samplers run on that DDPM chain.

Overhead: at batch 10,000 in 2-D, wall time minus the time spent inside the denoiser, per denoiser evaluation.

Peers are optional (benchmarks/requirements-bench.txt):
    .venv/bin/pip install diffusers
    .venv/bin/pip install --no-deps k-diffusion==0.1.1.post1 torchsde trampoline jsonmerge einops
Only k_diffusion.sampling is imported (its package __init__ pulls in training-only dependencies), with an
import stub for torchvision from benchmarks/_stubs (a real torchvision cannot load beside the CPU torch).

Run:  .venv/bin/python benchmarks/samplers.py [--num 10000] [--quick]
Writes benchmarks/results/samplers.{md,json,png}.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import math
import sys
import time
import types
from pathlib import Path

import torch

from scorekit.analytic import GaussianMixture
from scorekit.metrics import sliced_wasserstein
from scorekit.processes import DDPM
from scorekit.samplers import SAMPLERS, get_sigmas

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BUDGETS = (5, 10, 20)
# every method integrates the same σ range, that of the DDPM linear-β chain diffusers' schedulers run on
# (σ(t=0) = 0.0100 … σ(t=999) = 157.4), from the same initial noise z·σ_max
CHAIN = DDPM(1000, "linear", 1e-4, 0.02)
SIGMA_MIN, SIGMA_MAX = CHAIN.sigma_min, CHAIN.sigma_max


# --- problems ------------------------------------------------------------------------------------------------
def mixtures() -> dict[str, GaussianMixture]:
    """2-D: eight unequal modes on a ring; 16-D: six random anisotropic components (fixed seed)."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    ring = GaussianMixture(
        torch.linspace(1.0, 2.0, 8),
        torch.stack([2 * ang.cos(), 2 * ang.sin()], 1),
        torch.full((8, 2), 0.03, dtype=torch.float64),
    )
    g = torch.Generator().manual_seed(16)
    k, d = 6, 16
    hi = GaussianMixture(
        torch.rand(k, generator=g, dtype=torch.float64) + 0.5,
        1.5 * torch.randn(k, d, generator=g, dtype=torch.float64),
        0.05 + 0.45 * torch.rand(k, d, generator=g, dtype=torch.float64),
    )
    return {"gmm2d": ring, "gmm16d": hi}


class TimedDenoiser:
    """D(x, σ) that counts calls and the seconds spent inside."""

    def __init__(self, gmm: GaussianMixture):
        self.den = gmm.denoiser()
        self.calls, self.seconds = 0, 0.0

    def __call__(self, x, sigma, class_labels=None):
        t = time.perf_counter()
        out = self.den(x, sigma)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


# --- scorekit ------------------------------------------------------------------------------------------------
def ours(name: str, nfe_budget: int, schedule: str | None = None, **opts):
    """A scorekit sampler configured for ~nfe_budget evaluations; returns run(den, z, gen) -> x."""
    spec = SAMPLERS[name]
    if name in ("heun", "edm_stochastic"):
        steps = (nfe_budget + 1) // 2
    elif name == "pc":
        steps = max(1, nfe_budget // 2)
    elif name == "annealed_langevin":
        steps = max(1, (nfe_budget - 1) // opts.get("n_steps_each", 5))
    elif name == "langevin":
        steps = max(1, nfe_budget - 1)
    else:
        steps = nfe_budget
    schedule = schedule or spec.default_schedule
    process = None if spec.default_schedule in ("karras", "log") else CHAIN

    def run(den, z, gen):
        if process is None:
            sig = get_sigmas(schedule, steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
        else:
            sig = get_sigmas(schedule, steps, process=process)
        x = float(sig[0]) * z
        return spec.fn(den, x, sig, process=process, generator=gen, **opts).x

    return run


# --- k-diffusion ---------------------------------------------------------------------------------------------
def load_k_diffusion():
    found = importlib.util.find_spec("k_diffusion")
    if found is None:
        return None
    sys.path.insert(0, str(HERE / "_stubs"))  # torchvision stub, for this process only
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(found.submodule_search_locations)
    sys.modules.setdefault("k_diffusion", pkg)
    from k_diffusion import sampling

    return sampling


def kdiff(sampling, name: str, nfe_budget: int):
    fn = getattr(sampling, f"sample_{name}")
    steps = (nfe_budget + 1) // 2 if name in ("heun", "dpm_2") else nfe_budget

    def run(den, z, gen):
        sig = sampling.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX, rho=7.0).to(z.dtype)
        return fn(den, z * sig[0], sig, disable=True)

    return run


# --- diffusers -----------------------------------------------------------------------------------------------
DIFFUSERS = {
    "Euler": "EulerDiscreteScheduler",
    "Heun": "HeunDiscreteScheduler",
    "DPM-Solver++": "DPMSolverMultistepScheduler",
    "UniPC": "UniPCMultistepScheduler",
    "DDIM": "DDIMScheduler",
}


def load_diffusers():
    if importlib.util.find_spec("diffusers") is None:
        return None
    import diffusers

    return diffusers


def diffusers_run(diffusers, label: str, nfe_budget: int, karras: bool):
    cls = getattr(diffusers, DIFFUSERS[label])
    kw = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    if karras:
        kw["use_karras_sigmas"] = True
    steps = (nfe_budget + 1) // 2 if label == "Heun" else nfe_budget

    takes_generator = "generator" in inspect.signature(cls.step).parameters

    def run(den, z, gen):
        sched = cls(**kw)
        sched.set_timesteps(steps)
        x = z * sched.init_noise_sigma
        for t in sched.timesteps:
            inp = sched.scale_model_input(x, t)
            # model input is VP-space x·s(σ): recover σ from the timestep on the DDPM chain, then ε from D
            sigma = CHAIN.sigma((torch.as_tensor(t, dtype=torch.float64) + 1) / 1000).to(x.dtype)
            xh = inp * (1 + sigma**2).sqrt()
            eps = (xh - den(xh, sigma.expand(x.shape[0]))) / sigma
            x = (sched.step(eps, t, x, generator=gen) if takes_generator else sched.step(eps, t, x)).prev_sample
        return x

    return run


# --- the benchmark -------------------------------------------------------------------------------------------
def methods(budget: int, kd, df) -> dict:
    m = {}
    for name in ("euler_maruyama", "reverse_diffusion", "pc", "ancestral", "ddim", "pf_euler"):
        m[f"scorekit:{name}"] = ours(name, budget)
    for name in ("heun", "edm_stochastic", "dpmpp_2m", "dpmpp_3m"):
        m[f"scorekit:{name}"] = ours(name, budget)
    for name in ("dpmpp_2m", "dpmpp_3m"):
        m[f"scorekit:{name}+logsnr"] = ours(name, budget, schedule="logsnr")
    m["scorekit:annealed_langevin"] = ours("annealed_langevin", budget, n_steps_each=1, step_scale=1.0)
    if kd is not None:
        for name in ("euler", "heun", "dpm_2", "lms", "dpmpp_2m"):
            m[f"k-diffusion:{name}"] = kdiff(kd, name, budget)
    if df is not None:
        for label in DIFFUSERS:
            m[f"diffusers:{label}"] = diffusers_run(df, label, budget, karras=False)
            if label in ("Euler", "Heun", "DPM-Solver++", "UniPC"):
                m[f"diffusers:{label}+karras"] = diffusers_run(df, label, budget, karras=True)
    return m


def accuracy(gmm, num, budgets, kd, df, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = gmm.sample(num, g)[0].float()
    floor = sliced_wasserstein(gmm.sample(num, g)[0].float(), ref)
    z = torch.randn(num, gmm.dim, generator=torch.Generator().manual_seed(seed + 1))
    rows = []
    for budget in budgets:
        for label, run in methods(budget, kd, df).items():
            den = TimedDenoiser(gmm)
            x = run(den, z.clone(), torch.Generator().manual_seed(seed + 2))
            ok = bool(torch.isfinite(x).all())
            w2 = sliced_wasserstein(x.double(), ref) if ok else float("nan")
            rows.append({"method": label, "budget": budget, "nfe": den.calls, "sw2": w2})
            print(f"  {label:34s} budget {budget:3d}  nfe {den.calls:3d}  sliced W2 {w2:.4f}", flush=True)
    # the adaptive solver: NFE is whatever the tolerance costs
    for tol in (1e-2, 1e-3, 1e-4):
        den = TimedDenoiser(gmm)
        sig = get_sigmas("uniform_t", 2, process=CHAIN)
        x = SAMPLERS["rk45"].fn(den, float(sig[0]) * z.clone(), sig, process=CHAIN, rtol=tol, atol=tol).x
        w2 = sliced_wasserstein(x.double(), ref)
        rows.append({"method": f"scorekit:rk45(tol={tol:g})", "budget": None, "nfe": den.calls, "sw2": w2})
        print(f"  scorekit:rk45 tol {tol:g}  nfe {den.calls}  sliced W2 {w2:.4f}", flush=True)
    return floor, rows


def overhead(num, kd, df, steps=20, repeats=5):
    """Seconds per denoiser evaluation spent outside the denoiser, batch `num`, 2-D: the minimum over `repeats`
    round-robin passes (every method measured once per pass, so machine load hits all alike)."""
    gmm = mixtures()["gmm2d"]
    z = torch.randn(num, 2, generator=torch.Generator().manual_seed(7))
    runs = {k: v for k, v in methods(steps, kd, df).items() if "langevin" not in k}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for label, run in runs.items():
            den = TimedDenoiser(gmm)
            t = time.perf_counter()
            run(den, z.clone(), torch.Generator().manual_seed(1))
            total = time.perf_counter() - t
            best[label] = min(best[label], (total - den.seconds) / den.calls)
    for label, v in best.items():
        print(f"  {label:34s} overhead {v * 1e6:8.1f} µs / evaluation", flush=True)
    return best


OVERHEAD_PAIRS = [
    ("scorekit:pf_euler", ("k-diffusion:euler", "diffusers:Euler")),
    ("scorekit:heun", ("k-diffusion:heun", "diffusers:Heun")),
    ("scorekit:dpmpp_2m", ("k-diffusion:dpmpp_2m", "diffusers:DPM-Solver++")),
    ("scorekit:ddim", ("diffusers:DDIM",)),
    ("scorekit:dpmpp_3m", ("k-diffusion:lms", "diffusers:UniPC")),
]


def best_at(rows, budget, prefix):
    cand = [r for r in rows if r["method"].startswith(prefix) and r["budget"] == budget and math.isfinite(r["sw2"])]
    return min(cand, key=lambda r: r["sw2"]) if cand else None


def write(results, path_md, path_json, path_png):
    path_json.write_text(json.dumps(results, indent=2))
    lines = ["# Samplers: sliced W2 vs NFE on exact Gaussian-mixture denoisers", ""]
    lines.append(f"Command: `{results['command']}`  (peers: {results['peers']})")
    lines.append("")
    for prob, res in results["accuracy"].items():
        lines.append(f"## {prob}: two-sample floor {res['floor']:.4f} (n = {results['num']})")
        lines.append("")
        budgets = results["budgets"]
        lines.append("| method | " + " | ".join(f"NFE≤{b}" for b in budgets) + " |")
        lines.append("|---|" + "---|" * len(budgets))
        names = list(dict.fromkeys(r["method"] for r in res["rows"] if r["budget"] is not None))
        for name in names:
            cells = []
            for b in budgets:
                r = next(r for r in res["rows"] if r["method"] == name and r["budget"] == b)
                cells.append(f"{r['sw2']:.4f} ({r['nfe']})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for r in res["rows"]:
            if r["budget"] is None:
                cell = f"adaptive: {r['sw2']:.4f} at NFE {r['nfe']}"
                lines.append(f"| {r['method']} | {cell} |" + " |" * (len(budgets) - 1))
        lines.append("")
        lines.append("| budget | best scorekit | best peer | ours ≤ peer |")
        lines.append("|---|---|---|---|")
        for b in budgets:
            o, p = best_at(res["rows"], b, "scorekit:"), None
            peers = [best_at(res["rows"], b, pre) for pre in ("k-diffusion:", "diffusers:")]
            peers = [q for q in peers if q is not None]
            p = min(peers, key=lambda r: r["sw2"]) if peers else None
            pcell = f"{p['method']} {p['sw2']:.4f}" if p else "n/a"
            verdict = "yes" if p is None or o["sw2"] <= p["sw2"] else "no"
            lines.append(f"| {b} | {o['method']} {o['sw2']:.4f} | {pcell} | {verdict} |")
        lines.append("")
    if results.get("overhead"):
        batch = results["overhead_batch"]
        lines.append(f"## Overhead per denoiser evaluation, batch {batch}, 2-D (µs, best of 5 passes)")
        lines.append("")
        lines.append("| method | µs / evaluation |")
        lines.append("|---|---|")
        for k, v in sorted(results["overhead"].items(), key=lambda kv: kv[1]):
            lines.append(f"| {k} | {v * 1e6:.1f} |")
        lines.append("")
        lines.append("Same algorithm, side by side (µs / evaluation):")
        lines.append("")
        lines.append("| scorekit | µs | peers | µs | ours ≤ every peer |")
        lines.append("|---|---|---|---|---|")
        ov = results["overhead"]
        for mine, theirs in OVERHEAD_PAIRS:
            have = [t for t in theirs if t in ov]
            if mine not in ov or not have:
                continue
            cells = ", ".join(f"{t} {ov[t] * 1e6:.1f}" for t in have)
            ok = "yes" if all(ov[mine] <= ov[t] for t in have) else "no"
            lines.append(f"| {mine} | {ov[mine] * 1e6:.1f} | {cells} | {ok} |")
        lines.append("")
    path_md.write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = list(results["accuracy"])
    fig, axes = plt.subplots(1, len(probs), figsize=(8 * len(probs), 6))
    for ax, prob in zip(axes if len(probs) > 1 else [axes], probs):
        res = results["accuracy"][prob]
        names = list(dict.fromkeys(r["method"] for r in res["rows"] if r["budget"] is not None))
        colors = plt.cm.tab20.colors + plt.cm.tab20b.colors
        for k, name in enumerate(names):
            pts = sorted((r["nfe"], r["sw2"]) for r in res["rows"] if r["method"] == name)
            style = "-" if name.startswith("scorekit") else ("--" if name.startswith("k-diff") else ":")
            lw = 2.2 if "logsnr" in name else 1.0
            ax.plot(*zip(*pts), style, marker="o", ms=3, lw=lw, color=colors[k % len(colors)], label=name)
        ax.axhline(res["floor"], color="k", lw=0.8, label="two-sample floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(0.5 * res["floor"], 2.0)
        ax.set_xlabel("NFE")
        ax.set_ylabel("sliced W2 to reference")
        ax.set_title(prob)
    axes_list = axes if len(probs) > 1 else [axes]
    axes_list[-1].legend(fontsize=6, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path_png, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=10000, help="samples per method (and reference)")
    ap.add_argument("--budgets", type=str, default="5,10,20,50")
    ap.add_argument("--overhead-batch", type=int, default=10000)
    ap.add_argument("--no-overhead", action="store_true")
    ap.add_argument("--out", type=str, default=str(RESULTS / "samplers"))
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md/.png from an existing .json")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.report_only:
        results = json.loads(out.with_suffix(".json").read_text())
        write(results, out.with_suffix(".md"), out.with_suffix(".json"), out.with_suffix(".png"))
        print(out.with_suffix(".md").read_text())
        return
    torch.set_num_threads(1)
    kd, df = load_k_diffusion(), load_diffusers()
    peers = ", ".join(p for p, m in (("k-diffusion", kd), ("diffusers", df)) if m is not None) or "none installed"
    budgets = tuple(int(b) for b in args.budgets.split(","))
    results = {
        "command": "python benchmarks/samplers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "peers": peers,
        "num": args.num,
        "budgets": list(budgets),
        "accuracy": {},
        "torch": torch.__version__,
    }
    for prob, gmm in mixtures().items():
        print(f"{prob}:", flush=True)
        floor, rows = accuracy(gmm, args.num, budgets, kd, df)
        results["accuracy"][prob] = {"floor": floor, "rows": rows}
    if not args.no_overhead:
        print("overhead:", flush=True)
        results["overhead"] = overhead(args.overhead_batch, kd, df)
        results["overhead_batch"] = args.overhead_batch
    out.parent.mkdir(parents=True, exist_ok=True)
    write(results, out.with_suffix(".md"), out.with_suffix(".json"), out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
