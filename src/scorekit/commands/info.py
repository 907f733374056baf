"""`scorekit info`: what a file or run directory holds and where it came from (its provenance record)."""

from __future__ import annotations

import json
from pathlib import Path

NAME = "info"
HELP = "show what an .npz / .json / .safetensors file or a run directory holds, and its provenance"


def add_arguments(p):
    p.add_argument("path", metavar="FILE_OR_RUN", help="an .npz, .json or .safetensors file, or a run directory")
    p.add_argument("--log-lines", type=int, default=3, help="training-log lines to show for a run directory")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def describe(path: str | Path, log_lines: int = 3) -> dict:
    """The facts `scorekit info` prints, as a dict. Raises ValueError (one line) on a bad or corrupt input."""
    from ..provenance import read_provenance

    path = Path(path)
    if path.is_dir():
        return _describe_run(path, log_lines)
    if not path.is_file():
        raise ValueError(f"no such file or run directory: {path}")
    suffix = path.suffix.lower()
    out: dict = {"file": str(path), "bytes": path.stat().st_size}
    if suffix == ".npz":
        import zipfile

        import numpy as np

        from ..data.readers import require_npz

        require_npz(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {}
                for k in z.files:
                    if k == "provenance":
                        continue
                    a = z[k]
                    arrays[k] = {"shape": list(a.shape), "dtype": str(a.dtype)}
                    if a.size == 1 and np.issubdtype(a.dtype, np.number):
                        arrays[k]["value"] = a.item()
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"cannot read {path}: {' '.join(str(e).split()) or type(e).__name__}") from None
        out["arrays"] = arrays
    elif suffix == ".json":
        try:
            obj = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON: {' '.join(str(e).split())}") from None
        if isinstance(obj, dict):
            out["values"] = {k: v for k, v in obj.items() if k != "provenance" and not isinstance(v, (list, dict))}
            out["other_keys"] = sorted(k for k, v in obj.items() if k != "provenance" and isinstance(v, (list, dict)))
        else:
            out["values"] = {"type": type(obj).__name__, "length": len(obj) if isinstance(obj, list) else None}
    elif suffix == ".safetensors":
        from ..checkpoint import load_tensors

        tensors, meta = load_tensors(path)
        out["tensors"] = len(tensors)
        out["parameters"] = int(sum(t.numel() for t in tensors.values()))
        out["metadata"] = {k: v for k, v in meta.items() if k not in ("provenance", "sha256")}
    else:
        raise ValueError(f"{path}: unknown file type {suffix!r} (expected .npz, .json, .safetensors or a run folder)")
    out["provenance"] = read_provenance(path)
    return out


def _describe_run(run: Path, log_lines: int) -> dict:
    from ..checkpoint import latest_checkpoint, load_tensors, read_config
    from ..provenance import config_sha256

    cfg = read_config(run)
    tr = cfg.get("training", {}) if isinstance(cfg.get("training"), dict) else {}
    out: dict = {
        "run": str(run),
        "kind": cfg.get("kind", "score_model"),
        "config_sha256": config_sha256(cfg),
        "data": (cfg.get("data") or {}).get("spec"),
        "process": (cfg.get("process") or {}).get("name"),
        "network": (cfg.get("network") or {}).get("arch"),
        "objective": cfg.get("objective"),
        "steps_planned": tr.get("steps"),
        "provenance": cfg.get("provenance") if isinstance(cfg.get("provenance"), dict) else None,
    }
    if (run / "model.safetensors").is_file():
        tensors, meta = load_tensors(run / "model.safetensors")
        out["parameters"] = int(sum(t.numel() for t in tensors.values()))
        out["steps_done"] = int(meta["step"]) if "step" in meta else None
    else:
        out["steps_done"] = None
    if (run / "ema.safetensors").is_file():
        _, meta = load_tensors(run / "ema.safetensors")
        out["ema"] = {
            "step": int(meta["step"]) if "step" in meta else None,
            "sigma_rel": float(meta["sigma_rel"]) if "sigma_rel" in meta else None,
            "decay": tr.get("ema_decay") if "sigma_rel" not in meta else None,
        }
        if "sigma_rel" not in meta and "ema_sigma_rel" in tr:
            out["ema"]["sigma_rel"] = tr["ema_sigma_rel"]
    snaps = run / "ema_snapshots"
    if snaps.is_dir():
        from ..ema import list_snapshots

        s = list_snapshots(snaps)
        out["ema_snapshots"] = {
            "count": len(s),
            "sigma_rels": sorted({round(x.sigma_rel, 4) for x in s}),
            "steps": [s[0].step, s[-1].step],
        }
    last = latest_checkpoint(run)
    out["latest_checkpoint"] = last.name if last is not None else None
    out["extra_ema_files"] = sorted(p.name for p in run.glob("ema_sigma_rel_*.safetensors"))
    log = run / "log.jsonl"
    if log.is_file():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        tail = []
        for ln in lines[-max(0, log_lines) :] if log_lines > 0 else []:
            try:
                tail.append(json.loads(ln))
            except json.JSONDecodeError:
                tail.append({"unparsed": ln[:200]})
        out["log_records"] = len(lines)
        out["log_tail"] = tail
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def run(args) -> int:
    info = describe(args.path, args.log_lines)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    prov = info.pop("provenance", None)
    for k, v in info.items():
        if isinstance(v, dict) and k in ("arrays", "values", "metadata"):
            print(f"{k}:")
            for kk, vv in v.items():
                print(f"  {kk}: {_fmt(vv)}")
        elif k == "log_tail":
            print("log_tail:")
            for rec in v:
                print(f"  {_fmt(rec)}")
        else:
            print(f"{k}: {_fmt(v)}")
    if prov is None:  # files, and run directories (config.json's record) alike
        print("provenance: none recorded")
    else:
        print("provenance:")
        for kk, vv in prov.items():
            print(f"  {kk}: {_fmt(vv)}")
    return 0
