"""NCSN++ / DDPM++ (Song et al. 2021, "Score-Based Generative Modeling through SDEs", appendix H).

One class covers score_sde's `ncsnpp` family: Fourier (σ) or positional (t) embedding, FIR or nearest/avg
resampling, BigGAN or DDPM residual blocks, progressive input (`none`/`input_skip`/`residual`) and output
(`none`/`output_skip`/`residual`) pyramids, 1/√2 skip rescaling and scale-by-σ. Modules live in one
`all_modules` list in the published order, so score_sde's checkpoints load by name.

Call: `net(x, c_noise, class_labels=None)` where `c_noise` is σ (Fourier embedding) or the time label
999·t (positional). With `scale_by_sigma` the output is divided by σ (a score for VE models).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ._sde_layers import (
    SQRT2,
    AttnBlockpp,
    Combine,
    Downsample,
    GaussianFourierProjection,
    ResnetBlockBigGANpp,
    ResnetBlockDDPMpp,
    Upsample,
    _dense,
    conv3x3,
    group_norm,
    sinusoidal_embedding,
)

__all__ = ["NCSNpp"]

_ACTS = {"swish": nn.SiLU, "silu": nn.SiLU, "relu": nn.ReLU, "elu": nn.ELU}


class NCSNpp(nn.Module):
    """score_sde's NCSN++ U-Net; keyword names follow score_sde's `config.model` / `config.data` fields."""

    def __init__(
        self,
        image_size: int = 32,
        num_channels: int = 3,
        nf: int = 128,
        ch_mult=(1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions=(16,),
        dropout: float = 0.1,
        resamp_with_conv: bool = True,
        conditional: bool = True,
        fir: bool = True,
        fir_kernel=(1, 3, 3, 1),
        skip_rescale: bool = True,
        resblock_type: str = "biggan",
        progressive: str = "none",
        progressive_input: str = "residual",
        progressive_combine: str = "sum",
        embedding_type: str = "fourier",
        fourier_scale: float = 16.0,
        init_scale: float = 0.0,
        nonlinearity: str = "swish",
        scale_by_sigma: bool = True,
        centered: bool = False,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        num_scales: int = 1000,
    ):
        super().__init__()
        checks = {
            "resblock_type": (resblock_type, ("ddpm", "biggan")),
            "progressive": (progressive, ("none", "output_skip", "residual")),
            "progressive_input": (progressive_input, ("none", "input_skip", "residual")),
            "embedding_type": (embedding_type, ("fourier", "positional")),
            "progressive_combine": (progressive_combine, ("sum", "cat")),
            "nonlinearity": (nonlinearity, tuple(_ACTS)),
        }
        for name, (value, allowed) in checks.items():
            if str(value).lower() not in allowed:
                raise ValueError(f"NCSNpp: unknown {name} {value!r} (choose from {', '.join(allowed)})")
        resblock_type, progressive = resblock_type.lower(), progressive.lower()
        progressive_input, embedding_type = progressive_input.lower(), embedding_type.lower()
        combine = progressive_combine.lower()
        n_levels = len(ch_mult)
        if image_size % (2 ** (n_levels - 1)):
            raise ValueError(f"NCSNpp: image_size {image_size} is not divisible by 2^{n_levels - 1}")
        self.act = act = _ACTS[nonlinearity.lower()]()
        # score_sde keeps its discrete noise levels as a buffer (part of the published state dict).
        sig = np.exp(np.linspace(np.log(float(sigma_max)), np.log(float(sigma_min)), int(num_scales)))
        self.register_buffer("sigmas", torch.tensor(sig, dtype=torch.float64))
        self.nf, self.num_res_blocks, self.n_levels = nf, num_res_blocks, n_levels
        self.attn_resolutions = tuple(int(r) for r in attn_resolutions)
        self.conditional, self.skip_rescale, self.resblock_type = conditional, skip_rescale, resblock_type
        self.progressive, self.progressive_input, self.embedding_type = progressive, progressive_input, embedding_type
        self.scale_by_sigma, self.centered = scale_by_sigma, centered
        resolutions = [image_size // 2**i for i in range(n_levels)]
        fir_kernel = tuple(fir_kernel)

        modules: list[nn.Module] = []
        if embedding_type == "fourier":
            modules.append(GaussianFourierProjection(nf, fourier_scale))
            embed_dim = 2 * nf
        else:
            embed_dim = nf
        temb_dim = 4 * nf  # residual blocks own a Dense_0 even when unconditional (unused then), as published
        if conditional:
            modules += [_dense(embed_dim, 4 * nf), _dense(4 * nf, 4 * nf)]

        def resblock(in_ch, out_ch=None, up=False, down=False):
            if resblock_type == "ddpm":
                return ResnetBlockDDPMpp(
                    act, in_ch, out_ch, temb_dim, dropout=dropout, skip_rescale=skip_rescale, init_scale=init_scale
                )
            return ResnetBlockBigGANpp(
                act,
                in_ch,
                out_ch,
                temb_dim,
                up=up,
                down=down,
                dropout=dropout,
                fir=fir,
                fir_kernel=fir_kernel,
                skip_rescale=skip_rescale,
                init_scale=init_scale,
            )

        def attn(ch):
            return AttnBlockpp(ch, skip_rescale=skip_rescale, init_scale=init_scale)

        if progressive == "output_skip":
            self.pyramid_upsample = Upsample(num_channels, fir=fir, fir_kernel=fir_kernel, with_conv=False)
        if progressive_input == "input_skip":
            self.pyramid_downsample = Downsample(num_channels, fir=fir, fir_kernel=fir_kernel, with_conv=False)

        # Downsampling path
        modules.append(conv3x3(num_channels, nf))
        skip_ch = [nf]
        in_ch, pyramid_in_ch = nf, num_channels
        for level in range(n_levels):
            for _ in range(num_res_blocks):
                out_ch = nf * ch_mult[level]
                modules.append(resblock(in_ch, out_ch))
                in_ch = out_ch
                if resolutions[level] in self.attn_resolutions:
                    modules.append(attn(in_ch))
                skip_ch.append(in_ch)
            if level != n_levels - 1:
                if resblock_type == "ddpm":
                    modules.append(Downsample(in_ch, with_conv=resamp_with_conv, fir=fir, fir_kernel=fir_kernel))
                else:
                    modules.append(resblock(in_ch, down=True))
                if progressive_input == "input_skip":
                    modules.append(Combine(pyramid_in_ch, in_ch, combine))
                    if combine == "cat":
                        in_ch *= 2
                elif progressive_input == "residual":
                    modules.append(Downsample(pyramid_in_ch, in_ch, with_conv=True, fir=fir, fir_kernel=fir_kernel))
                    pyramid_in_ch = in_ch
                skip_ch.append(in_ch)

        in_ch = skip_ch[-1]
        modules += [resblock(in_ch), attn(in_ch), resblock(in_ch)]

        # Upsampling path
        pyramid_ch = 0
        for level in reversed(range(n_levels)):
            for _ in range(num_res_blocks + 1):
                out_ch = nf * ch_mult[level]
                modules.append(resblock(in_ch + skip_ch.pop(), out_ch))
                in_ch = out_ch
            if resolutions[level] in self.attn_resolutions:
                modules.append(attn(in_ch))
            if progressive != "none":
                if progressive == "output_skip":
                    modules += [group_norm(in_ch), conv3x3(in_ch, num_channels, init_scale=init_scale)]
                    pyramid_ch = num_channels
                elif level == n_levels - 1:  # residual, first level
                    modules += [group_norm(in_ch), conv3x3(in_ch, in_ch)]
                    pyramid_ch = in_ch
                else:
                    modules.append(Upsample(pyramid_ch, in_ch, with_conv=True, fir=fir, fir_kernel=fir_kernel))
                    pyramid_ch = in_ch
            if level != 0:
                if resblock_type == "ddpm":
                    modules.append(Upsample(in_ch, with_conv=resamp_with_conv, fir=fir, fir_kernel=fir_kernel))
                else:
                    modules.append(resblock(in_ch, up=True))
        if progressive != "output_skip":
            modules += [group_norm(in_ch), conv3x3(in_ch, num_channels, init_scale=init_scale)]
        self.all_modules = nn.ModuleList(modules)

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        c_noise = torch.as_tensor(c_noise, device=x.device)
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(x.shape[0])
        mods = iter(self.all_modules)
        if self.embedding_type == "fourier":
            used_sigmas = c_noise
            temb = next(mods)(torch.log(c_noise.to(x.dtype)))
        else:
            used_sigmas = self.sigmas[c_noise.long()] if self.scale_by_sigma else None
            temb = sinusoidal_embedding(c_noise, self.nf).to(x.dtype)
        if self.conditional:
            temb = next(mods)(temb)
            temb = next(mods)(self.act(temb))
        else:
            temb = None
        if not self.centered:  # data in [0, 1]: the network itself maps to [-1, 1]
            x = 2 * x - 1.0

        pyramid_in = x if self.progressive_input != "none" else None
        hs = [next(mods)(x)]
        for level in range(self.n_levels):
            for _ in range(self.num_res_blocks):
                h = next(mods)(hs[-1], temb)
                if h.shape[-1] in self.attn_resolutions:
                    h = next(mods)(h)
                hs.append(h)
            if level != self.n_levels - 1:
                h = next(mods)(hs[-1]) if self.resblock_type == "ddpm" else next(mods)(hs[-1], temb)
                if self.progressive_input == "input_skip":
                    pyramid_in = self.pyramid_downsample(pyramid_in)
                    h = next(mods)(pyramid_in, h)
                elif self.progressive_input == "residual":
                    pyramid_in = next(mods)(pyramid_in)
                    pyramid_in = (pyramid_in + h) / SQRT2 if self.skip_rescale else pyramid_in + h
                    h = pyramid_in
                hs.append(h)

        h = next(mods)(hs[-1], temb)
        h = next(mods)(h)
        h = next(mods)(h, temb)

        pyramid = None
        for level in reversed(range(self.n_levels)):
            for _ in range(self.num_res_blocks + 1):
                h = next(mods)(torch.cat([h, hs.pop()], dim=1), temb)
            if h.shape[-1] in self.attn_resolutions:
                h = next(mods)(h)
            if self.progressive == "output_skip":
                norm, conv = next(mods), next(mods)
                branch = conv(self.act(norm(h)))
                pyramid = branch if pyramid is None else self.pyramid_upsample(pyramid) + branch
            elif self.progressive == "residual":
                if level == self.n_levels - 1:
                    norm, conv = next(mods), next(mods)
                    pyramid = conv(self.act(norm(h)))
                else:
                    pyramid = next(mods)(pyramid)
                    pyramid = (pyramid + h) / SQRT2 if self.skip_rescale else pyramid + h
                    h = pyramid
            if level != 0:
                h = next(mods)(h) if self.resblock_type == "ddpm" else next(mods)(h, temb)

        if self.progressive == "output_skip":
            h = pyramid
        else:
            norm, conv = next(mods), next(mods)
            h = conv(self.act(norm(h)))
        if self.scale_by_sigma:
            h = h / used_sigmas.to(h.dtype).reshape(-1, *([1] * (h.ndim - 1)))
        return h
