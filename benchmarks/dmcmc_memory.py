"""Peak memory of `scorekit sample --dmcmc dlg` as --num grows (outputs are streamed round by round into the .npz,
so memory should be set by the chain count, not by the number of samples).

A 256-D, 4-component Gaussian mixture with the exact noise posterior; 1000 chains, 5-step start-up, Heun finisher
(3 steps). Each run is a fresh process; peak RSS from getrusage of the child.

    python benchmarks/dmcmc_memory.py            # 10k, 100k and 300k samples, a few minutes on one CPU core

Writes benchmarks/results/dmcmc_memory.{json,md}.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from scaling import BIN, RESULTS, peak_rss_mb  # noqa: E402

from scorekit.analytic import GaussianMixture  # noqa: E402

NUMS = (10_000, 100_000, 300_000)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        g = torch.Generator().manual_seed(0)
        gmm = GaussianMixture(
            torch.ones(4),
            2 * torch.randn(4, 256, generator=g, dtype=torch.float64),
            torch.full((4, 256), 0.1, dtype=torch.float64),
        )
        spec = tmp / "g256.json"
        spec.write_text(json.dumps(gmm.to_spec()))
        for n in NUMS:
            cmd = [str(BIN / "scorekit"), "sample", "--model", f"gmm:{spec}", "--dmcmc", "dlg"]
            cmd += ["--noise-posterior", "exact", "--sampler", "heun", "--steps", "3", "--dlg-chains", "1000"]
            cmd += ["--dlg-burn-in", "0", "--dlg-init-steps", "5", "--num", str(n)]
            cmd += ["--out", str(tmp / f"d{n}.npz"), "--no-progress"]
            mb, secs = peak_rss_mb(cmd)
            out_mb = n * 256 * 4 / 2**20
            rows.append({"num": n, "peak_rss_mb": mb, "seconds": secs, "samples_array_mb": out_mb})
            print(f"sample --dmcmc dlg --num {n}: peak RSS {mb:.1f} MB ({out_mb:.0f} MB of samples), {secs:.1f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dmcmc_memory.json").write_text(json.dumps(rows, indent=1))
    md = [
        "# `sample --dmcmc dlg` peak memory vs --num",
        "",
        "Command: `python benchmarks/dmcmc_memory.py` (256-D mixture, exact posterior, 1000 chains, heun 3 steps; "
        "OMP_NUM_THREADS=1).",
        "",
        "| --num | samples array (MB) | peak RSS (MB) | seconds |",
        "|---|---|---|---|",
    ]
    md += [
        f"| {r['num']:,} | {r['samples_array_mb']:.0f} | {r['peak_rss_mb']:.1f} | {r['seconds']:.1f} |" for r in rows
    ]
    (RESULTS / "dmcmc_memory.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
