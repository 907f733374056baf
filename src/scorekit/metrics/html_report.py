"""One self-contained HTML page about a run and its sample quality (`scorekit report --run RUN --html OUT.html`).

Everything is inlined (images as base64 PNG, no external CSS or scripts), so the page can be mailed or archived
alone. Sections, each present only when its data is:
- the run: config summary, training length, EMA, provenance of the results;
- the training loss curve, from `RUN/log.jsonl`;
- sample grids over training, from `RUN/samples/step_*.png` (written by training's `sample_every`);
- a sample-quality table, `mean ± std` where a result carries `<metric>_std`, with the two-sample floor
  (`<metric>_floor`) beside it, from metrics JSON files;
- quality against NFE (with error bars) when the results carry `nfe`;
- per-class accuracy when the results carry `per_class_accuracy`;
- grids of given `.npz` samples.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path

import numpy as np

__all__ = ["render_html_report", "read_log", "png_data_uri"]

_QUALITY = ("fid", "kid", "is", "precision", "recall", "sliced_wasserstein", "mmd", "w2", "class_accuracy")
_LOWER_BETTER = {"fid", "kid", "sliced_wasserstein", "mmd", "w2"}
_MAX_GRIDS = 12
_SHORT = {"sliced_wasserstein": "sliced W", "mmd": "MMD²", "w2": "W2", "fid": "FID", "kid": "KID", "is": "IS",
          "class_accuracy": "class acc."}  # fmt: skip


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _figure(w=6.0, h=3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def read_log(run: str | Path) -> list[dict]:
    """Records of `RUN/log.jsonl` (unparseable lines are skipped)."""
    p = Path(run) / "log.jsonl"
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _loss_plot(log: list[dict]) -> bytes | None:
    pts = [(r["step"], r["loss"]) for r in log if _num(r.get("step")) and _num(r.get("loss"))]
    if len(pts) < 1:
        return None
    steps, loss = np.array(pts, dtype=np.float64).T
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(steps, loss, ".-" if len(pts) < 40 else "-", lw=1, label="loss (logged steps)")
    if len(pts) >= 10:  # a running mean shows the trend under minibatch noise
        k = max(2, len(pts) // 10)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, lw=2, label=f"running mean ({k})")
    if np.all(loss > 0):
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _fig_png(fig)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _fmt(v, std=None) -> str:
    """A value to 4 significant digits, with ± its std to 2."""
    if not _num(v):
        return "–"

    def f(x, digits):
        x = float(x)
        return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.{digits - 1}e}"

    return f(v, 4) + (f" ± {f(std, 2)}" if _num(std) else "")


def _quality_columns(records: list[dict]) -> list[str]:
    keys = {k for r in records for k, v in r.items() if _num(v)}
    return [m for m in _QUALITY if m in keys]


def _nfe_plot(records: list[dict]) -> tuple[str, bytes] | None:
    metric = next((m for m in ("fid", "sliced_wasserstein", "w2", "kid", "mmd") if any(
        _num(r.get(m)) and _num(r.get("nfe")) for r in records)), None)  # fmt: skip
    if metric is None:
        return None
    groups: dict[str, list[tuple[float, float, float]]] = {}
    floors = []
    # FID and friends depend on the sample count: results with a count other than the most common one get their
    # own curve ("… N=10000") instead of joining a curve of smaller samples
    counts = [int(r["num_samples"]) for r in records if _num(r.get("num_samples"))]
    usual = max(set(counts), key=counts.count) if counts else None
    for r in records:
        if _num(r.get(metric)) and _num(r.get("nfe")):
            std = float(r[f"{metric}_std"]) if _num(r.get(f"{metric}_std")) else 0.0
            name = _series(r)
            if _num(r.get("num_samples")) and int(r["num_samples"]) != usual:
                name += f" N={int(r['num_samples'])}"
            groups.setdefault(name, []).append((float(r["nfe"]), float(r[metric]), std))
        if _num(r.get(f"{metric}_floor")):
            floors.append(float(r[f"{metric}_floor"]))
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for name, pts in sorted(groups.items()):
        pts.sort()
        a = np.array(pts)
        ax.errorbar(a[:, 0], a[:, 1], yerr=a[:, 2], fmt="o-", capsize=3, label=name)
    if floors:
        ax.axhline(float(np.mean(floors)), color="0.4", ls="--", lw=1, label="two-sample floor")
    ax.set_xscale("log")
    if all(p[1] > 0 for pts in groups.values() for p in pts):
        ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    nfes = sorted({p[0] for pts in groups.values() for p in pts})
    if len(nfes) <= 12:
        ax.set_xticks(nfes, [f"{v:g}" for v in nfes])
    else:
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("NFE (denoiser evaluations per sample)")
    ax.set_ylabel(metric + (" (lower is better)" if metric in _LOWER_BETTER else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return metric, _fig_png(fig)


def _series(r: dict) -> str:
    """Which curve a result belongs to: its sampler (from the record or the provenance of its samples), prefixed by
    "dlg+" for Denoising MCMC and marked "--nfe tuned" / "--nfe rule" for budget choices, so that DLG and tuned
    schedules do not join the plain sampler's curve; else its label without a trailing step count ("heun_16" →
    "heun")."""
    prov = r.get("provenance") if isinstance(r.get("provenance"), dict) else {}
    src = prov.get("samples_provenance") if isinstance(prov.get("samples_provenance"), dict) else {}
    settings = src.get("settings") if isinstance(src.get("settings"), dict) else {}
    name = r.get("sampler") or settings.get("sampler")
    if not name:
        return re.sub(r"[_\-\s]*\d+$", "", str(r["_label"])) or str(r["_label"])
    name = str(name)
    if isinstance(settings.get("dmcmc"), dict) and not name.startswith("dlg"):
        name = f"dlg+{name}"
    plan = src.get("nfe_plan")
    if isinstance(plan, dict):
        name += " (--nfe tuned)" if str(plan.get("reason", "")).startswith("tuned") else " (--nfe rule)"
    return name


def _per_class_plot(records: list[dict]) -> bytes | None:
    recs = [r for r in records if isinstance(r.get("per_class_accuracy"), dict) and r["per_class_accuracy"]]
    if not recs:
        return None
    fig = _figure(6.0, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(recs)
    for i, r in enumerate(recs):
        pc = r["per_class_accuracy"]
        classes = sorted(pc, key=lambda c: int(c) if str(c).lstrip("-").isdigit() else str(c))
        xs = np.arange(len(classes)) + i * width
        ax.bar(xs, [float(pc[c]) if _num(pc[c]) else 0.0 for c in classes], width, label=r["_label"])
        ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, [str(c) for c in classes])
    ax.set_ylim(0, 1)
    ax.set_xlabel("class")
    ax.set_ylabel("classifier accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _fig_png(fig)


def _training_grids(run: Path) -> list[tuple[str, bytes]]:
    folder = run / "samples"
    if not folder.is_dir():
        return []
    files = []
    for p in folder.glob("*.png"):
        m = re.search(r"(\d+)", p.stem)
        files.append((int(m.group(1)) if m else -1, p))
    files.sort()
    if len(files) > _MAX_GRIDS:  # evenly spaced, always keeping the last
        idx = np.unique(np.linspace(0, len(files) - 1, _MAX_GRIDS).round().astype(int))
        files = [files[i] for i in idx]
    return [(f"step {s}" if s >= 0 else p.stem, p.read_bytes()) for s, p in files]


def _run_summary(run: Path, log: list[dict]) -> list[tuple[str, str]]:
    from ..checkpoint import read_config

    cfg = read_config(run)
    tr = cfg.get("training", {}) if isinstance(cfg.get("training"), dict) else {}
    rows = [
        ("run", str(run)),
        ("data", str((cfg.get("data") or {}).get("spec", "–"))),
        ("process", str((cfg.get("process") or {}).get("name", "–"))),
        ("network", str((cfg.get("network") or {}).get("arch", "–"))),
        ("objective", str(cfg.get("objective", "–"))),
        ("steps planned", str(tr.get("steps", "–"))),
    ]
    if log:
        last = log[-1]
        rows.append(("last logged step", str(last.get("step", "–"))))
        if _num(last.get("loss")):
            rows.append(("last loss", _fmt(last["loss"])))
        if _num(last.get("steps_per_s")):
            rows.append(("steps / s", _fmt(last["steps_per_s"])))
    ema = "σ_rel " + str(tr["ema_sigma_rel"]) if "ema_sigma_rel" in tr else f"fixed decay {tr.get('ema_decay', '–')}"
    snaps = run / "ema_snapshots"
    if snaps.is_dir():
        ema += f"; {len(list(snaps.glob('*.safetensors')))} post-hoc snapshots"
    rows.append(("EMA", ema))
    return rows


def render_html_report(
    out: str | Path,
    *,
    run: str | Path | None = None,
    results: list[str | Path] | None = None,
    samples: list[str | Path] | None = None,
    title: str | None = None,
) -> Path:
    """Write the self-contained page `out` from a run directory and/or metrics JSON files; returns its path."""
    from .report import collect_results, save_sample_grid

    if run is None and not results and not samples:
        raise ValueError("an HTML report needs --run, --results or --samples")
    e = html.escape
    out = Path(out)
    run = Path(run) if run is not None else None
    parts: list[str] = []
    n_images = 0

    def img(png: bytes, caption: str, cls: str = "") -> str:
        nonlocal n_images
        n_images += 1
        return (f"<figure class='{cls}'><img alt='{e(caption)}' src='{png_data_uri(png)}'>"
                f"<figcaption>{e(caption)}</figcaption></figure>")  # fmt: skip

    if run is not None:
        log = read_log(run)
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _run_summary(run, log))
        parts.append(f"<h2>Run</h2><table class='kv'>{rows}</table>")
        loss = _loss_plot(log)
        parts.append("<h2>Training loss</h2>" + (img(loss, "loss vs step (log.jsonl)") if loss else
                                                 "<p>No training log (log.jsonl) in this run.</p>"))  # fmt: skip
        grids = _training_grids(run)
        if grids:
            parts.append("<h2>Samples over training</h2><div class='grids'>"
                         + "".join(img(png, cap, "grid") for cap, png in grids) + "</div>")  # fmt: skip
    records = collect_results(results) if results else []
    # one block per sampler, in order of cost
    records.sort(key=lambda r: (_series(r), float(r["nfe"]) if _num(r.get("nfe")) else math.inf, r["_label"]))
    if records:
        cols = _quality_columns(records)
        floors = [c for c in cols if any(_num(r.get(f"{c}_floor")) for r in records)]
        head = ("<tr><th>result</th>" + "".join(f"<th title='{e(c)}'>{e(_SHORT.get(c, c))}</th>" for c in cols)
                + "".join(f"<th title='{e(c)}_floor'>{e(_SHORT.get(c, c))} floor</th>" for c in floors)
                + "<th>NFE</th><th>N</th></tr>")  # fmt: skip
        body = ""
        for r in records:
            body += "<tr><td class='l'>" + e(r["_label"]) + "</td>"
            body += "".join(f"<td>{e(_fmt(r.get(c), r.get(f'{c}_std')))}</td>" for c in cols)
            body += "".join(f"<td>{e(_fmt(r.get(f'{c}_floor'), r.get(f'{c}_floor_std')))}</td>" for c in floors)
            body += f"<td>{e(_fmt(r.get('nfe')))}</td><td>{e(_fmt(r.get('num_samples')))}</td></tr>"
        note = ("<p class='note'>mean ± std over repeated reference draws (vector metrics) or subsets / splits "
                "(KID, IS); <i>floor</i>: the same metric between two independent exact samples of the same size, "
                "the best any sampler can score.</p>")  # fmt: skip
        parts.append(f"<h2>Sample quality</h2><table class='q'>{head}{body}</table>{note}")
        plot = _nfe_plot(records)
        if plot is not None:
            parts.append(f"<h2>{e(plot[0])} vs NFE</h2>" + img(plot[1], f"{plot[0]} vs NFE (± std)"))
        pc = _per_class_plot(records)
        if pc is not None:
            parts.append("<h2>Per-class accuracy</h2>" + img(pc, "fraction of samples classified as their label"))
        provs = [r["provenance"] for r in records if isinstance(r.get("provenance"), dict)]
        if provs:
            items = "".join(f"<li><code>{e(json.dumps(p, sort_keys=True))}</code></li>" for p in provs)
            parts.append(f"<details><summary>Provenance of the results</summary><ul>{items}</ul></details>")
    if samples:
        import tempfile

        figs = []
        for s in samples:
            with tempfile.TemporaryDirectory() as tmp:
                png = save_sample_grid(s, Path(tmp) / "grid.png").read_bytes()
            figs.append(img(png, Path(s).name, "grid"))
        parts.append("<h2>Samples</h2><div class='grids'>" + "".join(figs) + "</div>")
    title = title or (f"scorekit report: {run.name}" if run is not None else "scorekit report")
    from ..provenance import provenance

    stamp = provenance(run=str(run) if run else None)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta name='generator' content='scorekit {e(stamp['scorekit_version'])}'><title>{e(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
        "h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:1.6em}"
        "table{border-collapse:collapse}td,th{padding:3px 8px;text-align:right;white-space:nowrap}"
        "td.l,.kv th{text-align:left}"
        ".kv td{text-align:left}.q{font-size:.9em}.q tr:nth-child(even){background:#f3f3f3}.q th{background:#e8e8f0}"
        "figure{display:inline-block;margin:6px;text-align:center}figcaption{font-size:.85em;color:#555}"
        ".grid img{width:260px;image-rendering:pixelated}.note{font-size:.85em;color:#555}code{font-size:.8em}"
        f"</style></head><body data-images='{n_images}'><h1>{e(title)}</h1>"
        # Marks the page once the browser has decoded every image (what the rendering test reads back).
        "<script>addEventListener('load',function(){var n=0;for(const i of document.images)"
        "{if(i.complete&&i.naturalWidth>0)n++}document.body.setAttribute('data-decoded',n)})</script>"
        f"<p class='note'>made by scorekit {e(stamp['scorekit_version'])} (torch {e(stamp['torch_version'])}) "
        f"at {e(stamp['time_utc'])}</p>" + "".join(parts) + "</body></html>\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
