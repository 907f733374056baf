"""Each fixed-step sampler's default σ schedule, chosen from measurements rather than inherited.

Reads the two measurements of every sampler on every built-in schedule —
`results/samplers_schedules.json` (sliced W2 / floor on the 2-D and 16-D exact mixtures at NFE 4, 6, 10;
`benchmarks/samplers.py --schedules`) and `results/samplers_digits.json` (digits FID of the quickstart model at
NFE 5, 10; `benchmarks/samplers.py --digits RUN`) — and picks, per sampler, the schedule with the smallest geometric
mean over (problem, NFE) of its error relative to that sampler's best schedule there. Mixtures and digits get equal
weight (each problem family's cells are averaged first), so the image model is not outvoted by the toy problems.

    PYTHONPATH=src python benchmarks/sampler_defaults.py     # -> results/sampler_defaults.{md,json}

`tests/test_sampler_defaults.py` checks that `SAMPLERS[name].default_schedule` equals the choice recorded here.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SCHEDULES = ("karras", "logsnr", "log", "uniform_t")


def cells() -> dict:
    """{sampler: {family: {(problem, nfe): {schedule: error}}}} from both result files."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for r in json.loads((RESULTS / "samplers_schedules.json").read_text()):
        out[r["sampler"]]["mixtures"][(r["problem"], r["nfe"])][r["schedule"]] = r["ratio"]
    dig = json.loads((RESULTS / "samplers_digits.json").read_text())
    for r in dig["rows"]:
        if r.get("group") != "schedules" or "fid" not in r:
            continue
        name, sched = r["method"].split(":", 1)[1].split("+")
        out[name]["digits"][("digits", r["nfe"])][sched] = r["fid"]
    return out


def choose(per_family: dict) -> tuple[str, dict]:
    """The schedule with the smallest mean over families of the geometric-mean relative error in that family."""
    score: dict[str, list[float]] = defaultdict(list)
    for table in per_family.values():
        logs: dict[str, list[float]] = defaultdict(list)
        for errs in table.values():
            finite = {k: v for k, v in errs.items() if v is not None and math.isfinite(v)}
            if not finite:
                continue
            best = min(finite.values())
            for k in SCHEDULES:
                v = finite.get(k)
                logs[k].append(math.log(v / best) if v is not None else math.log(1e6))
        for k, v in logs.items():
            score[k].append(sum(v) / len(v))
    mean = {k: math.exp(sum(v) / len(v)) for k, v in score.items() if len(v) == len(per_family)}
    return min(mean, key=mean.get), mean


def main():
    data = cells()
    rows = {}
    for name, fams in sorted(data.items()):
        best, mean = choose(fams)
        rows[name] = {"default_schedule": best, "relative_error": mean, "families": sorted(fams)}
    (RESULTS / "sampler_defaults.json").write_text(json.dumps(rows, indent=1) + "\n")
    L = [
        "# Default σ schedule per sampler (measured)",
        "",
        "Command: `PYTHONPATH=src python benchmarks/sampler_defaults.py` (reads `samplers_schedules.json` and "
        "`samplers_digits.json`).",
        "",
        "Per sampler: the geometric mean, over the (problem, NFE) cells of each family, of the error relative to the "
        "sampler's best schedule in that cell, then averaged over the families (mixtures: 2-D and 16-D at NFE 4, 6, "
        "10, sliced W2 / floor; digits: quickstart model at NFE 5, 10, FID). 1.00 = best in every cell. The chosen "
        "schedule is the sampler's default in `scorekit.samplers` (checked by `tests/test_sampler_defaults.py`).",
        "",
        "| sampler | " + " | ".join(SCHEDULES) + " | default | families |",
        "|---|" + "---:|" * len(SCHEDULES) + "---|---|",
    ]
    for name, r in rows.items():
        m = r["relative_error"]
        cells_ = [f"{m[k]:.2f}" if k in m else "–" for k in SCHEDULES]
        L.append(f"| {name} | " + " | ".join(cells_) + f" | **{r['default_schedule']}** | {', '.join(r['families'])} |")
    (RESULTS / "sampler_defaults.md").write_text("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    sys.exit(main())
