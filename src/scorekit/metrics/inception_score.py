"""Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)), mean ± std over splits."""

from __future__ import annotations

import numpy as np
import torch

from .fid import as_features

__all__ = ["inception_score"]


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
    """IS from classifier logits [N, K] (Salimans et al. 2016, sec. 4); the samples are cut into `splits` equal
    consecutive parts as in the original code, and p(y) is each part's mean of p(y|x). Returns (mean, std)."""
    lg = torch.from_numpy(as_features(logits, "logits"))
    n = len(lg)
    if splits < 1 or n < splits:
        raise ValueError(f"inception score needs 1 <= splits <= number of samples, got splits={splits}, N={n}")
    log_p = torch.log_softmax(lg, dim=1)
    scores = []
    for part in torch.tensor_split(log_p, splits):
        log_py = torch.logsumexp(part, dim=0) - np.log(len(part))
        kl = (part.exp() * (part - log_py)).sum(1).mean()
        scores.append(float(kl.exp()))
    s = np.asarray(scores)
    return float(s.mean()), float(s.std() if len(s) > 1 else 0.0)
