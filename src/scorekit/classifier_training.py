"""Training the noisy classifier p(y | x_t, t) used by classifier guidance (Dhariwal & Nichol 2021, §4.1)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from .checkpoint import save_tensors, write_config
from .guidance import NOISE_BANDS, NoisyClassifier, TrainedClassifier
from .models.parameterization import CONDITIONINGS, bcast
from .processes import Process, get_process


def _band_of(t: Tensor) -> Tensor:
    edges = torch.tensor(NOISE_BANDS[1:-1], dtype=torch.float64)
    return torch.bucketize(t.to(torch.float64).cpu(), edges, right=True)


def _band_name(i: int) -> str:
    return f"t{NOISE_BANDS[i]:.2f}-{NOISE_BANDS[i + 1]:.2f}"


def _sample_t(process: Process, n: int, generator, lo: float | None = None, hi: float | None = None) -> Tensor:
    from .processes import DDPM

    lo = process.t_min if lo is None else max(lo, process.t_min)
    hi = process.t_max if hi is None else min(hi, process.t_max)
    t = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    if isinstance(process, DDPM):  # integer steps i, t = (i+1)/T
        t = (torch.ceil(t * process.num_steps).clamp(1, process.num_steps)) / process.num_steps
    return t


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
            t = _sample_t(process, len(x0), generator, NOISE_BANDS[b], NOISE_BANDS[b + 1])
            sig = process.sigma(t).to(torch.float32)
            x = x0 + bcast(sig, x0) * torch.randn(x0.shape, generator=generator)
            pred = classifier.log_probs(x.to(dev), sig.to(dev)).argmax(1).cpu()
            correct += int((pred == y).sum())
        out[_band_name(b)] = correct / max(1, len(data))
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
) -> tuple[TrainedClassifier, dict]:
    """Train p_φ(y | x_t, t) on data noised by `process` at t ~ U(t_min, 1) (DDPM: uniform integer steps) with
    cross-entropy (Dhariwal & Nichol 2021, §4.1). Writes a kind="classifier" run directory when `out` is set,
    with log.jsonl (loss and accuracy per noise band) and eval.json (held-out accuracy per band)."""
    from .models.registry import build_network

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
    torch.manual_seed(int(seed))  # parameter initialisation
    gen = torch.Generator().manual_seed(int(seed))
    net = build_network(net_cfg).to(device)
    clf = TrainedClassifier(net, process, num_classes, conditioning, input_mode).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps, batch_size = int(steps), min(int(batch_size), data.shape[0])
    run_dir = Path(out) if out is not None else None
    config = {
        "kind": "classifier",
        "data": dict(data_config or {"kind": kind, "shape": list(shape), "num_classes": num_classes}),
        "process": process.to_config(),
        "network": net_cfg,
        "classifier": clf.classifier_config(),
        "training": {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": int(seed),
            "noise": "t ~ U(t_min, 1)",
        },
    }
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
        (run_dir / "log.jsonl").write_text("")
    nb = len(NOISE_BANDS) - 1
    hits, counts, loss_sum, loss_n = torch.zeros(nb), torch.zeros(nb), 0.0, 0
    order, pos = torch.randperm(data.shape[0], generator=gen), 0
    t0 = time.time()
    net.train()
    for step in range(1, steps + 1):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(data.shape[0], generator=gen), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        x0, y = data[idx], labels[idx]
        t = _sample_t(process, batch_size, gen)
        sig = process.sigma(t).to(torch.float32)
        x = x0 + bcast(sig, x0) * torch.randn(x0.shape, generator=gen)
        logp = clf.log_probs(x.to(device), sig.to(device))
        loss = F.nll_loss(logp, y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        band = _band_of(t)
        correct = (logp.detach().argmax(1).cpu() == y).float()
        hits.index_add_(0, band, correct)
        counts.index_add_(0, band, torch.ones_like(correct))
        loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
        if step % max(1, int(log_every)) == 0 or step == steps:
            acc = {_band_name(b): (float(hits[b] / counts[b]) if counts[b] > 0 else None) for b in range(nb)}
            rec = {
                "step": step,
                "loss": loss_sum / loss_n,
                "acc": float(hits.sum() / counts.sum().clamp(min=1)),
                "acc_by_noise": acc,
                "time_s": round(time.time() - t0, 2),
            }
            if run_dir is not None:
                with open(run_dir / "log.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
            if log is not None:
                bands = " ".join(f"{k}={v:.3f}" for k, v in acc.items() if v is not None)
                log(f"step {step}/{steps} loss {rec['loss']:.4f} acc {rec['acc']:.3f} [{bands}]")
            hits.zero_()
            counts.zero_()
            loss_sum, loss_n = 0.0, 0
    net.eval()
    ev_x = eval_data if eval_data is not None else data
    ev_y = eval_labels if eval_labels is not None else labels
    ev = noise_band_accuracy(clf, torch.as_tensor(ev_x, dtype=torch.float32), ev_y.long(), process)
    summary = {"steps": steps, "eval_split": "held-out" if eval_data is not None else "train", "acc_by_noise": ev}
    if run_dir is not None:
        save_tensors(run_dir / "model.safetensors", net.state_dict(), {"step": str(steps)})
        (run_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    if log is not None:
        log("held-out accuracy by noise band: " + " ".join(f"{k}={v:.3f}" for k, v in ev.items()))
    return clf, summary
