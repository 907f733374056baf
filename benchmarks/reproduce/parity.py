"""Parity of scorekit's NCSN++ / DDPM++ / ADM networks with the reference code, and their size and speed.

For every tiny fixture (outputs produced by score_sde_pytorch / guided-diffusion): import through the public
path, rerun the fixed inputs, report the max |difference| to the reference (raw and EMA weights). For every
released configuration: parameters (built on the meta device, checked against the manifest) and, with
`--time`, the CPU forward time of one sample at full size (random weights).

    python benchmarks/reproduce/parity.py            # writes benchmarks/results/pretrained_parity.{md,json}
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, fixtures_dir, write_results  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--time", action="store_true", help="also time one full-size CPU forward pass per config")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from scorekit import importers
    from scorekit.checkpoint import load_network
    from scorekit.models.registry import build_network

    fx = fixtures_dir()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for stem in ("ncsnpp_ve_tiny", "ddpmpp_vp_tiny"):
            run = importers.import_score_sde(fx / f"{stem}_checkpoint.pth", str(fx / f"{stem}.json"), tmp / stem)
            io = load_file(str(fx / f"{stem}_io.safetensors"))
            for ema in (False, True):
                net = load_network(run, ema=ema)
                with torch.no_grad():
                    out = net(io["x"], io["labels"])
                ref = io["output_ema" if ema else "output_model"]
                rows.append(
                    {
                        "model": stem,
                        "weights": "ema" if ema else "raw",
                        "max_abs_err": float((out - ref).abs().max()),
                        "ref_max_abs": float(ref.abs().max()),
                    }
                )
        run = importers.import_adm(
            fx / "adm_unet_tiny.pt",
            str(fx / "adm_tiny.json"),
            tmp / "adm",
            classifier=fx / "adm_classifier_tiny.pt",
            classifier_config=str(fx / "adm_tiny.json"),
        )
        io = load_file(str(fx / "adm_tiny_io.safetensors"))
        with torch.no_grad():
            u = load_network(run)(io["x"], io["t"], io["y"])
            c = load_network(run / "classifier")(io["x"], io["t"])
        for name, out, ref in (
            ("adm_unet_tiny", u, io["unet_output"]),
            ("adm_classifier_tiny", c, io["classifier_logits"]),
        ):
            rows.append(
                {
                    "model": name,
                    "weights": "state dict",
                    "max_abs_err": float((out - ref).abs().max()),
                    "ref_max_abs": float(ref.abs().max()),
                }
            )

    size_rows = []
    manifests = {
        **json.loads((fx / "ncsnpp_manifests.json").read_text()),
        **json.loads((fx / "adm_manifests.json").read_text()),
    }
    for name, entry in manifests.items():
        if name in importers.SCORE_SDE_CONFIGS:
            cfg = importers.ncsnpp_network_config(importers.resolve_score_sde_config(name))
        elif "classifier" in name:
            cfg = importers.adm_classifier_network_config(importers.resolve_adm_config(name, "classifier"))
        else:
            cfg = importers.adm_unet_network_config(importers.resolve_adm_config(name, "model"))
        with torch.device("meta"):
            net = build_network(cfg)
        sd = [[k, list(v.shape)] for k, v in net.state_dict().items()]
        row = {
            "config": name,
            "arch": cfg["arch"],
            "params": sum(p.numel() for p in net.parameters()),
            "manifest_params": entry["params"],
            "state_dict_matches": sd == entry["state_dict"],
        }
        if args.time:
            net = build_network(cfg).eval()
            size = cfg.get("image_size", 32)
            ch = cfg.get("num_channels", cfg.get("in_channels", 3))
            x = torch.randn(1, ch, size, size)
            c_noise = (
                torch.tensor([500.0])
                if cfg["arch"] != "ncsnpp" or cfg["embedding_type"] == "positional"
                else torch.tensor([1.0])
            )
            y = torch.tensor([1]) if cfg.get("num_classes") else None
            with torch.no_grad():
                t0 = time.perf_counter()
                net(x, c_noise, y)
                row["cpu_forward_s"] = round(time.perf_counter() - t0, 2)
            del net
        size_rows.append(row)

    out = Path(args.out)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "fixtures": str(fx)}
    write_results(
        out,
        "pretrained_parity",
        "Reference parity of imported published models",
        ["model", "weights", "max_abs_err", "ref_max_abs"],
        rows,
        meta,
    )
    cols = ["config", "arch", "params", "manifest_params", "state_dict_matches"] + (
        ["cpu_forward_s"] if args.time else []
    )
    write_results(out, "pretrained_configs", "Released configurations built by scorekit", cols, size_rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
