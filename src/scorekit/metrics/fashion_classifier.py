"""The pinned Fashion-MNIST classifier: features and logits for FID / KID / IS / P-R on 28×28 Fashion-MNIST, where
Inception (trained on 299×299 ImageNet photographs) fits poorly and needs weights from outside.

A small CNN trained by scorekit on Fashion-MNIST's 60,000 training images (the role LeNet-style classifiers play
for MNIST FID in the literature). Its weights ship with the package (`weights/fashion_classifier.safetensors`,
~0.5 MB) and the SHA-256 of their tensors is pinned here, so a number computed with it names exactly which network
produced it. Retrain (bit-for-bit on the same machine and torch build, single thread) with::

    python scripts/train_fashion_classifier.py [--out PATH]

which prints the test accuracy and the new weights' SHA-256. The data are found by `scorekit.datasets`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .pinned import load_pinned, weights_sha256

__all__ = [
    "FASHION_CLASSIFIER_SHA256",
    "FASHION_WEIGHTS_PATH",
    "FashionCNN",
    "fashion_split",
    "train_fashion_classifier",
    "load_fashion_classifier",
    "accuracy",
    "weights_sha256",
    "data_provenance",
    "default_reference_path",
    "fashion_reference",
]

FASHION_WEIGHTS_PATH = Path(__file__).parent / "weights" / "fashion_classifier.safetensors"
# SHA-256 of the weights (tensor names, dtypes, shapes and bytes, as scorekit.checkpoint checksums them; the
# safetensors header orders its metadata arbitrarily, so the file's own bytes are not reproducible).
FASHION_CLASSIFIER_SHA256 = "88874a07b442f5d345f230b9bdea958c5f5bb40a8b3ece928126519add23af72"


class FashionCNN(nn.Module):
    """conv3×3(32) → pool → conv3×3(64) → pool → conv3×3(64) → pool → linear(576→128) = features → ReLU →
    linear(128→10) = logits. Input: [N, 1, 28, 28] in [0, 1] (user range). The features are the penultimate
    layer's pre-activations (ReLU zeroes some units on every image, which would carry no information)."""

    feature_dim = 128
    num_classes = 10

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 3 * 3, self.feature_dim)
        self.fc2 = nn.Linear(self.feature_dim, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = 2 * x - 1
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 14×14
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 7×7
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)  # 3×3
        return self.fc1(x.flatten(1))

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(x))


def fashion_split(split: str = "train", root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as ([N, 1, 28, 28] float32 in [0, 1], labels int64) from its own train / t10k files."""
    from ..datasets import load_named

    ds = load_named("fashion-mnist", split, root=root)
    return ds.user_data().float().contiguous(), ds.labels.long()


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips (garments are left-right symmetric in class), ±1-pixel shifts and mild pixel noise,
    so features stay stable on imperfect generated images. One shift per batch keeps it cheap and vectorised."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
    x = torch.roll(F.pad(x, (1, 1, 1, 1)), shifts=(dy, dx), dims=(-2, -1))[..., 1:-1, 1:-1]
    return (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def train_fashion_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    log=None,
) -> FashionCNN:
    """Train FashionCNN on (x, y) with Adam, cross-entropy and a cosine learning rate; deterministic given the seed
    (single thread)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # parameter initialisation
    net = FashionCNN()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15, anneal_strategy="cos"
    )
    net.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(net(_augment(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(idx), n + len(idx)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}  loss {total / n:.4f}")
    return net.eval()


@torch.no_grad()
def accuracy(net: FashionCNN, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((net(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    return correct / len(x)


def load_fashion_classifier(path: str | Path | None = None, sha256: str | None = None) -> tuple[FashionCNN, str]:
    """The pinned classifier (or a file at `path`); its weights' SHA-256 must equal the pinned one (or `sha256`
    when given; a file at another path with no `sha256` is only checked against its own stored checksum)."""
    path = Path(path) if path is not None else FASHION_WEIGHTS_PATH
    expected = sha256 if sha256 is not None else (FASHION_CLASSIFIER_SHA256 if path == FASHION_WEIGHTS_PATH else None)
    return load_pinned(
        FashionCNN(), path, expected, "Fashion-MNIST classifier", "python scripts/train_fashion_classifier.py"
    )


def data_provenance(split: str = "test", root=None) -> str:
    """The data field of cached reference statistics: the name plus each IDX file's SHA-256, so statistics of
    other (or altered) files are never taken for these."""
    from ..datasets import dataset_files_sha256

    files = dataset_files_sha256("fashion-mnist", split, root)
    return "fashion-mnist[" + ", ".join(f"{name} sha256={digest}" for name, digest in sorted(files.items())) + "]"


def default_reference_path(split: str = "test", extractor_sha256: str = FASHION_CLASSIFIER_SHA256) -> Path:
    """~/.cache/scorekit/reference/fashion-mnist-SPLIT-fashion-SHA12.npz (or under $XDG_CACHE_HOME)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "scorekit" / "reference" / f"fashion-mnist-{split}-fashion-{extractor_sha256[:12]}.npz"


def fashion_reference(split: str = "test", path=None, root=None, extractor=None, device="cpu") -> dict:
    """Reference statistics (mu, sigma, features, logits) of a Fashion-MNIST split in the pinned classifier's
    features, cached at `path` (default `default_reference_path`) with their provenance: extractor name and
    weights SHA-256, the data files' SHA-256 (`data_provenance`), split and N. A cached file whose provenance
    differs is refused with one line (see `metrics.reference.load_reference`); an absent one is computed."""
    from .features import FashionExtractor
    from .reference import load_reference, save_reference

    ext = extractor if extractor is not None else FashionExtractor(device=device)
    data = data_provenance(split, root)
    path = Path(path) if path is not None else default_reference_path(split, ext.sha256)
    if path.is_file():
        return load_reference(path, extractor=ext.name, extractor_sha256=ext.sha256, data=data, split=split)
    x, _ = fashion_split(split, root)
    feats, logits = ext.features_and_logits(x)
    save_reference(path, feats, extractor=ext.name, extractor_sha256=ext.sha256, data=data, split=split, logits=logits)
    return load_reference(path)
