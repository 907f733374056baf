"""Building blocks of score_sde's NCSN++ / DDPM++ (Song et al. 2021, appendix H), written for scorekit.

Attribute names (`GroupNorm_0`, `Conv_0`, `Dense_0`, `NIN_0`, `Conv2d_0`, …) are the ones in the published
state dicts, so released checkpoints load by name. FIR resampling follows StyleGAN2's upfirdn2d (Karras et al.
2020, "Analyzing and improving the image quality of StyleGAN", appendix B).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "variance_scaling_",
    "conv3x3",
    "conv1x1",
    "upfirdn2d",
    "fir_kernel_2d",
    "upsample_2d",
    "downsample_2d",
    "GaussianFourierProjection",
    "sinusoidal_embedding",
    "NIN",
    "Combine",
    "AttnBlockpp",
    "Upsample",
    "Downsample",
    "ResnetBlockDDPMpp",
    "ResnetBlockBigGANpp",
    "group_norm",
]

SQRT2 = math.sqrt(2.0)


def variance_scaling_(weight: Tensor, scale: float = 1.0, in_axis: int = 1, out_axis: int = 0) -> Tensor:
    """DDPM's default init: uniform with variance scale / mean(fan_in, fan_out) (Ho et al. 2020, code)."""
    scale = 1e-10 if scale == 0 else scale
    shape = weight.shape
    receptive = math.prod(shape) // (shape[in_axis] * shape[out_axis])
    fan_avg = (shape[in_axis] + shape[out_axis]) * receptive / 2
    bound = math.sqrt(3.0 * scale / fan_avg)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = True, init_scale: float = 1.0, padding: int = 1):
    conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=padding, bias=bias)
    variance_scaling_(conv.weight, init_scale)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def conv1x1(in_ch: int, out_ch: int, init_scale: float = 1.0):
    conv = nn.Conv2d(in_ch, out_ch, 1)
    variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(channels // 4, 32), channels, eps=1e-6)


def _dense(in_dim: int, out_dim: int) -> nn.Linear:
    lin = nn.Linear(in_dim, out_dim)
    variance_scaling_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


# --- FIR resampling ---------------------------------------------------------------------------------------
def fir_kernel_2d(k, gain: float = 1.0, dtype=torch.float32, device=None) -> Tensor:
    """Separable FIR taps → normalised 2-D kernel (sum = gain)."""
    k = torch.as_tensor(k, dtype=torch.float64)
    if k.ndim == 1:
        k = torch.outer(k, k)
    return (k / k.sum() * gain).to(dtype=dtype, device=device)


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Zero-insert upsample by `up`, pad (negative crops), convolve with `kernel`, keep every `down`-th pixel."""
    b, c, h, w = x.shape
    p0, p1 = pad
    x = x.reshape(b * c, 1, h, 1, w, 1)
    if up > 1:
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(b * c, 1, h * up, w * up)
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    kernel = kernel.to(x.dtype).flip([0, 1])[None, None]
    x = F.conv2d(x, kernel)[:, :, ::down, ::down]
    return x.reshape(b, c, x.shape[2], x.shape[3])


def upsample_2d(x: Tensor, k, factor: int = 2) -> Tensor:
    """FIR upsampling by `factor` (StyleGAN2 upsample_2d)."""
    kernel = fir_kernel_2d(k, factor**2, x.dtype, x.device)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: Tensor, k, factor: int = 2) -> Tensor:
    """FIR downsampling by `factor` (StyleGAN2 downsample_2d)."""
    kernel = fir_kernel_2d(k, 1.0, x.dtype, x.device)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


class FIRConv2d(nn.Module):
    """3×3 convolution fused with FIR up- or downsampling (StyleGAN2 upsample_conv_2d / conv_downsample_2d)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, up: bool = False, down: bool = False, fir_kernel=(1, 3, 3, 1)
    ):
        super().__init__()
        if up and down:
            raise ValueError("FIRConv2d: up and down are exclusive")
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel, kernel))
        variance_scaling_(self.weight)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.up, self.down, self.fir_kernel = up, down, tuple(fir_kernel)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        kw = w.shape[-1]
        if self.up:
            kernel = fir_kernel_2d(self.fir_kernel, 4.0, x.dtype, x.device)
            p = (kernel.shape[0] - 2) - (kw - 1)
            x = F.conv_transpose2d(x, w.flip([2, 3]).transpose(0, 1), stride=2)
            x = upfirdn2d(x, kernel, pad=((p + 1) // 2 + 1, p // 2 + 1))
        elif self.down:
            kernel = fir_kernel_2d(self.fir_kernel, 1.0, x.dtype, x.device)
            p = (kernel.shape[0] - 2) + (kw - 1)
            x = F.conv2d(upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=kw // 2)
        return x + self.bias.reshape(1, -1, 1, 1)


# --- embeddings -------------------------------------------------------------------------------------------
class GaussianFourierProjection(nn.Module):
    """Random Fourier features of log σ (Tancik et al. 2020; Song et al. 2021, app. H.2). `W` is frozen."""

    def __init__(self, embedding_size: int = 256, scale: float = 16.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        proj = x[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([proj.sin(), proj.cos()], dim=-1)


def sinusoidal_embedding(t: Tensor, dim: int, max_positions: int = 10000) -> Tensor:
    """Transformer positional embedding as in DDPM / score_sde: [sin, cos] with log-spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(
        torch.arange(half, dtype=torch.float32, device=t.device) * -(math.log(max_positions) / (half - 1))
    )
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([args.sin(), args.cos()], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


# --- blocks -----------------------------------------------------------------------------------------------
class NIN(nn.Module):
    """Per-pixel linear map over channels ("network in network"), weights `W` [in, out] and `b`."""

    def __init__(self, in_dim: int, num_units: int, init_scale: float = 0.1):
        super().__init__()
        self.W = nn.Parameter(variance_scaling_(torch.empty(in_dim, num_units), init_scale, in_axis=0, out_axis=1))
        self.b = nn.Parameter(torch.zeros(num_units))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.einsum("bchw,cd->bdhw", x, self.W)
        return y + self.b[None, :, None, None]


class Combine(nn.Module):
    """Merge a pyramid branch into the trunk: 1×1 conv then sum or concatenation."""

    def __init__(self, dim1: int, dim2: int, method: str = "cat"):
        super().__init__()
        if method not in ("cat", "sum"):
            raise ValueError(f"unknown progressive_combine {method!r} (cat, sum)")
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


class AttnBlockpp(nn.Module):
    """Single-head spatial self-attention with a residual, optionally rescaled by 1/√2."""

    def __init__(self, channels: int, skip_rescale: bool = False, init_scale: float = 0.0):
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        hn = self.GroupNorm_0(x)
        q = self.NIN_0(hn).reshape(b, c, h * w)
        k = self.NIN_1(hn).reshape(b, c, h * w)
        v = self.NIN_2(hn).reshape(b, c, h * w)
        attn = torch.softmax(torch.einsum("bcq,bck->bqk", q, k) * (c**-0.5), dim=-1)
        out = self.NIN_3(torch.einsum("bqk,bck->bcq", attn, v).reshape(b, c, h, w))
        return (x + out) / SQRT2 if self.skip_rescale else x + out


class Upsample(nn.Module):
    """×2 upsampling: nearest (+3×3 conv) or FIR (+ fused FIR conv)."""

    def __init__(
        self, in_ch: int, out_ch: int | None = None, with_conv: bool = False, fir: bool = False, fir_kernel=(1, 3, 3, 1)
    ):
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and not fir:
            self.Conv_0 = conv3x3(in_ch, out_ch)
        elif with_conv:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, 3, up=True, fir_kernel=fir_kernel)
        self.with_conv, self.fir, self.fir_kernel = with_conv, fir, tuple(fir_kernel)

    def forward(self, x: Tensor) -> Tensor:
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else upsample_2d(x, self.fir_kernel)
        h = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.Conv_0(h) if self.with_conv else h


class Downsample(nn.Module):
    """×2 downsampling: strided 3×3 conv / average pooling, or FIR (+ fused FIR conv)."""

    def __init__(
        self, in_ch: int, out_ch: int | None = None, with_conv: bool = False, fir: bool = False, fir_kernel=(1, 3, 3, 1)
    ):
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and not fir:
            self.Conv_0 = conv3x3(in_ch, out_ch, stride=2, padding=0)
        elif with_conv:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, 3, down=True, fir_kernel=fir_kernel)
        self.with_conv, self.fir, self.fir_kernel = with_conv, fir, tuple(fir_kernel)

    def forward(self, x: Tensor) -> Tensor:
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else downsample_2d(x, self.fir_kernel)
        if self.with_conv:
            return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, 2, stride=2)


class ResnetBlockDDPMpp(nn.Module):
    """DDPM residual block with the σ/t embedding added after the first conv (Ho et al. 2020)."""

    def __init__(
        self,
        act: nn.Module,
        in_ch: int,
        out_ch: int | None = None,
        temb_dim: int | None = None,
        conv_shortcut: bool = False,
        dropout: float = 0.1,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
    ):
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = group_norm(in_ch)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = _dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        if in_ch != out_ch:
            if conv_shortcut:
                self.Conv_2 = conv3x3(in_ch, out_ch)
            else:
                self.NIN_0 = NIN(in_ch, out_ch)
        self.act, self.out_ch, self.conv_shortcut, self.skip_rescale = act, out_ch, conv_shortcut, skip_rescale

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self.Conv_0(self.act(self.GroupNorm_0(x)))
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if x.shape[1] != self.out_ch:
            x = self.Conv_2(x) if self.conv_shortcut else self.NIN_0(x)
        return (x + h) / SQRT2 if self.skip_rescale else x + h


class ResnetBlockBigGANpp(nn.Module):
    """BigGAN-style residual block that can resample both branches (Brock et al. 2019; Song et al. 2021)."""

    def __init__(
        self,
        act: nn.Module,
        in_ch: int,
        out_ch: int | None = None,
        temb_dim: int | None = None,
        up: bool = False,
        down: bool = False,
        dropout: float = 0.1,
        fir: bool = False,
        fir_kernel=(1, 3, 3, 1),
        skip_rescale: bool = True,
        init_scale: float = 0.0,
    ):
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = group_norm(in_ch)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = _dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        self.has_shortcut = in_ch != out_ch or up or down
        if self.has_shortcut:
            self.Conv_2 = conv1x1(in_ch, out_ch)
        self.act, self.up, self.down, self.fir, self.fir_kernel = act, up, down, fir, tuple(fir_kernel)
        self.skip_rescale = skip_rescale

    def _resample(self, x: Tensor) -> Tensor:
        if self.up:
            return upsample_2d(x, self.fir_kernel) if self.fir else F.interpolate(x, scale_factor=2, mode="nearest")
        if self.down:
            return downsample_2d(x, self.fir_kernel) if self.fir else F.avg_pool2d(x, 2, stride=2)
        return x

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self._resample(self.act(self.GroupNorm_0(x)))
        x = self._resample(x)
        h = self.Conv_0(h)
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if self.has_shortcut:
            x = self.Conv_2(x)
        return (x + h) / SQRT2 if self.skip_rescale else x + h
