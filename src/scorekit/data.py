"""Data sets for training and evaluation: built-in toys and digits, Gaussian-mixture specs, and files on disk.

`load_data(spec)` returns a `Dataset` whose `.data` is in *model range* (images in [-1, 1], vectors
standardised by one scalar shift/scale); `Dataset.transform` (a `DataTransform`) maps between model range and
user range (images in [0, 1] channels-first, vectors in their own units) and is what a run's config.json keeps.

Specs: ``digits`` (scikit-learn's 8×8 digits), ``moons``, ``swissroll``, ``rings``, ``checkerboard``,
``gmm:SPEC.json``, or a path: IDX files (MNIST / Fashion-MNIST layout, optionally gzipped), a CIFAR-10
python-batches folder, an image folder (PNG / JPEG / BMP, class sub-folders become labels), or ``.npy`` /
``.npz`` arrays. Every failure is a one-line ValueError naming the file.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DataTransform",
    "Dataset",
    "load_data",
    "TOY_DATASETS",
    "BatchStream",
    "iterate_batches",
    "image_grid",
    "save_image_grid",
    "save_scatter",
    "read_idx",
    "infer_array_layout",
]

SPLITS = ("train", "test", "all")
TOY_DATASETS = ("moons", "swissroll", "rings", "checkerboard")
DEFAULT_NUM_POINTS = 10000
# Fixed seeds: the digits train/test permutation, the reference sample fixing a toy's standardisation, and the
# offset that makes a toy's test sample independent of its training sample.
_SPLIT_SEED = 20220101
_TOY_REFERENCE_SEED = 12345
_TEST_SEED_OFFSET = 1_000_003
_TEST_FRACTION = 0.2
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


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

    def to_config(self) -> dict:
        """The "data" section of a run's config.json."""
        return {
            "spec": self.spec,
            "kind": self.kind,
            "shape": list(self.shape),
            "num_classes": self.num_classes,
            "transform": self.transform.to_config(),
        }


# ------------------------------------------------------------------------------------------------------------
# load_data
# ------------------------------------------------------------------------------------------------------------
def load_data(spec: str, *, split: str = "train", num: int | None = None, seed: int = 0) -> Dataset:
    """Load a data set by name or path (see the module docstring) in model range.

    `split`: "train", "test" or "all". Digits use a fixed 80/20 permutation; IDX folders and CIFAR-10 batches
    their own split; toys and ``gmm:`` specs draw `num` points (default 10000) from `seed` (the test split from
    an independent stream). Files with no split of their own (.npy/.npz, image folders, a single IDX file)
    return all their samples for every split. For finite data `num` keeps a random subset of at most `num`
    samples chosen by `seed`.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("data spec must be a non-empty string (a built-in name, gmm:SPEC.json, or a path)")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    if num is not None and (int(num) != num or num < 1):
        raise ValueError(f"num must be a positive integer, got {num!r}")
    spec = spec.strip()
    if spec == "digits":
        ds = _load_digits(split)
    elif spec in TOY_DATASETS:
        return _load_toy(spec, split, num, seed)
    elif spec.startswith("gmm:"):
        return _load_gmm(spec, split, num, seed)
    else:
        ds = _load_path(spec, split)
    ds.spec = spec
    return _subset(ds, num, seed)


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
    from .analytic import load_gmm_spec

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
def _load_path(spec: str, split: str) -> Dataset:
    p = Path(spec).expanduser()
    if not p.exists():
        hint = f" (built-in names: digits, {', '.join(TOY_DATASETS)}, gmm:SPEC.json)" if "/" not in spec else ""
        raise ValueError(f"data not found: {spec}{hint}")
    if p.is_dir():
        if _find_cifar_dir(p) is not None:
            return _load_cifar(_find_cifar_dir(p), split)
        if any(_find_idx_pair(p, prefix) is not None for prefix in ("train", "t10k", "test")):
            return _load_idx_dir(p, split)
        return _load_image_folder(p)
    name = p.name.lower()
    if name.endswith(".npy"):
        return _load_npy(p)
    if name.endswith(".npz"):
        return _load_npz(p)
    if name.endswith(_IMAGE_SUFFIXES):
        return _load_image_folder(p)
    if _looks_like_idx(p):
        return _load_idx_file(p)
    raise ValueError(
        f"{p}: unrecognised data file (expected .npy, .npz, an IDX file, a CIFAR-10 batches folder or an image folder)"
    )


# --- IDX (MNIST layout) ------------------------------------------------------------------------------------
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read ({e})") from None


def _looks_like_idx(path: Path) -> bool:
    name = path.name.lower()
    if "idx" in name or "ubyte" in name:
        return True
    try:
        head = _read_bytes(path)[:4]
    except ValueError:
        return False
    return len(head) == 4 and head[:2] == b"\x00\x00" and head[2] in _IDX_DTYPES and 1 <= head[3] <= 4


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format: 0x0000, dtype code, ndim, big-endian int32 dims, data)."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX data is {len(raw) - header} bytes, header {dims} needs {expected} (truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx_pair(folder: Path, prefix: str) -> tuple[Path, Path | None] | None:
    """(images, labels or None) for files named like [NAME-]PREFIX-images-idx3-ubyte[.gz] in `folder`
    (MNIST, Fashion-MNIST, Kaggle's PREFIX-images.idx3-ubyte, EMNIST's emnist-SET-PREFIX-images-…)."""
    hits = sorted(
        f
        for f in folder.iterdir()
        if f.is_file()
        and "idx" in f.name.lower()
        and (f.name.lower().startswith(f"{prefix}-images") or f"-{prefix}-images" in f.name.lower())
    )
    return None if not hits else (hits[0], _labels_for(hits[0]))


def _labels_for(images: Path) -> Path | None:
    """The labels file next to an IDX images file: "images" → "labels", "idx3" → "idx1", with or without .gz."""
    lower = images.name.lower()
    if "images" not in lower:
        return None
    i = lower.index("images")
    name = images.name[:i] + "labels" + images.name[i + 6 :]
    name = name.replace("idx3", "idx1").replace("IDX3", "IDX1")
    alt = name[:-3] if name.lower().endswith(".gz") else name + ".gz"
    for cand in (images.with_name(name), images.with_name(alt)):
        if cand.is_file():
            return cand
    return None


def _idx_images(images: np.ndarray, path: Path) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        return _to_nchw(images, path)
    raise ValueError(f"{path}: IDX images must be [N, H, W] or [N, H, W, C], got shape {images.shape}")


def _load_idx_file(path: Path) -> Dataset:
    images = _idx_images(read_idx(path), path)
    lab_path = _labels_for(path)
    labels = None
    if lab_path is not None:
        labels = read_idx(lab_path)
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"{lab_path}: {labels.shape} labels do not match {images.shape[0]} images")
    return _image_dataset(images, labels, str(path))


def _load_idx_dir(folder: Path, split: str) -> Dataset:
    parts = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}[split]
    xs, ys = [], []
    for prefix in parts:
        pair = _find_idx_pair(folder, prefix)
        if pair is None and prefix == "t10k":
            pair = _find_idx_pair(folder, "test")  # EMNIST names its test files "test-…"
        if pair is None:
            raise ValueError(f"{folder}: no {prefix}-images-idx3-ubyte[.gz] file for split {split!r}")
        images = _idx_images(read_idx(pair[0]), pair[0])
        xs.append(images)
        if pair[1] is not None:
            lab = read_idx(pair[1])
            if lab.ndim != 1 or lab.shape[0] != images.shape[0]:
                raise ValueError(f"{pair[1]}: {lab.shape} labels do not match {images.shape[0]} images")
            ys.append(lab)
    if ys and len(ys) != len(xs):
        raise ValueError(f"{folder}: labels exist for only some of the splits")
    if len({x.shape[1:] for x in xs}) > 1:
        raise ValueError(f"{folder}: train and test images differ in shape")
    labels = np.concatenate(ys) if ys else None
    return _image_dataset(np.concatenate(xs), labels, str(folder))


# --- CIFAR-10 python batches -------------------------------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays, so a batch file cannot run code when loaded."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _find_cifar_dir(folder: Path) -> Path | None:
    for cand in (folder, folder / "cifar-10-batches-py"):
        if (cand / "data_batch_1").is_file() or (cand / "test_batch").is_file():
            return cand
    return None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch: a pickled dict {b"data": uint8 [N, 3072], b"labels": [N]} (the documented layout)."""
    if not path.is_file():
        raise ValueError(f"{path}: CIFAR-10 batch file not found")
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: not a CIFAR-10 batch ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a CIFAR-10 batch (expected a dict)")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise ValueError(f"{path}: CIFAR-10 batch lacks 'data' or 'labels'")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"])
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise ValueError(f"{path}: CIFAR-10 data must be uint8 [N, 3072], got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {labels.shape} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar(folder: Path, split: str) -> Dataset:
    train = sorted(folder.glob("data_batch_*"), key=lambda f: f.name)
    names = {"train": train, "test": [folder / "test_batch"], "all": train + [folder / "test_batch"]}[split]
    if not names:
        raise ValueError(f"{folder}: no data_batch_* files for split {split!r}")
    batches = [_read_cifar_batch(f) for f in names]
    return _image_dataset(
        np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]), str(folder), 10
    )


# --- image folders -----------------------------------------------------------------------------------------
def _load_image_folder(path: Path) -> Dataset:
    """Images in `path` (unlabelled) or in its class sub-folders (labels = sorted sub-folder index)."""
    from PIL import Image, UnidentifiedImageError

    def images_in(d: Path) -> list[Path]:
        return sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES)

    if path.is_file():
        files, labels, classes = [path], None, []
    else:
        files = images_in(path)
        classes = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".") and images_in(d))
        if files and classes:
            raise ValueError(f"{path}: has both loose images and class sub-folders; use one layout")
        labels = None
        if classes:
            files, labels = [], []
            for k, d in enumerate(classes):
                f = images_in(d)
                files += f
                labels += [k] * len(f)
        if not files:
            raise ValueError(f"{path}: no images (.png/.jpg/.jpeg/.bmp), IDX files or CIFAR-10 batches found")
    pics = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                pics.append(im.copy())
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ValueError(f"{f}: cannot read image ({e})") from None
    sizes = {im.size for im in pics}
    if len(sizes) > 1:
        a = pics[0]
        b = next(im for im in pics if im.size != a.size)
        fb = files[pics.index(b)]
        raise ValueError(
            f"{path}: images differ in size ({files[0].name} is {a.size[0]}×{a.size[1]}, {fb.name} is "
            f"{b.size[0]}×{b.size[1]}); resize them to one size"
        )
    gray = all(im.mode in _GRAY_MODES for im in pics)
    mode = "L" if gray else "RGB"
    arr = np.stack([np.asarray(im.convert(mode), dtype=np.uint8) for im in pics])
    arr = arr[:, None] if gray else arr.transpose(0, 3, 1, 2)
    return _image_dataset(arr, labels, str(path), len(classes) if classes else None)


# --- numpy arrays ------------------------------------------------------------------------------------------
def infer_array_layout(shape: tuple[int, ...]) -> str:
    """'vector' for [N, D]; 'nhw' for [N, H, W]; 'nchw' or 'nhwc' for 4-D arrays: the channel axis is the one of
    size 1, 3 or 4; when both candidates qualify, the layout giving square images wins, then channels-first."""
    if len(shape) == 2:
        return "vector"
    if len(shape) == 3:
        return "nhw"
    if len(shape) == 4:
        first, last = shape[1] in (1, 3, 4), shape[3] in (1, 3, 4)
        if first and last:
            return "nhwc" if shape[1] == shape[2] and shape[2] != shape[3] else "nchw"
        if first:
            return "nchw"
        if last:
            return "nhwc"
    raise ValueError(f"cannot interpret an array of shape {tuple(shape)} as [N, D] vectors or [N, C, H, W] images")


def _to_nchw(x: np.ndarray, source) -> np.ndarray:
    try:
        layout = infer_array_layout(x.shape)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    if layout == "nhw":
        return x[:, None]
    if layout == "nhwc":
        return x.transpose(0, 3, 1, 2)
    return x


def _array_dataset(x: np.ndarray, labels, source: str) -> Dataset:
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise ValueError(f"{source}: unsupported array dtype {x.dtype}")
    if x.ndim < 1 or x.shape[0] == 0 or x.size == 0:
        raise ValueError(f"{source}: empty array")
    if x.ndim == 1:
        raise ValueError(f"{source}: a 1-D array is ambiguous; give [N, D] vectors (use shape [N, 1] for scalars)")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise ValueError(f"{source}: contains NaN or infinite values")
    if _layout(x.shape, source) == "vector":
        return _vector_dataset(x, labels, source)
    return _image_dataset(_to_nchw(x, source), labels, source)


def _layout(shape, source) -> str:
    try:
        return infer_array_layout(shape)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def _load_npy(path: Path) -> Dataset:
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(
            f"{path}: cannot read .npy ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    return _array_dataset(x, None, str(path))


_NPZ_DATA_KEYS = ("x", "data", "images", "samples")
_NPZ_LABEL_KEYS = ("y", "labels")


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            key = next((k for k in _NPZ_DATA_KEYS if k in keys), None)
            lkey = next((k for k in _NPZ_LABEL_KEYS if k in keys), None)
            x = z[key] if key is not None else None
            labels = z[lkey] if lkey is not None else None
    except Exception as e:  # OSError, ValueError, zipfile.BadZipFile, zlib.error … from a corrupt or truncated file
        msg = str(e).splitlines()[0] if str(e) else "corrupt"
        raise ValueError(f"{path}: cannot read .npz ({type(e).__name__}: {msg})") from None
    if x is None:
        raise ValueError(f"{path}: no array named {'/'.join(_NPZ_DATA_KEYS)} (has {', '.join(keys) or 'none'})")
    return _array_dataset(x, labels, str(path))


# ------------------------------------------------------------------------------------------------------------
# Batches: a resumable, deterministic stream of shuffled epochs
# ------------------------------------------------------------------------------------------------------------
class BatchStream:
    """Infinite stream of index batches: epoch e is a permutation of range(n) drawn from (seed, e); the epochs
    are concatenated and cut into consecutive batches of `batch_size` (so no sample is ever dropped and a batch
    may straddle two epochs). The state is just (epoch, position), so training resumes exactly.

    With `world_size` > 1 each global batch of batch_size·world_size indices is split and rank r gets the
    r-th slice (all ranks share the seed, so the slices are disjoint).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle=True):
        if n < 1:
            raise ValueError("cannot draw batches from an empty data set")
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad rank {rank} for world size {world_size}")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.rank, self.world_size, self.shuffle = int(rank), int(world_size), bool(shuffle)
        self.epoch = 0
        self.position = 0
        self._perm: Tensor | None = None
        self._perm_epoch = -1

    def _permutation(self, epoch: int) -> Tensor:
        if self._perm_epoch != epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perm = torch.randperm(self.n, generator=g)
            else:
                self._perm = torch.arange(self.n)
            self._perm_epoch = epoch
        return self._perm

    def next_indices(self) -> Tensor:
        """Indices (int64) of this rank's next batch; advances the state."""
        need = self.batch_size * self.world_size
        parts = []
        while need > 0:
            perm = self._permutation(self.epoch)
            take = min(need, self.n - self.position)
            parts.append(perm[self.position : self.position + take])
            self.position += take
            need -= take
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
        idx = torch.cat(parts)
        return idx[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def __iter__(self) -> Iterator[Tensor]:
        while True:
            yield self.next_indices()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position < self.n:
            raise ValueError(f"bad batch-stream state {state} for {self.n} samples")
        if "seed" in state and int(state["seed"]) != self.seed:
            raise ValueError(f"batch-stream state was saved with seed {state['seed']}, this stream uses {self.seed}")
        self.epoch, self.position = epoch, position


def iterate_batches(
    dataset: Dataset, batch_size: int, seed: int = 0, *, state: dict | None = None, rank: int = 0, world_size: int = 1
) -> Iterator[tuple[Tensor, Tensor | None, dict]]:
    """Endless (x, labels, state_after) batches of `dataset` from a `BatchStream`; pass `state` to resume."""
    stream = BatchStream(len(dataset), batch_size, seed, rank, world_size)
    if state is not None:
        stream.load_state_dict(state)
    for idx in stream:
        yield dataset.data[idx], (None if dataset.labels is None else dataset.labels[idx]), stream.state_dict()


# ------------------------------------------------------------------------------------------------------------
# Pictures: image grids and 2-D scatter plots
# ------------------------------------------------------------------------------------------------------------
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
