"""Published models: our NCSN++/DDPM++ and ADM networks load the reference state dicts and compute the
reference numbers; imported runs work with samplers, DLG and guidance; bad checkpoints are refused.

Fixtures (../shared/fixtures/pretrained) were produced by running score_sde_pytorch and guided-diffusion.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scorekit import importers
from scorekit.checkpoint import CheckpointError, load_denoiser, load_network, read_config
from scorekit.cli import main as cli_main
from scorekit.models._sde_layers import downsample_2d, upsample_2d
from scorekit.models.ncsnpp import NCSNpp
from scorekit.models.registry import build_network

FIX = Path(os.environ.get("SCOREKIT_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
PRE = FIX / "pretrained"
pytestmark = pytest.mark.skipif(not PRE.is_dir(), reason=f"fixtures not found at {PRE}")

SDE_TINY = {"ve": "ncsnpp_ve_tiny", "vp": "ddpmpp_vp_tiny"}


def _manifest(name: str) -> dict:
    return json.loads((PRE / name).read_text()) if PRE.is_dir() else {}


NCSNPP_MANIFEST = _manifest("ncsnpp_manifests.json")
ADM_MANIFEST = _manifest("adm_manifests.json")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every tiny fixture imported once through the public import path."""
    root = tmp_path_factory.mktemp("imported")
    out = {}
    for key, stem in SDE_TINY.items():
        out[key] = importers.import_score_sde(PRE / f"{stem}_checkpoint.pth", str(PRE / f"{stem}.json"), root / key)
    out["adm"] = importers.import_adm(
        PRE / "adm_unet_tiny.pt",
        str(PRE / "adm_tiny.json"),
        root / "adm",
        classifier=PRE / "adm_classifier_tiny.pt",
        classifier_config=str(PRE / "adm_tiny.json"),
    )
    return out


# --- reference outputs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["ve", "vp"])
@pytest.mark.parametrize("ema", [False, True])
def test_score_sde_tiny_reproduces_reference(runs, key, ema):
    io = load_file(str(PRE / f"{SDE_TINY[key]}_io.safetensors"))
    net = load_network(runs[key], ema=ema)
    with torch.no_grad():
        out = net(io["x"], io["labels"])
    ref = io["output_ema" if ema else "output_model"]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # the EMA weights really are different weights
    other = io["output_model" if ema else "output_ema"]
    assert (out - other).abs().max() > 1e-3


def test_adm_tiny_reproduces_reference(runs):
    io = load_file(str(PRE / "adm_tiny_io.safetensors"))
    unet = load_network(runs["adm"])
    clf = load_network(runs["adm"] / "classifier")
    with torch.no_grad():
        torch.testing.assert_close(unet(io["x"], io["t"], io["y"]), io["unet_output"], atol=1e-5, rtol=0)
        torch.testing.assert_close(clf(io["x"], io["t"]), io["classifier_logits"], atol=1e-5, rtol=0)


def test_imported_networks_run_in_float64(runs):
    io = load_file(str(PRE / f"{SDE_TINY['ve']}_io.safetensors"))
    net = load_network(runs["ve"]).double()
    with torch.no_grad():
        out = net(io["x"].double(), io["labels"].double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, io["output_ema"].double(), atol=1e-5, rtol=0)
    io = load_file(str(PRE / "adm_tiny_io.safetensors"))
    unet = load_network(runs["adm"]).double()
    with torch.no_grad():
        out = unet(io["x"].double(), io["t"], io["y"])
    torch.testing.assert_close(out, io["unet_output"].double(), atol=1e-5, rtol=0)


def test_cli_import_matches_library_import(runs, tmp_path, capsys):
    stem = SDE_TINY["ve"]
    rc = cli_main(
        [
            "import",
            "score-sde",
            str(PRE / f"{stem}_checkpoint.pth"),
            "--config",
            str(PRE / f"{stem}.json"),
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["network"] == "ncsnpp"
    a, b = load_file(str(tmp_path / "cli" / "ema.safetensors")), load_file(str(runs["ve"] / "ema.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the denoiser the run config describes computes what the reference score function computes ----------
def test_ve_denoiser_is_reference_score(runs):
    io = load_file(str(PRE / f"{SDE_TINY['ve']}_io.safetensors"))
    den = load_denoiser(runs["ve"])  # EMA by default
    sigma = io["labels"]
    with torch.no_grad():
        d = den(io["x"], sigma)
    # score_sde VE: score = model(x, σ) (already divided by σ); D = x + σ²·score
    expected = io["x"] + sigma[:, None, None, None] ** 2 * io["output_ema"]
    torch.testing.assert_close(d, expected, atol=1e-4 * 30**2, rtol=1e-5)
    cfg = read_config(runs["ve"])
    assert cfg["data"]["transform"] == {"kind": "image", "shift": 0.0, "scale": 1.0}  # data.centered=False: [0, 1]


def test_vp_denoiser_is_reference_eps(runs):
    io = load_file(str(PRE / f"{SDE_TINY['vp']}_io.safetensors"))
    den = load_denoiser(runs["vp"])
    proc = den.process
    t = io["labels"].double() / 999.0
    sigma, s = proc.sigma(t), proc.scale(t)
    x_sigma = io["x"].double() / s[:, None, None, None]  # network input is the process-space x = s·x_σ
    with torch.no_grad():
        d = den(x_sigma.float(), sigma.float())
    # score_sde VP: score_process = −model(x, 999t)/std, std = s·σ  →  D = x_σ − σ·model
    expected = x_sigma - sigma[:, None, None, None] * io["output_ema"].double()
    torch.testing.assert_close(d.double(), expected, atol=2e-4 * float(sigma.max()), rtol=1e-4)
    assert read_config(runs["vp"])["data"]["transform"] == {"kind": "image", "shift": 0.5, "scale": 0.5}


def test_adm_denoiser_is_reference_eps(runs):
    io = load_file(str(PRE / "adm_tiny_io.safetensors"))
    den = load_denoiser(runs["adm"])
    proc = den.process
    i = io["t"]
    sigma = proc.sigmas[i]
    abar = proc.alphas_cumprod[i]
    x_sigma = io["x"].double() / abar.sqrt()[:, None, None, None]
    with torch.no_grad():
        d = den(x_sigma.float(), sigma.float(), io["y"])
    eps = io["unet_output"][:, :3].double()  # learned σ: first C channels are ε
    expected = x_sigma - sigma[:, None, None, None] * eps
    scale = float(expected.abs().max())
    torch.testing.assert_close(d.double(), expected, atol=1e-4 * scale, rtol=1e-4)
    assert proc.index_of_sigma(sigma).tolist() == pytest.approx(i.double().tolist(), abs=1e-6)


# --- released configurations ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(NCSNPP_MANIFEST))
def test_ncsnpp_released_config_matches_manifest(name):
    entry = NCSNPP_MANIFEST[name]
    net_cfg = importers.ncsnpp_network_config(importers.resolve_score_sde_config(name))
    # built-in settings agree with the released config, field by field
    for key, value in net_cfg.items():
        if key in entry["config"]:
            assert value == entry["config"][key], key
    assert net_cfg["centered"] == entry["data"]["centered"] and net_cfg["image_size"] == entry["data"]["image_size"]
    with torch.device("meta"):
        net = build_network(net_cfg)
    got = [[k, list(v.shape)] for k, v in net.state_dict().items()]
    assert got == entry["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == entry["params"]


@pytest.mark.parametrize("name", sorted(ADM_MANIFEST))
def test_adm_released_config_matches_manifest(name):
    entry = ADM_MANIFEST[name]
    role = "classifier" if "classifier" in name else "model"
    builtin = importers.resolve_adm_config(name, role)
    from_manifest = importers.resolve_adm_config({"flags": entry["flags"]}, role)
    to_cfg = importers.adm_classifier_network_config if role == "classifier" else importers.adm_unet_network_config
    net_cfg = to_cfg(builtin)
    assert net_cfg == to_cfg(from_manifest) == to_cfg({"args": entry["kwargs"]})
    with torch.device("meta"):
        net = build_network(net_cfg)
    got = [[k, list(v.shape)] for k, v in net.state_dict().items()]
    assert got == entry["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == entry["params"]


def test_adm_released_processes():
    p64 = importers._adm_process(importers.resolve_adm_config("64x64_diffusion"))
    p128 = importers._adm_process(importers.resolve_adm_config("adm_imagenet128_cond"))
    assert (p64["schedule"], p128["schedule"]) == ("cosine", "linear")
    assert p64["num_steps"] == p128["num_steps"] == 1000


# --- imported runs sample end to end ---------------------------------------------------------------------
@pytest.mark.parametrize("key", ["ve", "vp", "adm"])
def test_imported_runs_sample_with_heun(runs, key):
    from scorekit.sampling import generate

    den = load_denoiser(runs[key])
    labels = torch.tensor([3, 7]) if key == "adm" else None
    a = generate(den, "heun", 3, 2, seed=5, batch_size=2, class_labels=labels)
    b = generate(den, "heun", 3, 2, seed=5, batch_size=2, class_labels=labels)
    assert a.samples.shape == (2, 3, 16, 16) and torch.isfinite(a.samples).all()
    assert torch.equal(a.samples, b.samples)  # reproducible from the seed
    assert a.nfe == 5  # Heun: 2 evaluations per step, one Euler step to σ = 0
    c = generate(den, "heun", 3, 2, seed=6, batch_size=2, class_labels=labels)
    assert not torch.equal(a.samples, c.samples)


@pytest.mark.parametrize("key", ["ve", "vp", "adm"])
def test_every_sampler_runs_on_imported_runs(runs, key):
    from scorekit.samplers import SAMPLERS, get_sampler
    from scorekit.sampling import generate

    den = load_denoiser(runs[key])
    labels = torch.tensor([1, 8]) if key == "adm" else None
    for name in SAMPLERS:
        if name == "rk45" and key != "ve":  # adaptive: slow on CPU, one process is enough
            continue
        res = generate(den, name, 2, 2, seed=1, batch_size=2, class_labels=labels)
        assert res.samples.shape == (2, 3, 16, 16) and torch.isfinite(res.samples).all(), name
        nfe = get_sampler(name).nfe
        if nfe is not None:
            assert res.nfe == nfe(2), name


def test_cli_sample_imported_run(runs, tmp_path):
    out = tmp_path / "s.npz"
    rc = cli_main(
        [
            "sample",
            "--run",
            str(runs["ve"]),
            "--sampler",
            "heun",
            "--steps",
            "2",
            "--num",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    z = np.load(out)
    assert z["samples"].shape == (2, 3, 16, 16)
    assert z["samples"].min() >= 0 and z["samples"].max() <= 1  # user range of images


class _GaussianMoments:
    """p(σ_k | x) for x = x0 + σ_k·n with x0 ~ N(0, v·I): the exact posterior under a Gaussian data model."""

    def __init__(self, levels, var=0.25):
        self.levels, self.var = levels, var

    @property
    def num_levels(self):
        return self.levels.numel()

    def to(self, device):
        self.levels = self.levels.to(device)
        return self

    def log_probs(self, x):
        d = x[0].numel()
        tot = self.levels.double() ** 2 + self.var
        r2 = x.double().flatten(1).pow(2).sum(1, keepdim=True)
        return torch.log_softmax(-0.5 * r2 / tot - 0.5 * d * tot.log(), dim=1)


@pytest.mark.parametrize("key", ["ve", "vp", "adm"])
def test_imported_runs_sample_with_dlg(runs, key):
    dmcmc = pytest.importorskip("scorekit.dmcmc")
    den = load_denoiser(runs[key])
    levels = dmcmc.make_levels(max(den.process.sigma_min, 0.01), den.process.sigma_max, 50)
    cfg = dmcmc.DLGConfig(chains=2, skip=1, burn_in=1, init_steps=2, finisher_steps=2, eta=1e-4)
    labels = torch.tensor([0, 3, 6, 9]) if key == "adm" else None
    res = [
        dmcmc.sample_dlg(
            den, _GaussianMoments(levels), 4, cfg, generator=torch.Generator().manual_seed(1), class_labels=labels
        )
        for _ in range(2)
    ]
    assert res[0].samples.shape == (4, 3, 16, 16) and torch.isfinite(res[0].samples).all()
    assert torch.equal(res[0].samples, res[1].samples)
    assert res[0].nfe_per_sample > 0
    assert float(res[0].sigma_start.max()) <= den.process.sigma_max * (1 + 1e-6)


def test_imported_adm_classifier_guides(runs):
    guidance = pytest.importorskip("scorekit.guidance")
    clf = guidance.load_classifier(runs["adm"] / "classifier")
    io = load_file(str(PRE / "adm_tiny_io.safetensors"))
    den = load_denoiser(runs["adm"])
    proc = den.process
    sigma = proc.sigmas[io["t"]].float()
    x_sigma = io["x"] / proc.alphas_cumprod[io["t"]].sqrt().float()[:, None, None, None]
    with torch.no_grad():
        logits = clf.logits(x_sigma, sigma)
    # the classifier sees s·x_σ (the reference's x_t) and the step index, as guided-diffusion's cond_fn
    torch.testing.assert_close(logits, io["classifier_logits"], atol=1e-4, rtol=1e-4)


def test_imported_adm_guided_sampling_end_to_end(runs):
    guidance = pytest.importorskip("scorekit.guidance")
    from scorekit.sampling import generate

    den = load_denoiser(runs["adm"])
    clf = guidance.load_classifier(runs["adm"] / "classifier")
    labels = torch.tensor([2, 5])
    plain = generate(den, "heun", 3, 2, seed=3, batch_size=2, class_labels=labels)
    guided_den = guidance.ClassifierGuidedDenoiser(den, clf, 4.0, condition_base=True)
    guided = generate(guided_den, "heun", 3, 2, seed=3, batch_size=2, class_labels=labels)
    zero = generate(
        guidance.ClassifierGuidedDenoiser(den, clf, 0.0, condition_base=True),
        "heun",
        3,
        2,
        seed=3,
        batch_size=2,
        class_labels=labels,
    )
    assert torch.isfinite(guided.samples).all()
    assert torch.equal(zero.samples, plain.samples)  # scale 0 is the conditional model itself
    assert not torch.allclose(guided.samples, plain.samples)


# --- refusing bad input ----------------------------------------------------------------------------------
def _ve_ckpt():
    return torch.load(PRE / f"{SDE_TINY['ve']}_checkpoint.pth", weights_only=True)


def test_truncated_checkpoint_refused(tmp_path):
    src = PRE / f"{SDE_TINY['ve']}_checkpoint.pth"
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="weights-only torch checkpoint"):
        importers.import_score_sde(bad, str(PRE / f"{SDE_TINY['ve']}.json"), tmp_path / "run")
    assert not (tmp_path / "run" / "config.json").exists()


def test_pickled_code_refused(tmp_path):
    bad = tmp_path / "code.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "fn": shutil.copyfile}, bad)  # a function: not weights only
    with pytest.raises(CheckpointError, match="weights-only"):
        importers.import_score_sde(bad, str(PRE / f"{SDE_TINY['ve']}.json"), tmp_path / "run")


def test_shape_mismatch_names_key(tmp_path):
    ck = _ve_ckpt()
    ck["model"]["module.all_modules.3.weight"] = torch.zeros(16, 3, 1, 1)
    torch.save(ck, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match=r"'all_modules\.3\.weight' has shape \(16, 3, 1, 1\)"):
        importers.import_score_sde(tmp_path / "c.pth", str(PRE / f"{SDE_TINY['ve']}.json"), tmp_path / "run")


def test_missing_and_unexpected_keys_named(tmp_path):
    ck = _ve_ckpt()
    del ck["model"]["module.all_modules.5.Conv_1.bias"]
    torch.save(ck, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"missing weight 'all_modules\.5\.Conv_1\.bias'"):
        importers.import_score_sde(tmp_path / "a.pth", str(PRE / f"{SDE_TINY['ve']}.json"), tmp_path / "r1")
    sd = torch.load(PRE / "adm_unet_tiny.pt", weights_only=True)
    sd["extra.weight"] = torch.zeros(2)
    torch.save(sd, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"unexpected weight 'extra\.weight'"):
        importers.import_adm(tmp_path / "b.pt", str(PRE / "adm_tiny.json"), tmp_path / "r2")


def test_ema_mismatch_refused(tmp_path):
    ck = _ve_ckpt()
    ck["ema"]["shadow_params"] = ck["ema"]["shadow_params"][:-1]
    torch.save(ck, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match="155 shadow parameters"):
        importers.import_score_sde(tmp_path / "a.pth", str(PRE / f"{SDE_TINY['ve']}.json"), tmp_path / "r1")
    ck = _ve_ckpt()
    sp = ck["ema"]["shadow_params"]
    sp[0], sp[1] = sp[1], sp[0]  # order matters: parameter i of model.parameters()
    torch.save(ck, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match=r"EMA shadow parameter 0 \('all_modules\.1\.weight'\)"):
        importers.import_score_sde(tmp_path / "b.pth", str(PRE / f"{SDE_TINY['ve']}.json"), tmp_path / "r2")


def test_wrong_config_refused_cleanly_by_cli(tmp_path, capsys):
    rc = cli_main(
        [
            "import",
            "score-sde",
            str(PRE / f"{SDE_TINY['vp']}_checkpoint.pth"),
            "--config",
            "cifar10_ncsnpp_continuous",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "missing weight 'all_modules.0.W'" in err
    rc = cli_main(
        ["import", "adm", str(PRE / "adm_unet_tiny.pt"), "--config", "no_such_model", "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "unknown ADM config" in err
    rc = cli_main(
        [
            "import",
            "adm",
            str(PRE / "adm_unet_tiny.pt"),
            "--config",
            str(PRE / "adm_tiny.json"),
            "--classifier",
            str(PRE / "adm_classifier_tiny.pt"),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 2 and "--classifier-config" in capsys.readouterr().err


def test_existing_run_not_overwritten(runs, tmp_path):
    with pytest.raises(ValueError, match="already holds a run"):
        importers.import_score_sde(
            PRE / f"{SDE_TINY['ve']}_checkpoint.pth", str(PRE / f"{SDE_TINY['ve']}.json"), runs["ve"]
        )


# --- layer properties ------------------------------------------------------------------------------------
def test_fir_resampling_preserves_constants_and_mean():
    x = torch.full((1, 2, 8, 8), 3.0, dtype=torch.float64)
    up = upsample_2d(x, (1, 3, 3, 1))
    down = downsample_2d(x, (1, 3, 3, 1))
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 3.0))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 3.0))
    # a linear ramp stays a linear ramp (slope halves when upsampling, doubles when downsampling)
    ramp = torch.arange(8, dtype=torch.float64).expand(1, 1, 8, 8).contiguous()
    du = upsample_2d(ramp, (1, 3, 3, 1))[0, 0, 4, 2:-2].diff()
    dd = downsample_2d(ramp, (1, 3, 3, 1))[0, 0, 1, 1:-1].diff()
    torch.testing.assert_close(du, torch.full_like(du, 0.5))
    torch.testing.assert_close(dd, torch.full_like(dd, 2.0))


@pytest.mark.parametrize(
    "variant",
    [
        {"resblock_type": "ddpm", "fir": False, "progressive": "residual", "progressive_input": "input_skip"},
        {"resblock_type": "ddpm", "fir": True, "progressive": "output_skip", "progressive_input": "residual"},
        {
            "resblock_type": "biggan",
            "fir": True,
            "progressive": "residual",
            "progressive_input": "input_skip",
            "progressive_combine": "cat",
        },
        {
            "resblock_type": "biggan",
            "fir": False,
            "embedding_type": "positional",
            "scale_by_sigma": False,
            "skip_rescale": False,
            "centered": True,
            "conditional": False,
        },
    ],
)
def test_ncsnpp_variants_run_and_train(variant):
    torch.manual_seed(0)
    net = NCSNpp(image_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0, **variant)
    x = torch.randn(2, 3, 8, 8)
    c = (
        torch.tensor([0.5, 10.0])
        if variant.get("embedding_type", "fourier") == "fourier"
        else torch.tensor([3.0, 900.0])
    )
    out = net(x, c)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    unused = ("Dense_0",) if variant.get("conditional") is False else ()  # published layout keeps them, unused
    trained = [n for n, p in net.named_parameters() if p.requires_grad and not any(u in n for u in unused)]
    assert all(dict(net.named_parameters())[n].grad is not None for n in trained)


def test_bad_network_settings_refused():
    with pytest.raises(ValueError, match="unknown progressive"):
        NCSNpp(image_size=8, nf=8, ch_mult=(1, 2), progressive="sideways")
    with pytest.raises(ValueError, match="unknown score_sde config"):
        importers.resolve_score_sde_config("cifar10_nope")
    with pytest.raises(ValueError, match="does not say which SDE"):
        importers.resolve_score_sde_config({"config": {}, "data": {"image_size": 8, "num_channels": 3, "centered": 1}})


# --- GPU recipes: their CPU dry runs ---------------------------------------------------------------------
def _recipe(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_recipe_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dmcmc_recipe_dry_run(tmp_path):
    mod = _recipe("dmcmc_cifar10")
    assert mod.main(["--dry-run", "--integrators", "heun", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "dmcmc_cifar10.json").read_text())["rows"]
    assert [(r["integrator"], r["dlg"]) for r in rows] == [("heun", False), ("heun", True)]
    assert rows[0]["nfe"] == 3.0  # 2 Heun steps: 2 + 1 evaluations
    assert all(np.isfinite(r["fid"]) and r["fid"] >= 0 for r in rows)
    assert (tmp_path / "dmcmc_cifar10.png").is_file() and (tmp_path / "dmcmc_cifar10.md").is_file()


def test_adm_recipe_dry_run(tmp_path):
    mod = _recipe("adm_guided_imagenet")
    assert mod.respaced_indices(1000, 250)[:3] == [0, 4, 8] and mod.respaced_indices(1000, 250)[-1] == 999
    assert len(mod.respaced_indices(1000, 250)) == 250
    assert mod.main(["--dry-run", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "adm_guided_dryrun.json").read_text())["rows"]
    assert [r["scale"] for r in rows] == [0.0, 1.0] and all(r["nfe"] == 4.0 for r in rows)
    assert all(np.isfinite(r["fid"]) for r in rows)


def test_adm_fp16_torso_close_to_reference():
    cfg = json.loads((PRE / "adm_tiny.json").read_text())["unet_kwargs"]
    net = build_network({"arch": "adm_unet", **cfg, "use_fp16": True}).eval()
    net.load_state_dict(torch.load(PRE / "adm_unet_tiny.pt", weights_only=True))
    assert net.input_blocks[0][0].weight.dtype == torch.float16 and net.out[2].weight.dtype == torch.float32
    io = load_file(str(PRE / "adm_tiny_io.safetensors"))
    with torch.no_grad():
        out = net(io["x"], io["t"], io["y"])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, io["unet_output"], atol=1e-3, rtol=0)  # half-precision convolutions


def test_bad_adm_files_refused(tmp_path):
    src = PRE / "adm_classifier_tiny.pt"
    (tmp_path / "trunc.pt").write_bytes(src.read_bytes()[:1000])
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    for bad, msg in (("trunc.pt", "weights-only torch checkpoint"), ("tensor.pt", "not a state dict")):
        with pytest.raises(CheckpointError, match=msg):
            importers.import_adm(
                PRE / "adm_unet_tiny.pt",
                str(PRE / "adm_tiny.json"),
                tmp_path / f"run_{bad}",
                classifier=tmp_path / bad,
                classifier_config=str(PRE / "adm_tiny.json"),
            )
        assert not (tmp_path / f"run_{bad}" / "config.json").exists()
