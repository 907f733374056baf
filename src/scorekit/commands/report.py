"""`scorekit report`: a Markdown report (metric table, metric-vs-NFE plot, sample grids) from metrics JSON, and/or
one self-contained HTML page about a run (loss curve, grids over training, quality with error bars, vs NFE)."""

from __future__ import annotations

NAME = "report"
HELP = (
    "render metrics JSON files into a Markdown report, or a run and its metrics into one self-contained HTML page "
    "(--run RUN --html OUT.html)"
)


def add_arguments(p):
    p.add_argument("--results", nargs="+", default=None, metavar="DIR_OR_JSON", help="METRICS.json files or folders")
    p.add_argument("--run", default=None, help="run directory: loss curve, config, sample grids over training")
    p.add_argument("--out", default=None, help="REPORT.md (PNGs are written next to it)")
    p.add_argument("--samples", nargs="*", default=[], metavar="NPZ", help="sample .npz files to draw as grids")
    p.add_argument(
        "--html",
        nargs="?",
        const=True,
        default=None,
        metavar="OUT.html",
        help="OUT.html: one self-contained page (images inlined); without a value: also write REPORT.html next to "
        "the Markdown report",
    )
    p.add_argument("--title", default=None)


def run(args) -> int:
    html_out = args.html if isinstance(args.html, str) else None
    if args.out is None and html_out is None:
        raise ValueError("give --out REPORT.md and/or --html OUT.html")
    if not args.results and args.run is None and (args.out is not None or not args.samples):
        raise ValueError("give --results (metrics JSON) and/or --run (a run directory)")
    written = []
    if args.out is not None:
        if not args.results:
            raise ValueError("the Markdown report (--out) needs --results")
        from ..metrics.report import render_report

        out = render_report(
            args.results, args.out, samples=args.samples, html_too=args.html is True,
            title=args.title or "scorekit report",
        )  # fmt: skip
        written.append(str(out))
        if args.html is True:
            written.append(str(out.with_suffix(".html")))
    if html_out is not None:
        from ..metrics.html_report import render_html_report

        written.append(
            str(
                render_html_report(html_out, run=args.run, results=args.results, samples=args.samples, title=args.title)
            )  # fmt: skip
        )
    print("wrote " + " and ".join(written))
    return 0
