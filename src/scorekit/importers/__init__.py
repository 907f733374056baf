"""Import published score models into scorekit run directories.

- score_sde (Song et al. 2021): `checkpoint_*.pth` = {"model" (keys prefixed "module."), "ema": {"shadow_params"
  in `model.parameters()` order, trainable parameters only}, "optimizer", "step"}; NCSN++ / DDPM++ networks.
- guided-diffusion (Dhariwal & Nichol 2021): ADM U-Net and noisy-classifier `.pt` state dicts.

Files are read with `torch.load(..., weights_only=True)` only. Names and shapes are checked against the network
built from the config; the first offending key is named in a one-line `CheckpointError`. The result is an
ordinary run directory (config.json + model/ema.safetensors) that every sampler, DLG, guidance, likelihood and
evaluation use unchanged.

Conditioning recorded for the denoiser wrapper (see models/parameterization.py):
- VE NCSN++ (Fourier σ embedding, scale-by-σ): network(x, σ) is the score → parameterization "score",
  conditioning "sigma", c_in = 1.
- VP / sub-VP DDPM++ (continuous): network(s·x, 999·t) predicts ε → "eps", "t999".
- ADM: network(s·x, step) predicts ε in its first C channels (learned variance in the other C) → "eps",
  "index" on the `ddpm` process (T steps, linear or cosine β), `output_channels` C.
"""

from __future__ import annotations

import copy
import json
import pickle
import shlex
import zipfile
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, save_tensors, write_config

__all__ = [
    "SCORE_SDE_CONFIGS",
    "ADM_CONFIGS",
    "resolve_score_sde_config",
    "resolve_adm_config",
    "ncsnpp_network_config",
    "adm_unet_network_config",
    "adm_classifier_network_config",
    "read_torch_file",
    "score_sde_state_dicts",
    "check_state_dict",
    "import_score_sde",
    "import_adm",
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

# guided-diffusion README flags of the released models (model_and_diffusion / classifier defaults elsewhere).
_ADM_MODEL = "--attention_resolutions 32,16,8 --diffusion_steps 1000 --learn_sigma True --resblock_updown True "
_ADM_MODEL += "--use_fp16 True --use_scale_shift_norm True"
_ADM_CLF = "--classifier_attention_resolutions 32,16,8 --classifier_width 128 --classifier_pool attention "
_ADM_CLF += "--classifier_resblock_updown True --classifier_use_scale_shift_norm True"
ADM_CONFIGS: dict[str, dict] = {
    "adm_imagenet64_cond": {
        "kind": "model",
        "flags": f"{_ADM_MODEL} --class_cond True --dropout 0.1 --image_size 64 --noise_schedule cosine "
        "--num_channels 192 --num_head_channels 64 --num_res_blocks 3 --use_new_attention_order True",
    },
    "adm_imagenet128_cond": {
        "kind": "model",
        "flags": f"{_ADM_MODEL} --class_cond True --image_size 128 --noise_schedule linear --num_channels 256 "
        "--num_heads 4 --num_res_blocks 2",
    },
    "adm_imagenet256_uncond": {
        "kind": "model",
        "flags": f"{_ADM_MODEL} --class_cond False --image_size 256 --noise_schedule linear --num_channels 256 "
        "--num_head_channels 64 --num_res_blocks 2",
    },
    "adm_classifier64": {"kind": "classifier", "flags": f"{_ADM_CLF} --image_size 64 --classifier_depth 4"},
    "adm_classifier128": {"kind": "classifier", "flags": f"{_ADM_CLF} --image_size 128 --classifier_depth 2"},
}
# the released file names as aliases
_ADM_ALIASES = {
    "64x64_diffusion": "adm_imagenet64_cond",
    "128x128_diffusion": "adm_imagenet128_cond",
    "256x256_diffusion_uncond": "adm_imagenet256_uncond",
    "64x64_classifier": "adm_classifier64",
    "128x128_classifier": "adm_classifier128",
}

# guided-diffusion script_util defaults for the flags above
_ADM_MODEL_DEFAULTS = {
    "image_size": 64,
    "num_channels": 128,
    "num_res_blocks": 2,
    "num_heads": 4,
    "num_heads_upsample": -1,
    "num_head_channels": -1,
    "attention_resolutions": "16,8",
    "channel_mult": "",
    "dropout": 0.0,
    "class_cond": False,
    "use_checkpoint": False,
    "use_scale_shift_norm": True,
    "resblock_updown": False,
    "use_fp16": False,
    "use_new_attention_order": False,
    "learn_sigma": False,
    "diffusion_steps": 1000,
    "noise_schedule": "linear",
}
_ADM_CLASSIFIER_DEFAULTS = {
    "image_size": 64,
    "classifier_use_fp16": False,
    "classifier_width": 128,
    "classifier_depth": 2,
    "classifier_attention_resolutions": "32,16,8",
    "classifier_use_scale_shift_norm": True,
    "classifier_resblock_updown": True,
    "classifier_pool": "attention",
    "diffusion_steps": 1000,
    "noise_schedule": "linear",
}
_ADM_CHANNEL_MULT = {512: [0.5, 1, 1, 2, 2, 4, 4], 256: [1, 1, 2, 2, 4, 4], 128: [1, 1, 2, 3, 4], 64: [1, 2, 3, 4]}


def _load_json(path: str | Path, what: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {str(path)!r} is neither a built-in config name nor a JSON file")
    try:
        obj = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {p}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what} {p}: expected a JSON object")
    return obj


# --- score_sde ----------------------------------------------------------------------------------------------
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


def _image_data_section(dataset: str, shape: list[int], centered: bool, num_classes: int = 0) -> dict:
    """The run's data section. Model range is [-1, 1] (centered) or [0, 1] (score_sde's data.centered=False)."""
    return {
        "spec": str(dataset).lower(),
        "kind": "image",
        "shape": [int(s) for s in shape],
        "num_classes": int(num_classes),
        # DataTransform: x_model = (x_user − shift) / scale with user range [0, 1]
        "transform": {"kind": "image", "shift": 0.0 if not centered else 0.5, "scale": 1.0 if not centered else 0.5},
    }


def read_torch_file(path: str | Path):
    """`torch.load(path, weights_only=True)` on CPU; any failure becomes a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as e:
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(f"cannot read {path} as a weights-only torch checkpoint: {msg}") from None


def _strip_prefix(sd: dict, prefix: str = "module.") -> dict:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return dict(sd)


def check_state_dict(network: torch.nn.Module, sd: dict, source) -> dict:
    """Compare a state dict with the network in the network's order; the first missing, mis-shaped or
    unexpected key gives a one-line CheckpointError. Returns the tensors cast to the network's dtypes."""
    if not isinstance(sd, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise CheckpointError(f"{source}: not a state dict of named tensors")
    own = network.state_dict()
    out = {}
    for k, v in own.items():
        if k not in sd:
            raise CheckpointError(f"{source}: missing weight {k!r} (checkpoint and config disagree)")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: weight {k!r} has shape {tuple(sd[k].shape)}, the config's network expects {tuple(v.shape)}"
            )
        out[k] = sd[k].detach().to(v.dtype if v.is_floating_point() else sd[k].dtype).contiguous()
    for k in sd:
        if k not in own:
            raise CheckpointError(f"{source}: unexpected weight {k!r} (checkpoint and config disagree)")
    return out


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


def _prepare_out(out: str | Path, overwrite: bool) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    if out.is_dir() and (out / "config.json").exists() and not overwrite:
        raise ValueError(f"--out {out} already holds a run (config.json); choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _template(net_cfg: dict) -> torch.nn.Module:
    """The network built on the meta device: names, shapes, dtypes and trainability, no memory."""
    from ..models.registry import build_network

    with torch.device("meta"):
        return build_network(dict(net_cfg))


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


# --- guided-diffusion (ADM) ---------------------------------------------------------------------------------
def _parse_flags(flags: str) -> dict:
    toks = shlex.split(flags)
    out: dict = {}
    i = 0
    while i < len(toks):
        t = toks[i]
        if not t.startswith("--") or i + 1 >= len(toks):
            raise ValueError(f"bad guided-diffusion flags near {t!r} (expected --name value pairs)")
        v = toks[i + 1]
        if v in ("True", "False"):
            val: object = v == "True"
        else:
            try:
                val = int(v)
            except ValueError:
                try:
                    val = float(v)
                except ValueError:
                    val = v
        out[t[2:]] = val
        i += 2
    return out


def resolve_adm_config(name_or_file: str | dict, role: str = "model") -> dict:
    """A released ADM name (or file name alias), a JSON file or dict → {"kind", "args"} with guided-diffusion's
    script arguments (`flags` string, `kwargs` of create_model / create_classifier) or direct constructor
    arguments (`unet_kwargs` / `classifier_kwargs`, plus optional `diffusion_steps`, `noise_schedule`)."""
    if isinstance(name_or_file, dict):
        entry = copy.deepcopy(name_or_file)
    else:
        name = _ADM_ALIASES.get(str(name_or_file), str(name_or_file))
        if name in ADM_CONFIGS:
            entry = copy.deepcopy(ADM_CONFIGS[name])
        elif str(name_or_file).endswith(".json") or Path(name_or_file).exists():
            entry = _load_json(name_or_file, "ADM config")
        else:
            raise ValueError(
                f"unknown ADM config {name_or_file!r} (built in: {', '.join(ADM_CONFIGS)}; or a .json file)"
            )
    direct_key = "unet_kwargs" if role == "model" else "classifier_kwargs"
    schedule = {k: entry[k] for k in ("diffusion_steps", "noise_schedule") if k in entry}
    if direct_key in entry:
        return {"kind": role, "direct": dict(entry[direct_key]), "args": schedule}
    args: dict = {}
    if "flags" in entry:
        args.update(_parse_flags(entry["flags"]))
    if isinstance(entry.get("kwargs"), dict):
        args.update(entry["kwargs"])
    args.update(schedule)
    if not args:
        raise ValueError(f"ADM config has neither 'flags', 'kwargs' nor '{direct_key}'")
    kind = entry.get("kind") or ("classifier" if any(k.startswith("classifier_") for k in args) else "model")
    if kind != role:
        raise ValueError(f"ADM config describes a {kind}, but a {role} config is needed here")
    return {"kind": role, "args": args}


def _attention_ds(res: str | list, image_size: int) -> list[int]:
    items = res.split(",") if isinstance(res, str) else list(res)
    return [image_size // int(r) for r in items if str(r).strip()]


def adm_unet_network_config(resolved: dict) -> dict:
    """guided-diffusion create_model arguments → {"arch": "adm_unet", …} (UNetModel keywords)."""
    if "direct" in resolved:
        return {"arch": "adm_unet", **resolved["direct"]}
    a = {**_ADM_MODEL_DEFAULTS, **resolved["args"]}
    size = int(a["image_size"])
    if a["channel_mult"]:
        mult = [float(c) if "." in str(c) else int(c) for c in str(a["channel_mult"]).split(",")]
    elif size in _ADM_CHANNEL_MULT:
        mult = list(_ADM_CHANNEL_MULT[size])
    else:
        raise ValueError(f"unsupported ADM image size {size} (64, 128, 256, 512, or give channel_mult)")
    return {
        "arch": "adm_unet",
        "image_size": size,
        "in_channels": 3,
        "model_channels": int(a["num_channels"]),
        "out_channels": 6 if a["learn_sigma"] else 3,
        "num_res_blocks": int(a["num_res_blocks"]),
        "attention_resolutions": _attention_ds(a["attention_resolutions"], size),
        "dropout": float(a["dropout"]),
        "channel_mult": mult,
        "num_classes": 1000 if a["class_cond"] else None,
        "num_heads": int(a["num_heads"]),
        "num_head_channels": int(a["num_head_channels"]),
        "num_heads_upsample": int(a["num_heads_upsample"]),
        "use_scale_shift_norm": bool(a["use_scale_shift_norm"]),
        "resblock_updown": bool(a["resblock_updown"]),
        "use_new_attention_order": bool(a["use_new_attention_order"]),
    }


def adm_classifier_network_config(resolved: dict) -> dict:
    """guided-diffusion create_classifier arguments → {"arch": "adm_classifier", …} (EncoderUNetModel keywords)."""
    if "direct" in resolved:
        return {"arch": "adm_classifier", **resolved["direct"]}
    a = {**_ADM_CLASSIFIER_DEFAULTS, **resolved["args"]}
    size = int(a["image_size"])
    if size not in _ADM_CHANNEL_MULT:
        raise ValueError(f"unsupported ADM classifier image size {size} (64, 128, 256, 512)")
    return {
        "arch": "adm_classifier",
        "image_size": size,
        "in_channels": 3,
        "model_channels": int(a["classifier_width"]),
        "out_channels": 1000,
        "num_res_blocks": int(a["classifier_depth"]),
        "attention_resolutions": _attention_ds(a["classifier_attention_resolutions"], size),
        "channel_mult": list(_ADM_CHANNEL_MULT[size]),
        "num_head_channels": 64,
        "use_scale_shift_norm": bool(a["classifier_use_scale_shift_norm"]),
        "resblock_updown": bool(a["classifier_resblock_updown"]),
        "pool": str(a["classifier_pool"]),
    }


def _adm_process(resolved: dict) -> dict:
    a = resolved["args"]
    steps = int(a.get("diffusion_steps", 1000))
    schedule = str(a.get("noise_schedule", "linear"))
    if schedule not in ("linear", "cosine"):
        raise ValueError(f"unsupported ADM noise_schedule {schedule!r} (linear, cosine)")
    # guided-diffusion scales the linear schedule's end points by 1000/T
    scale = 1000.0 / steps
    return {
        "name": "ddpm",
        "num_steps": steps,
        "schedule": schedule,
        "beta_start": scale * 1e-4,
        "beta_end": scale * 0.02,
    }


def _load_plain_state_dict(path: str | Path, network: torch.nn.Module) -> dict:
    sd = read_torch_file(path)
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict) and not torch.is_tensor(sd["model"]):
        sd = sd["model"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{Path(path).name}: not a state dict")
    return check_state_dict(network, _strip_prefix(sd), Path(path).name)


def import_adm(
    model: str | Path,
    config: str | dict,
    out: str | Path,
    *,
    classifier: str | Path | None = None,
    classifier_config: str | dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert a guided-diffusion U-Net `.pt` (and optionally its noisy classifier) into a run directory.

    The classifier goes to `OUT/classifier/` as a run of kind "classifier" whose config is
    {"kind", "network": {"arch": "adm_classifier", …}, "process", "classifier": {"conditioning": "index",
    "num_classes", "input": "process"}, "data"}: logits = net(s·x_σ, step index(σ)).
    """
    resolved = resolve_adm_config(config, "model")
    net_cfg = adm_unet_network_config(resolved)
    process = _adm_process(resolved)
    clf_cfg = None
    if classifier is not None:
        if classifier_config is None:
            raise ValueError("--classifier needs --classifier-config NAME|FILE.json")
        clf_resolved = resolve_adm_config(classifier_config, "classifier")
        clf_cfg = adm_classifier_network_config(clf_resolved)
    elif classifier_config is not None:
        raise ValueError("--classifier-config given without --classifier")
    net = _template(net_cfg)
    clf_net = _template(clf_cfg) if clf_cfg is not None else None
    sd = _load_plain_state_dict(model, net)
    clf_sd = None
    if clf_cfg is not None:
        if int(clf_cfg["image_size"]) != int(net_cfg["image_size"]):
            raise ValueError(
                f"classifier image size {clf_cfg['image_size']} differs from the model's {net_cfg['image_size']}"
            )
        clf_sd = _load_plain_state_dict(classifier, clf_net)
    out = _prepare_out(out, overwrite)
    channels = int(net_cfg.get("in_channels", 3))
    out_channels = int(net_cfg.get("out_channels", channels))
    size = int(net_cfg["image_size"])
    num_classes = int(net_cfg.get("num_classes") or 0)
    learned = out_channels == 2 * channels
    save_tensors(out / "model.safetensors", sd, {"source": "guided-diffusion", "file": Path(model).name})
    if (out / "ema.safetensors").exists():
        (out / "ema.safetensors").unlink()
    cfg = {
        "kind": "score_model",
        "data": _image_data_section("imagenet", [channels, size, size], True, num_classes),
        "process": process,
        "network": net_cfg,
        "denoiser": {
            "parameterization": "eps",
            "conditioning": "index",
            "sigma_data": 0.5,
            "output_channels": channels if learned else None,
            "class_conditional": num_classes > 0,
            "variance": "learned_range" if learned else "fixed",
        },
        "training": {"imported_from": "guided-diffusion", "checkpoint": Path(model).name},
    }
    write_config(out, cfg)
    if clf_cfg is not None:
        clf_dir = out / "classifier"
        clf_dir.mkdir(exist_ok=True)
        save_tensors(
            clf_dir / "model.safetensors", clf_sd, {"source": "guided-diffusion", "file": Path(classifier).name}
        )
        write_config(
            clf_dir,
            {
                "kind": "classifier",
                "data": _image_data_section("imagenet", [channels, size, size], True, int(clf_cfg["out_channels"])),
                "process": process,  # the classifier is fed the model's step indices
                "network": clf_cfg,
                "classifier": {
                    "conditioning": "index",
                    "num_classes": int(clf_cfg["out_channels"]),
                    "input": "process",
                },
                "training": {"imported_from": "guided-diffusion", "checkpoint": Path(classifier).name},
            },
        )
    return out


from .diffusers import export_diffusers as export_diffusers  # noqa: E402  (diffusers UNet2DModel pipelines)
from .diffusers import import_diffusers as import_diffusers  # noqa: E402
from .edm import import_edm  # noqa: E402  (EDM / EDM2 snapshots; edm.py uses the helpers above)

__all__ += ["import_edm"]
