"""Pictures: image grids (PNG) and 2-D scatter plots of samples in user range."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["image_grid", "save_image_grid", "save_scatter", "save_labelled_panels", "panel_title"]


def image_grid(x_user, nrow: int | None = None, padding: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile [N, C, H, W] images in [0, 1] into one uint8 [H', W', C] array, `nrow` images per row."""
    x = torch.as_tensor(x_user).detach().cpu().float()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"image_grid needs [N, C, H, W] images, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if not torch.isfinite(x).all():
        raise ValueError("image_grid: images contain NaN or infinite values")
    ncol = int(nrow) if nrow else max(1, math.ceil(math.sqrt(n)))
    if ncol < 1:
        raise ValueError(f"nrow must be positive, got {nrow}")
    nrows = math.ceil(n / ncol)
    grid = torch.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), float(pad_value))
    for i in range(n):
        r, q = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top : top + h, left : left + w] = x[i]
    out = (grid.clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8)
    return out.permute(1, 2, 0).numpy()


def save_image_grid(path, x_user, nrow: int | None = None, upscale: int | None = None, padding: int = 1) -> Path:
    """Write an image grid as PNG; small images are enlarged (nearest neighbour) to ≥ 32 px unless `upscale`."""
    from PIL import Image

    grid = image_grid(x_user, nrow, padding)
    h = torch.as_tensor(x_user).shape[-2]
    k = max(1, 32 // max(1, h)) if upscale is None else int(upscale)
    if k > 1:
        grid = grid.repeat(k, axis=0).repeat(k, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.ascontiguousarray(grid[..., 0] if grid.shape[-1] == 1 else grid))
    img.save(path, format="PNG")
    return path


def save_scatter(path, x_user_2d, ref=None, title: str | None = None, max_points: int = 5000) -> Path:
    """Scatter plot (matplotlib Agg, no global state) of 2-D samples, optionally over reference points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def as_2d(a, what):
        a = torch.as_tensor(a).detach().cpu().double().numpy()
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"save_scatter: {what} must be [N, 2], got shape {a.shape}")
        return a[:max_points]

    x = as_2d(x_user_2d, "samples")
    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if ref is not None:
        r = as_2d(ref, "reference")
        ax.scatter(r[:, 0], r[:, 1], s=2, c="0.7", alpha=0.5, label="data", rasterized=True)
    ax.scatter(x[:, 0], x[:, 1], s=2, c="C0", alpha=0.6, label="samples", rasterized=True)
    if ref is not None:
        ax.legend(loc="upper right", markerscale=4, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def panel_title(method: str, nfe: float | None = None, **metrics) -> str:
    """ "heun · NFE 35 · FID 12.3": the label of one panel of a comparison picture (None values are left out)."""
    parts = [str(method)]
    if nfe is not None:
        parts.append(f"NFE {float(nfe):.3g}")
    for name, v in metrics.items():
        if v is not None:
            parts.append(f"{name} {float(v):.3g}" if isinstance(v, (int, float)) else f"{name} {v}")
    return " · ".join(parts)


def save_labelled_panels(path, panels, nrow: int | None = None, reference=None, suptitle: str | None = None) -> Path:
    """One PNG with a titled panel per entry of `panels` = [(title, samples_user), ...], side by side: an image grid
    for [N, C, H, W] images, a scatter (over `reference` points if given) for [N, 2] vectors. Every comparison
    picture scorekit writes goes through here, so every panel says what it shows (method, NFE, metric)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(panels)
    if not panels:
        raise ValueError("save_labelled_panels needs at least one (title, samples) panel")
    first = torch.as_tensor(panels[0][1])
    aspect = 1.0  # height / width of one panel's content
    if not (first.ndim == 2 and first.shape[1] == 2):
        g = image_grid(first, nrow)
        aspect = min(1.5, max(0.15, g.shape[0] / g.shape[1]))
    fig = Figure(figsize=(3.6 * len(panels), 3.6 * aspect + 0.9), dpi=110)
    FigureCanvasAgg(fig)
    for i, (title, x) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        x = torch.as_tensor(x).detach().cpu()
        if x.ndim == 2 and x.shape[1] == 2:
            if reference is not None:
                r = torch.as_tensor(reference).detach().cpu().double().numpy()[:5000]
                ax.scatter(r[:, 0], r[:, 1], s=2, c="0.7", alpha=0.5, rasterized=True)
            a = x.double().numpy()[:5000]
            ax.scatter(a[:, 0], a[:, 1], s=2, c="C0", alpha=0.6, rasterized=True)
            ax.set_aspect("equal", adjustable="datalim")
        else:
            grid = image_grid(x, nrow)
            ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(str(title), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
