"""Named data sets (scorekit.datasets), the pinned Fashion-MNIST classifier and the 28×28 training presets.

Everything runs on small synthetic IDX files written here; the real Fashion-MNIST files are used only by the
accuracy check, which is skipped when they are not installed."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from scorekit import datasets
from scorekit.data import load_data
from scorekit.datasets import find_dataset, load_named

N_TRAIN, N_TEST = 24, 10


def _write_idx(path, array: np.ndarray) -> None:
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())


def _write_fashion(folder, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return folder


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """$SCOREKIT_DATA with a synthetic fashion-mnist; the system and user folders point nowhere."""
    _write_fashion(tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setattr(datasets, "_SYSTEM_ROOT", tmp_path / "no-system")
    monkeypatch.setattr(datasets, "_USER_ROOT", tmp_path / "no-user")
    return tmp_path / "data"


# --- datasets ----------------------------------------------------------------------------------------------
def test_find_dataset_uses_scorekit_data(data_root):
    assert find_dataset("fashion-mnist") == data_root / "fashion-mnist"
    assert find_dataset("Fashion-MNIST ") == data_root / "fashion-mnist"
    assert find_dataset("fashion-mnist", root=data_root) == data_root / "fashion-mnist"  # root/<name>
    assert find_dataset("fashion-mnist", root=data_root / "fashion-mnist") == data_root / "fashion-mnist"


def test_find_dataset_absent_is_one_line(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "empty"))
    with pytest.raises(ValueError) as e:
        find_dataset("fashion-mnist")
    msg = str(e.value)
    assert "\n" not in msg and "apt-get install dataset-fashion-mnist" in msg and "IDX" in msg
    with pytest.raises(ValueError, match="mnist not found") as e:
        find_dataset("mnist")
    assert "\n" not in str(e.value) and "apt-get" not in str(e.value)
    with pytest.raises(ValueError, match="unknown data set"):
        find_dataset("cifar-100")


def test_load_named_is_the_idx_folder_dataset(data_root):
    folder = data_root / "fashion-mnist"
    for split, n in (("train", N_TRAIN), ("test", N_TEST), ("all", N_TRAIN + N_TEST)):
        ds = load_named("fashion-mnist", split)
        ref = load_data(str(folder), split=split)
        assert ds.spec == "fashion-mnist" and ds.kind == "image" and ds.shape == (1, 28, 28) and len(ds) == n
        assert ds.num_classes == 10 and ds.data.min() >= -1 and ds.data.max() <= 1
        assert torch.equal(ds.data, ref.data) and torch.equal(ds.labels, ref.labels)
        assert ds.transform == ref.transform
    # the split is the files' own: train is the train file, test the t10k file, in order
    assert torch.equal(load_named("fashion-mnist", "all").data[N_TRAIN:], load_named("fashion-mnist", "test").data)
    assert datasets.is_named_dataset("fashion-mnist") and not datasets.is_named_dataset("digits")


def test_dataset_files_sha256(data_root):
    files = datasets.dataset_files_sha256("fashion-mnist", "test")
    assert sorted(files) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert all(len(h) == 64 for h in files.values())
    assert len(datasets.dataset_files_sha256("fashion-mnist", "all")) == 4


# --- the pinned classifier ---------------------------------------------------------------------------------
def test_pinned_weights_hash_checked():
    from scorekit.metrics.fashion_classifier import (
        FASHION_CLASSIFIER_SHA256,
        FASHION_WEIGHTS_PATH,
        load_fashion_classifier,
    )

    assert FASHION_WEIGHTS_PATH.stat().st_size < 1_000_000
    net, digest = load_fashion_classifier()
    assert digest == FASHION_CLASSIFIER_SHA256
    with pytest.raises(ValueError) as e:
        load_fashion_classifier(sha256="0" * 64)
    assert "\n" not in str(e.value) and "expected " + "0" * 64 in str(e.value)


def test_altered_weights_refused(tmp_path):
    from scorekit.checkpoint import save_tensors
    from scorekit.metrics.fashion_classifier import FASHION_CLASSIFIER_SHA256, load_fashion_classifier

    net, _ = load_fashion_classifier()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["fc2.bias"][0] += 1e-3
    path = tmp_path / "fashion.safetensors"
    save_tensors(path, state)
    load_fashion_classifier(path)  # another file, no pinned hash: only its own checksum is checked
    with pytest.raises(ValueError, match="altered or stale") as e:
        load_fashion_classifier(path, sha256=FASHION_CLASSIFIER_SHA256)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="not found"):
        load_fashion_classifier(tmp_path / "missing.safetensors")


def test_fashion_extractor_registered():
    from scorekit.metrics.features import EXTRACTORS, get_extractor

    assert "fashion" in EXTRACTORS
    ext = get_extractor("fashion", shape=(1, 28, 28))
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    f, lg = ext.features_and_logits(x)
    assert f.shape == (5, 128) and lg.shape == (5, 10) and f.dtype == np.float64
    assert ext.describe()["name"] == "fashion" and len(ext.sha256) == 64
    with pytest.raises(ValueError, match=r"\[N, 1, 28, 28\]"):
        ext.features(torch.rand(2, 1, 8, 8))


def test_reference_statistics_cached_with_provenance(data_root, tmp_path):
    from scorekit.metrics.fashion_classifier import FASHION_CLASSIFIER_SHA256, fashion_reference

    path = tmp_path / "ref.npz"
    ref = fashion_reference("test", path=path)
    assert path.is_file() and ref["mu"].shape == (128,) and ref["sigma"].shape == (128, 128)
    meta = ref["meta"]
    assert meta["extractor"] == "fashion" and meta["extractor_sha256"] == FASHION_CLASSIFIER_SHA256
    assert (
        meta["split"] == "test" and meta["num"] == str(N_TEST) and "t10k-images-idx3-ubyte.gz sha256=" in meta["data"]
    )
    again = fashion_reference("test", path=path)
    np.testing.assert_array_equal(again["mu"], ref["mu"])
    _write_fashion(data_root / "fashion-mnist", seed=1)  # other files under the same name: the cache is refused
    with pytest.raises(ValueError, match="computed with data="):
        fashion_reference("test", path=path)


@pytest.mark.skipif(
    not (datasets._SYSTEM_ROOT / "fashion-mnist").is_dir(), reason="real Fashion-MNIST files not installed"
)
def test_pinned_classifier_accuracy_on_real_test_split():
    from scorekit.metrics.fashion_classifier import accuracy, fashion_split, load_fashion_classifier

    net, _ = load_fashion_classifier()
    x, y = fashion_split("test", root=datasets._SYSTEM_ROOT / "fashion-mnist")
    assert len(x) == 10000
    assert accuracy(net, x, y) >= 0.90


# --- presets -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_preset_builds_a_28x28_network(data_root, name):
    from scorekit.models.registry import build_network
    from scorekit.presets import apply_preset, preset_config
    from scorekit.training import default_config, validate_config

    spec = str(data_root / "fashion-mnist")
    over = preset_config(name, spec)
    assert over == preset_config(name, "fashion-mnist")  # named data sets work too
    cfg = validate_config(apply_preset(default_config(spec, "ve"), over))
    assert cfg["training"]["batch_size"] == over["training"]["batch_size"] and cfg["network"] == over["network"]
    net = build_network(cfg["network"])
    out = net(torch.randn(2, 1, 28, 28), torch.zeros(2))
    assert out.shape == (2, 1, 28, 28) and torch.isfinite(out).all()


def test_preset_class_conditional_and_errors(data_root):
    from scorekit.models.registry import build_network
    from scorekit.presets import CPU_BUDGET_S, CPU_SECONDS_PER_STEP, preset_config

    over = preset_config("cpu", "fashion-mnist", class_conditional=True)
    assert over["network"]["num_classes"] == 10 and over["training"]["p_uncond"] > 0
    tr = over["training"]
    assert tr["steps"] * CPU_SECONDS_PER_STEP[tr["amp"]] <= CPU_BUDGET_S
    net = build_network(over["network"])
    assert net(torch.randn(2, 1, 28, 28), torch.zeros(2), torch.tensor([0, 9])).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("tpu", "fashion-mnist")
    with pytest.raises(ValueError, match="image data"):
        preset_config("cpu", "moons")


def test_cpu_preset_takes_bf16_only_where_the_cpu_computes_it(data_root, monkeypatch):
    """The cpu preset trains in bf16 where the CPU has bf16 arithmetic (faster per step, so more steps fit the same
    budget) and in float32 elsewhere; either way the steps fit the budget at that precision's measured cost."""
    from scorekit import presets

    seen = {}
    for native in (True, False):
        monkeypatch.setattr(presets, "cpu_computes_bf16", lambda native=native: native)
        seen[native] = presets.preset_config("cpu", "fashion-mnist")["training"]
    assert seen[True]["amp"] == "bf16" and seen[False]["amp"] == "none"
    assert seen[True]["steps"] > seen[False]["steps"]
    for tr in seen.values():
        cost = presets.CPU_SECONDS_PER_STEP[tr["amp"]] * tr["steps"]
        assert 0.9 * presets.CPU_BUDGET_S <= cost <= presets.CPU_BUDGET_S


def test_cpu_plan_fits_the_budget_in_the_faster_precision():
    """The cpu preset's steps are the whole thousands of pilot-timed steps that fit 95 % of the budget, in the
    faster precision (float32 on a tie); a pilot that measured nothing usable is refused in one line."""
    from scorekit import presets

    assert presets.cpu_plan({"bf16": 0.25, "none": 0.41}) == ("bf16", 13000)  # 0.95·3600/0.25 = 13,680
    assert presets.cpu_plan({"bf16": 0.5, "none": 0.3}) == ("none", 11000)  # 3420/0.3 = 11,400
    assert presets.cpu_plan({"bf16": 0.3, "none": 0.3})[0] == "none"
    assert presets.cpu_plan({"none": 0.275}) == ("none", 12000)
    for s in (0.017, 0.17, 0.2498, 0.9, 3.0):
        n = presets.cpu_budget_steps(s)
        assert n % 1000 == 0 and n * s <= presets.CPU_MARGIN * presets.CPU_BUDGET_S < (n + 1000) * s
    assert presets.cpu_budget_steps(1e6) == 1000  # never zero steps
    assert presets.cpu_budget_steps(1.0, budget_s=600) == 1000 and presets.cpu_budget_steps(0.01, 600) == 57000
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="seconds per step"):
            presets.cpu_budget_steps(bad)
    with pytest.raises(ValueError, match="no pilot"):
        presets.cpu_plan({})


def test_time_training_step_is_a_pilot_that_leaves_no_trace(data_root, tmp_path, monkeypatch):
    """The pilot runs the configured run's real steps (the cpu preset's class-conditional 28×28 U-Net in bf16 and
    float32) and returns a positive CPU time per step; it writes nothing and leaves the global RNG as it was, so the
    run trained after it is the run trained without it."""
    from scorekit.pilot import time_training_step
    from scorekit.presets import apply_preset, preset_config
    from scorekit.training import default_config

    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    base = default_config("fashion-mnist", "vp", class_conditional=True, device="cpu")
    cfg = apply_preset(base, preset_config("cpu", "fashion-mnist", class_conditional=True))
    cfg["training"]["batch_size"] = 2
    rng = torch.get_rng_state()
    for amp in ("bf16", "none"):
        t = time_training_step({**cfg, "training": {**cfg["training"], "amp": amp}}, "cpu", steps=2, warmup=1)
        assert 0 < t < 60
    assert torch.equal(torch.get_rng_state(), rng)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(ValueError, match="pilot needs"):
        time_training_step(cfg, "cpu", steps=0)


def test_cli_cpu_preset_takes_precision_and_steps_from_the_pilot(data_root, tmp_path, monkeypatch, capsys):
    """`train --preset cpu` without --steps times a pilot in both precisions (where bf16 is in hardware), keeps
    the faster one and the steps that fit the budget, says so in one line and records it in the run's provenance;
    --steps skips the pilot, --amp times that precision alone."""
    import argparse

    from scorekit import pilot, presets, training
    from scorekit.commands import train as train_cmd

    timed = []

    def fake_pilot(cfg, device, steps=16, warmup=4, seed=0):
        timed.append(cfg["training"]["amp"])
        assert cfg["network"] == presets.preset_network("cpu", (1, 28, 28), 10)
        return {"bf16": 0.5, "none": 0.3}[cfg["training"]["amp"]]

    monkeypatch.setattr(pilot, "time_training_step", fake_pilot)
    monkeypatch.setattr(presets, "cpu_computes_bf16", lambda: True)
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)

    def plan(*flags):
        timed.clear()
        args = parser.parse_args(["--data", "fashion-mnist", "--preset", "cpu", "--class-conditional", *flags])
        cfg = train_cmd.build_config(args)
        return cfg, train_cmd.plan_cpu_preset(cfg, args, "cpu")

    cfg, rec = plan()
    assert sorted(timed) == ["bf16", "none"]
    assert (cfg["training"]["amp"], cfg["training"]["steps"]) == ("none", 11000)
    assert rec["preset"]["pilot_cpu_s_per_step"] == {"bf16": 0.5, "none": 0.3} and rec["preset"]["steps"] == 11000
    assert "11,000 steps" in capsys.readouterr().err
    cfg, rec = plan("--amp", "bf16")
    assert timed == ["bf16"] and (cfg["training"]["amp"], cfg["training"]["steps"]) == ("bf16", 6000)
    cfg, rec = plan("--steps", "7")
    assert timed == [] and rec is None and cfg["training"]["steps"] == 7
    args = parser.parse_args(["--data", "fashion-mnist", "--preset", "gpu"])
    assert train_cmd.plan_cpu_preset(train_cmd.build_config(args), args, "cpu") is None and timed == []

    # the record lands in config.json's provenance, and a resumed run keeps it
    cfg, rec = plan("--batch-size", "2")
    out = tmp_path / "run"
    cfg["training"].update(steps=2, checkpoint_every=1, ema_snapshot_every=0)
    training.train(cfg, out, progress=False, provenance_settings=rec, max_steps_this_run=1)
    assert json.loads((out / "config.json").read_text())["provenance"]["settings"]["preset"] == rec["preset"]
    training.train(cfg, out, resume=True, progress=False)
    assert json.loads((out / "config.json").read_text())["provenance"]["settings"]["preset"] == rec["preset"]


def test_cli_data_fashion_mnist_and_cpu_preset_first_steps(data_root, tmp_path):
    """`scorekit train --data fashion-mnist --preset cpu` resolves the named set and runs its first steps; the run
    records the preset's network."""
    import json

    from scorekit.cli import main
    from scorekit.presets import preset_config

    out = tmp_path / "run"
    argv = [
        "train",
        "--data",
        "fashion-mnist",
        "--preset",
        "cpu",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--out",
        str(out),
    ]
    assert main([*argv, "--checkpoint-every", "2", "--sample-every", "0"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["shape"] == [1, 28, 28]
    preset = preset_config("cpu", "fashion-mnist")["network"]
    assert {k: cfg["network"][k] for k in preset} == preset
    assert (out / "model.safetensors").is_file()


def test_evaluate_fashion_uses_the_pinned_classifier(data_root, tmp_path):
    """`scorekit evaluate --data fashion-mnist` picks the pinned Fashion-MNIST features by itself (auto) and reports
    per-class accuracy of labelled samples with the same classifier; real test images of a class are judged as the
    classifier judges them directly."""
    from scorekit.cli import main
    from scorekit.metrics.fashion_classifier import fashion_split, load_fashion_classifier

    x, y = fashion_split("test")
    npz = tmp_path / "s.npz"
    np.savez(npz, samples=x.numpy(), labels=y.numpy())
    out = tmp_path / "m.json"
    assert main(["evaluate", "--samples", str(npz), "--data", "fashion-mnist", "--metrics", "fid",
                 "--ref-split", "test", "--out", str(out)]) == 0  # fmt: skip
    m = json.loads(out.read_text())
    assert m["feature_extractor"] == "fashion"
    assert m["fid"] == pytest.approx(0.0, abs=1e-3)  # the samples are the reference split itself
    net, _ = load_fashion_classifier()
    with torch.no_grad():
        direct = (net(x).argmax(1) == y).float().mean().item()
    assert m["class_accuracy"] == pytest.approx(direct, abs=1e-6)
    assert m["class_accuracy_classifier"].startswith("fashion (")
