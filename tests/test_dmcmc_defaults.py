"""Denoising MCMC out of the box: distinct outputs, derived defaults (plan_dlg), the adapted step, the budget,
the classifier-free noise estimate and the reference preset (issue 15). Exact mixtures, all on the CPU."""

import json
import math

import numpy as np
import pytest
import torch

from scorekit.analytic import GaussianMixture
from scorekit.cli import main as cli_main
from scorekit.dmcmc import (
    REFERENCE_INTEGRATORS,
    DLGConfig,
    ExactNoisePosterior,
    GibbsKernel,
    ResidualNoiseEstimator,
    make_levels,
    plan_dlg,
    sample_dlg,
)
from scorekit.samplers.base import CountingDenoiser


def ring(k=6, radius=3.0, var=0.05, dim=2):
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = torch.zeros(k, dim, dtype=torch.float64)
    means[:, 0], means[:, 1] = radius * ang.cos(), radius * ang.sin()
    return GaussianMixture(torch.arange(1, k + 1, dtype=torch.float64), means, torch.full((k, dim), var))


@pytest.fixture(scope="module")
def mix():
    gmm = ring()
    return gmm, ExactNoisePosterior(gmm, make_levels(0.002, 80.0, 300))


def _distinct(x: torch.Tensor) -> int:
    return len({row.tobytes() for row in x.float().numpy()})


@pytest.mark.parametrize("kernel", ["ula", "mala"])
@pytest.mark.parametrize("skip", [1, 3])
@pytest.mark.parametrize("carried", [False, True])
def test_every_output_is_distinct(mix, kernel, skip, carried):
    gmm, est = mix
    cfg = DLGConfig(
        chains=16, skip=skip, kernel=kernel, include_carried=carried, burn_in=2, init_steps=4, finisher_steps=2
    )
    if kernel == "mala":  # a large step so that MALA rejects often: a rejected chain must not emit again
        cfg = DLGConfig(**{**cfg.__dict__, "eta": 30.0, "adapt_target": None})
    r = sample_dlg(gmm.denoiser(), est, 96, cfg, generator=torch.Generator().manual_seed(0))
    assert r.samples.shape == (96, 2) and _distinct(r.samples) == 96
    assert r.info["distinct_fraction"] == 1.0
    assert r.chain.shape == (96,) and set(r.chain.tolist()) == set(range(16))  # spread over every chain
    assert 0 < r.info["ess"] <= 96


def test_the_reference_repeats_what_the_defaults_never_do(mix):
    gmm, est = mix  # the reference lets the carried state win again: with a deterministic finisher, duplicates
    cfg = DLGConfig.reference("cifar10", finisher="heun", chains=32, finisher_steps=3, burn_in=1)
    cfg = DLGConfig(**{**cfg.__dict__, "warmup": ((1, 0.5),), "init_steps": 3, "eta": 1e-4})
    r = sample_dlg(gmm.denoiser(), est, 320, cfg, generator=torch.Generator().manual_seed(0))
    assert r.info["distinct_fraction"] < 1.0


def test_mode_weights_within_three_standard_errors(mix):
    gmm, est = mix
    plan = plan_dlg(8, 3000)
    r = sample_dlg(gmm.denoiser(), est, 3000, plan.config, generator=torch.Generator().manual_seed(1))
    comp = torch.cdist(r.samples.double(), gmm.means).argmin(1)
    mass = torch.bincount(comp, minlength=gmm.num_components).double() / len(comp)
    n_eff = r.info["ess"]  # outputs of a chain are correlated: the ESS, not 3000, sets the standard error
    se = (gmm.weights * (1 - gmm.weights) / n_eff).sqrt()
    assert ((mass - gmm.weights).abs() <= 3 * se).all(), (mass, gmm.weights, se, n_eff)


def test_adapted_step_converges_to_the_target_acceptance():
    gmm = GaussianMixture(torch.ones(1), torch.zeros(1, 8), torch.full((1, 8), 0.3))
    levels = make_levels(0.002, 80.0, 200)
    cfg = DLGConfig(sigma_floor=0.5, sigma_cap=0.5, eta=0.01, adapt_target=0.574)
    kernel = GibbsKernel(
        CountingDenoiser(gmm.denoiser()),
        ExactNoisePosterior(gmm, levels),
        levels,
        cfg,
        torch.Generator().manual_seed(0),
        None,
    )
    x = gmm.sample(2000, torch.Generator().manual_seed(1))[0].float()
    idx = kernel.sigma_index(x)
    kernel.adapt(x, idx, 40)
    etas, acc = zip(*kernel.adapt_trace)
    assert abs(np.mean(acc[-10:]) - 0.574) < 0.04, acc
    assert abs(etas[-1] / etas[-5] - 1) < 0.1  # settled
    assert etas[-1] > 10 * etas[0]  # and moved far from a poor start


@pytest.mark.parametrize("nfe", [4, 6, 10, 25])
@pytest.mark.parametrize("num", [1, 7, 500, 10000])
@pytest.mark.parametrize("cc", [0.0, 0.4])
def test_plan_never_exceeds_the_budget(nfe, num, cc):
    try:
        plan = plan_dlg(nfe, num, classifier_cost=cc)
    except ValueError as e:  # a refusal is allowed only where even one start-up step cannot fit
        assert nfe == 4 and cc > 0 and "NFE per sample" in str(e)
        return
    assert plan.split["total"] <= nfe + 1e-9
    assert plan.chains * plan.outputs_per_chain >= num


@pytest.mark.parametrize("nfe", [5, 6, 10])
def test_runs_spend_at_most_the_budget(mix, nfe):
    gmm, est = mix
    plan = plan_dlg(nfe, 300)
    r = sample_dlg(gmm.denoiser(), est, 300, plan.config, generator=torch.Generator().manual_seed(0))
    assert r.nfe_per_sample <= nfe + 1e-9
    assert r.nfe_per_sample == pytest.approx(plan.split["total"])


def test_plan_refuses_a_budget_with_nothing_for_the_start_up():
    with pytest.raises(ValueError, match="nothing for the start-up"):
        plan_dlg(3, 100)


def test_sample_command_with_a_budget(tmp_path, capsys):
    spec = tmp_path / "ring.json"
    gmm = ring()
    spec.write_text(
        json.dumps({"weights": gmm.weights.tolist(), "means": gmm.means.tolist(), "variances": gmm.variances.tolist()})
    )
    out = tmp_path / "s.npz"
    args = ["sample", "--model", f"gmm:{spec}", "--dmcmc", "dlg", "--noise-posterior", "exact"]
    assert cli_main([*args, "--nfe", "6", "--num", "400", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "DLG budget 6 NFE/sample" in text and "distinct outputs 1.000" in text
    z = np.load(out)
    assert float(z["nfe"]) <= 6 + 1e-9 and z["nfe_split"].sum() == pytest.approx(float(z["nfe"]))
    assert z["chain"].shape == (400,) and z["sigma_start"].shape == (400,)
    assert len({r.tobytes() for r in z["samples"]}) == 400


def test_residual_estimate_needs_no_classifier(mix):
    gmm, est = mix
    levels = make_levels(0.002, 80.0, 300)
    g16 = ring(dim=16)  # in 16-D, where noise dominates the data spread, σ̂ is as good as the exact argmax
    res, exact = ResidualNoiseEstimator(g16.denoiser(), levels), ExactNoisePosterior(g16, levels)
    g = torch.Generator().manual_seed(0)
    x0 = g16.sample(2000, g)[0].float()
    for s in (1.0, 3.0):
        x = x0 + s * torch.randn(x0.shape, generator=g)
        err = (levels[res.log_probs(x).argmax(1)] / s).log().abs().median()
        err_exact = (levels[exact.log_probs(x).argmax(1)] / s).log().abs().median()
        assert err < max(0.25, 2 * err_exact), (s, float(err), float(err_exact))
    cfg = DLGConfig(sigma_update="residual", chains=50, init_steps=4, burn_in=3)
    r = sample_dlg(gmm.denoiser(), None, 100, cfg, generator=torch.Generator().manual_seed(0))
    assert r.classifier_evals_per_sample == 0 and _distinct(r.samples) == 100


# --- the reference preset: the official settings ("Sampling Demo.ipynb", github.com/1202kbs/DMCMC) -----------
def test_reference_preset_equals_the_official_settings():
    c = DLGConfig.reference("cifar10")
    assert c.warmup == ((10, 0.5),) and c.burn_in == 10 and c.eta == 0.8 and c.skip == 10
    assert c.eta_schedule == "constant" and c.kernel == "ula" and c.sigma_update == "argmax"
    assert c.adapt_target is None and c.sigma_floor == 0 and c.sigma_cap is None
    assert c.init_sampler == "edm_stochastic" and c.init_steps == 19 and c.init_schedule == "karras"
    assert c.init_options == {"s_churn": 80.0, "s_tmin": 0.05, "s_tmax": 1.0, "s_noise": 1.007}
    assert c.init_noise == 0.5 and c.tweedie_sigma == 0.01 and c.tweedie_step == 1e-2
    assert c.include_carried and c.repeat_outputs and c.ties == "earliest"
    assert c.finisher == "edm_stochastic" and c.finisher_options["s_churn"] == 80.0
    h = DLGConfig.reference("celebahq")
    assert h.warmup == ((50, 1.6),) and h.burn_in == 20 and h.tweedie_step == 1e-3
    assert set(REFERENCE_INTEGRATORS) == {"heun", "edm_stochastic", "reverse_diffusion", "euler_maruyama"} | {
        "pf_euler",
        "rk45",
    }
    assert REFERENCE_INTEGRATORS["rk45"][2] == {"rtol": 1e-5, "atol": 1e-5}
    # the classifier grid: σ_min·(σ_max/σ_min)^t, t = linspace(1, 1e-3, 1000), σ_min = 0.01
    t = torch.linspace(1.0, 1e-3, 1000, dtype=torch.float64)
    assert torch.allclose(make_levels(0.01, 50.0), 0.01 * (50.0 / 0.01) ** t)
    with pytest.raises(ValueError, match="reference integrators"):
        DLGConfig.reference("cifar10", finisher="dpmpp_2m")


@pytest.mark.parametrize("finisher", sorted(REFERENCE_INTEGRATORS))
def test_reference_algorithm_dry_run(mix, finisher):
    gmm, est = mix
    cfg = DLGConfig.reference("cifar10", finisher=finisher, chains=4)
    r = sample_dlg(gmm.denoiser(), est, 8, cfg, generator=torch.Generator().manual_seed(0))
    assert r.samples.shape == (8, 2) and torch.isfinite(r.samples).all()
    # start-up: KAR2 (2·19 − 1 NFE) + 20 warm-up/burn-in steps; 10 Gibbs steps per round; +1 Tweedie NFE
    assert r.info["startup_nfe_per_chain"] == 37 + 20
    assert r.info["gibbs_nfe_per_output"] == pytest.approx(10)


def test_sample_command_with_the_reference_preset(tmp_path, capsys):
    spec = tmp_path / "ring.json"
    gmm = ring()
    spec.write_text(
        json.dumps({"weights": gmm.weights.tolist(), "means": gmm.means.tolist(), "variances": gmm.variances.tolist()})
    )
    out = tmp_path / "r.npz"
    args = ["sample", "--model", f"gmm:{spec}", "--dmcmc", "dlg", "--noise-posterior", "exact"]
    args += ["--dlg-preset", "reference-cifar10", "--sampler", "heun", "--dlg-chains", "4", "--num", "8"]
    assert cli_main([*args, "--out", str(out), "--no-progress"]) == 0
    assert "dlg+heun, 19 steps" in capsys.readouterr().out
    z = np.load(out)
    assert z["samples"].shape == (8, 2) and z["chain"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


@pytest.mark.parametrize(
    "finisher", [["--sampler", "heun", "--steps", "3"], ["--sampler", "euler_maruyama", "--steps", "3"]]
)
def test_contract_dlg_command_without_nfe_stays_on_the_mixture(tmp_path, finisher):
    """The CONTRACT's `--dmcmc dlg --noise-posterior exact --sampler S --steps N` (no --nfe, no tuning flags): chains
    keep to the finisher's σ band instead of running away, so samples stay on the mixture and are all distinct."""
    import json

    from scorekit.analytic import GaussianMixture
    from scorekit.cli import main
    from scorekit.metrics.vector import sliced_wasserstein

    spec = {
        "weights": [1, 2, 3],
        "means": [[-2, 0], [2, 0], [0, 3]],
        "variances": [[0.05, 0.05], [0.1, 0.02], [0.3, 0.1]],
    }
    (tmp_path / "g.json").write_text(json.dumps(spec))
    out = tmp_path / "d.npz"
    argv = ["sample", "--model", f"gmm:{tmp_path / 'g.json'}", "--dmcmc", "dlg", "--noise-posterior", "exact"]
    assert main([*argv, *finisher, "--num", "600", "--out", str(out), "--no-progress"]) == 0
    with np.load(out) as d:
        x = torch.as_tensor(d["samples"], dtype=torch.float64)
    gmm = GaussianMixture(spec["weights"], spec["means"], spec["variances"])
    ref = gmm.sample(600, torch.Generator().manual_seed(3))[0]
    floor = sliced_wasserstein(gmm.sample(600, torch.Generator().manual_seed(4))[0], ref)
    assert torch.isfinite(x).all() and len(torch.unique(x, dim=0)) == 600
    # the run-away this guards against gave |x| ~ 1e16; the defaults' quality itself is ~3–5× the floor here
    # (benchmarks/results/dmcmc.md: DLG loses to the best plain samplers on the mixtures)
    assert sliced_wasserstein(x, ref) < 8 * floor
