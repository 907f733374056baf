"""Training defaults (issue 16): derived from the data, not per data set; the EDM objective by default; the time
estimate before a long run; --log tensorboard refused in one line when tensorboard is missing."""

import json
import math

import pytest

from scorekit import training
from scorekit.run_config import DEFAULT_TRAINING, default_config, ema_snapshot_interval, validate_config


def _cli(*argv):
    from scorekit.cli import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("process", ["ve", "vp", "subvp"])
def test_continuous_processes_default_to_the_edm_objective_scaled_to_the_data(process):
    for spec in ("moons", "rings", "digits"):
        cfg = default_config(spec, process)
        sd = cfg["denoiser"]["sigma_data"]
        assert cfg["objective"] == "edm" and cfg["denoiser"]["parameterization"] == "edm"
        assert cfg["objective_options"]["p_mean"] == pytest.approx(-1.2 + math.log(sd / 0.5), abs=1e-3)
        assert cfg["objective_options"]["p_std"] == 1.2
        validate_config(cfg)
    assert default_config("moons", "ddpm")["objective"] == "ddpm_simple"
    assert default_config("moons", "ddpm")["objective_options"] == {}


def test_defaults_are_power_ema_with_snapshots_for_any_run_length():
    assert DEFAULT_TRAINING["ema_decay"] is None and DEFAULT_TRAINING["ema_sigma_rel"] == 0.10
    assert ema_snapshot_interval({"steps": 2000}) == 62
    assert ema_snapshot_interval({"steps": 10}) == 1
    assert ema_snapshot_interval({"steps": 2000, "ema_snapshot_every": 0}) == 0
    with pytest.raises(ValueError, match="ema_snapshot_every"):
        validate_config({**default_config("moons"), "training": {"ema_snapshot_every": -1}})


def test_another_objective_drops_the_default_objectives_options(tmp_path, capsys):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"network": {"hidden": 16, "depth": 1, "emb_dim": 8}}))
    run = tmp_path / "r"
    common = ["--data", "moons", "--steps", "2", "--config", cfg_file, "--no-progress"]
    assert _cli("train", *common, "--objective", "dsm", "--out", run) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["objective"] == "dsm" and cfg["objective_options"] == {}
    cfg_file.write_text(json.dumps({"objective": "ncsn", "network": {"hidden": 16, "depth": 1, "emb_dim": 8}}))
    assert _cli("train", *common, "--out", tmp_path / "r2") == 0
    assert json.loads((tmp_path / "r2" / "config.json").read_text())["objective_options"] == {}


def test_a_long_run_prints_its_estimated_time_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training, "LONG_RUN_S", 0.0)
    cfg = default_config("moons", steps=12, checkpoint_every=0)
    cfg["network"].update({"hidden": 16, "depth": 1, "emb_dim": 8})
    training.train(cfg, tmp_path / "r", progress=False)
    err = capsys.readouterr().err
    assert "min for 2 more of 12 steps on this device (cpu" in err and err.startswith("≈")
    monkeypatch.setattr(training, "LONG_RUN_S", 1e9)  # short runs print nothing
    training.train(cfg, tmp_path / "r2", progress=False)
    assert "≈" not in capsys.readouterr().err


def test_log_tensorboard(tmp_path, capsys):
    try:
        import torch.utils.tensorboard  # noqa: F401

        have = True
    except ImportError:
        have = False
    args = [
        "train",
        "--data",
        "moons",
        "--steps",
        "2",
        "--out",
        tmp_path / "r",
        "--log",
        "tensorboard",
        "--no-progress",
    ]
    if have:
        assert _cli(*args) == 0 and any((tmp_path / "r" / "tensorboard").iterdir())
    else:
        assert _cli(*args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "tensorboard" in err
        assert not (tmp_path / "r" / "model.safetensors").exists()


def test_default_networks_are_sized_for_the_data_and_the_device():
    from scorekit.data import load_data
    from scorekit.run_config import default_network

    digits = load_data("digits")
    big, cpu = default_network(digits), default_network(digits, device="cpu")
    assert cpu["model_channels"] == big["model_channels"] // 2 and cpu["num_res_blocks"] == 1
    assert default_config("digits", device="cpu")["network"] == cpu
    assert default_network(load_data("moons"))["hidden"] == 256

    class Wide:
        kind, shape, num_classes = "vector", (300,), 0

    assert default_network(Wide())["hidden"] == 640


def test_vector_data_default_to_a_longer_faster_run_with_fourier_input_features():
    """The toy/mixture defaults measured crisp in benchmarks/results/default_training.md: 8000 steps at lr 1e-3 and an
    MLP with 64 Fourier features of its input; images keep the general defaults; explicit flags still win."""
    from scorekit.models import build_network
    from scorekit.run_config import VECTOR_TRAINING

    vec = default_config("rings")
    assert vec["network"]["input_fourier"] == 64 and vec["network"]["input_fourier_scale"] == 1.0
    assert {k: vec["training"][k] for k in VECTOR_TRAINING} == VECTOR_TRAINING == {"steps": 8000, "lr": 1e-3}
    assert build_network(vec["network"]).to_config()["input_fourier"] == 64  # the features are built and recorded
    img = default_config("digits")
    assert img["training"]["steps"] == DEFAULT_TRAINING["steps"] and img["training"]["lr"] == DEFAULT_TRAINING["lr"]
    assert default_config("rings", steps=10, lr=5e-4)["training"]["steps"] == 10
    assert default_config("rings", steps=10, lr=5e-4)["training"]["lr"] == 5e-4


def test_every_default_but_the_run_length_samples_a_mixture_near_the_floor(tmp_path):
    """The issue's bar (sliced W2 of Heun-40 samples within 1.3× of the two-sample floor) on the 8-mode 2-D mixture
    of benchmarks/default_training.py, with every default except the run length: 2000 steps instead of the vector
    default 8000, to fit the suite (the full default run: 0.98× in default_training.md; 2000 steps measured 1.18×)."""
    import torch

    from scorekit.analytic import GaussianMixture
    from scorekit.checkpoint import load_denoiser
    from scorekit.data import DataTransform
    from scorekit.metrics import sliced_wasserstein
    from scorekit.sampling import generate
    from scorekit.training import train

    k = 8
    means = [[4 * math.cos(2 * math.pi * i / k), 4 * math.sin(2 * math.pi * i / k)] for i in range(k)]
    gmm = GaussianMixture([1 / k] * k, means, [[0.03, 0.03]] * k)
    spec = tmp_path / "gmm.json"
    spec.write_text(json.dumps(gmm.to_spec()))
    cfg = default_config(f"gmm:{spec}", steps=2000, checkpoint_every=0)
    assert cfg["network"]["input_fourier"] == 64 and cfg["training"]["lr"] == 1e-3  # the vector defaults are in
    train(cfg, tmp_path / "run", progress=False)
    transform = DataTransform.from_config(cfg["data"]["transform"])
    den = load_denoiser(tmp_path / "run")
    x = transform.to_user(generate(den, "heun", 40, 2000, seed=0, batch_size=2000).samples).double()
    dist, floor = [], []
    for r in range(3):
        ref = gmm.sample(2000, torch.Generator().manual_seed(100 + r))[0]
        ref2 = gmm.sample(2000, torch.Generator().manual_seed(200 + r))[0]
        dist.append(sliced_wasserstein(x, ref, generator=torch.Generator().manual_seed(r)))
        floor.append(sliced_wasserstein(ref2, ref, generator=torch.Generator().manual_seed(r)))
    assert sum(dist) / sum(floor) <= 1.3, (dist, floor)
