"""Classifier guidance and classifier-free guidance, checked against the exact classifier of a labelled mixture."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from scorekit.analytic import GaussianMixture
from scorekit.classifier_training import noise_band_accuracy, train_noisy_classifier
from scorekit.commands.guidance_flags import add_guidance_arguments, guided_denoiser_from_args
from scorekit.guidance import (
    ClassifierFreeGuidedDenoiser,
    ClassifierGuidedDenoiser,
    ExactClassifier,
    NoisyClassifier,
    TrainedClassifier,
    ancestral_mean_shift,
    default_class_labels,
    load_classifier,
    parse_class_labels,
)
from scorekit.metrics.vector import sliced_wasserstein
from scorekit.models import build_network
from scorekit.models.parameterization import Denoiser
from scorekit.processes import DDPM, VPSDE
from scorekit.samplers import get_sampler, get_sigmas

# Class 1 = components 1 (weight 0.1) and 2 (weight 0.35): p(component 2 | y=1) = 0.35/0.45.
SPEC = {
    "weights": [0.35, 0.1, 0.35, 0.2],
    "means": [[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [0.0, -3.0]],
    "variances": [[0.25, 0.25]] * 4,
    "labels": [0, 1, 1, 0],
}
N = 2000


@pytest.fixture(scope="module")
def gmm():
    return GaussianMixture.from_spec(SPEC)


def _prior(n, seed, dim=2, sigma_max=80.0):
    g = torch.Generator().manual_seed(seed)
    return sigma_max * torch.randn(n, dim, generator=g, dtype=torch.float64), g


def _run(sampler, denoiser, steps, seed=1, n=N, labels=None):
    x, g = _prior(n, seed)
    sig = get_sigmas("karras", steps, sigma_min=0.002, sigma_max=80.0)
    return get_sampler(sampler).fn(denoiser, x, sig, generator=g, class_labels=labels).x


def _components(gmm, x):
    return gmm._responsibilities(x, torch.zeros(len(x), dtype=torch.float64)).argmax(1)


def _floor(gmm, y, n=N):
    a, _ = gmm.sample_class(n, y, torch.Generator().manual_seed(101))
    b, _ = gmm.sample_class(n, y, torch.Generator().manual_seed(102))
    return a, sliced_wasserstein(a, b)


# --- exact classifier and the guided denoiser identity ---------------------------------------------------
def test_exact_classifier_matches_posterior_and_autograd(gmm):
    clf = ExactClassifier(gmm)
    x, _ = gmm.sample(64, torch.Generator().manual_seed(0))
    sigma = torch.linspace(0.05, 5.0, 64, dtype=torch.float64)
    x = x + sigma[:, None] * torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lp = clf.log_probs(x, sigma)
    assert torch.allclose(lp.exp(), gmm.class_posterior(x, sigma), atol=1e-12)
    y = torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(2))
    closed = clf.grad_log_prob(x, sigma, y)
    by_autograd = NoisyClassifier.grad_log_prob(clf, x, sigma, y)  # the generic autograd path
    assert torch.allclose(closed, by_autograd, atol=1e-9)
    assert closed.abs().max() > 1e-3


def test_scale_one_guided_denoiser_is_the_class_conditional_denoiser(gmm):
    """D + σ²·∇log p(y|x,σ) = E[x0 | x, y] exactly, for fixed, per-sample and per-call labels."""
    D = gmm.denoiser()
    x = 3.0 * torch.randn(50, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = torch.logspace(-2, 1, 50, dtype=torch.float64)
    y = torch.arange(50) % 2
    fixed = ClassifierGuidedDenoiser(D, ExactClassifier(gmm), 1.0, class_labels=1)
    assert torch.allclose(fixed(x, sigma), gmm.denoise(x, sigma, torch.ones(50, dtype=torch.long)), atol=1e-9)
    per_call = ClassifierGuidedDenoiser(D, ExactClassifier(gmm), 1.0)
    assert torch.allclose(per_call(x, sigma, y), gmm.denoise(x, sigma, y), atol=1e-9)
    off = ClassifierGuidedDenoiser(D, ExactClassifier(gmm), 0.0, class_labels=1)
    assert torch.equal(off(x, sigma), D(x, sigma))
    with pytest.raises(ValueError, match="class labels"):
        per_call(x, sigma)


def test_eps_form_equals_paper_process_space_form(gmm):
    """ε̂_s = ε̂ − σ·s·∇_x̂ log p equals Alg. 2's ε̂ − √(1−ᾱ)·s·∇_{x_t} log p(y | x_t) under VP."""
    vp = VPSDE()
    clf = ExactClassifier(gmm)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=torch.float64)
    sigma, s_t = vp.sigma(t), vp.scale(t)
    x_hat = 2.0 * torch.randn(4, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y, scale = torch.tensor([0, 1, 1, 0]), 2.5
    D = gmm.denoiser(vp)
    guided = ClassifierGuidedDenoiser(D, clf, scale, y)
    eps_guided = (x_hat - guided(x_hat, sigma)) / sigma[:, None]
    eps = (x_hat - D(x_hat, sigma)) / sigma[:, None]
    x_t = (s_t[:, None] * x_hat).requires_grad_(True)  # process-space input
    lp = clf.log_probs(x_t / s_t[:, None], sigma).gather(1, y[:, None]).sum()
    (grad_xt,) = torch.autograd.grad(lp, x_t)
    one_minus_abar = 1.0 - s_t**2
    paper = eps - one_minus_abar.sqrt()[:, None] * scale * grad_xt
    assert torch.allclose(eps_guided, paper, atol=1e-9)


# --- sampling with the exact classifier ---------------------------------------------------------------------
def test_scale_one_reproduces_class_conditional_mixture(gmm):
    ref, floor = _floor(gmm, 1)
    guided = ClassifierGuidedDenoiser(gmm.denoiser(), ExactClassifier(gmm), 1.0, class_labels=1)
    x = _run("euler_maruyama", guided, 200)
    assert sliced_wasserstein(x, ref) < 1.5 * floor
    frac = (_components(gmm, x) == 2).double().mean()
    assert abs(float(frac) - 0.35 / 0.45) < 0.03


def test_larger_scales_concentrate_on_the_heaviest_component_and_stay_in_class(gmm):
    D, clf = gmm.denoiser(), ExactClassifier(gmm)
    fracs, logp = [], []
    for scale in (1.0, 2.0, 4.0, 8.0):
        x = _run("euler_maruyama", ClassifierGuidedDenoiser(D, clf, scale, class_labels=1), 100)
        comp = _components(gmm, x)
        assert int((gmm.labels[comp] != 1).sum()) == 0  # never another class
        fracs.append(float((comp == 2).double().mean()))
        y = torch.ones(len(x), dtype=torch.long)
        logp.append(float(gmm.class_posterior(x, 0.0).gather(1, y[:, None]).log().mean() + gmm.log_prob(x).mean()))
    assert all(b > a + 0.01 for a, b in zip(fracs, fracs[1:])), fracs
    assert fracs[-1] > 0.85
    assert logp[-1] > logp[0] + 0.05, logp  # samples sit at higher density of p(x | y)


def test_guidance_commutes_with_the_sampler(gmm):
    """Scale 1: heun (ODE) and euler_maruyama (SDE) both give p(x | y). Scale 4: heun and pf_euler integrate the
    same guided probability-flow ODE and agree; the guided SDE's law differs from the ODE's there, since the
    s-scaled score is not the score of a diffused distribution."""
    D, clf = gmm.denoiser(), ExactClassifier(gmm)
    ref, floor = _floor(gmm, 1)
    one = ClassifierGuidedDenoiser(D, clf, 1.0, class_labels=1)
    heun = _run("heun", one, 100, seed=5)
    em = _run("euler_maruyama", one, 200, seed=6)
    assert sliced_wasserstein(heun, ref) < 1.5 * floor
    assert sliced_wasserstein(em, ref) < 1.5 * floor
    assert sliced_wasserstein(heun, em) < 1.5 * floor
    four = ClassifierGuidedDenoiser(D, clf, 4.0, class_labels=1)
    a, b = _run("heun", four, 60, seed=7, n=500), _run("pf_euler", four, 300, seed=7, n=500)
    assert (a - b).norm(dim=1).mean() < 0.05  # same start, same ODE: pathwise agreement


def test_classifier_free_guidance_equals_classifier_guidance_with_scale_one_plus_w(gmm):
    """(1+w)·D(x|y) − w·D(x) = D + (1+w)·σ²∇log p(y|x,σ) for the exact mixture."""
    D = gmm.denoiser()
    x = 3.0 * torch.randn(40, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    sigma = torch.logspace(-1.5, 1, 40, dtype=torch.float64)
    y = torch.arange(40) % 2
    for w in (0.0, 1.0, 3.0):
        cfg = ClassifierFreeGuidedDenoiser(D, w)
        cg = ClassifierGuidedDenoiser(D, ExactClassifier(gmm), 1.0 + w)
        assert torch.allclose(cfg(x, sigma, y), cg(x, sigma, y), atol=1e-9)

    class NullIndexMixture(Denoiser):  # a conditional model whose label 2 means "no condition"
        num_classes = 2
        null_label = 2  # the protocol's null label (a network's is num_classes)

        def __init__(self):
            super().__init__(None, (2,))

        def denoise(self, x, sigma, class_labels=None):
            out = gmm.denoise(x, sigma)
            keep = class_labels != 2
            out[keep] = gmm.denoise(x[keep], sigma[keep], class_labels[keep])
            return out

    exact = ClassifierFreeGuidedDenoiser(D, 2.0)(x, sigma, y)
    batched = ClassifierFreeGuidedDenoiser(NullIndexMixture(), 2.0, null_label=2)
    assert torch.allclose(batched(x, sigma, y), exact, atol=1e-9)
    from_protocol = ClassifierFreeGuidedDenoiser(NullIndexMixture(), 2.0)  # null label asked of the model
    assert from_protocol.null_label == 2 and torch.allclose(from_protocol(x, sigma, y), exact, atol=1e-9)


# --- the mean-shift form ------------------------------------------------------------------------------------
def test_mean_shift_matches_score_form_to_first_order(gmm):
    """Alg. 1's μ + s·Σ·∇log p vs the ancestral mean of the guided D: the gap is O(h²) while the shift is O(h)."""
    proc, clf, scale = VPSDE(), ExactClassifier(gmm), 3.0
    D = gmm.denoiser(proc)
    guided = ClassifierGuidedDenoiser(D, clf, scale)
    x = 2.0 * torch.randn(32, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    y = torch.arange(32) % 2
    sigma = torch.full((32,), 1.5, dtype=torch.float64)
    rel = []
    for h in (0.2, 0.1, 0.05, 0.025):
        sig_next = sigma - h
        r = (sig_next**2 / sigma**2)[:, None]
        den, den_g = D(x, sigma), guided(x, sigma, y)
        plain = den + r * (x - den)
        score_form = den_g + r * (x - den_g)
        shifted = ancestral_mean_shift(clf, x, sigma, sig_next, plain, y, scale, proc)
        shift = (score_form - plain).norm(dim=1)
        assert float(shift.mean()) > 1e-3
        rel.append(float(((shifted - score_form).norm(dim=1) / shift).mean()))
    assert rel[-1] < 0.05
    for a, b in zip(rel, rel[1:]):  # first-order agreement: halving h halves the relative gap
        assert 0.4 < b / a < 0.6, rel


def test_mean_shift_ancestral_sampler_reaches_class_conditional(gmm):
    ref, floor = _floor(gmm, 1)
    x, g = _prior(N, 10)
    sig = get_sigmas("karras", 200, sigma_min=0.002, sigma_max=80.0)
    guided = ClassifierGuidedDenoiser(gmm.denoiser(), ExactClassifier(gmm), 1.0, class_labels=1)
    out = get_sampler("ancestral").fn(guided, x, sig, generator=g, mean_shift=True)
    assert out.nfe == 200
    assert sliced_wasserstein(out.x, ref) < 1.5 * floor


# --- trained classifiers ----------------------------------------------------------------------------------------
def test_train_noisy_classifier_learns_and_guides(gmm, tmp_path):
    x, comp = gmm.sample(4000, torch.Generator().manual_seed(11))
    labels = gmm.labels[comp]
    proc = VPSDE()
    run = tmp_path / "clf"
    clf, summary = train_noisy_classifier(
        x.float(), labels, proc, num_classes=2, steps=300, batch_size=128, seed=0, out=run, log=None, log_every=100
    )
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [100, 200, 300]
    assert set(log[-1]["acc_by_noise"]) == set(summary["acc_by_noise"])
    acc = summary["acc_by_noise"]
    assert acc["t0.00-0.25"] > 0.95  # classes are separable at low noise
    assert acc["t0.75-1.00"] < 0.8  # and nearly pure noise at the top
    again = load_classifier(run)
    xt = torch.randn(16, 2)
    s = torch.rand(16) * 3 + 0.1
    assert torch.allclose(again.log_probs(xt, s), clf.log_probs(xt, s), atol=1e-6)
    # the trained classifier steers the exact unconditional model into class 1
    guided = ClassifierGuidedDenoiser(gmm.denoiser(), again, 2.0, class_labels=1)
    out = _run("euler_maruyama", guided, 60, n=400).double()
    assert float((gmm.labels[_components(gmm, out)] == 1).double().mean()) > 0.95
    # and its noisy-band accuracy agrees with the exact classifier's (an upper bound) at low noise
    exact = noise_band_accuracy(_ExactAsModule(gmm), x[:1000].float(), labels[:1000], proc)
    assert exact["t0.00-0.25"] - acc["t0.00-0.25"] < 0.03


class _ExactAsModule(ExactClassifier):
    def parameters(self, recurse=True):
        yield torch.zeros(())


def test_classifier_networks_shapes_and_input_gradients():
    net = build_network({"arch": "noisy_classifier_unet", "in_channels": 1, "num_classes": 10, "image_size": 8})
    clf = TrainedClassifier(net, DDPM(), 10, conditioning="index")
    x = torch.randn(3, 1, 8, 8)
    assert clf.log_probs(x, torch.tensor([0.1, 1.0, 50.0])).shape == (3, 10)
    g = clf.grad_log_prob(x, torch.tensor([0.1, 1.0, 50.0]), torch.tensor([0, 3, 9]))
    assert g.shape == x.shape and g.abs().sum() > 0
    inp, c_noise = clf.network_input(x, torch.tensor([0.1, 1.0, 1e6]))  # σ clamped to the process's range
    s = torch.rsqrt(1 + torch.tensor([0.1, 1.0, DDPM().sigma_max]) ** 2)
    assert torch.allclose(inp, s[:, None, None, None] * x, rtol=1e-4)
    assert c_noise[-1] == pytest.approx(999.0, abs=1e-3)
    mlp = build_network({"arch": "noisy_classifier_mlp", "dim": 5, "num_classes": 3})
    assert mlp(torch.randn(4, 5), torch.rand(4)).shape == (4, 3)
    cnn = build_network({"arch": "clean_classifier_cnn", "num_classes": 10})
    assert cnn(x).shape == (3, 10) and cnn.features(x).shape == (3, 64)
    with pytest.raises(ValueError, match="num_classes"):
        build_network({"arch": "noisy_classifier_mlp", "dim": 2, "num_classes": 1})


# --- command-line plumbing --------------------------------------------------------------------------------------
def test_parse_class_labels():
    assert parse_class_labels("3", 4, 10).tolist() == [3, 3, 3, 3]
    assert parse_class_labels("0,2", 5, 3).tolist() == [0, 2, 0, 2, 0]
    a, b = parse_class_labels("random", 100, 10, seed=1), parse_class_labels("random", 100, 10, seed=1)
    assert torch.equal(a, b) and len(set(a.tolist())) == 10
    assert not torch.equal(a, parse_class_labels("random", 100, 10, seed=2))
    for bad, msg in (("10", "out of range"), ("x", "integer"), ("-1", "out of range")):
        with pytest.raises(ValueError, match=msg):
            parse_class_labels(bad, 4, 10)


def test_balanced_class_labels_hold_every_class_equally_often():
    """'balanced': every class ⌊num/K⌋ times and the remainder on distinct classes, shuffled reproducibly."""
    a = parse_class_labels("balanced", 1000, 10, seed=1)
    assert torch.bincount(a, minlength=10).tolist() == [100] * 10
    assert torch.equal(a, parse_class_labels("balanced", 1000, 10, seed=1))
    assert not torch.equal(a, parse_class_labels("balanced", 1000, 10, seed=2))
    assert a[:100].unique().numel() > 5  # shuffled, not in class order
    counts = torch.bincount(parse_class_labels("balanced", 23, 10, seed=3), minlength=10)
    assert sorted(counts.tolist()) == [2] * 7 + [3] * 3
    iid = torch.bincount(parse_class_labels("random", 1000, 10, seed=1), minlength=10)
    assert iid.tolist() != [100] * 10  # what balanced takes away


def test_stratified_class_labels_follow_the_training_counts_by_largest_remainder():
    """'stratified': num·p_c of each class, the rounding by largest remainder (ties to random classes), shuffled
    reproducibly; equal or unknown counts give exactly 'balanced'; bad counts are one clear error."""
    a = parse_class_labels("stratified", 8, 2, seed=1, counts=[100, 300])
    assert torch.bincount(a, minlength=2).tolist() == [2, 6]
    b = parse_class_labels("stratified", 7, 3, seed=1, counts=[1, 5, 2])  # exact 0.875, 4.375, 1.75
    assert torch.bincount(b, minlength=3).tolist() == [1, 4, 2]  # the 1 left over goes to the 0.875 remainder
    ties = {tuple(torch.bincount(parse_class_labels("stratified", 5, 4, s, [2, 2, 1, 1]), minlength=4).tolist())
            for s in range(40)}  # fmt: skip
    assert ties == {(2, 1, 1, 1), (1, 2, 1, 1)}  # exact 5/3, 5/3, 5/6, 5/6: classes 2, 3, then 0 or 1
    big = parse_class_labels("stratified", 1000, 3, seed=4, counts=[6, 3, 1])
    assert torch.bincount(big).tolist() == [600, 300, 100] and big[:50].unique().numel() == 3
    assert torch.equal(big, parse_class_labels("stratified", 1000, 3, seed=4, counts=[6, 3, 1]))
    for counts in (None, [7] * 10):
        assert torch.equal(
            parse_class_labels("stratified", 23, 10, 3, counts), parse_class_labels("balanced", 23, 10, 3)
        )
    for bad in ([1, 2], [1, -1, 2], [0, 0, 0], [1.0, float("nan"), 1.0]):
        with pytest.raises(ValueError, match="class counts"):
            parse_class_labels("stratified", 10, 3, counts=bad)


def test_default_class_labels_draw_classes_as_often_as_training_saw_them():
    """Without --class: iid classes with the training frequencies (a binomial check at 5 standard deviations);
    equal or unrecorded counts keep the uniform draw of earlier versions bit for bit."""
    n = 20_000
    y = default_class_labels(n, 3, seed=5, counts=[70, 20, 10])
    for c, p in enumerate((0.7, 0.2, 0.1)):
        assert abs(float((y == c).float().mean()) - p) < 5 * (p * (1 - p) / n) ** 0.5
    assert torch.bincount(y).tolist() != [14_000, 4_000, 2_000]  # independent draws, not a stratified set
    assert torch.equal(y, default_class_labels(n, 3, seed=5, counts=[7, 2, 1]))  # counts, not their scale
    old = torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(9))
    for counts in (None, [6000] * 10):
        assert torch.equal(default_class_labels(50, 10, seed=9, counts=counts), old)
    assert set(default_class_labels(500, 3, seed=1, counts=[5, 0, 5]).tolist()) == {0, 2}


def test_cli_sample_without_class_draws_the_training_frequencies(tmp_path, capsys):
    """A class-conditional run records its training class counts; `sample` without --class draws classes with
    their frequencies and says so in the provenance; --class stratified follows the counts exactly."""
    from scorekit.cli import main

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [90, 30])
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(120, 2)).astype(np.float32) + labels[:, None], y=labels)
    run = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "d.npz"), "--class-conditional", "--steps", "2", "--batch-size", "8",
            "--out", str(run), "--checkpoint-every", "2", "--sample-every", "0"]  # fmt: skip
    assert main(argv) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["class_counts"] == [90, 30]
    out = tmp_path / "s.npz"
    base = ["sample", "--run", str(run), "--sampler", "pf_euler", "--steps", "2", "--num", "400", "--no-progress"]
    assert main([*base, "--out", str(out)]) == 0
    z = np.load(out, allow_pickle=False)
    share = float((z["labels"] == 0).mean())
    assert abs(share - 0.75) < 5 * (0.75 * 0.25 / 400) ** 0.5
    assert "as often as in training" in json.loads(str(z["provenance"]))["settings"]["class_labels"]
    assert main([*base, "--out", str(out), "--class", "stratified"]) == 0
    assert np.bincount(np.load(out)["labels"]).tolist() == [300, 100]
    capsys.readouterr()


def _args(**kw):
    p = argparse.ArgumentParser()
    add_guidance_arguments(p)
    args = p.parse_args(kw.pop("argv", []))
    for k, v in {"num": 6, "seed": 0, "run": None, **kw}.items():
        setattr(args, k, v)
    return args


def test_guided_denoiser_from_args(gmm):
    D = gmm.denoiser()
    den, labels = guided_denoiser_from_args(
        _args(argv=["--guidance", "classifier", "--classifier", "exact", "--class", "1", "--scale", "2"]), D, gmm
    )
    assert isinstance(den, ClassifierGuidedDenoiser) and den.scale == 2.0 and labels.tolist() == [1] * 6
    den, labels = guided_denoiser_from_args(_args(argv=["--guidance", "cfg", "--class", "0,1"]), D, gmm)
    assert isinstance(den, ClassifierFreeGuidedDenoiser) and den.w == 1.0 and labels.tolist() == [0, 1] * 3
    assert guided_denoiser_from_args(_args(), D, gmm) == (D, None)
    plain = GaussianMixture(SPEC["weights"], SPEC["means"], SPEC["variances"])
    cases = [
        (["--guidance", "classifier", "--classifier", "exact", "--class", "1"], plain, "labels"),
        (["--guidance", "classifier", "--class", "1"], gmm, "--classifier"),
        (["--guidance", "classifier", "--classifier", "exact"], gmm, "--class"),
        (["--guidance", "classifier", "--classifier", "exact", "--class", "5"], gmm, "out of range"),
    ]
    for argv, mix, msg in cases:
        with pytest.raises(ValueError, match=msg):
            guided_denoiser_from_args(_args(argv=argv), mix.denoiser(), mix)


def test_cli_train_classifier_and_guided_sample(gmm, tmp_path, capsys):
    from scorekit.cli import main

    spec = tmp_path / "mix.json"
    spec.write_text(json.dumps(SPEC))
    run = tmp_path / "clf"
    rc = main(["train-classifier", "--data", f"gmm:{spec}", "--process", "vp", "--steps", "40", "--batch-size", "64",
               "--out", str(run), "--log-every", "20"])  # fmt: skip
    assert rc == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["kind"] == "classifier" and cfg["classifier"]["num_classes"] == 2
    assert cfg["network"]["arch"] == "noisy_classifier_mlp" and cfg["process"]["name"] == "vp"
    assert json.loads((run / "eval.json").read_text())["eval_split"] == "held-out"
    assert load_classifier(run).num_classes == 2
    out = tmp_path / "s.npz"
    rc = main(["sample", "--model", f"gmm:{spec}", "--process", "vp", "--sampler", "euler_maruyama", "--steps", "60",
               "--num", "64", "--out", str(out), "--guidance", "classifier", "--classifier", "exact", "--class", "1",
               "--scale", "4"])  # fmt: skip
    assert rc == 0
    z = np.load(out)
    assert z["labels"].tolist() == [1] * 64
    comp = _components(gmm, torch.from_numpy(z["samples"]).double())
    assert bool((gmm.labels[comp] == 1).all())
    capsys.readouterr()
    rc = main(["train-classifier", "--data", "moons", "--process", "vp", "--steps", "5", "--out", str(tmp_path / "m")])
    assert rc == 2 and "no class labels" in capsys.readouterr().err


def test_guidance_interval_guides_only_inside_and_counts_what_it_runs(gmm):
    """With interval (lo, hi), D equals the guided D where lo < σ <= hi and the plain conditional D elsewhere,
    sample by sample; outside it only the conditional branch runs, and `network_evals` counts exactly that."""
    D = gmm.denoiser()
    x = 3.0 * torch.randn(40, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    sigma = torch.logspace(-1.5, 1, 40, dtype=torch.float64)
    y = torch.arange(40) % 2
    full, plain = ClassifierFreeGuidedDenoiser(D, 2.0)(x, sigma, y), D(x, sigma, y)
    assert (full - plain).abs().amax() > 0.1  # guidance moves D here, so the comparison below can fail
    lo, hi = 0.3, 2.0
    inside = (sigma > lo) & (sigma <= hi)
    assert 0 < int(inside.sum()) < 40
    part = ClassifierFreeGuidedDenoiser(D, 2.0, interval=(lo, hi))
    out = part(x, sigma, y)
    assert torch.allclose(out[inside], full[inside], atol=1e-12)
    assert torch.allclose(out[~inside], plain[~inside], atol=1e-12)
    assert part.network_evals == 40 + int(inside.sum())
    everywhere = ClassifierFreeGuidedDenoiser(D, 2.0, interval=(0.0, float("inf")))
    assert torch.allclose(everywhere(x, sigma, y), full, atol=1e-12) and everywhere.network_evals == 80
    nowhere = ClassifierFreeGuidedDenoiser(D, 2.0, interval=(100.0, 200.0))
    assert torch.allclose(nowhere(x, sigma, y), plain, atol=1e-12) and nowhere.network_evals == 40
    for bad in ((1.0, 1.0), (2.0, 1.0), (-1.0, 1.0)):
        with pytest.raises(ValueError, match="interval"):
            ClassifierFreeGuidedDenoiser(D, 2.0, interval=bad)


def test_cli_guidance_interval_records_the_network_evaluations_it_ran(tmp_path, capsys):
    """`sample --guidance cfg --guidance-interval LO,HI`: the .npz's network_nfe is the evaluations actually run —
    one per step outside the interval, two inside — and the setting is in the provenance; bad intervals exit 2."""
    from scorekit.cli import main

    spec = tmp_path / "mix.json"
    spec.write_text(json.dumps(SPEC))
    base = ["sample", "--model", f"gmm:{spec}", "--process", "vp", "--sampler", "pf_euler", "--steps", "12",
            "--num", "8", "--guidance", "cfg", "--class", "1", "--cfg-weight", "2", "--no-progress"]  # fmt: skip
    lo, hi = 0.5, 5.0
    out = tmp_path / "s.npz"
    assert main([*base, "--out", str(out), "--guidance-interval", f"{lo},{hi}"]) == 0
    z = np.load(out, allow_pickle=False)
    net = float(z["network_nfe"])
    assert float(z["nfe"]) == 12 and 12 < net < 24 and net == int(net)  # the same σ steps for every sample
    assert json.loads(str(z["provenance"]))["settings"]["guidance"]["guidance_interval"] == f"{lo},{hi}"
    assert "1 outside" in capsys.readouterr().out
    full = tmp_path / "f.npz"
    assert main([*base, "--out", str(full)]) == 0
    assert float(np.load(full)["network_nfe"]) == 24
    capsys.readouterr()
    for bad, msg in ((["--guidance-interval", "3,1"], "0 <= LO < HI"), (["--guidance-interval", "x"], "LO,HI")):
        assert main([*base, "--out", str(tmp_path / "b.npz"), *bad]) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
