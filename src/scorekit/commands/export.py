"""`scorekit export diffusers`: write a run as a folder that Hugging Face diffusers loads."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "export"
HELP = "export a run to a foreign format (diffusers UNet2DModel pipeline folder)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="target", metavar="TARGET", parser_class=type(parser))
    sub.required = True
    p = sub.add_parser("diffusers", help="diffusers pipeline folder (model_index.json, unet/, scheduler/)")
    p.add_argument(
        "--run",
        required=True,
        metavar="RUN",
        help="run directory with a diffusers_unet2d network, or a unet one that maps onto UNet2DModel",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights even if EMA weights exist")
    p.add_argument("--overwrite", action="store_true", help="replace a pipeline already in --out")


def run(args) -> int:
    from ..importers.diffusers import export_diffusers

    out = export_diffusers(args.run, args.out, ema=not args.no_ema, overwrite=args.overwrite)
    sys.stdout.write(json.dumps({"out": str(out), "format": args.target}) + "\n")
    return 0
