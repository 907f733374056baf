"""Where should sampling start? The fitted σ_max (`processes.fit_sigma_max`: twice the largest distance among the
data points and the origin) against the DDPM chain's σ_max and smaller starts.

Exact mixtures (the hard 2-D / 16-D mixtures of benchmarks/samplers.py, exact D): sliced W2 of 4000 samples of
DPM-Solver++(2M) on log-SNR steps at NFE 4, 5, 10 and of Heun at 100 steps (converged: what remains is the start's
mismatch, N(0, σ_max²·I) instead of p_σmax) against a fresh exact sample; floor = two exact samples.
Digits (optional, `--digits RUN`): FID of 1000 samples in the pinned digits classifier's features (vs the digits
data set) for DPM-Solver++(2M) on log-SNR steps at NFE 5 and 10.

Run:  PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sigma_range.py [--digits RUN]
Writes benchmarks/results/sigma_range.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from samplers import CHAIN, mixtures  # noqa: E402

from scorekit.metrics import sliced_wasserstein  # noqa: E402
from scorekit.processes import fit_sigma_max  # noqa: E402
from scorekit.samplers import SAMPLERS, get_sigmas  # noqa: E402

RESULTS = HERE / "results"


def swd(a, b):
    return float(sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(5)))


def run_mixtures(n: int) -> list[dict]:
    rows = []
    for name, gmm in mixtures().items():
        den = gmm.denoiser()
        fit = fit_sigma_max(gmm.sample(5000, torch.Generator().manual_seed(0))[0])
        ref = gmm.sample(n, torch.Generator().manual_seed(11))[0]
        floor = swd(gmm.sample(n, torch.Generator().manual_seed(12))[0], ref)
        for label, smax in (("chain", CHAIN.sigma_max), ("fitted", fit), ("fitted/2", fit / 2)):
            row = {"problem": name, "start": label, "sigma_max": smax, "floor": floor}
            for solver, steps, key in (("dpmpp_2m", 4, "nfe4"), ("dpmpp_2m", 5, "nfe5"), ("dpmpp_2m", 10, "nfe10"),
                                       ("heun", 100, "heun100")):  # fmt: skip
                sig = get_sigmas("logsnr", steps, sigma_min=CHAIN.sigma_min, sigma_max=smax)
                z = torch.randn(n, gmm.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
                row[key] = swd(SAMPLERS[solver].fn(den, float(sig[0]) * z, sig).x, ref)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def run_digits(run: str, num: int) -> list[dict]:
    import subprocess
    import tempfile

    from scorekit.checkpoint import read_config
    from scorekit.data import load_data

    cfg = read_config(run)
    fit = fit_sigma_max(load_data(cfg["data"]["spec"]).data)
    trained = float(cfg["process"]["sigma_max"])
    rows = []
    sk = str(Path(sys.executable).with_name("scorekit"))
    with tempfile.TemporaryDirectory() as tmp:
        for label, smax in (("run's σ_max", trained), ("fitted", fit), ("fitted/2", fit / 2), ("fitted/3", fit / 3)):
            row = {"start": label, "sigma_max": round(smax, 3)}
            for steps in (5, 10):
                s, e = f"{tmp}/s.npz", f"{tmp}/e.json"
                subprocess.run([sk, "sample", "--run", run, "--sampler", "dpmpp_2m", "--schedule", "logsnr", "--steps",
                                str(steps), "--sigma-max", str(smax), "--num", str(num), "--seed", "7", "--out", s,
                                "--no-progress"], check=True, capture_output=True)  # fmt: skip
                subprocess.run([sk, "evaluate", "--samples", s, "--data", "digits", "--metrics", "fid", "--no-floor",
                                "--out", e], check=True, capture_output=True)  # fmt: skip
                row[f"fid_nfe{steps}"] = json.loads(Path(e).read_text())["fid"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=4000)
    ap.add_argument("--digits", default=None, help="a trained digits run (e.g. the quickstart's OUT/run)")
    ap.add_argument("--digits-num", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    mix = run_mixtures(args.num)
    dig = run_digits(args.digits, args.digits_num) if args.digits else []
    cmd = "PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sigma_range.py" + (
        f" --digits {args.digits}" if args.digits else ""
    )
    lines = [
        "# Where sampling starts: the fitted σ_max",
        "",
        f"Command: `{cmd}` (1 torch thread, {time.time() - t0:.0f} s wall)",
        "",
        "Fitted σ_max = `processes.fit_sigma_max` = 2 × the largest distance among the data points and the origin "
        "(for a mixture: of 5000 draws). The DDPM chain's σ_max is what benchmarks/samplers.py gives every library.",
        "",
        f"## Exact mixtures: sliced W2 of {args.num} samples (DPM-Solver++(2M), log-SNR steps; Heun 100 steps = the "
        "start's own mismatch)",
        "",
        "| problem | start | σ_max | floor | NFE 4 | NFE 5 | NFE 10 | Heun 100 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in mix:
        lines.append(f"| {r['problem']} | {r['start']} | {r['sigma_max']:.1f} | {r['floor']:.4f} | {r['nfe4']:.4f} | "
                     f"{r['nfe5']:.4f} | {r['nfe10']:.4f} | {r['heun100']:.4f} |")  # fmt: skip
    if dig:
        lines += [
            "",
            f"## Digits: FID of {args.digits_num} samples, pinned digits features (DPM-Solver++(2M), log-SNR steps)",
            "",
            f"Run: `{args.digits}`.",
            "",
            "| start | σ_max | FID NFE 5 | FID NFE 10 |",
            "|---|---:|---:|---:|",
        ]
        for r in dig:
            lines.append(f"| {r['start']} | {r['sigma_max']} | {r['fid_nfe5']:.2f} | {r['fid_nfe10']:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sigma_range.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "sigma_range.json").write_text(json.dumps({"command": cmd, "mixtures": mix, "digits": dig}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
