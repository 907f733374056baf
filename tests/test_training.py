"""Training loop, run directories and checkpoints: resume is bit-identical, damage is refused cleanly."""

import json

import pytest
import torch

from scorekit import checkpoint as ckpt
from scorekit.analytic import GaussianMixture
from scorekit.metrics import sliced_wasserstein
from scorekit.sampling import generate
from scorekit.training import BatchOrder, TrainingError, default_config, train, validate_config


def _small_cfg(steps=12, **kw):
    cfg = default_config("moons", "vp", steps=steps, batch_size=32, checkpoint_every=4, log_every=2, **kw)
    cfg["network"].update({"hidden": 32, "depth": 2, "emb_dim": 16})
    return cfg


def _weights(run):
    t, _ = ckpt.load_tensors(run / "model.safetensors")
    e, _ = ckpt.load_tensors(run / "ema.safetensors")
    return t, e


def test_resume_is_bit_identical(tmp_path):
    cfg = _small_cfg(steps=12)
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False, max_steps_this_run=5)  # stops (and checkpoints) at step 5
    st, _ = ckpt.load_tensors(tmp_path / "b" / "state.safetensors")
    assert int(st["step"]) == 5
    res = train(cfg, tmp_path / "b", progress=False, resume=True)
    assert res.step == 12
    (ma, ea), (mb, eb) = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert ma.keys() == mb.keys()
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k
        assert torch.equal(ea[k], eb[k]), k
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6, 8, 10, 12] and all(r["loss"] > 0 for r in log)


def test_run_directory_layout_and_keep_last(tmp_path):
    cfg = _small_cfg(steps=12)
    cfg["training"]["keep_checkpoints"] = 2
    train(cfg, tmp_path / "r", progress=False)
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "model.safetensors", "ema.safetensors", "state.safetensors", "log.jsonl"} <= names
    steps = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert steps == ["step_00000008", "step_00000012"]
    assert not list((tmp_path / "r").glob("*.pth")) and not list((tmp_path / "r").rglob("*.pt"))
    den = ckpt.load_denoiser(tmp_path / "r")
    x = torch.randn(4, 2)
    assert den(x, 1.0).shape == (4, 2)


def test_refuses_to_overwrite_a_trained_run(tmp_path):
    cfg = _small_cfg(steps=2)
    train(cfg, tmp_path / "r", progress=False)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already holds a trained run"):
        train(cfg, tmp_path / "r", progress=False)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before


def test_resume_with_a_different_model_is_refused(tmp_path):
    train(_small_cfg(steps=2), tmp_path / "r", progress=False)
    other = _small_cfg(steps=4)
    other["network"]["hidden"] = 64
    with pytest.raises(ValueError, match="different 'network'"):
        train(other, tmp_path / "r", progress=False, resume=True)


@pytest.mark.parametrize("damage", ["truncate", "flip", "header"])
def test_damaged_checkpoints_are_refused_with_one_line(tmp_path, damage):
    train(_small_cfg(steps=2), tmp_path / "r", progress=False)
    f = tmp_path / "r" / "ema.safetensors"
    data = bytearray(f.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-5] ^= 0x40
    else:
        data[10] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_denoiser(tmp_path / "r")
    assert "ema.safetensors" in str(e.value) and "\n" not in str(e.value)


def test_config_validation_messages():
    cfg = _small_cfg()
    for mutate, msg in [
        (lambda c: c["training"].update(steps=0), "steps must be > 0"),
        (lambda c: c["training"].update(lr="fast"), "lr must be a number"),
        (lambda c: c["training"].update(bogus=1), "unknown training setting"),
        (lambda c: c.update(extra={}), "unknown config key"),
        (lambda c: c["process"].update(beta_min=30.0), "beta_min < beta_max"),
        (lambda c: c["training"].update(optimizer="sgd"), "optimizer must be adamw|adam"),
        (lambda c: c.update(kind="painting"), "unknown run kind"),
        (lambda c: (c.update(kind="noise_classifier"), c.pop("denoiser")), "section 'levels' is missing"),
        (lambda c: c.update(levels={}), "unknown config key"),  # a score model has no σ grid
    ]:
        c = json.loads(json.dumps(cfg))
        mutate(c)
        with pytest.raises(ValueError, match=msg):
            validate_config(c)


def test_classifier_kinds_default_to_their_own_hyper_parameters():
    from scorekit.training import training_defaults

    nc, clf, score = training_defaults("noise_classifier"), training_defaults("classifier"), training_defaults()
    assert (nc["optimizer"], nc["lr"], nc["weight_decay"], nc["warmup"]) == ("adam", 1e-3, 0.0, 0)
    assert (clf["optimizer"], clf["lr"], clf["weight_decay"], clf["warmup"]) == ("adamw", 3e-4, 0.05, 0)
    assert nc["ema_warmup"] and clf["ema_warmup"] and not score["ema_warmup"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = _small_cfg(steps=8)
    train(cfg, tmp_path / "r", progress=False, max_steps_this_run=4)
    good = (tmp_path / "r" / "model.safetensors").read_bytes()
    cfg["training"]["lr"] = 1e30  # blows the weights up → non-finite loss
    cfg["training"]["grad_clip"] = 0.0
    with pytest.raises(TrainingError, match="non-finite"):
        train(cfg, tmp_path / "r", progress=False, resume=True)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == good


def test_dsm_trained_mlp_matches_gmm_within_twice_the_floor(tmp_path):
    """A DSM-trained MLP on a 2-D mixture samples it within 2× the two-sample sliced-W floor."""
    gmm = GaussianMixture([0.5, 0.5], [[-1.5, 0.0], [1.5, 0.0]], [[0.15, 0.15], [0.15, 0.15]])
    spec = tmp_path / "gmm.json"
    spec.write_text(json.dumps(gmm.to_spec()))
    cfg = default_config(f"gmm:{spec}", "vp", steps=1500, batch_size=256, lr=2e-3, warmup=50, checkpoint_every=0)
    cfg["network"].update({"hidden": 128, "depth": 3, "emb_dim": 32})
    cfg["training"]["ema_decay"] = 0.99
    cfg.update(objective="dsm", objective_options={})
    train(cfg, tmp_path / "run", progress=False)
    den = ckpt.load_denoiser(tmp_path / "run")
    n = 2000
    out = generate(den, "pf_euler", 100, n, batch_size=n, seed=1).samples
    refs = [gmm.sample(n, torch.Generator().manual_seed(s))[0] for s in range(10, 16)]
    floor = sum(sliced_wasserstein(refs[i], refs[i + 1]) for i in range(0, 6, 2)) / 3
    err = sliced_wasserstein(out, gmm.sample(n, torch.Generator().manual_seed(99))[0])
    assert err < 2 * floor + 0.02, (err, floor)


def test_nan_policy_skip_skips_the_bad_step_and_keeps_training(tmp_path, monkeypatch):
    from scorekit import losses

    calls = {"n": 0}
    base = losses.OBJECTIVES["dsm"]

    def flaky(process, **kw):
        inner = base(process, **kw)

        class Flaky(type(inner)):
            def __call__(self, *a, **k):
                calls["n"] += 1
                out = super().__call__(*a, **k)
                return out * float("nan") if calls["n"] == 3 else out

        inner.__class__ = Flaky
        return inner

    monkeypatch.setitem(losses.OBJECTIVES, "dsm", flaky)
    cfg = _small_cfg(steps=6)
    cfg.update(objective="dsm", objective_options={})
    cfg["training"].update(nan_policy="skip", log_every=1)
    res = train(cfg, tmp_path / "r", progress=False)
    assert res.step == 6
    log = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["skipped"] == 1
    m, _ = ckpt.load_tensors(tmp_path / "r" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in m.values())


def test_periodic_sample_plots(tmp_path):
    cfg = _small_cfg(steps=4)
    cfg["training"].update(sample_every=2, sample_steps=3)
    train(cfg, tmp_path / "r", progress=False)
    pngs = sorted(p.name for p in (tmp_path / "r" / "samples").glob("*.png"))
    assert pngs == ["step_00000002.png", "step_00000004.png"]


def test_class_conditional_previews_show_each_class_in_its_own_column(tmp_path, monkeypatch):
    """A class-conditional run's preview grids sample the conditional branch: labels 0..K−1 across each row, K
    columns (an unconditional preview would show only the null label's branch)."""
    from PIL import Image

    from scorekit import training

    cfg = default_config("digits", "vp", class_conditional=True, steps=2, batch_size=8, checkpoint_every=2)
    cfg["network"].update(model_channels=8, channel_mult=[1], num_res_blocks=1, attn_resolutions=[])
    cfg["training"].update(sample_every=2, sample_steps=2)
    seen, real = [], training.generate

    def spy(*args, **kw):
        seen.append(kw.get("class_labels"))
        return real(*args, **kw)

    monkeypatch.setattr(training, "generate", spy)
    train(cfg, tmp_path / "r", progress=False)
    assert len(seen) == 1 and torch.equal(seen[0], torch.arange(60) % 10)
    png = Image.open(tmp_path / "r" / "samples" / "step_00000002.png")
    assert png.width > png.height  # 10 columns by 6 rows of 8×8 digits
    unconditional = _small_cfg(steps=2)
    unconditional["training"].update(sample_every=2, sample_steps=2)
    train(unconditional, tmp_path / "u", progress=False)
    assert seen[-1] is None


# --- the one shuffling style --------------------------------------------------------------------------------
def test_batch_order_covers_epochs_and_resumes_exactly():
    o = BatchOrder(10, torch.Generator().manual_seed(3))
    first = torch.cat([o.take(4) for _ in range(5)])  # 20 indices = two epochs exactly
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:].tolist()) == list(range(10))
    assert not torch.equal(first[:10], first[10:])  # a fresh permutation each epoch
    # resume from the middle of an epoch (the state the loop checkpoints): same batches as an uninterrupted order
    a = BatchOrder(10, torch.Generator().manual_seed(7))
    for _ in range(4):
        a.take(3)
    perm, pos, gen_state = a.perm.clone(), a.pos, a.gen.get_state()
    rest = [a.take(3) for _ in range(6)]
    b = BatchOrder(10, torch.Generator().manual_seed(99))
    b.perm, b.pos = perm, pos
    b.gen.set_state(gen_state)
    assert all(torch.equal(x, y) for x, y in zip(rest, [b.take(3) for _ in range(6)]))
    # ranks take disjoint slices of one global batch; a batch larger than the data spans epochs
    glob = BatchOrder(12, torch.Generator().manual_seed(0)).take(12)
    assert sorted(torch.cat([glob[0:6], glob[6:12]]).tolist()) == list(range(12))
    big = BatchOrder(3, torch.Generator().manual_seed(1)).take(7)
    assert len(big) == 7 and sorted(big[:3].tolist()) == [0, 1, 2]


# --- EMA in the loop (power-function EMA, snapshots) -------------------------------------------------------------
def test_run_ema_is_the_closed_form_power_ema_of_the_weights_trajectory(tmp_path):
    """ema.safetensors = Σ_τ w_t(τ) θ_τ with the discrete power profile of σ_rel 0.10 (ema.power_profile), θ_τ read
    from a checkpoint after every step."""
    import numpy as np

    from scorekit.ema import power_profile, sigma_rel_to_gamma

    steps = 10
    cfg = _small_cfg(steps=steps)
    cfg["training"].update({"checkpoint_every": 1, "keep_checkpoints": steps})
    run = tmp_path / "r"
    train(cfg, run, progress=False)
    thetas = [ckpt.load_tensors(run / "checkpoints" / f"step_{t:08d}" / "model.safetensors")[0] for t in range(1, 11)]
    w = power_profile(steps, sigma_rel_to_gamma(0.10))
    assert np.isclose(w.sum(), 1.0)
    ema, meta = ckpt.load_tensors(run / "ema.safetensors")
    assert float(meta["sigma_rel"]) == 0.10
    for k, v in ema.items():
        expect = sum(float(wi) * th[k].double() for wi, th in zip(w, thetas))
        torch.testing.assert_close(v.double(), expect, rtol=1e-5, atol=1e-6)
    snaps = sorted(p.name for p in (run / "ema_snapshots").iterdir())
    assert len(snaps) == 2 * steps  # max(1, 10 // 32) = every step, σ_rel 0.05 and 0.10


def test_ema_command_reproduces_the_trained_ema_from_a_real_runs_snapshots(tmp_path, capsys):
    from scorekit.cli import main

    cfg = _small_cfg(steps=96)
    cfg["training"].update({"ema_sigma_rel": 0.13, "checkpoint_every": 0, "log_every": 0})
    run = tmp_path / "r"
    train(cfg, run, progress=False)
    assert len(list((run / "ema_snapshots").iterdir())) == 2 * 32  # every 96 // 32 = 3 steps
    assert main(["ema", "--run", str(run), "--sigma-rel", "0.13", "--out", str(tmp_path / "x.safetensors")]) == 0
    rec, _ = ckpt.load_tensors(tmp_path / "x.safetensors")
    trained, _ = ckpt.load_tensors(run / "ema.safetensors")
    raw, _ = ckpt.load_tensors(run / "model.safetensors")
    err = sum(float((rec[k] - v).pow(2).sum()) for k, v in trained.items()) ** 0.5
    gap = sum(float((raw[k] - v).pow(2).sum()) for k, v in trained.items()) ** 0.5  # EMA vs raw weights
    assert err < 0.05 * gap, (err, gap)


def test_old_fixed_decay_configs_keep_working_and_snapshots_can_be_turned_off(tmp_path):
    cfg = _small_cfg(steps=6)
    cfg["training"].update({"ema_decay": 0.9, "ema_snapshot_every": 0})
    del cfg["training"]["ema_sigma_rel"]  # as in configs written before the power EMA
    train(cfg, tmp_path / "r", progress=False)
    model, _ = ckpt.load_tensors(tmp_path / "r" / "model.safetensors")
    ema, meta = ckpt.load_tensors(tmp_path / "r" / "ema.safetensors")
    assert meta["ema_decay"] == "0.9" and not (tmp_path / "r" / "ema_snapshots").exists()
    assert any(not torch.equal(ema[k], model[k]) for k in ema)
    assert "ema_sigma_rel" not in json.loads((tmp_path / "r" / "config.json").read_text())["training"]
    with pytest.raises(ValueError, match="ema_sigma_rel"):
        validate_config({**cfg, "training": {**cfg["training"], "ema_decay": None, "ema_sigma_rel": 0.5}})


# --- resume that says what it does --------------------------------------------------------------------------------
def test_resume_reports_truncates_the_log_and_drops_later_snapshots(tmp_path, capsys):
    cfg = _small_cfg(steps=12)
    cfg["training"]["log_every"] = 1
    run = tmp_path / "r"
    train(cfg, run, progress=False, max_steps_this_run=6)  # checkpoint at 4 and 6
    # simulate a kill after step 6's checkpoint had been superseded by logged steps 7–8 and a snapshot at 8
    with open(run / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": 7, "loss": 0.0}) + "\n" + json.dumps({"step": 8, "loss": 0.0}) + '\n{"step": 9')
    (run / "ema_snapshots" / "step_00000008_sigma_rel_0.1000.safetensors").write_bytes(b"junk")
    capsys.readouterr()
    train(cfg, run, progress=False, resume=True)
    assert "resuming from step 6 of 12" in capsys.readouterr().err
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))
    ckpt.load_tensors(run / "ema_snapshots" / "step_00000008_sigma_rel_0.1000.safetensors")  # rewritten, valid
    with pytest.raises(ValueError, match="already at step 12"):
        train({**cfg, "training": {**cfg["training"], "steps": 10}}, run, progress=False, resume=True)
    with pytest.raises(ValueError, match="global batch 32"):
        train({**cfg, "training": {**cfg["training"], "batch_size": 16}}, run, progress=False, resume=True)


def test_resume_flags_that_conflict_with_the_run_are_refused_in_one_line(tmp_path, capsys):
    from scorekit.cli import main

    run = tmp_path / "r"
    cfg = _small_cfg(steps=4)
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"network": cfg["network"], "training": {"checkpoint_every": 2}}))
    base = ["train", "--data", "moons", "--steps", "4", "--batch-size", "32", "--config", str(cfg_file)]
    assert main([*base, "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    for flag, value, old in [
        ("--data", "rings", "moons"),
        ("--lr", "0.005", "0.001"),
        ("--lr-decay", "0.5", "0.0"),
        ("--process", "ve", "vp"),
        ("--batch-size", "64", "32"),
    ]:
        assert main(["train", "--resume", "--out", str(run), flag, value, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flag in err and value in err and old in err, err
    assert main(["train", "--resume", "--out", str(run), "--steps", "6", "--data", "moons", "--no-progress"]) == 0
    assert "resuming from step 4 of 6" in capsys.readouterr().err


def test_lr_decay_follows_its_closed_form_and_reaches_the_optimizer(tmp_path):
    """training.lr_decay = 0.5 over 8 steps (warm-up 2): lr 0.5, 1, 1, 1, 1, 0.75, 0.5, 0.25 × lr, as logged; the
    first five updates equal a constant-lr run's bit for bit and the decayed ones do not."""
    runs = {}
    for decay in (0.0, 0.5):
        cfg = _small_cfg(steps=8, warmup=2, lr=1e-3, lr_decay=decay)
        cfg["training"].update(log_every=1, checkpoint_every=1, keep_checkpoints=8)
        train(cfg, tmp_path / str(decay), progress=False)
        runs[decay] = tmp_path / str(decay)
    log = [json.loads(line) for line in (runs[0.5] / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == pytest.approx([1e-3 * f for f in (0.5, 1, 1, 1, 1, 0.75, 0.5, 0.25)])

    def model_at(run, step):
        return ckpt.load_tensors(run / "checkpoints" / f"step_{step:08d}" / "model.safetensors")[0]

    for step, same in ((5, True), (8, False)):
        a, b = model_at(runs[0.0], step), model_at(runs[0.5], step)
        assert all(torch.equal(a[k], b[k]) for k in a) is same, step
    with pytest.raises(ValueError, match="lr_decay"):
        validate_config(_small_cfg(lr_decay=1.5))


def _tiny_run_losses(out, amp: str, steps: int) -> list[float]:
    """Train a small digits U-Net for `steps` steps at precision `amp`; the logged loss of every step."""
    cfg = default_config("digits", "ve", steps=steps, batch_size=16, log_every=1, checkpoint_every=steps, amp=amp)
    cfg["network"].update({"model_channels": 16, "channel_mult": [1, 2], "attn_resolutions": []})
    train(cfg, out, progress=False)
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_bf16_autocast_trains_on_a_cpu(tmp_path):
    """training.amp=bf16 runs the forward pass in bf16 on a CPU too (the cpu preset's choice where the CPU computes
    bf16 in hardware): the losses differ from float32's by bf16 rounding — not more — and stay finite."""
    a, b = (torch.tensor(_tiny_run_losses(tmp_path / amp, amp, 4)) for amp in ("none", "bf16"))
    assert len(a) == len(b) == 4 and torch.isfinite(b).all()
    assert not torch.equal(a, b)  # bf16 was in effect
    assert torch.allclose(a, b, rtol=0.05)


def test_fp16_on_a_cpu_says_it_runs_in_float32(tmp_path, capsys):
    """fp16 autocast is CUDA-only: a CPU run asked for it trains in float32 and says so in one line, rather than
    silently ignoring the setting; its losses equal a float32 run's exactly."""
    losses = {}
    for amp in ("none", "fp16"):
        losses[amp] = _tiny_run_losses(tmp_path / amp, amp, 3)
        err = capsys.readouterr().err
        assert ("training.amp=fp16 runs on CUDA only; this run on cpu computes in float32" in err) == (amp == "fp16")
    assert len(losses["none"]) == 3 and losses["none"] == losses["fp16"]
