"""The noisy classifier p(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021, §4.1): network defaults, the
run config, accuracy per noise band; training is `training.train` with `classifier_losses.NoisyClassifierObjective`."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import load_network
from .classifier_losses import band_name, sample_classifier_t
from .data import Dataset, DataTransform
from .distributed import is_main_process
from .guidance import NOISE_BANDS, NoisyClassifier, TrainedClassifier
from .models.parameterization import CONDITIONINGS, bcast
from .processes import Process, get_process
from .run_config import ema_settings, training_defaults
from .training import train


@torch.no_grad()
def noise_band_accuracy(
    classifier: NoisyClassifier,
    data: Tensor,
    labels: Tensor,
    process: Process,
    generator: torch.Generator | None = None,
    batch_size: int = 512,
) -> dict:
    """Accuracy of p(y | x_t, t) on data noised at t uniform within each band of NOISE_BANDS."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    out = {}
    dev = next(iter(classifier.parameters()), torch.zeros(())).device
    for b in range(len(NOISE_BANDS) - 1):
        correct = 0
        for start in range(0, len(data), batch_size):
            x0 = data[start : start + batch_size]
            y = labels[start : start + batch_size]
            t = sample_classifier_t(process, len(x0), generator, NOISE_BANDS[b], NOISE_BANDS[b + 1])
            sig = process.sigma(t).to(torch.float32)
            x = x0 + bcast(sig, x0) * torch.randn(x0.shape, generator=generator)
            pred = classifier.log_probs(x.to(dev), sig.to(dev)).argmax(1).cpu()
            correct += int((pred == y).sum())
        out[band_name(b)] = correct / max(1, len(data))
    return out


def default_classifier_network(kind: str, shape: tuple[int, ...], num_classes: int) -> dict:
    """U-Net-encoder classifier for images, MLP for vectors."""
    if kind == "image":
        c, h, w = shape
        if h != w:
            raise ValueError(f"the image classifier needs square images, got {h}x{w}")
        mult = [1, 2] if h <= 16 else [1, 2, 2, 2]
        return {
            "arch": "noisy_classifier_unet",
            "in_channels": c,
            "num_classes": num_classes,
            "image_size": h,
            "base_channels": 32,
            "channel_mult": mult,
        }
    dim = int(torch.tensor(shape).prod())
    return {"arch": "noisy_classifier_mlp", "dim": dim, "num_classes": num_classes}


def classifier_config(
    data: dict, process: Process, network: dict, classifier: TrainedClassifier | dict, **training
) -> dict:
    """A kind="classifier" run config for `training.train` (AdamW 3e-4, weight decay 0.05 by default)."""
    c = classifier.classifier_config() if isinstance(classifier, TrainedClassifier) else dict(classifier)
    return {
        "kind": "classifier",
        "data": dict(data),
        "process": process.to_config(),
        "network": network,
        "classifier": c,
        "objective": "noisy_classifier",
        "training": {**training_defaults("classifier"), "noise": "t ~ U(t_min, 1)", **training},
    }


def train_noisy_classifier(
    data: Tensor,
    labels: Tensor,
    process: Process | str | dict,
    *,
    num_classes: int,
    kind: str = "vector",
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 3e-4,
    weight_decay: float = 0.05,
    seed: int = 0,
    device="cpu",
    network: dict | None = None,
    conditioning: str = "t999",
    input_mode: str | None = None,
    out: str | Path | None = None,
    data_config: dict | None = None,
    eval_data: Tensor | None = None,
    eval_labels: Tensor | None = None,
    log_every: int = 100,
    log: Callable[[str], None] | None = print,
    resume: bool = False,
    checkpoint_every: int = 0,
    ema_sigma_rel: float | None = None,
    ema_snapshot_every: int | None = None,
) -> tuple[TrainedClassifier | None, dict]:
    """Train p_φ(y | x_t, t) with `NoisyClassifierObjective` (Dhariwal & Nichol 2021, §4.1) in the one training
    loop into a kind="classifier" run directory `out` (temporary if None), then measure the held-out accuracy per
    noise band (eval.json). Returns (the EMA classifier, summary); (None, {}) if stopped by a signal."""
    process = get_process(process)
    data = torch.as_tensor(data, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if data.shape[0] != labels.shape[0]:
        raise ValueError(f"{data.shape[0]} data points but {labels.shape[0]} labels")
    if data.shape[0] < 2:
        raise ValueError("need at least two labelled examples to train a classifier")
    if int(steps) < 1 or int(batch_size) < 1:
        raise ValueError(f"steps and batch size must be positive, got {steps}, {batch_size}")
    if num_classes < 2 or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1} with at least two classes")
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"unknown conditioning {conditioning!r} (choose from {', '.join(CONDITIONINGS)})")
    if input_mode is None:
        input_mode = "normalized" if process.name in ("ve", "edm") else "process"
    shape = tuple(data.shape[1:])
    net_cfg = dict(network) if network is not None else default_classifier_network(kind, shape, num_classes)
    data_cfg = dict(data_config or {"kind": kind, "shape": list(shape), "num_classes": num_classes})
    clf_section = {"conditioning": conditioning, "num_classes": int(num_classes), "input": input_mode}
    config = classifier_config(
        data_cfg,
        process,
        net_cfg,
        clf_section,
        steps=int(steps),
        batch_size=min(int(batch_size), data.shape[0]),
        lr=float(lr),
        weight_decay=float(weight_decay),
        seed=int(seed),
        log_every=max(1, int(log_every)),
        checkpoint_every=int(checkpoint_every),
        **ema_settings(ema_sigma_rel, ema_snapshot_every),
    )
    transform = DataTransform.from_config(data_cfg["transform"]) if "transform" in data_cfg else None
    ds = Dataset(data, labels, kind, int(num_classes), transform or DataTransform.identity(), data_cfg.get("spec", ""))

    def _log(rec):
        if log is not None:
            bands = " ".join(f"{k}={v:.3f}" for k, v in rec.get("acc_by_noise", {}).items() if v is not None)
            log(f"step {rec['step']}/{steps} loss {rec['loss']:.4f} acc {rec.get('acc', float('nan')):.3f} [{bands}]")

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(out) if out is not None else Path(tmp)
        res = train(config, run_dir, resume=resume, device=device, progress=False, data=ds, log_fn=_log)
        if res.stopped_early:
            return None, {}
        net = load_network(run_dir, device=device, config=config)
        clf = TrainedClassifier(net, process, num_classes, conditioning, input_mode).to(device).eval()
        ev_x = eval_data if eval_data is not None else data
        ev_y = eval_labels if eval_labels is not None else labels
        ev = noise_band_accuracy(clf, torch.as_tensor(ev_x, dtype=torch.float32), ev_y.long(), process)
        split = "held-out" if eval_data is not None else "train"
        summary = {"steps": res.step, "eval_split": split, "acc_by_noise": ev}
        if is_main_process():
            (run_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    if log is not None:
        log("held-out accuracy by noise band: " + " ".join(f"{k}={v:.3f}" for k, v in ev.items()))
    return clf, summary
