"""Classifiers for guidance: noise-conditional p_φ(y | x_t, t) and a clean-data digits classifier.

`NoisyUNetClassifier` is the downsampling half of a U-Net with attention pooling, as the classifier of
Dhariwal & Nichol 2021 ("Diffusion Models Beat GANs", §4.1 and App. C); `NoisyMLPClassifier` is its
vector-data counterpart. Both take `net(x, c_noise, class_labels=None) -> logits [B, num_classes]`, the
same signature as the score networks (class_labels is accepted and ignored). `CleanCNNClassifier` is a
small CNN on clean images, used as an independent judge of guided samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "timestep_embedding",
    "NoisyUNetClassifier",
    "NoisyMLPClassifier",
    "CleanCNNClassifier",
]


def timestep_embedding(c_noise: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of a [B] noise conditioning (Vaswani et al. 2017, §3.5; DDPM's time embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=c_noise.device) / half)
    args = c_noise.float().reshape(-1, 1) * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1


def _c_noise_vector(c_noise, x: Tensor) -> Tensor:
    c = torch.as_tensor(c_noise, dtype=torch.float32, device=x.device)
    return c.expand(x.shape[0]) if c.ndim == 0 else c.reshape(x.shape[0])


class _ResBlock(nn.Module):
    """GroupNorm–SiLU–conv ×2 with the noise embedding as an adaptive group-norm scale/shift (ADM, App. A)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class _SelfAttention(nn.Module):
    """Multi-head self-attention over spatial positions with a residual connection."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(t, t, t, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class _AttentionPool(nn.Module):
    """Attention pooling (CLIP / ADM classifier head): the spatial mean token attends to all positions."""

    def __init__(self, channels: int, num_positions: int, heads: int, out_dim: int):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(num_positions + 1, channels) / math.sqrt(channels))
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.proj = nn.Linear(channels, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        t = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        t = torch.cat([t.mean(1, keepdim=True), t], dim=1) + self.pos[None, : t.shape[1] + 1]
        out, _ = self.attn(t[:, :1], t, t, need_weights=False)
        return self.proj(out[:, 0])


class NoisyUNetClassifier(nn.Module):
    """U-Net encoder (residual blocks + GroupNorm + self-attention) with attention pooling → class logits.

    Dhariwal & Nichol 2021, §4.1: the classifier is the downsampling trunk of the diffusion U-Net with an
    attention pool at the 8×8 (here: lowest) resolution, conditioned on the noise level.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 8,
        base_channels: int = 32,
        channel_mult: tuple[int, ...] | list[int] = (1, 2),
        num_res_blocks: int = 1,
        attention_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        if image_size % (2 ** (len(channel_mult) - 1)):
            raise ValueError(f"image_size {image_size} is not divisible by 2^{len(channel_mult) - 1}")
        self.in_channels, self.num_classes, self.image_size = int(in_channels), int(num_classes), int(image_size)
        self.base_channels = int(base_channels)
        emb_dim = 4 * base_channels
        self.emb = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.blocks = nn.ModuleList()
        ch, size = base_channels, image_size
        for level, mult in enumerate(channel_mult):
            out_ch = base_channels * mult
            for _ in range(num_res_blocks):
                self.blocks.append(_ResBlock(ch, out_ch, emb_dim, dropout))
                ch = out_ch
            if level < len(channel_mult) - 1:
                self.blocks.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                size //= 2
        self.mid = _ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = _SelfAttention(ch, attention_heads)
        self.out_norm = nn.GroupNorm(_groups(ch), ch)
        self.pool = _AttentionPool(ch, size * size, attention_heads, num_classes)

    def forward(self, x: Tensor, c_noise, class_labels: Tensor | None = None) -> Tensor:
        del class_labels
        emb = self.emb(timestep_embedding(_c_noise_vector(c_noise, x), self.base_channels))
        h = self.conv_in(x)
        for block in self.blocks:
            h = block(h, emb) if isinstance(block, _ResBlock) else block(h)
        h = self.mid_attn(self.mid(h, emb))
        return self.pool(F.silu(self.out_norm(h)))


class NoisyMLPClassifier(nn.Module):
    """Noise-conditional MLP classifier for vector data: residual SiLU layers with FiLM noise conditioning."""

    def __init__(self, dim: int = 2, num_classes: int = 2, hidden: int = 128, depth: int = 3, emb_dim: int = 64):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        self.dim, self.num_classes, self.emb_dim = int(dim), int(num_classes), int(emb_dim)
        self.emb = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.films = nn.ModuleList(nn.Linear(hidden, 2 * hidden) for _ in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor, c_noise, class_labels: Tensor | None = None) -> Tensor:
        del class_labels
        emb = F.silu(self.emb(timestep_embedding(_c_noise_vector(c_noise, x), self.emb_dim)))
        h = self.inp(x.reshape(x.shape[0], -1))
        for lin, film, norm in zip(self.layers, self.films, self.norms):
            scale, shift = film(emb).chunk(2, dim=-1)
            h = h + lin(F.silu(norm(h) * (1 + scale) + shift))
        return self.out(F.silu(h))


class CleanCNNClassifier(nn.Module):
    """A small CNN classifier on clean images ([-1, 1] model range); `features(x)` gives its penultimate layer.

    Used as an independent judge of samples (class accuracy, confidence, and a feature space for FID).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, channels: int = 32):
        super().__init__()
        self.in_channels, self.num_classes, self.image_size = int(in_channels), int(num_classes), int(image_size)
        c = int(channels)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1),
            nn.GroupNorm(_groups(c), c),
            nn.SiLU(),
            nn.Conv2d(c, c, 3, padding=1),
            nn.GroupNorm(_groups(c), c),
            nn.SiLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.GroupNorm(_groups(2 * c), 2 * c),
            nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            nn.GroupNorm(_groups(2 * c), 2 * c),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * c, 2 * c),
            nn.SiLU(),
        )
        self.head = nn.Linear(2 * c, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor, c_noise=None, class_labels: Tensor | None = None) -> Tensor:
        del c_noise, class_labels
        return self.head(self.body(x))
