"""`scorekit export diffusers` for scorekit's own U-Net (arch "unet"): which configurations map onto
UNet2DModel, that the converted network and the exported scheduler's preconditioning reproduce scorekit's
F and D, that unmappable runs are refused in one line, and that the exported folder imports back to the same D.

Runs are tiny random-weight networks on the digits config (8×8, one channel); only the checks against diffusers
itself need diffusers installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scorekit.checkpoint import load_denoiser, save_tensors, write_config
from scorekit.cli import main as cli_main
from scorekit.importers import export_diffusers
from scorekit.importers.diffusers_export import convert_unet_weights, scheduler_for_run, unet_to_diffusers_config
from scorekit.models.diffusers_unet import DiffusersUNet2D
from scorekit.models.registry import build_network
from scorekit.run_config import default_config

TINY = {
    "arch": "unet",
    "in_channels": 1,
    "resolution": 8,
    "model_channels": 32,
    "channel_mult": [1, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [4],
    "dropout": 0.0,
    "embedding": "positional",
    "num_classes": 0,
}
SIGMAS = torch.tensor([0.01, 0.3, 2.0, 40.0])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _make_run(tmp_path: Path, name: str, process: str = "ve", class_conditional: bool = False, **net) -> Path:
    """A run directory with random (not zero-initialised) weights, written by the usual config/checkpoint helpers."""
    cfg = default_config("digits", process, class_conditional=class_conditional)
    cfg["network"] = {**TINY, "num_classes": 10 if class_conditional else 0, **net}
    model = build_network(dict(cfg["network"]))
    g = torch.Generator().manual_seed(len(name))
    with torch.no_grad():
        for key, p in model.named_parameters():
            one = 1.0 if "norm" in key and key.endswith("weight") else 0.0  # GroupNorm gains around 1
            p.copy_(torch.randn(p.shape, generator=g) * 0.15 + one)
    run = tmp_path / name
    save_tensors(run / "model.safetensors", model.state_dict())
    write_config(run, cfg)
    return run


def _inputs(n: int = 4):
    g = torch.Generator().manual_seed(7)
    return torch.randn(n, 1, 8, 8, generator=g), torch.tensor([3, 0, 9, 10])[:n]


# --- what maps (no diffusers needed) -------------------------------------------------------------------------
def test_mapped_config_and_refusals():
    cfg = unet_to_diffusers_config({**TINY, "num_classes": 10, "num_heads": 2})
    assert cfg["flip_sin_to_cos"] is True and cfg["freq_shift"] == 0
    assert cfg["norm_num_groups"] == cfg["attn_norm_num_groups"] == 32 and cfg["norm_eps"] == 1e-6
    assert cfg["resnet_time_scale_shift"] == "scale_shift"
    assert cfg["down_block_types"] == ["DownBlock2D", "AttnDownBlock2D"]
    assert cfg["up_block_types"] == ["AttnUpBlock2D", "UpBlock2D"]
    assert cfg["block_out_channels"] == [32, 64] and cfg["layers_per_block"] == 1
    assert cfg["attention_head_dim"] == 32 and cfg["num_class_embeds"] == 11
    assert unet_to_diffusers_config(TINY)["attention_head_dim"] is None  # one head at every resolution
    refusals = {
        "Fourier": {"embedding": "fourier"},
        "resample_conv": {"resample_conv": False},
        "group counts": {"model_channels": 24},  # 24→24 groups, 48→24, 96→32: no single norm_num_groups
        "head sizes": {"num_heads": 2, "attn_resolutions": [8, 4]},  # 32- and 64-channel attention
    }
    for why, over in refusals.items():
        with pytest.raises(ValueError, match=why) as e:
            unet_to_diffusers_config({**TINY, **over})
        assert "\n" not in str(e.value)


def test_scheduler_choice_and_refusals():
    edm = default_config("digits", "vp")
    s = scheduler_for_run(edm)
    assert s["_class_name"] == "EDMEulerScheduler" and s["prediction_type"] == "epsilon"
    assert s["sigma_data"] == edm["denoiser"]["sigma_data"]
    ddpm = default_config("digits", "ddpm")
    assert scheduler_for_run(ddpm)["_class_name"] == "DDPMScheduler"
    bad = default_config("digits", "vp")
    bad["denoiser"].update(parameterization="eps", conditioning="t")
    with pytest.raises(ValueError, match="c_in = s") as e:
        scheduler_for_run(bad)
    assert "\n" not in str(e.value)
    bad["denoiser"].update(parameterization="edm", conditioning="t")
    with pytest.raises(ValueError, match="¼ ln σ"):
        scheduler_for_run(bad)


def test_converted_weights_reproduce_the_network(tmp_path):
    """Against scorekit's own port of UNet2DModel: same output for the same inputs, every weight used."""
    run = _make_run(tmp_path, "cc", class_conditional=True, num_heads=2)
    den = load_denoiser(run, ema=False)
    net_cfg = den.net.to_config()
    ucfg = unet_to_diffusers_config(net_cfg)
    port = DiffusersUNet2D(**{k: v for k, v in ucfg.items() if not k.startswith("_")})
    port.load_state_dict(convert_unet_weights(den.net.state_dict(), net_cfg, ucfg))
    x, y = _inputs()
    c = torch.tensor([-1.2, 0.0, 0.4, 1.1])
    with torch.no_grad():
        ref = den.net(x, c, y)
        assert _rel(port(x, c, y), ref) < 1e-5


# --- against diffusers ------------------------------------------------------------------------------------------
def _set_parameterization(run: Path, param: str) -> None:
    cfg = json.loads((run / "config.json").read_text())
    cfg["denoiser"]["parameterization"] = param
    write_config(run, cfg)


@pytest.mark.parametrize("param", ["edm", "v"])
def test_edm_run_exports_to_unet2d_and_edm_scheduler(tmp_path, param):
    diffusers = pytest.importorskip("diffusers")
    run = _make_run(tmp_path, "edm", process="ve", class_conditional=True, num_heads=2)
    _set_parameterization(run, param)
    out = export_diffusers(run, tmp_path / "out")
    index = json.loads((out / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DModel"] and index["scheduler"][1] == "EDMEulerScheduler"
    unet = diffusers.UNet2DModel.from_pretrained(out / "unet").eval()
    sched = diffusers.EDMEulerScheduler.from_pretrained(out / "scheduler")
    den = load_denoiser(run, ema=False)
    assert sched.config.sigma_data == (den.precond.sigma_data if param == "edm" else 1.0)
    assert sched.config.prediction_type == ("epsilon" if param == "edm" else "v_prediction")
    assert (sched.config.sigma_min, sched.config.sigma_max) == (den.sigma_min, den.sigma_max)
    x, y = _inputs()
    with torch.no_grad():
        for s in SIGMAS:
            xs = x * float(s)
            t = sched.precondition_noise(s)
            f_ref = den.network_output(xs, s.expand(4), y)
            f = unet(sched.precondition_inputs(xs, s), t.expand(4), class_labels=y).sample
            assert _rel(f, f_ref) < 1e-5
            d = sched.precondition_outputs(xs, f, s)
            assert _rel(d, den(xs, s, y)) < 1e-5


def test_ddpm_run_exports_to_ddpm_scheduler(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    run = _make_run(tmp_path, "ddpm", process="ddpm")
    out = export_diffusers(run, tmp_path / "out")
    unet = diffusers.UNet2DModel.from_pretrained(out / "unet").eval()
    sched = diffusers.DDPMScheduler.from_pretrained(out / "scheduler")
    den = load_denoiser(run, ema=False)
    x, _ = _inputs()
    abar = sched.alphas_cumprod.double()
    with torch.no_grad():
        for t in (0, 250, 999):
            sigma = float(((1 - abar[t]) / abar[t]).sqrt())
            xt = x * float(abar[t].sqrt()) * (1 + sigma)  # diffusers' x_t = √ᾱ·x_σ
            eps = unet(xt, t).sample
            x0 = (xt - (1 - abar[t]).sqrt().float() * eps) / abar[t].sqrt().float()
            ref = den(xt / float(abar[t].sqrt()), torch.tensor(sigma))
            assert _rel(x0, ref) < 1e-5


@pytest.mark.parametrize(
    "param, scheduler",
    [("edm", "EDMEulerScheduler"), ("edm", "EDMDPMSolverMultistepScheduler"), ("v", "EDMEulerScheduler")],
)
def test_round_trip_through_import_gives_the_same_denoiser(tmp_path, param, scheduler):
    """export → `scorekit import diffusers` → the same D (the importer reads diffusers' EDM schedulers as the edm
    process with log_sigma conditioning); the solver variant shares EDMEulerScheduler's preconditioning."""
    pytest.importorskip("diffusers")
    run = _make_run(tmp_path, "rt", process="vp", class_conditional=True)
    _set_parameterization(run, param)
    out = export_diffusers(run, tmp_path / "out")
    sched_file = out / "scheduler" / "scheduler_config.json"
    sched_file.write_text(json.dumps({**json.loads(sched_file.read_text()), "_class_name": scheduler}))
    assert cli_main(["import", "diffusers", str(out), "--out", str(tmp_path / "back")]) == 0
    back = tmp_path / "back"
    cfg = json.loads((back / "config.json").read_text())
    assert cfg["process"]["name"] == "edm"
    assert (cfg["denoiser"]["parameterization"], cfg["denoiser"]["conditioning"]) == (param, "log_sigma")
    a, b = load_denoiser(run, ema=False), load_denoiser(back, ema=False)
    assert b.null_label == a.null_label == 10 and (b.sigma_min, b.sigma_max) == (a.sigma_min, a.sigma_max)
    x, y = _inputs()
    with torch.no_grad():
        for s in SIGMAS:
            assert _rel(b(x * s, s, y), a(x * s, s, y)) < 1e-5
            assert _rel(b.unconditional(x * s, s), a.unconditional(x * s, s)) < 1e-5


def test_fourier_run_is_refused_in_one_line(tmp_path, capsys):
    run = _make_run(tmp_path, "fourier", embedding="fourier")
    rc = cli_main(["export", "diffusers", "--run", str(run), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Fourier noise embedding does not map" in err
    assert not (tmp_path / "out").exists()


def test_unrepresentable_denoiser_is_refused_in_one_line(tmp_path, capsys):
    run = _make_run(tmp_path, "vp_eps", process="vp")
    cfg = json.loads((run / "config.json").read_text())
    cfg["denoiser"].update(parameterization="eps", conditioning="t999")
    write_config(run, cfg)
    rc = cli_main(["export", "diffusers", "--run", str(run), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "cannot be represented" in err


def test_exported_pipeline_samples_like_scorekit_euler(tmp_path):
    """model_index.json names ConsistencyModelPipeline, whose loop (scale_model_input → unet(·, t) → step) is the
    one EDM schedulers need: with EDMEulerScheduler it is EDM's Euler, scorekit's sample_pf_euler in σ-space."""
    diffusers = pytest.importorskip("diffusers")
    from scorekit.samplers.ode import sample_pf_euler

    run = _make_run(tmp_path, "pipe", process="edm", class_conditional=True)
    out = export_diffusers(run, tmp_path / "out")
    pipe = diffusers.DiffusionPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "ConsistencyModelPipeline"
    _, y = _inputs()
    g = torch.Generator().manual_seed(3)  # the pipeline's latents check wants 3 channels: draw them alike instead
    z = torch.randn((4, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        img = pipe(batch_size=4, class_labels=y, num_inference_steps=5, generator=g, output_type="pt").images
    sigmas = pipe.scheduler.sigmas.float()
    assert float(sigmas[-1]) == 0.0
    x = sample_pf_euler(load_denoiser(run, ema=False), z * pipe.scheduler.init_noise_sigma, sigmas, class_labels=y).x
    ref = (x / 2 + 0.5).clamp(0, 1)
    assert 0.05 < float(((ref > 0) & (ref < 1)).float().mean())  # not all clamped
    assert float((img.reshape(ref.shape) - ref).abs().max()) < 1e-4


def test_weights_that_disagree_with_the_config_are_refused_in_one_line(tmp_path, capsys):
    run = _make_run(tmp_path, "mismatch")
    other = build_network({**TINY, "model_channels": 64})
    save_tensors(run / "model.safetensors", other.state_dict())
    rc = cli_main(["export", "diffusers", "--run", str(run), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "shape" in err
