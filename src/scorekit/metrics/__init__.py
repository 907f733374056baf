"""Sample-quality metrics: vector metrics (sliced Wasserstein, MMD, exact W2) and image metrics on features
(FID, KID, IS, precision/recall) from offline, hash-pinned feature extractors."""

from .fid import fid_from_features, frechet_distance, gaussian_stats
from .inception_score import inception_score
from .kid import kernel_inception_distance
from .precision_recall import precision_recall
from .streaming import StreamingStats
from .vector import mmd_rbf, sliced_wasserstein, wasserstein2_exact

__all__ = [
    "sliced_wasserstein",
    "mmd_rbf",
    "wasserstein2_exact",
    "frechet_distance",
    "fid_from_features",
    "gaussian_stats",
    "kernel_inception_distance",
    "inception_score",
    "precision_recall",
    "StreamingStats",
    "get_extractor",
    "evaluate_samples",
]


def __getattr__(name):  # heavier pieces load on first use
    if name == "get_extractor":
        from .features import get_extractor

        return get_extractor
    if name == "evaluate_samples":
        from .evaluate import evaluate_samples

        return evaluate_samples
    raise AttributeError(name)
