"""Fashion-MNIST end to end with the CPU preset: training time, quality vs NFE with the budget solvers, DLG at equal
cost, classifier-free guidance per class, bits/dim and the HTML report. Every step is the user's command line
(`scorekit ...` in a subprocess); this script only runs them, collects their JSON and writes the tables.

    OMP_NUM_THREADS=1 scorekit train --data fashion-mnist --preset cpu --class-conditional --out RUN   # ~1 h
    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fashion_mnist.py --run RUN --work WORK

Phases (`--phases`, default all; each caches its JSON in WORK, so phases can run in parallel processes):
- ``floor``: the pinned classifier's FID / precision / recall between random training images and the test split at
  the sample sizes used below (the floor of every FID here; FID is biased upward at small N).
- ``nfe_rule`` / ``nfe_tuned``: `scorekit sample --nfe N` (no guidance; no `--class`, so a random class per sample)
  with the built-in rule (`--no-tune`) for N in 3..20, and as a user runs it (tuning a schedule on first use) at
  N = 5, 10, NUM samples each; then 10,000 at N = 10 (the target: FID ≤ 3 × the train-vs-test FID at 10,000).
- ``dlg``: `scorekit train-noise-classifier` on the run, then `sample --dmcmc dlg --nfe N` against plain `--nfe N`.
- ``guidance``: classifier-free guidance for every class at several weights: the pinned classifier's accuracy on
  the requested class, and precision / recall of each class's samples against that class's test images.
- ``bpd``: `scorekit likelihood` (probability-flow ODE, dequantised) on test images.
- ``report``: `scorekit report --run RUN --html` and a headless-Chromium screenshot of it.
Quality numbers use the pinned Fashion-MNIST classifier's features (`--extractor fashion`, see
`fashion_classifier.md`); FID is against the test split.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NFES = (3, 4, 5, 6, 8, 10, 20)
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def scorekit(*args: str, log=None) -> float:
    """Run `scorekit ARGS` with one torch thread; returns its wall seconds; raises on a non-zero exit."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "scorekit", *args, "--no-progress"] if args[0] in ("sample", "likelihood") else [
        sys.executable, "-m", "scorekit", *args]  # fmt: skip
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if log:
        log(f"$ scorekit {' '.join(args)}  ({wall:.0f} s)\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
    if r.returncode != 0:
        raise RuntimeError(f"scorekit {' '.join(args)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return wall


def cached(path: Path, fn):
    if path.is_file():
        return json.loads(path.read_text())
    out = fn()
    path.write_text(json.dumps(out, indent=1))
    return out


def publish(name: str, res: dict, lines: list[str]) -> None:
    """Write benchmarks/results/NAME.json (the raw results) and NAME.md (the page), and print the page."""
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1))
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


def evaluate(samples: Path, out: Path, log, metrics="fid,pr") -> dict:
    scorekit("evaluate", "--samples", str(samples), "--data", "fashion-mnist", "--ref-split", "test", "--extractor",
             "fashion", "--metrics", metrics, "--out", str(out), log=log)  # fmt: skip
    return json.loads(out.read_text())


def sample_cost(npz: Path) -> dict:
    with np.load(npz, allow_pickle=False) as z:
        out = {"nfe": float(np.asarray(z["nfe"]).mean()) if "nfe" in z else None}
        for k in ("classifier_evals", "classifier_denoiser_equivalent_nfe", "network_nfe", "distinct_fraction", "ess"):
            if k in z:
                out[k] = float(np.asarray(z[k]).mean())
        if "provenance" in z:
            prov = json.loads(str(z["provenance"]))
            out["choice"] = prov.get("nfe_plan") or prov.get("sampler")
    return out


def phase_floor(work: Path, nums, log) -> dict:
    """FID / precision / recall of `n` random training images against the test split, per n."""
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from scorekit.metrics.fashion_classifier import fashion_split

    x, y = fashion_split("train")
    out = {}
    for n in nums:
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(n))[:n]
        npz = work / f"real_train_{n}.npz"
        np.savez(npz, samples=x[idx].numpy(), labels=y[idx].numpy())
        out[str(n)] = evaluate(npz, work / f"floor_{n}.json", log)
        npz.unlink()
    return out


def phase_nfe_rule(run: Path, work: Path, num: int, log) -> dict:
    """`sample --nfe N --no-tune` (the built-in rule) for every N."""
    rows = {}
    for n in NFES:
        npz = work / f"nfe{n}.npz"
        wall = scorekit("sample", "--run", str(run), "--nfe", str(n), "--no-tune", "--num", str(num), "--seed", "1",
                        "--out", str(npz), log=log)  # fmt: skip
        rows[f"{n} rule"] = {**evaluate(npz, work / f"nfe{n}_eval.json", log), **sample_cost(npz), "wall_s": wall}
    return rows


def phase_nfe_tuned(run: Path, work: Path, num: int, big: int, tuned_nfes, log) -> dict:
    """`sample --nfe N` as a user runs it (it tunes a schedule for the run on first use; the tuning time is part of
    that row's wall time) for N in `tuned_nfes`, then `big` samples at N = 10 with the tuned schedule."""
    rows = {}
    for n in tuned_nfes:
        npz = work / f"nfe{n}_tuned.npz"
        wall = scorekit("sample", "--run", str(run), "--nfe", str(n), "--num", str(num), "--seed", "1", "--out",
                        str(npz), log=log)  # fmt: skip
        rows[f"{n} tuned"] = {**evaluate(npz, work / f"nfe{n}_tuned_eval.json", log), **sample_cost(npz),
                              "wall_s": wall}  # fmt: skip
    npz = work / f"nfe10_{big}.npz"
    wall = scorekit("sample", "--run", str(run), "--nfe", "10", "--num", str(big), "--seed", "2", "--out", str(npz),
                    log=log)  # fmt: skip
    rows[f"10 tuned@{big}"] = {**evaluate(npz, work / f"nfe10_{big}_eval.json", log), **sample_cost(npz),
                               "wall_s": wall}  # fmt: skip
    class_grid_png(npz, RESULTS / "fashion_mnist_unguided_nfe10.png", "no guidance (random class per sample), "
                   f"sample --nfe 10 (tuned); FID {rows[f'10 tuned@{big}']['fid']:.2f} at {big}")  # fmt: skip
    return rows


def phase_dlg(run: Path, work: Path, num: int, nfes, nc_steps: int, log) -> dict:
    nc = work / "noise_classifier"
    out: dict = {}
    if not (nc / "config.json").is_file():
        out["noise_classifier_wall_s"] = scorekit("train-noise-classifier", "--run", str(run), "--out", str(nc),
                                                  "--steps", str(nc_steps), log=log)  # fmt: skip
    out["noise_classifier_accuracy"] = json.loads((nc / "config.json").read_text()).get("accuracy")
    rows = {}
    for n in nfes:
        npz = work / f"dlg{n}.npz"
        wall = scorekit("sample", "--run", str(run), "--nfe", str(n), "--dmcmc", "dlg", "--noise-classifier", str(nc),
                        "--num", str(num), "--seed", "3", "--out", str(npz), log=log)  # fmt: skip
        rows[str(n)] = {**evaluate(npz, work / f"dlg{n}_eval.json", log), **sample_cost(npz), "wall_s": wall}
    out["rows"] = rows
    return out


def phase_guidance(run: Path, work: Path, per_class: int, weights, steps: int, log, interval=None) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from scorekit.metrics.fashion_classifier import fashion_split
    from scorekit.metrics.features import get_extractor
    from scorekit.metrics.precision_recall import precision_recall

    ext = get_extractor("fashion")
    xt, yt = fashion_split("test")
    ft, _ = ext.features_and_logits(xt)
    labels = ",".join(str(c) for c in range(10) for _ in range(per_class))
    rows = {}
    tag = "" if interval is None else "_interval" + interval.replace(",", "-")
    for w in weights:
        name = f"cfg_w{w:g}{tag}"
        npz = work / f"{name}.npz"
        flags = [] if interval is None else ["--guidance-interval", interval]
        wall = scorekit("sample", "--run", str(run), "--sampler", "dpmpp_2m", "--steps", str(steps), "--guidance",
                        "cfg", "--cfg-weight", str(w), *flags, "--class", labels, "--num", str(10 * per_class),
                        "--seed", "4", "--out", str(npz), log=log)  # fmt: skip
        ev = evaluate(npz, work / f"{name}_eval.json", log)
        where = "" if interval is None else f" for σ in ({interval}]"
        class_grid_png(npz, RESULTS / f"fashion_mnist_{name}.png", f"classifier-free guidance w = {w:g}{where}, "
                       f"dpmpp_2m {steps} steps; judge accuracy {ev['class_accuracy']:.3f}")  # fmt: skip
        with np.load(npz) as z:
            xs, ys = torch.from_numpy(z["samples"]).float(), z["labels"]
        fs, _ = ext.features_and_logits(xs)
        per = {}
        for c in range(10):
            p, r = precision_recall(ft[yt.numpy() == c], fs[ys == c], k=3)
            per[str(c)] = {"precision": p, "recall": r, "accuracy": ev["per_class_accuracy"].get(str(c))}
        key = f"{w:g}" + ("" if interval is None else f" in ({interval}]")
        rows[key] = {**ev, **sample_cost(npz), "wall_s": wall, "per_class": per, "name": name,
                     "mean_class_recall": float(np.mean([v["recall"] for v in per.values()])),
                     "mean_class_precision": float(np.mean([v["precision"] for v in per.values()]))}  # fmt: skip
    return rows


def class_grid_png(npz: Path, path: Path, title: str, per_row: int = 10) -> None:
    """One row per class (the first `per_row` samples of each), class names on the left, `title` on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(npz) as z:
        x, y = z["samples"], z["labels"]
    fig, axes = plt.subplots(10, per_row, figsize=(per_row * 0.62 + 1.2, 10 * 0.62 + 0.4))
    for c in range(10):
        imgs = x[y == c][:per_row]
        for j in range(per_row):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            if j < len(imgs):
                ax.imshow(np.clip(imgs[j, 0], 0, 1), cmap="gray", vmin=0, vmax=1)
        axes[c, 0].set_ylabel(CLASSES[c], rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.17, right=0.99, top=0.95, bottom=0.01, wspace=0.04, hspace=0.04)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def phase_bpd(run: Path, work: Path, num: int, log) -> dict:
    out = work / "bpd_ode.json"
    wall = scorekit("likelihood", "--run", str(run), "--data", "fashion-mnist", "--split", "test", "--num", str(num),
                    "--method", "ode", "--out", str(out), log=log)  # fmt: skip
    return {**json.loads(out.read_text()), "wall_s": wall}


def bpd_lines(b: dict) -> list[str]:
    """The likelihood section: bits/dim with its standard error over the test images scored."""
    per = [float(v) for v in b.get("per_sample", [])]
    n, d = len(per), int(b["dim"])
    se = ""
    if n > 1:
        mean = sum(per) / n
        sd = (sum((v - mean) ** 2 for v in per) / (n - 1)) ** 0.5
        se = f" ± {sd / n**0.5 / (d * math.log(2)):.3f}"
    return [
        "## Likelihood",
        "",
        f"`scorekit likelihood --run RUN --data fashion-mnist --split test --num {b['num']} --method {b['method']}` "
        f"(probability-flow ODE, {b['divergence']} divergence, dequantised):",
        "",
        "| test images | bits/dim (± standard error) | NLL nats/image | network evals (ODE solve) | wall s |",
        "|---:|---:|---:|---:|---:|",
        f"| {b['num']} | {b['bpd']:.3f}{se} | {b['nll_nats']:.1f} | {b['nfe']:.0f} | {b['wall_s']:.0f} |",
        "",
    ]


def phase_report(run: Path, work: Path, log) -> dict:
    html = RESULTS / "fashion_mnist_report.html"
    results = sorted(str(p) for p in work.glob("nfe*_eval.json")) + sorted(str(p) for p in work.glob("dlg*_eval.json"))
    samples = [str(p) for p in (work / "nfe10_tuned.npz", work / "cfg_w1.npz") if p.is_file()]
    args = ["report", "--run", str(run), "--html", str(html), "--title", "Fashion-MNIST, CPU preset"]
    if results:
        args += ["--results", *results]
    if samples:
        args += ["--samples", *samples]
    scorekit(*args, log=log)
    shot = RESULTS / "fashion_mnist_report.png"
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    if chrome:
        subprocess.run([chrome, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                        "--window-size=1200,1800", html.as_uri()], capture_output=True, timeout=120)  # fmt: skip
    return {"html": html.name, "html_bytes": html.stat().st_size, "screenshot": shot.name if shot.is_file() else None}


def training_summary(run: Path) -> dict:
    """The run's settings and its wall time from log.jsonl (Σ interval / steps_per_s over the log lines; a resumed
    run's sessions add up, their start-up time not counted)."""
    cfg = json.loads((run / "config.json").read_text())
    lines = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines() if s.strip()]
    recs = [r for r in lines if "step" in r and "loss" in r and r.get("steps_per_s")]
    net = cfg["network"]
    out = {"steps": cfg["training"]["steps"], "batch_size": cfg["training"]["batch_size"],
           "network": f"{net['arch']} {net.get('model_channels')} ch × {net.get('channel_mult')}, "
                      f"{net.get('num_res_blocks')} block/level, attention at {net.get('attn_resolutions')}, "
                      f"{net.get('num_classes')} classes",
           "objective": cfg["objective"], "process": cfg["process"]["name"],
           "p_uncond": cfg["training"].get("p_uncond"), "lr": cfg["training"].get("lr"),
           "amp (forward-pass precision)": cfg["training"].get("amp")}  # fmt: skip
    wall, prev = 0.0, 0
    for r in recs:
        wall += (r["step"] - prev) / r["steps_per_s"]
        prev = r["step"]
    if recs:
        out["train_wall_s"] = wall
        out["final_loss"] = float(recs[-1]["loss"])
    return out


def fmt(v, d=3):
    return "" if v is None else f"{v:.{d}f}"


def write_md(res: dict, cmd: str, path: Path) -> None:
    L = [
        "# Fashion-MNIST with the CPU preset",
        "",
        f"Command: `{cmd}`  ",
        "Training: `OMP_NUM_THREADS=1 scorekit train --data fashion-mnist --preset cpu --class-conditional --out RUN`."
        "  ",
        "Machine: the shared 2-core x86 CPU, 1 torch thread per process. Features: the pinned Fashion-MNIST "
        "classifier (`fashion_classifier.md`, test accuracy 90.49 %); FID against the 10,000 test images.",
        "",
    ]
    tr = res.get("training")
    if tr:
        L += ["## Training", "", "| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in tr.items()] + [""]
    fl = res.get("floor", {})
    if fl:
        L += ["## Floor: random training images vs the test split", "", "| N | FID | precision | recall |",
              "|---:|---:|---:|---:|"]  # fmt: skip
        L += [f"| {n} | {fmt(v['fid'])} | {fmt(v['precision'])} | {fmt(v['recall'])} |" for n, v in fl.items()]
        L.append("")
    nfe = {**res.get("nfe_rule", {}), **res.get("nfe_tuned", {})}
    if nfe:
        L += ["## Samples without guidance (`sample --nfe N`; no `--class`, so a random class per sample)", "",
              "| N | samples | choice | FID | floor FID at this N | precision | recall | sample wall s |",
              "|---|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for k, v in nfe.items():
            n_s = v.get("num_samples")
            floor = fl.get(str(n_s), {}).get("fid")
            choice = v.get("choice")
            if isinstance(choice, str) and choice.startswith("{"):
                choice = json.loads(choice)
            if isinstance(choice, dict):
                sched = str(choice.get("schedule"))
                sched = "tuned schedule" if sched.endswith(".json") else sched
                choice = f"{choice.get('sampler')} {choice.get('steps')} steps, {sched}"
            L.append(f"| {k.split('@')[0]} | {n_s} | {choice} | {fmt(v['fid'])} | {fmt(floor)} | "
                     f"{fmt(v['precision'])} | {fmt(v['recall'])} | {v['wall_s']:.0f} |")  # fmt: skip
        L.append("")
    dlg = res.get("dlg")
    if dlg:
        L += ["## Denoising MCMC (DLG) at equal cost", "",
              f"Noise classifier: trained by `scorekit train-noise-classifier` in "
              f"{dlg.get('noise_classifier_wall_s', float('nan')):.0f} s wall; accuracy "
              f"`{json.dumps(dlg.get('noise_classifier_accuracy'))}`.", "",
              "| N | method | NFE/sample | classifier evals/sample (denoiser-equivalent) | FID | precision | recall | "
              "distinct | ESS |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for k, v in dlg["rows"].items():
            plain = nfe.get(f"{k} tuned", nfe.get(f"{k} rule", {}))
            L.append(f"| {k} | plain --nfe | {fmt(plain.get('nfe'), 2)} | 0 | {fmt(plain.get('fid'))} | "
                     f"{fmt(plain.get('precision'))} | {fmt(plain.get('recall'))} | | |")  # fmt: skip
            L.append(f"| {k} | --dmcmc dlg --nfe | {fmt(v.get('nfe'), 2)} | {fmt(v.get('classifier_evals'), 2)} "
                     f"({fmt(v.get('classifier_denoiser_equivalent_nfe'), 2)}) | {fmt(v['fid'])} | "
                     f"{fmt(v['precision'])} | {fmt(v['recall'])} | {fmt(v.get('distinct_fraction'))} | "
                     f"{fmt(v.get('ess'), 0)} |")  # fmt: skip
        L.append("")
    g = res.get("guidance")
    if g:
        L += ["## Classifier-free guidance per class", "",
              "| weight | network evals/sample | accuracy | mean class precision | mean class recall | "
              "FID (all classes) | recall (all classes) |", "|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for w, v in g.items():
            L.append(f"| {w} | {fmt(v.get('network_nfe', v.get('nfe')), 0)} | {fmt(v['class_accuracy'])} | "
                     f"{fmt(v['mean_class_precision'])} | {fmt(v['mean_class_recall'])} | {fmt(v['fid'])} | "
                     f"{fmt(v['recall'])} |")  # fmt: skip
        L += ["", "Per class (accuracy / recall against that class's test images):", "",
              "| class | " + " | ".join(f"w={w}" for w in g) + " |", "|---|" + "---:|" * len(g)]  # fmt: skip
        for c in range(10):
            cells = [f"{fmt(v['per_class'][str(c)]['accuracy'], 2)} / {fmt(v['per_class'][str(c)]['recall'], 2)}"
                     for v in g.values()]  # fmt: skip
            L.append(f"| {c} {CLASSES[c]} | " + " | ".join(cells) + " |")
        pngs = (f"`fashion_mnist_{v.get('name', f'cfg_w{w}')}.png`" for w, v in g.items())
        L += ["", "Grids: " + ", ".join(pngs) + " (one row per class).", ""]
    if res.get("bpd"):
        L += bpd_lines(res["bpd"])
    r = res.get("report")
    if r:
        L += [f"HTML report: `{r['html']}` ({r['html_bytes'] // 1024} KiB); screenshot `{r['screenshot']}`.", ""]
    path.write_text("\n".join(L))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--work", default="/tmp/fashion_bench")
    ap.add_argument("--phases", default="floor,nfe_rule,nfe_tuned,dlg,guidance,bpd,report")
    ap.add_argument("--num", type=int, default=2000, help="samples per NFE row (default 2000)")
    ap.add_argument("--big", type=int, default=10000, help="samples of the N = 10 target row (default 10000)")
    ap.add_argument("--tuned-nfe", default="5,10", help="budgets also run with a tuned schedule (default 5,10)")
    ap.add_argument("--dlg-nfe", default="10", help="comma list of DLG budgets")
    ap.add_argument("--nc-steps", type=int, default=2000, help="noise-classifier training steps (default 2000)")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--weights", default="0,1,2,4")
    ap.add_argument("--cfg-steps", type=int, default=10)
    ap.add_argument("--guidance-interval", default=None, metavar="LO,HI", help="guide only for LO < σ <= HI")
    ap.add_argument("--bpd-num", type=int, default=100)
    ap.add_argument("--write", action="store_true", help="only write the Markdown from the cached JSON")
    args = ap.parse_args(argv)
    run, work = Path(args.run), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    logf = open(work / "log.txt", "a")

    def log(s):
        logf.write(s + "\n")
        logf.flush()

    res: dict = {"training": training_summary(run)}
    phases = [p.strip() for p in args.phases.split(",")]
    weights, interval = [float(w) for w in args.weights.split(",")], args.guidance_interval
    jobs = {
        "floor": lambda: phase_floor(work, sorted({args.num, args.big, 10 * args.per_class}), log),
        "nfe_rule": lambda: phase_nfe_rule(run, work, args.num, log),
        "nfe_tuned": lambda: phase_nfe_tuned(
            run, work, args.num, args.big, [int(v) for v in args.tuned_nfe.split(",")], log
        ),  # fmt: skip
        "dlg": lambda: phase_dlg(run, work, args.num, [int(v) for v in args.dlg_nfe.split(",")], args.nc_steps, log),
        "guidance": lambda: phase_guidance(run, work, args.per_class, weights, args.cfg_steps, log, interval),
        "bpd": lambda: phase_bpd(run, work, args.bpd_num, log),
        "report": lambda: phase_report(run, work, log),
    }
    for name, fn in jobs.items():
        path = work / f"{name}.json"
        if name in phases and not args.write:
            t = time.perf_counter()
            res[name] = cached(path, fn)
            print(f"{name}: done in {time.perf_counter() - t:.0f} s", flush=True)
        elif path.is_file():
            res[name] = json.loads(path.read_text())
    cmd = "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fashion_mnist.py " + " ".join(argv or sys.argv[1:])
    missing = [name for name in jobs if name not in res]
    dest = work if missing else RESULTS  # a page of some phases never replaces the full one
    if missing:
        print(f"no results for {', '.join(missing)} in {work}: the page is {work / 'fashion_mnist.md'}", flush=True)
    (dest / "fashion_mnist.json").write_text(json.dumps(res, indent=1, default=str))
    write_md(res, cmd, dest / "fashion_mnist.md")


if __name__ == "__main__":
    main()
