"""Feature extractors behind one interface: `FeatureExtractor.features(x_user) -> float64 [N, F]`.

- "inception": the FID Inception-v3 (pool3, 2048-d; 1008 logits for IS), weights from a local file only
  (`--inception-weights PATH` or $SCOREKIT_INCEPTION_WEIGHTS), SHA-256 checked.
- "digits": scorekit's pinned 8×8 digits classifier (64-d penultimate layer; 10 logits for IS).
- "fashion": scorekit's pinned 28×28 Fashion-MNIST classifier (128-d penultimate layer; 10 logits for IS).
- "auto": digits for (1, 8, 8) images, inception for RGB / grayscale images of side ≥ 32 when weights exist.
"""

from __future__ import annotations

import os

import numpy as np
import torch

__all__ = [
    "FeatureExtractor",
    "InceptionExtractor",
    "DigitsExtractor",
    "FashionExtractor",
    "get_extractor",
    "EXTRACTORS",
]

EXTRACTORS = ("auto", "digits", "inception", "fashion")


class FeatureExtractor:
    """A frozen network mapping user-range images [N, C, H, W] in [0, 1] to float64 features (and logits)."""

    name: str = "base"
    sha256: str = ""
    feature_dim: int = 0
    has_logits: bool = False

    def __init__(self, net: torch.nn.Module, batch_size: int = 200, device="cpu"):
        self.net = net.to(device).eval()
        self.batch_size = int(batch_size)
        self.device = torch.device(device)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _check(self, x) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32)
        if x.ndim != 4:
            raise ValueError(f"{self.name} features need images [N, C, H, W], got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("images contain NaN or Inf")
        return x

    @torch.no_grad()
    def _run(self, x, logits: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x = self._check(x)
        feats, lgts = [], []
        for i in range(0, len(x), self.batch_size):
            f, lg = self._forward(self._prepare(x[i : i + self.batch_size]).to(self.device))
            feats.append(f.double().cpu())
            if logits:
                lgts.append(lg.double().cpu())
        f = torch.cat(feats).numpy() if feats else np.zeros((0, self.feature_dim))
        return f, (torch.cat(lgts).numpy() if logits and lgts else None)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def features(self, x) -> np.ndarray:
        """float64 [N, F] features of user-range images (batched)."""
        return self._run(x, logits=False)[0]

    def logits(self, x) -> np.ndarray:
        """float64 [N, K] class logits (for the Inception Score)."""
        if not self.has_logits:
            raise ValueError(f"feature extractor {self.name!r} has no logits")
        return self._run(x, logits=True)[1]

    def features_and_logits(self, x) -> tuple[np.ndarray, np.ndarray]:
        return self._run(x, logits=self.has_logits)

    def describe(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "feature_dim": self.feature_dim}


class InceptionExtractor(FeatureExtractor):
    """pool3 features of the FID Inception-v3 (pytorch-fid's resize to 299 bilinear; grayscale → 3 channels)."""

    name = "inception"
    feature_dim = 2048
    has_logits = True

    def __init__(self, path=None, sha256: str | None = None, batch_size: int = 50, device="cpu"):
        from .inception import FID_INCEPTION_SHA256, load_fid_inception

        net, self.sha256 = load_fid_inception(path, sha256=sha256 or FID_INCEPTION_SHA256)
        super().__init__(net, batch_size=batch_size, device=device)

    def _prepare(self, x):
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            raise ValueError(f"Inception takes 1- or 3-channel images, got {x.shape[1]} channels")
        return x

    def _forward(self, x):
        return self.net(x)


class DigitsExtractor(FeatureExtractor):
    """Penultimate-layer (64-d, pre-ReLU) features and logits of scorekit's pinned 8×8 digits classifier."""

    name = "digits"
    feature_dim = 64
    has_logits = True

    def __init__(self, path=None, sha256: str | None = None, batch_size: int = 2000, device="cpu"):
        from .digits_classifier import load_digits_classifier

        net, self.sha256 = load_digits_classifier(path, sha256=sha256)
        super().__init__(net, batch_size=batch_size, device=device)

    def _prepare(self, x):
        if tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"the digits classifier takes [N, 1, 8, 8] images, got {tuple(x.shape)}")
        return x

    def _forward(self, x):
        f = self.net.features(x)
        return f, self.net.logits_from_features(f)


class FashionExtractor(FeatureExtractor):
    """Penultimate-layer (128-d, pre-ReLU) features and logits of scorekit's pinned Fashion-MNIST classifier."""

    name = "fashion"
    feature_dim = 128
    has_logits = True

    def __init__(self, path=None, sha256: str | None = None, batch_size: int = 2000, device="cpu"):
        from .fashion_classifier import load_fashion_classifier

        net, self.sha256 = load_fashion_classifier(path, sha256=sha256)
        super().__init__(net, batch_size=batch_size, device=device)

    def _prepare(self, x):
        if tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"the Fashion-MNIST classifier takes [N, 1, 28, 28] images, got {tuple(x.shape)}")
        return x

    def _forward(self, x):
        f = self.net.features(x)
        return f, self.net.logits_from_features(f)


def get_extractor(
    name: str = "auto",
    data_kind: str = "image",
    shape: tuple | None = None,
    inception_path=None,
    inception_sha256: str | None = None,
    device="cpu",
) -> FeatureExtractor:
    """Pick a feature extractor by name, or ("auto") by the data: digits for (1, 8, 8); inception for images with
    1 or 3 channels and side ≥ 32 when local weights are given; otherwise a one-line error naming the flag."""
    from .inception import INCEPTION_ENV, missing_weights_message

    if name not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r} (choose from {', '.join(EXTRACTORS)})")
    if data_kind != "image":
        raise ValueError(f"feature extractors are for image data, not {data_kind!r} (vector metrics need none)")
    shape = tuple(shape) if shape is not None else None
    if name == "auto":
        if shape == (1, 8, 8):
            name = "digits"
        elif shape is not None and len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) >= 32:
            if not (inception_path or os.environ.get(INCEPTION_ENV)):
                raise ValueError(f"images of shape {shape} are evaluated with Inception; {missing_weights_message()}")
            name = "inception"
        else:
            raise ValueError(
                f"no feature extractor fits images of shape {shape}: 'digits' takes (1, 8, 8), 'inception' takes "
                "1 or 3 channels of side >= 32 (--extractor inception --inception-weights PATH)"
            )
    if name == "digits":
        return DigitsExtractor(device=device)
    if name == "fashion":
        return FashionExtractor(device=device)
    return InceptionExtractor(inception_path, sha256=inception_sha256, device=device)
