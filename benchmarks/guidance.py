"""Classifier guidance on 8×8 digits: fidelity vs diversity as the guidance scale grows.

Reproduces the direction of Dhariwal & Nichol 2021 (Fig. 4 / Table 4): a noisy classifier steering an
unconditional diffusion model makes samples more recognisably of the requested class (fidelity ↑) and less
varied (diversity ↓) as the scale s grows.

Pieces (cached under benchmarks/results/tmp/guidance/, rebuilt with --retrain):
- score model: scorekit.training.train, VP process, ε-parameterisation, an MLP on the flattened 8×8 image
  (the 8×8 U-Net is too slow to train within this benchmark's CPU budget);
- noisy classifier: scorekit.guidance.train_noisy_classifier, the U-Net-encoder classifier with attention pooling
  (arch noisy_classifier_unet), trained on the digits train split noised by the same VP process;
- judge: scorekit's pinned clean-data digits classifier (scorekit.metrics.features.get_extractor("digits")),
  trained separately on clean digits, never used for guidance.

For each scale, NUM_PER_CLASS samples of every class 0–9 are drawn from the same prior noise and sampler noise;
per class: judge accuracy on the requested class, its mean confidence, FID / precision / recall against that
class's real digits in the judge's feature space, and the feature-space spread (mean pairwise distance,
relative to the real digits of that class); the table averages over classes.

    .venv/bin/python benchmarks/guidance.py            # ~10 minutes on one busy CPU core
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scorekit.checkpoint import load_denoiser
from scorekit.classifier_training import noise_band_accuracy, train_noisy_classifier
from scorekit.data import Dataset, load_data
from scorekit.guidance import (
    ClassifierFreeGuidedDenoiser,
    ClassifierGuidedDenoiser,
    NoisyClassifier,
    load_classifier,
)
from scorekit.metrics.features import get_extractor
from scorekit.metrics.fid import fid_from_features
from scorekit.metrics.precision_recall import precision_recall
from scorekit.processes import get_process
from scorekit.samplers import get_sampler, get_sigmas

RESULTS = Path(__file__).resolve().parent / "results"
SHAPE = (1, 8, 8)


class FlatToImage(NoisyClassifier):
    """Lets the image classifier guide a model that works on flattened [B, 64] digits."""

    def __init__(self, inner: NoisyClassifier, shape=SHAPE):
        super().__init__()
        self.inner, self.shape, self.num_classes = inner, tuple(shape), inner.num_classes

    def log_probs(self, x, sigma):
        return self.inner.log_probs(x.reshape(x.shape[0], *self.shape), sigma)


def train_score_model(out: Path, steps: int, seed: int, log) -> None:
    from scorekit.training import default_config, train

    digits = load_data("digits", split="train")
    flat = Dataset(digits.data.reshape(len(digits), -1).contiguous(), digits.labels, "vector", 10, digits.transform)
    cfg = default_config("digits", "vp", steps=steps, batch_size=128, lr=1e-3, seed=seed, checkpoint_every=steps)
    cfg["data"]["shape"] = [64]
    cfg["data"]["kind"] = "vector"
    cfg["network"] = {"arch": "mlp", "dim": 64, "hidden": 256, "depth": 4, "emb_dim": 128, "num_classes": 0}
    t = time.time()
    train(cfg, out, data=flat, progress=False)
    log(f"score model: {steps} steps in {time.time() - t:.0f} s -> {out}")


def train_classifier(out: Path, steps: int, seed: int, log) -> dict:
    tr, te = load_data("digits", split="train"), load_data("digits", split="test")
    t = time.time()
    data_cfg = {"spec": "digits", "kind": "image", "shape": list(SHAPE), "num_classes": 10}
    data_cfg["transform"] = tr.transform.to_config()
    _, summary = train_noisy_classifier(
        tr.data,
        tr.labels,
        "vp",
        num_classes=10,
        kind="image",
        steps=steps,
        batch_size=128,
        lr=1e-3,
        seed=seed,
        out=out,
        data_config=data_cfg,
        eval_data=te.data,
        eval_labels=te.labels,
        log_every=max(1, steps // 5),
        log=log,
    )
    log(f"noisy classifier: {steps} steps in {time.time() - t:.0f} s -> {out}")
    return summary


def save_grid(path: Path, images: np.ndarray, nrow: int, ncol: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canvas = np.ones((nrow * 9 + 1, ncol * 9 + 1))
    for i in range(nrow):
        for j in range(ncol):
            canvas[i * 9 + 1 : i * 9 + 9, j * 9 + 1 : j * 9 + 9] = images[i * ncol + j, 0]
    fig, ax = plt.subplots(figsize=(ncol * 0.45 + 0.4, nrow * 0.45 + 0.6))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mean_pairwise(f: np.ndarray) -> float:
    t = torch.from_numpy(f)
    d = torch.cdist(t, t)
    n = len(f)
    return float(d.sum() / (n * (n - 1)))


def train_conditional_model(out: Path, steps: int, seed: int, p_uncond: float, log) -> None:
    """Class-conditional score model (class embedding) trained with label dropout for classifier-free guidance."""
    from scorekit.training import default_config, train

    digits = load_data("digits", split="train")
    flat = Dataset(digits.data.reshape(len(digits), -1).contiguous(), digits.labels, "vector", 10, digits.transform)
    cfg = default_config(
        "digits", "vp", class_conditional=True, steps=steps, batch_size=128, lr=1e-3, seed=seed,
        checkpoint_every=steps, p_uncond=p_uncond,
    )  # fmt: skip
    cfg["data"]["shape"], cfg["data"]["kind"] = [64], "vector"
    cfg["network"] = {"arch": "mlp", "dim": 64, "hidden": 256, "depth": 4, "emb_dim": 128, "num_classes": 10}
    t = time.time()
    train(cfg, out, data=flat, progress=False)
    log(f"class-conditional score model (p_uncond={p_uncond}): {steps} steps in {time.time() - t:.0f} s -> {out}")


class Judge:
    """The pinned clean-data digits classifier and the real digits of each class in its feature space."""

    def __init__(self):
        self.extractor = get_extractor("digits")
        real = load_data("digits", split="all")
        self.transform = real.transform
        feat = self.extractor.features(real.user_data().float())
        self.real_by_class = {c: feat[(real.labels == c).numpy()] for c in range(10)}
        self.real_spread = {c: mean_pairwise(self.real_by_class[c]) for c in range(10)}

    def measure(self, x_model: torch.Tensor, labels: torch.Tensor) -> tuple[dict, torch.Tensor]:
        imgs = self.transform.to_user(x_model.reshape(len(x_model), *SHAPE)).clamp(0, 1)
        feat, logits = self.extractor.features_and_logits(imgs)
        prob = torch.softmax(torch.from_numpy(logits), dim=1)
        hit = (prob.argmax(1) == labels).double()
        conf = prob.gather(1, labels[:, None])[:, 0]
        per_class = []
        for c in range(10):
            m = (labels == c).numpy()
            f = feat[m]
            prec, rec = precision_recall(self.real_by_class[c], f, k=3)
            ok = hit[m].numpy() > 0
            in_class = mean_pairwise(f[ok]) / self.real_spread[c] if ok.sum() >= 2 else float("nan")
            per_class.append(
                {
                    "class": c,
                    "accuracy": float(hit[m].mean()),
                    "confidence": float(conf[m].mean()),
                    "fid": fid_from_features(f, self.real_by_class[c]),
                    "precision": prec,
                    "recall": rec,
                    "spread": mean_pairwise(f) / self.real_spread[c],
                    "spread_in_class": in_class,
                }
            )
        row = {k_: float(np.nanmean([pc[k_] for pc in per_class])) for k_ in METRICS}
        row["per_class"] = per_class
        return row, imgs


METRICS = ("accuracy", "confidence", "fid", "precision", "recall", "spread", "spread_in_class")


def sweep(name, values, make_denoiser, judge, args, prefix, log) -> list[dict]:
    """Sample NUM_PER_CLASS digits of each class for each guidance value from the same noise; measure them."""
    k = args.num_per_class
    labels = torch.arange(10).repeat_interleave(k)
    n = len(labels)
    spec = get_sampler(args.sampler)
    rows = []
    for v in values:
        t = time.time()
        den = make_denoiser(v)
        proc = den.process
        sigmas = get_sigmas("karras", args.steps, sigma_min=proc.sigma_min, sigma_max=proc.sigma_max)
        gen = torch.Generator().manual_seed(args.seed + 17)
        x = proc.sigma_max * torch.randn(n, 64, generator=gen)
        out = spec.fn(den, x, sigmas, generator=gen, class_labels=labels)
        row, imgs = judge.measure(out.x, labels)
        row = {name: v, **row, "nfe": out.nfe, "seconds": round(time.time() - t, 1)}
        rows.append(row)
        log(
            f"{name} {v:g}: accuracy {row['accuracy']:.3f} confidence {row['confidence']:.3f} "
            f"FID {row['fid']:.2f} recall {row['recall']:.3f} spread {row['spread']:.3f} ({row['seconds']} s)"
        )
        order = torch.arange(n).reshape(10, k)[:, : min(10, k)].reshape(-1)
        title = f"{prefix.replace('_', ' ')} {name}={v:g} (row = requested class)"
        save_grid(RESULTS / f"{prefix}_grid_{name[0]}{v:g}.png", imgs[order].numpy(), 10, min(10, k), title)
    return rows


def write_outputs(prefix: str, name: str, rows: list[dict], setup: dict, title: str, intro: str) -> None:
    cols = [name, "accuracy", "confidence", "FID to class", "precision", "recall", "spread", "spread judged in class"]
    header = "| " + " | ".join([*cols, "NFE"]) + " |"
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r[name]:g} | {r['accuracy']:.3f} | {r['confidence']:.3f} | {r['fid']:.2f} | "
            f"{r['precision']:.3f} | {r['recall']:.3f} | {r['spread']:.3f} | {r['spread_in_class']:.3f} | "
            f"{r['nfe']:g} |"
        )
    table = "\n".join(lines)
    print(table)
    (RESULTS / f"{prefix}.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
    md = [
        f"# {title}",
        "",
        intro,
        "",
        table,
        "",
        NFE_NOTE.get(prefix, ""),
        "",
        "Setup: " + json.dumps({k_: v for k_, v in setup.items() if k_ != "judge"}),
        "",
        f"Grids: {prefix}_grid_*.png; curve: {prefix}.png.",
    ]
    (RESULTS / f"{prefix}.md").write_text("\n".join(md) + "\n")
    plot(rows, name, RESULTS / f"{prefix}.png")


INTRO = (
    "Fraction of samples the independent (pinned, clean-data) digits classifier assigns to the requested class, "
    "its mean confidence, and diversity vs that class's real digits in its feature space, averaged over the ten "
    "classes. Spread = mean pairwise feature distance of the samples / that of the real digits of the class; "
    "'judged in class' counts only the samples the judge assigns to the requested class (diversity at fixed "
    "fidelity). FID to class is per-class FID with 50 samples in the judge's 64-d features (biased upward by "
    "the small sample; compare across rows only)."
)
NFE_NOTE = {
    "guidance": "NFE counts denoiser calls; each guided call adds one classifier forward + backward pass.",
    "guidance_cfg": "NFE counts denoiser calls; each classifier-free call runs the network on a doubled batch "
    "(requested label + null label), i.e. 2 network passes per NFE.",
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scales", default="0,0.5,1,2,4,8")
    p.add_argument("--num-per-class", type=int, default=50)
    p.add_argument("--sampler", default="ancestral")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--score-steps", type=int, default=3000)
    p.add_argument("--classifier-steps", type=int, default=1000)
    p.add_argument("--cfg", action="store_true", help="also classifier-free guidance with a class-conditional model")
    p.add_argument("--cfg-weights", default="0,0.5,1,2,4")
    p.add_argument("--p-uncond", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=str(RESULTS / "tmp" / "guidance"))
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/guidance.py " + " ".join(argv if argv is not None else sys.argv[1:])

    def log(msg):
        print(msg, flush=True)

    def fresh(d: Path, weights: str) -> bool:
        if not args.retrain and (d / weights).exists():
            return False
        if d.exists():
            import shutil

            shutil.rmtree(d)
        return True

    t_all = time.time()
    score_dir, clf_dir, cond_dir = work / "score", work / "classifier", work / "conditional"
    if fresh(score_dir, "ema.safetensors"):
        train_score_model(score_dir, args.score_steps, args.seed, log)
    if fresh(clf_dir, "model.safetensors"):
        train_classifier(clf_dir, args.classifier_steps, args.seed, log)
    den = load_denoiser(score_dir)
    noisy = load_classifier(clf_dir)
    te = load_data("digits", split="test")
    clf_acc = noise_band_accuracy(noisy, te.data, te.labels, get_process("vp"))
    log("noisy classifier held-out accuracy by noise band: " + json.dumps(clf_acc))
    judge = Judge()
    guide = FlatToImage(noisy)
    scales = [float(s) for s in args.scales.split(",")]
    rows = sweep("scale", scales, lambda s: ClassifierGuidedDenoiser(den, guide, s), judge, args, "guidance", log)
    setup = {
        "data": "digits (scikit-learn 8x8), 10 classes",
        "score_model": f"VP eps MLP on flattened digits, {args.score_steps} steps",
        "noisy_classifier": f"noisy_classifier_unet, {args.classifier_steps} steps, VP noise",
        "noisy_classifier_heldout_accuracy_by_noise": clf_acc,
        "judge": judge.extractor.describe(),
        "sampler": f"{args.sampler}, {args.steps} steps, karras schedule, score-form guidance",
        "samples_per_class": args.num_per_class,
        "seed": args.seed,
        "command": command,
        "seconds": round(time.time() - t_all, 1),
    }
    write_outputs("guidance", "scale", rows, setup, "Classifier guidance on digits", INTRO)
    if args.cfg:
        t_cfg = time.time()
        if fresh(cond_dir, "ema.safetensors"):
            train_conditional_model(cond_dir, args.score_steps, args.seed, args.p_uncond, log)
        cond = load_denoiser(cond_dir)
        weights = [float(w) for w in args.cfg_weights.split(",")]
        rows = sweep(
            "w",
            weights,
            lambda w: ClassifierFreeGuidedDenoiser(cond, w, null_label=10),
            judge,
            args,
            "guidance_cfg",
            log,
        )
        setup_cfg = {
            **{k_: v for k_, v in setup.items() if "classifier" not in k_},
            "score_model": f"class-conditional VP eps MLP, p_uncond={args.p_uncond}, {args.score_steps} steps",
            "sampler": f"{args.sampler}, {args.steps} steps, karras schedule",
            "seconds": round(time.time() - t_cfg, 1),
        }
        write_outputs(
            "guidance_cfg", "w", rows, setup_cfg, "Classifier-free guidance on digits (w = 0: plain conditional)", INTRO
        )
    return 0


def plot(rows, name, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = [r[name] for r in rows]
    xs = [math.log2(v) if v > 0 else -2 for v in s]  # 0 placed at the left edge
    labels = [f"{v:g}" for v in s]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(12, 3.4))
    a.plot(xs, [r["accuracy"] for r in rows], "o-", label="judge accuracy on requested class")
    a.plot(xs, [r["confidence"] for r in rows], "s-", label="judge confidence")
    a.plot(xs, [r["precision"] for r in rows], "^-", label="precision")
    a.set_title("fidelity")
    b.plot(xs, [r["recall"] for r in rows], "o-", label="recall")
    b.plot(xs, [r["spread"] for r in rows], "s-", label="feature spread (rel. to real)")
    b.plot(xs, [r["spread_in_class"] for r in rows], "^-", label="spread of samples judged in class")
    b.set_title("diversity")
    c.plot(xs, [r["fid"] for r in rows], "d-", color="gray", label="FID to the requested class")
    c.set_yscale("log")
    c.set_title("FID to the class's real digits")
    for ax in (a, b, c):
        ax.set_xticks(xs, labels)
        ax.set_xlabel("guidance scale s" if name == "scale" else "guidance weight w")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
