"""DDPM / NCSN++-style U-Net: net(x [B, C, H, W], c_noise [B], class_labels [B] | None) → [B, C_out, H, W].

Ho et al. 2020 (App. B) with the refinements of Song et al. 2021 (DDPM++) and Dhariwal & Nichol 2021 (ADM):
residual blocks with GroupNorm + SiLU, the noise embedding entering each block as a scale-shift of the second
normalisation ("adaptive group norm"), multi-head self-attention at chosen resolutions, zero-initialised
residual branches and output layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import EMBEDDINGS, ClassEmbedding, NoiseEmbedding, group_norm, zero_init

__all__ = ["UNet", "UNetEncoder", "ResBlock", "AttentionBlock", "Downsample", "Upsample"]


class ResBlock(nn.Module):
    """GN–SiLU–conv, then GN·(1+scale)+shift from the embedding, SiLU–dropout–conv (zero-init); 1×1 skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H·W positions (scaled_dot_product_attention), residual, zero-init."""

    def __init__(self, channels: int, num_heads: int = 1):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention: {channels} channels are not divisible by num_heads={num_heads}")
        self.num_heads = int(num_heads)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(1))  # [B, heads, HW, C/heads]
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Halve H and W: stride-2 3×3 conv (`conv=True`) or 2×2 average pooling."""

    def __init__(self, channels: int, conv: bool = True):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if conv else nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour, then a 3×3 conv if `conv`."""

    def __init__(self, channels: int, conv: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if conv else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _check_common(in_channels, resolution, model_channels, channel_mult, num_res_blocks, dropout, num_classes):
    ints = (("in_channels", in_channels), ("resolution", resolution), ("model_channels", model_channels))
    for name, v in ints:
        if int(v) != v or v < 1:
            raise ValueError(f"U-Net {name} must be a positive integer, got {v!r}")
    mult = [int(m) for m in channel_mult]
    if not mult or any(m < 1 for m in mult):
        raise ValueError(f"U-Net channel_mult must be a non-empty list of positive integers, got {channel_mult!r}")
    if int(num_res_blocks) != num_res_blocks or num_res_blocks < 1:
        raise ValueError(f"U-Net num_res_blocks must be a positive integer, got {num_res_blocks!r}")
    if int(num_classes) != num_classes or num_classes < 0:
        raise ValueError(f"U-Net num_classes must be a non-negative integer, got {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    factor = 2 ** (len(mult) - 1)
    if resolution % factor:
        raise ValueError(
            f"U-Net resolution {resolution} is not divisible by 2^(len(channel_mult)-1) = {factor}; "
            "use fewer levels in channel_mult"
        )
    return mult


class UNetEncoder(nn.Module):
    """The downsampling half and the middle of the U-Net (reusable as a noise-conditional classifier trunk).

    `forward` returns the middle feature map [B, out_channels, H/2^(L-1), W/2^(L-1)]; `features` pools it to
    [B, out_channels] (GroupNorm–SiLU–mean, as ADM's classifier head before its last layer).
    """

    def __init__(
        self,
        in_channels: int,
        resolution: int,
        model_channels: int = 64,
        channel_mult=(1, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions=(16,),
        dropout: float = 0.0,
        embedding: str = "positional",
        num_classes: int = 0,
        num_heads: int = 1,
        resample_conv: bool = True,
        fourier_scale: float = 16.0,
        feature_norm: bool = True,
    ):
        super().__init__()
        mult = _check_common(
            in_channels, resolution, model_channels, channel_mult, num_res_blocks, dropout, num_classes
        )
        kind = "positional" if embedding == "sinusoidal" else embedding
        if kind not in EMBEDDINGS:
            raise ValueError(f"unknown noise embedding {embedding!r} (choose from positional, fourier)")
        attn = {int(r) for r in attn_resolutions}
        mc = int(model_channels)
        emb_dim = 4 * mc
        self.resolution = int(resolution)
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.emb_dim = emb_dim
        self.noise_embed = NoiseEmbedding(mc, emb_dim, kind, fourier_scale)
        self.class_embed = ClassEmbedding(num_classes, emb_dim) if num_classes > 0 else None
        self.conv_in = nn.Conv2d(in_channels, mc, 3, padding=1)

        # Encoder: each entry is (module, kind) so the skip channels are recorded in one place.
        self.down = nn.ModuleList()
        self.skip_channels = [mc]
        ch, res = mc, int(resolution)
        for level, m in enumerate(mult):
            for _ in range(int(num_res_blocks)):
                blk = nn.ModuleList([ResBlock(ch, mc * m, emb_dim, dropout)])
                ch = mc * m
                if res in attn:
                    blk.append(AttentionBlock(ch, num_heads))
                self.down.append(blk)
                self.skip_channels.append(ch)
            if level < len(mult) - 1:
                self.down.append(nn.ModuleList([Downsample(ch, resample_conv)]))
                self.skip_channels.append(ch)
                res //= 2
        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, emb_dim, dropout), AttentionBlock(ch, num_heads), ResBlock(ch, ch, emb_dim, dropout)]
        )
        self.out_channels = ch
        self.out_resolution = res
        self.num_down = len(mult) - 1
        # Only a stand-alone encoder gets the pooling norm: inside a UNet it would be an unused parameter (DDP).
        self.feature_norm = group_norm(ch) if feature_norm else None

    def embed(self, c_noise: Tensor, class_labels: Tensor | None, batch: int, device, dtype) -> Tensor:
        """SiLU(noise embedding [+ class embedding]) [B, emb_dim]."""
        c_noise = c_noise.reshape(-1).to(device)
        if c_noise.numel() == 1:
            c_noise = c_noise.expand(batch)
        emb = self.noise_embed(c_noise)
        if self.class_embed is not None:
            emb = emb + self.class_embed(class_labels, batch, device)
        return F.silu(emb).to(dtype)

    def encode(self, x: Tensor, emb: Tensor) -> tuple[Tensor, list[Tensor]]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"U-Net expects [B, {self.in_channels}, H, W] inputs, got {tuple(x.shape)}")
        factor = 2**self.num_down
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"U-Net input size {tuple(x.shape[-2:])} is not divisible by {factor}")
        h = self.conv_in(x)
        skips = [h]
        for blk in self.down:
            for layer in blk:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        h = self.mid[0](h, emb)
        h = self.mid[1](h)
        h = self.mid[2](h, emb)
        return h, skips

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        emb = self.embed(c_noise, class_labels, x.shape[0], x.device, x.dtype)
        return self.encode(x, emb)[0]

    def features(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """Pooled features [B, out_channels]: mean over positions of SiLU(GroupNorm(middle map))."""
        h = self(x, c_noise, class_labels)
        if self.feature_norm is not None:
            h = self.feature_norm(h)
        return F.silu(h).mean(dim=(2, 3))


class UNet(nn.Module):
    """Noise-conditional U-Net for images (see module docstring). Output zero-initialised (F ≡ 0 at init).

    Works for any resolution divisible by 2^(len(channel_mult)−1), e.g. 8×8 with (1, 2), 28×28 with (1, 2, 2),
    32×32 with (1, 2, 2, 2). `num_classes` > 0 adds a label embedding; index `num_classes` (or
    class_labels=None) means "no label", for classifier-free guidance. `embedding`: "positional" (suits c_noise
    over ~0–1000, e.g. `t999`, `index`) or "fourier" (suits c_noise of order 1, e.g. `log_sigma`, `t`).
    """

    def __init__(
        self,
        in_channels: int,
        resolution: int,
        model_channels: int = 64,
        channel_mult=(1, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions=(16,),
        dropout: float = 0.0,
        embedding: str = "positional",
        num_classes: int = 0,
        out_channels: int | None = None,
        num_heads: int = 1,
        resample_conv: bool = True,
        fourier_scale: float = 16.0,
    ):
        super().__init__()
        out_channels = int(in_channels if out_channels is None else out_channels)
        if out_channels < 1:
            raise ValueError(f"U-Net out_channels must be positive, got {out_channels}")
        self.config = {
            "arch": "unet",
            "in_channels": int(in_channels),
            "resolution": int(resolution),
            "model_channels": int(model_channels),
            "channel_mult": [int(m) for m in channel_mult],
            "num_res_blocks": int(num_res_blocks),
            "attn_resolutions": [int(r) for r in attn_resolutions],
            "dropout": float(dropout),
            "embedding": str(embedding),
            "num_classes": int(num_classes),
            "out_channels": out_channels,
            "num_heads": int(num_heads),
            "resample_conv": bool(resample_conv),
            "fourier_scale": float(fourier_scale),
        }
        self.encoder = UNetEncoder(
            in_channels,
            resolution,
            model_channels,
            channel_mult,
            num_res_blocks,
            attn_resolutions,
            dropout,
            embedding,
            num_classes,
            num_heads,
            resample_conv,
            fourier_scale,
            feature_norm=False,
        )
        enc = self.encoder
        self.num_classes = enc.num_classes
        attn = {int(r) for r in attn_resolutions}
        mc, emb_dim = int(model_channels), enc.emb_dim
        mult = [int(m) for m in channel_mult]
        skips = list(enc.skip_channels)
        ch, res = enc.out_channels, enc.out_resolution
        self.up = nn.ModuleList()
        for level in reversed(range(len(mult))):
            for i in range(int(num_res_blocks) + 1):
                blk = nn.ModuleList([ResBlock(ch + skips.pop(), mc * mult[level], emb_dim, dropout)])
                ch = mc * mult[level]
                if res in attn:
                    blk.append(AttentionBlock(ch, num_heads))
                if level > 0 and i == int(num_res_blocks):
                    blk.append(Upsample(ch, resample_conv))
                    res *= 2
                self.up.append(blk)
        assert not skips
        self.out_norm = group_norm(ch)
        self.conv_out = zero_init(nn.Conv2d(ch, out_channels, 3, padding=1))

    def to_config(self) -> dict:
        """{"arch": "unet", **constructor arguments} (JSON-serialisable, for `models.build_network`)."""
        return dict(self.config)

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        emb = self.encoder.embed(c_noise, class_labels, x.shape[0], x.device, x.dtype)
        h, skips = self.encoder.encode(x, emb)
        for blk in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            for layer in blk:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return self.conv_out(F.silu(self.out_norm(h)))
