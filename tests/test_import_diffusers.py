"""diffusers UNet2DModel pipelines: the imported network reproduces diffusers' outputs, scorekit's ddim and dpmpp_2m
reproduce diffusers' DDIMScheduler and DPMSolverMultistepScheduler loops, bad folders are refused in one line,
and export writes a folder diffusers loads back.

Fixtures (tests/fixtures/diffusers) were written by diffusers itself (scripts/make_diffusers_fixtures.py); only
the round trip through diffusers' from_pretrained needs diffusers installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scorekit.checkpoint import CheckpointError, load_denoiser, read_config
from scorekit.cli import main as cli_main
from scorekit.importers import export_diffusers, import_diffusers
from scorekit.importers.diffusers import diffusers_timesteps, scheduler_process_and_denoiser, timestep_sigmas
from scorekit.samplers.ddpm import sample_ddim
from scorekit.samplers.multistep import sample_dpmpp_2m

FIX = Path(__file__).resolve().parent / "fixtures" / "diffusers"
NAMES = ["uncond_linear", "classcond_linear", "vpred_scaled_linear", "cosine", "sample_trained_betas"]
EXPECTED = {  # (process schedule, parameterization)
    "uncond_linear": ("linear", "eps"),
    "classcond_linear": ("linear", "eps"),
    "vpred_scaled_linear": ("scaled_linear", "v"),
    "cosine": ("cosine", "eps"),
    "sample_trained_betas": ("explicit", "x0"),
}


def _ref(name: str) -> dict:
    return load_file(str(FIX / f"{name}_reference.safetensors"))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("diffusers_runs")
    return {name: import_diffusers(FIX / name, base / name) for name in NAMES}


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(FIX / name, dst)
    return dst


def _weights(folder: Path) -> Path:
    return next(folder.rglob("diffusion_pytorch_model.safetensors"))


def _unet_config(folder: Path) -> Path:
    return _weights(folder).parent / "config.json"


@pytest.mark.parametrize("name", NAMES)
def test_imported_run_is_an_ordinary_run(runs, name):
    cfg = read_config(runs[name])
    for key in ("data", "process", "network", "denoiser"):
        assert key in cfg
    assert cfg["network"]["arch"] == "diffusers_unet2d"
    assert cfg["process"]["name"] == "ddpm"
    schedule, param = EXPECTED[name]
    assert cfg["process"].get("schedule", "explicit") == schedule
    assert cfg["denoiser"]["parameterization"] == param and cfg["denoiser"]["conditioning"] == "index"
    assert cfg["data"]["shape"] == [3, 8, 8]
    assert cfg["data"]["num_classes"] == (3 if name == "classcond_linear" else 0)
    assert (runs[name] / "model.safetensors").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_network_reproduces_diffusers(runs, name):
    ref = _ref(name)
    den = load_denoiser(runs[name])
    with torch.no_grad():
        out = den.net(ref["net_x"], ref["net_t"], ref.get("net_labels"))
    assert _rel(out, ref["net_out"]) <= 1e-5
    # through the denoiser's preconditioning: x_t = s·x_σ at σ(t), index conditioning gives back t (also between
    # training steps: net_t holds a fractional step)
    proc = den.process
    sigma = proc.sigma((ref["net_t"].double() + 1) / proc.num_steps)
    assert torch.allclose(proc.index_of_sigma(sigma), ref["net_t"].double(), atol=1e-6)
    s = torch.rsqrt(1 + sigma**2).float()
    with torch.no_grad():
        out = den.network_output(ref["net_x"] / s[:, None, None, None], sigma.float(), ref.get("net_labels"))
    assert _rel(out, ref["net_out"]) <= 1e-5


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sampler", ["ddim", "dpm"])
def test_samplers_match_diffusers_schedulers(runs, name, sampler):
    """diffusers timestep t ↔ σ_t = √((1 − ᾱ_t)/ᾱ_t); x_T = noise is x_σ = x_T/√ᾱ_T in σ-space; the result is x_0."""
    ref = _ref(name)
    den = load_denoiser(runs[name])
    sigmas = timestep_sigmas(den.process, ref[f"{sampler}_timesteps"].tolist())
    x = ref["noise"] * torch.sqrt(1 + sigmas[0] ** 2).float()
    fn = sample_ddim if sampler == "ddim" else sample_dpmpp_2m
    out = fn(den, x, sigmas.float(), class_labels=ref.get("labels"))
    target = ref[f"{sampler}_out"]
    assert out.nfe == len(sigmas) - 1
    assert float((out.x - target).abs().max()) <= 1e-4 * max(1.0, float(target.abs().max()))
    assert _rel(out.x, target) <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_diffusers_timesteps_reproduces_set_timesteps(name):
    ref = _ref(name)
    sched = json.loads(next((FIX / name).rglob("scheduler_config.json")).read_text())
    assert diffusers_timesteps(sched, 5, "ddim") == ref["ddim_timesteps"].tolist()
    # DPMSolverMultistepScheduler.from_config keeps only non-default fields: its own default spacing is linspace
    dpm = diffusers_timesteps({**sched, "timestep_spacing": "linspace"}, 5, "dpmsolver")
    assert dpm == ref["dpm_timesteps"].tolist()


def test_trailing_and_leading_spacings():
    sched = {"num_train_timesteps": 1000, "timestep_spacing": "trailing"}
    assert diffusers_timesteps(sched, 4, "ddim") == [999, 749, 499, 249]
    assert diffusers_timesteps(sched, 4, "dpmsolver") == [999, 749, 499, 249]
    sched = {"num_train_timesteps": 1000, "timestep_spacing": "leading", "steps_offset": 1}
    assert diffusers_timesteps(sched, 4, "ddim") == [751, 501, 251, 1]
    assert diffusers_timesteps(sched, 4, "dpmsolver") == [801, 601, 401, 201]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"beta_schedule": "sigmoid"}, "beta_schedule"),
        ({"prediction_type": "flow"}, "prediction_type"),
        ({"_class_name": "ScoreSdeVeScheduler"}, "ScoreSdeVeScheduler"),
        ({"rescale_betas_zero_snr": True}, "rescale_betas_zero_snr"),
        ({"trained_betas": [0.1, 0.2]}, "trained_betas"),
    ],
)
def test_unsupported_scheduler_settings_are_refused(change, words):
    sched = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, **change}
    with pytest.raises(ValueError, match=words) as e:
        scheduler_process_and_denoiser(sched, {"in_channels": 3, "out_channels": 3})
    assert "\n" not in str(e.value)


def test_clip_sample_is_kept_but_not_part_of_the_denoiser(runs):
    cfg = read_config(runs["uncond_linear"])
    assert cfg["diffusers"]["scheduler_config"]["clip_sample"] is True
    assert "clip" not in json.dumps(cfg["denoiser"])


def _cli_error(argv, capsys) -> str:
    rc = cli_main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err and "\n" not in err and "Traceback" not in err
    return err


def test_truncated_weights_are_refused(tmp_path, capsys):
    src = _copy("uncond_linear", tmp_path)
    w = _weights(src)
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        import_diffusers(src, tmp_path / "run")
    err = _cli_error(["import", "diffusers", str(src), "--out", str(tmp_path / "run2")], capsys)
    assert "truncated" in err
    assert not (tmp_path / "run2" / "config.json").exists()


def test_bit_flipped_header_is_refused(tmp_path, capsys):
    src = _copy("uncond_linear", tmp_path)
    w = _weights(src)
    data = bytearray(w.read_bytes())
    data[20] ^= 0x40  # inside the JSON header
    w.write_bytes(bytes(data))
    _cli_error(["import", "diffusers", str(src), "--out", str(tmp_path / "run")], capsys)


def test_damaged_tensor_data_is_refused(tmp_path):
    """diffusers' files carry no checksum; a flip that makes a weight non-finite is still caught."""
    src = _copy("uncond_linear", tmp_path)
    w = _weights(src)
    data = bytearray(w.read_bytes())
    data[-4:] = b"\xff\xff\xff\x7f"  # last float32 of the data section → NaN
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="non-finite"):
        import_diffusers(src, tmp_path / "run")


@pytest.mark.parametrize("target", ["unet", "scheduler", "index"])
def test_corrupted_configs_are_refused(tmp_path, capsys, target):
    src = _copy("cosine", tmp_path)
    path = {
        "unet": src / "unet" / "config.json",
        "scheduler": src / "scheduler" / "scheduler_config.json",
        "index": src / "model_index.json",
    }[target]
    path.write_text(path.read_text()[:-7])
    err = _cli_error(["import", "diffusers", str(src), "--out", str(tmp_path / "run")], capsys)
    assert "not valid JSON" in err


def test_unknown_block_type_is_refused(tmp_path, capsys):
    src = _copy("uncond_linear", tmp_path)
    cfg_path = _unet_config(src)
    cfg = json.loads(cfg_path.read_text())
    cfg["down_block_types"] = ["DownBlock2D", "CrossAttnDownBlock2D"]
    cfg_path.write_text(json.dumps(cfg))
    err = _cli_error(["import", "diffusers", str(src), "--out", str(tmp_path / "run")], capsys)
    assert "unsupported UNet2DModel down block 'CrossAttnDownBlock2D'" in err


def test_weights_config_mismatch_and_pickles_are_refused(tmp_path):
    src = _copy("uncond_linear", tmp_path)
    cfg_path = _unet_config(src)
    cfg = json.loads(cfg_path.read_text())
    cfg["block_out_channels"] = [8, 24]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="has shape"):
        import_diffusers(src, tmp_path / "run")
    w = _weights(src)
    w.rename(w.with_suffix(".bin"))
    with pytest.raises(ValueError, match="only safetensors"):
        import_diffusers(src, tmp_path / "run2")


def test_bare_unet_folder_and_explicit_scheduler_config(tmp_path):
    # the class-conditional fixture is a bare UNet folder with scheduler_config.json beside it
    run = import_diffusers(FIX / "cosine" / "unet", tmp_path / "a")  # ../scheduler/ is found
    assert read_config(run)["process"]["schedule"] == "cosine"
    sched = FIX / "vpred_scaled_linear" / "scheduler" / "scheduler_config.json"
    run = import_diffusers(FIX / "cosine" / "unet", tmp_path / "b", scheduler_config=sched)
    assert read_config(run)["denoiser"]["parameterization"] == "v"


def test_cli_import_then_sample(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(["import", "diffusers", str(FIX / "classcond_linear"), "--out", str(run)]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["network"] == "diffusers_unet2d" and info["process"] == "ddpm"
    out = tmp_path / "x.npz"
    argv = ["sample", "--run", str(run), "--sampler", "ddim", "--steps", "5", "--num", "4", "--out", str(out)]
    assert cli_main(argv) == 0, capsys.readouterr().err
    with np.load(out) as z:
        assert z["samples"].shape == (4, 3, 8, 8) and np.isfinite(z["samples"]).all()
        assert float(z["nfe"]) == 5.0
        assert z["labels"].shape == (4,)


def test_export_then_reimport_is_identical(runs, tmp_path, capsys):
    for name in ("uncond_linear", "sample_trained_betas"):
        exported = tmp_path / f"{name}_pipe"
        assert cli_main(["export", "diffusers", "--run", str(runs[name]), "--out", str(exported)]) == 0
        assert (exported / "model_index.json").is_file()
        back = import_diffusers(exported, tmp_path / f"{name}_back")
        a, b = read_config(runs[name]), read_config(back)
        for key in ("process", "network", "denoiser", "data"):
            assert a[key] == b[key]
        wa, wb = load_file(str(runs[name] / "model.safetensors")), load_file(str(back / "model.safetensors"))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    capsys.readouterr()
    taken = tmp_path / "uncond_linear_pipe"
    _cli_error(["export", "diffusers", "--run", str(runs["cosine"]), "--out", str(taken)], capsys)


def test_export_refuses_other_networks(tmp_path, capsys):
    run = tmp_path / "mlp_run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"kind": "score_model", "network": {"arch": "mlp"}}))
    err = _cli_error(["export", "diffusers", "--run", str(run), "--out", str(tmp_path / "o")], capsys)
    assert "diffusers_unet2d" in err


@pytest.mark.parametrize("name", ["classcond_linear", "vpred_scaled_linear", "sample_trained_betas"])
def test_export_loads_in_diffusers(runs, tmp_path, name):
    diffusers = pytest.importorskip("diffusers")
    exported = export_diffusers(runs[name], tmp_path / "pipe")
    unet = diffusers.UNet2DModel.from_pretrained(exported / "unet").eval()
    ref = _ref(name)
    with torch.no_grad():
        out = unet(ref["net_x"], ref["net_t"], class_labels=ref.get("net_labels")).sample
    assert _rel(out, ref["net_out"]) <= 1e-6  # the same weights in diffusers; bit-equal only on the fixture's CPU
    index = json.loads((exported / "model_index.json").read_text())
    sched_cls = getattr(diffusers, index["scheduler"][1])
    sched = sched_cls.from_pretrained(exported / "scheduler")
    orig = json.loads(next((FIX / name).rglob("scheduler_config.json")).read_text())
    sched_orig = getattr(diffusers, orig["_class_name"]).from_config(orig)
    assert torch.equal(sched.alphas_cumprod, sched_orig.alphas_cumprod)
    assert sched.config.prediction_type == orig["prediction_type"]
    pipe = diffusers.DiffusionPipeline.from_pretrained(exported)
    assert isinstance(pipe.unet, diffusers.UNet2DModel)


# --- ScoreSdeVePipeline: NCSN++ with FIR skip blocks, σ-conditioned, read as the score --------------------------
def test_score_sde_ve_network_and_denoiser(tmp_path):
    run = import_diffusers(FIX / "score_sde_ve", tmp_path / "ve")
    cfg = read_config(run)
    assert cfg["process"] == {"name": "ve", "sigma_min": 0.01, "sigma_max": 50.0, "t_min": 1e-5}
    assert (cfg["denoiser"]["parameterization"], cfg["denoiser"]["conditioning"]) == ("score", "sigma")
    assert cfg["data"]["transform"]["shift"] == 0.0 and cfg["data"]["transform"]["scale"] == 1.0
    ref = _ref("score_sde_ve")
    den = load_denoiser(run)
    with torch.no_grad():
        assert _rel(den.net(ref["net_x"], ref["net_t"]), ref["net_out"]) <= 1e-5
        d = den(ref["net_x"], ref["net_t"])
    expected = ref["net_x"] + ref["net_t"][:, None, None, None] ** 2 * ref["net_out"]  # D = x + σ²·score
    assert _rel(d, expected) <= 1e-5


def test_score_sde_ve_predictor_step_matches_step_pred(tmp_path):
    """ScoreSdeVeScheduler.step_pred's mean: x + (σ_i² − σ_{i−1}²)·score(x, σ), the score from scorekit's D."""
    den = load_denoiser(import_diffusers(FIX / "score_sde_ve", tmp_path / "ve"))
    ref = _ref("score_sde_ve")
    x, sigma = ref["pred_x"], ref["pred_sigma"]
    with torch.no_grad():
        score = den.score(x, sigma.expand(x.shape[0]))
    mean = x + (ref["pred_sigma_model"] ** 2 - ref["pred_sigma_next"] ** 2) * score
    assert _rel(mean, ref["pred_mean"]) <= 1e-5


def test_score_sde_ve_samples_from_the_cli(tmp_path, capsys):
    run = tmp_path / "ve"
    assert cli_main(["import", "diffusers", str(FIX / "score_sde_ve"), "--out", str(run)]) == 0
    out = tmp_path / "x.npz"
    argv = [
        "sample",
        "--run",
        str(run),
        "--sampler",
        "reverse_diffusion",
        "--steps",
        "4",
        "--num",
        "2",
        "--out",
        str(out),
    ]
    assert cli_main(argv) == 0, capsys.readouterr().err
    with np.load(out) as z:
        assert z["samples"].shape == (2, 3, 8, 8) and np.isfinite(z["samples"]).all()


def test_fourier_unet_with_a_discrete_scheduler_is_refused():
    with pytest.raises(ValueError, match="ScoreSdeVeScheduler"):
        scheduler_process_and_denoiser({"_class_name": "DDPMScheduler"}, {"time_embedding_type": "fourier"})
    with pytest.raises(ValueError, match="fourier"):
        scheduler_process_and_denoiser({"_class_name": "ScoreSdeVeScheduler"}, {"time_embedding_type": "positional"})


def test_score_sde_ve_export_loads_in_diffusers(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    run = import_diffusers(FIX / "score_sde_ve", tmp_path / "ve")
    exported = export_diffusers(run, tmp_path / "pipe")
    unet = diffusers.UNet2DModel.from_pretrained(exported / "unet").eval()
    ref = _ref("score_sde_ve")
    with torch.no_grad():
        assert _rel(unet(ref["net_x"], ref["net_t"]).sample, ref["net_out"]) <= 1e-6
    sched = diffusers.ScoreSdeVeScheduler.from_pretrained(exported / "scheduler")
    assert sched.config.sigma_max == 50.0 and sched.config.sigma_min == 0.01


def test_attention_skip_blocks_match_diffusers():
    """AttnSkipDownBlock2D / AttnSkipUpBlock2D need ≥ 32 channels, too large to store: compared live."""
    diffusers = pytest.importorskip("diffusers")
    from scorekit.importers.diffusers import unet_network_config
    from scorekit.models.registry import build_network

    torch.manual_seed(0)
    ref = diffusers.UNet2DModel(
        sample_size=8,
        block_out_channels=(32, 32),
        layers_per_block=1,
        norm_num_groups=None,
        attention_head_dim=None,
        down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"),
        time_embedding_type="fourier",
        mid_block_scale_factor=2**0.5,
        norm_eps=1e-6,
        freq_shift=1,
    ).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    net = build_network(unet_network_config(dict(ref.config))).eval()
    net.load_state_dict(ref.state_dict(), strict=True)
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.05, 20.0])
    with torch.no_grad():
        assert _rel(net(x, sigma), ref(x, sigma).sample) <= 1e-6
