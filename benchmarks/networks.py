"""Networks and data: parameter counts and CPU step times of the standard MLP / U-Net configurations, load
times of the data sources, and how closely a DSM-trained MLP reaches the exact Gaussian-mixture denoiser as
training proceeds.

    .venv/bin/python benchmarks/networks.py            # writes benchmarks/results/networks.{md,json,png}
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scorekit.analytic import GaussianMixture
from scorekit.data import load_data
from scorekit.losses import get_objective
from scorekit.models import NetworkDenoiser, build_network
from scorekit.processes import get_process

RESULTS = Path(__file__).resolve().parent / "results"

CONFIGS = {
    "mlp (2-D toys)": ({"arch": "mlp", "dim": 2, "hidden": 256, "depth": 4, "emb_dim": 128}, (2,), 256),
    "unet 8×8 tiny (tests)": (
        {"arch": "unet", "in_channels": 1, "resolution": 8, "model_channels": 16, "channel_mult": [1, 2],
         "num_res_blocks": 1, "attn_resolutions": [4]},
        (1, 8, 8),
        64,
    ),
    "unet 8×8 (digits)": (
        {"arch": "unet", "in_channels": 1, "resolution": 8, "model_channels": 64, "channel_mult": [1, 2],
         "num_res_blocks": 2, "attn_resolutions": [4]},
        (1, 8, 8),
        64,
    ),
    "unet 28×28 (MNIST)": (
        {"arch": "unet", "in_channels": 1, "resolution": 28, "model_channels": 64, "channel_mult": [1, 2, 2],
         "num_res_blocks": 2, "attn_resolutions": [7]},
        (1, 28, 28),
        8,
    ),
    "unet 32×32 (CIFAR-10)": (
        {"arch": "unet", "in_channels": 3, "resolution": 32, "model_channels": 128, "channel_mult": [1, 2, 2, 2],
         "num_res_blocks": 2, "attn_resolutions": [16]},
        (3, 32, 32),
        4,
    ),
}  # fmt: skip


def time_network(cfg, shape, batch, reps):
    torch.manual_seed(0)
    net = build_network(cfg)
    params = sum(p.numel() for p in net.parameters())
    x, c = torch.randn(batch, *shape), torch.rand(batch)
    with torch.no_grad():
        net(x, c)
        t0 = time.perf_counter()
        for _ in range(reps):
            net(x, c)
        fwd = (time.perf_counter() - t0) / reps
    opt = torch.optim.SGD(net.parameters(), lr=1e-6)
    t0 = time.perf_counter()
    for _ in range(reps):
        opt.zero_grad()
        net(x, c).square().mean().backward()
        opt.step()
    step = (time.perf_counter() - t0) / reps
    return {"params": params, "batch": batch, "forward_s": fwd, "train_step_s": step}


def time_data():
    rows = {}
    for spec in ("digits", "moons", "swissroll", "rings", "checkerboard"):
        t0 = time.perf_counter()
        d = load_data(spec)
        rows[spec] = {"n": len(d), "shape": list(d.shape), "seconds": time.perf_counter() - t0}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        imgs = rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8)
        import gzip
        import struct

        raw = struct.pack(">HBB", 0, 8, 3) + struct.pack(">3i", *imgs.shape) + imgs.tobytes()
        (tmp / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw, compresslevel=1))
        t0 = time.perf_counter()
        d = load_data(str(tmp))
        rows["IDX 60000×28×28 (gz, synthetic)"] = {
            "n": len(d),
            "shape": list(d.shape),
            "seconds": time.perf_counter() - t0,
        }
        cif = tmp / "cifar"
        cif.mkdir()
        for i in range(1, 6):
            data = rng.integers(0, 256, (10000, 3072), dtype=np.uint8)
            with open(cif / f"data_batch_{i}", "wb") as f:
                pickle.dump({b"data": data, b"labels": [int(v) for v in rng.integers(0, 10, 10000)]}, f)
        t0 = time.perf_counter()
        d = load_data(str(cif))
        rows["CIFAR-10 batches 50000 (synthetic)"] = {
            "n": len(d),
            "shape": list(d.shape),
            "seconds": time.perf_counter() - t0,
        }
    return rows


def gmm_convergence(checkpoints, seed=0):
    """RMS ‖D_mlp − D_exact‖ at several σ as training (EDM loss, fresh GMM samples each step) proceeds."""
    gmm = GaussianMixture(
        [0.3, 0.5, 0.2], [[-1.5, 0.0], [1.0, 1.0], [0.5, -1.5]], [[0.05, 0.1], [0.1, 0.05], [0.08, 0.08]]
    )
    torch.manual_seed(seed)
    net = build_network({"arch": "mlp", "dim": 2, "hidden": 128, "depth": 3, "emb_dim": 64})
    proc = get_process("edm")
    den = NetworkDenoiser(net, proc, "edm", "log_sigma", sigma_data=1.0, data_shape=(2,))
    obj = get_objective("edm", proc)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    ge = torch.Generator().manual_seed(seed + 1)
    sigmas = (0.1, 0.5, 1.0, 2.0)
    x0 = gmm.sample(4000, ge)[0]
    noisy = {s: x0 + s * torch.randn(x0.shape, generator=ge, dtype=torch.float64) for s in sigmas}
    mean, var = gmm.mean(), gmm.second_moment() - gmm.mean() ** 2

    def errors():
        out = {}
        for s, x in noisy.items():
            exact = gmm.denoise(x, s)
            with torch.no_grad():
                learned = den(x.float(), s).double()
            out[s] = (learned - exact).pow(2).sum(1).mean().sqrt().item()
        return out

    linear = {
        s: ((mean + var / (var + s**2) * (x - mean)) - gmm.denoise(x, s)).pow(2).sum(1).mean().sqrt().item()
        for s, x in noisy.items()
    }
    curve, step = [], 0
    for target in checkpoints:
        while step < target:
            loss = obj(den, gmm.sample(512, g)[0].float(), g).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        curve.append({"steps": step, **{f"sigma={s}": e for s, e in errors().items()}})
    return {"linear_baseline": {f"sigma={s}": e for s, e in linear.items()}, "curve": curve}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 250, 500, 1000, 2000, 4000])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    nets = {name: time_network(cfg, shape, batch, args.reps) for name, (cfg, shape, batch) in CONFIGS.items()}
    data = time_data()
    conv = gmm_convergence(args.steps)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)",
        "networks": nets,
        "data": data,
        "gmm_mlp": conv,
    }

    lines = [f"# Networks and data ({result['machine']})", ""]
    lines += ["Wall-clock times (mean of the repetitions after one warm-up forward); on a machine shared with other"]
    lines += ["jobs they are upper bounds. Reproduce: `.venv/bin/python benchmarks/networks.py`.", ""]
    lines += ["## Networks (CPU, forward and SGD train step)", ""]
    lines += ["| network | params | batch | forward (ms) | train step (ms) |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in nets.items():
        lines.append(
            f"| {name} | {r['params']:,} | {r['batch']} | {1e3 * r['forward_s']:.1f} | {1e3 * r['train_step_s']:.1f} |"
        )
    lines += ["", "## Data loading", "", "| source | samples | shape | seconds |", "| --- | ---: | --- | ---: |"]
    for name, r in data.items():
        lines.append(f"| {name} | {r['n']} | {tuple(r['shape'])} | {r['seconds']:.2f} |")
    keys = [k for k in conv["curve"][0] if k != "steps"]
    lines += ["", "## MLP vs exact GMM denoiser: RMS ‖D_mlp − D_exact‖ (EDM loss, batch 512, Adam 1e-3)", ""]
    lines += ["| steps | " + " | ".join(keys) + " |", "| ---: |" + " ---: |" * len(keys)]
    for row in conv["curve"]:
        lines.append(f"| {row['steps']} | " + " | ".join(f"{row[k]:.4f}" for k in keys) + " |")
    lines.append("| best linear denoiser | " + " | ".join(f"{conv['linear_baseline'][k]:.4f}" for k in keys) + " |")
    table = "\n".join(lines) + "\n"
    print(table)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "networks.md").write_text(table)
    (RESULTS / "networks.json").write_text(json.dumps(result, indent=2) + "\n")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = [max(r["steps"], 1) for r in conv["curve"]]
    for i, k in enumerate(keys):
        ax.plot(steps, [r[k] for r in conv["curve"]], "o-", color=f"C{i}", label=k.replace("sigma", "σ"))
        ax.axhline(conv["linear_baseline"][k], color=f"C{i}", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training steps (0 plotted at 1)")
    ax.set_ylabel("RMS ‖D_mlp − D_exact‖")
    ax.set_title("MLP denoiser vs exact GMM (dotted: best linear)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "networks.png")


if __name__ == "__main__":
    main()
