"""Reference statistics cached as `.npz` with metadata, refused when the metadata does not match.

A file holds `mu`, `sigma` (float64 Gaussian statistics of the features, for FID), optionally `features`
(float32, for KID and precision/recall) and `logits`, plus string metadata: the feature extractor and its
SHA-256, the data set spec, split and N. Loading with expectations checks each given field and names the
first that differs, so a cached file can never silently stand in for another extractor, data set or N.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .fid import as_features, gaussian_stats

__all__ = ["REFERENCE_FIELDS", "save_reference", "load_reference"]

REFERENCE_FIELDS = ("extractor", "extractor_sha256", "data", "split", "num")
FORMAT_VERSION = "1"


def save_reference(
    path: str | Path,
    features,
    *,
    extractor: str,
    extractor_sha256: str,
    data: str,
    split: str,
    logits=None,
    store_features: bool = True,
) -> dict:
    """Write the statistics of `features` [N, F] (and the features themselves unless store_features=False)
    atomically to `path`; returns the metadata written."""
    f = as_features(features)
    mu, sigma = gaussian_stats(f)
    meta = {
        "extractor": str(extractor),
        "extractor_sha256": str(extractor_sha256),
        "data": str(data),
        "split": str(split),
        "num": str(len(f)),
        "format": FORMAT_VERSION,
    }
    arrays = {"mu": mu, "sigma": sigma, **{f"meta_{k}": np.asarray(v) for k, v in meta.items()}}
    if store_features:
        arrays["features"] = f.astype(np.float32)
        if logits is not None:
            arrays["logits"] = as_features(logits, "logits").astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return meta


def load_reference(path: str | Path, **expected) -> dict:
    """Read a reference `.npz`: {"mu", "sigma", "features" or None, "logits" or None, "meta"}. Every keyword in
    `expected` (extractor, extractor_sha256, data, split, num) that is not None must equal the stored value."""
    unknown = set(expected) - set(REFERENCE_FIELDS)
    if unknown:
        raise ValueError(f"unknown reference metadata field(s): {', '.join(sorted(unknown))}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reference statistics not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = {k[5:]: str(z[k]) for k in z.files if k.startswith("meta_")}
            out = {
                "mu": z["mu"].astype(np.float64),
                "sigma": z["sigma"].astype(np.float64),
                "features": z["features"].astype(np.float64) if "features" in z.files else None,
                "logits": z["logits"].astype(np.float64) if "logits" in z.files else None,
            }
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read reference statistics {path}: {' '.join(str(e).split())}") from None
    missing = [k for k in REFERENCE_FIELDS if k not in meta]
    if missing:
        raise ValueError(f"reference statistics {path} lack metadata {missing[0]!r}: recompute them with scorekit")
    for key in REFERENCE_FIELDS:
        want = expected.get(key)
        if want is not None and str(want) != meta[key]:
            raise ValueError(
                f"reference statistics {path} were computed with {key}={meta[key]!r}, not {str(want)!r}: "
                "recompute them or pass matching options"
            )
    out["meta"] = meta
    return out
