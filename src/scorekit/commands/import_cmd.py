"""`scorekit import score-sde|adm|diffusers|edm`: turn published checkpoints into scorekit run directories."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "import"
HELP = "import a published model (score_sde, guided-diffusion ADM, diffusers UNet2DModel, EDM/EDM2) as a scorekit run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", parser_class=type(parser))
    sub.required = True
    p = sub.add_parser("score-sde", help="score_sde checkpoint_*.pth (NCSN++ / DDPM++)")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="score_sde checkpoint_N.pth")
    p.add_argument(
        "--config",
        required=True,
        metavar="NAME|FILE.json",
        help="built-in config name or JSON file (names and keys: docs/formats.md)",
    )
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    p.add_argument("--no-ema", action="store_true", help="do not write the EMA weights (load the raw weights)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p = sub.add_parser("adm", help="guided-diffusion ADM U-Net .pt (optionally with its noisy classifier)")
    p.add_argument("model", metavar="MODEL.pt", help="guided-diffusion U-Net state dict")
    p.add_argument(
        "--config",
        required=True,
        metavar="NAME|FILE.json",
        help="built-in config name or JSON file (names and keys: docs/formats.md)",
    )
    p.add_argument("--classifier", metavar="CLF.pt", help="guided-diffusion noisy classifier state dict")
    p.add_argument("--classifier-config", metavar="NAME|FILE.json", help="classifier config name or JSON file")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p = sub.add_parser("diffusers", help="diffusers UNet2DModel pipeline folder (or UNet folder + scheduler config)")
    p.add_argument("path", metavar="PATH", help="folder saved by diffusers' save_pretrained")
    p.add_argument("--scheduler-config", metavar="FILE.json", help="scheduler_config.json if not found in PATH")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p = sub.add_parser("edm", help="EDM / EDM2 network snapshot .pkl (read without executing its code)")
    p.add_argument("snapshot", metavar="SNAPSHOT.pkl", help="edm-*.pkl, edm2-*.pkl or a training/post-hoc EMA snapshot")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")


def run(args) -> int:
    from ..importers import import_adm, import_diffusers, import_edm, import_score_sde
    from ..outputs import check_output_dir, new_output_dir

    check_output_dir(args.out, "--out")
    with new_output_dir(args.out):  # a failed import leaves no half-made run folder behind
        return _import(args, import_adm, import_diffusers, import_edm, import_score_sde)


def _import(args, import_adm, import_diffusers, import_edm, import_score_sde) -> int:

    if args.source == "diffusers":
        out = import_diffusers(args.path, args.out, scheduler_config=args.scheduler_config, overwrite=args.overwrite)
    elif args.source == "edm":
        out = import_edm(args.snapshot, args.out, overwrite=args.overwrite)
    elif args.source == "score-sde":
        out = import_score_sde(args.checkpoint, args.config, args.out, ema=not args.no_ema, overwrite=args.overwrite)
    else:
        out = import_adm(
            args.model,
            args.config,
            args.out,
            classifier=args.classifier,
            classifier_config=args.classifier_config,
            overwrite=args.overwrite,
        )
    cfg = json.loads((out / "config.json").read_text())
    info = {"run": str(out), "network": cfg["network"]["arch"], "process": cfg["process"]["name"]}
    if (out / "classifier" / "config.json").exists():
        info["classifier"] = str(out / "classifier")
    sys.stdout.write(json.dumps(info) + "\n")
    return 0
