"""Building blocks shared by the networks: noise-level embeddings, class embeddings, normalisation helpers."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "EMBEDDINGS",
    "positional_embedding",
    "PositionalEmbedding",
    "FourierEmbedding",
    "NoiseEmbedding",
    "ClassEmbedding",
    "group_norm",
    "num_groups",
    "zero_init",
]

EMBEDDINGS = ("positional", "sinusoidal", "fourier")


def positional_embedding(c_noise: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer sinusoidal embedding of a scalar (Vaswani et al. 2017 §3.5; DDPM's timestep embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=c_noise.device) / half)
    args = c_noise.float().reshape(-1, 1) * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class PositionalEmbedding(nn.Module):
    """c_noise [B] → [B, dim] sinusoidal features (frequencies 1 … 1/max_period)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        self.dim, self.max_period = int(dim), float(max_period)

    def forward(self, c_noise: Tensor) -> Tensor:
        return positional_embedding(c_noise, self.dim, self.max_period)


class FourierEmbedding(nn.Module):
    """Random Fourier features [cos 2πωc, sin 2πωc], ω ~ N(0, scale²) (Tancik et al. 2020; NCSN++, Song et al.
    2021 App. H). ω is a buffer drawn from a fixed seed, so a network rebuilt from its config matches."""

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("freqs", torch.randn(dim // 2, generator=g) * float(scale))
        self.dim = int(dim)

    def forward(self, c_noise: Tensor) -> Tensor:
        args = 2 * math.pi * c_noise.float().reshape(-1, 1) * self.freqs[None].float()
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
        if self.dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
        return emb


class NoiseEmbedding(nn.Module):
    """c_noise → features (positional or Fourier) → Linear–SiLU–Linear, as in DDPM / NCSN++ (out: [B, out_dim])."""

    def __init__(self, dim: int, out_dim: int, kind: str = "positional", fourier_scale: float = 16.0):
        super().__init__()
        if kind not in EMBEDDINGS:
            raise ValueError(f"unknown noise embedding {kind!r} (choose from {', '.join(EMBEDDINGS)})")
        self.features = FourierEmbedding(dim, fourier_scale) if kind == "fourier" else PositionalEmbedding(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        return self.mlp(self.features(c_noise).to(self.mlp[0].weight.dtype))


class ClassEmbedding(nn.Module):
    """Label → [B, dim]; index `num_classes` is the "null" class (no label: classifier-free guidance, Ho &
    Salimans 2022), used when `class_labels` is None."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = int(num_classes)
        self.embed = nn.Embedding(self.num_classes + 1, dim)

    def forward(self, class_labels: Tensor | None, batch: int, device) -> Tensor:
        if class_labels is None:
            class_labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        class_labels = class_labels.reshape(-1).long()
        if class_labels.shape[0] != batch:
            raise ValueError(f"got {class_labels.shape[0]} class labels for a batch of {batch}")
        if class_labels.numel() and (class_labels.min() < 0 or class_labels.max() > self.num_classes):
            raise ValueError(f"class labels must lie in 0..{self.num_classes} ({self.num_classes} = no label)")
        return self.embed(class_labels.to(device))


def num_groups(channels: int, max_groups: int = 32) -> int:
    """The largest group count ≤ max_groups that divides `channels`."""
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def group_norm(channels: int, eps: float = 1e-6) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups(channels), channels, eps=eps)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and bias (residual branches and output layers start as the identity / zero)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module
