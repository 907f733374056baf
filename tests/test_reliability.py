"""Scale and reliability: killed runs resume bit-identically, torchrun ranks reproduce single-process results,
and no command-line input produces a traceback."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scorekit import checkpoint as ckpt
from scorekit.analytic import GaussianMixture

BIN = Path(sys.executable).parent
SCOREKIT = str(BIN / "scorekit")
TORCHRUN = str(BIN / "torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

SMALL = {"network": {"hidden": 32, "depth": 2, "emb_dim": 16}, "training": {"log_every": 5}}


def _cli(*args, check=True, timeout=300):
    p = subprocess.run([SCOREKIT, *args], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"scorekit {' '.join(args)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p


@pytest.fixture
def small_config(tmp_path):
    f = tmp_path / "small.json"
    f.write_text(json.dumps(SMALL))
    return str(f)


def test_sigkill_then_resume_is_bit_identical(tmp_path, small_config):
    common = ["--data", "moons", "--process", "vp", "--batch-size", "32", "--config", small_config, "--no-progress"]
    _cli("train", *common, "--steps", "60", "--checkpoint-every", "10", "--out", str(tmp_path / "full"))
    run = tmp_path / "killed"
    p = subprocess.Popen(
        [SCOREKIT, "train", *common, "--steps", "60", "--checkpoint-every", "10", "--out", str(run)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("step_*")):
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    _cli("train", "--resume", "--out", str(run), "--no-progress")
    for name in ("model", "ema"):
        a, _ = ckpt.load_tensors(tmp_path / "full" / f"{name}.safetensors")
        b, _ = ckpt.load_tensors(run / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_sigterm_saves_a_checkpoint_before_exit(tmp_path, small_config):
    run = tmp_path / "r"
    p = subprocess.Popen(
        [SCOREKIT, "train", "--data", "moons", "--steps", "100000", "--checkpoint-every", "0", "--config", small_config]
        + ["--batch-size", "16", "--out", str(run), "--no-progress"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (run / "log.jsonl").exists():
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    st, _ = ckpt.load_tensors(run / "state.safetensors")
    assert int(st["step"]) >= 5 and "checkpoint saved" in err


def _gmm_spec(tmp_path):
    g = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [[0.1, 0.2], [0.3, 0.1]])
    f = tmp_path / "gmm.json"
    f.write_text(json.dumps(g.to_spec()))
    return f


def test_torchrun_two_ranks_sample_the_same_as_one(tmp_path):
    spec = _gmm_spec(tmp_path)
    # --num-samples: torchrun's own parser would claim --num as an abbreviation of --numa-binding
    args = ["sample", "--model", f"gmm:{spec}", "--sampler", "euler_maruyama", "--steps", "20", "--num-samples", "70"]
    args += ["--batch-size", "16", "--seed", "3", "--no-progress"]
    _cli(*args, "--out", str(tmp_path / "one.npz"))
    p = subprocess.run(
        [
            TORCHRUN,
            "--standalone",
            "--nproc_per_node=2",
            "--no-python",
            SCOREKIT,
            *args,
            "--out",
            str(tmp_path / "two.npz"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert one["samples"].shape == (70, 2)
    np.testing.assert_array_equal(one["samples"], two["samples"])
    assert float(one["nfe"]) == float(two["nfe"]) == 20.0


def test_torchrun_two_ranks_train_like_one_with_the_same_global_batch(tmp_path, small_config):
    common = ["--data", "moons", "--process", "vp", "--config", small_config, "--steps", "6", "--no-progress"]
    _cli("train", *common, "--batch-size", "32", "--out", str(tmp_path / "one"))
    p = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node=2", "--no-python", SCOREKIT, "train", *common]
        + ["--batch-size", "16", "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    a, _ = ckpt.load_tensors(tmp_path / "one" / "model.safetensors")
    b, _ = ckpt.load_tensors(tmp_path / "two" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["training"]["batch_size"] == 16 and cfg["training"].get("world_size") in (None, 2)


def test_resume_on_a_different_world_size(tmp_path, small_config):
    """3 steps on 2 ranks (batch 16 each), then resumed on 1 process with batch 32: same weights as 6 steps on 1."""
    common = ["--data", "moons", "--process", "vp", "--config", small_config, "--no-progress"]
    _cli("train", *common, "--steps", "6", "--batch-size", "32", "--out", str(tmp_path / "one"))
    p = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node=2", "--no-python", SCOREKIT, "train", *common]
        + ["--steps", "3", "--batch-size", "16", "--out", str(tmp_path / "mixed")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    _cli("train", "--resume", "--steps", "6", "--batch-size", "32", "--out", str(tmp_path / "mixed"), "--no-progress")
    for name in ("model", "ema"):
        a, _ = ckpt.load_tensors(tmp_path / "one" / f"{name}.safetensors")
        b, _ = ckpt.load_tensors(tmp_path / "mixed" / f"{name}.safetensors")
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
