"""Noise-level classifiers for Denoising MCMC: x = x0 + σ_k·ε ↦ logits over a grid of L noise levels.

Kim & Ye 2022 ("Denoising MCMC", Sec. 4 / official code): a small CNN — four 3×3 conv layers 32→64→128→256
with ReLU and 2×2 average pooling, then a linear layer to L = 1000 logits. Two additions here: the network
works for any image size (pooling stops at 1×1 and an adaptive pool fixes the feature size) and, optionally,
the input is divided by its per-sample RMS whose logarithm (times `log_rms_gain`, so Adam at lr 1e-3 can
reach the large logit slopes a sharp posterior needs within a few hundred steps) is fed to the last layer,
so one network covers σ from 0.01 to hundreds without saturating. `NoiseLevelMLP` is the same idea for vector data.
Signature: `net(x) -> [B, L]` logits (the level index counts from the largest σ, as the σ grid decreases).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["NoiseLevelCNN", "NoiseLevelMLP", "rms_normalise"]


class _OrdinalHead(nn.Module):
    """Gaussian bump over level indices, −½((k − m)/w)², with m and log w read linearly from the features.

    Added to the free linear logits: neighbouring levels share the training signal, so a 1,000-way
    classifier learns the ordinal structure in hundreds of steps instead of many epochs.
    """

    def __init__(self, n_feat: int, num_levels: int):
        super().__init__()
        self.num_levels = int(num_levels)
        self.lin = nn.Linear(n_feat, 2)
        nn.init.zeros_(self.lin.weight)
        with torch.no_grad():
            self.lin.bias.copy_(torch.tensor([0.0, math.log(0.1 * num_levels)]))

    def forward(self, h: Tensor) -> Tensor:
        a, log_w = self.lin(h).unbind(1)
        m = (self.num_levels - 1) * (0.5 + a)
        k = torch.arange(self.num_levels, dtype=h.dtype, device=h.device)
        return -0.5 * ((k[None] - m[:, None]) / log_w.clamp(-5, 10).exp()[:, None]) ** 2


def rms_normalise(x: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """x / RMS(x) per sample and log RMS(x) ([B, 1]): the scale carries most of the noise level."""
    rms = x.flatten(1).pow(2).mean(1, keepdim=True).add(eps).sqrt()
    return x / rms.reshape(-1, *([1] * (x.ndim - 1))), rms.log()


class NoiseLevelCNN(nn.Module):
    """The reference classifier (4 conv + ReLU + avg-pool, linear to `num_levels` logits) for [B, C, H, W]."""

    def __init__(
        self,
        in_channels: int = 3,
        num_levels: int = 1000,
        channels: tuple[int, ...] | list[int] = (32, 64, 128, 256),
        pooled_size: int = 2,
        normalize_input: bool = True,
        log_rms_gain: float = 10.0,
        ordinal_head: bool = True,
    ):
        super().__init__()
        if int(num_levels) < 2:
            raise ValueError(f"num_levels must be >= 2, got {num_levels}")
        if int(in_channels) < 1 or not channels:
            raise ValueError("NoiseLevelCNN needs in_channels >= 1 and at least one conv layer")
        self.num_levels = int(num_levels)
        self.normalize_input = bool(normalize_input)
        self.log_rms_gain = float(log_rms_gain)
        convs, c_prev = [], int(in_channels)
        for c in channels:
            convs.append(nn.Conv2d(c_prev, int(c), 3, 1, 1))
            c_prev = int(c)
        self.convs = nn.ModuleList(convs)
        self.pool = nn.AdaptiveAvgPool2d(int(pooled_size))
        n_feat = c_prev * int(pooled_size) ** 2 + (1 if self.normalize_input else 0)
        self.fc = nn.Linear(n_feat, self.num_levels)
        self.ordinal = _OrdinalHead(n_feat, self.num_levels) if ordinal_head else None

    def forward(self, x: Tensor, c_noise=None, class_labels=None) -> Tensor:
        del c_noise, class_labels  # the noise level is what this network predicts
        if x.ndim != 4:
            raise ValueError(f"NoiseLevelCNN expects [B, C, H, W] images, got shape {tuple(x.shape)}")
        log_rms = None
        if self.normalize_input:
            x, log_rms = rms_normalise(x)
        h = x
        for conv in self.convs:
            h = torch.relu(conv(h))
            if min(h.shape[-2:]) >= 2:
                h = nn.functional.avg_pool2d(h, 2)
        h = self.pool(h).flatten(1)
        if log_rms is not None:
            h = torch.cat([h, self.log_rms_gain * log_rms.to(h.dtype)], dim=1)
        out = self.fc(h)
        return out if self.ordinal is None else out + self.ordinal(h)


class NoiseLevelMLP(nn.Module):
    """MLP noise-level classifier for vectors [B, D]: (x/RMS, log RMS) → SiLU layers → `num_levels` logits."""

    def __init__(
        self,
        dim: int = 2,
        num_levels: int = 1000,
        hidden: int = 256,
        depth: int = 3,
        normalize_input: bool = True,
        log_rms_gain: float = 10.0,
        ordinal_head: bool = True,
    ):
        super().__init__()
        if int(num_levels) < 2 or int(dim) < 1 or int(depth) < 1:
            raise ValueError("NoiseLevelMLP needs dim >= 1, depth >= 1 and num_levels >= 2")
        self.num_levels = int(num_levels)
        self.normalize_input = bool(normalize_input)
        self.log_rms_gain = float(log_rms_gain)
        layers, d_prev = [], int(dim) + (1 if self.normalize_input else 0)
        for _ in range(int(depth)):
            layers += [nn.Linear(d_prev, int(hidden)), nn.SiLU()]
            d_prev = int(hidden)
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(d_prev, self.num_levels)
        self.ordinal = _OrdinalHead(d_prev, self.num_levels) if ordinal_head else None

    def forward(self, x: Tensor, c_noise=None, class_labels=None) -> Tensor:
        del c_noise, class_labels
        x = x.flatten(1)
        if self.normalize_input:
            xn, log_rms = rms_normalise(x)
            x = torch.cat([xn, self.log_rms_gain * log_rms], dim=1)
        h = self.body(x)
        out = self.fc(h)
        return out if self.ordinal is None else out + self.ordinal(h)
