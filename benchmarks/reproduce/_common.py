"""Shared pieces of the GPU reproduction recipes: feature extractors, FID, reference statistics, tables.

The recipes run on published checkpoints with local Inception weights and data; `--dry-run` swaps in the tiny
fixture models (../shared/fixtures/pretrained), random reference images and a fixed random-feature network so
the whole pipeline runs on a CPU in seconds (its FIDs are meaningless, its plumbing is the real one).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from scorekit.metrics.features import FeatureExtractor
from scorekit.metrics.fid import fid_from_features, frechet_distance, gaussian_stats

REPO = Path(__file__).resolve().parents[2]


def fixtures_dir() -> Path:
    """The pretrained fixtures: $SCOREKIT_FIXTURES/pretrained or ../shared/fixtures/pretrained."""
    root = Path(os.environ.get("SCOREKIT_FIXTURES", REPO.parent / "shared" / "fixtures"))
    p = root / "pretrained"
    if not p.is_dir():
        raise ValueError(f"dry run needs the fixtures folder {p} (set SCOREKIT_FIXTURES)")
    return p


class RandomConvExtractor(FeatureExtractor):
    """Dry-run stand-in for Inception: a fixed (seeded) random conv net with global pooling; no files needed."""

    name = "random_conv_dryrun"
    feature_dim = 32

    def __init__(self, channels: int = 3, device="cpu"):
        g = torch.Generator().manual_seed(1234)
        conv = torch.nn.Conv2d(channels, self.feature_dim, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
            conv.bias.zero_()
        net = torch.nn.Sequential(conv, torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.sha256 = "dry-run"
        super().__init__(net, batch_size=256, device=device)

    def _forward(self, x):
        return self.net(x), None


def make_extractor(args, channels: int = 3) -> FeatureExtractor:
    if args.dry_run:
        return RandomConvExtractor(channels, device=args.device)
    from scorekit.metrics.features import InceptionExtractor

    if not args.inception:
        raise ValueError("--inception PATH (the FID Inception weights file) is required")
    return InceptionExtractor(args.inception, sha256=args.inception_sha256, device=args.device)


def reference_stats(
    extractor: FeatureExtractor, images_user, cache: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) of the reference features, cached as .npz keyed by the extractor."""
    if cache is not None and cache.is_file():
        z = np.load(cache)
        if str(z["extractor"]) == extractor.sha256:
            return z["mu"], z["sigma"]
    mu, sigma = gaussian_stats(extractor.features(images_user))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, mu=mu, sigma=sigma, extractor=extractor.sha256)
    return mu, sigma


def quantize_uint8(x_user: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] images to 8 bits, as the reference code does before saving samples for FID."""
    return (x_user.clamp(0, 1) * 255).round() / 255


def fid_against(extractor: FeatureExtractor, samples_user, ref: tuple[np.ndarray, np.ndarray]) -> float:
    mu, sigma = gaussian_stats(extractor.features(samples_user))
    return float(frechet_distance(mu, sigma, ref[0], ref[1]))


def write_results(out: Path, stem: str, title: str, columns: list[str], rows: list[dict], meta: dict) -> Path:
    """Write OUT/STEM.json (rows + meta) and OUT/STEM.md (a markdown table); returns the markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.2e}" if v != 0 and abs(v) < 1e-2 else f"{v:.3f}"
        return "" if v is None else str(v)

    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    lines += ["", "```", json.dumps(meta, indent=1), "```", ""]
    md = out / f"{stem}.md"
    md.write_text("\n".join(lines))
    print("\n".join(lines[: len(rows) + 4]))
    return md


class Timer:
    def __enter__(self):
        self.t = time.time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.time() - self.t


__all__ = [
    "fixtures_dir",
    "RandomConvExtractor",
    "make_extractor",
    "reference_stats",
    "fid_against",
    "quantize_uint8",
    "fid_from_features",
    "write_results",
    "Timer",
]
