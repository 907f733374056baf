"""Built-in data sets: scikit-learn's 8×8 digits, 2-D toys, and samples of a Gaussian-mixture spec."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import (
    _TEST_SEED_OFFSET,
    _TOY_REFERENCE_SEED,
    DEFAULT_NUM_POINTS,
    Dataset,
    DataTransform,
    _image_dataset,
    _split_indices,
    _vector_dataset,
)


def _load_digits(split: str) -> Dataset:
    """scikit-learn's 1797 8×8 digits (values 0..16 → [0, 1]), fixed 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = _split_indices(len(d.target), split)
    images = (d.images[idx] / 16.0).astype(np.float32)[:, None]
    return _image_dataset(images, d.target[idx], "digits", num_classes=10)


# --- 2-D toys ----------------------------------------------------------------------------------------------
def _toy_points(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points of a 2-D toy distribution in its natural units (float64 [n, 2])."""
    if name == "moons":  # two interleaved half circles (as scikit-learn's make_moons), noise 0.05
        upper = rng.random(n) < 0.5
        a = np.pi * rng.random(n)
        x = np.where(upper, np.cos(a), 1.0 - np.cos(a))
        y = np.where(upper, np.sin(a), 0.5 - np.sin(a))
        return np.stack([x, y], 1) + 0.05 * rng.standard_normal((n, 2))
    if name == "swissroll":  # 2-D Swiss roll: r = θ for θ ∈ [1.5π, 4.5π], noise 0.25
        theta = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
        return np.stack([theta * np.cos(theta), theta * np.sin(theta)], 1) + 0.25 * rng.standard_normal((n, 2))
    if name == "rings":  # four concentric circles of radii 1..4 (points ∝ circumference), noise 0.08
        k = rng.choice(4, size=n, p=np.arange(1, 5) / 10.0)
        a = 2 * np.pi * rng.random(n)
        r = (k + 1.0)[:, None]
        return r * np.stack([np.cos(a), np.sin(a)], 1) + 0.08 * rng.standard_normal((n, 2))
    if name == "checkerboard":  # uniform on the black squares of a 4×4 board on [-2, 2]²
        x1 = 4.0 * rng.random(n) - 2.0
        row = rng.integers(0, 2, n) * 2.0 - 2.0 + rng.random(n)  # in [-2,-1) or [0,1)
        x2 = row + (np.floor(x1) % 2)
        return np.stack([x1, x2], 1)
    raise ValueError(f"unknown toy data set {name!r}")


def _load_toy(name: str, split: str, num: int | None, seed: int) -> Dataset:
    n = DEFAULT_NUM_POINTS if num is None else int(num)
    s = int(seed) + (_TEST_SEED_OFFSET if split == "test" else 0)
    pts = _toy_points(name, n, np.random.default_rng(s))
    # The standardisation is a property of the distribution, not of the draw: fix it by a reference sample so
    # train and test splits (and any num/seed) share the same model units.
    ref = _toy_points(name, 20000, np.random.default_rng(_TOY_REFERENCE_SEED))
    t = DataTransform("vector", float(ref.mean()), float(ref.std()))
    ds = _vector_dataset(pts, None, name, t)
    ds.spec = name
    return ds


# --- Gaussian mixture specs --------------------------------------------------------------------------------
def _load_gmm(spec: str, split: str, num: int | None, seed: int) -> Dataset:
    """Samples of a Gaussian mixture SPEC.json; identity transform so the exact GMM denoiser shares units."""
    from ..analytic import load_gmm_spec  # data never imports models; the mixture's module only for gmm: specs

    path = spec[len("gmm:") :]
    if not path:
        raise ValueError("gmm: spec needs a path, e.g. gmm:mixture.json")
    gmm = load_gmm_spec(path)
    n = DEFAULT_NUM_POINTS if num is None else int(num)
    s = int(seed) + (_TEST_SEED_OFFSET if split == "test" else 0)
    x, comp = gmm.sample(n, generator=torch.Generator().manual_seed(s))
    labels = None if gmm.labels is None else gmm.labels[comp].numpy()
    ds = _vector_dataset(x.numpy(), labels, spec, DataTransform.identity())
    ds.num_classes = gmm.num_classes
    ds.spec = spec
    return ds


# --- paths -------------------------------------------------------------------------------------------------
