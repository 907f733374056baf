"""Power-function EMA and post-hoc EMA (Karras et al. 2024, Sec. 3): σ_rel ↔ γ, the discrete profile's closed
form, bit-identical resume, post-hoc reconstruction against training with the target width directly, and the
`scorekit ema` command."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from scorekit.checkpoint import load_tensors, save_tensors
from scorekit.ema import (
    DEFAULT_SIGMA_REL,
    EMA,
    Snapshot,
    gamma_to_sigma_rel,
    list_snapshots,
    posthoc_coefficients,
    power_beta,
    power_profile,
    reconstruct_ema,
    sigma_rel_to_gamma,
)


def test_sigma_rel_gamma_closed_forms():
    # EDM2 quotes γ = 16.97 for σ_rel 0.05 and γ = 6.94 for σ_rel 0.10.
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.01)
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    for s in (0.01, 0.05, 0.1, 0.2, 0.27):
        assert gamma_to_sigma_rel(sigma_rel_to_gamma(s)) == pytest.approx(s, rel=1e-12)
    assert gamma_to_sigma_rel(0.0) == pytest.approx(math.sqrt(1 / 12))  # uniform average
    for bad in (0.0, -0.1, 0.3, float("nan")):
        with pytest.raises(ValueError):
            sigma_rel_to_gamma(bad)
    assert power_beta(1, 6.94) == 0.0  # the first update copies the model


@pytest.mark.parametrize("sigma_rel", [0.05, 0.1, 0.2])
def test_profile_closed_form_matches_recursion(sigma_rel):
    g = sigma_rel_to_gamma(sigma_rel)
    T = 300
    w = np.zeros(T + 1)
    for t in range(1, T + 1):
        b = power_beta(t, g)
        w *= b
        w[t] += 1 - b
    p = power_profile(T, g)
    np.testing.assert_allclose(p, w[1:], rtol=1e-12, atol=1e-15)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    # its relative width tends to σ_rel (the profile is ∝ τ^γ up to O(1/t))
    big = 200_000
    q = power_profile(big, g)
    tau = np.arange(1, big + 1) / big
    mean = (q * tau).sum()
    assert math.sqrt((q * (tau - mean) ** 2).sum()) == pytest.approx(sigma_rel, rel=1e-3)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))


def _train(steps, sigma_rels, snapshot_every=0, start=None):
    """Full-batch gradient descent on a fixed regression problem: a deterministic, smooth trajectory."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g)
    y = torch.stack([torch.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2], torch.cos(x.sum(1))], 1)
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    ema = EMA(net, sigma_rels)
    snaps, trajectory = [], []
    for step in range(1, steps + 1):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(net, step)
        trajectory.append(nn.utils.parameters_to_vector(net.parameters()).detach().clone())
        if snapshot_every and step % snapshot_every == 0:
            for s in (0.05, 0.10):
                snaps.append(Snapshot(step, s, state={k: v.clone() for k, v in ema.module(s).state_dict().items()}))
    return net, ema, snaps, torch.stack(trajectory)


def _vec(state):
    net = _net()
    net.load_state_dict(state)
    return nn.utils.parameters_to_vector(net.parameters()).detach()


def test_ema_equals_profile_weighted_average():
    net, ema, _, traj = _train(120, (0.05, 0.15))
    for s in (0.05, 0.15):
        w = torch.from_numpy(power_profile(120, sigma_rel_to_gamma(s))).float()
        expect = (w[:, None] * traj).sum(0)
        got = nn.utils.parameters_to_vector(ema.module(s).parameters())
        torch.testing.assert_close(got, expect, rtol=1e-4, atol=1e-5)
    assert ema.module() is ema.module(0.05)
    with pytest.raises(ValueError, match="not tracked"):
        ema.module(0.3)
    with pytest.raises(ValueError, match="increase"):
        ema.update(net, 120)
    # skipped steps (model unchanged) equal updates with the same weights at every step
    a, b = EMA(net, (0.1,)), EMA(net, (0.1,))
    a.update(net, 1)
    b.update(net, 1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    for step in range(2, 8):
        a.update(net, step)
    b.update(net, 7)
    for pa, pb in zip(a.module().parameters(), b.module().parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-6)
    assert power_beta(7, 2.0, prev_step=1) == pytest.approx(np.prod([power_beta(t, 2.0) for t in range(2, 8)]))


def test_resume_is_bit_identical(tmp_path):
    g = torch.Generator().manual_seed(0)
    updates = [[torch.randn(p.shape, generator=g) for p in _net().parameters()] for _ in range(30)]

    def run(ema, net, lo, hi):
        for step in range(lo, hi + 1):
            with torch.no_grad():
                for p, d in zip(net.parameters(), updates[step - 1]):
                    p.add_(0.01 * d)
            ema.update(net, step)

    net_a = _net()
    a = EMA(net_a, (DEFAULT_SIGMA_REL, 0.05))
    run(a, net_a, 1, 30)
    net_b = _net()
    b = EMA(net_b, (DEFAULT_SIGMA_REL, 0.05))
    run(b, net_b, 1, 13)
    save_tensors(tmp_path / "ema_state.safetensors", b.state_dict())
    tensors, _ = load_tensors(tmp_path / "ema_state.safetensors")
    c = EMA(net_b, (DEFAULT_SIGMA_REL, 0.05))
    c.load_state_dict(tensors)
    assert c.step == 13
    run(c, net_b, 14, 30)
    sa, sc = a.state_dict(), c.state_dict()
    assert sa.keys() == sc.keys() and all(torch.equal(sa[k], sc[k]) for k in sa)
    with pytest.raises(ValueError, match="tracks"):
        EMA(net_b, (0.2,)).load_state_dict(tensors)


def test_posthoc_matches_training_with_that_width():
    """Snapshots of σ_rel 0.05 / 0.10 every 10 of 400 steps reconstruct EMAs of other widths. Tolerance: the
    reconstruction's distance to the directly tracked EMA is < 1 % of the distance between that EMA and the
    σ_rel 0.10 snapshot (what one would get without post-hoc EMA), and < 1e-3 relative to the weights."""
    targets = (0.03, 0.07, 0.15, 0.2)
    _, ema, snaps, _ = _train(400, (0.05, 0.10) + targets, snapshot_every=10)
    ref = nn.utils.parameters_to_vector(ema.module(0.10).parameters()).detach()
    for s in targets:
        direct = nn.utils.parameters_to_vector(ema.module(s).parameters()).detach()
        rec = _vec(reconstruct_ema(snaps, s))
        err = float((rec - direct).norm())
        assert err < 0.01 * float((direct - ref).norm()), s
        assert err < 1e-3 * float(direct.norm()), s
    # an earlier step: only snapshots up to it are used, and the EMA as of then is recovered
    _, ema200, _, _ = _train(200, (0.05, 0.10, 0.07))
    coef = posthoc_coefficients([q.step for q in snaps], [q.sigma_rel for q in snaps], 0.07, 200)
    assert all(c == 0 for c, q in zip(coef, snaps) if q.step > 200) and coef.sum() == pytest.approx(1.0)
    rec = _vec(reconstruct_ema(snaps, 0.07, target_step=200))
    direct = nn.utils.parameters_to_vector(ema200.module(0.07).parameters()).detach()
    assert float((rec - direct).norm()) < 1e-3 * float(direct.norm())
    # one width alone reconstructs itself exactly
    same = [q for q in snaps if q.sigma_rel == 0.05]
    np.testing.assert_allclose(
        posthoc_coefficients([q.step for q in same], [0.05] * len(same), 0.05), [0] * (len(same) - 1) + [1],
        atol=1e-9,
    )  # fmt: skip


def _run_dir(tmp_path):
    """A run directory with the config the `scorekit train` defaults give a 2-D data set and EMA snapshots."""
    from scorekit.checkpoint import write_config
    from scorekit.models.registry import build_network

    cfg = {"kind": "score_model", "network": {"arch": "mlp", "dim": 2, "hidden": 16, "depth": 2, "emb_dim": 8,
                                              "num_classes": 0, "embedding": "fourier"}}  # fmt: skip
    run = tmp_path / "run"
    write_config(run, cfg)
    torch.manual_seed(0)
    net = build_network(cfg["network"])
    ema = EMA(net, (0.05, 0.10, 0.13))
    g = torch.Generator().manual_seed(0)
    directions = [torch.randn(p.shape, generator=g) for p in net.parameters()]
    for step in range(1, 101):  # a smooth trajectory, as training's is on average
        with torch.no_grad():
            for p, d in zip(net.parameters(), directions):
                p.add_(0.01 * d * math.cos(step / 15))
        ema.update(net, step)
        if step % 10 == 0:
            ema.save_snapshots(run / "ema_snapshots", (0.05, 0.10))
    save_tensors(run / "ema.safetensors", ema.module(0.10).state_dict(), {"step": "100"})
    return run, ema


def _cli(*argv):
    from scorekit.cli import main

    return main([str(a) for a in argv])


def test_ema_command(tmp_path, capsys):
    run, ema = _run_dir(tmp_path)
    snaps = list_snapshots(run / "ema_snapshots")
    assert len(snaps) == 20 and {s.sigma_rel for s in snaps} == {0.05, 0.10} and snaps[-1].step == 100
    assert _cli("ema", "--run", run, "--sigma-rel", 0.13) == 0
    out = run / "ema_sigma_rel_0.13.safetensors"
    tensors, meta = load_tensors(out)
    assert meta["step"] == "100" and float(meta["sigma_rel"]) == 0.13 and "provenance" in meta
    direct, other = ema.module(0.13).state_dict(), ema.module(0.10).state_dict()
    err = sum(float((tensors[k] - v).pow(2).sum()) for k, v in direct.items()) ** 0.5
    gap = sum(float((other[k] - v).pow(2).sum()) for k, v in direct.items()) ** 0.5
    assert err < 0.01 * gap, (err, gap)
    before = load_tensors(run / "ema.safetensors")[0]  # untouched without --replace-ema
    assert all(torch.equal(before[k], v) for k, v in ema.module(0.10).state_dict().items())
    assert _cli("ema", "--run", run, "--sigma-rel", 0.13, "--out", tmp_path / "x.safetensors", "--replace-ema") == 0
    after = load_tensors(run / "ema.safetensors")[0]
    assert all(torch.equal(after[k], tensors[k]) for k in tensors)
    capsys.readouterr()
    for args in (["--sigma-rel", 0.5], ["--sigma-rel", 0.1, "--step", 5]):
        assert _cli("ema", "--run", run, *args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err
    (run / "ema_snapshots" / "junk.safetensors").write_bytes(b"not a safetensors file")
    assert _cli("ema", "--run", run, "--sigma-rel", 0.1) == 2
    assert "corrupt" in capsys.readouterr().err
    assert _cli("ema", "--run", tmp_path / "nowhere", "--sigma-rel", 0.1) == 2
    json.dumps(meta)  # metadata is plain strings
