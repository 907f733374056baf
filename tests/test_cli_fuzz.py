"""Fuzzing the command line: whatever the arguments, scorekit answers with exit status 0 or a one-line error
(status 2) — never a traceback, never an internal error (status 1); a refused command changes no existing file
and leaves no new file or folder behind."""

import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorekit.cli import main

NUMBERS = ["-1", "0", "1", "2", "nan", "inf", "abc", "", "1e12", "0.5"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    good = d / "gmm.json"
    good.write_text(
        json.dumps({"weights": [0.5, 0.5], "means": [[-1, 0], [1, 0]], "variances": [[0.1, 0.1], [0.1, 0.1]]})
    )
    bad = d / "bad.json"
    bad.write_text('{"weights": [1], "means": [[0, 0]], "variances": [[-1')
    shapes = d / "shapes.json"
    shapes.write_text(json.dumps({"weights": [1, 2], "means": [[0]], "variances": [[1]]}))
    cfg_bad = d / "cfg.json"
    cfg_bad.write_text(json.dumps({"training": {"lr": "fast", "nope": 1}}))
    junk = d / "junk.npz"
    junk.write_bytes(b"PK\x03\x04not really a zip")
    text = d / "text.npz"
    text.write_text("a text file with an .npz name\n")
    keep = d / "keep.json"  # a precious file: used as the parent of outputs, never to be touched
    keep.write_text('{"precious": true}\n')
    import numpy as np

    samples = d / "samples.npz"
    np.savez(samples, samples=np.zeros((8, 2), np.float32), nfe=np.float64(3))
    return {"good": str(good), "bad": str(bad), "shapes": str(shapes), "cfg": str(cfg_bad), "junk": str(junk),
            "text": str(text), "keep": str(keep), "samples": str(samples), "dir": d}  # fmt: skip


def _flag_values(files):
    out = str(files["dir"] / "out")
    models = [f"gmm:{files['good']}", f"gmm:{files['bad']}", f"gmm:{files['shapes']}", "gmm:/no/such.json", "digits"]
    return {
        "--model": st.sampled_from(models),
        "--run": st.sampled_from([str(files["dir"]), "/no/such/run", files["good"], files["keep"]]),
        "--data": st.sampled_from(
            ["moons", "nope", "/no/such/data", files["junk"], files["text"], f"gmm:{files['bad']}", ""]
        ),
        "--process": st.sampled_from(["ve", "vp", "subvp", "ddpm", "edm", "xx", ""]),
        "--sampler": st.sampled_from(["heun", "euler_maruyama", "pf_euler", "rk45", "nope", "pc"]),
        "--steps": st.sampled_from(NUMBERS),
        "--num": st.sampled_from(NUMBERS),
        "--batch-size": st.sampled_from(NUMBERS),
        "--seed": st.sampled_from(NUMBERS),
        "--out": st.sampled_from(
            [out + ".npz", out + ".json", out, "/proc/forbidden/x.npz", files["keep"] + "/x.npz", files["keep"] + "/x"]
        ),
        "--schedule": st.sampled_from(["karras", "log", "uniform_t", "1,0.5,0", "0.5,1", "x,y", "nan"]),
        "--sigma-max": st.sampled_from(NUMBERS),
        "--sampler-opt": st.sampled_from(["eta=0.5", "bogus=1", "novalue", "s_churn=nan"]),
        "--config": st.sampled_from([files["cfg"], files["bad"], "/no/config.json"]),
        "--samples": st.sampled_from(
            [files["junk"], "/no/samples.npz", files["good"], files["text"], files["samples"]]
        ),
        "--device": st.sampled_from(["cpu", "cuda", "tpu", "cuda:7"]),
        "--nfe": st.sampled_from(NUMBERS),
        "--classifier-steps": st.sampled_from(["0", "-1", "x", "1"]),
        "--path": st.sampled_from([files["junk"], files["text"], files["keep"], "/no/such", str(files["dir"])]),
        "--checkpoint": st.sampled_from([files["junk"], files["text"], "/no/such.pth"]),
        "--config-name": st.sampled_from(["nope", files["bad"], files["keep"], "cifar10_ncsnpp_continuous"]),
    }


COMMANDS = {
    "sample": ["--model", "--run", "--process", "--sampler", "--steps", "--num", "--batch-size", "--seed", "--out"]
    + ["--schedule", "--sigma-max", "--sampler-opt", "--device"],
    "train": ["--data", "--process", "--steps", "--batch-size", "--seed", "--config", "--device", "--out"],
    "likelihood": ["--model", "--run", "--process", "--data", "--num", "--out"],
    "evaluate": ["--samples", "--data", "--out"],
    "tune-schedule": ["--model", "--run", "--process", "--sampler", "--nfe", "--seed", "--out"],
    "quickstart": ["--out", "--num", "--seed", "--device"],
    "info": [],
    "import": [],
}
# positional / fixed parts that keep a valid draw quick (quickstart never gets a valid --steps)
_FIXED = {
    "train": lambda d: ["--steps", d.draw(st.sampled_from(["1", "0", "-3", "x"])), "--no-progress"],
    "sample": lambda d: ["--no-progress"],
    "tune-schedule": lambda d: ["--teachers", "2", "--grid", "4", "--no-progress"],
    "quickstart": lambda d: ["--steps", d.draw(st.sampled_from(["0", "-1", "x"])), "--no-progress"],
}


def _snapshot(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_traceback_for_any_arguments(files, data, capsys):
    values = _flag_values(files)
    cmd = data.draw(st.sampled_from(sorted(COMMANDS)))
    flags = data.draw(st.lists(st.sampled_from(COMMANDS[cmd]), max_size=8, unique=True)) if COMMANDS[cmd] else []
    argv = [cmd]
    if cmd == "info":
        argv.append(data.draw(values["--path"]))
    if cmd == "import":
        source = data.draw(st.sampled_from(["score-sde", "adm", "edm", "diffusers", "nope"]))
        argv += [source, data.draw(values["--checkpoint"])]
        if source in ("score-sde", "adm"):
            argv += ["--config", data.draw(values["--config-name"])]
        argv += ["--out", data.draw(values["--out"])]
    for f in flags:
        argv += [f, data.draw(values[f])]
    argv += _FIXED.get(cmd, lambda d: [])(data)
    before = _snapshot(files["dir"])
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse: one line, status 2
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    assert rc in (0, 2, None), (argv, rc, err)
    if rc == 2:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert len(lines) == 1, (argv, err)
        assert _snapshot(files["dir"]) == before, ("a refused command changed files", argv, err)
