"""Provenance of every file scorekit writes: which scorekit / torch made it, from what command line, when, and
from which model (run directory + SHA-256 of its config and weights, or the SHA-256 of a `gmm:` spec).

- `.npz`: a 0-d string array `provenance` holding the record as JSON (`attach_to_npz`, `read_provenance`).
- `.json`: a top-level `"provenance"` key (`attach_to_json`).
- safetensors: a `provenance` metadata string (as `scorekit ema` writes).

The record holds no host name, user or absolute home path beyond what the command line itself names, so two
identical runs on two machines differ only in `time_utc`.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import zipfile
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__all__ = [
    "PROVENANCE_KEY",
    "provenance",
    "model_provenance",
    "config_sha256",
    "file_sha256",
    "attach_to_npz",
    "npz_entry",
    "attach_to_json",
    "read_provenance",
    "command_line",
]

PROVENANCE_KEY = "provenance"
SCHEMA = "scorekit-provenance/1"
_COMMAND_LINE: ContextVar[list[str] | None] = ContextVar("scorekit_command_line", default=None)


@contextmanager
def command_line(argv: list[str]):
    """Within the block, records name `argv` as the command line (`cli.main` wraps each command in this, so a
    command run from Python — `main(["sample", ...])` — is recorded as typed, not as the host process's argv)."""
    token = _COMMAND_LINE.set(["scorekit", *[str(a) for a in argv]])
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def config_sha256(config: dict) -> str:
    """SHA-256 of a config as canonical JSON (sorted keys, no spaces), so key order does not change it; a top-level
    `provenance` record (when and by which command the config was written) is not part of what it identifies."""
    if isinstance(config, dict) and PROVENANCE_KEY in config:
        config = {k: v for k, v in config.items() if k != PROVENANCE_KEY}
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_provenance(model) -> dict:
    """What identifies a model: `RUN` (a run directory) → path, config hash, training step and the weights'
    stored SHA-256; `gmm:SPEC.json` → spec path and its canonical-JSON hash; a dict → its hash."""
    from .checkpoint import read_config

    if isinstance(model, dict):
        return {"kind": "config", "config_sha256": config_sha256(model)}
    spec = str(model)
    if spec.startswith("gmm:"):
        path = Path(spec[4:])
        try:
            obj = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read mixture spec {path}: {e}") from None
        return {"kind": "gmm", "spec": spec, "spec_sha256": config_sha256(obj)}
    run = Path(spec)
    cfg = read_config(run)
    out = {"kind": "run", "run": str(run), "config_sha256": config_sha256(cfg)}
    for name in ("ema", "model"):
        meta = _safetensors_meta(run / f"{name}.safetensors")
        if meta:
            out[f"{name}_sha256"] = meta.get("sha256")
            if "step" in meta:
                out["step"] = int(meta["step"])
            if name == "ema" and "sigma_rel" in meta:
                out["ema_sigma_rel"] = float(meta["sigma_rel"])
    return out


def _safetensors_meta(path: Path) -> dict | None:
    if not path.is_file():
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return None


def provenance(command_line: list[str] | str | None = None, model=None, **settings) -> dict:
    """The provenance record: versions, the command line (default: this process's argv), UTC time, model
    identity (see `model_provenance`) and any JSON-able `settings` (seed, sampler, steps, …)."""
    import torch

    from . import __version__

    if command_line is None:
        command_line = _COMMAND_LINE.get()
    if command_line is None:
        command_line = ["scorekit", *sys.argv[1:]] if Path(sys.argv[0]).name in ("scorekit", "__main__.py") else list(
            sys.argv)  # fmt: skip
    rec = {
        "schema": SCHEMA,
        "scorekit_version": __version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "command_line": command_line if isinstance(command_line, str) else " ".join(str(a) for a in command_line),
        "time_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if model is not None:
        rec["model"] = model_provenance(model)
    if settings:
        rec["settings"] = json.loads(json.dumps(settings, default=str))
    return rec


def attach_to_npz(path: str | Path, record: dict) -> None:
    """Add the `provenance` entry to an existing `.npz`. Appended as one more member of the zip archive (memory
    and time flat in the file's size); an existing entry is replaced by rewriting the archive atomically."""
    import os
    import tempfile

    path = Path(path)
    with _open_zip(path) as z:
        names = z.namelist()
    entry = npz_entry(record)
    if f"{PROVENANCE_KEY}.npy" not in names:
        with zipfile.ZipFile(path, "a", allowZip64=True) as z, z.open(f"{PROVENANCE_KEY}.npy", "w") as f:
            np.lib.format.write_array(f, entry, allow_pickle=False)
        return
    arrays = _read_npz(path)
    arrays[PROVENANCE_KEY] = entry
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        from .outputs import set_output_mode

        np.savez(tmp, **arrays)
        set_output_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {path}: {' '.join(str(e).split()) or type(e).__name__}") from None


def npz_entry(record: dict) -> np.ndarray:
    """The array to store under `provenance` when writing an `.npz` yourself (`np.savez(..., provenance=...)`)."""
    return np.array(json.dumps(record, sort_keys=True))


def attach_to_json(obj: dict, record: dict) -> dict:
    """`obj` with a top-level `"provenance"` key (a new dict; the input is not changed)."""
    if not isinstance(obj, dict):
        raise ValueError("provenance attaches to a JSON object, not a list or a scalar")
    return {**obj, PROVENANCE_KEY: record}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {path}: {' '.join(str(e).split()) or type(e).__name__}") from None


def read_provenance(path: str | Path) -> dict | None:
    """The provenance record of a `.npz`, `.json` or `.safetensors` file, or None if it has none; a file that
    cannot be read raises ValueError with one line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is not an .npz archive")
        try:
            with np.load(path, allow_pickle=False) as z:
                if PROVENANCE_KEY not in z.files:
                    return None
                text = str(z[PROVENANCE_KEY])
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"cannot read {path}: {' '.join(str(e).split()) or type(e).__name__}") from None
        return _parse(text, path)
    if suffix == ".json":
        obj = _read_json(path)
        rec = obj.get(PROVENANCE_KEY) if isinstance(obj, dict) else None
        return rec if isinstance(rec, dict) or rec is None else _parse(str(rec), path)
    if suffix == ".safetensors":
        meta = _safetensors_meta(path)
        if meta is None:
            raise ValueError(f"cannot read {path}: not a safetensors file")
        return _parse(meta[PROVENANCE_KEY], path) if PROVENANCE_KEY in meta else None
    raise ValueError(f"{path}: unknown file type {suffix!r} (expected .npz, .json or .safetensors)")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {' '.join(str(e).split())}") from None


def _parse(text: str, path: Path) -> dict:
    try:
        rec = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{path}: its provenance entry is not valid JSON") from None
    if not isinstance(rec, dict):
        raise ValueError(f"{path}: its provenance entry is not a JSON object")
    return rec
