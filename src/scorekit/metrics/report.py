"""Render metrics JSON files into a Markdown (and optionally HTML) report: a metric table, a metric-vs-NFE plot
when the results carry `nfe`, and sample grids from `.npz` files. PNGs are written next to the report."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

__all__ = ["collect_results", "render_report", "save_sample_grid"]

_ORDER = ["fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "sliced_wasserstein", "mmd", "w2", "nfe"]
_LABEL_KEYS = ("label", "name", "sampler")
_SKIP = {"num_samples", "num_reference", "kid_subset_size", "is_splits", "pr_k", "w2_num", "mmd_num", "seed", "steps",
         "metric_repeats"}  # fmt: skip
_WITH_STD = ("sliced_wasserstein", "mmd", "w2")  # shown as "mean ± std" in one cell; their floor in its own column


def collect_results(inputs: list[str | Path]) -> list[dict]:
    """Records from JSON files or folders of them (searched recursively). A file may hold one object or a list
    of objects; records with no numeric metric are skipped; each gets `_source` and a `_label`."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*.json") if f.name != "config.json")
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"results not found: {p}")
    records = []
    for f in files:
        try:
            obj = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{f} is not valid JSON: {e}") from None
        items = obj if isinstance(obj, list) else [obj]
        for i, rec in enumerate(items):
            if not isinstance(rec, dict) or not any(_is_number(v) and k not in _SKIP for k, v in rec.items()):
                continue
            rec = dict(rec)
            rec["_source"] = str(f)
            label = next((str(rec[k]) for k in _LABEL_KEYS if k in rec), f.stem)
            if len(items) > 1 and not any(k in rec for k in _LABEL_KEYS):
                label = f"{f.stem}[{i}]"
            if "steps" in rec and "sampler" in rec:
                label = f"{rec['sampler']} ({rec['steps']} steps)"
            rec["_label"] = label
            records.append(rec)
    if not records:
        raise ValueError("no metric results found in the given files")
    labels = [r["_label"] for r in records]
    for r in records:
        if labels.count(r["_label"]) > 1:
            r["_label"] = f"{r['_label']} ({Path(r['_source']).stem})"
    return records


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _columns(records: list[dict]) -> list[str]:
    keys = {k for r in records for k, v in r.items() if _is_number(v) and k not in _SKIP and not k.startswith("_")}
    keys -= {f"{m}_std" for m in _WITH_STD} | {f"{m}_floor_std" for m in _WITH_STD}
    order = [k for m in _ORDER for k in ((m, f"{m}_floor") if m in _WITH_STD else (m,))]
    return [k for k in order if k in keys] + sorted(keys - set(order))


def _cell(r: dict, c: str) -> str:
    """A table cell: the value, with ± its std where the record carries one for a vector metric or its floor."""
    std = r.get(f"{c}_std") if c in _WITH_STD or (c.endswith("_floor") and c[: -len("_floor")] in _WITH_STD) else None
    return _fmt(r.get(c)) + (f" ± {_fmt(std)}" if _is_number(std) and _is_number(r.get(c)) else "")


def _fmt(v) -> str:
    if not _is_number(v):
        return "–"
    v = float(v)
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def _plot_vs_nfe(records: list[dict], out_dir: Path) -> tuple[str, str] | None:
    metric = next((m for m in ("fid", "sliced_wasserstein", "kid", "mmd", "w2") if any(
        m in r and "nfe" in r and _is_number(r[m]) for r in records)), None)  # fmt: skip
    if metric is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if _is_number(r.get(metric)) and _is_number(r.get("nfe")):
            groups.setdefault(str(r.get("sampler", "results")), []).append((float(r["nfe"]), float(r[metric])))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, pts in sorted(groups.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
    ax.set_xscale("log")
    if all(p[1] > 0 for pts in groups.values() for p in pts):
        ax.set_yscale("log")
    from matplotlib.ticker import ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("NFE (denoiser evaluations per sample)")
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = f"{metric}_vs_nfe.png"
    fig.savefig(out_dir / name, dpi=120)
    plt.close(fig)
    return metric, name


def save_sample_grid(npz_path: str | Path, out_png: str | Path, max_items: int = 64) -> Path:
    """A PNG grid of the first images of an `.npz` (`samples` in [0, 1], channels first), or a scatter plot of
    2-D vectors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluate import load_samples_npz

    x, _ = load_samples_npz(npz_path)
    out_png = Path(out_png)
    if x.ndim == 4:
        n = min(max_items, len(x))
        cols = int(math.ceil(math.sqrt(n)))
        rows = int(math.ceil(n / cols))
        c, h, w = x.shape[1:]
        canvas = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, 3), np.float32)
        for i in range(n):
            img = np.clip(x[i], 0, 1).transpose(1, 2, 0)
            img = np.repeat(img, 3, axis=2) if c == 1 else img[..., :3]
            r, q = divmod(i, cols)
            canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = img
        scale = max(1, 600 // canvas.shape[1])  # nearest-neighbour upscaling keeps tiny digits legible
        plt.imsave(out_png, canvas.repeat(scale, axis=0).repeat(scale, axis=1))
    elif x.ndim == 2 and x.shape[1] >= 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(x[:5000, 0], x[:5000, 1], s=2, alpha=0.5)
        ax.set_aspect("equal", adjustable="datalim")
        fig.tight_layout()
        fig.savefig(out_png, dpi=120)
        plt.close(fig)
    else:
        raise ValueError(f"{npz_path}: cannot draw samples of shape {tuple(x.shape)}")
    return out_png


def render_report(
    inputs: list[str | Path], out: str | Path, samples: list[str | Path] | None = None, html_too: bool = False,
    title: str = "scorekit report",
) -> Path:  # fmt: skip
    """Write the Markdown report `out` (and `out` with .html when html_too); returns its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = collect_results(inputs)
    cols = _columns(records)
    lines = [f"# {title}", "", f"{len(records)} result(s).", "", "## Metrics", ""]
    lines.append("| run | " + " | ".join(cols) + " | extractor |")
    lines.append("|---|" + "---:|" * len(cols) + "---|")
    for r in records:
        ext = r.get("feature_extractor", "")
        if r.get("feature_extractor_sha256"):
            ext = f"{ext} ({str(r['feature_extractor_sha256'])[:12]})"
        lines.append(f"| {r['_label']} | " + " | ".join(_cell(r, c) for c in cols) + f" | {ext} |")
    images: list[tuple[str, str]] = []
    plot = _plot_vs_nfe(records, out.parent)
    if plot is not None:
        lines += ["", f"## {plot[0]} vs NFE", "", f"![{plot[0]} vs NFE]({plot[1]})"]
        images.append((f"{plot[0]} vs NFE", plot[1]))
    npzs = [Path(s) for s in (samples or [])]
    npzs += [Path(r["samples"]) for r in records if isinstance(r.get("samples"), str) and Path(r["samples"]).is_file()]
    seen: list[Path] = []
    for p in npzs:
        if p.resolve() not in [s.resolve() for s in seen]:
            seen.append(p)
    if seen:
        lines += ["", "## Samples", ""]
    for i, p in enumerate(seen):
        name = f"grid_{i:02d}_{p.stem}.png"
        save_sample_grid(p, out.parent / name)
        lines += [f"**{p.name}**", "", f"![{p.name}]({name})", ""]
        images.append((p.name, name))
    lines += ["", "Sources: " + ", ".join(sorted({r["_source"] for r in records}))]
    out.write_text("\n".join(lines) + "\n")
    if html_too:
        _write_html(out.with_suffix(".html"), title, records, cols, images)
    return out


def _write_html(path: Path, title: str, records, cols, images) -> None:
    e = html.escape
    rows = "".join(
        "<tr><td>" + e(r["_label"]) + "</td>" + "".join(f"<td>{e(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in records
    )
    head = "<tr><th>run</th>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>"
    figs = "".join(f"<figure><img src='{e(src)}'><figcaption>{e(cap)}</figcaption></figure>" for cap, src in images)
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}img{image-rendering:pixelated}"
        f"</style></head><body><h1>{e(title)}</h1><table>{head}{rows}</table>{figs}</body></html>\n"
    )
