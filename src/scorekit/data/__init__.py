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

from ..datasets import is_named_dataset, load_named
from ..plots import image_grid, save_image_grid, save_scatter
from .builtin import _load_digits, _load_gmm, _load_toy
from .dataset import SPLITS, TOY_DATASETS, Dataset, DataTransform, _subset
from .readers import _load_path, infer_array_layout, read_idx

__all__ = [
    "DataTransform",
    "Dataset",
    "load_data",
    "TOY_DATASETS",
    "image_grid",
    "save_image_grid",
    "save_scatter",
    "read_idx",
    "infer_array_layout",
]


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
    elif is_named_dataset(spec):  # fashion-mnist, mnist: IDX folders on disk, never downloaded
        ds = load_named(spec, split)
    else:
        ds = _load_path(spec, split)
    ds.spec = spec
    return _subset(ds, num, seed)
