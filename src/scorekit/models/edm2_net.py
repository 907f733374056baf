"""EDM2's magnitude-preserving U-Net (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
Diffusion Models", `training/networks_edm2.py`), written for scorekit with the same module names.

`EDM2PrecondNet` stands for EDM2's `Precond`: U-Net as `.unet`, plus the learned uncertainty head
(`logvar_fourier`, `logvar_linear`, eq. 21) kept so a snapshot loads losslessly. Its D is scorekit's "edm"
parameterisation (σ_data) with conditioning "log_sigma" (c_noise = ¼ ln σ); the wrapper turns integer labels
into one-hot vectors (label `label_dim` and None → zeros, EDM2's unconditional input).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .edm_nets import labels_to_onehot

__all__ = ["MPUNet", "EDM2PrecondNet", "mp_normalize", "mp_silu", "mp_sum", "mp_cat"]


def mp_normalize(x: Tensor, dim=None, eps: float = 1e-4) -> Tensor:
    """x / (ε + ‖x‖/√(n)) over `dim` (all but the first by default): unit mean square (EDM2 eq. 6 setting)."""
    if dim is None:
        dim = list(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    norm = torch.add(eps, norm, alpha=math.sqrt(norm.numel() / x.numel()))
    return x / norm.to(x.dtype)


def mp_silu(x: Tensor) -> Tensor:
    """SiLU scaled to preserve unit magnitude (EDM2 §3, /0.596)."""
    return F.silu(x) / 0.596


def mp_sum(a: Tensor, b: Tensor, t: float = 0.5) -> Tensor:
    """Magnitude-preserving lerp (EDM2 eq. 9)."""
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a: Tensor, b: Tensor, dim: int = 1, t: float = 0.5) -> Tensor:
    """Magnitude-preserving concatenation with balance t (EDM2 eq. 10)."""
    na, nb = a.shape[dim], b.shape[dim]
    c = math.sqrt((na + nb) / ((1 - t) ** 2 + t**2))
    return torch.cat([(c / math.sqrt(na) * (1 - t)) * a, (c / math.sqrt(nb) * t) * b], dim=dim)


def _resample(x: Tensor, f, mode: str) -> Tensor:
    if mode == "keep":
        return x
    f = torch.as_tensor(list(f), dtype=torch.float32)
    pad = (len(f) - 1) // 2
    f = f / f.sum()
    f = torch.outer(f, f)[None, None].to(x.dtype).to(x.device)
    c = x.shape[1]
    if mode == "down":
        return F.conv2d(x, f.tile([c, 1, 1, 1]), groups=c, stride=2, padding=(pad,))
    return F.conv_transpose2d(x, (f * 4).tile([c, 1, 1, 1]), groups=c, stride=2, padding=(pad,))


class MPFourier(nn.Module):
    """√2·cos(2π f x + φ) with fixed random f, φ (buffers `freqs`, `phases`, stored pre-multiplied by 2π)."""

    def __init__(self, num_channels: int, bandwidth: float = 1.0):
        super().__init__()
        self.register_buffer("freqs", 2 * math.pi * torch.randn(num_channels) * bandwidth)
        self.register_buffer("phases", 2 * math.pi * torch.rand(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.outer(x.to(torch.float32), self.freqs.to(torch.float32)) + self.phases.to(torch.float32)
        return (y.cos() * math.sqrt(2)).to(x.dtype)


class MPConv(nn.Module):
    """Weight-normalised linear / convolution layer (EDM2 eq. 7); kernel [] is a linear layer.

    In training mode the stored weight is itself renormalised each call (forced weight normalisation, §3).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel):
        super().__init__()
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, *kernel))

    def forward(self, x: Tensor, gain=1.0) -> Tensor:
        w = self.weight.to(torch.float32)
        if self.training:
            with torch.no_grad():
                self.weight.copy_(mp_normalize(w))
        w = mp_normalize(w) * (gain / math.sqrt(w[0].numel()))
        w = w.to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        return F.conv2d(x, w, padding=(w.shape[-1] // 2,))


class Block(nn.Module):
    """EDM2 encoder / decoder block (Fig. 21): pixel norm, two MP convolutions, learned-gain embedding,
    MP residual sum, optional cosine attention, activation clipping."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        flavor: str = "enc",
        resample_mode: str = "keep",
        resample_filter=(1, 1),
        attention: bool = False,
        channels_per_head: int = 64,
        dropout: float = 0.0,
        res_balance: float = 0.3,
        attn_balance: float = 0.3,
        clip_act: float | None = 256,
    ):
        super().__init__()
        if flavor not in ("enc", "dec") or resample_mode not in ("keep", "up", "down"):
            raise ValueError(f"bad EDM2 block flavor {flavor!r} / resample_mode {resample_mode!r}")
        self.out_channels, self.flavor = out_channels, flavor
        self.resample_filter, self.resample_mode = list(resample_filter), resample_mode
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.dropout, self.res_balance, self.attn_balance, self.clip_act = dropout, res_balance, attn_balance, clip_act
        self.emb_gain = nn.Parameter(torch.zeros([]))
        self.conv_res0 = MPConv(out_channels if flavor == "enc" else in_channels, out_channels, [3, 3])
        self.emb_linear = MPConv(emb_channels, out_channels, [])
        self.conv_res1 = MPConv(out_channels, out_channels, [3, 3])
        self.conv_skip = MPConv(in_channels, out_channels, [1, 1]) if in_channels != out_channels else None
        self.attn_qkv = MPConv(out_channels, out_channels * 3, [1, 1]) if self.num_heads else None
        self.attn_proj = MPConv(out_channels, out_channels, [1, 1]) if self.num_heads else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = _resample(x, self.resample_filter, self.resample_mode)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = mp_normalize(x, dim=1)
        y = self.conv_res0(mp_silu(x))
        c = self.emb_linear(emb, gain=self.emb_gain) + 1
        y = mp_silu(y * c.unsqueeze(2).unsqueeze(3).to(y.dtype))
        if self.training and self.dropout:
            y = F.dropout(y, p=self.dropout)
        y = self.conv_res1(y)
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, t=self.res_balance)
        if self.num_heads:
            y = self.attn_qkv(x)
            y = y.reshape(y.shape[0], self.num_heads, -1, 3, y.shape[2] * y.shape[3])
            q, k, v = mp_normalize(y, dim=2).unbind(3)
            w = torch.einsum("nhcq,nhck->nhqk", q, k / math.sqrt(q.shape[2])).softmax(dim=3)
            y = torch.einsum("nhqk,nhck->nhcq", w, v)
            x = mp_sum(x, self.attn_proj(y.reshape(*x.shape)), t=self.attn_balance)
        if self.clip_act is not None:
            x = x.clip(-self.clip_act, self.clip_act)
        return x


class MPUNet(nn.Module):
    """EDM2's U-Net: `net(x, noise_labels, class_labels)` with class_labels one-hot [B, label_dim] or None."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        model_channels: int = 192,
        channel_mult=(1, 2, 3, 4),
        channel_mult_noise: int | None = None,
        channel_mult_emb: int | None = None,
        num_blocks: int = 3,
        attn_resolutions=(16, 8),
        label_balance: float = 0.5,
        concat_balance: float = 0.5,
        **block_kwargs,
    ):
        super().__init__()
        cblock = [model_channels * m for m in channel_mult]
        cnoise = model_channels * channel_mult_noise if channel_mult_noise is not None else cblock[0]
        cemb = model_channels * channel_mult_emb if channel_mult_emb is not None else max(cblock)
        attn_resolutions = list(attn_resolutions)
        self.label_dim, self.label_balance, self.concat_balance = int(label_dim), label_balance, concat_balance
        self.out_gain = nn.Parameter(torch.zeros([]))
        self.emb_fourier = MPFourier(cnoise)
        self.emb_noise = MPConv(cnoise, cemb, [])
        self.emb_label = MPConv(label_dim, cemb, []) if label_dim else None

        self.enc = nn.ModuleDict()
        cout = img_channels + 1
        for level, channels in enumerate(cblock):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, channels
                self.enc[f"{res}x{res}_conv"] = MPConv(cin, cout, [3, 3])
            else:
                self.enc[f"{res}x{res}_down"] = Block(cout, cout, cemb, "enc", "down", **block_kwargs)
            for idx in range(num_blocks):
                cin, cout = cout, channels
                self.enc[f"{res}x{res}_block{idx}"] = Block(
                    cin, cout, cemb, "enc", attention=res in attn_resolutions, **block_kwargs
                )
        self.dec = nn.ModuleDict()
        skips = [b.out_channels for b in self.enc.values()]
        for level, channels in reversed(list(enumerate(cblock))):
            res = img_resolution >> level
            if level == len(cblock) - 1:
                self.dec[f"{res}x{res}_in0"] = Block(cout, cout, cemb, "dec", attention=True, **block_kwargs)
                self.dec[f"{res}x{res}_in1"] = Block(cout, cout, cemb, "dec", **block_kwargs)
            else:
                self.dec[f"{res}x{res}_up"] = Block(cout, cout, cemb, "dec", "up", **block_kwargs)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), channels
                self.dec[f"{res}x{res}_block{idx}"] = Block(
                    cin, cout, cemb, "dec", attention=res in attn_resolutions, **block_kwargs
                )
        self.out_conv = MPConv(cout, img_channels, [3, 3])

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None) -> Tensor:
        emb = self.emb_noise(self.emb_fourier(noise_labels))
        if self.emb_label is not None:
            emb = mp_sum(emb, self.emb_label(class_labels * math.sqrt(class_labels.shape[1])), t=self.label_balance)
        emb = mp_silu(emb)
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        skips = []
        for name, block in self.enc.items():
            x = block(x) if "conv" in name else block(x, emb)
            skips.append(x)
        for name, block in self.dec.items():
            if "block" in name:
                x = mp_cat(x, skips.pop(), t=self.concat_balance)
            x = block(x, emb)
        return self.out_conv(x, gain=self.out_gain)


class EDM2PrecondNet(nn.Module):
    """EDM2's `Precond` network as scorekit calls it: `net(c_in·x, ¼ ln σ, labels)` → F (scalings in scorekit)."""

    def __init__(
        self, img_resolution: int, img_channels: int, label_dim: int = 0, logvar_channels: int = 128, **unet_kwargs
    ):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim = int(img_resolution), int(img_channels), int(label_dim)
        self.unet = MPUNet(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim, **unet_kwargs)
        self.logvar_fourier = MPFourier(logvar_channels)
        self.logvar_linear = MPConv(logvar_channels, 1, [])

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        c_noise = torch.as_tensor(c_noise, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        return self.unet(x, c_noise, labels_to_onehot(class_labels, self.label_dim, x.shape[0], x))

    def logvar(self, c_noise: Tensor) -> Tensor:
        """The learned log-variance u(σ) of the training loss (EDM2 eq. 21), as [B]."""
        return self.logvar_linear(self.logvar_fourier(c_noise)).reshape(-1)
