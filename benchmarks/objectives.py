"""Compare the training objectives: the same small network, the same number of steps, on a 2-D Gaussian mixture
and on the 8×8 digits; sample quality (sliced W2 / digits FID), NLL, and wall time per training step.

    .venv/bin/python benchmarks/objectives.py                    # default size (~10 min on 2 CPU cores)
    .venv/bin/python benchmarks/objectives.py --steps-2d 200 --steps-digits 50 --quick   # smoke run

Every model is trained by the same plain loop (AdamW, gradient clipping, EMA) and sampled by the same sampler
(Heun on the probability-flow ODE, EDM Alg. 1, Karras schedule), except `dsm_single`, which only knows one
noise level and is sampled by Langevin dynamics at that σ followed by one denoising step (Vincent 2011).
Processes: VP SDE for the continuous-time objectives, the discrete DDPM chain (T = 1000) for `ddpm_*`, σ-space
(EDM) for `edm`. NLL: probability-flow ODE (2-D: exact trace; digits: Hutchinson, Rademacher probes, bits/dim
of dequantised test images); for the DDPM models also the variational bound. Writes
benchmarks/results/objectives.{md,json,png}.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from scorekit.analytic import GaussianMixture  # noqa: E402
from scorekit.likelihood import bits_per_dim, ddpm_vlb_nll, dequantize, log_likelihood  # noqa: E402
from scorekit.losses import get_objective  # noqa: E402
from scorekit.metrics.vector import sliced_wasserstein  # noqa: E402
from scorekit.models.parameterization import NetworkDenoiser  # noqa: E402
from scorekit.models.registry import build_network  # noqa: E402
from scorekit.processes import get_process  # noqa: E402
from scorekit.samplers import get_sampler, get_sigmas  # noqa: E402

OBJECTIVE_ORDER = [
    "dsm", "dsm_likelihood", "dsm_single", "ncsn", "ism", "ssm", "ddpm_simple", "ddpm_vlb", "ddpm_hybrid", "edm",
]  # fmt: skip


def ring_mixture() -> GaussianMixture:
    """8 Gaussians on a circle of radius 2 (std 0.2): the 2-D test mixture."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = torch.stack([2 * ang.cos(), 2 * ang.sin()], 1)
    return GaussianMixture(torch.ones(8), means, torch.full((8, 2), 0.04, dtype=torch.float64))


class PaddedNet(nn.Module):
    """A vector network with 2C outputs for learned variances: the MLP of width 2C fed [x, 0] (same capacity)."""

    def __init__(self, config: dict):
        super().__init__()
        self.inner = build_network(config)
        self.pad = int(config["dim"]) // 2

    def forward(self, x, c_noise, class_labels=None):
        return self.inner(torch.cat([x, x.new_zeros(x.shape[0], self.pad)], 1), c_noise, class_labels)


def setup(objective: str, kind: str, shape: tuple, args) -> tuple[NetworkDenoiser, object]:
    """The denoiser (network + process + preconditioning) and objective for one table row."""
    if objective.startswith("ddpm"):
        process, param, cond = get_process("ddpm", num_steps=1000), "eps", "index"
    elif objective == "edm":
        process, param, cond = get_process("edm"), "edm", "log_sigma"
    else:
        process, param, cond = get_process("vp"), "eps", "t999"
    learned = objective == "ddpm_hybrid"
    embedding = "fourier" if cond == "log_sigma" else "positional"
    if kind == "vector":
        d = shape[0]
        cfg = {"arch": "mlp", "dim": d, "hidden": args.hidden, "depth": 3, "emb_dim": 64, "embedding": embedding}
        net = PaddedNet({**cfg, "dim": 2 * d}) if learned else build_network(cfg)
    else:
        cfg = {
            "arch": "unet", "in_channels": shape[0], "resolution": shape[1], "model_channels": args.channels,
            "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "embedding": embedding,
        }  # fmt: skip
        if learned:
            cfg["out_channels"] = 2 * shape[0]
        net = build_network(cfg)
    den = NetworkDenoiser(
        net, process, param, cond, sigma_data=0.5, data_shape=shape, output_channels=shape[0] if learned else None
    )
    options = {}
    if objective == "dsm_single":
        options["sigma"] = args.single_sigma_2d if kind == "vector" else args.single_sigma_digits
    if objective == "ssm":
        options["num_projections"] = 1
    return den, get_objective(objective, process, **options)


def train(den: NetworkDenoiser, objective, data: torch.Tensor, steps: int, batch: int, lr: float, seed: int):
    """Plain loop: AdamW, grad-norm clip 1, EMA 0.995. Returns (EMA denoiser, seconds per step, last losses)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(den.net.parameters(), lr=lr, weight_decay=0.0)
    ema = copy.deepcopy(den).eval().requires_grad_(False)
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, data.shape[0], (batch,), generator=gen)
        loss = objective(den, data[idx], gen).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(den.net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(0.995, (1 + step) / (10 + step))
            for pe, p in zip(ema.net.parameters(), den.net.parameters()):
                pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
    sec = (time.perf_counter() - t0) / max(1, steps)
    return ema, sec, float(np.mean(losses[-max(1, steps // 10) :]))


@torch.no_grad()
def generate(den, objective_name: str, n: int, shape: tuple, args, seed: int) -> tuple[torch.Tensor, float]:
    gen = torch.Generator().manual_seed(seed)
    if objective_name == "dsm_single":
        sigma = args.single_sigma_2d if len(shape) == 1 else args.single_sigma_digits
        x = (1.0 + sigma) * torch.randn(n, *shape, generator=gen)
        sig = torch.full((args.langevin_steps + 1,), sigma, dtype=torch.float64)
        sig[-1] = 0
        out = get_sampler("langevin").fn(den, x, sig, generator=gen, step_scale=0.1)
        return out.x, out.nfe
    smax = min(args.sample_sigma_max, den.sigma_max)
    smin = max(0.002, den.sigma_min)
    sigmas = get_sigmas("karras", args.sample_steps, sigma_min=smin, sigma_max=smax)
    x = smax * torch.randn(n, *shape, generator=gen)
    out = get_sampler("heun").fn(den, x, sigmas)
    return out.x, out.nfe


def run_2d(args, rows: list) -> None:
    gmm = ring_mixture()
    data, _ = gmm.sample(args.train_points, torch.Generator().manual_seed(100))
    data = data.float()
    ref, _ = gmm.sample(args.num_samples, torch.Generator().manual_seed(101))
    test, _ = gmm.sample(args.nll_points, torch.Generator().manual_seed(102))
    true_nll = float(-gmm.log_prob(test).mean())
    ref2, _ = gmm.sample(args.num_samples, torch.Generator().manual_seed(103))
    floor = sliced_wasserstein(ref, ref2, 256, generator=torch.Generator().manual_seed(0))
    oracle = gmm.denoiser(get_process("vp"))
    xs, nfe = generate(oracle, "dsm", args.num_samples, (2,), args, 7)
    rows.append(
        {
            "data": "2-D mixture", "objective": "(exact denoiser)", "process": "vp", "sec_per_step": None,
            "final_loss": None, "sliced_w2": sliced_wasserstein(xs.double(), ref, 256,
                                                                  generator=torch.Generator().manual_seed(0)),
            "nll_nats": float(log_likelihood(oracle, test, divergence="exact").nll_nats.mean()),
            "nll_vlb_nats": None, "sample_nfe": nfe, "true_nll_nats": true_nll, "sw2_floor": floor,
        }
    )  # fmt: skip
    print(f"2-D: true NLL of test points {true_nll:.3f} nats/sample; SW2 data-vs-data floor {floor:.4f}")
    for name in args.objectives:
        den, obj = setup(name, "vector", (2,), args)
        ema, sec, last = train(den, obj, data, args.steps_2d, args.batch_2d, args.lr_2d, seed=1)
        xs, nfe = generate(ema, name, args.num_samples, (2,), args, seed=7)
        sw = sliced_wasserstein(xs.double(), ref, 256, generator=torch.Generator().manual_seed(0))
        nll = float(log_likelihood(ema, test.float(), divergence="exact", rtol=1e-4, atol=1e-4).nll_nats.mean())
        vlb = None
        if name.startswith("ddpm"):
            vlb = float(ddpm_vlb_nll(ema, test.float(), generator=torch.Generator().manual_seed(3)).nll_nats.mean())
        row = {
            "data": "2-D mixture", "objective": name, "process": ema.process.name, "sec_per_step": sec,
            "final_loss": last, "sliced_w2": sw, "nll_nats": nll, "nll_vlb_nats": vlb, "sample_nfe": nfe,
        }  # fmt: skip
        rows.append(row)
        print(_fmt_row(row), flush=True)
        _save(args, rows)
        if args.plot:
            args._scatter[name] = xs.numpy()


def run_digits(args, rows: list) -> None:
    from scorekit.data import load_data
    from scorekit.metrics.features import get_extractor
    from scorekit.metrics.fid import fid_from_features

    train_ds = load_data("digits", split="train")
    test_ds = load_data("digits", split="test")
    shape = train_ds.shape
    dim = math.prod(shape)
    extractor = get_extractor("digits", "image", shape)
    ref_feats = extractor.features(test_ds.user_data())
    train_feats = extractor.features(train_ds.user_data()[: len(test_ds)])
    floor = fid_from_features(train_feats, ref_feats)
    test_user = test_ds.user_data()[: args.nll_images].double()
    x_deq = train_ds.transform.to_model(dequantize(test_user, torch.Generator().manual_seed(5))).float()
    x_disc = train_ds.transform.to_model(torch.round(test_user * 255) / 255).float()
    print(f"digits: FID train-vs-test floor {floor:.3f} (digits extractor)")
    rows.append(
        {
            "data": "digits", "objective": "(train vs test)", "process": None, "sec_per_step": None,
            "final_loss": None, "fid": floor, "bpd": None, "bpd_vlb": None, "sample_nfe": None,
        }
    )  # fmt: skip
    for name in args.objectives:
        if name == "ism" and not args.ism_digits:
            rows.append({"data": "digits", "objective": "ism", "skipped": "exact 64-term trace; use ssm "
                         "(--ism-digits to run it)"})  # fmt: skip
            print("digits ism: skipped (exact trace over 64 dims; pass --ism-digits)")
            continue
        den, obj = setup(name, "image", shape, args)
        ema, sec, last = train(den, obj, train_ds.data, args.steps_digits, args.batch_digits, args.lr_digits, 1)
        xs, nfe = generate(ema, name, args.num_images, shape, args, seed=7)
        fid = fid_from_features(extractor.features(train_ds.transform.to_user(xs)), ref_feats)
        res = log_likelihood(
            ema, x_deq, divergence="hutchinson", probes=1, noise="rademacher", rtol=1e-3, atol=1e-3,
            generator=torch.Generator().manual_seed(6),
        )  # fmt: skip
        bpd = float(bits_per_dim(res.nll_nats.double(), dim, train_ds.transform).mean())
        bpd_vlb = None
        if name.startswith("ddpm"):
            vlb = ddpm_vlb_nll(ema, x_disc, generator=torch.Generator().manual_seed(3), clip_denoised=True)
            bpd_vlb = float(bits_per_dim(vlb.nll_nats, dim, dequantize=False).mean())
        row = {
            "data": "digits", "objective": name, "process": ema.process.name, "sec_per_step": sec,
            "final_loss": last, "fid": fid, "bpd": bpd, "bpd_vlb": bpd_vlb, "sample_nfe": nfe, "ode_nfe": res.nfe,
        }  # fmt: skip
        rows.append(row)
        print(_fmt_row(row), flush=True)
        _save(args, rows)
        if args.plot:
            args._digits[name] = train_ds.transform.to_user(xs[:16]).numpy()


def _f(v, spec=".4f"):
    return "—" if v is None else format(v, spec)


def interleaved_timing(args) -> dict:
    """Median seconds per training step of every objective, measured round-robin (rounds × a few steps each)
    so that a changing machine load affects all objectives alike."""
    from scorekit.data import load_data

    sets = {}
    if "2d" in args.data:
        data2d = ring_mixture().sample(4096, torch.Generator().manual_seed(100))[0].float()
        sets["2-D mixture"] = (data2d, (2,), "vector", args.batch_2d, args.lr_2d, 20)
    if "digits" in args.data:
        digits = load_data("digits", split="train").data
        sets["digits"] = (digits, tuple(digits.shape[1:]), "image", args.batch_digits, args.lr_digits, 4)
    result = {}
    for label, (data, shape, kind, batch, lr, k) in sets.items():
        names = [n for n in args.objectives if not (n == "ism" and kind == "image" and not args.ism_digits)]
        models = {n: setup(n, kind, shape, args) for n in names}
        times = {n: [] for n in names}
        train(*models[names[0]], data, 2, batch, lr, seed=0)  # warm-up
        for _ in range(args.timing_rounds):
            for n in names:
                _, sec, _ = train(*models[n], data, k, batch, lr, seed=0)
                times[n].append(sec)
        result[label] = {n: float(np.median(v)) for n, v in times.items()}
        print(label, {n: round(v, 4) for n, v in result[label].items()}, flush=True)
    return result


def _fmt_row(r: dict) -> str:
    if "skipped" in r:
        return f"| {r['data']} | {r['objective']} | skipped: {r['skipped']} | | | | |"
    if r["data"] == "digits":
        return (
            f"| digits | {r['objective']} | {r['process'] or '—'} | {_f(r['sec_per_step'], '.4f')} | "
            f"FID {_f(r['fid'], '.3f')} | {_f(r['bpd'], '.3f')} bpd (ODE) / {_f(r['bpd_vlb'], '.3f')} (VLB) | "
            f"{_f(r['sample_nfe'], '.0f')} |"
        )
    return (
        f"| 2-D mixture | {r['objective']} | {r['process']} | {_f(r['sec_per_step'], '.4f')} | "
        f"SW2 {_f(r['sliced_w2'])} | {_f(r['nll_nats'], '.3f')} nats (ODE) / {_f(r['nll_vlb_nats'], '.3f')} (VLB) | "
        f"{_f(r['sample_nfe'], '.0f')} |"
    )


HEADER = (
    "| data | objective | process | s/step | sample quality | NLL | sample NFE |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objectives", default=",".join(OBJECTIVE_ORDER))
    p.add_argument("--data", default="2d,digits", help="2d, digits, or both")
    p.add_argument("--steps-2d", type=int, default=1000)
    p.add_argument("--steps-digits", type=int, default=300)
    p.add_argument("--batch-2d", type=int, default=256)
    p.add_argument("--batch-digits", type=int, default=64)
    p.add_argument("--lr-2d", type=float, default=2e-3)
    p.add_argument("--lr-digits", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--train-points", type=int, default=20000)
    p.add_argument("--num-samples", type=int, default=2000, help="2-D samples for sliced W2")
    p.add_argument("--num-images", type=int, default=500, help="digit samples for FID")
    p.add_argument("--nll-points", type=int, default=256)
    p.add_argument("--nll-images", type=int, default=48)
    p.add_argument("--sample-steps", type=int, default=30, help="Heun steps (NFE = 2N - 1)")
    p.add_argument("--langevin-steps", type=int, default=200)
    p.add_argument("--sample-sigma-max", type=float, default=20.0, help="σ where Heun starts (prior N(0, σ²))")
    p.add_argument("--single-sigma-2d", type=float, default=0.3)
    p.add_argument("--single-sigma-digits", type=float, default=0.3)
    p.add_argument("--ism-digits", action="store_true", help="also train ISM on digits (64 backward rows/step)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "objectives"))
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sample counts")
    p.add_argument("--no-plot", dest="plot", action="store_false")
    p.add_argument("--timing-only", action="store_true", help="only the interleaved s/step measurement")
    p.add_argument("--timing-rounds", type=int, default=5)
    p.add_argument("--timing", default=None, metavar="JSON", help="with --render: add the interleaved s/step column")
    p.add_argument("--render", default=None, metavar="JSON", help="only rewrite the markdown table from a results JSON")
    args = p.parse_args(argv)
    if args.render:  # one JSON, or several (comma-separated) merged into one table written to --out
        out = args.out
        parts = [json.loads(Path(f).read_text()) for f in args.render.split(",")]
        timing_path = args.timing
        for k, v in parts[0]["settings"].items():
            setattr(args, k, v)
        for part in parts[1:]:  # a digits-only part describes the digits settings
            if part["settings"].get("data") == "digits":
                for k in ("steps_digits", "batch_digits", "lr_digits", "channels", "num_images", "nll_images"):
                    setattr(args, k, part["settings"][k])
        args.timing = timing_path
        if len(parts) > 1:
            args.out = out
        rows = [r for part in parts for r in part["rows"]]
        commands = [" ".join(part.get("argv", [])) for part in parts]
        _write_markdown(args, rows, sum(part["total_seconds"] for part in parts), commands)
        return 0
    torch.set_num_threads(args.threads)
    args.objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if args.quick:
        args.num_samples, args.num_images, args.nll_points, args.nll_images = 300, 100, 32, 16
        args.langevin_steps = 50
    args._scatter, args._digits = {}, {}
    args._argv = argv if argv is not None else sys.argv[1:]
    rows: list = []
    t0 = time.time()
    args._t0 = t0
    if args.timing_only:
        timing = interleaved_timing(args)
        out = Path(args.out).with_suffix(".json")
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"argv": args._argv, "timing_rounds": args.timing_rounds, "threads": args.threads,
                  "median_sec_per_step": timing}  # fmt: skip
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {out}")
        return 0
    print(HEADER)
    if "2d" in args.data:
        run_2d(args, rows)
    if "digits" in args.data:
        run_digits(args, rows)
    total = _save(args, rows)
    out = Path(args.out)
    if args.plot:
        _plot(args, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.md')} and .json ({total / 60:.1f} min)")
    return 0


def _save(args, rows: list) -> float:
    """Write the JSON and markdown so far (after every row, so a long run leaves its finished rows)."""
    total = time.time() - args._t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    record = {"settings": settings, "total_seconds": total, "argv": args._argv, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    _write_markdown(args, rows, total, [" ".join(args._argv)])
    return total


def _write_markdown(args, rows: list, total: float, commands: list) -> None:
    out = Path(args.out)
    oracle = next((r for r in rows if r.get("objective") == "(exact denoiser)"), None)
    ref = ""
    if oracle is not None and "true_nll_nats" in oracle:
        ref = (
            f" Reference: true NLL of the test points {oracle['true_nll_nats']:.3f} nats; sliced W2 between two "
            f"data draws {oracle['sw2_floor']:.4f}."
        )
    lines = [
        "# Training objectives compared",
        "",
        "Command: "
        + " and ".join(f"`.venv/bin/python benchmarks/objectives.py {c}`".replace(" `", "`") for c in commands)
        + f" (total {total / 60:.1f} min, {args.threads} torch thread(s), CPU shared with other jobs).",
        "",
        f"2-D: 8-Gaussian ring, MLP (hidden {args.hidden}, depth 3), {args.steps_2d} steps × batch {args.batch_2d}; "
        f"sliced W2 of {args.num_samples} samples vs fresh data; NLL of {args.nll_points} test points "
        "(nats per sample, PF-ODE exact trace; VLB for DDPM models)." + ref,
        f"Digits: U-Net ({args.channels} ch, mult [1, 2]), {args.steps_digits} steps × batch {args.batch_digits}; "
        f"FID (pinned digits classifier features) of {args.num_images} samples vs the test split; bits/dim of "
        f"{args.nll_images} dequantised test images (PF-ODE, 1 Rademacher probe, tol 1e-3; VLB: discretised decoder).",
        f"Sampling: Heun {args.sample_steps} steps (Karras σ from {args.sample_sigma_max:g}), "
        f"dsm_single: {args.langevin_steps} Langevin steps at its "
        "σ + one denoising step. s/step: wall time per training step.",
        "",
        HEADER,
    ]
    timing = None
    if getattr(args, "timing", None):
        timing = json.loads(Path(args.timing).read_text())["median_sec_per_step"]
        lines[-1] = (
            HEADER.replace("| sample NFE |", "| sample NFE | s/step, interleaved |")
            .replace("| --- |\n", "| --- |\n", 1)
            .replace("| --- | --- | --- | --- | --- | --- | --- |", "| --- | --- | --- | --- | --- | --- | --- | --- |")
        )
        lines.insert(-2, "s/step: measured during that row's training run (machine load varied over the run); "
                     "'interleaved': median of rounds in which every objective trains a few steps in turn "
                     f"(`--timing-only`, {args.timing}).")  # fmt: skip
    for r in rows:
        line = _fmt_row(r)
        if timing is not None:
            t = timing.get(r.get("data"), {}).get(r.get("objective"))
            line += f" {_f(t, '.4f')} |"
        lines.append(line)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _plot(args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in args.objectives if n in args._scatter or n in args._digits]
    if not names:
        return
    fig, axes = plt.subplots(2, len(names), figsize=(2.0 * len(names), 4.2), squeeze=False)
    for j, n in enumerate(names):
        ax = axes[0, j]
        if n in args._scatter:
            pts = args._scatter[n]
            ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
            ax.set_xlim(-3.5, 3.5)
            ax.set_ylim(-3.5, 3.5)
        ax.set_title(n, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax = axes[1, j]
        if n in args._digits:
            imgs = args._digits[n][:16, 0]
            grid = np.concatenate([np.concatenate(list(imgs[r * 4 : r * 4 + 4]), 1) for r in range(4)], 0)
            ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
