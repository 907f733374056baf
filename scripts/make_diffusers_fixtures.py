"""Regenerate tests/fixtures/diffusers/ by running Hugging Face diffusers itself (needs `pip install diffusers`).

Each fixture is a tiny UNet2DModel with random weights saved by diffusers' own `save_pretrained` (a pipeline
folder, or a bare UNet folder with a scheduler_config.json), plus NAME_reference.safetensors holding:
- net_x, net_t, [net_labels], net_out: the network on random inputs at integer and fractional timesteps;
- noise: the initial x_T of both sampling loops;
- ddim_timesteps, ddim_out: DDIMScheduler (η = 0, clip_sample off) loop;
- dpm_timesteps, dpm_out: DPMSolverMultistepScheduler (2nd order, dpmsolver++, midpoint) loop;
- labels (class-conditional fixtures): the labels both loops used.

Usage: python scripts/make_diffusers_fixtures.py [OUT_DIR]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from diffusers import (
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    ScoreSdeVePipeline,
    ScoreSdeVeScheduler,
    UNet2DModel,
)
from safetensors.torch import save_file

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests/fixtures/diffusers"
STEPS = 5
TINY = {
    "sample_size": 8,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (8, 16),
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "attention_head_dim": 4,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
}

# name → (UNet overrides, scheduler class, scheduler kwargs, layout)
FIXTURES = {
    "uncond_linear": ({}, DDPMScheduler, {"beta_schedule": "linear"}, "ddpm_pipeline"),
    "classcond_linear": (
        {"num_class_embeds": 3, "resnet_time_scale_shift": "scale_shift"},
        DDPMScheduler,
        {"beta_schedule": "linear"},
        "bare",
    ),
    "vpred_scaled_linear": (
        {"attention_head_dim": None},
        DDIMScheduler,
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "v_prediction"},
        "ddim_pipeline",
    ),
    "cosine": ({}, DDPMScheduler, {"beta_schedule": "squaredcos_cap_v2"}, "ddpm_pipeline"),
    "sample_trained_betas": (
        {},
        DDPMScheduler,
        {
            "num_train_timesteps": 100,
            "trained_betas": torch.linspace(2e-3, 0.2, 100).tolist(),
            "prediction_type": "sample",
            "steps_offset": 1,
        },
        "ddpm_pipeline",
    ),
}


def perturb(unet: UNet2DModel, gen: torch.Generator) -> None:
    """Random weights everywhere (diffusers zero-initialises nothing here, but make every weight matter)."""
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))


def run_loop(unet, scheduler, noise, labels):
    scheduler.set_timesteps(STEPS)
    x = noise.clone() * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = unet(scheduler.scale_model_input(x, t), t, class_labels=labels).sample
        kwargs = {"eta": 0.0} if isinstance(scheduler, DDIMScheduler) else {}
        x = scheduler.step(out, t, x, **kwargs).prev_sample
    return x, scheduler.timesteps.clone().to(torch.int64)


def make(name: str, unet_kw: dict, sched_cls, sched_kw: dict, layout: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    unet = UNet2DModel(**{**TINY, **unet_kw}).eval()
    perturb(unet, gen)
    sched = sched_cls(**sched_kw)
    folder = OUT / name
    if folder.exists():
        shutil.rmtree(folder)
    if layout == "ddpm_pipeline":
        DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(folder)
    elif layout == "ddim_pipeline":
        DDIMPipeline(unet=unet, scheduler=sched).save_pretrained(folder)
    else:  # bare UNet folder with the scheduler config beside it
        unet.save_pretrained(folder)
        sched.save_pretrained(folder)
    num_classes = unet.config.num_class_embeds or 0
    ref = {}
    with torch.no_grad():
        x = torch.randn(3, 3, 8, 8, generator=gen)
        t = torch.tensor([3.0, 41.5, float(sched.config.num_train_timesteps) - 1.0])
        labels = torch.tensor([0, 2, 1]) if num_classes else None
        ref["net_x"], ref["net_t"] = x, t
        ref["net_out"] = unet(x, t, class_labels=labels).sample
        if labels is not None:
            ref["net_labels"] = labels
        noise = torch.randn(2, 3, 8, 8, generator=gen)
        loop_labels = torch.tensor([1, 2]) if num_classes else None
        if loop_labels is not None:
            ref["labels"] = loop_labels
        ddim = DDIMScheduler.from_config(sched.config, clip_sample=False, set_alpha_to_one=True)
        ref["noise"] = noise
        ref["ddim_out"], ref["ddim_timesteps"] = run_loop(unet, ddim, noise, loop_labels)
        dpm = DPMSolverMultistepScheduler.from_config(
            sched.config, solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint"
        )
        ref["dpm_out"], ref["dpm_timesteps"] = run_loop(unet, dpm, noise, loop_labels)
    import diffusers

    meta = {"diffusers_version": diffusers.__version__, "steps": str(STEPS), "layout": layout}
    save_file({k: v.contiguous() for k, v in ref.items()}, str(OUT / f"{name}_reference.safetensors"), metadata=meta)


# NCSN++ as diffusers packages it (ScoreSdeVePipeline): FIR skip blocks, Fourier features of log σ, output / σ.
# Attention inside the skip blocks needs 32 channels (its GroupNorm has 32 groups); the stored fixture keeps to
# the attention-free skip blocks and the mid-block attention to stay small.
VE_UNET = {
    **TINY,
    "block_out_channels": (16, 16),
    "norm_num_groups": None,
    "attention_head_dim": None,
    "down_block_types": ("SkipDownBlock2D", "SkipDownBlock2D"),
    "up_block_types": ("SkipUpBlock2D", "SkipUpBlock2D"),
    "time_embedding_type": "fourier",
    "mid_block_scale_factor": 2**0.5,
    "norm_eps": 1e-6,
    "freq_shift": 1,
}


def make_ve(name: str, seed: int) -> None:
    """VE pipeline + network outputs at σ values + one reverse-diffusion predictor step's mean (step_pred)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    unet = UNet2DModel(**VE_UNET).eval()
    perturb(unet, gen)
    sched = ScoreSdeVeScheduler(num_train_timesteps=100, sigma_min=0.01, sigma_max=50.0)
    folder = OUT / name
    if folder.exists():
        shutil.rmtree(folder)
    ScoreSdeVePipeline(unet=unet, scheduler=sched).save_pretrained(folder)
    ref = {}
    with torch.no_grad():
        ref["net_x"] = torch.randn(3, 3, 8, 8, generator=gen)
        ref["net_t"] = torch.tensor([0.02, 1.3, 45.0])  # the network's "timestep" is σ itself
        ref["net_out"] = unet(ref["net_x"], ref["net_t"]).sample
        sched.set_timesteps(STEPS)
        sched.set_sigmas(STEPS)
        i = 1
        t, sigma = sched.timesteps[i], sched.sigmas[i]
        x = torch.randn(2, 3, 8, 8, generator=gen) * sigma
        out = sched.step_pred(unet(x, sigma * torch.ones(2)).sample, t, x, generator=gen)
        index = (t * (len(sched.timesteps) - 1)).long()
        ref["pred_x"], ref["pred_sigma"] = x, sigma.reshape(1)
        ref["pred_sigma_next"] = sched.discrete_sigmas[index - 1].reshape(1) if index > 0 else torch.zeros(1)
        ref["pred_sigma_model"] = sched.discrete_sigmas[index].reshape(1)
        ref["pred_mean"] = out.prev_sample_mean
    import diffusers

    meta = {"diffusers_version": diffusers.__version__, "steps": str(STEPS), "layout": "score_sde_ve_pipeline"}
    save_file({k: v.contiguous() for k, v in ref.items()}, str(OUT / f"{name}_reference.safetensors"), metadata=meta)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for i, (name, (unet_kw, sched_cls, sched_kw, layout)) in enumerate(FIXTURES.items()):
        make(name, unet_kw, sched_cls, sched_kw, layout, seed=1000 + i)
        print(name, json.dumps(sched_kw)[:80])
    make_ve("score_sde_ve", seed=2000)
    print("score_sde_ve")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
