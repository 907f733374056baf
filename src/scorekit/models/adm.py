"""ADM U-Net and noisy EncoderUNet classifier (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", sec. 3).

Scale-shift (AdaGN) norm, BigGAN resblock up/down, multi-head attention with a fixed head width, legacy or
new q/k/v order, class embedding, learned-σ output (2C channels) and CLIP-style attention pooling for the
classifier. Attribute names match guided-diffusion's state dicts, so the released `.pt` files load by name.

Call: `net(x, c_noise, class_labels=None)` with `c_noise` the (possibly fractional) DDPM step index.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["ADMUNet", "ADMEncoderClassifier", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """ADM's sinusoidal embedding [cos, sin] with frequencies exp(−ln(max_period)·i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([args.cos(), args.sin()], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) evaluated in at least float32 whatever the activation dtype."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).to(x.dtype)


def _norm(ch: int) -> GroupNorm32:
    return GroupNorm32(32, ch)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class EmbedSequential(nn.Sequential):
    """A sequence whose residual blocks also receive the time embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        if use_conv:
            self.op = nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1)
        else:
            self.op = nn.AvgPool2d(2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block; with `use_scale_shift_norm` the embedding modulates the second norm (AdaGN)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            _norm(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = nn.Conv2d(channels, out_channels, 3, padding=1)
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)
        self.use_scale_shift_norm, self.use_checkpoint = use_scale_shift_norm, use_checkpoint

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def qkv_attention(qkv: Tensor, n_heads: int, legacy: bool) -> Tensor:
    """Multi-head attention on [B, 3·H·C, T]; legacy order splits heads before q/k/v, new order after."""
    bs, width, length = qkv.shape
    ch = width // (3 * n_heads)
    if legacy:
        q, k, v = qkv.reshape(bs * n_heads, 3 * ch, length).split(ch, dim=1)
    else:
        q, k, v = (z.reshape(bs * n_heads, ch, length) for z in qkv.chunk(3, dim=1))
    scale = 1 / math.sqrt(math.sqrt(ch))  # split between q and k: steadier in float16
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    weight = torch.softmax(weight.float(), dim=-1).to(weight.dtype)
    return torch.einsum("bts,bcs->bct", weight, v).reshape(bs, -1, length)


class AttentionBlock(nn.Module):
    """Spatial self-attention with `num_heads` heads (or heads of `num_head_channels` channels)."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1, use_new_attention_order=False):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(
                    f"attention channels {channels} not divisible by num_head_channels {num_head_channels}"
                )
            self.num_heads = channels // num_head_channels
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zero(nn.Conv1d(channels, channels, 1))
        self.legacy = not use_new_attention_order

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(qkv_attention(self.qkv(self.norm(x)), self.num_heads, self.legacy))
        return (x + h).reshape(b, c, *spatial)


class AttentionPool2d(nn.Module):
    """CLIP-style attention pooling: the mean token attends over all positions (Radford et al. 2021)."""

    def __init__(self, spatial_dim: int, embed_dim: int, num_head_channels: int, output_dim: int | None = None):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(embed_dim, spatial_dim**2 + 1) / embed_dim**0.5)
        self.qkv_proj = nn.Conv1d(embed_dim, 3 * embed_dim, 1)
        self.c_proj = nn.Conv1d(embed_dim, output_dim or embed_dim, 1)
        self.num_heads = embed_dim // num_head_channels

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        x = x.reshape(b, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)
        x = x + self.positional_embedding[None].to(x.dtype)
        x = self.c_proj(qkv_attention(self.qkv_proj(x), self.num_heads, legacy=False))
        return x[:, :, 0]


def _as_tuple(v) -> tuple:
    if isinstance(v, str):
        return tuple(float(s) if "." in s else int(s) for s in v.split(",") if s)
    return tuple(v)


class _ADMTrunk(nn.Module):
    """Shared encoder half: time embedding, input blocks and middle block."""

    def _build_encoder(
        self,
        in_channels,
        model_channels,
        num_res_blocks,
        attention_resolutions,
        dropout,
        channel_mult,
        conv_resample,
        use_checkpoint,
        num_heads,
        num_head_channels,
        use_scale_shift_norm,
        resblock_updown,
        use_new_attention_order,
        num_classes=None,
    ):
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if num_classes:
            self.label_emb = nn.Embedding(num_classes, emb_dim)
        rb = dict(use_scale_shift_norm=use_scale_shift_norm, use_checkpoint=use_checkpoint)
        at = dict(
            num_heads=num_heads, num_head_channels=num_head_channels, use_new_attention_order=use_new_attention_order
        )
        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, dropout, int(mult * model_channels), **rb)]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, **at))
                self.input_blocks.append(EmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                down = (
                    ResBlock(ch, emb_dim, dropout, ch, down=True, **rb)
                    if resblock_updown
                    else Downsample(ch, conv_resample, ch)
                )
                self.input_blocks.append(EmbedSequential(down))
                chans.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(
            ResBlock(ch, emb_dim, dropout, **rb), AttentionBlock(ch, **at), ResBlock(ch, emb_dim, dropout, **rb)
        )
        return ch, chans, ds, emb_dim


class ADMUNet(_ADMTrunk):
    """guided-diffusion's UNetModel; keyword names follow its constructor (`attention_resolutions` are
    downsampling rates ds, `num_classes` None/0 for unconditional, `out_channels` 2C with learned σ)."""

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        model_channels: int = 128,
        out_channels: int = 3,
        num_res_blocks: int = 2,
        attention_resolutions=(2, 4, 8),
        dropout: float = 0.0,
        channel_mult=(1, 2, 3, 4),
        conv_resample: bool = True,
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
    ):
        super().__init__()
        channel_mult, attention_resolutions = _as_tuple(channel_mult), _as_tuple(attention_resolutions)
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.num_classes = int(num_classes or 0)
        self.model_channels = model_channels
        ch, chans, ds, emb_dim = self._build_encoder(
            in_channels,
            model_channels,
            num_res_blocks,
            attention_resolutions,
            dropout,
            channel_mult,
            conv_resample,
            use_checkpoint,
            num_heads,
            num_head_channels,
            use_scale_shift_norm,
            resblock_updown,
            use_new_attention_order,
            self.num_classes,
        )
        rb = dict(use_scale_shift_norm=use_scale_shift_norm, use_checkpoint=use_checkpoint)
        at = dict(
            num_heads=num_heads_upsample,
            num_head_channels=num_head_channels,
            use_new_attention_order=use_new_attention_order,
        )
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers: list[nn.Module] = [
                    ResBlock(ch + chans.pop(), emb_dim, dropout, int(model_channels * mult), **rb)
                ]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, **at))
                if level and i == num_res_blocks:
                    layers.append(
                        ResBlock(ch, emb_dim, dropout, ch, up=True, **rb)
                        if resblock_updown
                        else Upsample(ch, conv_resample, ch)
                    )
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        input_ch = int(channel_mult[0] * model_channels)
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), _zero(nn.Conv2d(input_ch, out_channels, 3, padding=1)))
        self.torso_dtype = None  # None: the input's dtype
        if use_fp16:
            self.convert_to_fp16()

    def convert_to_fp16(self) -> None:
        """Run the torso's convolutions in float16 (norms, embeddings and the output head stay float32)."""
        for part in (self.input_blocks, self.middle_block, self.output_blocks):
            for m in part.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                    m.half()
        self.torso_dtype = torch.float16

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        c_noise = torch.as_tensor(c_noise, device=x.device)
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(c_noise, self.model_channels).to(self.time_embed[0].weight.dtype))
        if self.num_classes:
            if class_labels is None:
                raise ValueError("this ADM U-Net is class-conditional: class labels are required")
            emb = emb + self.label_emb(class_labels.long().reshape(x.shape[0]))
        hs = []
        h = x if self.torso_dtype is None else x.to(self.torso_dtype)
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h.to(x.dtype))


class ADMEncoderClassifier(_ADMTrunk):
    """guided-diffusion's EncoderUNetModel (the noisy ImageNet classifier): encoder half + pooled head."""

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        model_channels: int = 128,
        out_channels: int = 1000,
        num_res_blocks: int = 2,
        attention_resolutions=(2, 4, 8),
        dropout: float = 0.0,
        channel_mult=(1, 2, 3, 4),
        conv_resample: bool = True,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
        pool: str = "adaptive",
    ):
        super().__init__()
        channel_mult, attention_resolutions = _as_tuple(channel_mult), _as_tuple(attention_resolutions)
        self.model_channels, self.pool, self.num_classes = model_channels, pool, out_channels
        ch, _, ds, _ = self._build_encoder(
            in_channels,
            model_channels,
            num_res_blocks,
            attention_resolutions,
            dropout,
            channel_mult,
            conv_resample,
            use_checkpoint,
            num_heads,
            num_head_channels,
            use_scale_shift_norm,
            resblock_updown,
            use_new_attention_order,
        )
        if pool == "adaptive":
            self.out = nn.Sequential(
                _norm(ch), nn.SiLU(), nn.AdaptiveAvgPool2d((1, 1)), _zero(nn.Conv2d(ch, out_channels, 1)), nn.Flatten()
            )
        elif pool == "attention":
            if num_head_channels == -1:
                raise ValueError("attention pooling needs num_head_channels")
            self.out = nn.Sequential(
                _norm(ch), nn.SiLU(), AttentionPool2d(image_size // ds, ch, num_head_channels, out_channels)
            )
        else:
            raise ValueError(f"unsupported classifier pool {pool!r} (adaptive, attention)")
        self.torso_dtype = None
        if use_fp16:
            for part in (self.input_blocks, self.middle_block):
                for m in part.modules():
                    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                        m.half()
            self.torso_dtype = torch.float16

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """Class logits [B, out_channels] for noisy x at step index c_noise (class_labels ignored)."""
        c_noise = torch.as_tensor(c_noise, device=x.device)
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(c_noise, self.model_channels).to(self.time_embed[0].weight.dtype))
        h = x if self.torso_dtype is None else x.to(self.torso_dtype)
        for block in self.input_blocks:
            h = block(h, emb)
        h = self.middle_block(h, emb)
        return self.out(h.to(x.dtype))
