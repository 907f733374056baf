"""Cross-entropy objectives for the two classifiers scorekit trains in the one loop (`training.train`).

- `NoiseLevelObjective`: CE of p(y | x0 + σ_y·ε), y uniform over a σ grid (Kim & Ye 2022, Sec. 4).
- `NoisyClassifierObjective`: CE of p(c | x_t, t) on data noised at t ~ U(t_min, 1), DDPM integer steps
  (Dhariwal & Nichol 2021, §4.1).

Both draw all their randomness for the global batch up front (`draw`), like the denoising objectives, so
training is bit-identical on resume and independent of the world size.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .guidance import NOISE_BANDS
from .losses import Objective
from .models.parameterization import bcast
from .processes import DDPM, Process

__all__ = ["NoiseLevelObjective", "NoisyClassifierObjective", "NOISE_BANDS", "sample_classifier_t", "band_name"]


def sample_classifier_t(process: Process, n: int, generator, lo: float | None = None, hi: float | None = None):
    """t ~ U(max(lo, t_min), min(hi, 1)) in float64; DDPM: rounded up to an integer step t = (i+1)/T."""
    lo = process.t_min if lo is None else max(lo, process.t_min)
    hi = process.t_max if hi is None else min(hi, process.t_max)
    t = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    if isinstance(process, DDPM):
        t = (torch.ceil(t * process.num_steps).clamp(1, process.num_steps)) / process.num_steps
    return t


def band_name(i: int) -> str:
    return f"t{NOISE_BANDS[i]:.2f}-{NOISE_BANDS[i + 1]:.2f}"


def band_of(t: Tensor) -> Tensor:
    edges = torch.tensor(NOISE_BANDS[1:-1], dtype=torch.float64)
    return torch.bucketize(t.to(torch.float64).cpu(), edges, right=True)


class NoiseLevelObjective(Objective):
    """CE(net(x0 + σ_y·ε), y), y ~ U{0..L−1} over the decreasing σ grid `levels` (Kim & Ye 2022, Sec. 4)."""

    name = "noise_level"
    needs_labels = False

    def __init__(self, levels):
        self.levels = torch.as_tensor(levels, dtype=torch.float64).cpu()
        if self.levels.ndim != 1 or self.levels.numel() < 2:
            raise ValueError("the noise-level objective needs a 1-D σ grid of at least 2 levels")

    def draw(self, n, sample_shape, generator, device=None, dtype=torch.float32):
        y = torch.randint(0, self.levels.numel(), (n,), generator=generator)
        eps = torch.randn((n, *sample_shape), generator=generator, dtype=dtype)
        return {"level": y.to(device), "noise": eps.to(device)}

    def __call__(self, net, x0, generator=None, class_labels=None, level=None, noise=None):
        if level is None or noise is None:
            r = self.draw(x0.shape[0], x0.shape[1:], generator, x0.device, x0.dtype)
            level, noise = r["level"], r["noise"]
        sigma = self.levels.to(x0.device)[level].to(x0.dtype)
        x = x0 + bcast(sigma, x0) * noise.to(x0.dtype)
        return F.cross_entropy(net(x).float(), level.to(x0.device), reduction="none")


class NoisyClassifierObjective(Objective):
    """CE of `TrainedClassifier.log_probs(x0 + σ(t)·ε, σ(t))` against the labels, t ~ U(t_min, 1) (DDPM: integer
    steps) — Dhariwal & Nichol 2021, §4.1. Keeps the accuracy per noise band of the batches it saw (`log_fields`)."""

    name = "noisy_classifier"
    needs_labels = True

    def __init__(self, process: Process):
        self.process = process
        nb = len(NOISE_BANDS) - 1
        self._hits, self._counts = torch.zeros(nb), torch.zeros(nb)

    def draw(self, n, sample_shape, generator, device=None, dtype=torch.float32):
        t = sample_classifier_t(self.process, n, generator)
        eps = torch.randn((n, *sample_shape), generator=generator, dtype=dtype)
        return {"t": t.to(device), "noise": eps.to(device)}

    def __call__(self, classifier, x0, generator=None, class_labels=None, t=None, noise=None):
        if class_labels is None:
            raise ValueError("the noisy-classifier objective needs class labels")
        if t is None or noise is None:
            r = self.draw(x0.shape[0], x0.shape[1:], generator, x0.device, x0.dtype)
            t, noise = r["t"], r["noise"]
        sigma = self.process.sigma(t.to(torch.float64)).to(x0.device, x0.dtype)
        x = x0 + bcast(sigma, x0) * noise.to(x0.dtype)
        logp = classifier.log_probs(x, sigma)
        with torch.no_grad():
            correct = (logp.argmax(1) == class_labels).float().cpu()
            band = band_of(t)
            self._hits.index_add_(0, band, correct)
            self._counts.index_add_(0, band, torch.ones_like(correct))
        return F.nll_loss(logp, class_labels, reduction="none")

    def log_fields(self) -> dict:
        """Accuracy overall and per noise band since the last call (then reset)."""
        acc = {
            band_name(b): (float(self._hits[b] / self._counts[b]) if self._counts[b] > 0 else None)
            for b in range(len(NOISE_BANDS) - 1)
        }
        out = {"acc": float(self._hits.sum() / self._counts.sum().clamp(min=1)), "acc_by_noise": acc}
        self._hits.zero_()
        self._counts.zero_()
        return out
