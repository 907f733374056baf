"""diffusers' `UNet2DModel` (the DDPM U-Net of Ho et al. 2020 as packaged by Hugging Face diffusers), written in
scorekit's style. Module names follow diffusers' state-dict keys, so a `diffusion_pytorch_model.safetensors`
loads by name; the constructor takes the fields of its `unet/config.json`.

Supported: positional (sinusoidal) timestep embedding, `num_class_embeds` class embedding, the block types
`DownBlock2D`, `AttnDownBlock2D`, `UpBlock2D`, `AttnUpBlock2D` (optionally prefixed `UNetRes`), `UNetMidBlock2D`
or no mid block, `resnet_time_scale_shift` `default` / `scale_shift`, conv down/up-sampling. Anything else
(NCSN++'s skip blocks, Fourier or learned time embeddings, cross-attention) is refused with one ValueError line.

forward(x, timesteps, class_labels) → the network output (ε, v or x0, as the scheduler config says); `timesteps`
may be fractional (the sinusoidal embedding is defined for any real step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._sde_layers import downsample_2d, upsample_2d

__all__ = ["DiffusersUNet2D", "DOWN_BLOCKS", "UP_BLOCKS", "timestep_embedding"]

DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D", "SkipDownBlock2D", "AttnSkipDownBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D")
FIR_KERNEL = (1, 3, 3, 1)
_ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish, "gelu": nn.GELU, "relu": nn.ReLU}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unsupported UNet2DModel act_fn {name!r} (choose from {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]()


def _block_name(name: str) -> str:
    return name[len("UNetRes") :] if name.startswith("UNetRes") else name


def timestep_embedding(
    timesteps: Tensor, dim: int, flip_sin_to_cos: bool = True, freq_shift: float = 0.0, max_period: float = 10000.0
) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) steps (Vaswani et al. 2017 §3.5; DDPM's time embedding):
    frequencies exp(−ln(max_period)·k/(half − freq_shift)), [cos, sin] if `flip_sin_to_cos` else [sin, cos]."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(-math.log(max_period) * k / (half - freq_shift))
    arg = timesteps.reshape(-1, 1).float() * freqs[None]
    sin, cos = torch.sin(arg), torch.cos(arg)
    emb = torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class FourierFeatures(nn.Module):
    """[sin, cos](2π·w·log σ) with fixed random w (Tancik et al. 2020; NCSN++'s noise-level embedding)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim) * scale, requires_grad=False)

    def forward(self, sigma: Tensor) -> Tensor:
        arg = sigma.float().log()[:, None] * self.weight[None].float() * 2 * math.pi
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class TimestepMLP(nn.Module):
    """Linear → SiLU → Linear on the sinusoidal embedding (diffusers' `TimestepEmbedding`)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class ResnetBlock(nn.Module):
    """GroupNorm → act → conv → (+ time projection, or GroupNorm scale-shift) → GroupNorm → act → dropout → conv,
    plus a 1×1 shortcut when the width changes; the sum is divided by `output_scale_factor`."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        temb_dim: int,
        groups: int,
        eps: float,
        act: str,
        dropout: float,
        time_scale_shift: str,
        output_scale_factor: float = 1.0,
        groups_out: int | None = None,
        shortcut: bool | None = None,
        resample: str | None = None,
    ):
        super().__init__()
        self.scale_shift = time_scale_shift == "scale_shift"
        self.output_scale_factor = float(output_scale_factor)
        self.resample = resample  # None, or "up" / "down" with the FIR kernel (1, 3, 3, 1) (NCSN++ skip blocks)
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=eps)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, 2 * out_ch if self.scale_shift else out_ch)
        self.norm2 = nn.GroupNorm(groups_out or groups, out_ch, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.act = _activation(act)
        shortcut = in_ch != out_ch if shortcut is None else shortcut
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if shortcut else None

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.act(self.norm1(x))
        if self.resample == "up":
            x, h = upsample_2d(x, FIR_KERNEL), upsample_2d(h, FIR_KERNEL)
        elif self.resample == "down":
            x, h = downsample_2d(x, FIR_KERNEL), downsample_2d(h, FIR_KERNEL)
        h = self.conv1(h)
        t = self.time_emb_proj(self.act(temb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = t.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(self.dropout(self.act(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (skip + h) / self.output_scale_factor


class SpatialAttention(nn.Module):
    """Multi-head self-attention over the H·W positions with a residual connection (diffusers' `Attention` with
    GroupNorm, q/k/v/out projections; heads = channels // head_dim)."""

    def __init__(self, ch: int, head_dim: int, groups: int | None, eps: float, rescale: float = 1.0):
        super().__init__()
        self.heads = max(ch // head_dim, 1)
        self.head_dim = head_dim
        inner = self.heads * head_dim
        self.rescale = float(rescale)
        self.group_norm = nn.GroupNorm(groups, ch, eps=eps) if groups is not None else None
        self.to_q = nn.Linear(ch, inner)
        self.to_k = nn.Linear(ch, inner)
        self.to_v = nn.Linear(ch, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, ch), nn.Dropout(0.0)])

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        h = x.reshape(b, c, hgt * wid)
        if self.group_norm is not None:
            h = self.group_norm(h)
        h = h.transpose(1, 2)  # [B, HW, C]

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(h)), heads(self.to_k(h)), heads(self.to_v(h)))
        out = out.transpose(1, 2).reshape(b, -1, self.heads * self.head_dim)
        out = self.to_out[1](self.to_out[0](out))
        out = out.transpose(1, 2).reshape(b, c, hgt, wid)
        return (out + x) / self.rescale


class Downsample(nn.Module):
    """3×3 stride-2 convolution (`padding` 0 pads right/bottom by one first, as diffusers does)."""

    def __init__(self, ch: int, padding: int):
        super().__init__()
        self.padding = int(padding)
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=self.padding)

    def forward(self, x: Tensor) -> Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 then a 3×3 convolution."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """`layers` residual blocks (each optionally followed by attention), then an optional downsampler; returns the
    output and every intermediate state for the skip connections."""

    def __init__(self, in_ch, out_ch, layers, attention, downsample, head_dim, padding, **res):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(in_ch if i == 0 else out_ch, out_ch, **res) for i in range(layers)])
        if attention:
            self.attentions = nn.ModuleList(
                [SpatialAttention(out_ch, head_dim, res["groups"], res["eps"]) for _ in range(layers)]
            )
        else:
            self.attentions = None
        self.downsamplers = nn.ModuleList([Downsample(out_ch, padding)]) if downsample else None

    def forward(self, x: Tensor, temb: Tensor) -> tuple[Tensor, list[Tensor]]:
        states = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x)
            states.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, states


class UpBlock(nn.Module):
    """`layers` residual blocks on [x, skip] concatenations (each optionally followed by attention), then an
    optional upsampler."""

    def __init__(self, in_ch, prev_ch, out_ch, layers, attention, upsample, head_dim, **res):
        super().__init__()
        blocks = []
        for i in range(layers):
            skip_ch = in_ch if i == layers - 1 else out_ch
            blocks.append(ResnetBlock((prev_ch if i == 0 else out_ch) + skip_ch, out_ch, **res))
        self.resnets = nn.ModuleList(blocks)
        if attention:
            self.attentions = nn.ModuleList(
                [SpatialAttention(out_ch, head_dim, res["groups"], res["eps"]) for _ in range(layers)]
            )
        else:
            self.attentions = None
        self.upsamplers = nn.ModuleList([Upsample(out_ch)]) if upsample else None

    def forward(self, x: Tensor, skips: list[Tensor], temb: Tensor) -> Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class SkipDownBlock(nn.Module):
    """NCSN++'s down block as diffusers packages it (`SkipDownBlock2D` / `AttnSkipDownBlock2D`): residual blocks
    scaled by 1/√2 (GroupNorm groups min(C/4, 32)), optional attention, then a FIR-downsampling residual block
    plus a 1×1 projection of the FIR-downsampled input image (the "input skip" path of Karras et al. 2019)."""

    skip = True

    def __init__(self, in_ch, out_ch, layers, attention, downsample, head_dim, temb_dim, eps, act, dropout, shift):
        super().__init__()
        common = {"temb_dim": temb_dim, "eps": eps, "act": act, "dropout": dropout, "time_scale_shift": shift}
        rs2 = math.sqrt(2.0)
        self.resnets = nn.ModuleList()
        for i in range(layers):
            cin = in_ch if i == 0 else out_ch
            self.resnets.append(
                ResnetBlock(cin, out_ch, groups=_g(cin), groups_out=_g(out_ch), output_scale_factor=rs2, **common)
            )
        self.attentions = (
            nn.ModuleList([SpatialAttention(out_ch, head_dim, 32, eps, rs2) for _ in range(layers)])
            if attention
            else None
        )
        if downsample:
            self.resnet_down = ResnetBlock(
                out_ch, out_ch, groups=_g(out_ch), output_scale_factor=rs2, shortcut=True, resample="down", **common
            )
            self.skip_conv = nn.Conv2d(3, out_ch, 1)
        else:
            self.resnet_down = self.skip_conv = None

    def forward(self, x: Tensor, temb: Tensor, skip: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        states = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x)
            states.append(x)
        if self.resnet_down is not None:
            x = self.resnet_down(x, temb)
            skip = downsample_2d(skip, FIR_KERNEL)
            x = self.skip_conv(skip) + x
            states.append(x)
        return x, states, skip


class SkipUpBlock(nn.Module):
    """NCSN++'s up block (`SkipUpBlock2D` / `AttnSkipUpBlock2D`): residual blocks on [x, skip] concatenations, one
    attention after them (Attn variant), the output-skip image path (FIR-upsampled, plus a 3×3 projection of the
    features), then a FIR-upsampling residual block."""

    skip = True

    def __init__(
        self, in_ch, prev_ch, out_ch, layers, attention, upsample, head_dim, temb_dim, eps, act, dropout, shift
    ):
        super().__init__()
        common = {"temb_dim": temb_dim, "eps": eps, "act": act, "dropout": dropout, "time_scale_shift": shift}
        rs2 = math.sqrt(2.0)
        self.resnets = nn.ModuleList()
        for i in range(layers):
            rin, rskip = (prev_ch if i == 0 else out_ch), (in_ch if i == layers - 1 else out_ch)
            # diffusers' AttnSkipUpBlock2D computes its groups as min(rin + rskip // 4, 32) (operator precedence)
            groups = min(rin + rskip // 4, 32) if attention else _g(rin + rskip)
            self.resnets.append(
                ResnetBlock(
                    rin + rskip, out_ch, groups=groups, groups_out=_g(out_ch), output_scale_factor=rs2, **common
                )
            )
        self.attentions = nn.ModuleList([SpatialAttention(out_ch, head_dim, 32, eps, rs2)]) if attention else None
        if upsample:
            self.resnet_up = ResnetBlock(
                out_ch,
                out_ch,
                groups=_g(out_ch),
                groups_out=_g(out_ch),
                output_scale_factor=rs2,
                shortcut=True,
                resample="up",
                **common,
            )
            self.skip_conv = nn.Conv2d(out_ch, 3, 3, padding=1)
            self.skip_norm = nn.GroupNorm(_g(out_ch), out_ch, eps=eps)
            self.act = nn.SiLU()
        else:
            self.resnet_up = self.skip_conv = self.skip_norm = self.act = None

    def forward(self, x: Tensor, skips: list[Tensor], temb: Tensor, skip):
        for resnet in self.resnets:
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
        if self.attentions is not None:
            x = self.attentions[0](x)
        skip = upsample_2d(skip, FIR_KERNEL) if skip is not None else 0
        if self.resnet_up is not None:
            skip = skip + self.skip_conv(self.act(self.skip_norm(x)))
            x = self.resnet_up(x, temb)
        return x, skip


def _g(ch: int) -> int:
    """GroupNorm groups where diffusers derives them from the width: min(C/4, 32)."""
    return min(ch // 4, 32)


class MidBlock(nn.Module):
    """ResNet → (attention → ResNet) (diffusers' `UNetMidBlock2D`, one layer)."""

    def __init__(self, ch, head_dim, attn_groups, add_attention, output_scale_factor, **res):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock(ch, ch, output_scale_factor=output_scale_factor, **res) for _ in range(2)]
        )
        self.attentions = (
            nn.ModuleList([SpatialAttention(ch, head_dim, attn_groups, res["eps"], output_scale_factor)])
            if add_attention
            else None
        )

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        x = self.resnets[0](x, temb)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x, temb)


class DiffusersUNet2D(nn.Module):
    """diffusers `UNet2DModel`; keyword arguments are the fields of its config.json (see the module docstring)."""

    def __init__(
        self,
        sample_size: int | list[int] | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        center_input_sample: bool = False,
        time_embedding_type: str = "positional",
        time_embedding_dim: int | None = None,
        freq_shift: float = 0,
        flip_sin_to_cos: bool = True,
        down_block_types: tuple | list = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        mid_block_type: str | None = "UNetMidBlock2D",
        up_block_types: tuple | list = ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        block_out_channels: tuple | list = (224, 448, 672, 896),
        layers_per_block: int = 2,
        mid_block_scale_factor: float = 1.0,
        downsample_padding: int = 1,
        downsample_type: str = "conv",
        upsample_type: str = "conv",
        dropout: float = 0.0,
        act_fn: str = "silu",
        attention_head_dim: int | None = 8,
        norm_num_groups: int | None = 32,
        attn_norm_num_groups: int | None = None,
        norm_eps: float = 1e-5,
        resnet_time_scale_shift: str = "default",
        add_attention: bool = True,
        class_embed_type: str | None = None,
        num_class_embeds: int | None = None,
        num_train_timesteps: int | None = None,
    ):
        super().__init__()
        down_block_types = [_block_name(str(b)) for b in down_block_types]
        up_block_types = [_block_name(str(b)) for b in up_block_types]
        chans = [int(c) for c in block_out_channels]
        for b in down_block_types:
            if b not in DOWN_BLOCKS:
                raise ValueError(f"unsupported UNet2DModel down block {b!r} (supported: {', '.join(DOWN_BLOCKS)})")
        for b in up_block_types:
            if b not in UP_BLOCKS:
                raise ValueError(f"unsupported UNet2DModel up block {b!r} (supported: {', '.join(UP_BLOCKS)})")
        if mid_block_type not in (None, "UNetMidBlock2D"):
            raise ValueError(f"unsupported UNet2DModel mid block {mid_block_type!r} (UNetMidBlock2D or null)")
        if time_embedding_type not in ("positional", "fourier"):
            raise ValueError(
                f"unsupported UNet2DModel time_embedding_type {time_embedding_type!r} (positional, fourier)"
            )
        if class_embed_type is not None:
            raise ValueError(f"unsupported UNet2DModel class_embed_type {class_embed_type!r} (null + num_class_embeds)")
        if resnet_time_scale_shift not in ("default", "scale_shift"):
            raise ValueError(f"unsupported resnet_time_scale_shift {resnet_time_scale_shift!r} (default, scale_shift)")
        if downsample_type != "conv" or upsample_type != "conv":
            raise ValueError(f"unsupported down/upsample type {downsample_type!r}/{upsample_type!r} (conv)")
        if not (len(down_block_types) == len(up_block_types) == len(chans)):
            raise ValueError("UNet2DModel needs as many down_block_types and up_block_types as block_out_channels")
        groups_in = int(norm_num_groups) if norm_num_groups is not None else _g(chans[0])
        groups_mid = int(norm_num_groups) if norm_num_groups is not None else _g(chans[-1])
        _activation(act_fn)
        self.center_input_sample = bool(center_input_sample)
        self.flip_sin_to_cos, self.freq_shift = bool(flip_sin_to_cos), float(freq_shift)
        self.num_classes = int(num_class_embeds or 0)
        self.sample_size = sample_size
        temb_dim = int(time_embedding_dim or 4 * chans[0])
        self.embed_dim = chans[0]
        self.fourier = time_embedding_type == "fourier"

        self.conv_in = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        if self.fourier:  # NCSN++: features of log σ with random frequencies (scale 16), output divided by σ
            self.time_proj = FourierFeatures(chans[0])
        self.time_embedding = TimestepMLP(2 * chans[0] if self.fourier else chans[0], temb_dim)
        self.class_embedding = nn.Embedding(self.num_classes, temb_dim) if self.num_classes else None
        res = {
            "temb_dim": temb_dim,
            "groups": groups_in,
            "eps": float(norm_eps),
            "act": act_fn,
            "dropout": float(dropout),
            "time_scale_shift": resnet_time_scale_shift,
        }

        def head_dim(ch: int) -> int:
            return int(attention_head_dim) if attention_head_dim is not None else ch

        self.down_blocks = nn.ModuleList()
        out_ch = chans[0]
        for i, kind in enumerate(down_block_types):
            in_ch, out_ch = out_ch, chans[i]
            last = i == len(chans) - 1
            if "Skip" in kind:
                self.down_blocks.append(
                    SkipDownBlock(
                        in_ch,
                        out_ch,
                        int(layers_per_block),
                        kind.startswith("Attn"),
                        not last,
                        head_dim(out_ch),
                        temb_dim,
                        float(norm_eps),
                        act_fn,
                        float(dropout),
                        resnet_time_scale_shift,
                    )
                )
                continue
            self.down_blocks.append(
                DownBlock(
                    in_ch,
                    out_ch,
                    int(layers_per_block),
                    kind == "AttnDownBlock2D",
                    not last,
                    head_dim(out_ch),
                    downsample_padding,
                    **res,
                )
            )
        if mid_block_type is None:
            self.mid_block = None
        else:
            attn_groups = attn_norm_num_groups
            if attn_groups is None and resnet_time_scale_shift == "default":
                attn_groups = groups_mid
            self.mid_block = MidBlock(
                chans[-1],
                head_dim(chans[-1]),
                attn_groups,
                bool(add_attention),
                float(mid_block_scale_factor),
                **{**res, "groups": groups_mid},
            )
        rev = list(reversed(chans))
        self.up_blocks = nn.ModuleList()
        out_ch = rev[0]
        for i, kind in enumerate(up_block_types):
            prev_ch, out_ch = out_ch, rev[i]
            in_ch = rev[min(i + 1, len(chans) - 1)]
            last = i == len(chans) - 1
            if "Skip" in kind:
                self.up_blocks.append(
                    SkipUpBlock(
                        in_ch,
                        prev_ch,
                        out_ch,
                        int(layers_per_block) + 1,
                        kind.startswith("Attn"),
                        not last,
                        head_dim(out_ch),
                        temb_dim,
                        float(norm_eps),
                        act_fn,
                        float(dropout),
                        resnet_time_scale_shift,
                    )
                )
                continue
            self.up_blocks.append(
                UpBlock(
                    in_ch,
                    prev_ch,
                    out_ch,
                    int(layers_per_block) + 1,
                    kind == "AttnUpBlock2D",
                    not last,
                    head_dim(out_ch),
                    **res,
                )
            )
        self.conv_norm_out = nn.GroupNorm(groups_in, chans[0], eps=float(norm_eps))
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(chans[0], out_channels, 3, padding=1)

    def forward(self, x: Tensor, timesteps, class_labels: Tensor | None = None) -> Tensor:
        if self.center_input_sample:
            x = 2 * x - 1.0
        t = torch.as_tensor(timesteps, device=x.device)
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(x.shape[0])
        if self.fourier:
            emb = self.time_proj(t).to(x.dtype)
        else:
            emb = timestep_embedding(t, self.embed_dim, self.flip_sin_to_cos, self.freq_shift).to(x.dtype)
        emb = self.time_embedding(emb)
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("this UNet2DModel is class-conditional: class labels are required")
            emb = emb + self.class_embedding(class_labels.to(x.device).long()).to(emb.dtype)
        image = x  # the input-skip / output-skip image path of the NCSN++ blocks
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            if getattr(block, "skip", False):
                h, states, image = block(h, emb, image)
            else:
                h, states = block(h, emb)
            skips.extend(states)
        if self.mid_block is not None:
            h = self.mid_block(h, emb)
        image = None
        for block in self.up_blocks:
            if getattr(block, "skip", False):
                h, image = block(h, skips, emb, image)
            else:
                h = block(h, skips, emb)
        out = self.conv_out(self.conv_act(self.conv_norm_out(h)))
        if image is not None:
            out = out + image
        if self.fourier:
            out = out / t.to(out.dtype).reshape(-1, *([1] * (out.ndim - 1)))
        return out
