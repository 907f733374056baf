"""EDM / EDM2 snapshots: imported networks reproduce the reference D(x, σ); the reader executes nothing and
refuses foreign globals; damaged files give one line; CLI import → sample; the CIFAR-10 recipe's dry run.

Fixtures (tests/fixtures/edm) were made by running NVlabs/edm and NVlabs/edm2 (scripts/make_edm_fixtures.py).
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from scorekit.checkpoint import CheckpointError, load_denoiser, read_config
from scorekit.cli import main as cli_main
from scorekit.importers import import_edm
from scorekit.importers.edm import read_edm_snapshot
from scorekit.importers.safe_pickle import UnsafePickleError, load_snapshot, loads_snapshot
from scorekit.models.registry import build_network

FIX = Path(__file__).resolve().parent / "fixtures" / "edm"
EDM = ["edm-ddpmpp-vp", "edm-ncsnpp-ve", "edm-skip-edm-cond", "edm-adm-edm-cond"]
EDM2 = ["edm2-uncond", "edm2-cond", "edm2-cond-phema"]
EXPECT = {  # process, parameterization, conditioning, arch
    "edm-ddpmpp-vp": ("vp", "eps", "t999", "edm_precond"),
    "edm-ncsnpp-ve": ("ve", "eps", "sigma", "edm_precond"),
    "edm-skip-edm-cond": ("edm", "edm", "log_sigma", "edm_precond"),
    "edm-adm-edm-cond": ("edm", "edm", "log_sigma", "edm_precond"),
    "edm2-uncond": ("edm", "edm", "log_sigma", "edm2_precond"),
    "edm2-cond": ("edm", "edm", "log_sigma", "edm2_precond"),
    "edm2-cond-phema": ("edm", "edm", "log_sigma", "edm2_precond"),
}


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("edm_runs")
    return {name: import_edm(FIX / f"{name}.pkl", root / name) for name in EDM + EDM2}


def test_fixtures_small():
    total = sum(f.stat().st_size for f in FIX.iterdir())
    assert total < 2 * 1024 * 1024, total


@pytest.mark.parametrize("name", EDM + EDM2)
def test_imported_network_reproduces_reference(runs, name):
    ref = np.load(FIX / f"{name}.npz")
    den = load_denoiser(runs[name])
    x, sigma = torch.from_numpy(ref["x"]), torch.from_numpy(ref["sigma"])
    with torch.no_grad():
        d = den(x, sigma).numpy()
        assert _rel(d, ref["D"]) <= 1e-5
        for i in range(len(sigma)):  # each noise level on its own (large σ must not hide small-σ errors)
            assert _rel(d[i], ref["D"][i]) <= 1e-5
            # the network's share σ·F alone: float32 rounding of c_in and 999·t(σ) (VP) is all that may differ
            assert _rel(d[i] - ref["x"][i], ref["D"][i] - ref["x"][i]) <= 1e-4
        if "D_cond" in ref:
            labels = torch.from_numpy(ref["labels"])
            assert _rel(den(x, sigma, labels).numpy(), ref["D_cond"]) <= 1e-5
            # one-hot input gives the same, and the null label (= label_dim) is EDM's zero label vector
            k = den.num_classes
            onehot = torch.nn.functional.one_hot(labels, k).float()
            assert _rel(den(x, sigma, onehot).numpy(), ref["D_cond"]) <= 1e-5
            assert _rel(den(x, sigma, torch.full_like(labels, k)).numpy(), ref["D"]) <= 1e-5
        if "D_native" in ref:  # float16 snapshot evaluated with float16 parameters (EDM2 rounds its gain scalar)
            assert _rel(d, ref["D_native"]) <= 1e-3


@pytest.mark.parametrize("name", EDM + EDM2)
def test_run_config_maps_preconditioning(runs, name):
    cfg = read_config(runs[name])
    proc, param, cond, arch = EXPECT[name]
    assert cfg["process"]["name"] == proc and cfg["network"]["arch"] == arch
    assert (cfg["denoiser"]["parameterization"], cfg["denoiser"]["conditioning"]) == (param, cond)
    assert cfg["data"]["shape"] == [3, 8, 8] and cfg["data"]["transform"] == {
        "kind": "image",
        "shift": 0.5,
        "scale": 0.5,
    }
    assert cfg["kind"] == "score_model" and cfg["training"]["imported_from"] == ("edm2" if "edm2" in name else "edm")
    assert (runs[name] / "model.safetensors").is_file() and not list(runs[name].glob("*.pkl"))
    if proc == "vp":  # EDM's VPPrecond defaults: β_d = 19.9, β_min = 0.1, ε_t = 1e-5
        assert cfg["process"]["beta_min"] == pytest.approx(0.1) and cfg["process"]["beta_max"] == pytest.approx(20.0)
        assert cfg["process"]["t_min"] == pytest.approx(1e-5)
    if proc == "ve":
        assert (cfg["process"]["sigma_min"], cfg["process"]["sigma_max"]) == (0.02, 100.0)
    if "-cond" in name:
        assert cfg["denoiser"]["class_conditional"] and cfg["data"]["num_classes"] > 0


def test_registry_builds_every_edm_arch():
    small = {"img_resolution": 8, "model_channels": 8, "channel_mult": [1, 2], "num_blocks": 1}
    nets = {
        "edm_songunet": {**small, "in_channels": 3, "out_channels": 3, "attn_resolutions": [4]},
        "edm_dhariwalunet": {**small, "in_channels": 3, "out_channels": 3, "attn_resolutions": [4]},
        "edm2_unet": {**small, "img_channels": 3, "label_dim": 2, "attn_resolutions": [4], "channels_per_head": 8},
        "edm_precond": {**small, "img_channels": 3, "precond": "ve", "attn_resolutions": [4]},
        "edm2_precond": {**small, "img_channels": 3, "label_dim": 0, "logvar_channels": 8},
    }
    x = torch.randn(2, 3, 8, 8)
    for arch, kw in nets.items():
        net = build_network({"arch": arch, **kw}).eval()
        labels = torch.zeros(2, 2) if arch == "edm2_unet" else None
        with torch.no_grad():
            assert net(x, torch.tensor([0.5, 1.5]), labels).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="precond"):
        build_network({"arch": "edm_precond", "img_resolution": 8, "img_channels": 3, "precond": "iddpm"})


def test_snapshot_extracts_hyperparameters_without_code():
    snap = read_edm_snapshot(FIX / "edm-adm-edm-cond.pkl")
    assert snap.family == "edm" and snap.class_name == "EDMPrecond"
    assert snap.kwargs["model_type"] == "DhariwalUNet" and snap.kwargs["label_dim"] == 5
    assert snap.kwargs["augment_dim"] == 9 and snap.kwargs["sigma_data"] == 0.5
    assert all(torch.is_tensor(t) for t in snap.state_dict.values()) and "model.map_augment.weight" in snap.state_dict
    assert snap.extras["loss"]["class_name"] == "EDMLoss"
    snap2 = read_edm_snapshot(FIX / "edm2-cond-phema.pkl")
    assert snap2.family == "edm2" and snap2.kwargs["channels_per_head"] == 4
    assert snap2.extras["encoder"]["class_name"] == "StandardRGBEncoder"
    assert snap2.state_dict["unet.out_gain"].dtype == torch.float16  # as EDM2 stores it; cast on import


# --- nothing in the file is executed -------------------------------------------------------------------------
class _Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _proto0_global(module: str, name: str, arg: str) -> bytes:
    """A hand-written protocol-0 pickle: GLOBAL module.name, called with one string."""
    return f"c{module}\n{name}\n(V{arg}\ntR.".encode()


def _evil_pickles(sentinel: Path) -> dict[str, bytes]:
    cmd = f"touch {sentinel}"
    code = f"open({str(sentinel)!r}, 'w').close()"
    valid = (FIX / "edm2-uncond.pkl").read_bytes()
    return {
        "os.system": _proto0_global("os", "system", cmd),
        "builtins.exec": pickle.dumps(_Reduce(builtins.exec, code), protocol=4),
        "builtins.eval": _proto0_global("builtins", "eval", code),
        "posix.system": pickle.dumps({"ema": _Reduce(os.system, cmd)}, protocol=4),
        "subprocess.call": pickle.dumps([1, _Reduce(__import__("subprocess").call, ["touch", str(sentinel)])]),
        # a valid snapshot with a payload appended after its STOP is never reached; one prepended is refused
        "prepended": pickle.dumps(_Reduce(os.system, cmd), protocol=2)[:-1] + b"0" + valid,
    }


def test_foreign_globals_refused_and_not_executed(tmp_path, capsys):
    sentinel = tmp_path / "sentinel"
    assert not sentinel.exists()
    for what, data in _evil_pickles(sentinel).items():
        path = tmp_path / f"{what}.pkl"
        path.write_bytes(data)
        with pytest.raises(UnsafePickleError) as e:
            load_snapshot(path)
        msg = str(e.value)
        assert "\n" not in msg and "refused" in msg and "nothing was executed" in msg, (what, msg)
        expected = {"os.system": "os.system", "builtins.exec": "builtins.exec", "builtins.eval": "builtins.eval"}
        assert expected.get(what, "system" if "system" in what or what == "prepended" else "") in msg
        assert not sentinel.exists(), what
        err = _one_line_cli_error(capsys, ["import", "edm", str(path), "--out", str(tmp_path / f"run_{what}")])
        assert "refused" in err and not sentinel.exists() and not (tmp_path / f"run_{what}").exists()


def _persistent_pickle(monkeypatch, meta: dict) -> bytes:
    """A snapshot {"ema": record} written the way torch_utils.persistence writes one (a stand-in module supplies
    the `_reconstruct_persistent_obj` global while pickling; it is removed again before loading)."""
    pkg = types.ModuleType("torch_utils")
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # what the real one would do: exec(meta["module_src"])
        raise AssertionError("never called while pickling")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "torch_utils", pkg)
        m.setitem(sys.modules, "torch_utils.persistence", mod)
        data = pickle.dumps({"ema": _Reduce(_reconstruct_persistent_obj, meta)}, protocol=4)
    assert "torch_utils.persistence" not in sys.modules
    return data


def test_persistence_module_source_is_never_run(tmp_path, monkeypatch):
    """A well-formed persistence record whose module_src would create the sentinel: read as text only."""
    sentinel = tmp_path / "sentinel"
    meta = {
        "type": "class",
        "version": 6,
        "module_src": f"open({str(sentinel)!r}, 'w').close()\nclass EDMPrecond: pass\n",
        "class_name": "EDMPrecond",
        "state": {"_init_args": (), "_init_kwargs": {"img_resolution": 8, "img_channels": 3, "label_dim": 0}},
    }
    data = _persistent_pickle(monkeypatch, meta)
    tree = loads_snapshot(data, "crafted.pkl")
    assert tree["ema"].class_name == "EDMPrecond" and "open(" in tree["ema"].module_src
    (tmp_path / "crafted.pkl").write_bytes(data)
    with pytest.raises(CheckpointError, match="missing weight"):  # no weights: refused by the template check
        import_edm(tmp_path / "crafted.pkl", tmp_path / "run")
    assert not sentinel.exists() and not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize(
    "class_name, kwargs, match",
    [
        ("iDDPMPrecond", {"img_resolution": 8, "img_channels": 3}, "scorekit import adm"),
        ("StyleGAN2Generator", {}, "unsupported network class"),
        ("VPPrecond", {"img_resolution": 8, "img_channels": 3, "M": 500}, "M=500"),
        ("EDMPrecond", {"img_channels": 3}, "img_resolution"),
    ],
)
def test_unsupported_records_refused(tmp_path, monkeypatch, class_name, kwargs, match):
    meta = {"type": "class", "version": 6, "module_src": "", "class_name": class_name}
    meta["state"] = {"_init_args": (), "_init_kwargs": kwargs}
    (tmp_path / "s.pkl").write_bytes(_persistent_pickle(monkeypatch, meta))
    with pytest.raises(CheckpointError, match=match):
        import_edm(tmp_path / "s.pkl", tmp_path / "run")


def test_fixture_globals_are_the_expected_few(monkeypatch):
    """The globals real snapshots name: persistence records, tensor rebuilds, containers (and numpy scalars)."""
    from scorekit.importers import safe_pickle

    seen = set()
    orig = safe_pickle._Unpickler.find_class

    def recording(self, module, name):
        seen.add(f"{module}.{name}")
        return orig(self, module, name)

    monkeypatch.setattr(safe_pickle._Unpickler, "find_class", recording)
    for name in EDM + EDM2:
        load_snapshot(FIX / f"{name}.pkl")
    core = {
        "torch_utils.persistence._reconstruct_persistent_obj",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch.storage._load_from_bytes",
        "collections.OrderedDict",
        "torch.nn.modules.container.ModuleDict",
        "dnnlib.util.EasyDict",
    }
    assert core <= seen
    assert {g for g in seen - core if not g.startswith("numpy")} == set(), seen


def test_numeric_numpy_allowed_object_arrays_refused(tmp_path):
    """EDM2's latent encoder stores numpy float32 arrays and EDM's blocks numpy scalars: numeric ones load."""
    arr = np.array([0.5, -1.25], dtype=np.float32)
    got = loads_snapshot(pickle.dumps({"scale": arr, "s": np.float64(0.7)}, protocol=4), "np.pkl")
    assert np.array_equal(got["scale"], arr) and got["s"] == 0.7
    sentinel = tmp_path / "sentinel"
    obj = np.array([_Reduce(os.system, f"touch {sentinel}")], dtype=object)
    with pytest.raises(UnsafePickleError):
        loads_snapshot(pickle.dumps(obj, protocol=4), "obj.pkl")
    assert not sentinel.exists()


# --- damaged files --------------------------------------------------------------------------------------------
def _one_line_cli_error(capsys, argv) -> str:
    rc = cli_main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err and "\n" not in err and "Traceback" not in err, (rc, err)
    return err


def test_truncated_and_bitflipped_files(tmp_path, capsys):
    src = (FIX / "edm-ddpmpp-vp.pkl").read_bytes()
    cases = {
        "truncated": src[: len(src) // 2],
        "tiny": src[:10],
        "empty": b"",
        "header_flip": src[:2] + bytes([src[2] ^ 0xFF]) + src[3:],
    }
    name_at = src.find(b"_reconstruct_persistent_obj")
    cases["name_flip"] = src[:name_at] + bytes([src[name_at] ^ 0x01]) + src[name_at + 1 :]
    blob_at = src.find(b"\x80\x02\x8a\x0a")  # start of the first legacy torch.save storage blob (its magic)
    assert blob_at > 0
    cases["storage_flip"] = src[: blob_at + 3] + bytes([src[blob_at + 3] ^ 0x10]) + src[blob_at + 4 :]
    for what, data in cases.items():
        p = tmp_path / f"{what}.pkl"
        p.write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            import_edm(p, tmp_path / f"run_{what}")
        assert "\n" not in str(e.value) and p.name in str(e.value), (what, str(e.value))
        err = _one_line_cli_error(capsys, ["import", "edm", str(p), "--out", str(tmp_path / f"cli_{what}")])
        assert p.name in err
        assert not (tmp_path / f"run_{what}" / "config.json").exists()
    assert "not found" in _one_line_cli_error(capsys, ["import", "edm", str(tmp_path / "nope.pkl"), "--out", "x"])


def test_random_bitflips_never_escape_as_tracebacks(tmp_path):
    src = (FIX / "edm2-uncond.pkl").read_bytes()
    rng = np.random.default_rng(0)
    for i, pos in enumerate(rng.integers(0, len(src), size=24)):
        data = bytearray(src)
        data[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            loads_snapshot(bytes(data), f"flip{i}.pkl")
        except CheckpointError as e:
            assert "\n" not in str(e)


# --- end to end -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["edm-ddpmpp-vp", "edm2-cond"])
def test_cli_import_then_sample(tmp_path, capsys, name):
    run = tmp_path / "run"
    assert cli_main(["import", "edm", str(FIX / f"{name}.pkl"), "--out", str(run)]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["network"] == EXPECT[name][3] and info["process"] == EXPECT[name][0]
    out = tmp_path / "x.npz"
    argv = ["sample", "--run", str(run), "--sampler", "heun", "--steps", "3", "--num", "2", "--out", str(out)]
    assert cli_main([*argv, "--no-progress"]) == 0
    with np.load(out) as f:
        assert f["samples"].shape == (2, 3, 8, 8) and f["samples"].dtype == np.float32
        assert np.isfinite(f["samples"]).all() and f["samples"].min() >= 0 and f["samples"].max() <= 1
        assert float(f["nfe"]) == 5.0
        if "-cond" in name:
            assert f["labels"].shape == (2,)
    if "-cond" in name:  # classifier-free guidance: the null label is EDM's zero label vector
        out = tmp_path / "cfg.npz"
        argv = ["sample", "--run", str(run), "--sampler", "dpmpp_2m", "--steps", "2", "--num", "2", "--out", str(out)]
        assert cli_main([*argv, "--guidance", "cfg", "--class", "1", "--no-progress"]) == 0
        with np.load(out) as f:
            assert np.isfinite(f["samples"]).all() and (f["labels"] == 1).all()
    # an existing run is not overwritten without --overwrite
    err = _one_line_cli_error(capsys, ["import", "edm", str(FIX / f"{name}.pkl"), "--out", str(run)])
    assert "already holds a run" in err
    assert cli_main(["import", "edm", str(FIX / f"{name}.pkl"), "--out", str(run), "--overwrite"]) == 0


def test_reproduce_recipe_dry_run(tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce" / "edm_cifar10.py"
    spec = importlib.util.spec_from_file_location("_recipe_edm_cifar10", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.steps_for_budget("heun", 5) == (3, 5) and mod.steps_for_budget("heun", 10) == (5, 9)
    assert mod.steps_for_budget("dpmpp_2m", 10) == (10, 10)
    assert mod.main(["--dry-run", "--samplers", "heun,dpmpp_2m", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "edm_cifar10_dryrun.json").read_text())
    rows = res["rows"]
    assert [(r["sampler"], r["nfe"]) for r in rows] == [("heun", 5), ("heun", 9), ("dpmpp_2m", 5), ("dpmpp_2m", 10)]
    assert all(np.isfinite(r["fid"]) and r["fid"] >= 0 and r["num"] == 8 for r in rows)
    assert (tmp_path / "edm_cifar10_dryrun.md").is_file()
