"""Running mean / covariance of features in float64 (Chan et al. 1979 pairwise update): memory flat in N,
mergeable across batches or processes, saveable so an interrupted evaluation resumes where it stopped."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

__all__ = ["StreamingStats", "accumulate_features"]


class StreamingStats:
    """Accumulates count, mean and the centred scatter matrix M2 = Σ (x − μ)(x − μ)ᵀ of [B, F] batches."""

    def __init__(self, dim: int | None = None):
        self.n = 0
        self.dim = dim
        self.mean = None if dim is None else np.zeros(dim)
        self.m2 = None if dim is None else np.zeros((dim, dim))

    def update(self, features) -> StreamingStats:
        """Add a batch [B, F] (Chan et al.'s combination of (n, μ, M2) with the batch's own)."""
        from .fid import as_features

        x = as_features(features)
        if len(x) == 0:
            return self
        bm = x.mean(0)
        bm2 = (x - bm).T @ (x - bm)
        return self._combine(len(x), bm, bm2)

    def _combine(self, nb: int, mb: np.ndarray, m2b: np.ndarray) -> StreamingStats:
        if self.dim is None:
            self.dim, self.mean, self.m2 = len(mb), np.zeros(len(mb)), np.zeros((len(mb), len(mb)))
        if len(mb) != self.dim:
            raise ValueError(f"feature dimension {len(mb)} differs from the running statistics' {self.dim}")
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + np.outer(delta, delta) * (self.n * nb / n)
        self.n = n
        return self

    def merge(self, other: StreamingStats) -> StreamingStats:
        """Fold in statistics gathered elsewhere (another worker, an earlier run)."""
        if other.n:
            self._combine(other.n, other.mean, other.m2)
        return self

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (ddof = 1), as `np.cov`."""
        if self.n < 2:
            raise ValueError(f"need at least 2 samples for a covariance, have {self.n}")
        return self.m2 / (self.n - 1)

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean.copy(), self.cov

    def state_dict(self) -> dict:
        return {"n": np.int64(self.n), "mean": self.mean, "m2": self.m2}

    def save(self, path: str | Path, **metadata) -> None:
        """Write an `.npz` atomically (temp file + rename); extra string metadata is stored alongside."""
        import os
        import tempfile

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            extra = {f"meta_{k}": np.asarray(str(v)) for k, v in metadata.items()}
            np.savez(tmp, **self.state_dict(), **extra)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | Path) -> tuple[StreamingStats, dict]:
        try:
            with np.load(path, allow_pickle=False) as z:
                s = cls(int(z["mean"].shape[0]))
                s.n, s.mean, s.m2 = int(z["n"]), z["mean"].astype(np.float64), z["m2"].astype(np.float64)
                meta = {k[5:]: str(z[k]) for k in z.files if k.startswith("meta_")}
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"cannot read streaming statistics {path}: {e}") from None
        return s, meta


def accumulate_features(
    extractor,
    batch_fn,
    num_batches: int,
    state_path: str | Path | None = None,
    progress: bool = False,
) -> StreamingStats:
    """Feed `batch_fn(b)` (user-range images of batch b, e.g. from `scorekit.sampling.generate(...,
    batches=[b])` with per-batch seeds) through `extractor` into running statistics, one batch at a time
    (memory flat in N). With `state_path` the statistics and the number of finished batches are saved after
    every batch, and a rerun resumes after the last saved batch; a file from another extractor is refused."""
    stats, start = StreamingStats(), 0
    if state_path is not None and Path(state_path).is_file():
        stats, meta = StreamingStats.load(state_path)
        if meta.get("extractor_sha256") != extractor.sha256:
            raise ValueError(f"{state_path} was accumulated with another feature extractor; delete it to restart")
        start = int(meta.get("batches_done", 0))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_batches, initial=start, desc="features", unit="batch", dynamic_ncols=True, disable=None)
    for b in range(start, int(num_batches)):
        stats.update(extractor.features(batch_fn(b)))
        if state_path is not None:
            stats.save(state_path, extractor=extractor.name, extractor_sha256=extractor.sha256, batches_done=b + 1)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return stats
