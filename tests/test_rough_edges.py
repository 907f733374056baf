"""Rough edges of issue 16: each bad input is refused with exit status 2 and one clear line, before any output
(file or folder) is made; every output file has the same mode."""

import json
import os
import stat

import numpy as np
import pytest

from scorekit.cli import main

SPEC = {"weights": [0.5, 0.5], "means": [[-1.0, 0.0], [1.0, 0.0]], "variances": [[0.1, 0.1], [0.1, 0.1]]}


def _cli(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line(err):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def gmm(tmp_path):
    p = tmp_path / "gmm.json"
    p.write_text(json.dumps(SPEC))
    return f"gmm:{p}"


def _sample(gmm, out, *extra):
    return ["sample", "--model", gmm, "--sampler", "heun", "--steps", "4", "--num", "8", "--out", out,
            "--no-progress", *extra]  # fmt: skip


def test_output_parent_is_a_file(tmp_path, gmm, capsys):
    keep = tmp_path / "keep.json"
    keep.write_text('{"precious": 1}')
    cases = [
        _sample(gmm, keep / "x.npz"),
        ["likelihood", "--model", gmm, "--data", "moons", "--num", "4", "--out", keep / "x.json", "--no-progress"],
        ["evaluate", "--samples", tmp_path / "none.npz", "--data", "moons", "--out", keep / "m.json"],
        ["quickstart", "--out", keep / "qs", "--steps", "1"],
        ["tune-schedule", "--model", gmm, "--nfe", "4", "--out", keep / "s.json"],
        ["train", "--data", "moons", "--steps", "1", "--out", keep / "run", "--no-progress"],  # cli's safety net
    ]
    for argv in cases:
        rc, _, err = _cli(capsys, *argv)
        line = _one_line(err)
        assert rc == 2 and "keep.json" in line and ("not a folder" in line or "not found" in line), (argv, line)
    assert keep.read_text() == '{"precious": 1}'
    (tmp_path / "dir.npz").mkdir()
    rc, _, err = _cli(capsys, *_sample(gmm, tmp_path / "dir.npz"))  # a folder as the output file
    assert rc == 2 and "is a folder" in _one_line(err)


def test_messages_say_what_is_meant(tmp_path, gmm, capsys):
    # DLG without a noise-level source, guidance without a classifier: no RUN2/RUN3 placeholders
    rc, _, err = _cli(capsys, *_sample(gmm, tmp_path / "a.npz", "--dmcmc", "dlg"))
    line = _one_line(err)
    assert rc == 2 and "RUN2" not in line and "noise-classifier run directory" in line
    rc, _, err = _cli(capsys, *_sample(gmm, tmp_path / "a.npz", "--guidance", "classifier", "--class", "0"))
    line = _one_line(err)
    assert rc == 2 and "RUN3" not in line and "classifier run directory" in line
    # a sampler option with a text value names the option
    argv = ["sample", "--model", gmm, "--sampler", "pc", "--steps", "4", "--num", "8", "--out", tmp_path / "a.npz",
            "--sampler-opt", "snr=abc", "--no-progress"]  # fmt: skip
    rc, _, err = _cli(capsys, *argv)
    line = _one_line(err)
    assert rc == 2 and "snr" in line and "abc" in line
    # a text file named .npz is "not an .npz archive", not "pickled data"
    fake = tmp_path / "text.npz"
    fake.write_text("just some text\n")
    for argv in (
        ["evaluate", "--samples", fake, "--data", "moons", "--out", tmp_path / "m.json"],
        ["likelihood", "--model", gmm, "--data", fake, "--out", tmp_path / "l.json"],
        ["info", fake],
    ):
        rc, _, err = _cli(capsys, *argv)
        line = _one_line(err)
        assert rc == 2 and "not an .npz archive" in line and "pickle" not in line, (argv, line)
    # an existing file given as --run is "not a directory", not "not found"
    notdir = tmp_path / "notdir"
    notdir.write_text("x")
    for cmd in ("sample", "likelihood"):
        argv = (
            ["sample", "--run", notdir, "--sampler", "heun", "--steps", "4", "--num", "8", "--out", tmp_path / "a.npz"]
            if cmd == "sample"
            else ["likelihood", "--run", notdir, "--data", "moons", "--out", tmp_path / "l.json"]
        )
        rc, _, err = _cli(capsys, *argv)
        line = _one_line(err)
        assert rc == 2 and "is not a directory" in line and "not found" not in line, line
    assert not (tmp_path / "a.npz").exists() and not (tmp_path / "l.json").exists()


def test_quickstart_validates_before_creating(tmp_path, capsys):
    for flag, value in (("--steps", "0"), ("--classifier-steps", "-1"), ("--num", "1")):
        out = tmp_path / "qs" / "deeper"
        rc, _, err = _cli(capsys, "quickstart", "--out", out, flag, value, "--no-progress")
        assert rc == 2 and flag in _one_line(err)
        assert not (tmp_path / "qs").exists()


def test_failed_command_leaves_no_folder(tmp_path, gmm, capsys):
    from scorekit.outputs import new_output_dir

    target = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), new_output_dir(target):
        (target / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert not (tmp_path / "a").exists()
    existing = tmp_path / "kept"
    existing.mkdir()
    (existing / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), new_output_dir(existing / "new"):
        raise RuntimeError("boom")
    assert (existing / "old.txt").read_text() == "old" and not (existing / "new").exists()
    with pytest.raises(RuntimeError), new_output_dir(tmp_path / "job", keep_if_files=True):
        (tmp_path / "job" / "ckpt.safetensors").write_text("resumable")
        raise RuntimeError("interrupted")
    assert (tmp_path / "job" / "ckpt.safetensors").exists()
    # a sample whose model fails to load leaves no output file and no new folder
    rc, _, _ = _cli(capsys, *_sample("gmm:/no/such.json", tmp_path / "new" / "s.npz"))
    assert rc == 2 and not (tmp_path / "new").exists()


def test_rk45_steps(tmp_path, gmm, capsys):
    argv = ["sample", "--model", gmm, "--sampler", "rk45", "--num", "8", "--out", tmp_path / "r.npz", "--no-progress"]
    rc, _, err = _cli(capsys, *argv, "--steps", "1")
    line = _one_line(err)
    assert rc == 2 and "adaptive" in line and not (tmp_path / "r.npz").exists()
    rc, out, _ = _cli(capsys, *argv, "--steps", "3", "--sampler-opt", "rtol=1e-3", "--sampler-opt", "atol=1e-3")
    assert rc == 0 and "adaptive" in out
    with np.load(tmp_path / "r.npz") as z:
        assert float(z["nfe"]) > 3 and z["samples"].std(0)[0] > 0.5  # integrated, not the mean
    import torch

    from scorekit.analytic import GaussianMixture
    from scorekit.samplers import sample_rk45

    den = GaussianMixture(SPEC["weights"], SPEC["means"], SPEC["variances"]).denoiser(None)
    with pytest.raises(ValueError, match="adaptive"):  # the library refuses too
        sample_rk45(den, torch.randn(4, 2), torch.tensor([10.0, 0.0]))


def test_one_file_mode_for_all_outputs(tmp_path, gmm, capsys):
    from scorekit.checkpoint import save_tensors, write_json_atomic

    old = os.umask(0o022)
    try:
        assert _cli(capsys, *_sample(gmm, tmp_path / "s.npz"))[0] == 0
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        import torch

        save_tensors(tmp_path / "w.safetensors", {"w": torch.zeros(2)})
        (tmp_path / "plain.txt").write_text("x")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir() if p.is_file()}
        assert set(modes.values()) == {0o644}, modes
        os.umask(0o077)
        write_json_atomic(tmp_path / "private.json", {"x": 1})
        assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_default_batch_size_fits_the_data():
    from scorekit.sampling import default_batch_size

    assert default_batch_size((2,), 20_000) == 1024  # vectors on a CPU: arithmetic-bound beyond ~256
    assert default_batch_size((2,), 20_000, "cuda") == 16_384  # launch-bound on an accelerator
    assert default_batch_size((2,), 10) == 10
    assert default_batch_size((3, 32, 32), 50_000) == 682  # ~2^21 values per batch
    assert default_batch_size((3, 32, 32), 50_000, "cuda") == 2730
    assert default_batch_size((3, 256, 256), 1000) == 10
    assert default_batch_size((3, 4096, 4096), 5) == 1


def test_help_points_to_formats_doc(capsys):
    for cmd in (["sample"], ["likelihood"], ["import", "score-sde"], ["tune-schedule"]):
        with pytest.raises(SystemExit):
            main([*cmd, "--help"])
        assert "docs/formats.md" in capsys.readouterr().out, cmd


def test_progress_bars_stay_out_of_logs(tmp_path, gmm, capsys):
    """stderr is not a terminal under pytest: training, sampling and likelihood print no bars there."""
    argv = ["train", "--data", gmm[len("gmm:") :], "--steps", "3", "--batch-size", "8", "--out", tmp_path / "run"]
    rc, _, err = _cli(capsys, *argv)
    if rc != 0:  # the data flag takes a gmm: spec
        rc, _, err = _cli(capsys, "train", "--data", gmm, *argv[3:])
    assert rc == 0 and "step/s" not in err and "\r" not in err, err
    rc, _, err = _cli(capsys, "sample", "--run", tmp_path / "run", "--sampler", "heun", "--steps", "3", "--num", "4",
                      "--out", tmp_path / "s.npz")  # fmt: skip
    assert rc == 0 and "sample/s" not in err and "\r" not in err, err
    argv = ["likelihood", "--model", gmm, "--data", "moons", "--num", "4", "--out", tmp_path / "l.json"]
    rc, _, err = _cli(capsys, *argv)
    assert rc == 0 and "batch/s" not in err and "\r" not in err, err


def test_aborted_npz_leaves_no_folder(tmp_path):
    from scorekit.sampling import NpzStreamWriter

    w = NpzStreamWriter(tmp_path / "a" / "b" / "s.npz", "samples", (4, 2))
    w.append(np.zeros((2, 2), np.float32))
    w.abort()
    assert not (tmp_path / "a").exists()
    w = NpzStreamWriter(tmp_path / "c" / "s.npz", "samples", (2, 2))
    w.append(np.zeros((2, 2), np.float32))
    w.close()
    assert (tmp_path / "c" / "s.npz").is_file()
