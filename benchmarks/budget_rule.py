"""Which solver and spacing `--nfe N` takes when no schedule is tuned (the built-in rule), chosen across families.

The candidates are the deterministic one-evaluation-per-step solvers (they can also be tuned) on the built-in spacings.
Three families, each scored by its own error relative to the best candidate in each (problem, NFE) cell, geometric
mean over the family's cells; the rule is the candidate with the lowest mean over the families:
- mixtures: `results/samplers_schedules.json` (sliced W2 / floor, 2-D and 16-D exact mixtures, NFE 4, 6, 10);
- digits: `results/samplers_digits.json` (FID of the quickstart model, NFE 5, 10);
- fashion: `results/budget_rule_fashion.json` (FID in the pinned Fashion-MNIST features of the CPU-preset model,
  NFE 5, 10; made by `--fashion RUN`, same prior noise for every candidate, random class per sample).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/budget_rule.py [--fashion RUN --fashion-num 500]

Writes `results/budget_rule.{md,json}`; `tests/test_budget_rule.py` checks `samplers.budget.BUDGET_RULE` against it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SOLVERS = ("dpmpp_2m", "dpmpp_3m", "ipndm", "unipc", "deis")
SPACINGS = ("karras", "logsnr", "log", "uniform_t")


def measure_fashion(run: str, num: int, nfes=(5, 10)) -> dict:
    import torch

    from scorekit.checkpoint import load_denoiser, read_config
    from scorekit.data import DataTransform
    from scorekit.metrics.evaluate import evaluate_samples
    from scorekit.samplers import get_sampler, get_sigmas

    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    den = load_denoiser(run)
    cfg = read_config(run)
    tf = DataTransform.from_config(cfg["data"]["transform"])
    proc = den.process
    z = torch.randn(num, *den.data_shape, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, den.num_classes, (num,), generator=torch.Generator().manual_seed(2))
    rows = []
    for n in nfes:
        for name in SOLVERS:
            for sp in ("karras", "logsnr"):
                t = time.perf_counter()
                sig = get_sigmas(sp, n, process=proc, sigma_min=proc.sigma_min, sigma_max=proc.sigma_max).float()
                x = torch.cat([get_sampler(name).fn(den, float(sig[0]) * zb, sig, class_labels=lb).x
                               for zb, lb in zip(z.split(250), labels.split(250))])  # fmt: skip
                r = evaluate_samples(tf.to_user(x), "fashion-mnist", split="test", metrics="fid", seed=0)
                rows.append({"sampler": name, "schedule": sp, "nfe": n, "fid": r["fid"],
                             "seconds": time.perf_counter() - t})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    out = {"run": run, "num": num, "rows": rows, "command": " ".join(sys.argv)}
    (RESULTS / "budget_rule_fashion.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def families() -> dict:
    """{family: {(problem, nfe): {(solver, spacing): error}}}."""
    fam: dict = defaultdict(lambda: defaultdict(dict))
    for r in json.loads((RESULTS / "samplers_schedules.json").read_text()):
        if r["sampler"] in SOLVERS:
            fam["mixtures"][(r["problem"], r["nfe"])][(r["sampler"], r["schedule"])] = r["ratio"]
    for r in json.loads((RESULTS / "samplers_digits.json").read_text())["rows"]:
        if r.get("group") == "schedules" and "fid" in r:
            name, sp = r["method"].split(":", 1)[1].split("+")
            if name in SOLVERS:
                fam["digits"][("digits", r["nfe"])][(name, sp)] = r["fid"]
    path = RESULTS / "budget_rule_fashion.json"
    if path.is_file():
        for r in json.loads(path.read_text())["rows"]:
            fam["fashion"][("fashion", r["nfe"])][(r["sampler"], r["schedule"])] = r["fid"]
    return fam


def choose(fam: dict) -> tuple[tuple[str, str], dict]:
    """Candidates measured in every cell of every family; the lowest mean over families of the geometric-mean
    error relative to each cell's best candidate."""
    cells = [c for f in fam.values() for c in f.values()]
    common = set.intersection(*(set(c) for c in cells))
    score = {}
    for cand in sorted(common):
        per = []
        for f in fam.values():
            logs = [math.log(c[cand] / min(c[k] for k in common)) for c in f.values()]
            per.append(math.exp(sum(logs) / len(logs)))
        score[cand] = {"families": dict(zip(fam, per)), "mean": sum(per) / len(per)}
    best = min(score, key=lambda k: score[k]["mean"])
    return best, score


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fashion", default=None, metavar="RUN", help="(re)measure the Fashion-MNIST family on RUN")
    ap.add_argument("--fashion-num", type=int, default=500)
    args = ap.parse_args(argv)
    if args.fashion:
        measure_fashion(args.fashion, args.fashion_num)
    fam = families()
    best, score = choose(fam)
    out = {"rule_for_nfe_4_and_more": {"sampler": best[0], "schedule": best[1]},
           "scores": {f"{k[0]}+{k[1]}": v for k, v in score.items()}, "families": sorted(fam)}  # fmt: skip
    (RESULTS / "budget_rule.json").write_text(json.dumps(out, indent=1) + "\n")
    names = sorted(fam)
    L = [
        "# The built-in `--nfe` rule, chosen across problem families",
        "",
        "Command: `PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/budget_rule.py "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "` (1 torch thread). Inputs: `samplers_schedules.json` (mixtures), `samplers_digits.json` (digits), "
        "`budget_rule_fashion.json` (Fashion-MNIST).",
        "",
        "Each entry: geometric mean over the family's (problem, NFE) cells of the candidate's error divided by the "
        "best candidate's error in that cell (1.00 = best everywhere); `mean` averages the families, so two image "
        "models and the mixtures weigh alike. Candidates: deterministic one-evaluation-per-step solvers on the "
        "built-in "
        "spacings measured in every family.",
        "",
        "| candidate | " + " | ".join(names) + " | mean |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for k in sorted(score, key=lambda k: score[k]["mean"]):
        v = score[k]
        mark = "**" if k == best else ""
        L.append(f"| {mark}{k[0]}+{k[1]}{mark} | " + " | ".join(f"{v['families'][n]:.2f}" for n in names)
                 + f" | {mark}{v['mean']:.2f}{mark} |")  # fmt: skip
    L += ["", f"Rule for NFE ≥ 4: **{best[0]} on {best[1]} steps** (`samplers.budget.BUDGET_RULE`). At 3 or fewer "
          "evaluations the rule stays UniPC-3 (bh1), measured on the mixtures only (`samplers.md`).", ""]  # fmt: skip
    (RESULTS / "budget_rule.md").write_text("\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main()
