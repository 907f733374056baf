"""The noise-level classifier of Denoising MCMC (Kim & Ye 2022, Sec. 4): network defaults, the run config, the
accuracy evaluation; training is `training.train` with `classifier_losses.NoiseLevelObjective`."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoint import load_network, read_config, save_tensors, write_config
from ..classifier_losses import NoiseLevelObjective
from ..data import Dataset, DataTransform, load_data
from ..distributed import is_main_process
from ..models.parameterization import bcast
from ..processes import EDM, get_process
from ..run_config import ema_settings, training_defaults
from ..training import train
from .estimators import make_levels


def noise_classifier_network_config(shape: tuple[int, ...], num_levels: int, **overrides) -> dict:
    """The reference CNN for images [C, H, W]; an MLP for vectors [D]."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        cfg = {"arch": "noise_level_cnn", "in_channels": shape[0], "num_levels": int(num_levels)}
    elif len(shape) == 1:
        cfg = {"arch": "noise_level_mlp", "dim": shape[0], "num_levels": int(num_levels)}
    else:
        raise ValueError(f"noise classifier supports images [C, H, W] or vectors [D], not shape {shape}")
    cfg.update(overrides)
    return cfg


@torch.no_grad()
def noise_level_accuracy(
    log_probs: Callable[[Tensor], Tensor],
    data: Tensor,
    levels: Tensor,
    *,
    num: int = 2000,
    generator: torch.Generator | None = None,
    tolerances: tuple[int, ...] = (0, 1, 5, 20),
    batch_size: int = 500,
    device="cpu",
) -> dict:
    """Accuracy of argmax p(σ | x) on x0 + σ_y·ε, y uniform: exact and within ±k levels (with chance rates)."""
    gen = generator if generator is not None else torch.Generator().manual_seed(12345)
    levels = torch.as_tensor(levels, dtype=torch.float64).cpu()
    L = levels.numel()
    objective = NoiseLevelObjective(levels)
    idx = torch.randint(0, data.shape[0], (int(num),), generator=gen)
    hits = {k: 0 for k in tolerances}
    abs_err = 0.0
    for start in range(0, int(num), batch_size):
        x0 = data[idx[start : start + batch_size]].float()
        r = objective.draw(x0.shape[0], x0.shape[1:], gen, dtype=x0.dtype)  # the training distribution
        y = r["level"]
        x = x0 + bcast(levels[y].to(x0.dtype), x0) * r["noise"]
        pred = log_probs(x.to(device)).argmax(1).cpu()
        d = (pred - y).abs()
        abs_err += float(d.sum())
        for k in tolerances:
            hits[k] += int((d <= k).sum())
    out = {"num": int(num), "levels": L, "mean_abs_level_error": abs_err / int(num)}
    for k in tolerances:
        name = "exact" if k == 0 else f"within_{k}"
        out[name] = hits[k] / int(num)
        # chance: a uniform guess against a uniform label, counting the clipped band at the grid's ends
        band = sum(min(L - 1, y + k) - max(0, y - k) + 1 for y in range(L)) / L
        out[f"chance_{name}"] = band / L
    return out


def noise_classifier_config(
    data: Dataset | dict,
    levels: Tensor,
    *,
    process: dict | None = None,
    network: dict | None = None,
    score_run: str | None = None,
    **training,
) -> dict:
    """A kind="noise_classifier" run config for `training.train`: data section, σ grid ("levels" with "values"),
    network (default `noise_classifier_network_config`) and training settings (Adam 1e-3 by default)."""
    levels = torch.as_tensor(levels, dtype=torch.float64).cpu()
    data_cfg = data.to_config() if isinstance(data, Dataset) else dict(data)
    smin, smax = float(levels.min()), float(levels.max())
    cfg = {
        "kind": "noise_classifier",
        "data": data_cfg,
        "process": process if process is not None else EDM(smin, smax).to_config(),
        "network": network or noise_classifier_network_config(tuple(data_cfg["shape"]), levels.numel()),
        "levels": {
            "sigma_min": smin,
            "sigma_max": smax,
            "num": int(levels.numel()),
            "grid": "sigma_min*(sigma_max/sigma_min)**linspace(1, 1e-3, num)",
            "values": levels.tolist(),
        },
        "objective": "noise_level",
        "training": {**training_defaults("noise_classifier"), "loss": "cross_entropy", **training},
    }
    if score_run is not None:
        cfg = {"kind": cfg.pop("kind"), "score_run": score_run, **cfg}
    return cfg


def train_noise_classifier(
    data: Tensor,
    levels: Tensor,
    *,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device="cpu",
    network: dict | None = None,
    log: Callable[[dict], None] | None = None,
    log_every: int = 100,
    out: str | Path | None = None,
):
    """Cross-entropy on x0 + σ_y·ε, y ~ U{0..L−1} (Kim & Ye 2022, Sec. 4) in the one training loop, into run
    directory `out` (a temporary one if None). Returns (EMA network, network config)."""
    if data.ndim < 2 or data.shape[0] < 1:
        raise ValueError("training a noise classifier needs a non-empty [N, *shape] data tensor")
    if int(steps) < 1 or int(batch_size) < 1:
        raise ValueError("steps and batch size must be >= 1")
    kind = "image" if data.ndim == 4 else "vector"
    ds = Dataset(data.float(), None, kind, 0, DataTransform.identity(), "tensor")
    cfg = noise_classifier_config(
        ds,
        levels,
        network=network,
        steps=int(steps),
        batch_size=int(batch_size),
        lr=float(lr),
        seed=int(seed),
        log_every=int(log_every),
        checkpoint_every=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(out) if out is not None else Path(tmp)
        train(cfg, run, device=device, progress=False, data=ds, log_fn=log)
        net = load_network(run, device=device, config=cfg)
    return net, cfg["network"]


def save_noise_classifier_run(out_dir: str | Path, net, config: dict) -> None:
    """Write a kind="noise_classifier" run directory for a network trained elsewhere: config.json + weights."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / "model.safetensors", net.state_dict(), {"kind": "noise_classifier"})
    write_config(out, {**config, "kind": "noise_classifier"})


def _model_range_data(spec: str, run_cfg: dict, split: str):
    """The data in the *score model's* model range (the run's recorded transform), whatever the spec."""
    ds = load_data(spec, split=split)
    transform = run_cfg.get("data", {}).get("transform")
    if transform is None:
        return ds.data.float(), ds
    t = DataTransform.from_config(transform)
    if t.kind != ds.kind:
        raise ValueError(f"data {spec!r} is {ds.kind} data but the run was trained on {t.kind} data")
    x = t.to_model(ds.user_data()).float()
    expected = tuple(run_cfg.get("data", {}).get("shape", x.shape[1:]))
    if tuple(x.shape[1:]) != expected:
        raise ValueError(f"data {spec!r} has sample shape {tuple(x.shape[1:])}, the run expects {expected}")
    return x, ds


def train_noise_classifier_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    data: str | None = None,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device="cpu",
    num_levels: int = 1000,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    eval_num: int = 2000,
    log: Callable[[dict], None] | None = None,
    resume: bool = False,
    checkpoint_every: int = 500,
    progress: bool = False,
    ema_sigma_rel: float | None = None,
    ema_snapshot_every: int | None = None,
) -> dict:
    """Train the noise-level classifier for a score-model run on its data and process (the one training loop: EMA,
    checkpoints, `resume`), then write its accuracy into the kind="noise_classifier" config. Returns the config."""
    if int(steps) < 1 or int(batch_size) < 1 or int(num_levels) < 2 or int(eval_num) < 1:
        raise ValueError("steps, batch size and eval num must be >= 1 and levels >= 2")
    run_cfg = read_config(run_dir)
    if run_cfg.get("kind", "score_model") != "score_model":
        raise ValueError(f"{run_dir} holds a {run_cfg.get('kind')!r}, not a score model run")
    if "process" not in run_cfg:
        raise ValueError(f"{Path(run_dir) / 'config.json'} has no 'process' section")
    process = get_process(run_cfg["process"])
    spec = data or run_cfg.get("data", {}).get("spec")
    if not spec:
        raise ValueError("the run records no data spec; pass --data")
    train_x, ds = _model_range_data(spec, run_cfg, "train")
    try:
        test_x, _ = _model_range_data(spec, run_cfg, "test")
    except ValueError:
        test_x = train_x
    smin = float(sigma_min) if sigma_min is not None else process.sigma_min
    smax = float(sigma_max) if sigma_max is not None else process.sigma_max
    if smax > process.sigma_max * (1 + 1e-6):
        raise ValueError(f"sigma_max {smax:g} exceeds the process's σ_max {process.sigma_max:g}")
    levels = make_levels(smin, smax, num_levels)
    data_cfg = {**run_cfg.get("data", ds.to_config()), "spec": spec}
    train_ds = Dataset(train_x, None, ds.kind, 0, DataTransform.identity(), spec)
    cfg = noise_classifier_config(
        data_cfg,
        levels,
        process=process.to_config(),
        score_run=str(Path(run_dir)),
        steps=int(steps),
        batch_size=int(batch_size),
        lr=float(lr),
        seed=int(seed),
        checkpoint_every=int(checkpoint_every),
        **ema_settings(ema_sigma_rel, ema_snapshot_every),
    )
    cfg["levels"].update(sigma_min=smin, sigma_max=smax)
    out = Path(out_dir)
    res = train(cfg, out, resume=resume, device=device, progress=progress, data=train_ds, log_fn=log)
    cfg = read_config(out)
    if res.stopped_early:
        return cfg
    net = load_network(out, device=device, config=cfg)
    acc = noise_level_accuracy(
        lambda x: torch.log_softmax(net(x), 1),
        test_x,
        levels,
        num=eval_num,
        generator=torch.Generator().manual_seed(int(seed) + 1),
        device=device,
    )
    cfg["accuracy"] = acc
    if is_main_process():
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": res.step, "accuracy": acc}) + "\n")
        write_config(out, cfg)
    return cfg
