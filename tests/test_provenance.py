"""Provenance records (.npz / .json / safetensors) and `scorekit info` on files and run directories."""

import json

import numpy as np
import pytest
import torch

from scorekit.provenance import (
    attach_to_json,
    attach_to_npz,
    config_sha256,
    npz_entry,
    provenance,
    read_provenance,
)


def _cli(*argv):
    from scorekit.cli import main

    return main([str(a) for a in argv])


def _gmm(tmp_path):
    spec = {"weights": [0.5, 0.5], "means": [[-1.0, 0.0], [1.0, 0.0]], "variances": [[0.1, 0.1], [0.1, 0.1]]}
    p = tmp_path / "gmm.json"
    p.write_text(json.dumps(spec))
    return p, spec


def _run(tmp_path):
    from scorekit.checkpoint import save_checkpoint, write_config
    from scorekit.ema import EMA

    cfg = {"kind": "score_model", "data": {"spec": "moons"}, "process": {"name": "vp"}, "objective": "dsm",
           "network": {"arch": "mlp"}, "training": {"steps": 40, "ema_sigma_rel": 0.1}}  # fmt: skip
    run = tmp_path / "run"
    write_config(run, cfg)
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, (0.05, 0.10))
    for step in range(1, 21):
        ema.update(net, step)
        if step % 10 == 0:
            ema.save_snapshots(run / "ema_snapshots")
    save_checkpoint(run, 20, {"model": (net.state_dict(), {}), "ema": (ema.module(0.1).state_dict(),
                                                                        {"sigma_rel": "0.1"})})  # fmt: skip
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (5, 10, 15, 20)))
    return run, cfg


def test_record_fields_and_model_identity(tmp_path):
    p, spec = _gmm(tmp_path)
    rec = provenance(["scorekit", "sample", "--seed", "3"], model=f"gmm:{p}", seed=3, sampler="heun")
    assert rec["scorekit_version"] and rec["torch_version"] == torch.__version__
    assert rec["command_line"] == "scorekit sample --seed 3" and rec["time_utc"].endswith("Z")
    assert rec["model"] == {"kind": "gmm", "spec": f"gmm:{p}", "spec_sha256": config_sha256(spec)}
    assert rec["settings"] == {"seed": 3, "sampler": "heun"}
    # host-independent: no machine name or user anywhere in the record
    import getpass
    import socket

    text = json.dumps(rec)
    assert socket.gethostname() not in text.replace(str(tmp_path), "") or socket.gethostname() == "localhost"
    assert f'"{getpass.getuser()}"' not in text
    # config hash does not depend on key order
    assert config_sha256({"a": 1, "b": [1, 2]}) == config_sha256({"b": [1, 2], "a": 1})
    run, cfg = _run(tmp_path)
    m = provenance([], model=run)["model"]
    assert m["kind"] == "run" and m["config_sha256"] == config_sha256(cfg) and m["step"] == 20
    assert len(m["ema_sha256"]) == 64 and m["ema_sigma_rel"] == 0.1
    with pytest.raises(ValueError):
        provenance([], model=tmp_path / "missing_run")


def test_attach_and_read_back(tmp_path):
    rec = provenance(["scorekit", "sample"], seed=1)
    np.savez(tmp_path / "s.npz", samples=np.zeros((4, 2), np.float32), nfe=np.float64(10))
    assert read_provenance(tmp_path / "s.npz") is None
    attach_to_npz(tmp_path / "s.npz", rec)
    assert read_provenance(tmp_path / "s.npz") == rec
    with np.load(tmp_path / "s.npz") as z:  # still an ordinary npz with its arrays and a string entry
        assert set(z.files) == {"samples", "nfe", "provenance"} and z["provenance"].dtype.kind == "U"
    attach_to_npz(tmp_path / "s.npz", {**rec, "settings": {"seed": 2}})  # replacing an existing entry
    assert read_provenance(tmp_path / "s.npz")["settings"] == {"seed": 2}
    np.savez(tmp_path / "t.npz", samples=np.ones(3), provenance=npz_entry(rec))  # writers that build the npz
    assert read_provenance(tmp_path / "t.npz") == rec
    obj = attach_to_json({"fid": 1.5}, rec)
    (tmp_path / "m.json").write_text(json.dumps(obj))
    assert read_provenance(tmp_path / "m.json") == rec and obj["fid"] == 1.5
    with pytest.raises(ValueError):
        attach_to_json([1, 2], rec)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    for bad in ("bad.npz", "nowhere.npz"):
        with pytest.raises(ValueError):
            read_provenance(tmp_path / bad)
    np.savez(tmp_path / "badprov.npz", samples=np.ones(2), provenance=np.array("{not json"))
    with pytest.raises(ValueError, match="provenance"):
        read_provenance(tmp_path / "badprov.npz")


def test_info_command(tmp_path, capsys):
    rec = provenance(["scorekit", "evaluate"], seed=0)
    np.savez(tmp_path / "s.npz", samples=np.zeros((4, 2), np.float32), nfe=np.float64(10), provenance=npz_entry(rec))
    assert _cli("info", tmp_path / "s.npz") == 0
    out = capsys.readouterr().out
    assert "samples: " in out and "[4, 2]" in out and "command_line: scorekit evaluate" in out
    (tmp_path / "m.json").write_text(json.dumps(attach_to_json({"w2": 0.25, "num_samples": 4}, rec)))
    assert _cli("info", tmp_path / "m.json") == 0
    out = capsys.readouterr().out
    assert "w2: 0.25" in out and "scorekit_version" in out
    run, _ = _run(tmp_path)
    assert _cli("info", run, "--log-lines", 2) == 0
    out = capsys.readouterr().out
    assert "steps_planned: 40" in out and "steps_done: 20" in out and '"sigma_rel": 0.1' in out
    assert '"count": 4' in out and out.count('"loss"') == 2 and "process: vp" in out
    assert _cli("info", run, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ema_snapshots"]["sigma_rels"] == [0.05, 0.1] and info["log_records"] == 4
    (tmp_path / "corrupt.npz").write_bytes(b"\x00" * 50)
    (tmp_path / "corrupt.json").write_text("{oops")
    (tmp_path / "x.txt").write_text("hi")
    for bad in ("corrupt.npz", "corrupt.json", "x.txt", "missing.npz"):
        assert _cli("info", tmp_path / bad) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err, (bad, err)
    (run / "model.safetensors").write_bytes(b"garbage")
    assert _cli("info", run) == 2
    assert capsys.readouterr().err.count("\n") == 1


# --- every writer records where its output came from ------------------------------------------------------------
def _labelled_gmm(tmp_path):
    p = tmp_path / "lgmm.json"
    spec = {"weights": [0.5, 0.5], "means": [[-1.0, 0.0], [1.0, 0.0]], "variances": [[0.1, 0.1], [0.1, 0.1]],
            "labels": [0, 1]}  # fmt: skip
    p.write_text(json.dumps(spec))
    return p, spec


def test_sample_files_carry_provenance(tmp_path, capsys):
    p, spec = _labelled_gmm(tmp_path)
    base = ["sample", "--model", f"gmm:{p}", "--num", 16, "--seed", 5, "--no-progress"]
    assert _cli(*base, "--sampler", "heun", "--steps", 4, "--schedule", "karras", "--out", tmp_path / "a.npz") == 0
    rec = read_provenance(tmp_path / "a.npz")
    assert rec["command_line"].startswith("scorekit sample --model gmm:") and "--seed 5" in rec["command_line"]
    assert rec["model"] == {"kind": "gmm", "spec": f"gmm:{p}", "spec_sha256": config_sha256(spec)}
    s = rec["settings"]
    assert s["sampler"] == "heun" and s["steps"] == 4 and s["seed"] == 5 and s["num"] == 16
    assert s["schedule"]["spacing"] == "karras" and s["process"] == "vp"
    with np.load(tmp_path / "a.npz") as z:
        assert rec["nfe"] == float(z["nfe"]) and rec["wall_s"] >= 0
    # the --nfe budget path records its plan
    assert _cli(*base, "--nfe", 6, "--out", tmp_path / "b.npz") == 0
    rec = read_provenance(tmp_path / "b.npz")
    assert rec["nfe_plan"]["nfe_budget"] == 6 and rec["settings"]["nfe_budget"] == 6
    assert rec["settings"]["sampler"] == rec["nfe_plan"]["sampler"] and rec["nfe"] <= 6
    # DLG and guidance
    argv = [*base, "--sampler", "heun", "--steps", 3, "--dmcmc", "dlg", "--noise-posterior", "exact"]
    assert _cli(*argv, "--out", tmp_path / "c.npz") == 0
    assert read_provenance(tmp_path / "c.npz")["settings"]["dmcmc"]["method"] == "dlg"
    argv = [*base, "--sampler", "heun", "--steps", 3, "--guidance", "classifier", "--classifier", "exact"]
    assert _cli(*argv, "--class", 1, "--scale", 2, "--out", tmp_path / "d.npz") == 0
    g = read_provenance(tmp_path / "d.npz")["settings"]["guidance"]
    assert g["guidance"] == "classifier" and g["classifier"] == "exact" and g["scale"] == 2.0
    capsys.readouterr()
    assert _cli("info", tmp_path / "d.npz") == 0
    out = capsys.readouterr().out
    assert "wall_s:" in out and '"sampler": "heun"' in out and "command_line:" in out


def test_likelihood_tune_and_config_carry_provenance(tmp_path):
    p, spec = _gmm(tmp_path)
    argv = ["likelihood", "--model", f"gmm:{p}", "--data", "moons", "--num", 6, "--out", tmp_path / "l.json"]
    assert _cli(*argv, "--no-progress") == 0
    rec = read_provenance(tmp_path / "l.json")
    assert rec["model"]["spec_sha256"] == config_sha256(spec) and rec["settings"]["method"] == "ode"
    assert rec["nfe"] == json.loads((tmp_path / "l.json").read_text())["nfe"] and "wall_s" in rec
    argv = ["tune-schedule", "--model", f"gmm:{p}", "--nfe", 3, "--teachers", 2, "--grid", 6, "--out"]
    assert _cli(*argv, tmp_path / "s.json", "--no-progress") == 0
    rec = read_provenance(tmp_path / "s.json")
    assert rec["settings"]["nfe"] == 3 and rec["model"]["kind"] == "gmm"
    assert torch.is_grad_enabled()  # the command does not switch autograd off for its caller
    from scorekit.samplers.schedules import read_schedule_file

    assert len(read_schedule_file(tmp_path / "s.json")["sigmas"]) == 4  # still a valid schedule file
    # config.json gets a record when written; the config hash ignores it
    from scorekit.checkpoint import read_config, write_config

    cfg = {"kind": "score_model", "data": {"spec": "moons"}}
    write_config(tmp_path / "r", cfg)
    got = read_config(tmp_path / "r")
    assert got["provenance"]["settings"]["kind"] == "score_model" and config_sha256(got) == config_sha256(cfg)
    from scorekit.run_config import validate_config

    with pytest.raises(ValueError, match="config section"):  # a config read back validates up to its sections
        validate_config(got)


def test_quickstart_sample_files_and_labelled_picture(tmp_path):
    from PIL import Image

    from scorekit.commands.quickstart import _save_comparison
    from scorekit.data import DataTransform

    run, _ = _run(tmp_path)
    g = torch.Generator().manual_seed(0)
    rows = [
        {"method": "heun", "steps": 4, "nfe": 7.0, "metric": 12.5, "samples": torch.rand(12, 1, 8, 8, generator=g)},
        {"method": "dlg+heun", "steps": 3, "nfe": 6.5, "metric": 9.25, "samples": torch.rand(12, 1, 8, 8, generator=g)},
    ]
    _save_comparison(tmp_path, rows, DataTransform.identity(), run, seed=3, dlg={"chains": 4})
    for name, row in zip(("samples_heun_comparison.npz", "samples_dlg_heun_comparison.npz"), rows):
        with np.load(tmp_path / name) as z:
            assert z["samples"].shape == (12, 1, 8, 8) and float(z["nfe"]) == row["nfe"]
        rec = read_provenance(tmp_path / name)
        assert rec["settings"]["sampler"] == row["method"] and rec["model"]["kind"] == "run"
    assert read_provenance(tmp_path / "samples_dlg_heun_comparison.npz")["settings"]["dmcmc"] == {"chains": 4}
    img = Image.open(tmp_path / "heun_vs_dlg.png")
    assert img.size[0] > img.size[1]  # two panels side by side


def test_panel_titles():
    from scorekit.plots import panel_title

    assert panel_title("dlg+heun", 6.5, FID=9.25) == "dlg+heun · NFE 6.5 · FID 9.25"
    assert panel_title("heun", None, FID=None) == "heun"


def test_quickstart_end_to_end_tiny(tmp_path):
    """The whole quickstart on a tiny budget: every promised file, the grid drawn by the quickstart's grid sampler
    (recorded in its provenance), and the comparison's two rows at equal cost (classifier counted, ≤ 10)."""
    from scorekit.cli import main
    from scorekit.commands.quickstart import GRID_SAMPLER, GRID_STEPS, QUICKSTART_NFE

    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--steps", "2", "--classifier-steps", "2", "--num", "40",
                 "--no-progress"]) == 0  # fmt: skip
    for name in ("samples.npz", "samples.png", "heun_vs_dlg.png", "dmcmc_comparison.md", "summary.json"):
        assert (out / name).is_file(), name
    rec = read_provenance(out / "samples.npz")
    assert rec["settings"]["sampler"] == GRID_SAMPLER and rec["settings"]["steps"] == GRID_STEPS
    with np.load(out / "samples.npz") as z:
        assert z["samples"].shape == (100, 1, 8, 8) and float(z["nfe"]) == GRID_STEPS
    rows = json.loads((out / "dmcmc_comparison.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["dpmpp_2m", "dlg+dpmpp_2m"]
    plain, dlg = rows
    # the classifier's calls are paid from the same budget, so DLG's own denoiser NFE stays below it
    assert plain["nfe"] == QUICKSTART_NFE and dlg["classifier_evals"] > 0 and 0 < dlg["nfe"] < QUICKSTART_NFE
