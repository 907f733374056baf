"""What a run's config.json holds, its defaults per run kind, and its validation (the loop is `training.train`).

Kinds: "score_model" (sections data, process, network, denoiser, objective, training), "noise_classifier" (data,
process, network, levels, training, accuracy) and "classifier" (data, process, network, classifier, training).
"""

from __future__ import annotations

import math

from .data import Dataset, load_data
from .processes import fit_sigma_max, get_process

__all__ = [
    "DEFAULT_TRAINING",
    "ema_settings",
    "KIND_TRAINING",
    "KINDS",
    "DEFAULT_DENOISER",
    "DEFAULT_PROCESS_SETTINGS",
    "VECTOR_TRAINING",
    "fitted_sigma_range",
    "ema_snapshot_interval",
    "default_objective_options",
    "training_defaults",
    "default_network",
    "default_config",
    "validate_config",
]

DEFAULT_TRAINING = {
    "steps": 2000,
    "batch_size": 128,
    "lr": 2e-4,
    "weight_decay": 0.0,
    "betas": [0.9, 0.999],
    "warmup": 100,
    # The last lr_decay fraction of the run's steps decays the learning rate linearly to zero (0: constant after
    # warm-up; 1: linear decay over the whole run). Its end is training.steps, so a resume that extends the run
    # stretches the decay.
    "lr_decay": 0.0,
    "grad_clip": 1.0,
    # Power-function EMA (ema.py) of relative width ema_sigma_rel: suits any run length. A number in ema_decay
    # (configs written before the power EMA) selects the old fixed-decay EMA instead.
    "ema_sigma_rel": 0.10,
    "ema_decay": None,
    # EMA snapshots (σ_rel 0.05 and 0.10) for post-hoc EMA (`scorekit ema`): None = every max(1, steps // 32)
    # steps, 0 = off.
    "ema_snapshot_every": None,
    "seed": 0,
    "amp": "auto",  # auto: bf16 on CUDA, off on CPU; or none | bf16 (CUDA or CPU) | fp16 (CUDA)
    "compile": False,
    "checkpoint_every": 500,
    "keep_checkpoints": 2,
    "log_every": 50,
    "sample_every": 0,
    "sample_steps": 18,
    "p_uncond": 0.0,  # label dropout for classifier-free guidance
    "nan_policy": "stop",  # stop | skip
    "optimizer": "adamw",  # adamw | adam
    "ema_warmup": False,  # fixed-decay EMA only: decay min(ema_decay, (1 + step)/(10 + step))
}

# Vector data (the residual MLP) trains longer and faster: 8000 steps at lr 1e-3 cost about two CPU-minutes for a
# 2-D set on one core, and with the MLP's Fourier input features (`default_network`) they are what makes thin
# structure come out crisp — rings were a filled disk after 2000 steps at 2e-4 with or without the features
# (benchmarks/results/default_training.md).
VECTOR_TRAINING = {"steps": 8000, "lr": 1e-3}

# The classifiers keep the hyper-parameters they were tuned with: Adam 1e-3 (noise level), AdamW 3e-4 with
# weight decay 0.05 (noisy classifier); no warm-up or clipping; EMA warmed up so that short runs average well.
_CLASSIFIER_TRAINING = {"warmup": 0, "grad_clip": 0.0, "ema_warmup": True, "log_every": 100}
KIND_TRAINING = {
    "score_model": {},
    "noise_classifier": {**_CLASSIFIER_TRAINING, "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0},
    "classifier": {**_CLASSIFIER_TRAINING, "lr": 3e-4, "optimizer": "adamw", "weight_decay": 0.05},
}
KINDS = tuple(KIND_TRAINING)
_NOTES = ("loss", "noise")  # free-text training notes kept in older classifier configs


def ema_settings(sigma_rel: float | None = None, snapshot_every: int | None = None) -> dict:
    """Training-section EMA overrides (the power-function EMA's width, its snapshot interval); {} keeps defaults."""
    out: dict = {}
    if sigma_rel is not None:
        out["ema_sigma_rel"] = float(sigma_rel)
    if snapshot_every is not None:
        out["ema_snapshot_every"] = int(snapshot_every)
    return out


def ema_snapshot_interval(tr: dict) -> int:
    """Steps between EMA snapshots: training.ema_snapshot_every, or max(1, steps // 32) when null (0 = off)."""
    se = tr.get("ema_snapshot_every")
    return max(1, int(tr["steps"]) // 32) if se is None else int(se)


def training_defaults(kind: str = "score_model") -> dict:
    """The default "training" section for a run of `kind`."""
    if kind not in KIND_TRAINING:
        raise ValueError(f"unknown run kind {kind!r} (choose from {', '.join(KINDS)})")
    return {**DEFAULT_TRAINING, **KIND_TRAINING[kind]}


# Preconditioning and training objective that suit each process by default. EDM preconditioning (c_skip, c_out)
# keeps D's error bounded at large σ, where an ε-network's error is multiplied by σ (Karras et al. 2022, §5);
# the EDM objective (ln σ ~ N(P_mean, P_std²), λ(σ) = 1/c_out², eq. 8) spends the training on the noise levels
# where the loss can still be reduced, whatever the process: benchmarks/results/objectives_2d.md (sliced W2 0.084
# vs 0.228 for dsm, floor 0.056) and objectives_digits.md (FID 51 vs 79). The discrete DDPM chain keeps its
# conventional ε-parameterisation on integer steps.
DEFAULT_DENOISER = {
    "ve": {"parameterization": "edm", "conditioning": "log_sigma", "objective": "edm"},
    "vp": {"parameterization": "edm", "conditioning": "log_sigma", "objective": "edm"},
    "subvp": {"parameterization": "edm", "conditioning": "log_sigma", "objective": "edm"},
    "ddpm": {"parameterization": "eps", "conditioning": "index", "objective": "ddpm_simple"},
    "edm": {"parameterization": "edm", "conditioning": "log_sigma", "objective": "edm"},
}

DEFAULT_PROCESS_SETTINGS = {
    "ve": {"sigma_min": 0.01, "sigma_max": 50.0},
    "edm": {"sigma_min": 0.002, "sigma_max": 80.0},
}


def fitted_sigma_range(process: str, x, sigma_data: float) -> dict:
    """Settings of the VE and EDM processes fitted to data `x` (model units) of scale `sigma_data` ({} for the
    others, whose range the β schedule or the discrete chain fixes and whose prior is N(0, I) in x-space).

    σ_max = `processes.fit_sigma_max(x)`: twice the largest distance among the points and the origin (Song & Ermon
    2020, technique 1, with room for the data's offset: the VE prior is N(0, σ_max²·I)); σ_min scales with the data
    (the constants above are for σ_data = 0.5: VE's 0.01, EDM's 0.002). benchmarks/results/sigma_range.md measures
    where sampling should start."""
    if process not in DEFAULT_PROCESS_SETTINGS:
        return {}
    base = DEFAULT_PROCESS_SETTINGS[process]
    smin = float(f"{base['sigma_min'] * max(float(sigma_data), 1e-3) / EDM_SIGMA_DATA:.4g}")
    smax = float(f"{fit_sigma_max(x):.4g}")
    return {"sigma_min": smin, "sigma_max": max(smax, 10 * smin)}


# EDM's log-normal training σ (Karras et al. 2022, Table 1): P_mean = −1.2, P_std = 1.2 for σ_data = 0.5.
EDM_P_MEAN, EDM_P_STD, EDM_SIGMA_DATA = -1.2, 1.2, 0.5


def default_objective_options(objective: str, sigma_data: float) -> dict:
    """Options of the default objective derived from the data: for `edm` the log-normal σ distribution moves with
    the data's scale, P_mean = −1.2 + ln(σ_data / 0.5) (EDM's values are for σ_data = 0.5); none for others."""
    if objective != "edm":
        return {}
    return {
        "p_mean": round(EDM_P_MEAN + math.log(max(float(sigma_data), 1e-3) / EDM_SIGMA_DATA), 4),
        "p_std": EDM_P_STD,
    }


def default_network(
    data: Dataset, class_conditional: bool = False, conditioning: str = "log_sigma", device: str | None = None
) -> dict:
    """Network sized for the data and the device: a small U-Net for 8×8, a real one from 32×32 up; on a CPU
    (`device` "cpu") half the channels (at least 32) and one residual block per resolution, the size the digits
    quickstart trains in minutes (benchmarks/results/quickstart.md). `device` None: the accelerator sizes.
    Vectors: a residual MLP 256 wide × 4 deep with 64 random Fourier features of its input
    (benchmarks/results/default_training.md), wider for data of more than 128 dimensions (twice the dimension, up
    to 1024).

    Noise embedding: random Fourier features for order-1 inputs (t, ¼ln σ), positional for step indices / 999t.
    """
    nc = data.num_classes if class_conditional else 0
    emb = "positional" if conditioning in ("index", "t999", "sigma") else "fourier"
    if data.kind == "vector":
        dim = int(data.shape[0])
        return {
            "arch": "mlp",
            "dim": dim,
            "hidden": 256 if dim <= 128 else min(1024, 64 * math.ceil(2 * dim / 64)),
            "depth": 4,
            "emb_dim": 128,
            "num_classes": nc,
            "embedding": emb,
            # random Fourier features of the (unit-scale, c_in·x) input: thin structure within reach of the MLP
            "input_fourier": 64,
            "input_fourier_scale": 1.0,
        }
    c, h, _ = data.shape
    if h <= 8:
        mult, ch, attn, blocks = [1, 2], 64, [4], 2
    elif h <= 16:
        mult, ch, attn, blocks = [1, 2, 2], 64, [8], 2
    elif h <= 28:
        mult, ch, attn, blocks = [1, 2, 2], 64, [7], 2
    else:
        mult, ch, attn, blocks = [1, 2, 2, 2], 128, [16], 2
    if device is not None and str(device).startswith("cpu"):
        ch, blocks = max(32, ch // 2), 1
    return {
        "arch": "unet",
        "in_channels": int(c),
        "resolution": int(h),
        "model_channels": ch,
        "channel_mult": mult,
        "num_res_blocks": blocks,
        "attn_resolutions": attn,
        "dropout": 0.1 if h > 8 else 0.0,
        "num_classes": nc,
        "embedding": emb,
    }


def default_config(
    data_spec: str, process: str = "vp", *, class_conditional: bool = False, device: str | None = None, **training
) -> dict:
    """A complete, JSON-serialisable config for training a score model on `data_spec` (network sized for `device`,
    see `default_network`)."""
    if process not in DEFAULT_DENOISER:
        raise ValueError(f"unknown process {process!r} (choose from {', '.join(DEFAULT_DENOISER)})")
    data = load_data(data_spec)
    dd = DEFAULT_DENOISER[process]
    if class_conditional and data.labels is None:
        raise ValueError(f"data {data_spec!r} has no labels for a class-conditional model")
    unknown = set(training) - set(DEFAULT_TRAINING)
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    sigma_data = round(float(data.data.float().std()), 4)
    proc = get_process(process, **fitted_sigma_range(process, data.data, sigma_data))
    return {
        "kind": "score_model",
        "data": _data_section(data_spec, data),
        "process": proc.to_config(),
        "network": default_network(data, class_conditional, dd["conditioning"], device),
        "denoiser": {
            "parameterization": dd["parameterization"],
            "conditioning": dd["conditioning"],
            "sigma_data": sigma_data,
            "output_channels": None,
            "class_conditional": bool(class_conditional),
        },
        "objective": dd["objective"],
        "objective_options": default_objective_options(dd["objective"], sigma_data),
        "training": {
            **DEFAULT_TRAINING,
            **(VECTOR_TRAINING if data.kind == "vector" else {}),
            **{k: v for k, v in training.items() if v is not None},
        },
    }


def _data_section(spec: str, data: Dataset) -> dict:
    return {**data.to_config(), "spec": spec, "num_classes": int(data.num_classes or 0)}


_REQUIRED = {
    "score_model": ("data", "process", "network", "denoiser", "training"),
    "noise_classifier": ("data", "process", "network", "levels", "training"),
    "classifier": ("data", "process", "network", "classifier", "training"),
}
_OPTIONAL = {"score_model": (), "noise_classifier": ("score_run", "accuracy"), "classifier": ()}
_DEFAULT_OBJECTIVE = {"noise_classifier": "noise_level", "classifier": "noisy_classifier"}


def validate_config(cfg: dict) -> dict:
    """Check a config for unknown keys, wrong types and impossible values; returns it with defaults filled."""
    if not isinstance(cfg, dict):
        raise ValueError("config must be a JSON object")
    kind = cfg.get("kind", "score_model")
    if kind not in _REQUIRED:
        raise ValueError(f"unknown run kind {kind!r} (choose from {', '.join(KINDS)})")
    unknown = set(cfg) - {"kind", "objective", "objective_options", "provenance", *_REQUIRED[kind], *_OPTIONAL[kind]}
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(sorted(unknown))}")
    for key in _REQUIRED[kind]:
        if not isinstance(cfg.get(key), dict):
            raise ValueError(f"config section {key!r} is missing or not an object")
    tr = {**training_defaults(kind), **cfg["training"]}
    unknown = set(tr) - set(DEFAULT_TRAINING) - set(_NOTES)
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    ints = (
        "steps",
        "batch_size",
        "warmup",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "sample_every",
        "seed",
    )
    for k in ints:
        if isinstance(tr[k], bool) or not isinstance(tr[k], int):
            raise ValueError(f"training.{k} must be an integer, got {tr[k]!r}")
    for k in ("lr", "lr_decay", "weight_decay", "grad_clip", "ema_sigma_rel", "p_uncond"):
        if isinstance(tr[k], bool) or not isinstance(tr[k], (int, float)) or not math.isfinite(tr[k]):
            raise ValueError(f"training.{k} must be a number, got {tr[k]!r}")
    if tr["steps"] <= 0:
        raise ValueError(f"training.steps must be > 0, got {tr['steps']}")
    if tr["batch_size"] <= 0:
        raise ValueError(f"training.batch_size must be > 0, got {tr['batch_size']}")
    if tr["lr"] <= 0:
        raise ValueError(f"training.lr must be > 0, got {tr['lr']}")
    if not 0 <= tr["lr_decay"] <= 1:
        raise ValueError(f"training.lr_decay must be in [0, 1] (a fraction of the steps), got {tr['lr_decay']}")
    if tr["ema_decay"] is not None and (
        isinstance(tr["ema_decay"], bool)
        or not isinstance(tr["ema_decay"], (int, float))
        or not 0 <= tr["ema_decay"] < 1
    ):
        raise ValueError(f"training.ema_decay must be null or in [0, 1), got {tr['ema_decay']!r}")
    if not 0 < tr["ema_sigma_rel"] < 0.28:
        raise ValueError(f"training.ema_sigma_rel must be in (0, 0.28), got {tr['ema_sigma_rel']}")
    se = tr["ema_snapshot_every"]
    if se is not None and (isinstance(se, bool) or not isinstance(se, int) or se < 0):
        raise ValueError(f"training.ema_snapshot_every must be null (auto) or an integer >= 0, got {se!r}")
    if not 0 <= tr["p_uncond"] < 1:
        raise ValueError(f"training.p_uncond must be in [0, 1), got {tr['p_uncond']}")
    if tr["warmup"] < 0 or tr["checkpoint_every"] < 0 or tr["log_every"] < 0 or tr["sample_every"] < 0:
        raise ValueError("training.warmup / checkpoint_every / log_every / sample_every must be >= 0")
    if tr["keep_checkpoints"] < 1:
        raise ValueError("training.keep_checkpoints must be >= 1")
    if tr["amp"] not in ("auto", "none", "bf16", "fp16"):
        raise ValueError(f"training.amp must be auto|none|bf16|fp16, got {tr['amp']!r}")
    if tr["nan_policy"] not in ("stop", "skip"):
        raise ValueError(f"training.nan_policy must be stop|skip, got {tr['nan_policy']!r}")
    if tr["optimizer"] not in ("adamw", "adam"):
        raise ValueError(f"training.optimizer must be adamw|adam, got {tr['optimizer']!r}")
    if not isinstance(tr["ema_warmup"], bool):
        raise ValueError(f"training.ema_warmup must be true or false, got {tr['ema_warmup']!r}")
    if tr["ema_decay"] is not None and "ema_sigma_rel" not in cfg["training"]:
        del tr["ema_sigma_rel"]  # a fixed-decay run (older configs): no σ_rel to report
    cfg = dict(cfg)
    cfg["training"] = tr
    get_process(cfg["process"])  # raises on impossible values (σ_min ≥ σ_max, …)
    default_objective = _DEFAULT_OBJECTIVE.get(kind) or DEFAULT_DENOISER.get(cfg["process"].get("name"), {}).get(
        "objective", "dsm"
    )
    cfg.setdefault("objective", default_objective)
    cfg.setdefault("objective_options", {})
    return cfg
