"""Residual MLP for vector data: net(x [B, D], c_noise [B], class_labels [B] | None) → [B, D]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ClassEmbedding, NoiseEmbedding, zero_init

__all__ = ["MLP", "MLPBlock"]


class MLPBlock(nn.Module):
    """h + W2·drop(SiLU(W1·SiLU(LN(h)) + P·emb)): a pre-norm residual block with the noise embedding added."""

    def __init__(self, hidden: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        y = self.fc1(F.silu(self.norm(h))) + self.emb(emb)
        return h + self.fc2(self.dropout(F.silu(y)))


class MLP(nn.Module):
    """Noise-conditional residual MLP (the toy-data score network of Song & Ermon 2019 / Karras et al. 2022 §5
    in residual pre-norm form). The last layer is zero-initialised, so the network starts at F ≡ 0.

    `embedding`: "sinusoidal"/"positional" (Transformer features of c_noise; suits c_noise spanning ~0–1000
    such as `t999`, `index`, `sigma`) or "fourier" (random features with std `fourier_scale`; suits c_noise of
    order 1 such as `t` or `log_sigma`). `num_classes` > 0 adds a label embedding whose index `num_classes`
    means "no label" (classifier-free guidance).

    `input_fourier` > 0 adds random Fourier features of the input (Tancik et al. 2020): [x, sin 2πxB, cos 2πxB]
    with B [D, input_fourier] ~ N(0, input_fourier_scale²) drawn from a fixed seed, so a low-dimensional input's
    fine structure (thin rings, sharp edges) is reachable by a small network in few steps.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 4,
        emb_dim: int = 128,
        num_classes: int = 0,
        embedding: str = "sinusoidal",
        dropout: float = 0.0,
        fourier_scale: float = 16.0,
        input_fourier: int = 0,
        input_fourier_scale: float = 1.0,
    ):
        super().__init__()
        for name, v in (("dim", dim), ("hidden", hidden), ("emb_dim", emb_dim)):
            if int(v) != v or v < 1:
                raise ValueError(f"MLP {name} must be a positive integer, got {v!r}")
        if int(depth) != depth or depth < 0 or int(num_classes) != num_classes or num_classes < 0:
            raise ValueError(f"MLP depth and num_classes must be non-negative integers, got {depth!r}, {num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        kind = "positional" if embedding == "sinusoidal" else embedding
        self.config = {
            "arch": "mlp",
            "dim": int(dim),
            "hidden": int(hidden),
            "depth": int(depth),
            "emb_dim": int(emb_dim),
            "num_classes": int(num_classes),
            "embedding": str(embedding),
            "dropout": float(dropout),
            "fourier_scale": float(fourier_scale),
        }
        if int(input_fourier) != input_fourier or input_fourier < 0 or not input_fourier_scale > 0:
            raise ValueError(f"MLP input_fourier must be a non-negative integer and its scale > 0, got "
                             f"{input_fourier!r}, {input_fourier_scale!r}")  # fmt: skip
        if input_fourier:  # recorded only when used, so earlier configs and checkpoints stay as they were
            self.config.update({"input_fourier": int(input_fourier), "input_fourier_scale": float(input_fourier_scale)})
            g = torch.Generator().manual_seed(0)
            self.register_buffer(
                "input_freqs", torch.randn(int(dim), int(input_fourier), generator=g) * input_fourier_scale
            )
        else:
            self.input_freqs = None
        self.dim = int(dim)
        self.num_classes = int(num_classes)
        self.noise_embed = NoiseEmbedding(emb_dim, emb_dim, kind, fourier_scale)
        self.class_embed = ClassEmbedding(num_classes, emb_dim) if num_classes > 0 else None
        self.inp = nn.Linear(dim + 2 * int(input_fourier), hidden)
        self.blocks = nn.ModuleList(MLPBlock(hidden, emb_dim, dropout) for _ in range(int(depth)))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = zero_init(nn.Linear(hidden, dim))

    def to_config(self) -> dict:
        """{"arch": "mlp", **constructor arguments} (JSON-serialisable, for `models.build_network`)."""
        return dict(self.config)

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLP expects inputs [B, {self.dim}], got {tuple(x.shape)}")
        c_noise = c_noise.reshape(-1).expand(x.shape[0]) if c_noise.numel() == 1 else c_noise.reshape(-1)
        emb = self.noise_embed(c_noise.to(x.device))
        if self.class_embed is not None:
            emb = emb + self.class_embed(class_labels, x.shape[0], x.device)
        emb = F.silu(emb).to(x.dtype)
        if self.input_freqs is not None:
            z = 2 * math.pi * x @ self.input_freqs.to(x.dtype)
            x = torch.cat([x, torch.sin(z), torch.cos(z)], dim=1)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.out_norm(h)))
