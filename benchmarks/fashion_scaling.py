"""How the cpu preset's Fashion-MNIST FID falls with training steps, and how many steps the target would take.

Each run is `scorekit train --data fashion-mnist --preset cpu --class-conditional --steps S` (the preset in all but
its length: the learning-rate decay covers the last quarter of whatever S is). Each is scored as the Fashion
benchmark's target row: `sample --nfe 10 --num 10000 --seed 2` (tuning a schedule on first use), FID in the pinned
Fashion-MNIST features against the 10,000 test images. The excess over the floor (10,000 training vs test images,
1.287) is fitted by a power law in S, excess = a·S^b, and extrapolated to the issue's target, FID ≤ 3 × floor.
Writes benchmarks/results/fashion_scaling.md / .json.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fashion_scaling.py --runs RUN_5k,RUN_10k,RUN_20k --work WORK \
        --time-logs LOG_5k,LOG_10k,LOG_20k   # optional: each run's `/usr/bin/time -v` output, for its CPU time

`--rows-from results/fashion_scaling.json` keeps that file's fitted rows (their runs need not exist any more);
`--check RUN --check-time-logs LOG` scores further runs the same way, outside the fit, beside the fit's prediction
for their step count: an out-of-sample test of the power law.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import cached, evaluate, publish, sample_cost, scorekit, training_summary  # noqa: E402


def score(run: Path, work: Path, num: int, log) -> dict:
    """The target row's command on `run`; its evaluation is cached as WORK/<run name>_eval.json."""
    npz = work / f"{run.name}_{num}.npz"

    def go() -> dict:
        wall = scorekit("sample", "--run", str(run), "--nfe", "10", "--num", str(num), "--seed", "2", "--out",
                        str(npz), log=log)  # fmt: skip
        return {**evaluate(npz, work / f"{run.name}_fid.json", log), **sample_cost(npz), "wall_s": wall}

    return cached(work / f"{run.name}_eval.json", go)


def cpu_seconds(time_log: str) -> float | None:
    """User + system seconds from a `/usr/bin/time -v` report (None when the file has none)."""
    text = Path(time_log).read_text(errors="replace") if time_log and Path(time_log).is_file() else ""
    vals = [float(line.split(":")[-1]) for line in text.splitlines() if line.strip().startswith(("User time",
            "System time"))]  # fmt: skip
    return sum(vals) if len(vals) == 2 else None


def cpu_model() -> str:
    """This machine's CPU model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def scored_rows(runs: list[str], logs: list[str], work: Path, num: int, log) -> list[dict]:
    rows = []
    for r, tl in zip(runs, logs):
        run = Path(r)
        t = training_summary(run)
        rows.append({"run": str(run), "steps": t["steps"], "train_wall_s": t.get("train_wall_s"),
                     "train_cpu_s": cpu_seconds(tl), "final_loss": t.get("final_loss"), "cpu": cpu_model(),
                     **score(run, work, num, log)})  # fmt: skip
    return rows


def power_fit(steps, excess) -> tuple[float, float]:
    """(a, b) of excess = a·steps^b by least squares in log–log."""
    b, log_a = np.polyfit(np.log(steps), np.log(excess), 1)
    return float(math.exp(log_a)), float(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="", help="comma-separated run directories of one preset, different --steps")
    ap.add_argument("--rows-from", default=None, help="a previous fashion_scaling.json whose rows join the fit")
    ap.add_argument("--check", default="", help="comma-separated runs scored outside the fit, against its prediction")
    ap.add_argument("--check-time-logs", default="", help="comma list, one `/usr/bin/time -v` output per --check run")
    ap.add_argument("--work", required=True, help="folder for samples and cached evaluations")
    ap.add_argument("--num", type=int, default=10_000)
    ap.add_argument("--floor", type=float, default=1.287, help="FID of 10,000 training vs test images (floor)")
    ap.add_argument("--time-logs", default="", help="comma list, one `/usr/bin/time -v` output per run (optional)")
    ap.add_argument("--cpu-s-per-step", type=float, default=0.170, help="the preset's measured CPU-s per step")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    logf = (work / "log.txt").open("a")

    def log(msg: str) -> None:
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    runs = args.runs.split(",") if args.runs else []
    logs = args.time_logs.split(",") if args.time_logs else [""] * len(runs)
    checks = args.check.split(",") if args.check else []
    check_logs = args.check_time_logs.split(",") if args.check_time_logs else [""] * len(checks)
    if len(logs) != len(runs) or len(check_logs) != len(checks):
        ap.error("--time-logs / --check-time-logs need one file per run")
    rows = scored_rows(runs, logs, work, args.num, log)
    if args.rows_from:
        given = {d["run"] for d in rows}
        rows += [d for d in json.loads(Path(args.rows_from).read_text())["rows"] if d["run"] not in given]
    if len(rows) < 2:
        ap.error("the fit needs at least two runs (--runs and/or --rows-from)")
    checked = scored_rows(checks, check_logs, work, args.num, log)
    earlier = ""
    if args.rows_from:  # the command that scored the kept rows: in the JSON, or on the page beside it
        old = json.loads(Path(args.rows_from).read_text()).get("command")
        page = Path(args.rows_from).with_suffix(".md")
        if old is None and page.is_file():
            old = next((ln.split("`")[1] for ln in page.read_text().splitlines() if ln.startswith("Command: `")), None)
        earlier = old or "(not recorded)"
    rows.sort(key=lambda d: d["steps"])
    steps = np.array([d["steps"] for d in rows], dtype=float)
    excess = np.array([d["fid"] - args.floor for d in rows])
    a, b = power_fit(steps, excess)
    goal = 2.0 * args.floor  # FID ≤ 3 × floor ⇔ excess ≤ 2 × floor
    need = (goal / a) ** (1.0 / b) if b < 0 else float("inf")
    b_last = float(np.log(excess[-1] / excess[-2]) / np.log(steps[-1] / steps[-2])) if len(rows) > 1 else 0.0
    need_last = steps[-1] * (goal / excess[-1]) ** (1.0 / b_last) if b_last < 0 else float("inf")
    res = {"floor": args.floor, "num": args.num, "rows": rows, "fit": {"a": a, "b": b}, "last_slope": b_last,
           "steps_needed_last_slope": need_last,
           "target_excess": goal, "steps_needed": need,
           "cpu_minutes_needed": need * args.cpu_s_per_step / 60}  # fmt: skip
    for d in checked:
        d["fid_predicted"] = args.floor + a * d["steps"] ** b
    res["checks"] = checked
    cmd = "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fashion_scaling.py " + " ".join(sys.argv[1:])
    res["command"] = cmd
    if earlier:
        res["rows_from_command"] = earlier
    L = [
        "# Fashion-MNIST: the cpu preset's FID against training steps",
        "",
        f"Command: `{cmd}`  ",
        *([f"Rows kept from `{args.rows_from}` were scored by `{earlier}`.  "] if earlier else []),
        "Runs: `OMP_NUM_THREADS=1 scorekit train --data fashion-mnist --preset cpu --class-conditional --steps S` "
        "(batch 16, lr 1e-3 decayed to zero over the last quarter of S, bf16 autocast, seed 0).  ",
        f"Score: `sample --nfe 10 --num {args.num} --seed 2` (a tuned schedule, as a user gets it), FID in the pinned "
        "Fashion-MNIST features against the 10,000 test images. Machines: 2-core x86 CPUs, 1 torch thread per "
        "process (their speeds differ: CPU-s/step); training CPU time = user + system of the training process "
        "(`/usr/bin/time -v`), its wall time (from the run's log) depends on what else ran beside it.",
        "",
        f"| steps | images seen | train CPU-min | CPU-s/step | train wall min | FID ({args.num}) | × floor | "
        "excess over floor | precision | recall |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cells(d: dict) -> str:
        wall = "" if d["train_wall_s"] is None else f"{d['train_wall_s'] / 60:.1f}"
        cpu = "" if d["train_cpu_s"] is None else f"{d['train_cpu_s'] / 60:.1f}"
        per = "" if d["train_cpu_s"] is None else f"{d['train_cpu_s'] / d['steps']:.3f}"
        return (f"| {d['steps']} | {d['steps'] * 16:,} | {cpu} | {per} | {wall} | {d['fid']:.3f} | "
                f"{d['fid'] / args.floor:.1f} | {d['fid'] - args.floor:.3f} | {d['precision']:.3f} | "
                f"{d['recall']:.3f} |")  # fmt: skip

    L += [cells(d) for d in rows]
    L += [
        "",
        f"Floor: {args.floor} (10,000 training images vs the test split, `fashion_mnist.md`). Target: FID ≤ 3 × floor "
        f"= {3 * args.floor:.2f}, an excess ≤ {goal:.2f}.",
        "",
        f"Power law through these {len(rows)} points (least squares in log–log): excess ≈ {a:.3g} · steps^{b:.3f}. "
        + (
            f"Extrapolated, the target's excess needs about {need:,.0f} steps at batch 16, "
            f"{res['cpu_minutes_needed']:,.0f} CPU-minutes at {args.cpu_s_per_step} CPU-s a step "
            f"({res['cpu_minutes_needed'] / 60:.1f} CPU-hours), against the issue's budget of 60 CPU-minutes. An "
            "extrapolation from few points, and most likely an optimistic one: "
            "the excess of any fixed network flattens towards its capacity limit as training grows. "
            f"The slope between the last two points alone is {b_last:.3f}; continued from the last point at that "
            f"slope, the target needs about {need_last:,.0f} steps ({need_last * args.cpu_s_per_step / 60:,.0f} "
            "CPU-minutes)."
            if b < 0
            else "The excess does not fall with steps here, so no extrapolation."
        ),
        "",
    ]
    if checked:
        L += [
            "## Out of sample: runs scored outside the fit",
            "",
            "Each trained and scored as above but not used in the fit; the fit's prediction is floor + a·steps^b. "
            "CPU: the model name of the machine that scored it (and trained it, where its time log is given).",
            "",
            "| run | CPU | steps | train CPU-min | CPU-s/step | FID | predicted | precision | recall |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for d in checked:
            cpu = "" if d["train_cpu_s"] is None else f"{d['train_cpu_s'] / 60:.1f}"
            per = "" if d["train_cpu_s"] is None else f"{d['train_cpu_s'] / d['steps']:.3f}"
            L.append(f"| `{d['run']}` | {d['cpu']} | {d['steps']} | {cpu} | {per} | {d['fid']:.3f} | "
                     f"{d['fid_predicted']:.3f} | {d['precision']:.3f} | {d['recall']:.3f} |")  # fmt: skip
        L.append("")
    publish("fashion_scaling", res, L)
    return 0


if __name__ == "__main__":
    sys.exit(main())
