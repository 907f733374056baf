"""Import EDM (Karras et al. 2022) and EDM2 (Karras et al. 2024) network snapshots as scorekit run directories.

Snapshots are the `.pkl` files their training loops write (`network-snapshot-*.pkl`, the released `edm-*.pkl` /
`edm2-*.pkl`, EDM2's post-hoc EMA reconstructions): a pickled dict whose `ema` entry is a `torch_utils.persistence`
object. They are read with `safe_pickle` — nothing stored in the file is executed — and reduced to the class
name, the constructor arguments and a plain state dict, which is checked by name and shape against the scorekit
network built from those arguments (`models/edm_nets.py`, `models/edm2_net.py`).

How each preconditioner maps onto scorekit (D reproduced exactly; tests/test_import_edm.py):
- EDMPrecond   → process `edm` (σ ∈ [max(σ_min, 0.002), min(σ_max, 80)]), parameterization `edm` (σ_data),
                 conditioning `log_sigma`; arch `edm_precond` (precond "edm").
- VPPrecond    → process `vp` (β_min, β_max = β_min + β_d, t_min = ε_t), `eps`, `t999` (needs M = 1000);
                 arch `edm_precond` (precond "vp").
- VEPrecond    → process `ve` (σ_min, σ_max), `eps`, `sigma`; arch `edm_precond` (precond "ve": the wrapper feeds
                 ln(σ/2) to the U-Net and returns −F, so D = x + σ·F as in EDM).
- EDM2 Precond → process `edm` (0.002 … 80), `edm` (σ_data), `log_sigma`; arch `edm2_precond`.
`iDDPMPrecond` (EDM's wrapper of the original ADM checkpoints) is refused: import those with `scorekit import adm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, check_state_dict, save_tensors, write_config
from .common import _image_data_section, _prepare_out, _template
from .safe_pickle import PersistentObject, load_snapshot, module_state_dict

__all__ = ["EDMSnapshot", "read_edm_snapshot", "edm_run_sections", "import_edm"]

# constructor argument order of each wrapper (for positional init_args) and the arguments that are not the U-Net's
_SIGNATURES = {
    "EDMPrecond": [
        "img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_min", "sigma_max", "sigma_data",
        "model_type",
    ],
    "VPPrecond": [
        "img_resolution", "img_channels", "label_dim", "use_fp16", "beta_d", "beta_min", "M", "epsilon_t",
        "model_type",
    ],
    "VEPrecond": ["img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_min", "sigma_max", "model_type"],
    "Precond": ["img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_data", "logvar_channels"],
}  # fmt: skip
_DEFAULTS = {
    "EDMPrecond": {
        "label_dim": 0, "use_fp16": False, "sigma_min": 0.0, "sigma_max": float("inf"), "sigma_data": 0.5,
        "model_type": "DhariwalUNet",
    },
    "VPPrecond": {
        "label_dim": 0, "use_fp16": False, "beta_d": 19.9, "beta_min": 0.1, "M": 1000, "epsilon_t": 1e-5,
        "model_type": "SongUNet",
    },
    "VEPrecond": {"label_dim": 0, "use_fp16": False, "sigma_min": 0.02, "sigma_max": 100.0, "model_type": "SongUNet"},
    "Precond": {"use_fp16": True, "sigma_data": 0.5, "logvar_channels": 128},
}  # fmt: skip
_PRECOND = {"EDMPrecond": "edm", "VPPrecond": "vp", "VEPrecond": "ve"}
_EDM_SAMPLING_RANGE = (0.002, 80.0)  # EDM / EDM2 generate.py defaults


def _plain(v, where: str):
    """JSON-safe copy of a constructor argument (numpy scalars → Python numbers, tuples → lists)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x, where) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x, where) for k, x in v.items()}
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":  # e.g. the latent encoder's scale and bias
            return v.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise CheckpointError(f"{where}: constructor argument of unexpected type {type(v).__name__}")


@dataclass
class EDMSnapshot:
    """What an EDM / EDM2 snapshot holds, as data."""

    family: str  # "edm" | "edm2"
    class_name: str  # EDMPrecond | VPPrecond | VEPrecond | Precond
    kwargs: dict  # every constructor argument, defaults filled in
    state_dict: dict[str, torch.Tensor]
    source: str
    extras: dict = field(default_factory=dict)  # loss, encoder, dataset: for the run's provenance


def _record_fields(rec) -> dict:
    """Numbers and strings of a small persistent record (loss, encoder) for the provenance section."""
    if not isinstance(rec, PersistentObject):
        return {}
    out = {"class_name": rec.class_name}
    for k, v in rec.state.items():
        if k.startswith("_"):
            continue
        try:
            out[k] = _plain(v, rec.class_name)
        except CheckpointError:
            pass
    return out


def read_edm_snapshot(path: str | Path) -> EDMSnapshot:
    """Read a snapshot `.pkl` without executing it; one-line `CheckpointError` on anything unexpected."""
    path = Path(path)
    data = load_snapshot(path)
    src = path.name
    if not isinstance(data, dict) or "ema" not in data:
        raise CheckpointError(f"{src}: not an EDM/EDM2 snapshot (expected a dict with an 'ema' network)")
    net = data["ema"]
    if not isinstance(net, PersistentObject):
        raise CheckpointError(f"{src}: 'ema' is not a persistent network record")
    cls = net.class_name
    if cls == "iDDPMPrecond":
        raise CheckpointError(
            f"{src}: iDDPMPrecond (EDM's wrapper of the original ADM weights) is not supported; "
            "import the guided-diffusion checkpoint with `scorekit import adm`"
        )
    if cls not in _SIGNATURES:
        raise CheckpointError(
            f"{src}: unsupported network class {cls!r} (EDMPrecond, VPPrecond, VEPrecond or EDM2's Precond)"
        )
    args, kwargs = net.init_args, net.init_kwargs
    names = _SIGNATURES[cls]
    if len(args) > len(names):
        raise CheckpointError(f"{src}: {cls} was built with {len(args)} positional arguments, expected ≤ {len(names)}")
    merged = {**_DEFAULTS[cls], **dict(zip(names, args)), **kwargs}
    merged = {str(k): _plain(v, f"{src}: {cls}.{k}") for k, v in merged.items()}
    for key in ("img_resolution", "img_channels", "label_dim"):
        if not isinstance(merged.get(key), int):
            raise CheckpointError(f"{src}: {cls} lacks an integer {key!r} (init arguments not recorded?)")
    family = "edm2" if cls == "Precond" else "edm"
    extras = {
        "loss": _record_fields(data.get("loss_fn")),
        "encoder": _record_fields(data.get("encoder")),
    }
    ds = data.get("dataset_kwargs")
    if isinstance(ds, dict):
        try:
            extras["dataset_kwargs"] = _plain(dict(ds), src)
        except CheckpointError:
            pass
    return EDMSnapshot(family, cls, merged, module_state_dict(net), src, extras)


def edm_run_sections(snap: EDMSnapshot) -> tuple[dict, dict, dict]:
    """(network, process, denoiser) config sections that reproduce the snapshot's D(x, σ)."""
    k = dict(snap.kwargs)
    if snap.family == "edm2":
        sd = float(k.pop("sigma_data"))
        k.pop("use_fp16", None)
        net = {"arch": "edm2_precond", **k}
        process = {"name": "edm", "sigma_min": _EDM_SAMPLING_RANGE[0], "sigma_max": _EDM_SAMPLING_RANGE[1]}
        den = {"parameterization": "edm", "conditioning": "log_sigma", "sigma_data": sd}
    else:
        precond = _PRECOND[snap.class_name]
        k.pop("use_fp16", None)
        if precond == "edm":
            sd = float(k.pop("sigma_data"))
            lo = max(float(k.pop("sigma_min")), _EDM_SAMPLING_RANGE[0])
            hi = min(float(k.pop("sigma_max")), _EDM_SAMPLING_RANGE[1])
            if not 0 < lo < hi:
                raise CheckpointError(f"{snap.source}: EDMPrecond σ range [{lo}, {hi}] is empty")
            process = {"name": "edm", "sigma_min": lo, "sigma_max": hi}
            den = {"parameterization": "edm", "conditioning": "log_sigma", "sigma_data": sd}
        elif precond == "vp":
            beta_d, beta_min, m, eps_t = (float(k.pop(n)) for n in ("beta_d", "beta_min", "M", "epsilon_t"))
            if m != 1000:
                raise CheckpointError(
                    f"{snap.source}: VPPrecond with M={m:g} (scorekit's 999·t conditioning needs M=1000)"
                )
            process = {"name": "vp", "beta_min": beta_min, "beta_max": beta_min + beta_d, "t_min": eps_t}
            den = {"parameterization": "eps", "conditioning": "t999", "sigma_data": 0.5}
        else:
            process = {"name": "ve", "sigma_min": float(k.pop("sigma_min")), "sigma_max": float(k.pop("sigma_max"))}
            den = {"parameterization": "eps", "conditioning": "sigma", "sigma_data": 0.5}
        net = {"arch": "edm_precond", "precond": precond, **k}
    label_dim = int(snap.kwargs["label_dim"])
    den.update({"output_channels": None, "class_conditional": label_dim > 0})
    return net, process, den


def _data_section(snap: EDMSnapshot) -> dict:
    k = snap.kwargs
    shape = [int(k["img_channels"]), int(k["img_resolution"]), int(k["img_resolution"])]
    label_dim = int(k["label_dim"])
    path = str((snap.extras.get("dataset_kwargs") or {}).get("path") or snap.family)
    name = Path(path).name.split(".")[0] or snap.family
    enc = snap.extras.get("encoder") or {}
    if enc.get("class_name", "StandardRGBEncoder") != "StandardRGBEncoder":
        # latent-space EDM2 model: the run generates the encoder's latents (decoding is not part of scorekit)
        return {
            "spec": name,
            "kind": "vector",
            "shape": shape,
            "num_classes": label_dim,
            "transform": {"kind": "vector", "shift": 0.0, "scale": 1.0},
            "encoder": enc,
        }
    return _image_data_section(name, shape, True, label_dim)  # EDM's images are x/127.5 − 1


def import_edm(snapshot: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Convert an EDM / EDM2 snapshot `.pkl` into a run directory (config.json + model.safetensors); returns it."""
    snap = read_edm_snapshot(snapshot)
    net_cfg, process, den = edm_run_sections(snap)
    sd = check_state_dict(_template(net_cfg), snap.state_dict, snap.source)
    data = _data_section(snap)
    out = _prepare_out(out, overwrite)
    save_tensors(out / "model.safetensors", sd, {"source": snap.family, "file": snap.source})
    if (out / "ema.safetensors").exists():
        (out / "ema.safetensors").unlink()
    cfg = {
        "kind": "score_model",
        "data": data,
        "process": process,
        "network": net_cfg,
        "denoiser": den,
        "training": {
            "imported_from": snap.family,
            "snapshot": snap.source,
            "precond": snap.class_name,
            "use_fp16": bool(snap.kwargs.get("use_fp16", False)),
            "weights": "ema",
            **{k: v for k, v in snap.extras.items() if v},
        },
    }
    write_config(out, cfg)
    return out
