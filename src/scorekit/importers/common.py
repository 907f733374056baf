"""Pieces every importer shares: reading weights-only torch files and JSON configs, the image data section, the
meta-device template network, and preparing the output run directory."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, check_state_dict
from ..models.registry import build_network

__all__ = ["read_torch_file", "check_state_dict"]


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
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            IndexError, TypeError, AttributeError) as e:  # fmt: skip
        # a text file or a foreign pickle fails inside the unpickler in many ways
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(f"cannot read {path} as a weights-only torch checkpoint: {msg}") from None


def _strip_prefix(sd: dict, prefix: str = "module.") -> dict:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return dict(sd)


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

    with torch.device("meta"):
        return build_network(dict(net_cfg))
