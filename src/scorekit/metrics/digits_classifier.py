"""The pinned digits classifier: features and logits for FID / KID / IS / P-R on 8×8 digits, where Inception
(trained on 299×299 ImageNet photographs) is meaningless.

A small CNN trained by scorekit on scikit-learn's 8×8 digits (the same role as the LeNet classifiers used for
MNIST FID in the literature). Its weights ship with the package (`weights/digits_classifier.safetensors`) and
the SHA-256 of their tensors is pinned here, so a number computed with it names exactly which network produced it.
Retrain (bit-for-bit on the same torch build, single thread) with::

    python benchmarks/retrain_digits_classifier.py [--out PATH]

which prints the test accuracy and the new weights' SHA-256.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .pinned import load_pinned, weights_sha256

__all__ = [
    "DIGITS_CLASSIFIER_SHA256",
    "DIGITS_WEIGHTS_PATH",
    "DigitsCNN",
    "digits_split",
    "train_digits_classifier",
    "load_digits_classifier",
    "accuracy",
    "weights_sha256",
]

DIGITS_WEIGHTS_PATH = Path(__file__).parent / "weights" / "digits_classifier.safetensors"
# SHA-256 of the weights (tensor names, dtypes, shapes and bytes, as scorekit.checkpoint checksums them; the
# safetensors header orders its metadata arbitrarily, so the file's own bytes are not reproducible).
DIGITS_CLASSIFIER_SHA256 = "31c0fab84f9ee29d30a1a927b92255c78e00f071b3c2509b4e666d957a727d52"


class DigitsCNN(nn.Module):
    """conv3×3(32) → conv3×3(64) → maxpool → linear(1024→64) = features → ReLU → linear(64→10) = logits.
    Input: [N, 1, 8, 8] in [0, 1] (user range). The features are the penultimate layer's pre-activations
    (ReLU zeroes some units on every digit, which would carry no information)."""

    feature_dim = 64

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, self.feature_dim)
        self.fc2 = nn.Linear(self.feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = 2 * x - 1
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc1(F.max_pool2d(x, 2).flatten(1))

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(x))


def digits_split(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits as ([N, 1, 8, 8] float32 in [0, 1], labels int64), from scorekit.data's
    fixed 80/20 split ("train", "test" or "all"), so the classifier never sees the test digits."""
    from ..data import load_data

    ds = load_data("digits", split=split)
    return ds.user_data().float().contiguous(), ds.labels.long()


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random ±1-pixel shifts and mild pixel noise, so features stay stable on imperfect generated digits."""
    pad = F.pad(x, (1, 1, 1, 1))
    dx = torch.randint(0, 3, (len(x),), generator=gen)
    dy = torch.randint(0, 3, (len(x),), generator=gen)
    out = torch.stack([pad[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8] for i in range(len(x))])
    return (out + 0.05 * torch.randn(out.shape, generator=gen)).clamp(0, 1)


def train_digits_classifier(epochs: int = 30, batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> DigitsCNN:
    """Train DigitsCNN on the train split with Adam and cross-entropy; deterministic given the seed."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # parameter initialisation
    net = DigitsCNN()
    x, y = digits_split("train")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(net(_augment(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: DigitsCNN, split: str = "test") -> float:
    x, y = digits_split(split)
    return float((net(x).argmax(1) == y).double().mean())


def load_digits_classifier(path: str | Path | None = None, sha256: str | None = None) -> tuple[DigitsCNN, str]:
    """The pinned classifier (or a file at `path`); its weights' SHA-256 must equal the pinned one (or `sha256`
    when given; a file at another path with no `sha256` is only checked against its own stored checksum)."""
    path = Path(path) if path is not None else DIGITS_WEIGHTS_PATH
    expected = sha256 if sha256 is not None else (DIGITS_CLASSIFIER_SHA256 if path == DIGITS_WEIGHTS_PATH else None)
    retrain = "python benchmarks/retrain_digits_classifier.py"
    return load_pinned(DigitsCNN(), path, expected, "digits classifier", retrain)
