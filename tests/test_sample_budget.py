"""`scorekit sample --nfe N` and `sample_stream(nfe=N)`: the budget picks solver and σ steps, never spends more
than N evaluations per sample, and the choice is recorded in the .npz."""

import json

import numpy as np
import pytest
import torch

from scorekit.analytic import GaussianMixture
from scorekit.cli import main
from scorekit.metrics.vector import sliced_wasserstein
from scorekit.samplers.budget import plan_for_budget
from scorekit.sampling import sample_stream

SPEC = {
    "weights": [1, 2, 3],
    "means": [[-2, 0], [2, 0], [0, 3]],
    "variances": [[0.05, 0.05], [0.1, 0.02], [0.3, 0.1]],
}


@pytest.fixture
def spec_path(tmp_path):
    p = tmp_path / "gmm.json"
    p.write_text(json.dumps(SPEC))
    return p


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("nfe", [1, 3, 5, 8])
def test_cli_nfe_never_exceeds_budget_and_records_plan(spec_path, tmp_path, nfe):
    out = tmp_path / "s.npz"
    assert main(["sample", "--model", f"gmm:{spec_path}", "--nfe", str(nfe), "--num", "300", "--out", str(out)]) == 0
    with np.load(out) as d:
        assert float(d["nfe"]) <= nfe
        plan = json.loads(str(d["nfe_plan"]))
        assert d["samples"].shape == (300, 2)
    assert plan["nfe_budget"] <= nfe and plan["steps"] == len(plan["sigmas"]) - 1
    assert plan["sigmas"][-1] == 0.0 and all(a > b for a, b in zip(plan["sigmas"], plan["sigmas"][1:]))


def test_budget_sampler_restriction_and_conflicts(spec_path, tmp_path, capsys):
    out = tmp_path / "s.npz"
    base = ["sample", "--model", f"gmm:{spec_path}", "--num", "20", "--out", str(out)]
    assert main([*base, "--nfe", "4", "--sampler", "dpmpp_2m"]) == 0
    assert json.loads(str(np.load(out)["nfe_plan"]))["sampler"] == "dpmpp_2m"
    for bad in (["--nfe", "4", "--steps", "3"], ["--nfe", "4", "--schedule", "karras"], ["--nfe", "0"], []):
        assert _exit_code([*base, *bad]) == 2
    assert _exit_code([*base, "--nfe", "4", "--sampler", "heun"]) == 2  # two evaluations per step: no budget solver
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 5


def test_library_budget_call_beats_default_karras_dpmpp2m_at_equal_cost():
    """One call with a budget; on the exact mixture it is at least as good as dpmpp_2m on its default schedule."""
    gmm = GaussianMixture(SPEC["weights"], SPEC["means"], SPEC["variances"])
    den = gmm.denoiser(None)
    ref = gmm.sample(4000, torch.Generator().manual_seed(7))[0]
    stream = sample_stream(den, None, None, 4000, nfe=5, seed=1, batch_size=4000)
    x = torch.cat([b.x for b in stream])
    assert stream.nfe <= 5 and stream.plan is not None
    plain = torch.cat([b.x for b in sample_stream(den, "dpmpp_2m", 5, 4000, seed=1, batch_size=4000)])
    assert sliced_wasserstein(x, ref) <= sliced_wasserstein(plain, ref) * 1.05


def test_cfg_budget_counts_both_branches(tmp_path):
    """Classifier-free guidance runs the network twice per denoiser call: `--nfe N` buys N/2 calls, and the stream
    reports the network evaluations; w = 0 (plain conditional) costs one."""
    from scorekit.analytic import GaussianMixture
    from scorekit.guidance import ClassifierFreeGuidedDenoiser
    from scorekit.sampling import sample_stream

    gmm = GaussianMixture(
        torch.tensor([0.5, 0.5]), torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), torch.full((2, 2), 0.1), labels=[0, 1]
    )
    den = gmm.denoiser()
    for w, calls in ((2.0, 5), (0.0, 10)):
        cfg = ClassifierFreeGuidedDenoiser(den, w=w, class_labels=1)
        assert cfg.network_evals_per_call == (2.0 if w else 1.0)
        stream = sample_stream(cfg, None, None, 64, nfe=10, class_labels=torch.ones(64, dtype=torch.long), seed=0)
        xs = torch.cat([b.x for b in stream])
        assert stream.nfe <= calls and stream.plan.steps <= calls
        assert float(stream.extra.get("network_nfe", stream.nfe)) <= 10.0
        assert torch.isfinite(xs).all()


def test_cfg_budget_in_a_sigma_interval_spends_the_calls_outside_it():
    """Guidance in a σ interval costs 2 network evaluations a call inside it and 1 outside: `nfe=10` buys the most
    calls whose evaluations fit (more than the 5 of guidance everywhere), and the evaluations the wrapper counts
    while sampling are the ones planned; an interval holding every σ plans like guidance everywhere."""
    from scorekit.analytic import GaussianMixture
    from scorekit.guidance import ClassifierFreeGuidedDenoiser
    from scorekit.sampling import sample_stream

    gmm = GaussianMixture(
        torch.tensor([0.5, 0.5]), torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), torch.full((2, 2), 0.1), labels=[0, 1]
    )
    labels = torch.ones(64, dtype=torch.long)
    for interval, more in (((0.5, 5.0), True), ((0.0, 1e9), False)):
        cfg = ClassifierFreeGuidedDenoiser(gmm.denoiser(), w=2.0, class_labels=1, interval=interval)
        stream = sample_stream(cfg, None, None, 64, nfe=10, class_labels=labels, seed=0)
        xs = torch.cat([b.x for b in stream])
        planned = [cfg.network_evals_at(s) for s in stream.plan.sigmas[: stream.plan.steps]]
        ran = float(stream.extra["network_nfe"])
        assert torch.isfinite(xs).all() and ran == sum(planned) <= 10
        assert (stream.plan.steps > 5) is more and (stream.plan.steps == 5) is not more
        assert cfg.network_evals == 64 * ran
        bigger = plan_for_budget(stream.plan.steps + 1, denoiser=cfg, process=cfg.process)  # one call more
        assert sum(cfg.network_evals_at(s) for s in bigger.sigmas[: bigger.steps]) > 10


def test_nfe_on_a_run_tunes_once_and_keeps_the_schedule(tmp_path, capsys):
    """`sample --run RUN --nfe N` with nothing tuned for N: tunes a schedule, keeps it in RUN/schedules/, records
    it in the .npz plan; the next call reuses the file untouched; `--no-tune` takes the built-in rule."""
    run = tmp_path / "run"
    assert main(["train", "--data", "moons", "--steps", "30", "--batch-size", "64", "--out", str(run),
                 "--no-progress"]) == 0  # fmt: skip
    args = ["sample", "--run", str(run), "--nfe", "4", "--num", "64", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a.npz")]) == 0
    files = list((run / "schedules").glob("*-nfe4.json"))
    assert len(files) == 1
    sched = json.loads(files[0].read_text())
    assert sched["nfe"] == 4 and sched["provenance"]["settings"]["tuned_by"] == "sample --nfe"
    with np.load(tmp_path / "a.npz") as z:
        plan = json.loads(str(z["nfe_plan"]))
        assert plan["schedule"] == str(files[0]) and float(z["nfe"]) <= 4
    stamp = files[0].stat().st_mtime_ns
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "b.npz")]) == 0
    assert "tuned a" not in capsys.readouterr().out and files[0].stat().st_mtime_ns == stamp
    assert main([*args[:4], "6", *args[5:], "--no-tune", "--out", str(tmp_path / "c.npz")]) == 0
    assert not list((run / "schedules").glob("*-nfe6.json"))
    with np.load(tmp_path / "c.npz") as z:
        assert json.loads(str(z["nfe_plan"]))["schedule"] == "logsnr"
    # --no-tune also ignores the schedule kept for this N: the rule, as its help says
    assert main([*args, "--no-tune", "--out", str(tmp_path / "d.npz")]) == 0
    with np.load(tmp_path / "d.npz") as z:
        assert json.loads(str(z["nfe_plan"]))["schedule"] == "logsnr"
