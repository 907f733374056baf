"""Run directories: config.json + safetensors weights, written atomically, verified on load. No pickles.

Layout of a run directory::

    config.json            what was trained: data, process, network, denoiser, training settings
    model.safetensors      raw weights (latest)
    ema.safetensors        EMA weights (latest)
    state.safetensors      optimizer moments, step, RNG states (latest)
    checkpoints/step_N/    the last K complete checkpoints (same three files)
    log.jsonl              one JSON object per logged step

Every safetensors file carries a SHA-256 of its tensor bytes in its metadata, checked on load, so a flipped
byte or a truncated file is refused with a one-line `CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .models.parameterization import denoiser_from_config
from .models.registry import build_network

__all__ = [
    "truncate_log",
    "drop_snapshots_after",
    "CheckpointError",
    "save_tensors",
    "load_tensors",
    "read_config",
    "write_config",
    "write_json_atomic",
    "save_checkpoint",
    "latest_checkpoint",
    "check_state_dict",
    "load_state_dict_strict",
    "load_network",
    "load_denoiser",
    "optimizer_to_tensors",
    "optimizer_from_tensors",
]


class CheckpointError(ValueError):
    """A checkpoint or run directory that cannot be used (missing, corrupt, or mismatched)."""


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _atomic_replace(tmp: Path, dest: Path) -> None:
    """fsync, give the temp file the mode of every other output (mkstemp makes 0600), rename over `dest`."""
    from .outputs import set_output_mode

    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    set_output_mode(tmp)
    os.replace(tmp, dest)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Write a safetensors file atomically (temp file in the same folder + rename), with a checksum."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()}
    meta["sha256"] = _digest(tensors)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        _atomic_replace(Path(tmp), path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_tensors(path: str | Path, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a safetensors file and its metadata; refuse missing, truncated or altered files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"corrupt or truncated checkpoint {path}: {msg}") from None
    if verify and "sha256" in meta and _digest(tensors) != meta["sha256"]:
        raise CheckpointError(f"checksum mismatch in {path}: the file was altered or damaged")
    return tensors, meta


def write_json_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
    _atomic_replace(Path(tmp), path)


def write_config(run_dir: str | Path, config: dict, settings: dict | None = None) -> None:
    """Write RUN/config.json with a fresh `provenance` key (the command that wrote it — train, train --resume,
    import, … — versions, time, and any `settings` worth keeping, such as a preset's pilot), which
    `provenance.config_sha256` leaves out of the config's hash."""
    from .provenance import provenance

    extra = {k: v for k, v in (settings or {}).items() if k != "kind"}
    config = {**config, "provenance": provenance(kind=config.get("kind", "score_model"), **extra)}
    write_json_atomic(Path(run_dir) / "config.json", config)


def read_config(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    p = run_dir / "config.json"
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a directory (a run directory holds config.json and the weights)")
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}")
    if not p.is_file():
        raise CheckpointError(f"not a run directory (no config.json): {run_dir}")
    try:
        cfg = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt config {p}: {e}") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"corrupt config {p}: not a JSON object")
    return cfg


# --- optimizer state as flat tensors --------------------------------------------------------------------
def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str = "optim.") -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            tensors[f"{prefix}{idx}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict, meta: dict, prefix: str = "optim.") -> None:
    groups = meta["param_groups"]
    if isinstance(groups, str):
        groups = json.loads(groups)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if not k.startswith(prefix):
            continue
        idx, name = k[len(prefix) :].split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups})


# --- whole checkpoints ------------------------------------------------------------------------------------
def save_checkpoint(run_dir: str | Path, step: int, files: dict[str, tuple[dict, dict]], keep: int = 2) -> Path:
    """Write {name: (tensors, metadata)} as checkpoints/step_N/NAME.safetensors (a complete folder appears
    atomically by rename), copy to the run directory's top level, and keep the last `keep` step folders."""
    run_dir = Path(run_dir)
    ck_root = run_dir / "checkpoints"
    ck_root.mkdir(parents=True, exist_ok=True)
    final = ck_root / f"step_{int(step):08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step_{int(step):08d}.", dir=ck_root))
    os.chmod(tmp, _dir_mode())  # mkdtemp makes 0700; a step folder gets the mode of any other folder
    try:
        for name, (tensors, meta) in files.items():
            save_tensors(tmp / f"{name}.safetensors", tensors, {**meta, "step": str(int(step))})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for name in files:
        src = final / f"{name}.safetensors"
        fd, t = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=run_dir)
        os.close(fd)
        shutil.copyfile(src, t)
        _atomic_replace(Path(t), run_dir / f"{name}.safetensors")
    steps = sorted(p for p in ck_root.iterdir() if p.is_dir() and p.name.startswith("step_"))
    for old in steps[: max(0, len(steps) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _dir_mode() -> int:
    from .outputs import output_mode

    return output_mode(directory=True)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoints/step_N folder, or None."""
    ck_root = Path(run_dir) / "checkpoints"
    if not ck_root.is_dir():
        return None
    steps = sorted(p for p in ck_root.iterdir() if p.is_dir() and p.name.startswith("step_"))
    return steps[-1] if steps else None


def check_state_dict(module: torch.nn.Module, tensors: dict, source: str | Path) -> dict:
    """Compare named tensors with the module's state dict in the module's order: the first missing, mis-shaped or
    unexpected key gives a one-line CheckpointError. Returns the tensors cast to the module's floating dtypes."""
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in tensors.items()):
        raise CheckpointError(f"{source}: not a state dict of named tensors")
    own = module.state_dict()
    out = {}
    for k, v in own.items():
        if k not in tensors:
            raise CheckpointError(f"{source}: missing weight {k!r} (checkpoint and config disagree)")
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: weight {k!r} has shape {tuple(tensors[k].shape)}, the network expects {tuple(v.shape)}"
            )
        t = tensors[k].detach()
        out[k] = t.to(v.dtype if v.is_floating_point() else t.dtype).contiguous()
    for k in tensors:
        if k not in own:
            raise CheckpointError(f"{source}: unexpected weight {k!r} (checkpoint and config disagree)")
    return out


def load_state_dict_strict(module: torch.nn.Module, tensors: dict, source: str | Path) -> None:
    """Load weights after `check_state_dict` (one-line error naming the first offending key)."""
    module.load_state_dict(check_state_dict(module, tensors, source), strict=True)


def load_network(run_dir: str | Path, ema: bool = True, device="cpu", config: dict | None = None):
    """Build the run's network from config.json["network"] and load model/EMA weights."""
    run_dir = Path(run_dir)
    cfg = config if config is not None else read_config(run_dir)
    if "network" not in cfg:
        raise CheckpointError(f"{run_dir / 'config.json'}: no 'network' section")
    net = build_network(cfg["network"])
    name = "ema.safetensors" if ema and (run_dir / "ema.safetensors").exists() else "model.safetensors"
    tensors, _ = load_tensors(run_dir / name)
    load_state_dict_strict(net, tensors, run_dir / name)
    return net.to(device).eval()


def load_denoiser(run_dir: str | Path, ema: bool = True, device="cpu"):
    """The run's network wrapped as D(x, σ) per config.json["process"] and ["denoiser"] (`denoiser_from_config`)."""
    cfg = read_config(run_dir)
    if cfg.get("kind", "score_model") != "score_model":
        raise CheckpointError(f"{run_dir} holds a {cfg.get('kind')!r}, not a score model")
    for key in ("process", "denoiser", "data"):
        if key not in cfg:
            raise CheckpointError(f"{Path(run_dir) / 'config.json'}: no {key!r} section")
    net = load_network(run_dir, ema=ema, device=device, config=cfg)
    return denoiser_from_config(cfg, net).to(device).eval()


def drop_snapshots_after(out_dir: Path, step: int) -> None:
    """On resume: EMA snapshots written after the checkpoint's step belong to the lost steps; the resumed run
    writes them again."""
    d = out_dir / "ema_snapshots"
    if not d.is_dir():
        return
    for p in d.glob("step_*_sigma_rel_*.safetensors"):
        m = re.match(r"step_(\d+)_", p.name)
        if m and int(m.group(1)) > step:
            p.unlink()


def truncate_log(path: Path, step: int) -> None:
    """On resume: keep only log lines of steps up to the checkpoint's step, so a killed run's lost steps are not
    logged twice."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a half-written last line
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(x + "\n" for x in keep))
    os.replace(tmp, path)
