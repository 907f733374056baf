"""Sampling at a budget: sliced W2 vs NFE on exact denoisers of hard Gaussian mixtures, scorekit against
k-diffusion and diffusers, with the two-sample floor beside every error.

Problems: 8-component mixtures with narrow (per-axis std 0.05–0.5), anisotropic, unequal (weights 0.2–3.2)
components spread over [−4, 4]^d, in 2-D and 16-D, two mixtures (seeds) each. The exact D(x, σ) (scorekit.analytic)
drives every sampler from the same initial noise over the DDPM linear-β chain's σ range [0.0100, 157.4] (the chain
diffusers' schedulers run on). NFE 3, 4, 5, 6, 8, 10.

Methods: scorekit's multistep solvers (dpmpp_2m/3m, ipndm, deis, unipc) on built-in schedules; the same with σ
schedules tuned by samplers.tuning (32 teacher trajectories + 32 held out, tuned on seeds disjoint from the judged
ones); the budget planner (`plan_for_budget`: built-in rule, and with the tuned files as a run's schedules/ folder).
k-diffusion (euler, heun, dpm_2, lms, dpmpp_2m; Karras and exponential σ) and diffusers (UniPC orders 2/3 and
bh1/bh2, DPM-Solver++, DEIS, Euler, Heun, DDIM; timestep spacing linspace/leading/trailing, Karras, exponential and
beta σ where the scheduler offers them). Error: sliced W2 (256 fixed projections) to a fresh exact sample of the same
size; floor: the same statistic between two independent exact samples.

Peers are optional (benchmarks/requirements-bench.txt):
    .venv/bin/pip install diffusers
    .venv/bin/pip install --no-deps k-diffusion==0.1.1.post1 torchsde trampoline jsonmerge einops
Only k_diffusion.sampling is imported (its package __init__ pulls in training-only dependencies), with an
import stub for torchvision from benchmarks/_stubs (a real torchvision cannot load beside the CPU torch).

Run:  PYTHONPATH=src .venv/bin/python benchmarks/samplers.py [--num 4000] [--nfe 3,4,5,6,8,10]
Writes benchmarks/results/samplers.{md,json,png}.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import math
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from scorekit.analytic import GaussianMixture
from scorekit.metrics import sliced_wasserstein
from scorekit.processes import DDPM
from scorekit.samplers import SAMPLERS, get_sigmas
from scorekit.samplers.budget import plan_for_budget
from scorekit.samplers.tuning import gmm_fingerprint, save_schedule, tune_schedule

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NFES = (3, 4, 5, 6, 8, 10)
CHAIN = DDPM(1000, "linear", 1e-4, 0.02)
SIGMA_MIN, SIGMA_MAX = CHAIN.sigma_min, CHAIN.sigma_max
TUNED = ("ipndm", "unipc", "deis")


# --- problems ------------------------------------------------------------------------------------------------
def hard_mixture(dim: int, seed: int, k: int = 8) -> GaussianMixture:
    """k components, means uniform in [−4, 4]^dim, per-axis std uniform in [0.05, 0.5], weights in [0.2, 3.2]."""
    g = torch.Generator().manual_seed(1000 * dim + seed)
    w = 0.2 + 3 * torch.rand(k, generator=g, dtype=torch.float64)
    mu = 8 * torch.rand(k, dim, generator=g, dtype=torch.float64) - 4
    std = 0.05 + 0.45 * torch.rand(k, dim, generator=g, dtype=torch.float64)
    return GaussianMixture(w, mu, std**2)


def mixtures(seeds=(0, 1)) -> dict[str, GaussianMixture]:
    return {f"{d}d-seed{s}": hard_mixture(d, s) for d in (2, 16) for s in seeds}


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
def ours(name: str, nfe: int, schedule="karras", **opts):
    """A scorekit sampler for `nfe` evaluations on a named schedule or an explicit σ list."""
    spec = SAMPLERS[name]
    steps = (nfe + 1) // 2 if name == "heun" else nfe

    def run(den, z, gen):
        if isinstance(schedule, str):
            proc = CHAIN if schedule == "uniform_t" else None
            sig = get_sigmas(schedule, steps, process=proc, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
        else:
            sig = torch.as_tensor(schedule, dtype=torch.float64)
        return spec.fn(den, float(sig[0]) * z, sig.to(z.dtype), generator=gen, **opts).x

    return run


def from_plan(plan):
    def run(den, z, gen):
        sig = plan.sigmas_tensor(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
        return SAMPLERS[plan.sampler].fn(den, float(sig[0]) * z, sig.to(z.dtype), **plan.options).x

    return run


def tune_all(gmm, nfes, folder: Path, teachers: int, seed: int) -> dict:
    """Tuned schedule files for every solver in TUNED and NFE, written to folder (a run's schedules/); each starts
    from the budget planner's built-in rule for that solver."""
    den = gmm.denoiser()
    out = {}
    for n in nfes:
        for name in TUNED:
            plan = plan_for_budget(n, sampler=name, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
            t = time.perf_counter()
            res = tune_schedule(
                den, name, n, shape=(gmm.dim,), start=plan.sigmas_tensor(), options=plan.options,
                sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, teachers=teachers, seed=seed, model=gmm_fingerprint(gmm),
            )  # fmt: skip
            res["seconds"] = time.perf_counter() - t
            save_schedule(folder / f"{name}-nfe{n}.json", res)
            out[(name, n)] = res
            e = res["endpoint_error"]
            print(
                f"  tuned {name:6s} NFE {n:2d}: {res['chosen']:5s} held-out error {e['heldout_tuned']:.4f} "
                f"(start {e['heldout_start']:.4f}) {res['seconds']:.1f}s",
                flush=True,
            )
    return out


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


def kdiff(sampling, name: str, nfe: int, schedule: str):
    fn = getattr(sampling, f"sample_{name}")
    steps = (nfe + 1) // 2 if name in ("heun", "dpm_2") else nfe

    def run(den, z, gen):
        if schedule == "karras":
            sig = sampling.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX, rho=7.0)
        else:
            sig = sampling.get_sigmas_exponential(steps, SIGMA_MIN, SIGMA_MAX)
        sig = sig.to(z.dtype)
        return fn(den, z * sig[0], sig, disable=True)

    return run


# --- diffusers -----------------------------------------------------------------------------------------------
DIFFUSERS = {
    "UniPC": ("UniPCMultistepScheduler", {}),
    # bh1 with a final σ of 0 gives NaN in diffusers (B(h) = −h is infinite on the last step): end at σ_min
    "UniPC-3-bh1": (
        "UniPCMultistepScheduler",
        {"solver_order": 3, "solver_type": "bh1", "final_sigmas_type": "sigma_min"},
    ),
    "DPM-Solver++": ("DPMSolverMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
}
SPACINGS = {
    "": {},
    "+leading": {"timestep_spacing": "leading"},
    "+trailing": {"timestep_spacing": "trailing"},
    "+karras": {"use_karras_sigmas": True},
    "+exponential": {"use_exponential_sigmas": True},
    "+beta": {"use_beta_sigmas": True},
}


def load_diffusers():
    if importlib.util.find_spec("diffusers") is None:
        return None
    import diffusers

    return diffusers


def diffusers_run(diffusers, label: str, nfe: int, extra: dict):
    clsname, kw0 = DIFFUSERS[label]
    cls = getattr(diffusers, clsname)
    kw = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, **kw0, **extra)
    steps = (nfe + 1) // 2 if label == "Heun" else nfe
    takes_generator = "generator" in inspect.signature(cls.step).parameters
    acp = None

    def run(den, z, gen):
        nonlocal acp
        sched = cls(**kw)
        sched.set_timesteps(steps)
        acp = sched.alphas_cumprod.to(torch.float64)
        x = z * sched.init_noise_sigma
        sigmas = getattr(sched, "sigmas", None)
        for i, t in enumerate(sched.timesteps):
            inp = sched.scale_model_input(x, t)
            if sigmas is not None and len(sigmas) > i:  # the scheduler's own σ for this evaluation
                sigma = torch.as_tensor(sigmas[i], dtype=torch.float64)
            else:
                a = acp[int(t)]
                sigma = ((1 - a) / a).sqrt()
            sigma = sigma.to(x.dtype)
            xh = inp * (1 + sigma**2).sqrt()  # model input is VP-space x·s(σ)
            eps = (xh - den(xh, sigma.expand(x.shape[0]))) / sigma
            x = (sched.step(eps, t, x, generator=gen) if takes_generator else sched.step(eps, t, x)).prev_sample
        return x

    return run


def diffusers_ok(diffusers, label, extra) -> bool:
    clsname, kw0 = DIFFUSERS[label]
    params = inspect.signature(getattr(diffusers, clsname).__init__).parameters
    return all(k in params for k in extra)


# --- the benchmark -------------------------------------------------------------------------------------------
def methods(nfe: int, kd, df, tuned_dir: Path | None) -> dict:
    m = {}
    m["scorekit:dpmpp_2m"] = ours("dpmpp_2m", nfe)
    m["scorekit:dpmpp_3m"] = ours("dpmpp_3m", nfe)
    for name in ("dpmpp_2m", "dpmpp_3m", "ipndm", "deis", "unipc"):
        m[f"scorekit:{name}+logsnr"] = ours(name, nfe, "logsnr")
    for name in ("ipndm", "deis", "unipc"):
        m[f"scorekit:{name}"] = ours(name, nfe)
    m["scorekit:budget(rule)"] = from_plan(plan_for_budget(nfe, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX))
    if tuned_dir is not None:
        for name in TUNED:
            path = tuned_dir / "schedules" / f"{name}-nfe{nfe}.json"
            if path.is_file():
                m[f"scorekit:{name}+tuned"] = from_plan(plan_for_budget(nfe, tuned_schedule_path=path))
        m["scorekit:budget"] = from_plan(plan_for_budget(nfe, run_dir=tuned_dir))
    if kd is not None:
        for name in ("euler", "heun", "dpm_2", "lms", "dpmpp_2m"):
            for sched in ("karras", "exponential"):
                m[f"k-diffusion:{name}+{sched}"] = kdiff(kd, name, nfe, sched)
    if df is not None:
        for label in DIFFUSERS:
            for sp, extra in SPACINGS.items():
                if label == "DDIM" and sp not in ("", "+leading", "+trailing"):
                    continue
                if diffusers_ok(df, label, extra):
                    m[f"diffusers:{label}{sp}"] = diffusers_run(df, label, nfe, extra)
    return m


def _sw(a, b):
    return sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(5))


def accuracy(gmm, num, nfes, kd, df, tuned_dir, seed=0):
    g = torch.Generator().manual_seed(seed + 100)  # disjoint from the tuning seeds
    ref = gmm.sample(num, g)[0]
    floor = _sw(gmm.sample(num, g)[0], ref)
    z = torch.randn(num, gmm.dim, generator=torch.Generator().manual_seed(seed + 101), dtype=torch.float64)
    rows = []
    for nfe in nfes:
        for label, run in methods(nfe, kd, df, tuned_dir).items():
            den = TimedDenoiser(gmm)
            try:
                x = run(den, z.clone(), torch.Generator().manual_seed(seed + 102))
                ok = bool(torch.isfinite(x).all())
            except Exception as e:  # a peer option that does not run here
                print(f"  {label}: {type(e).__name__}: {e}", flush=True)
                continue
            w2 = _sw(x.double(), ref) if ok else float("nan")
            rows.append({"method": label, "nfe_budget": nfe, "nfe": den.calls, "sw2": w2})
        best = min((r for r in rows if r["nfe_budget"] == nfe and math.isfinite(r["sw2"])), key=lambda r: r["sw2"])
        print(f"  NFE {nfe}: floor {floor:.4f}, best {best['method']} {best['sw2']:.4f}", flush=True)
    return floor, rows


def best_at(rows, nfe, prefix, exclude=()):
    cand = [
        r
        for r in rows
        if r["method"].startswith(prefix)
        and r["method"] not in exclude
        and r["nfe_budget"] == nfe
        and r["nfe"] <= nfe
        and math.isfinite(r["sw2"])
    ]
    return min(cand, key=lambda r: r["sw2"]) if cand else None


def _peer(rows, nfe):
    peers = [q for q in (best_at(rows, nfe, pre) for pre in ("k-diffusion:", "diffusers:")) if q is not None]
    return min(peers, key=lambda r: r["sw2"]) if peers else None


def write(results, path_md, path_json, path_png):
    path_json.write_text(json.dumps(results, indent=2))
    nfes = results["nfes"]
    L = ["# Sampling at a budget: sliced W2 vs NFE on exact Gaussian-mixture denoisers", ""]
    L.append(f"Command: `{results['command']}`  (peers: {results['peers']}; torch {results['torch']})")
    L.append("")
    L.append(
        "Each cell: sliced W2 to a fresh exact sample, and in brackets its ratio to the two-sample floor (two "
        "independent exact samples of the same size). `budget` = `plan_for_budget(N, run_dir=…)` with the tuned "
        "files of this mixture (tuned on other seeds); `budget(rule)` = the built-in rule with no tuned file."
    )
    L.append("")
    L.append("## Summary: targets (budget ≤ 0.6 × best peer at NFE 4 and 5; ≤ 1.2 × floor at NFE 6)")
    L.append("")
    L.append("| problem | NFE | floor | budget | budget(rule) | best peer | budget / peer | budget / floor |")
    L.append("|---|---|---|---|---|---|---|---|")
    for prob, res in results["accuracy"].items():
        rows, floor = res["rows"], res["floor"]
        for n in nfes:
            b = next((r for r in rows if r["method"] == "scorekit:budget" and r["nfe_budget"] == n), None)
            br = next((r for r in rows if r["method"] == "scorekit:budget(rule)" and r["nfe_budget"] == n), None)
            p = _peer(rows, n)
            bcell = f"{b['sw2']:.4f}" if b else "n/a"
            brcell = f"{br['sw2']:.4f}" if br else "n/a"
            pcell = f"{p['method']} {p['sw2']:.4f}" if p else "n/a"
            ratio = f"{b['sw2'] / p['sw2']:.2f}" if b and p else "n/a"
            fr = f"{b['sw2'] / floor:.2f}" if b else "n/a"
            L.append(f"| {prob} | {n} | {floor:.4f} | {bcell} | {brcell} | {pcell} | {ratio} | {fr} |")
    L.append("")
    for prob, res in results["accuracy"].items():
        rows, floor = res["rows"], res["floor"]
        L.append(f"## {prob}: two-sample floor {floor:.4f} (n = {results['num']})")
        L.append("")
        L.append("| method | " + " | ".join(f"NFE {n}" for n in nfes) + " |")
        L.append("|---|" + "---|" * len(nfes))
        names = list(dict.fromkeys(r["method"] for r in rows))
        for name in names:
            cells = []
            for n in nfes:
                r = next((r for r in rows if r["method"] == name and r["nfe_budget"] == n), None)
                if r is None:
                    cells.append("–")
                else:
                    over = "" if r["nfe"] <= n else f" NFE {r['nfe']}"
                    cells.append(f"{r['sw2']:.4f} ({r['sw2'] / floor:.1f}×){over}")
            L.append(f"| {name} | " + " | ".join(cells) + " |")
        L.append("")
    if results.get("tuning"):
        L.append("## Tuning cost and held-out check (mean endpoint distance to the teacher on held-out trajectories)")
        L.append("")
        L.append("| problem | solver | NFE | chosen | held-out tuned | held-out start | seconds |")
        L.append("|---|---|---|---|---|---|---|")
        for prob, items in results["tuning"].items():
            for t in items:
                L.append(
                    f"| {prob} | {t['sampler']} | {t['nfe']} | {t['chosen']} | {t['heldout_tuned']:.4f} | "
                    f"{t['heldout_start']:.4f} | {t['seconds']:.1f} |"
                )
        L.append("")
    path_md.write_text("\n".join(L) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = list(results["accuracy"])
    fig, axes = plt.subplots(1, len(probs), figsize=(5 * len(probs), 4.5), squeeze=False)
    for ax, prob in zip(axes[0], probs):
        res = results["accuracy"][prob]
        rows = res["rows"]
        show = {
            "scorekit:budget": ("C3", "-", 2.5),
            "scorekit:budget(rule)": ("C1", "-", 1.5),
            "scorekit:dpmpp_2m": ("C7", "-", 1.0),
        }
        for name, (c, ls, lw) in show.items():
            pts = sorted((r["nfe_budget"], r["sw2"]) for r in rows if r["method"] == name)
            if pts:
                ax.plot(*zip(*pts), ls, color=c, lw=lw, marker="o", ms=3, label=name)
        for pre, c in (("k-diffusion:", "C0"), ("diffusers:", "C2")):
            pts = [(n, best_at(rows, n, pre)) for n in results["nfes"]]
            pts = [(n, r["sw2"]) for n, r in pts if r is not None]
            if pts:
                ax.plot(*zip(*pts), "--", color=c, marker="s", ms=3, label=f"best {pre.rstrip(':')}")
        ax.axhline(res["floor"], color="k", lw=0.8, label="two-sample floor")
        ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_ylabel("sliced W2")
        ax.set_title(prob)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_png, dpi=110)


# --- digits: a trained score model (the quickstart's), FID in the pinned digits classifier's features -----------
def digits(run_dir: str, nfes, num: int, kd, df, out: Path, teachers: int = 32, sweep_nfes=(5, 10)):
    """FID / precision / recall (scorekit.metrics, digits classifier features) of `num` samples per method: the
    budget choice (`--nfe N`, with and without a tuned schedule), every fixed-step scorekit sampler on every built-in
    schedule (at `sweep_nfes`), and the peers: k-diffusion on the model's σ range (Karras and exponential σ) and
    diffusers' schedulers with every spacing they offer (on their own DDPM-chain σ). The floor is the same statistic
    for `num` held-out test digits."""
    from scorekit.checkpoint import load_denoiser, read_config
    from scorekit.data import DataTransform, load_data
    from scorekit.metrics.evaluate import evaluate_samples
    from scorekit.samplers.tuning import run_fingerprint

    cfg = read_config(run_dir)
    den = load_denoiser(run_dir, ema=True)
    proc = den.process
    smin, smax = float(proc.sigma_min), float(proc.sigma_max)
    shape = tuple(cfg["data"]["shape"])
    transform = DataTransform.from_config(cfg["data"]["transform"])
    torch.set_grad_enabled(False)

    def metrics(x_user):
        r = evaluate_samples(x_user, "digits", metrics="fid,pr", seed=0)
        return {k: r[k] for k in ("fid", "precision", "recall") if k in r}

    test = load_data("digits", split="test")  # model range; the floor: held-out digits against the reference
    floor = metrics(test.transform.to_user(test.data[:num]))
    z = torch.randn(num, *shape, generator=torch.Generator().manual_seed(101))
    rows, tuning = [], []

    def add(label, n, x, group):
        rows.append({"method": label, "nfe": n, "group": group, **metrics(transform.to_user(x))})
        print(f"  digits NFE {n}: {label} fid {rows[-1].get('fid', float('nan')):.3f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        sched_dir = Path(tmp) / "schedules"
        for n in nfes:
            for name in TUNED[:2]:
                plan = plan_for_budget(n, sampler=name, sigma_min=smin, sigma_max=smax)
                t = time.process_time()
                res = tune_schedule(
                    den, name, n, shape=shape, start=plan.sigmas_tensor(), options=plan.options, sigma_min=smin,
                    sigma_max=smax, teachers=teachers, seed=0, model=run_fingerprint(run_dir), dtype=torch.float32,
                )  # fmt: skip
                cpu = time.process_time() - t
                save_schedule(sched_dir / f"{name}-nfe{n}.json", res)
                e = res["endpoint_error"]
                tuning.append({"sampler": name, "nfe": n, "chosen": res["chosen"], "cpu_seconds": cpu,
                               "heldout_tuned": e["heldout_tuned"], "heldout_start": e["heldout_start"]})  # fmt: skip
                print(f"  digits tuned {name} NFE {n}: {res['chosen']} {cpu:.1f} CPU-s", flush=True)
            for label in ("scorekit:budget(rule)", "scorekit:budget"):
                plan = plan_for_budget(
                    n, sigma_min=smin, sigma_max=smax, run_dir=Path(tmp) if label == "scorekit:budget" else None
                )
                sig = plan.sigmas_tensor().to(torch.float32)
                add(label, n, SAMPLERS[plan.sampler].fn(den, float(sig[0]) * z, sig, **plan.options).x, "budget")
            if n in sweep_nfes:
                for name in SCHEDULE_SAMPLERS:
                    spec = SAMPLERS[name]
                    steps = (n + 1) // 2 if name in ("heun", "edm_stochastic") else n
                    for sched in SCHEDULE_NAMES:
                        sig = get_sigmas(sched, steps, process=proc, sigma_min=smin, sigma_max=smax).to(torch.float32)
                        g = torch.Generator().manual_seed(7)
                        x = spec.fn(den, float(sig[0]) * z, sig, process=proc, generator=g).x
                        add(f"scorekit:{name}+{sched}", n, x, "schedules")
            if kd is not None:
                for name in ("euler", "heun", "dpm_2", "lms", "dpmpp_2m"):
                    steps = (n + 1) // 2 if name in ("heun", "dpm_2") else n
                    for sched in ("karras", "exponential"):
                        if sched == "karras":
                            sig = kd.get_sigmas_karras(steps, smin, smax, rho=7.0)
                        else:
                            sig = kd.get_sigmas_exponential(steps, smin, smax)
                        x = getattr(kd, f"sample_{name}")(den, z * sig[0], sig, disable=True)
                        add(f"k-diffusion:{name}+{sched}", n, x, "peer")
            if df is not None:
                for label in DIFFUSERS:
                    for sp, extra in SPACINGS.items():
                        if (label == "DDIM" and sp not in ("", "+leading", "+trailing")) or not diffusers_ok(
                            df, label, extra
                        ):
                            continue
                        g = torch.Generator().manual_seed(7)
                        x = diffusers_run(df, label, n, extra)(den, z.to(torch.float32), g)
                        if torch.isfinite(x).all():
                            add(f"diffusers:{label}{sp}", n, x, "peer")
    res = {"run": str(run_dir), "num": num, "nfes": list(nfes), "floor": floor, "rows": rows, "tuning": tuning}
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    write_digits(res, out, teachers)


def write_digits(res: dict, out: Path, teachers: int) -> None:
    nfes, rows, floor, num = res["nfes"], res["rows"], res["floor"], res["num"]
    L = ["# Digits (quickstart score model): FID / precision / recall in the pinned digits classifier's features", ""]
    cmd = f"--digits {res['run']} --digits-num {num} --nfe {','.join(map(str, nfes))} --teachers {teachers}"
    L.append(f"Command: `PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/samplers.py {cmd}` (1 torch thread)")
    L.append("")
    f = {k: floor.get(k, float("nan")) for k in ("fid", "precision", "recall")}
    L.append(f"Floor ({min(num, 359)} held-out test digits vs the reference): FID {f['fid']:.3f}, precision "
             f"{f['precision']:.3f}, recall {f['recall']:.3f}. FID is biased upward at small N: compare methods with "
             "each other (same N, same prior noise), and with the floor only as an order of magnitude.")  # fmt: skip
    L.append("")

    def best(n, prefix):
        c = [r for r in rows if r["nfe"] == n and r["method"].startswith(prefix) and "fid" in r]
        return min(c, key=lambda r: r["fid"]) if c else None

    L += ["## `--nfe N` against the best peer configuration at the same N", "",
          "| N | scorekit --nfe (rule) | scorekit --nfe (tuned) | best scorekit sampler+schedule | best k-diffusion | "
          "best diffusers | tuned / best peer |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for n in nfes:
        cells = []
        for pre in ("scorekit:budget(rule)", "scorekit:budget", "scorekit:", "k-diffusion:", "diffusers:"):
            if pre == "scorekit:":
                c = [r for r in rows if r["nfe"] == n and r.get("group") == "schedules"]
                b = min(c, key=lambda r: r["fid"]) if c else None
            elif pre == "scorekit:budget":
                b = next((r for r in rows if r["nfe"] == n and r["method"] == pre), None)
            else:
                b = best(n, pre)
            cells.append(f"{b['fid']:.2f} ({b['method'].split(':', 1)[1]})" if b else "–")
        tuned = next((r for r in rows if r["nfe"] == n and r["method"] == "scorekit:budget"), None)
        peers = [b for b in (best(n, "k-diffusion:"), best(n, "diffusers:")) if b]
        ratio = f"{tuned['fid'] / min(p['fid'] for p in peers):.2f}" if tuned and peers else "–"
        L.append(f"| {n} | " + " | ".join(cells) + f" | {ratio} |")
    L.append("")
    L.append("## Every method (FID / precision / recall)")
    L.append("")
    L.append("| method | " + " | ".join(f"NFE {n}" for n in nfes) + " |")
    L.append("|---|" + "---|" * len(nfes))
    for name in dict.fromkeys(r["method"] for r in rows):
        cells = []
        for n in nfes:
            r = next((r for r in rows if r["method"] == name and r["nfe"] == n), None)
            cells.append(f"{r['fid']:.2f} / {r['precision']:.2f} / {r['recall']:.2f}" if r else "–")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("| tuned | NFE | chosen | held-out error tuned / start | CPU seconds |")
    L.append("|---|---|---|---|---|")
    for t in res["tuning"]:
        L.append(f"| {t['sampler']} | {t['nfe']} | {t['chosen']} | {t['heldout_tuned']:.4f} / "
                 f"{t['heldout_start']:.4f} | {t['cpu_seconds']:.1f} |")  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(L) + "\n")
    print(out.with_suffix(".md").read_text())


# --- which built-in schedule suits each existing sampler at few steps -------------------------------------------
SCHEDULE_SAMPLERS = (
    "euler_maruyama", "reverse_diffusion", "ancestral", "ddim", "pf_euler", "heun", "edm_stochastic",
    "dpmpp_2m", "dpmpp_3m", "ipndm", "deis", "unipc",
)  # fmt: skip
SCHEDULE_NAMES = ("karras", "logsnr", "log", "uniform_t")


def schedules_table(num: int, nfes, out: Path, seed: int = 0):
    """Sliced W2 / floor of every fixed-step sampler (defaults) on every built-in schedule, NFE ≤ N, on the first 2-D
    and 16-D mixture; process-space samplers run on the DDPM chain, σ-space ones in σ over the same range."""
    rows = []
    probs = {k: v for k, v in mixtures((seed,)).items()}
    for prob, gmm in probs.items():
        g = torch.Generator().manual_seed(seed + 100)
        ref = gmm.sample(num, g)[0]
        floor = _sw(gmm.sample(num, g)[0], ref)
        z = torch.randn(num, gmm.dim, generator=torch.Generator().manual_seed(seed + 101), dtype=torch.float64)
        for name in SCHEDULE_SAMPLERS:
            spec = SAMPLERS[name]
            proc = None if spec.default_schedule == "karras" else CHAIN
            for n in nfes:
                steps = (n + 1) // 2 if name in ("heun", "edm_stochastic") else n
                for sched in SCHEDULE_NAMES:
                    sig = get_sigmas(sched, steps, process=CHAIN if (proc or sched == "uniform_t") else None,
                                     sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)  # fmt: skip
                    x = spec.fn(gmm.denoiser(), float(sig[0]) * z, sig, process=proc,
                                generator=torch.Generator().manual_seed(seed + 102)).x  # fmt: skip
                    e = _sw(x, ref) if torch.isfinite(x).all() else float("nan")
                    rows.append({"problem": prob, "sampler": name, "nfe": n, "schedule": sched, "ratio": e / floor})
            print(f"  {prob} {name}", flush=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    L = ["# Which built-in σ schedule suits each sampler at few steps (sliced W2 / two-sample floor)", ""]
    L.append(f"Command: `PYTHONPATH=src python benchmarks/samplers.py --schedules --num {num} "
             f"--nfe {','.join(map(str, nfes))}`. Mixtures: {', '.join(probs)}; default options; NFE ≤ N.")  # fmt: skip
    L.append("")
    L.append("| sampler | NFE | " + " | ".join(f"{p}: " + " / ".join(SCHEDULE_NAMES) for p in probs) + " | best |")
    L.append("|---|---|" + "---|" * len(probs) + "---|")
    for name in SCHEDULE_SAMPLERS:
        for n in nfes:
            cells, mean = [], {}
            for prob in probs:
                vals = []
                for sched in SCHEDULE_NAMES:
                    r = next(
                        r
                        for r in rows
                        if (r["problem"], r["sampler"], r["nfe"], r["schedule"]) == (prob, name, n, sched)
                    )
                    v = r["ratio"] if math.isfinite(r["ratio"]) else 1e9
                    mean[sched] = mean.get(sched, 0.0) + v / len(probs)
                    vals.append(f"{v:.2f}" if v < 1000 else ">1000")
                cells.append(" / ".join(vals))
            best = min(mean, key=mean.get)
            L.append(f"| {name} | {n} | " + " | ".join(cells) + f" | {best} |")
    out.with_suffix(".md").write_text("\n".join(L) + "\n")
    print(out.with_suffix(".md").read_text())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=4000, help="samples per method (and reference)")
    ap.add_argument("--nfe", type=str, default=",".join(map(str, NFES)))
    ap.add_argument("--seeds", type=str, default="0,1", help="mixture seeds (each in 2-D and 16-D)")
    ap.add_argument("--teachers", type=int, default=32, help="teacher trajectories per tuning (and as many held out)")
    ap.add_argument("--no-tuning", action="store_true")
    ap.add_argument("--out", type=str, default=str(RESULTS / "samplers"))
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md/.png from an existing .json")
    ap.add_argument("--digits", default=None, metavar="RUN", help="only the digits part, on this run directory")
    ap.add_argument("--digits-num", type=int, default=1000)
    ap.add_argument("--schedules", action="store_true", help="only the sampler × built-in schedule table")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.schedules:
        torch.set_num_threads(1)
        nfes = tuple(int(b) for b in args.nfe.split(","))
        schedules_table(args.num, nfes, RESULTS / "samplers_schedules")
        return
    if args.digits:
        torch.set_num_threads(1)
        nfes = tuple(int(b) for b in args.nfe.split(","))
        kd, df = load_k_diffusion(), load_diffusers()
        digits(args.digits, nfes, args.digits_num, kd, df, RESULTS / "samplers_digits", args.teachers)
        return
    if args.report_only:
        results = json.loads(out.with_suffix(".json").read_text())
        write(results, out.with_suffix(".md"), out.with_suffix(".json"), out.with_suffix(".png"))
        print(out.with_suffix(".md").read_text())
        return
    torch.set_num_threads(1)
    kd, df = load_k_diffusion(), load_diffusers()
    peers = ", ".join(p for p, m in (("k-diffusion", kd), ("diffusers", df)) if m is not None) or "none installed"
    nfes = tuple(int(b) for b in args.nfe.split(","))
    results = {
        "command": "PYTHONPATH=src python benchmarks/samplers.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "peers": peers,
        "num": args.num,
        "nfes": list(nfes),
        "accuracy": {},
        "tuning": {},
        "torch": torch.__version__,
    }
    seeds = tuple(int(s) for s in args.seeds.split(","))
    for prob, gmm in mixtures(seeds).items():
        print(f"{prob}:", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = None
            if not args.no_tuning:
                run_dir = Path(tmp)
                tuned = tune_all(gmm, nfes, run_dir / "schedules", args.teachers, seed=0)
                results["tuning"][prob] = [
                    {
                        "sampler": k[0],
                        "nfe": k[1],
                        "chosen": v["chosen"],
                        "heldout_tuned": v["endpoint_error"]["heldout_tuned"],
                        "heldout_start": v["endpoint_error"]["heldout_start"],
                        "seconds": v["seconds"],
                        "sigmas": v["sigmas"],
                    }
                    for k, v in tuned.items()
                ]
            floor, rows = accuracy(gmm, args.num, nfes, kd, df, run_dir)
        results["accuracy"][prob] = {"floor": floor, "rows": rows}
        out.parent.mkdir(parents=True, exist_ok=True)
        write(results, out.with_suffix(".md"), out.with_suffix(".json"), out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
