"""The classifiers train in the one loop: `train-noise-classifier` and `train-classifier` killed with SIGKILL
mid-run and continued with --resume give bit-identical weights to an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scorekit import checkpoint as ckpt
from scorekit.analytic import GaussianMixture
from scorekit.data import load_data
from scorekit.processes import VESDE

SCOREKIT = str(Path(sys.executable).parent / "scorekit")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
STEPS = 200


def _cli(*args):
    p = subprocess.run([SCOREKIT, *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == 0, f"scorekit {' '.join(args)} failed ({p.returncode}): {p.stderr[-2000:]}"
    return p


def _kill_after_first_checkpoint(args, run: Path) -> None:
    p = subprocess.Popen([SCOREKIT, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("step_*")):
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    st, _ = ckpt.load_tensors(ckpt.latest_checkpoint(run) / "state.safetensors")
    assert 0 < int(st["step"]) < STEPS  # really stopped mid-run


def _assert_same_weights(a: Path, b: Path) -> None:
    for name in ("model", "ema"):
        ta, _ = ckpt.load_tensors(a / f"{name}.safetensors")
        tb, _ = ckpt.load_tensors(b / f"{name}.safetensors")
        assert ta.keys() == tb.keys()
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name


def test_train_noise_classifier_sigkill_then_resume_is_bit_identical(tmp_path):
    score = tmp_path / "score"
    ckpt.write_config(
        score, {"kind": "score_model", "data": load_data("moons").to_config(), "process": VESDE().to_config()}
    )
    common = ["train-noise-classifier", "--run", str(score), "--steps", str(STEPS), "--levels", "100"]
    common += ["--batch-size", "32", "--eval-num", "200", "--checkpoint-every", "10"]
    _cli(*common, "--out", str(tmp_path / "full"))
    run = tmp_path / "killed"
    _kill_after_first_checkpoint([*common, "--out", str(run)], run)
    _cli(*common, "--out", str(run), "--resume")
    _assert_same_weights(tmp_path / "full", run)
    full, resumed = ckpt.read_config(tmp_path / "full"), ckpt.read_config(run)
    assert full["accuracy"] == resumed["accuracy"] and len(resumed["levels"]["values"]) == 100
    p = subprocess.run([SCOREKIT, *common, "--out", str(run)], capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == 2 and "--resume" in p.stderr  # a finished run is not overwritten silently


def test_train_classifier_sigkill_then_resume_is_bit_identical(tmp_path):
    g = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], [[0.3, 0.3], [0.3, 0.3]])
    spec = tmp_path / "gmm.json"
    spec.write_text(json.dumps({**g.to_spec(), "labels": [0, 1]}))
    common = ["train-classifier", "--data", f"gmm:{spec}", "--process", "vp", "--steps", str(STEPS)]
    common += ["--batch-size", "32", "--checkpoint-every", "10", "--log-every", "50"]
    _cli(*common, "--out", str(tmp_path / "full"))
    run = tmp_path / "killed"
    _kill_after_first_checkpoint([*common, "--out", str(run)], run)
    _cli(*common, "--out", str(run), "--resume")
    _assert_same_weights(tmp_path / "full", run)
    ev_full = json.loads((tmp_path / "full" / "eval.json").read_text())
    assert json.loads((run / "eval.json").read_text()) == ev_full
    assert ckpt.read_config(run)["kind"] == "classifier"


@pytest.mark.parametrize("command", ["train-noise-classifier", "train-classifier"])
def test_resume_flag_is_documented(command, capsys):
    from scorekit.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--resume" in capsys.readouterr().out


def test_torchrun_two_ranks_train_the_noise_classifier_like_one(tmp_path):
    score = tmp_path / "score"
    ckpt.write_config(
        score, {"kind": "score_model", "data": load_data("moons").to_config(), "process": VESDE().to_config()}
    )
    # --run-dir: torchrun's own parser would claim --run as an abbreviation of --run-path
    common = ["train-noise-classifier", "--run-dir", str(score), "--steps", "6", "--levels", "50", "--eval-num", "50"]
    _cli(*common, "--batch-size", "32", "--out", str(tmp_path / "one"))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    p = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "--no-python", SCOREKIT, *common]
        + ["--batch-size", "16", "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    for name in ("model", "ema"):
        a, _ = ckpt.load_tensors(tmp_path / "one" / f"{name}.safetensors")
        b, _ = ckpt.load_tensors(tmp_path / "two" / f"{name}.safetensors")
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert "accuracy" in ckpt.read_config(tmp_path / "two")


@pytest.mark.parametrize("command", ["train-noise-classifier", "train-classifier"])
def test_classifier_commands_take_the_ema_flags(tmp_path, command):
    """--ema-sigma-rel / --ema-snapshot-every reach the classifier run's config and its EMA snapshots, and a
    width outside the power-function EMA's range is refused in one line (exit 2)."""
    from scorekit.cli import main

    score = tmp_path / "score"
    ckpt.write_config(
        score, {"kind": "score_model", "data": load_data("moons").to_config(), "process": VESDE().to_config()}
    )
    if command == "train-noise-classifier":
        args = [command, "--run", str(score), "--levels", "20", "--eval-num", "50"]
    else:
        import json as _json

        spec = tmp_path / "gmm.json"
        spec.write_text(_json.dumps({"weights": [1, 1], "means": [[-2, 0], [2, 0]], "variances": [[0.1, 0.1]] * 2,
                                     "labels": [0, 1]}))  # fmt: skip
        args = [command, "--data", f"gmm:{spec}", "--process", "ve"]
    out = tmp_path / "clf"
    common = [*args, "--steps", "20", "--batch-size", "16", "--out", str(out)]
    assert main([*common, "--ema-sigma-rel", "0.05", "--ema-snapshot-every", "5"]) == 0
    tr = json.loads((out / "config.json").read_text())["training"]
    assert tr["ema_sigma_rel"] == 0.05 and tr["ema_snapshot_every"] == 5
    assert len(list((out / "ema_snapshots").glob("*"))) >= 4
    assert main([*common[:-1], str(tmp_path / "bad"), "--ema-sigma-rel", "0.5"]) == 2
    assert not (tmp_path / "bad" / "model.safetensors").exists()
