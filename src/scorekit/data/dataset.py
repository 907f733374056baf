"""`Dataset` (samples in model range) and `DataTransform` (model range ↔ user range), with the helpers every
reader uses to build one."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["DataTransform", "Dataset", "SPLITS", "TOY_DATASETS", "DEFAULT_NUM_POINTS"]

SPLITS = ("train", "test", "all")
TOY_DATASETS = ("moons", "swissroll", "rings", "checkerboard")
DEFAULT_NUM_POINTS = 10000
# Fixed seeds: the digits train/test permutation, the reference sample fixing a toy's standardisation, and the
# offset that makes a toy's test sample independent of its training sample.
_SPLIT_SEED = 20220101
_TOY_REFERENCE_SEED = 12345
_TEST_SEED_OFFSET = 1_000_003
_TEST_FRACTION = 0.2


# ------------------------------------------------------------------------------------------------------------
# Model range ↔ user range
# ------------------------------------------------------------------------------------------------------------
class DataTransform:
    """Affine map user → model: ``x_model = (x_user − shift) / scale``; images clamp to [0, 1] on the way back.

    Images: shift = scale = 0.5 ([0, 1] ↔ [-1, 1], DDPM / Ho et al. 2020 §3.3). Vectors: one scalar shift and
    scale (mean and std over all coordinates), identity for Gaussian-mixture data.
    """

    def __init__(self, kind: str, shift: float = 0.0, scale: float = 1.0):
        if kind not in ("image", "vector"):
            raise ValueError(f"data transform kind must be 'image' or 'vector', got {kind!r}")
        shift, scale = float(shift), float(scale)
        if not (math.isfinite(shift) and math.isfinite(scale)) or scale <= 0:
            raise ValueError(f"data transform needs a finite shift and a positive scale, got {shift}, {scale}")
        self.kind = kind
        self.shift = shift
        self.scale = scale

    @classmethod
    def image(cls) -> DataTransform:
        return cls("image", 0.5, 0.5)

    @classmethod
    def identity(cls) -> DataTransform:
        return cls("vector", 0.0, 1.0)

    def to_model(self, x_user):
        """User range → model range (tensor or numpy array in, same type out)."""
        return (x_user - self.shift) / self.scale

    def to_user(self, x_model):
        """Model range → user range; images are clamped to [0, 1]."""
        x = x_model * self.scale + self.shift
        if self.kind == "image":
            x = x.clamp(0.0, 1.0) if isinstance(x, Tensor) else np.clip(x, 0.0, 1.0)
        return x

    def to_config(self) -> dict:
        return {"kind": self.kind, "shift": self.shift, "scale": self.scale}

    @classmethod
    def from_config(cls, config: dict) -> DataTransform:
        if not isinstance(config, dict) or "kind" not in config:
            raise ValueError("data transform config must be an object with a 'kind' key")
        if config["kind"] == "image":
            return cls("image", config.get("shift", 0.5), config.get("scale", 0.5))
        return cls(config["kind"], config.get("shift", 0.0), config.get("scale", 1.0))

    def __eq__(self, other) -> bool:
        return isinstance(other, DataTransform) and self.to_config() == other.to_config()

    def __repr__(self) -> str:
        return f"DataTransform(kind={self.kind!r}, shift={self.shift:.6g}, scale={self.scale:.6g})"


@dataclass
class Dataset:
    """Samples in model range: `data` float32 [N, *shape], `labels` int64 [N] or None."""

    data: Tensor
    labels: Tensor | None
    kind: str
    num_classes: int
    transform: DataTransform
    spec: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0]

    def user_data(self) -> Tensor:
        """The samples in user range (images in [0, 1], vectors in their own units)."""
        return self.transform.to_user(self.data)

    def class_counts(self) -> list[int] | None:
        """How many samples of each class 0..num_classes-1 the data holds (None without labels): kept in a run's
        config so that sampling without `--class` can draw classes as often as training saw them."""
        if self.labels is None or not self.num_classes:
            return None
        return [int(c) for c in torch.bincount(self.labels.long(), minlength=self.num_classes)[: self.num_classes]]

    def to_config(self) -> dict:
        """The "data" section of a run's config.json."""
        out = {
            "spec": self.spec,
            "kind": self.kind,
            "shape": list(self.shape),
            "num_classes": self.num_classes,
            "transform": self.transform.to_config(),
        }
        counts = self.class_counts()
        if counts is not None:
            out["class_counts"] = counts
        return out


def _subset(ds: Dataset, num: int | None, seed: int) -> Dataset:
    if num is None or num >= len(ds):
        return ds
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(ds), generator=g)[: int(num)].sort().values
    ds.data = ds.data[idx].contiguous()
    if ds.labels is not None:
        ds.labels = ds.labels[idx].contiguous()
    return ds


def _split_indices(n: int, split: str) -> np.ndarray:
    """A fixed 80/20 train/test partition of range(n) (independent of the caller's seed)."""
    perm = np.random.default_rng(_SPLIT_SEED).permutation(n)
    n_test = int(round(n * _TEST_FRACTION))
    if split == "test":
        return np.sort(perm[:n_test])
    if split == "train":
        return np.sort(perm[n_test:])
    return np.arange(n)


def _labels_tensor(labels, n: int, source: str) -> Tensor | None:
    if labels is None:
        return None
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"{source}: {lab.shape[0] if lab.ndim else 0} labels for {n} samples")
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.issubdtype(lab.dtype, np.floating) or not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise ValueError(f"{source}: labels must be integers")
    if lab.size and lab.min() < 0:
        raise ValueError(f"{source}: labels must be non-negative")
    return torch.from_numpy(lab.astype(np.int64))


def _num_classes(labels: Tensor | None) -> int:
    return 0 if labels is None or labels.numel() == 0 else int(labels.max()) + 1


def _image_dataset(images: np.ndarray, labels, source: str, num_classes: int | None = None) -> Dataset:
    """uint8 0..255 or float [0, 1] images [N, C, H, W] → Dataset in [-1, 1]."""
    x = _image_to_unit(images, source)
    if x.shape[0] == 0:
        raise ValueError(f"{source}: no samples")
    lab = _labels_tensor(labels, x.shape[0], source)
    t = DataTransform.image()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x is images:  # never modify the caller's array
        x = x.copy()
    x -= t.shift  # in place: a 50000-image set is 600 MB as float32
    x /= t.scale
    nc = _num_classes(lab) if num_classes is None else int(num_classes)
    return Dataset(torch.from_numpy(x), lab, "image", nc, t)


def _image_to_unit(images: np.ndarray, source: str) -> np.ndarray:
    if images.size == 0:
        raise ValueError(f"{source}: no samples")
    if images.dtype == np.uint8:
        return np.divide(images, np.float32(255.0), dtype=np.float32)
    if images.dtype == np.bool_:
        return images.astype(np.float32)
    if np.issubdtype(images.dtype, np.integer):
        lo, hi = int(images.min()), int(images.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{source}: integer image values must lie in 0..255 (got {lo}..{hi})")
        return np.divide(images, np.float32(255.0), dtype=np.float32)
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{source}: unsupported image dtype {images.dtype}")
    x = images.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{source}: contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{source}: float images must lie in [0, 1] (got [{lo:.4g}, {hi:.4g}]); give uint8 0..255 or rescale"
        )
    return x


def _vector_dataset(x: np.ndarray, labels, source: str, transform: DataTransform | None = None) -> Dataset:
    """[N, D] vectors → Dataset standardised by the scalar mean/std of all coordinates (or `transform`)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{source}: vector data must be a non-empty [N, D] array, got shape {tuple(x.shape)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{source}: contains NaN or infinite values")
    if transform is None:
        std = float(x.std())
        transform = DataTransform("vector", float(x.mean()), std if std > 0 else 1.0)
    lab = _labels_tensor(labels, x.shape[0], source)
    data = torch.from_numpy(transform.to_model(x)).float().contiguous()
    return Dataset(data, lab, "vector", _num_classes(lab), transform)


# --- digits ------------------------------------------------------------------------------------------------
