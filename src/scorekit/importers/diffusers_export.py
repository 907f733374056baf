"""Export scorekit's own U-Net (`arch: "unet"`) as a diffusers `UNet2DModel` pipeline folder.

Which networks map (everything else is refused with one ValueError line naming the reason):
- noise embedding `positional` (alias `sinusoidal`): scorekit's features are [cos, sin](c·e^(−ln(10⁴)·k/half)),
  which is diffusers' `get_timestep_embedding` with `flip_sin_to_cos=True`, `downscale_freq_shift=0`
  (`freq_shift: 0`), on `block_out_channels[0] = model_channels` features into a 4·model_channels MLP.
  `fourier` does not map: UNet2DModel's Fourier projection has its own 2·model_channels features of
  log(timestep), sin first, and divides the network output by the timestep (the score-SDE convention);
- GroupNorm: scorekit picks, per layer, the largest group count ≤ 32 dividing the channels (eps 1e-6);
  UNet2DModel has one `norm_num_groups` for every norm, so all the network's norms must agree on it;
- attention: one head (`attention_head_dim: null`, heads = channels everywhere), or `num_heads` heads where
  every attention layer has the same channel count (`attention_head_dim = channels/num_heads`); the 1×1-conv
  qkv splits into the to_q / to_k / to_v linears (heads are contiguous channel slices in both);
- resampling: `resample_conv: true` (UNet2DModel always convolves when it down- or upsamples);
- skip structure: scorekit's levels are UNet2DModel's (Attn)DownBlock2D / (Attn)UpBlock2D with
  `layers_per_block = num_res_blocks`, attention where the level's resolution is in `attn_resolutions`, and the
  middle ResBlock–attention–ResBlock; the converted state dict is checked name by name and shape by shape
  against the UNet2DModel the config describes;
- class labels: `num_class_embeds = num_classes + 1`, the last embedding being scorekit's "no label" class.

Scheduler (the denoiser D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise) must be the scheduler's):
- `edm` parameterisation + `log_sigma` conditioning (c_noise = ¼ ln σ), any process: `EDMEulerScheduler` with
  `sigma_data`, the process's σ range, `prediction_type: epsilon` (EDM's c_out) — its `precondition_inputs`,
  `precondition_noise` and `precondition_outputs` are exactly scorekit's c_in, c_noise, c_skip/c_out;
- `v` + `log_sigma`: the same scheduler with `sigma_data: 1` and `prediction_type: v_prediction`;
- `eps` / `v` / `x0` + `index` on the `ddpm` process: `DDPMScheduler` (c_in = √ᾱ, the timestep = the index);
- anything else (e.g. `eps` on a VP/VE process, whose c_in is the process's scale s(σ), or `t`/`sigma`
  conditioning) has no diffusers scheduler and is refused; so are learned-variance `output_channels`.

model_index.json names `DDPMPipeline` for DDPMScheduler and `ConsistencyModelPipeline` for the EDM scheduler (its
loop, scale_model_input → unet(·, t) → step, is the one EDM schedulers need; both map samples by x/2 + 0.5).
unet/config.json carries `_scorekit.num_classes` (ignored by diffusers), which `import diffusers` reads back.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import CheckpointError, check_state_dict, load_tensors, read_config, write_json_atomic

__all__ = ["unet_to_diffusers_config", "convert_unet_weights", "scheduler_for_run", "export_own_unet"]

WEIGHTS = "diffusion_pytorch_model.safetensors"


def _levels(net: dict) -> tuple[list[int], list[bool]]:
    mult = [int(m) for m in net.get("channel_mult", (1, 2, 2))]
    attn = {int(r) for r in net.get("attn_resolutions", (16,))}
    res = int(net["resolution"])
    return mult, [res // 2**level in attn for level in range(len(mult))]


def unet_to_diffusers_config(net: dict, source: str = "run") -> dict:
    """A scorekit `unet` network config → the UNet2DModel config.json that holds the same network."""
    from ..models.layers import num_groups
    from ..models.registry import build_network
    from ..models.unet import AttentionBlock

    if net.get("arch") != "unet":
        raise ValueError(f"{source}: export of scorekit networks covers arch 'unet', not {net.get('arch')!r}")
    emb = net.get("embedding", "positional")
    if emb == "fourier":
        raise ValueError(
            f"{source}: a Fourier noise embedding does not map onto UNet2DModel (its Fourier projection embeds "
            "log(timestep) with other features and divides the output by the timestep); export needs "
            "embedding 'positional'"
        )
    if emb not in ("positional", "sinusoidal"):
        raise ValueError(f"{source}: noise embedding {emb!r} does not map onto UNet2DModel")
    if not net.get("resample_conv", True):
        raise ValueError(
            f"{source}: resample_conv false (average pooling / plain nearest upsampling) does not map: "
            "UNet2DModel's down- and upsamplers are convolutions"
        )
    with torch.device("meta"):
        model = build_network(dict(net))
    groups = {m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)}
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.GroupNorm)}
    if len(groups) != 1:
        chans = sorted({m.num_channels for m in model.modules() if isinstance(m, torch.nn.GroupNorm)})
        got = ", ".join(f"{c}→{num_groups(c)}" for c in chans)
        raise ValueError(
            f"{source}: the GroupNorms use different group counts (channels→groups {got}); UNet2DModel has one "
            "norm_num_groups (choose channel counts all divisible by 32, or all equal)"
        )
    heads = int(net.get("num_heads", 1))
    attn_ch = {m.qkv.in_channels for m in model.modules() if isinstance(m, AttentionBlock)}
    if heads == 1:
        head_dim = None  # heads = 1 at every resolution: UNet2DModel uses the block's channels as the head size
    elif len(attn_ch) == 1:
        head_dim = next(iter(attn_ch)) // heads
    else:
        raise ValueError(
            f"{source}: {heads} attention heads over {sorted(attn_ch)} channels give different head sizes; "
            "UNet2DModel has one attention_head_dim (use num_heads 1 or attention at one channel count)"
        )
    mult, attn = _levels(net)
    mc = int(net.get("model_channels", 64))
    nc = int(net.get("num_classes", 0))
    (g,) = groups
    return {
        "_class_name": "UNet2DModel",
        "sample_size": int(net["resolution"]),
        "in_channels": int(net["in_channels"]),
        "out_channels": int(net.get("out_channels") or net["in_channels"]),
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "freq_shift": 0,
        "flip_sin_to_cos": True,
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        "block_out_channels": [mc * m for m in mult],
        "layers_per_block": int(net.get("num_res_blocks", 2)),
        "mid_block_scale_factor": 1.0,
        "downsample_padding": 1,
        "downsample_type": "conv",
        "upsample_type": "conv",
        "dropout": float(net.get("dropout", 0.0)),
        "act_fn": "silu",
        "attention_head_dim": head_dim,
        "norm_num_groups": int(g),
        "attn_norm_num_groups": int(g),
        "norm_eps": float(next(iter(eps))),
        "resnet_time_scale_shift": "scale_shift",
        "add_attention": True,
        "class_embed_type": None,
        "num_class_embeds": nc + 1 if nc > 0 else None,
        # scorekit's reading of the class embeddings (ignored by diffusers: keys starting with "_")
        "_scorekit": {"num_classes": nc, "null_class": nc if nc > 0 else None},
    }


def _resblock(src: str, dst: str) -> list[tuple[str, str]]:
    pairs = [("norm1", "norm1"), ("conv1", "conv1"), ("emb", "time_emb_proj"), ("norm2", "norm2")]
    pairs += [("conv2", "conv2"), ("skip", "conv_shortcut")]
    return [(f"{src}.{a}", f"{dst}.{b}") for a, b in pairs]


def _module_map(net: dict) -> list[tuple[str, str, str]]:
    """(scorekit module prefix, diffusers module prefix, kind) for every layer with weights."""
    mult, attn = _levels(net)
    nrb = int(net.get("num_res_blocks", 2))
    out: list[tuple[str, str, str]] = [
        ("encoder.noise_embed.mlp.0", "time_embedding.linear_1", "plain"),
        ("encoder.noise_embed.mlp.2", "time_embedding.linear_2", "plain"),
        ("encoder.class_embed.embed", "class_embedding", "plain"),
        ("encoder.conv_in", "conv_in", "plain"),
        ("out_norm", "conv_norm_out", "plain"),
        ("conv_out", "conv_out", "plain"),
    ]
    i = 0
    for level in range(len(mult)):
        for k in range(nrb):
            out += [(a, b, "plain") for a, b in _resblock(f"encoder.down.{i}.0", f"down_blocks.{level}.resnets.{k}")]
            if attn[level]:
                out.append((f"encoder.down.{i}.1", f"down_blocks.{level}.attentions.{k}", "attn"))
            i += 1
        if level < len(mult) - 1:
            out.append((f"encoder.down.{i}.0.op", f"down_blocks.{level}.downsamplers.0.conv", "plain"))
            i += 1
    out += [(a, b, "plain") for a, b in _resblock("encoder.mid.0", "mid_block.resnets.0")]
    out.append(("encoder.mid.1", "mid_block.attentions.0", "attn"))
    out += [(a, b, "plain") for a, b in _resblock("encoder.mid.2", "mid_block.resnets.1")]
    i = 0
    for u, level in enumerate(reversed(range(len(mult)))):
        for k in range(nrb + 1):
            out += [(a, b, "plain") for a, b in _resblock(f"up.{i}.0", f"up_blocks.{u}.resnets.{k}")]
            j = 1
            if attn[level]:
                out.append((f"up.{i}.{j}", f"up_blocks.{u}.attentions.{k}", "attn"))
                j += 1
            if level > 0 and k == nrb:
                out.append((f"up.{i}.{j}.conv", f"up_blocks.{u}.upsamplers.0.conv", "plain"))
            i += 1
    return out


def convert_unet_weights(tensors: dict, net: dict, unet_config: dict | None = None, source: str = "run") -> dict:
    """scorekit `unet` state dict → UNet2DModel state dict (every tensor used once; names and shapes checked
    against the UNet2DModel that `unet_config` describes)."""
    from ..models.diffusers_unet import DiffusersUNet2D

    cfg = unet_config or unet_to_diffusers_config(net, source)
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}
    for src, dst, kind in _module_map(net):
        if kind == "plain":
            for p in ("weight", "bias"):
                if f"{src}.{p}" in tensors:
                    out[f"{dst}.{p}"] = tensors[f"{src}.{p}"]
                    used.add(f"{src}.{p}")
            continue
        w, b = tensors[f"{src}.qkv.weight"], tensors[f"{src}.qkv.bias"]
        c = w.shape[1]
        for n, name in enumerate(("to_q", "to_k", "to_v")):
            out[f"{dst}.{name}.weight"] = w[n * c : (n + 1) * c].reshape(c, c)
            out[f"{dst}.{name}.bias"] = b[n * c : (n + 1) * c]
        out[f"{dst}.to_out.0.weight"] = tensors[f"{src}.proj.weight"].reshape(c, c)
        out[f"{dst}.to_out.0.bias"] = tensors[f"{src}.proj.bias"]
        out[f"{dst}.group_norm.weight"] = tensors[f"{src}.norm.weight"]
        out[f"{dst}.group_norm.bias"] = tensors[f"{src}.norm.bias"]
        used |= {f"{src}.{p}.{q}" for p in ("qkv", "proj", "norm") for q in ("weight", "bias")}
    left = sorted(k for k in tensors if k not in used and not k.endswith("noise_embed.features.freqs"))
    if left:
        raise CheckpointError(f"{source}: weight {left[0]!r} has no UNet2DModel counterpart")
    kw = {k: v for k, v in cfg.items() if not k.startswith("_")}
    with torch.device("meta"):
        template = DiffusersUNet2D(**kw).state_dict()
    for k, v in template.items():
        if k not in out:
            raise CheckpointError(f"{source}: the skip structure does not map (UNet2DModel weight {k!r} unfilled)")
        if tuple(out[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: the skip structure does not map ({k!r}: {tuple(out[k].shape)} vs {tuple(v.shape)})"
            )
    extra = sorted(set(out) - set(template))
    if extra:
        raise CheckpointError(f"{source}: converted weight {extra[0]!r} has no place in UNet2DModel")
    return {k: out[k].contiguous() for k in template}


def scheduler_for_run(cfg: dict, source: str = "run") -> dict:
    """The diffusers scheduler config whose preconditioning is the run's denoiser (see module docstring)."""
    from ..processes import get_process
    from .diffusers import _scheduler_from_run

    d = cfg["denoiser"]
    param, cond = d.get("parameterization", "eps"), d.get("conditioning", "t")
    process = get_process(cfg["process"])
    if cond == "log_sigma" and param in ("edm", "v"):
        return {
            "_class_name": "EDMEulerScheduler",
            "sigma_min": float(process.sigma_min),
            "sigma_max": float(process.sigma_max),
            "sigma_data": float(d.get("sigma_data", 0.5)) if param == "edm" else 1.0,
            "sigma_schedule": "karras",
            "num_train_timesteps": 1000,
            "prediction_type": "epsilon" if param == "edm" else "v_prediction",
            "rho": 7.0,
            "final_sigmas_type": "zero",
        }
    if cond == "index" and process.name == "ddpm" and param in ("eps", "v", "x0"):
        return _scheduler_from_run(cfg)
    if cond == "log_sigma":
        why = f"diffusers' EDM schedulers precondition as 'edm' (or 'v' with σ_data = 1), not {param!r}"
    elif param in ("edm", "v"):
        why = f"diffusers' EDM schedulers feed c_noise = ¼ ln σ, not {cond!r}"
    else:
        why = (
            f"{param!r} with {cond!r} conditioning on the {process.name} process (c_in = s(σ)) has no diffusers "
            "scheduler; DDPMScheduler needs the ddpm process with 'index' conditioning"
        )
    raise ValueError(f"{source}: the denoiser cannot be represented: {why}")


def export_source(run: Path, out, net: dict, *, ema: bool, overwrite: bool) -> tuple[Path, dict, str]:
    """(output folder, the run's weights checked against its network config, their file) for an export: --out must
    be a folder that holds no diffusers pipeline yet (unless `overwrite`); EMA weights when asked and present."""
    from ..models.registry import build_network

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    if (out / "model_index.json").exists() and not overwrite:
        raise ValueError(f"--out {out} already holds a diffusers pipeline; choose another folder")
    name = "ema.safetensors" if ema and (run / "ema.safetensors").exists() else "model.safetensors"
    tensors, _ = load_tensors(run / name)
    with torch.device("meta"):
        own = build_network(dict(net))
    return out, check_state_dict(own, tensors, run / name), str(run / name)


def export_own_unet(run: str | Path, out: str | Path, *, ema: bool = True, overwrite: bool = False) -> Path:
    """Write an `arch: "unet"` run as a diffusers folder: model_index.json, unet/ (UNet2DModel), scheduler/."""
    from safetensors.torch import save_file

    run = Path(run)
    cfg = read_config(run)
    net = dict(cfg.get("network") or {})
    unet_cfg = unet_to_diffusers_config(net, str(run))
    sched = scheduler_for_run(cfg, str(run))
    oc = cfg["denoiser"].get("output_channels")
    if oc is not None and int(oc) != unet_cfg["out_channels"]:
        raise ValueError(
            f"{run}: D reads {oc} of the network's {unet_cfg['out_channels']} output channels (learned variances); "
            "UNet2DModel export covers networks whose whole output is the prediction"
        )
    nc = int(net.get("num_classes", 0))
    if nc and int(cfg["data"].get("num_classes", 0)) not in (0, nc):
        raise ValueError(f"{run}: the network has {nc} classes, the data {cfg['data']['num_classes']}")
    out, tensors, source = export_source(run, out, net, ema=ema, overwrite=overwrite)
    weights = convert_unet_weights(tensors, net, unet_cfg, source)
    cls = sched["_class_name"]
    index = {
        "_class_name": "DDPMPipeline" if cls == "DDPMScheduler" else "ConsistencyModelPipeline",
        "unet": ["diffusers", "UNet2DModel"],
        "scheduler": ["diffusers", cls],
    }
    (out / "unet").mkdir(parents=True, exist_ok=True)
    (out / "scheduler").mkdir(parents=True, exist_ok=True)
    tmp = out / "unet" / f".{WEIGHTS}.tmp"
    save_file(weights, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / "unet" / WEIGHTS)
    write_json_atomic(out / "unet" / "config.json", unet_cfg)
    write_json_atomic(out / "scheduler" / "scheduler_config.json", sched)
    write_json_atomic(out / "model_index.json", index)
    return out
