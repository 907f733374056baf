"""EDM's networks (Karras et al. 2022, `training/networks.py`): `SongUNet` (DDPM++ / NCSN++) and `DhariwalUNet`
(ADM), written for scorekit with the same module names, so a snapshot's state dict loads by name.

`EDMPrecondNet` stands for the released `EDMPrecond` / `VPPrecond` / `VEPrecond` wrappers: it holds the U-Net as
`.model` (as they do) and is called by `NetworkDenoiser` as `net(c_in·x, c_noise, class_labels)`. The D of each
preconditioner is rebuilt exactly from scorekit's parameterisations (EDM Table 1):
- `edm`: D = c_skip·x + c_out·F(c_in·x, ¼ ln σ) — parameterization "edm" (σ_data), conditioning "log_sigma".
- `vp`:  D = x − σ·F(x/√(1+σ²), 999·t(σ)) — "eps", "t999" on the VP process (β_min, β_max = β_min + β_d).
- `ve`:  D = x + σ·F(x, ln(σ/2)) — "eps", "sigma" on the VE process: the wrapper feeds ln(σ/2) to the U-Net and
  negates its output (ε = −F).
Class labels: integer labels become one-hot vectors (EDM's training labels); the label `label_dim` (scorekit's
null label for classifier-free guidance) and `None` give the zero vector, as EDM's preconditioners do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SongUNet", "DhariwalUNet", "EDMPrecondNet", "labels_to_onehot"]


def labels_to_onehot(class_labels: Tensor | None, label_dim: int, batch: int, like: Tensor) -> Tensor | None:
    """None / int [B] / one-hot [B, K] → float [B, K]; label K (the null label) and None → zeros."""
    if label_dim == 0:
        return None
    if class_labels is None:
        return torch.zeros(batch, label_dim, dtype=like.dtype, device=like.device)
    y = torch.as_tensor(class_labels, device=like.device)
    if y.is_floating_point() and y.ndim == 2:
        return y.to(like.dtype).reshape(-1, label_dim)
    y = y.long().reshape(-1)
    if y.numel() == 1 and batch > 1:
        y = y.expand(batch)
    if bool(((y < 0) | (y > label_dim)).any()):
        raise ValueError(f"class labels must lie in 0..{label_dim - 1} ({label_dim} = no label)")
    return F.one_hot(y, label_dim + 1)[:, :label_dim].to(like.dtype)


# --- layers (EDM's Linear / Conv2d / GroupNorm, same parameter names) ---------------------------------------
class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(max(in_features, 1)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = x @ self.weight.to(x.dtype).t()
        return x + self.bias.to(x.dtype) if self.bias is not None else x


class Conv2d(nn.Module):
    """k×k convolution with optional FIR up/down-sampling (`resample_filter`); kernel 0 = resampling only."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        up: bool = False,
        down: bool = False,
        resample_filter=(1, 1),
        fused_resample: bool = False,
        init_weight: float = 1.0,
    ):
        super().__init__()
        if up and down:
            raise ValueError("Conv2d cannot both up- and down-sample")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.fused_resample = up, down, fused_resample
        fan_in = in_channels * kernel * kernel
        self.weight = (
            nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel) * init_weight / math.sqrt(fan_in))
            if kernel
            else None
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if kernel and bias else None
        f = torch.as_tensor(list(resample_filter), dtype=torch.float32)
        f = torch.outer(f, f).unsqueeze(0).unsqueeze(1) / f.sum().square()
        self.register_buffer("resample_filter", f if up or down else None)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) if self.weight is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        f = self.resample_filter.to(x.dtype) if self.resample_filter is not None else None
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (f.shape[-1] - 1) // 2 if f is not None else 0
        if self.fused_resample and self.up and w is not None:
            x = F.conv_transpose2d(
                x, f.mul(4).tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2,
                padding=max(f_pad - w_pad, 0),
            )  # fmt: skip
            x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile([self.out_channels, 1, 1, 1]), groups=self.out_channels, stride=2)
        else:
            if self.up:
                x = F.conv_transpose2d(
                    x, f.mul(4).tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2, padding=f_pad
                )
            if self.down:
                x = F.conv2d(x, f.tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        return x + b.reshape(1, -1, 1, 1) if b is not None else x


class GroupNorm(nn.Module):
    """GroupNorm with min(32, C/4) groups (EDM's choice)."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4, eps: float = 1e-5):
        super().__init__()
        self.num_groups = max(1, min(num_groups, num_channels // min_channels_per_group))
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class UNetBlock(nn.Module):
    """Residual block with embedding injection (additive or scale/shift) and optional multi-head attention."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        num_heads: int | None = None,
        channels_per_head: int = 64,
        dropout: float = 0.0,
        skip_scale: float = 1.0,
        eps: float = 1e-5,
        resample_filter=(1, 1),
        resample_proj: bool = False,
        adaptive_scale: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_heads = (
            0 if not attention else num_heads if num_heads is not None else out_channels // channels_per_head
        )
        self.dropout, self.skip_scale, self.adaptive_scale = dropout, skip_scale, adaptive_scale
        rf = resample_filter
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down, resample_filter=rf)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1))
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3, init_weight=1e-5)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, up=up, down=down, resample_filter=rf)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1)
            self.proj = Conv2d(out_channels, out_channels, 1, init_weight=1e-5)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb).unsqueeze(2).unsqueeze(3).to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            x = F.silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(orig) if self.skip is not None else orig)) * self.skip_scale
        if self.num_heads:
            b, c = x.shape[:2]
            q, k, v = self.qkv(self.norm2(x)).reshape(b * self.num_heads, c // self.num_heads, 3, -1).unbind(2)
            w = torch.einsum("ncq,nck->nqk", q.float(), (k / math.sqrt(k.shape[1])).float()).softmax(dim=2)
            a = torch.einsum("nqk,nck->ncq", w.to(q.dtype), v)
            x = (self.proj(a.reshape(*x.shape)) + x) * self.skip_scale
        return x


class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal embedding [cos, sin] (Vaswani et al. 2017), optionally with the end point."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False):
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def forward(self, x: Tensor) -> Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** freqs
        x = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features [cos, sin](2π f x) (Tancik et al. 2020), frequencies a buffer."""

    def __init__(self, num_channels: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


# --- the two U-Nets -------------------------------------------------------------------------------------------
class SongUNet(nn.Module):
    """DDPM++ / NCSN++ (Song et al. 2021) as re-implemented in EDM: `net(x, noise_labels, class_labels)`,
    class_labels one-hot float [B, label_dim] (or None when label_dim = 0)."""

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 128,
        channel_mult=(1, 2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions=(16,),
        dropout: float = 0.10,
        label_dropout: float = 0.0,
        embedding_type: str = "positional",
        channel_mult_noise: int = 1,
        encoder_type: str = "standard",
        decoder_type: str = "standard",
        resample_filter=(1, 1),
    ):
        if embedding_type not in ("fourier", "positional"):
            raise ValueError(f"embedding_type must be 'fourier' or 'positional', got {embedding_type!r}")
        if encoder_type not in ("standard", "skip", "residual"):
            raise ValueError(f"encoder_type must be standard, skip or residual, got {encoder_type!r}")
        if decoder_type not in ("standard", "skip"):
            raise ValueError(f"decoder_type must be standard or skip, got {decoder_type!r}")
        super().__init__()
        self.label_dim, self.label_dropout = int(label_dim), float(label_dropout)
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        rf = _as_list(resample_filter)
        attn_resolutions = _as_list(attn_resolutions)
        block = dict(
            emb_channels=emb_channels, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5), eps=1e-6,
            resample_filter=rf, resample_proj=True, adaptive_scale=False,
        )  # fmt: skip
        if embedding_type == "positional":
            self.map_noise = PositionalEmbedding(noise_channels, endpoint=True)
        else:
            self.map_noise = FourierEmbedding(noise_channels)
        self.map_label = Linear(label_dim, noise_channels) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)

        self.enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(caux, caux, 0, down=True, resample_filter=rf)
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, 1)
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(
                        caux, cout, 3, down=True, resample_filter=rf, fused_resample=True
                    )
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        skips = [b.out_channels for name, b in self.enc.items() if "aux" not in name]

        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **block)
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(out_channels, out_channels, 0, up=True, resample_filter=rf)
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, 3, init_weight=1e-5)

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None, augment_labels=None):
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)  # [sin, cos] as DDPM++ has it
        if self.map_label is not None:
            y = class_labels
            if self.training and self.label_dropout:
                y = y * (torch.rand([x.shape[0], 1], device=x.device) >= self.label_dropout).to(y.dtype)
            emb = emb + self.map_label(y * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

        skips, aux = [], x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)
        aux = tmp = None
        for name, block in self.dec.items():
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                tmp = block(F.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux


class DhariwalUNet(nn.Module):
    """ADM (Dhariwal & Nichol 2021) as re-implemented in EDM: `net(x, noise_labels, class_labels)`."""

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 192,
        channel_mult=(1, 2, 3, 4),
        channel_mult_emb: int = 4,
        num_blocks: int = 3,
        attn_resolutions=(32, 16, 8),
        dropout: float = 0.10,
        label_dropout: float = 0.0,
    ):
        super().__init__()
        self.label_dim, self.label_dropout = int(label_dim), float(label_dropout)
        emb_channels = model_channels * channel_mult_emb
        attn_resolutions = _as_list(attn_resolutions)
        block = dict(emb_channels=emb_channels, channels_per_head=64, dropout=dropout)
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = Linear(augment_dim, model_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)
        self.map_label = Linear(label_dim, emb_channels, bias=False) if label_dim else None

        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        skips = [b.out_channels for b in self.enc.values()]
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, 3, init_weight=1e-5)

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None, augment_labels=None):
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            y = class_labels
            if self.training and self.label_dropout:
                y = y * (torch.rand([x.shape[0], 1], device=x.device) >= self.label_dropout).to(y.dtype)
            emb = emb + self.map_label(y)
        emb = F.silu(emb)
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))


_MODELS = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}
PRECONDS = ("edm", "vp", "ve")


class EDMPrecondNet(nn.Module):
    """EDM's `EDMPrecond` / `VPPrecond` / `VEPrecond` network as scorekit calls it: `net(c_in·x, c_noise, labels)`.

    The σ-dependent scalings live in scorekit's `Preconditioning` (see the module docstring); this wrapper only
    converts labels and, for `precond="ve"`, maps c_noise = σ to ln(σ/2) and returns −F.
    """

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        model_type: str = "SongUNet",
        precond: str = "edm",
        **model_kwargs,
    ):
        super().__init__()
        if model_type not in _MODELS:
            raise ValueError(f"unknown EDM model_type {model_type!r} (SongUNet, DhariwalUNet)")
        if precond not in PRECONDS:
            raise ValueError(f"unknown EDM preconditioning {precond!r} ({', '.join(PRECONDS)})")
        self.img_resolution, self.img_channels = int(img_resolution), int(img_channels)
        self.label_dim, self.precond = int(label_dim), precond
        self.model = _MODELS[model_type](
            img_resolution=img_resolution,
            in_channels=img_channels,
            out_channels=img_channels,
            label_dim=label_dim,
            **model_kwargs,
        )

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        c_noise = torch.as_tensor(c_noise, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        y = labels_to_onehot(class_labels, self.label_dim, x.shape[0], x)
        if self.precond == "ve":
            return -self.model(x, (0.5 * c_noise).log(), y)
        return self.model(x, c_noise, y)
