"""Data on disk: IDX files (MNIST layout, optionally gzipped), CIFAR-10 python batches (restricted unpickler),
image folders (class sub-folders become labels) and .npy / .npz arrays."""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from pathlib import Path

import numpy as np

from .dataset import TOY_DATASETS, Dataset, _image_dataset, _vector_dataset

__all__ = ["read_idx", "infer_array_layout", "require_npz"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


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


def require_npz(path: str | Path) -> Path:
    """Refuse, in one line, a file that is missing or not an .npz (zip) archive — before `np.load` calls a text
    file "pickled data"."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found" if not path.exists() else f"{path} is a folder, not an .npz file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            if f.read(2) == b"PK":  # a zip that lost its end (an interrupted copy)
                raise ValueError(f"{path}: cannot read .npz (truncated or damaged zip archive)")
        raise ValueError(f"{path} is not an .npz archive (expected a zip of .npy arrays, as numpy.savez writes)")
    return path


def _require_npy(path: Path) -> None:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise ValueError(f"{path}: cannot read .npy (not a NumPy .npy array file, as numpy.save writes)")


def _load_npy(path: Path) -> Dataset:
    _require_npy(path)
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
    require_npz(path)
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
