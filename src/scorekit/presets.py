"""Training presets: overrides of `training.default_config` sized for a compute budget, not for a data set.

- ``cpu``: a score model for small images (side ≤ 32, e.g. 28×28 Fashion-MNIST) that trains well within about
  60 CPU-minutes (so also ≤ 60 minutes on 2 cores): a narrow U-Net (32 channels, one residual block per level,
  attention only at the coarsest level), batch 32 (a short budget is better spent on more updates than on larger
  batches), lr 1e-3, EMA 0.999. Its step count (6400) comes from the time per step measured on a 2-core x86
  machine (`CPU_SECONDS_PER_STEP`, 1 thread, 28×28, batch 32).
- ``gpu``: the same images on one modern GPU (bf16 autocast by the loop's ``amp: auto``): DDPM++-like width
  (128 channels, 2 blocks per level, attention at 14×14 and 7×7, dropout 0.1), batch 256, lr 2e-4, EMA 0.9999,
  100k steps (25.6M images, ~430 epochs of 60,000 images).

`preset_config(name, data_spec)` returns ``{"network": {...}, "training": {...}}`` (and ``"process"`` settings
where the preset has them); `apply_preset(config, overrides)` merges them into a full config section by section.
"""

from __future__ import annotations

import copy

__all__ = ["PRESETS", "CPU_SECONDS_PER_STEP", "preset_config", "apply_preset", "preset_network"]

PRESETS = ("cpu", "gpu")
# Measured: CPU seconds per training step of the cpu preset on 28×28 Fashion-MNIST at batch 32 (scorekit.training.
# train, VE process, EDM preconditioning, DSM, EMA; 1 torch thread; 30 steps after 5 warm-up steps; 2-core x86
# machine shared with other jobs): 0.527 s (batch 64: 1.046 s, so the cost is ~16 ms per image).
CPU_SECONDS_PER_STEP = 0.527
CPU_BUDGET_S = 60 * 60
CPU_MARGIN = 0.95  # EMA, logging, checkpoints and slower machines


def preset_network(name: str, shape, num_classes: int = 0, conditioning: str = "log_sigma") -> dict:
    """The preset's U-Net for images of `shape` (C, H, W) with H = W ≤ 32 (levels halve H down to ≤ 8)."""
    if len(shape) != 3 or shape[1] != shape[2] or not 8 <= shape[1] <= 32:
        raise ValueError(f"training presets are for square images of side 8..32, not shape {tuple(shape)}")
    c, h, _ = (int(v) for v in shape)
    levels = 1 + (h > 8) + (h > 16)  # 28 → 28, 14, 7; 16 → 16, 8; 8 → 8
    sides = [-(-h // 2**i) for i in range(levels)]
    emb = "positional" if conditioning in ("index", "t999", "sigma") else "fourier"
    net = {"arch": "unet", "in_channels": c, "resolution": h, "num_classes": int(num_classes), "embedding": emb}
    if name == "cpu":
        net.update(
            {
                "model_channels": 32,
                "channel_mult": [1, 2, 2][:levels],
                "num_res_blocks": 1,
                "attn_resolutions": [sides[-1]],
                "dropout": 0.0,
            }
        )
    else:
        net.update(
            {
                "model_channels": 128,
                "channel_mult": [1, 2, 2][:levels],
                "num_res_blocks": 2,
                "attn_resolutions": sides[-2:] if levels > 1 else sides,
                "dropout": 0.1,
                "num_heads": 4,
            }
        )
    return net


def _cpu_steps() -> int:
    """Steps that fit the CPU budget at the measured cost: 0.95·3600/0.527 → 6400 (205k images, ~3.4 epochs)."""
    return int(CPU_MARGIN * CPU_BUDGET_S / CPU_SECONDS_PER_STEP) // 100 * 100


def preset_config(name: str, data_spec: str, class_conditional: bool = False, conditioning: str = "log_sigma") -> dict:
    """Overrides of `training.default_config(data_spec, …)` for preset `name` ("cpu" or "gpu"): the network sized
    for the data's image shape and the training settings for the budget. Reads the data set only for its shape and
    number of classes (named data sets such as ``fashion-mnist`` through `scorekit.datasets`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    data = _load(data_spec)
    if data.kind != "image":
        raise ValueError(f"training presets are for image data; {data_spec!r} is {data.kind} data")
    if class_conditional and data.labels is None:
        raise ValueError(f"data {data_spec!r} has no labels for a class-conditional model")
    nc = data.num_classes if class_conditional else 0
    network = preset_network(name, data.shape, nc, conditioning)
    if name == "cpu":
        training = {
            "steps": _cpu_steps(),
            "batch_size": 32,
            "lr": 1e-3,
            "warmup": 200,
            "checkpoint_every": 1000,
            "log_every": 100,
        }
    else:
        training = {
            "steps": 100_000,
            "batch_size": 256,
            "lr": 2e-4,
            "warmup": 1000,
            "checkpoint_every": 5000,
            "keep_checkpoints": 3,
            "log_every": 500,
            "amp": "auto",
        }
    if class_conditional:
        training["p_uncond"] = 0.1  # label dropout, so classifier-free guidance works out of the box
    return {"network": network, "training": training}


def apply_preset(config: dict, overrides: dict) -> dict:
    """A copy of `config` with each section of `overrides` merged into it (sections replace keys, not whole
    sections); the network section is replaced outright so no key of another size survives."""
    out = copy.deepcopy(config)
    for section, values in overrides.items():
        if section == "network" or not isinstance(out.get(section), dict):
            out[section] = copy.deepcopy(values)
        else:
            out[section].update(copy.deepcopy(values))
    return out


def _load(data_spec: str):
    from .datasets import is_named_dataset, load_named

    if is_named_dataset(data_spec):
        return load_named(data_spec, "test")  # same shape and classes as train, a sixth of the reading
    from .data import load_data

    return load_data(data_spec)
