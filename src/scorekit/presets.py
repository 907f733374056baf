"""Training presets: overrides of `training.default_config` sized for a compute budget, not for a data set.

- ``cpu``: a score model for small images (side ≤ 32, e.g. 28×28 Fashion-MNIST) that trains well within about
  60 CPU-minutes (so also ≤ 60 minutes on 2 cores): a narrow U-Net (32 channels, one residual block per level,
  attention only at the coarsest level), batch 16, lr 1e-3 decayed linearly to zero over the last quarter of the
  steps (`training.lr_decay` 0.25), the power-function EMA (σ_rel 0.1). The forward pass runs in bf16 autocast
  where the CPU computes bf16 in hardware (`cpu_computes_bf16`), float32 elsewhere. The step count is the budget
  over the cost of a step: `scorekit train` times a short pilot of the configured run on the machine it runs on
  (`pilot.time_training_step`; both precisions where bf16 is in hardware, keeping the faster) and `cpu_plan`
  turns that into steps (13,000 on a 2-core Intel Xeon with AMX, 0.25 CPU-s a step); without a pilot the table
  `CPU_SECONDS_PER_STEP`, measured on a 2-core AMD EPYC (1 thread, 28×28, batch 16), gives 20,000 steps in bf16.
  Sample quality was still improving fast at the end of such runs, so the budget goes to updates (batch 16 for
  16,000 steps scored 15.73 against batch 32 for 9,900 steps' 17.92, one 1000-sample FID each, inside that FID's
  seed spread of about ±2; batch 8, lr 2e-3, lr 5e-4 and a wider-deeper net were no better), and decaying the
  learning rate over the last quarter cut the 10,000-sample FID from 11.60 to 9.87 (11.02 to 9.39 with balanced
  labels) at the same cost (`benchmarks/results/fashion_mnist.md`).
- ``gpu``: the same images on one modern GPU (bf16 autocast by the loop's ``amp: auto``): DDPM++-like width
  (128 channels, 2 blocks per level, attention at 14×14 and 7×7, dropout 0.1), batch 256, lr 2e-4, EMA 0.9999,
  100k steps (25.6M images, ~430 epochs of 60,000 images).

`preset_config(name, data_spec)` returns ``{"network": {...}, "training": {...}}`` (and ``"process"`` settings
where the preset has them); `apply_preset(config, overrides)` merges them into a full config section by section.
"""

from __future__ import annotations

import copy

import torch

__all__ = [
    "PRESETS",
    "CPU_SECONDS_PER_STEP",
    "CPU_BUDGET_S",
    "cpu_computes_bf16",
    "cpu_pilot_precisions",
    "cpu_budget_steps",
    "cpu_plan",
    "preset_config",
    "apply_preset",
    "preset_network",
]

PRESETS = ("cpu", "gpu")
# Measured: CPU seconds per training step of the cpu preset on 28×28 Fashion-MNIST at batch 16 (`scorekit train
# --preset cpu --class-conditional`, VP process, EDM preconditioning, EMA; the whole loop, user + system time of the
# process; 1 torch thread; the 2-core AMD EPYC machine with AVX512-BF16), by the forward pass's precision: bf16
# autocast where the CPU computes bf16 in hardware, float32 elsewhere (emulated bf16 is slower than float32, so it is
# never chosen there). bf16: a 16,000-step run, 2719 CPU-s; none: 3.68 steps/s over a 400-step run.
CPU_SECONDS_PER_STEP = {"bf16": 0.170, "none": 0.275}
CPU_BUDGET_S = 60 * 60
CPU_MARGIN = 0.95  # EMA, logging, checkpoints and slower machines


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (AVX512-BF16 or AMX), where oneDNN's bf16 convolutions make
    a training step of the cpu preset 1.5× faster than float32; without it bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))
    except Exception:  # noqa: BLE001 — a probe of a private API: anything unexpected means "no"
        return False


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


def cpu_budget_steps(seconds_per_step: float, budget_s: float = CPU_BUDGET_S) -> int:
    """Steps of `seconds_per_step` CPU-seconds each that fit `CPU_MARGIN` of the budget, in whole thousands and at
    least 1000: the table's 0.170 CPU-s in bf16 gives 0.95·3600/0.170 → 20,000 (320k images, ~5.3 epochs of
    60,000)."""
    s = float(seconds_per_step)
    if not (s > 0 and s < float("inf")):
        raise ValueError(f"seconds per step must be a positive number, not {seconds_per_step!r}")
    return max(1000, int(CPU_MARGIN * budget_s / s) // 1000 * 1000)


def cpu_pilot_precisions() -> tuple[str, ...]:
    """The precisions a pilot should time for the cpu preset: bf16 and float32 where the CPU computes bf16 in
    hardware (which is faster differs between CPUs), float32 alone where bf16 would be emulated."""
    return ("bf16", "none") if cpu_computes_bf16() else ("none",)


def cpu_plan(seconds_per_step: dict[str, float], budget_s: float = CPU_BUDGET_S) -> tuple[str, int]:
    """(precision, steps) of the cpu preset from measured CPU-seconds per step by precision ("bf16", "none"): the
    faster precision (float32 on a tie) and the steps it fits in the budget."""
    if not seconds_per_step:
        raise ValueError("no pilot timings")
    amp = min(sorted(seconds_per_step, key=lambda a: a != "none"), key=lambda a: seconds_per_step[a])
    return amp, cpu_budget_steps(seconds_per_step[amp], budget_s)


def _cpu_steps(amp: str) -> int:
    return cpu_budget_steps(CPU_SECONDS_PER_STEP[amp])


def preset_config(name: str, data_spec: str, class_conditional: bool = False, conditioning: str = "log_sigma") -> dict:
    """Overrides of `training.default_config(data_spec, …)` for preset `name` ("cpu" or "gpu"): the network sized
    for the data's image shape and the training settings for the budget (the cpu preset's precision and steps from
    the table `CPU_SECONDS_PER_STEP`; `scorekit train` replaces them by a pilot's, see `cpu_plan`). Reads the data
    set only for its shape and number of classes (named data sets such as ``fashion-mnist`` through
    `scorekit.datasets`)."""
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
        amp = "bf16" if cpu_computes_bf16() else "none"
        training = {
            "steps": _cpu_steps(amp),
            "amp": amp,
            "batch_size": 16,
            "lr": 1e-3,
            "lr_decay": 0.25,
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
