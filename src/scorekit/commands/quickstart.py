"""`scorekit quickstart`: the main job on the built-in digits — train a score model, sample, show a grid, train a
noise-level classifier and compare plain DPM-Solver++(2M) with Denoising Langevin Gibbs at equal cost (digits FID)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from ..dmcmc import DLGConfig, NoiseLevelEstimator, TrainedNoiseClassifier, estimator_cost, plan_dlg, sample_dlg
from ..dmcmc.noise_training import train_noise_classifier_run

# The grid's sampler: the reverse SDE (Euler–Maruyama, 100 steps). On the quickstart's model its samples are closer
# to real digits than the probability-flow ODE's (its noise corrects the score's errors, as in Karras et al. 2022
# §4): precision 0.857 vs Heun-18's 0.765 against real held-out digits' 0.903 (quickstart_quality.md). 2500
# training steps keep the whole job under 6 CPU-minutes on a 2-core CPU (quickstart.md).
GRID_SAMPLER, GRID_STEPS = "euler_maruyama", 100
DEFAULT_STEPS = 2500

NAME = "quickstart"
HELP = (
    "train on the built-in 8x8 digits, sample, and compare DPM-Solver++(2M) with DLG at equal cost (minutes on a CPU)"
)


def add_arguments(p):
    p.add_argument("--out", default="scorekit-quickstart", help="output folder (default scorekit-quickstart)")
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"score-model training steps (default {DEFAULT_STEPS})"
    )
    p.add_argument("--classifier-steps", type=int, default=1500, help="noise-classifier training steps")
    p.add_argument("--num", type=int, default=1000, help="samples per method for the comparison (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")


def quickstart_config(steps: int, seed: int) -> dict:
    from ..training import default_config

    cfg = default_config("digits", "ve", steps=steps, seed=seed, batch_size=64, lr=1e-3, warmup=200)
    cfg["network"].update({"model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4]})
    # EMA: the training default (power-function EMA, σ_rel 0.10); objective: the default EDM log-normal σ draw
    # with P_mean from the digits' σ_data (run_config.default_objective_options).
    cfg["training"].update({"checkpoint_every": 1000, "log_every": 100})
    return cfg


def run(args) -> int:
    from ..outputs import check_output_dir, new_output_dir

    for flag, v, low in (
        ("--steps", args.steps, 1),
        ("--classifier-steps", args.classifier_steps, 1),
        ("--num", args.num, 2),
    ):
        if v < low:
            raise ValueError(f"{flag} must be >= {low}, got {v}")
    check_output_dir(args.out, "--out")  # nothing is created before the flags are known to be good
    with new_output_dir(args.out, keep_if_files=True):
        return _run(args)


def _run(args) -> int:
    from ..checkpoint import load_denoiser, write_json_atomic
    from ..data import DataTransform, load_data, save_image_grid
    from ..distributed import resolve_device
    from ..sampling import generate
    from ..training import train

    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. score model
    if (run_dir / "model.safetensors").exists():
        print(f"[1/4] reusing the trained model in {run_dir}")
    else:
        print(f"[1/4] training a score model on digits ({args.steps} steps) → {run_dir}")
        train(quickstart_config(args.steps, args.seed), run_dir, device=device, progress=not args.no_progress)
    timings["train_score_model_s"] = time.perf_counter() - t0

    # 2. samples + grid
    t1 = time.perf_counter()
    den = load_denoiser(run_dir, device=device)
    transform = DataTransform.from_config(json.loads((run_dir / "config.json").read_text())["data"]["transform"])
    res = generate(den, GRID_SAMPLER, GRID_STEPS, 100, batch_size=100, seed=args.seed, device=device)
    grid = out / "samples.png"
    save_image_grid(grid, transform.to_user(res.samples), nrow=10)
    _save_npz(out / "samples.npz", transform.to_user(res.samples), res.nfe, run_dir, GRID_SAMPLER, GRID_STEPS,
              args.seed)  # fmt: skip
    timings["sample_grid_s"] = time.perf_counter() - t1
    print(f"[2/4] 100 samples with {GRID_SAMPLER} ({GRID_STEPS} steps, {res.nfe:.0f} NFE) → {grid}")

    # 3 + 4. noise classifier and plain dpmpp_2m vs DLG at equal cost
    summary = {"run": str(run_dir), "grid": str(grid), "grid_sampler": GRID_SAMPLER, "grid_nfe": res.nfe}
    if True:
        t2 = time.perf_counter()
        data = load_data("digits")
        table = quickstart_comparison(
            run_dir,
            out,
            data=data,
            num=args.num,
            classifier_steps=args.classifier_steps,
            seed=args.seed,
            device=device,
            progress=not args.no_progress,
        )
        timings["dmcmc_comparison_s"] = time.perf_counter() - t2
        summary["comparison"] = table
        if args.no_progress:  # with progress on, the comparison prints its own table
            print("[4/4] plain dpmpp_2m vs DLG at equal cost (FID in the pinned digits classifier's features):")
            print(f"{'method':<10} {'steps':>5} {'NFE':>6} {'clf evals':>9} {'FID':>9}")
            for row in table:
                print(
                    f"{row['method']:<10} {row['steps']:>5} {row['nfe']:>6.1f} {row['classifier_evals']:>9.1f} "
                    f"{row['fid_digits']:>9.2f}"
                )
        print(f"side-by-side grid: {out / 'heun_vs_dlg.png'}")
    timings["total_s"] = time.perf_counter() - t0
    summary["timings"] = timings
    from ..provenance import attach_to_json, provenance

    rec = provenance(model=run_dir, steps=args.steps, classifier_steps=args.classifier_steps, num=args.num,
                     seed=args.seed) | {"wall_s": round(timings["total_s"], 3)}  # fmt: skip
    write_json_atomic(out / "summary.json", attach_to_json(summary, rec))
    print(f"done in {timings['total_s'] / 60:.1f} min; summary in {out / 'summary.json'}")
    return 0


def digits_fid(samples_user: Tensor, reference_user: Tensor, device="cpu") -> float:
    """FID in the feature space of scorekit's pinned digits classifier (user-range [0, 1] images)."""
    from ..metrics.features import DigitsExtractor
    from ..metrics.fid import fid_from_features

    ext = DigitsExtractor(device=device)
    return float(fid_from_features(ext.features(samples_user.float()), ext.features(reference_user.float())))


def _save_npz(path: Path, samples_user: Tensor, nfe: float, run_dir, method: str, steps: int, seed: int, **extra):
    """A quickstart sample file like `scorekit sample`'s (samples, nfe, provenance), so `scorekit evaluate` can
    score it again."""
    from ..provenance import provenance
    from ..sampling import save_samples_npz

    rec = provenance(model=run_dir, sampler=method, steps=steps, seed=seed, num=len(samples_user), **extra)
    save_samples_npz(path, samples_user, nfe, provenance=rec)


def _with_provenance(obj: dict, run_dir, **settings) -> dict:
    from ..provenance import attach_to_json, provenance

    return attach_to_json(obj, provenance(model=run_dir, **settings))


def _save_comparison(out: Path, rows: list[dict], transform, run_dir, *, seed: int, dlg: dict) -> None:
    """OUT/samples_<method>.npz for every row and OUT/heun_vs_dlg.png, each panel titled method · NFE · FID."""
    from ..plots import panel_title, save_labelled_panels

    panels = []
    for r in rows:
        x = transform.to_user(r["samples"])
        settings = {"dmcmc": dlg} if r["method"].startswith("dlg") else {}
        name = "samples_" + r["method"].replace("+", "_") + "_comparison.npz"
        _save_npz(out / name, x, r["nfe"], run_dir, r["method"], r["steps"], seed, **settings)
        panels.append((panel_title(r["method"], r["nfe"], FID=r.get("metric")), x[:50]))
    save_labelled_panels(out / "heun_vs_dlg.png", panels, nrow=10, suptitle="digits FID (pinned classifier features)")


# the budget of the quickstart's DLG run (denoiser evaluations per sample, the classifier's cost counted)
QUICKSTART_NFE = 10


def quickstart_comparison(
    run_dir, out, *, data, num=1000, classifier_steps=1500, seed=0, device="cpu", progress=True, config=None
) -> list[dict]:
    """Quickstart's steps 3–4: train the noise classifier on the run's data, then DLG with scorekit's defaults for
    a budget of QUICKSTART_NFE (`plan_dlg`, the classifier's cost counted) against plain dpmpp_2m (logSNR) at equal
    cost, with the digits FID of each. Writes OUT/noise_classifier/, OUT/heun_vs_dlg.png (left: plain, right:
    DLG; the name is kept for old scripts) and OUT/dmcmc_comparison.{json,md}. Returns the table rows."""
    import json

    from ..checkpoint import load_denoiser, write_json_atomic
    from ..data import DataTransform

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clf_dir = out / "noise_classifier"

    def log(rec):
        if progress and "loss" in rec and rec["step"] % 500 == 0:
            print(f"  noise classifier step {rec['step']}: loss {rec['loss']:.3f}", flush=True)

    resume = (clf_dir / "model.safetensors").exists()  # a rerun reuses (and re-evaluates) a finished classifier
    clf_cfg = train_noise_classifier_run(
        run_dir, clf_dir, steps=classifier_steps, seed=seed, device=device, log=log, resume=resume
    )
    acc = clf_cfg["accuracy"]
    print(  # a step's one-line summary, like [1/4], [2/4] and [4/4], also without progress output
        f"[3/4] noise classifier → {clf_dir}: ±20-level accuracy {acc['within_20']:.3f} "
        f"(chance {acc['chance_within_20']:.3f}), exact {acc['exact']:.3f}"
    )
    den = load_denoiser(run_dir, device=device)
    est = TrainedNoiseClassifier(clf_dir, device=device)
    run_cfg = json.loads((Path(run_dir) / "config.json").read_text())
    transform = DataTransform.from_config(run_cfg["data"]["transform"])
    ref_user = data.user_data() if hasattr(data, "user_data") else transform.to_user(data)
    cfg = config or plan_dlg(QUICKSTART_NFE, int(num), classifier_cost=estimator_cost(est, den)["relative_cost"]).config
    rows = compare_heun_vs_dlg(
        den,
        est,
        transform.to_model(ref_user),
        num=int(num),
        generator=torch.Generator(device=device).manual_seed(int(seed)),
        config=cfg,
        sampler="dpmpp_2m",
        plain_schedule="logsnr",
        metric=lambda a, b: digits_fid(transform.to_user(a), transform.to_user(b), device=device),
        device=device,
    )
    _save_comparison(out, rows, transform, run_dir, seed=seed, dlg=asdict(cfg))
    table = [{k: v for k, v in r.items() if k != "samples"} | {"fid_digits": r["metric"]} for r in rows]
    for r in table:
        r.pop("metric")
    md = ["| method | steps | NFE / sample | classifier evals / sample | digits FID |", "|---|---|---|---|---|"]
    md += [
        f"| {r['method']} | {r['steps']} | {r['nfe']:.2f} | {r['classifier_evals']:.2f} | {r['fid_digits']:.3f} |"
        for r in table
    ]
    write_json_atomic(out / "dmcmc_comparison.json", _with_provenance(
        {"rows": table, "dlg_config": asdict(cfg), "classifier": acc}, run_dir, seed=seed, num=num))  # fmt: skip
    (out / "dmcmc_comparison.md").write_text("\n".join(md) + "\n")
    if progress:
        print("[4/4] dpmpp_2m vs DLG at equal cost (digits FID, lower is better):\n" + "\n".join(md))
    return table


def compare_heun_vs_dlg(
    denoiser,
    estimator: NoiseLevelEstimator,
    reference: Tensor,
    *,
    num: int,
    generator: torch.Generator | None = None,
    config: DLGConfig | None = None,
    metric=None,
    sampler: str = "heun",
    device="cpu",
    plain_schedule: str | None = None,
) -> list[dict]:
    """DLG (`config`, default DLGConfig with `sampler` as finisher) against plain `sampler` from σ_max with the
    fewest steps whose NFE reaches DLG's amortised NFE plus the classifier's cost in denoiser evaluations.
    Rows {method, steps, nfe, classifier_evals, metric, samples}; `metric` defaults to sliced W."""
    from ..metrics.vector import sliced_wasserstein
    from ..samplers import Schedule, get_sampler

    gen = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    cfg = config or DLGConfig(finisher=sampler)
    metric = metric or (lambda a, b: sliced_wasserstein(a.flatten(1), b.flatten(1)))
    res = sample_dlg(denoiser, estimator, num, cfg, generator=gen, device=device)
    spec = get_sampler(sampler)
    steps = 1
    cost = res.nfe_per_sample + res.info["classifier_denoiser_equivalent_nfe"]
    while spec.nfe is not None and spec.nfe(steps) < cost - 1e-9 and steps < 1000:
        steps += 1
    process = denoiser.process
    sigmas = Schedule(plain_schedule).table(steps, default=spec.default_schedule, process=process, model=denoiser)
    x = float(sigmas[0]) * torch.randn((num, *denoiser.data_shape), generator=gen, device=device)
    plain = spec.fn(denoiser, x, sigmas.to(x.device, x.dtype), process=process, generator=gen)
    ref = reference.float().cpu()
    rows = [(sampler, steps, float(plain.nfe), 0.0, plain.x.cpu())]
    rows.append(
        (f"dlg+{cfg.finisher}", cfg.finisher_steps, res.nfe_per_sample, res.classifier_evals_per_sample, res.samples)
    )
    keys = ("method", "steps", "nfe", "classifier_evals", "samples")
    return [dict(zip(keys, r)) | {"metric": float(metric(r[4], ref))} for r in rows]
