"""guided-diffusion (Dhariwal & Nichol 2021) ADM U-Net and noisy-classifier `.pt` state dicts → run directories."""

from __future__ import annotations

import copy
import shlex
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
    "ADM_CONFIGS",
    "resolve_adm_config",
    "adm_unet_network_config",
    "adm_classifier_network_config",
    "import_adm",
]

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
