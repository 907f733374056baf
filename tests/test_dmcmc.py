"""Denoising MCMC: exact noise posterior, DLG on analytic mixtures, the noise-level classifier and its command."""

import argparse
import json
import math

import pytest
import torch

from scorekit.analytic import GaussianMixture
from scorekit.commands.dlg_flags import add_dlg_arguments, dlg_config_from_args
from scorekit.commands.quickstart import compare_heun_vs_dlg
from scorekit.dmcmc import DLGConfig, ExactNoisePosterior, TrainedNoiseClassifier, make_levels, sample_dlg
from scorekit.dmcmc.noise_training import (
    noise_classifier_network_config,
    noise_level_accuracy,
    save_noise_classifier_run,
    train_noise_classifier,
)
from scorekit.metrics.vector import sliced_wasserstein
from scorekit.processes import VPSDE


def ring_gmm(k=6, radius=3.0, var=0.05, dim=2):
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = torch.zeros(k, dim, dtype=torch.float64)
    means[:, 0], means[:, 1] = radius * ang.cos(), radius * ang.sin()
    weights = torch.arange(1, k + 1, dtype=torch.float64)  # unequal weights: 1/21 … 6/21
    return GaussianMixture(weights, means, torch.full((k, dim), var))


def nearest_component(gmm, x):
    return torch.cdist(x.double(), gmm.means).argmin(1)


# the pre-issue-15 settings, spelt out: constant η, no adaptation, the samplers' own schedules, 0.5 start-up noise
LEGACY = dict(eta_schedule="constant", adapt_target=None, init_schedule=None, finisher_schedule=None, init_noise=0.5)
FAST = dict(chains=200, skip=1, eta=0.01, burn_in=10, init_sampler="heun", init_steps=10, finisher="heun", **LEGACY)


# --- σ grid and the exact posterior -------------------------------------------------------------------------
def test_levels_follow_the_reference_grid():
    lv = make_levels(0.01, 50.0, 1000)
    assert lv.shape == (1000,) and (lv[1:] < lv[:-1]).all()
    assert lv[0].item() == pytest.approx(50.0)
    assert lv[-1].item() == pytest.approx(0.01 * 5000**1e-3)
    ratios = lv[1:] / lv[:-1]  # geometric: constant ratio
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        make_levels(1.0, 0.5)


def test_exact_posterior_matches_the_oracle_and_recovers_the_noise_level(gen):
    gmm = ring_gmm(dim=16)
    lv = make_levels(0.01, 50.0, 60)
    est = ExactNoisePosterior(gmm, lv)
    x0, _ = gmm.sample(64, gen)
    k = torch.randint(0, 60, (64,), generator=gen)
    x = x0 + lv[k, None] * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    ours = est.log_probs(x).exp()
    ref = gmm.noise_posterior(x, lv)  # one level at a time
    assert torch.allclose(ours, ref, atol=1e-10)
    assert torch.allclose(ours.sum(1), torch.ones(64, dtype=torch.float64))
    # in 16-D the posterior is sharp where noise dominates the data spread: argmax within ±3 levels
    big = lv[k] > 0.5
    assert ((ours.argmax(1) - k).abs()[big] <= 3).float().mean() > 0.9


# --- DLG on the analytic mixture ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixture():
    gmm = ring_gmm()
    ref, _ = gmm.sample(20000, torch.Generator().manual_seed(123))
    floor = sliced_wasserstein(gmm.sample(1000, torch.Generator().manual_seed(7))[0], ref)
    est = ExactNoisePosterior(gmm, make_levels(0.002, 80.0, 400))  # 400 levels keep the tests fast
    return gmm, ref, floor, est


def test_dlg_heun_converges_to_the_mixture(mixture):
    gmm, ref, floor, est = mixture
    errs = {}
    for steps in (1, 4):
        r = sample_dlg(
            gmm.denoiser(),
            est,
            1000,
            DLGConfig(**FAST, finisher_steps=steps),
            generator=torch.Generator().manual_seed(0),
        )
        assert r.samples.shape == (1000, 2) and torch.isfinite(r.samples).all()
        errs[steps] = sliced_wasserstein(r.samples, ref)
    # samples are as close to the mixture as 1000 exact draws are, within a small factor
    assert errs[4] < 2.5 * floor, (errs, floor)
    assert errs[1] < 3.0 * floor, (errs, floor)


def test_every_mode_keeps_its_weight(mixture):
    gmm, _, _, est = mixture
    C = 1000
    cfg = DLGConfig(**{**FAST, "chains": C, "init_sampler": "edm_stochastic", "init_steps": 100}, finisher_steps=2)
    r = sample_dlg(gmm.denoiser(), est, 3 * C, cfg, generator=torch.Generator().manual_seed(1))
    comp = nearest_component(gmm, r.samples)
    # samples are interleaved over chains (sample i comes from chain i mod C); a chain's samples are correlated,
    # so the standard error comes from the per-chain fractions
    per_chain = torch.nn.functional.one_hot(comp.reshape(-1, C), gmm.num_components).double().mean(0)  # [C, K]
    mass, se = per_chain.mean(0), per_chain.std(0) / math.sqrt(C)
    assert ((mass - gmm.weights).abs() <= 3 * se).all(), (mass, gmm.weights, se)


def test_nfe_accounting_and_chain_layout(mixture):
    gmm, _, _, est = mixture
    seen = []
    cfg = DLGConfig(
        chains=8, skip=3, burn_in=5, init_sampler="heun", init_steps=4, finisher="heun", finisher_steps=2, **LEGACY
    )
    r = sample_dlg(gmm.denoiser(), est, 20, cfg, generator=torch.Generator().manual_seed(0), callback=seen.append)
    rounds = 3  # ceil(20 / 8)
    per_chain = (2 * 4 - 1) + 5 + rounds * 3  # start-up, burn-in, Gibbs steps of every chain
    # the finisher runs only on the outputs kept (20, not 3 rounds × 8)
    assert r.nfe_per_sample == pytest.approx((8 * per_chain + 20 * (2 * 2 - 1)) / 20)
    assert r.classifier_evals_per_sample == pytest.approx(8 * (1 + 5 + rounds * 3) / 20)
    assert r.info["chains"] == 8 and r.info["rounds"] == rounds
    assert r.samples.shape == (20, 2) and r.sigma_start.shape == (20,)
    assert torch.equal(r.chain, torch.arange(20) % 8)
    rounds_x = [d["x"] for d in seen if d["stage"] == "round"]
    assert len(rounds_x) == rounds and [x.shape[0] for x in rounds_x] == [8, 8, 4]  # memory bounded by chains
    assert torch.equal(r.samples[8:16], rounds_x[1].float())  # round-major: one sample per chain per round
    lv = est.levels
    assert ((r.sigma_start[:, None] - lv[None]).abs().min(1).values < 1e-9).all()  # starts are grid levels


def test_reproducible_from_a_seed(mixture):
    gmm, _, _, est = mixture
    cfg = DLGConfig(
        chains=16, skip=2, burn_in=3, init_sampler="edm_stochastic", init_steps=4, finisher="heun", **LEGACY
    )

    def run(seed):
        return sample_dlg(gmm.denoiser(), est, 32, cfg, generator=torch.Generator().manual_seed(seed)).samples

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "opts",
    [
        {"kernel": "mala", "eta": 0.02},
        {"sigma_update": "sample", "eta": 0.02},
        {"eta_schedule": "sigma2", "eta": 0.5},
    ],
)
def test_dlg_variants_sample_the_mixture(mixture, opts):
    gmm, ref, floor, est = mixture
    cfg = DLGConfig(**{**FAST, **opts}, finisher_steps=3)
    r = sample_dlg(gmm.denoiser(), est, 1000, cfg, generator=torch.Generator().manual_seed(2))
    assert sliced_wasserstein(r.samples, ref) < 3.0 * floor
    if opts.get("kernel") == "mala":
        assert 0.3 < r.info["acceptance_rate"] <= 1.0
        # score at x and at the proposal; a chain whose moves were all rejected emits nothing that round
        per_round = 2.0 * r.info["chains"] / 1000
        assert r.info["gibbs_nfe_per_output"] == pytest.approx(per_round * r.info["rounds"])
        assert r.info["rounds"] >= 5 and r.info["distinct_fraction"] == 1.0


def test_mala_without_a_density_uses_the_score_line_integral(mixture):
    gmm, ref, floor, est = mixture
    den = gmm.denoiser()
    cfg = DLGConfig(**{**FAST, "kernel": "mala", "eta": 0.05}, finisher_steps=2)
    exact = sample_dlg(den, est, 600, cfg, generator=torch.Generator().manual_seed(3))
    approx = sample_dlg(
        den, est, 600, cfg, generator=torch.Generator().manual_seed(3), log_density=None, dtype=torch.float64
    )
    assert abs(exact.info["acceptance_rate"] - approx.info["acceptance_rate"]) < 0.05


@pytest.mark.parametrize("finisher", ["heun", "euler_maruyama"])
def test_vp_model_through_sigma_space(finisher):
    """A VP-SDE model: chains live in σ-space, the finisher integrates the VP process from σ_start."""
    gmm = ring_gmm()
    proc = VPSDE()
    ref, _ = gmm.sample(20000, torch.Generator().manual_seed(123))
    floor = sliced_wasserstein(gmm.sample(1000, torch.Generator().manual_seed(7))[0], ref)
    est = ExactNoisePosterior(gmm, make_levels(proc.sigma_min * 1.01, proc.sigma_max * 0.99, 300))
    cfg = DLGConfig(**{**FAST, "finisher": finisher, "init_steps": 30}, finisher_steps=8)
    r = sample_dlg(gmm.denoiser(process=proc), est, 1000, cfg, generator=torch.Generator().manual_seed(4))
    assert sliced_wasserstein(r.samples, ref) < 3.0 * floor


def test_bad_settings_are_one_line_value_errors(mixture):
    gmm, _, _, est = mixture
    for bad, msg in [
        ({"kernel": "hmc"}, "kernel"),
        ({"skip": 0}, "skip"),
        ({"eta": -1.0}, "eta"),
        ({"sigma_update": "mean"}, "sigma update"),
        ({"eta_schedule": "linear"}, "eta schedule"),
    ]:
        with pytest.raises(ValueError, match=msg):
            sample_dlg(gmm.denoiser(), est, 4, DLGConfig(**bad))
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_dlg(gmm.denoiser(), est, 4, DLGConfig(chains=2, finisher="nope", init_steps=2, burn_in=0))
    with pytest.raises(ValueError, match="exceeds the model"):
        big = ExactNoisePosterior(gmm, make_levels(0.01, 500.0, 10))
        sample_dlg(gmm.denoiser(process=VPSDE()), big, 4, DLGConfig(chains=2))


def test_cli_flags_build_a_config():
    p = argparse.ArgumentParser()
    p.add_argument("--sampler", default="heun")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--schedule", default=None)
    p.add_argument("--dlg-skip", type=int, default=None)  # the lead's flag wins; ours is not added twice
    add_dlg_arguments(p)
    args = p.parse_args(
        ["--sampler", "pf_euler", "--steps", "4", "--dlg-kernel", "mala", "--dlg-skip", "5", "--dlg-burn-in", "7"]
    )
    cfg = dlg_config_from_args(args)
    assert (cfg.finisher, cfg.finisher_steps, cfg.kernel, cfg.skip, cfg.burn_in) == ("pf_euler", 4, "mala", 5, 7)
    with pytest.raises(ValueError, match="kernel"):
        dlg_config_from_args(argparse.Namespace(dlg_kernel="bad"))


def test_compare_heun_vs_dlg_gives_equal_budget_rows(mixture):
    gmm, ref, _, est = mixture
    cfg = DLGConfig(**FAST, finisher_steps=1)
    rows = compare_heun_vs_dlg(
        gmm.denoiser(), est, ref, num=400, generator=torch.Generator().manual_seed(0), config=cfg
    )
    plain, dlg = rows
    assert plain["nfe"] >= dlg["nfe"] and plain["nfe"] - dlg["nfe"] < 2  # heun's NFE is odd: nearest above
    assert dlg["metric"] < plain["metric"]  # at this tiny budget heun from σ_max is far off
    assert dlg["samples"].shape == (400, 2)


# --- the trained noise-level classifier ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    from scorekit.data import load_data

    return load_data("digits"), load_data("digits", split="test")


def test_noise_classifier_on_digits_beats_chance(tmp_path, digits):
    train, test = digits
    lv = make_levels(0.01, 50.0, 1000)
    cfg = noise_classifier_network_config((1, 8, 8), 1000, channels=[16, 32, 32, 64])
    net, cfg = train_noise_classifier(train.data, lv, steps=200, batch_size=64, network=cfg, seed=0)
    save_noise_classifier_run(tmp_path / "nc", net, {"network": cfg, "levels": {"values": lv.tolist()}})
    est = TrainedNoiseClassifier(tmp_path / "nc")
    assert torch.equal(est.levels, lv)
    acc = noise_level_accuracy(est.log_probs, test.data, est.levels, num=1000)
    print("digits noise classifier accuracy:", json.dumps({k: round(v, 3) for k, v in acc.items()}))
    assert acc["within_20"] > 4 * acc["chance_within_20"]  # chance ±20 ≈ 0.04
    assert acc["exact"] > 3 * acc["chance_exact"]
    assert acc["mean_abs_level_error"] < 0.4 * 333  # a uniform guess is off by ~333 levels
    # the saved classifier gives the same logits as the trained one
    x = test.data[:5] + 0.3 * torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(est.log_probs(x), torch.log_softmax(net(x).double(), 1), atol=1e-5)


def test_train_noise_classifier_command(tmp_path, capsys):
    from scorekit.checkpoint import read_config, write_config
    from scorekit.cli import main
    from scorekit.data import load_data
    from scorekit.processes import VESDE

    run = tmp_path / "run"
    write_config(run, {"kind": "score_model", "data": load_data("moons").to_config(), "process": VESDE().to_config()})
    out = tmp_path / "nc"
    rc = main(["train-noise-classifier", "--run", str(run), "--steps", "30", "--levels", "100", "--out", str(out)])
    assert rc == 0
    cfg = read_config(out)
    assert cfg["kind"] == "noise_classifier" and cfg["network"]["arch"] == "noise_level_mlp"
    assert len(cfg["levels"]["values"]) == 100 and cfg["levels"]["sigma_max"] == pytest.approx(50.0)
    assert {"exact", "within_1", "within_20", "chance_within_20"} <= set(cfg["accuracy"])
    assert (out / "model.safetensors").is_file() and (out / "log.jsonl").is_file()
    assert TrainedNoiseClassifier(out).log_probs(torch.zeros(3, 2)).shape == (3, 100)
    capsys.readouterr()
    assert main(["train-noise-classifier", "--run", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scorekit train-noise-classifier: error:") and "\n" not in err


def test_sample_command_with_dlg_and_the_exact_posterior(tmp_path, capsys):
    import numpy as np

    from scorekit.cli import main

    spec = tmp_path / "gmm.json"
    spec.write_text(json.dumps(ring_gmm(k=4).to_spec()))
    out = tmp_path / "s.npz"
    common = ["sample", "--model", f"gmm:{spec}", "--sampler", "heun", "--steps", "2", "--num", "60", "--out", str(out)]
    dlg = ["--dmcmc", "dlg", "--dlg-chains", "20", "--dlg-skip", "2", "--dlg-burn-in", "3", "--dlg-init-steps", "5"]
    assert main(common + dlg + ["--noise-posterior", "exact"]) == 0
    d = np.load(out)
    assert d["samples"].shape == (60, 2) and d["sigma_start"].shape == (60,)
    # adapting η costs 16 MALA steps (2 NFE) on the 20 chains; start-up (dpmpp_2m, 5 NFE), burn-in, 3 rounds of
    # skip; the finisher (heun, 3 NFE) on each of the 60 outputs
    per_chain = 5 + 2 * 16 + 3 + 3 * 2
    assert float(d["nfe"]) == pytest.approx((20 * per_chain + 60 * 3) / 60)
    assert d["chain"].shape == (60,) and float(d["distinct_fraction"]) == 1.0
    capsys.readouterr()
    before = out.read_bytes()
    assert main(common + dlg) == 2  # no estimator given
    assert "--noise-classifier" in capsys.readouterr().err
    # the streamed output is discarded: the earlier file is intact and no temporary file is left behind
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["gmm.json", "s.npz"]


def test_finisher_options_and_chain_labels(mixture):
    gmm, _, _, est = mixture
    cfg = DLGConfig(
        chains=4, skip=1, burn_in=1, init_steps=3, finisher="rk45", finisher_options={"rtol": 1e-2}, **LEGACY
    )
    r = sample_dlg(gmm.denoiser(), est, 8, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(r.samples).all() and r.info["finisher_nfe_per_output"] > 1
    labelled = ring_gmm()
    labelled.labels = torch.arange(6) % 2
    labels = torch.tensor([0, 1, 1, 0, 1, 1, 1, 1])
    cfg = DLGConfig(chains=4, skip=1, burn_in=1, init_steps=3, finisher="heun", finisher_steps=2, **LEGACY)
    r = sample_dlg(labelled.denoiser(), est, 8, cfg, generator=torch.Generator().manual_seed(0), class_labels=labels)
    assert torch.equal(r.info["labels"], torch.tensor([0, 1, 1, 0, 0, 1, 1, 0]))  # each output: its chain's label
    assert torch.equal(r.chain, torch.arange(8) % 4)


def test_dlg_beats_plain_pf_euler_at_equal_nfe_in_16d():
    """The 16-D setting of benchmarks/dmcmc.py (10 outputs per chain, η = σ², 5-step Heun start-up): DLG + pf_euler
    with 5 finisher steps (6.9 amortised NFE) beats plain pf_euler at 7 NFE. Measured over seeds 0–2: DLG
    0.14–0.20, plain 0.37–0.40. The margin needs enough chains: mode weights are fixed by one start-up sample per
    chain (at 3000 samples / 300 chains seed 0 gave 0.35)."""
    g = torch.Generator().manual_seed(16)
    means = 2.0 * torch.randn(8, 16, generator=g, dtype=torch.float64)
    variances = 0.05 + 0.25 * torch.rand(8, 16, generator=g, dtype=torch.float64)
    gmm = GaussianMixture(0.5 + torch.rand(8, generator=g, dtype=torch.float64), means, variances)
    num = 6000
    ref, _ = gmm.sample(num, torch.Generator().manual_seed(1))
    est = ExactNoisePosterior(gmm, make_levels(0.002, 80.0, 1000))
    cfg = DLGConfig(
        chains=num // 10,
        skip=1,
        eta=1.0,
        eta_schedule="sigma2",
        adapt_target=None,
        burn_in=0,
        init_sampler="heun",
        init_steps=5,
        init_schedule=None,
        init_noise=0.5,
        finisher="pf_euler",
        finisher_steps=5,
        finisher_schedule=None,
    )
    r = sample_dlg(gmm.denoiser(), est, num, cfg, generator=torch.Generator().manual_seed(0))
    assert r.nfe_per_sample == pytest.approx(0.9 + 1 + 5)  # amortised 9-NFE start-up, 1 Langevin step, finisher
    from scorekit.samplers import get_sampler, get_sigmas

    gen = torch.Generator().manual_seed(0)
    x = 80.0 * torch.randn(num, 16, generator=gen)
    plain = get_sampler("pf_euler").fn(gmm.denoiser(), x, get_sigmas("log", 7, sigma_max=80.0).float(), generator=gen)
    assert plain.nfe == 7

    def err(s):
        return sliced_wasserstein(s.double(), ref, num_projections=256, generator=torch.Generator().manual_seed(2))

    assert err(r.samples) < err(plain.x), (err(r.samples), err(plain.x))


def test_streaming_sink_gets_the_same_samples_in_order(mixture):
    gmm, _, _, est = mixture
    cfg = DLGConfig(**{**FAST, "chains": 16}, finisher_steps=2)
    full = sample_dlg(gmm.denoiser(), est, 70, cfg, generator=torch.Generator().manual_seed(3))
    got, sig = [], []
    streamed = sample_dlg(
        gmm.denoiser(),
        est,
        70,
        cfg,
        generator=torch.Generator().manual_seed(3),
        sink=lambda x, s: (got.append(x.clone()), sig.append(s.clone())),
    )
    assert [len(g) for g in got] == [16, 16, 16, 16, 6]  # one batch per round, at most `chains` rows each
    assert streamed.samples.shape == (0, 2)  # nothing kept: memory is bounded by the chain count
    assert torch.equal(torch.cat(got), full.samples)
    assert torch.equal(torch.cat(sig).cpu(), full.sigma_start) and torch.equal(streamed.sigma_start, full.sigma_start)
    assert streamed.nfe_per_sample == full.nfe_per_sample
