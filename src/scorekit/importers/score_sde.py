"""score_sde (Song et al. 2021) `checkpoint_*.pth` → run directory: {"model" (keys prefixed "module."), "ema":
{"shadow_params" in `model.parameters()` order}, "optimizer", "step"}; NCSN++ / DDPM++ networks."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, save_tensors, write_config
from .common import (
    _image_data_section,
    _load_json,
    _prepare_out,
    _strip_prefix,
    _template,
    check_state_dict,
    read_torch_file,
)

__all__ = [
    "SCORE_SDE_CONFIGS",
    "resolve_score_sde_config",
    "ncsnpp_network_config",
    "score_sde_state_dicts",
    "import_score_sde",
]

# --- released configurations ------------------------------------------------------------------------------
# score_sde `configs/{ve,vp,subvp}/*_continuous.py`: model fields that differ from the VE CIFAR-10 NCSN++ base.
_NCSNPP_BASE = {
    "nf": 128,
    "ch_mult": [1, 2, 2, 2],
    "num_res_blocks": 4,
    "attn_resolutions": [16],
    "dropout": 0.1,
    "resamp_with_conv": True,
    "conditional": True,
    "fir": True,
    "fir_kernel": [1, 3, 3, 1],
    "skip_rescale": True,
    "resblock_type": "biggan",
    "progressive": "none",
    "progressive_input": "residual",
    "progressive_combine": "sum",
    "embedding_type": "fourier",
    "fourier_scale": 16,
    "init_scale": 0.0,
    "nonlinearity": "swish",
    "scale_by_sigma": True,
    "sigma_min": 0.01,
    "sigma_max": 50,
    "num_scales": 1000,
    "beta_min": 0.1,
    "beta_max": 20.0,
    "ema_rate": 0.999,
}
_CIFAR10 = {"dataset": "CIFAR10", "image_size": 32, "num_channels": 3, "centered": False}
_DDPMPP = {
    "fir": False,
    "progressive_input": "none",
    "embedding_type": "positional",
    "scale_by_sigma": False,
    "ema_rate": 0.9999,
}


def _sde_entry(sde: str, model_overrides: dict, data: dict) -> dict:
    return {"sde": sde, "continuous": True, "config": {**_NCSNPP_BASE, **model_overrides}, "data": data}


SCORE_SDE_CONFIGS: dict[str, dict] = {
    "cifar10_ncsnpp_continuous": _sde_entry("vesde", {}, _CIFAR10),
    "cifar10_ncsnpp_deep_continuous": _sde_entry("vesde", {"num_res_blocks": 8}, _CIFAR10),
    "celebahq_256_ncsnpp_continuous": _sde_entry(
        "vesde",
        {
            "ch_mult": [1, 1, 2, 2, 2, 2, 2],
            "num_res_blocks": 2,
            "dropout": 0.0,
            "progressive": "output_skip",
            "progressive_input": "input_skip",
            "sigma_max": 348,
            "num_scales": 2000,
        },
        {"dataset": "CelebAHQ", "image_size": 256, "num_channels": 3, "centered": False},
    ),
    "cifar10_ddpmpp_continuous_vp": _sde_entry("vpsde", _DDPMPP, {**_CIFAR10, "centered": True}),
    "cifar10_ddpmpp_deep_continuous_subvp": _sde_entry(
        "subvpsde", {**_DDPMPP, "num_res_blocks": 8}, {**_CIFAR10, "centered": True}
    ),
}


def resolve_score_sde_config(name_or_file: str | dict) -> dict:
    """A built-in score_sde config name, a JSON file or a dict → {"config", "data", "sde", "continuous"}.

    The JSON holds score_sde's `config.model` fields under "config" (or "model") and `config.data` under
    "data"; the SDE under "sde" (vesde / vpsde / subvpsde, or "training": {"sde": …}).
    """
    if isinstance(name_or_file, dict):
        entry = copy.deepcopy(name_or_file)
    elif name_or_file in SCORE_SDE_CONFIGS:
        return copy.deepcopy(SCORE_SDE_CONFIGS[name_or_file])
    else:
        if not str(name_or_file).endswith(".json") and not Path(name_or_file).exists():
            raise ValueError(
                f"unknown score_sde config {name_or_file!r} (built in: {', '.join(SCORE_SDE_CONFIGS)}; or a .json file)"
            )
        entry = _load_json(name_or_file, "score_sde config")
    model = entry.get("config", entry.get("model"))
    data = entry.get("data")
    if not isinstance(model, dict) or not isinstance(data, dict):
        raise ValueError("score_sde config needs 'config' (model fields) and 'data' objects")
    sde = entry.get("sde") or (entry.get("training") or {}).get("sde")
    if sde is None:
        raise ValueError(
            'score_sde config does not say which SDE it was trained with (add "sde": vesde|vpsde|subvpsde)'
        )
    sde = str(sde).lower()
    if sde not in ("vesde", "vpsde", "subvpsde"):
        raise ValueError(f"unknown score_sde sde {sde!r} (vesde, vpsde, subvpsde)")
    if model.get("name", "ncsnpp") != "ncsnpp":
        raise ValueError(f"only score_sde's 'ncsnpp' model family is supported, not {model.get('name')!r}")
    continuous = entry.get("continuous", (entry.get("training") or {}).get("continuous", True))
    if not continuous:
        raise ValueError("only continuous-time score_sde models (*_continuous configs) are supported")
    for key in ("image_size", "num_channels", "centered"):
        if key not in data:
            raise ValueError(f"score_sde config 'data' lacks {key!r}")
    return {"config": {**_NCSNPP_BASE, **model}, "data": data, "sde": sde, "continuous": True}


_NCSNPP_KEYS = (
    "nf",
    "ch_mult",
    "num_res_blocks",
    "attn_resolutions",
    "dropout",
    "resamp_with_conv",
    "conditional",
    "fir",
    "fir_kernel",
    "skip_rescale",
    "resblock_type",
    "progressive",
    "progressive_input",
    "progressive_combine",
    "embedding_type",
    "fourier_scale",
    "init_scale",
    "nonlinearity",
    "scale_by_sigma",
    "sigma_min",
    "sigma_max",
    "num_scales",
)


def ncsnpp_network_config(entry: dict) -> dict:
    """score_sde config → scorekit network config {"arch": "ncsnpp", …} (JSON-serialisable)."""
    m, d = entry["config"], entry["data"]
    net = {"arch": "ncsnpp", "image_size": int(d["image_size"]), "num_channels": int(d["num_channels"])}
    net.update({k: m[k] for k in _NCSNPP_KEYS if k in m})
    net["centered"] = bool(d["centered"])
    return net


def _score_sde_process_and_denoiser(entry: dict) -> tuple[dict, dict]:
    m, sde = entry["config"], entry["sde"]
    if sde == "vesde":
        process = {"name": "ve", "sigma_min": float(m["sigma_min"]), "sigma_max": float(m["sigma_max"]), "t_min": 1e-5}
        if m["embedding_type"] != "fourier":
            raise ValueError("continuous VE models take σ through a Fourier embedding (embedding_type 'fourier')")
        den = {"parameterization": "score", "conditioning": "sigma"}
    else:
        name = "vp" if sde == "vpsde" else "subvp"
        process = {"name": name, "beta_min": float(m["beta_min"]), "beta_max": float(m["beta_max"]), "t_min": 1e-3}
        if m["embedding_type"] != "positional" or m.get("scale_by_sigma", False):
            raise ValueError("continuous VP / sub-VP models take 999·t through a positional embedding, unscaled")
        den = {"parameterization": "eps", "conditioning": "t999"}
    den.update({"sigma_data": 0.5, "output_channels": None, "class_conditional": False})
    return process, den


def score_sde_state_dicts(ckpt, network: torch.nn.Module, source="checkpoint") -> tuple[dict, dict | None]:
    """(raw, EMA) state dicts of a score_sde checkpoint, checked against `network`.

    EMA `shadow_params` hold the trainable parameters in `model.parameters()` order; they are matched to the
    checkpoint's own key order restricted to trainable parameters, and buffers / frozen parameters (σ table,
    Fourier W) are taken from the raw weights.
    """
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{source}: not a score_sde checkpoint (no 'model' entry)")
    raw_in = _strip_prefix(ckpt["model"])
    raw = check_state_dict(network, raw_in, source)
    ema_entry = ckpt.get("ema")
    if ema_entry is None:
        return raw, None
    if not isinstance(ema_entry, dict) or not isinstance(ema_entry.get("shadow_params"), (list, tuple)):
        raise CheckpointError(f"{source}: 'ema' entry has no 'shadow_params' list")
    shadow = list(ema_entry["shadow_params"])
    trainable = {n for n, p in network.named_parameters() if p.requires_grad}
    names = [k for k in raw_in if k in trainable]
    if len(names) != len(shadow):
        raise CheckpointError(
            f"{source}: EMA has {len(shadow)} shadow parameters, the network has {len(names)} trainable parameters"
        )
    ema = dict(raw)
    for i, (k, t) in enumerate(zip(names, shadow)):
        if not torch.is_tensor(t) or tuple(t.shape) != tuple(raw[k].shape):
            shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise CheckpointError(
                f"{source}: EMA shadow parameter {i} ({k!r}) has shape {shape}, expected {tuple(raw[k].shape)}"
            )
        ema[k] = t.detach().to(raw[k].dtype).contiguous()
    return raw, ema


def import_score_sde(
    checkpoint: str | Path, config: str | dict, out: str | Path, *, ema: bool = True, overwrite: bool = False
) -> Path:
    """Convert a score_sde `checkpoint_*.pth` into a run directory; returns it.

    Writes model.safetensors (raw) and ema.safetensors (EMA, used by default when loading) and a config.json
    recording process, conditioning and data range.
    """
    entry = resolve_score_sde_config(config)
    net_cfg = ncsnpp_network_config(entry)
    process, den = _score_sde_process_and_denoiser(entry)
    net = _template(net_cfg)  # validates the config before a large file is read
    ckpt = read_torch_file(checkpoint)
    raw, ema_sd = score_sde_state_dicts(ckpt, net, Path(checkpoint).name)
    out = _prepare_out(out, overwrite)
    d = entry["data"]
    shape = [int(d["num_channels"]), int(d["image_size"]), int(d["image_size"])]
    step = ckpt.get("step")
    meta = {"source": "score_sde", "file": Path(checkpoint).name}
    save_tensors(out / "model.safetensors", raw, meta)
    if ema_sd is not None and ema:
        save_tensors(out / "ema.safetensors", ema_sd, {**meta, "ema": "true"})
    elif (out / "ema.safetensors").exists():
        (out / "ema.safetensors").unlink()
    cfg = {
        "kind": "score_model",
        "data": _image_data_section(d.get("dataset", "images"), shape, bool(d["centered"])),
        "process": process,
        "network": net_cfg,
        "denoiser": den,
        "training": {
            "imported_from": "score_sde",
            "checkpoint": str(Path(checkpoint).name),
            "step": int(step) if isinstance(step, (int, float)) or torch.is_tensor(step) else None,
            "ema_rate": entry["config"].get("ema_rate"),
            "ema_weights": ema_sd is not None and ema,
            "sde": entry["sde"],
        },
    }
    write_config(out, cfg)
    return out
