"""`scorekit report`: a Markdown/HTML report (metric table, metric-vs-NFE plot, sample grids) from metrics JSON."""

from __future__ import annotations

NAME = "report"
HELP = "render metrics JSON files into a Markdown/HTML report with a metric table, FID-vs-NFE plot and sample grids"


def add_arguments(p):
    p.add_argument("--results", nargs="+", required=True, metavar="DIR_OR_JSON", help="METRICS.json files or folders")
    p.add_argument("--out", required=True, help="REPORT.md (PNGs are written next to it)")
    p.add_argument("--samples", nargs="*", default=[], metavar="NPZ", help="sample .npz files to draw as grids")
    p.add_argument("--html", action="store_true", help="also write REPORT.html")
    p.add_argument("--title", default="scorekit report")


def run(args) -> int:
    from ..metrics.report import render_report

    out = render_report(args.results, args.out, samples=args.samples, html_too=args.html, title=args.title)
    print(f"wrote {out}" + (f" and {out.with_suffix('.html')}" if args.html else ""))
    return 0
