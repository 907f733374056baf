"""Named data sets on disk: ``fashion-mnist`` and ``mnist`` as folders of IDX files, found, never downloaded.

`find_dataset(name)` looks, in order, in an explicit `root` (a folder holding the IDX files or a ``<name>``
sub-folder), ``$SCOREKIT_DATA/<name>``, the folder a Debian package installs (``/usr/share/datasets/<name>``,
``apt-get install dataset-fashion-mnist``) and ``~/.local/share/scorekit/data/<name>``. `load_named(name, split)`
returns the very `Dataset` that `data.load_data(folder, split=split)` returns for that folder (the train/test split
is the files' own: ``train-*`` and ``t10k-*``), with `spec` set to the name. Absent data is a one-line ValueError
saying how to install it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = [
    "NAMED_DATASETS",
    "DATA_ENV",
    "find_dataset",
    "load_named",
    "is_named_dataset",
    "dataset_files",
    "dataset_files_sha256",
]

DATA_ENV = "SCOREKIT_DATA"
# name → (Debian package or None, image shape). Fashion-MNIST and MNIST share LeCun's IDX layout and file names.
NAMED_DATASETS = {
    "fashion-mnist": {"package": "dataset-fashion-mnist", "shape": (1, 28, 28), "num_classes": 10},
    "mnist": {"package": None, "shape": (1, 28, 28), "num_classes": 10},
}
_SYSTEM_ROOT = Path("/usr/share/datasets")
_USER_ROOT = Path("~/.local/share/scorekit/data")
_SPLIT_PREFIXES = {"train": ("train",), "test": ("t10k", "test"), "all": ("train", "t10k", "test")}


def is_named_dataset(spec: str) -> bool:
    """Whether `spec` names one of `NAMED_DATASETS` (what `data.load_data` routes here)."""
    return isinstance(spec, str) and spec.strip().lower() in NAMED_DATASETS


def _has_idx(folder: Path) -> bool:
    """A folder with a ``train-images…idx3…`` file (gzipped or not), as `data`'s IDX folder loader expects."""
    try:
        return folder.is_dir() and any(
            f.is_file() and f.name.lower().startswith("train-images") and "idx" in f.name.lower()
            for f in folder.iterdir()
        )
    except OSError:
        return False


def _candidates(name: str, root) -> list[Path]:
    out = []
    if root is not None:
        r = Path(root).expanduser()
        out += [r, r / name]
    env = os.environ.get(DATA_ENV)
    if env:
        out.append(Path(env).expanduser() / name)
    out += [_SYSTEM_ROOT / name, _USER_ROOT.expanduser() / name]
    return out


def _install_hint(name: str) -> str:
    pkg = NAMED_DATASETS[name]["package"]
    how = f"install it with `apt-get install {pkg}`, or " if pkg else ""
    return (
        f"{how}put its IDX files (train-images-idx3-ubyte.gz, …) in ${DATA_ENV}/{name} "
        f"or {_USER_ROOT}/{name}, or pass that folder as --data"
    )


def find_dataset(name: str, root=None) -> Path:
    """The folder holding `name`'s IDX files: `root` (or `root/name`), $SCOREKIT_DATA/name, the Debian package's
    /usr/share/datasets/name, ~/.local/share/scorekit/data/name; a one-line ValueError when none has them."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in NAMED_DATASETS:
        raise ValueError(f"unknown data set {name!r} (named data sets: {', '.join(NAMED_DATASETS)})")
    searched = _candidates(key, root)
    for folder in searched:
        if _has_idx(folder):
            return folder
    if root is not None:
        raise ValueError(f"{key} not found in {Path(root).expanduser()}: {_install_hint(key)}")
    raise ValueError(f"{key} not found: {_install_hint(key)}")


def load_named(name: str, split: str = "train", root=None):
    """`data.load_data(find_dataset(name), split=split)` with `spec` = the name: the same `Dataset` (model range,
    labels, train/test from the ``train-*`` / ``t10k-*`` files) as for the folder itself."""
    from .data import load_data

    key = name.strip().lower()
    ds = load_data(str(find_dataset(key, root)), split=split)
    ds.spec = key
    return ds


def dataset_files(name: str, split: str = "test", root=None) -> list[Path]:
    """The IDX files (images and labels) that make up `split` of the named data set, sorted by name."""
    if split not in _SPLIT_PREFIXES:
        raise ValueError(f"unknown split {split!r} (choose from {', '.join(_SPLIT_PREFIXES)})")
    folder = find_dataset(name, root)
    prefixes = _SPLIT_PREFIXES[split]
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and "idx" in f.name.lower() and f.name.lower().split("-")[0] in prefixes
    )


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_files_sha256(name: str, split: str = "test", root=None) -> dict[str, str]:
    """{file name: SHA-256 of its bytes} for the files of `split` (the data's provenance in reference statistics)."""
    return {f.name: _file_sha256(f) for f in dataset_files(name, split, root)}
