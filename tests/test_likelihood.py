"""Likelihood: PF-ODE NLL of the exact mixture denoiser vs the true log-density, the DDPM bound vs its closed form,
bits/dim offsets, and `scorekit likelihood`."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from scorekit.analytic import GaussianMixture
from scorekit.likelihood import (
    bits_per_dim,
    ddpm_vlb_nll,
    dequantize,
    discretized_gaussian_log_likelihood,
    exact_divergence,
    hutchinson_divergence,
    log_likelihood,
    probe_vectors,
)
from scorekit.models.parameterization import NetworkDenoiser
from scorekit.processes import DDPM, get_process


def mixture_2d():
    return GaussianMixture(
        [0.3, 0.5, 0.2], [[-1.0, 0.5], [1.5, -0.5], [0.0, 2.0]], [[0.3, 0.5], [0.6, 0.2], [0.25, 0.25]]
    )


@pytest.mark.parametrize("proc", ["vp", "ve", "subvp", "edm", None])
def test_ode_nll_with_exact_trace_matches_true_log_density_2d(proc):
    gmm = mixture_2d()
    x, _ = gmm.sample(100, torch.Generator().manual_seed(0))
    process = get_process(proc) if proc else None
    den = gmm.denoiser(process)  # process None: σ-space on [0.002, 80] with prior N(0, 80²)
    res = log_likelihood(den, x, process=process, divergence="exact", rtol=1e-5, atol=1e-5)
    err = (res.nll_nats + gmm.log_prob(x)).abs() / 2
    assert err.mean() <= 0.01, err.mean()
    assert res.nfe > 10


def mixture_16d():
    g = torch.Generator().manual_seed(1)
    d = 16
    means = 1.5 * torch.randn(3, d, generator=g, dtype=torch.float64)
    variances = 0.5 + torch.rand(3, d, generator=g, dtype=torch.float64)
    return GaussianMixture([0.5, 0.3, 0.2], means, variances)


def test_ode_nll_with_hutchinson_in_16d_is_within_two_percent():
    gmm = mixture_16d()
    x, _ = gmm.sample(64, torch.Generator().manual_seed(2))
    true = -gmm.log_prob(x)
    res = log_likelihood(
        gmm.denoiser(get_process("vp")), x, divergence="hutchinson", probes=8, noise="rademacher",
        generator=torch.Generator().manual_seed(3), rtol=1e-4, atol=1e-4,
    )  # fmt: skip
    rel = ((res.nll_nats - true) / true).abs()
    assert rel.mean() <= 0.02, rel.mean()
    assert abs(res.nll_nats.mean() / true.mean() - 1) <= 0.01


@pytest.mark.parametrize("noise", ["gaussian", "rademacher", "sphere"])
def test_hutchinson_trace_is_unbiased_for_every_probe_law(noise):
    gmm = mixture_16d()
    x, _ = gmm.sample(3, torch.Generator().manual_seed(4))
    sigma = torch.tensor([0.05, 0.7, 4.0], dtype=torch.float64)
    fn = lambda y, s, lab: gmm.denoise(y, s)  # noqa: E731
    _, exact = exact_divergence(fn, x, sigma)
    probes = probe_vectors((4000 * 3, 16), noise, torch.Generator().manual_seed(5), torch.float64)
    assert torch.allclose(probes.pow(2).mean(), torch.tensor(1.0, dtype=torch.float64), atol=0.02)
    _, est = hutchinson_divergence(fn, x, sigma, probes)
    assert torch.allclose(est, exact, atol=0.15), (est, exact)


class AffineGaussianNet(nn.Module):
    """ε-network of the exact denoiser of N(μ, v) under a VP process (conditioning "t"), in float32."""

    def __init__(self, mu, var, process):
        super().__init__()
        self.register_buffer("mu", torch.tensor(mu, dtype=torch.float32))
        self.register_buffer("var", torch.tensor(var, dtype=torch.float32))
        self.scale = nn.Parameter(torch.ones(()))  # a parameter so the denoiser's dtype is float32
        self.process = process

    def forward(self, x_in, c_noise, class_labels=None):
        t = c_noise.double()
        s, sigma = self.process.scale(t).float()[:, None], self.process.sigma(t).float()[:, None]
        x = x_in / s
        d = self.mu + self.var / (self.var + sigma**2) * (x - self.mu)
        return self.scale * (x - d) / sigma


def test_ode_nll_of_a_float32_network_denoiser_matches_the_gaussian():
    process = get_process("vp")
    mu, var = [0.5, -1.0, 0.2], [0.4, 1.2, 0.8]
    den = NetworkDenoiser(AffineGaussianNet(mu, var, process), process, "eps", conditioning="t")
    gauss = GaussianMixture([1.0], [mu], [var])
    x, _ = gauss.sample(50, torch.Generator().manual_seed(3))
    res = log_likelihood(den, x.float(), rtol=1e-5, atol=1e-5)
    err = (res.nll_nats + gauss.log_prob(x)).abs() / 3
    assert err.mean() <= 0.01


def closed_form_ddpm_bound(process: DDPM, mu, var, variance):
    """E_{x0 ~ N(μ, v)} of L_T + Σ L_{i−1} + L_0 for the exact denoiser (Gaussian decoder), per dimension summed."""
    beta = process.betas
    abar = torch.cumprod(1 - beta, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    sig2 = (1 - abar) / abar
    tilde = beta * (1 - abar_prev) / (1 - abar)
    c0 = abar_prev.sqrt() * beta / (1 - abar)
    total = 0.0
    for m, v in zip(mu, var):
        post = v * sig2 / (v + sig2)  # Var[x0 | x_i]
        rev = tilde.clone() if variance == "small" else beta.clone()
        rev[0] = tilde[1]
        kl = 0.5 * (-1 + rev[1:].log() - tilde[1:].log() + tilde[1:] / rev[1:] + c0[1:] ** 2 * post[1:] / rev[1:])
        l0 = 0.5 * (math.log(2 * math.pi) + rev[0].log() + post[0] / rev[0])
        a = abar[-1]
        lt = 0.5 * (-1 - torch.log1p(-a) + (1 - a) + a * (v + m**2))
        total += float(kl.sum() + l0 + lt)
    return total


@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_bound_of_exact_denoiser_on_a_gaussian_equals_closed_form(variance):
    process = DDPM(num_steps=200)
    mu, var = [0.3, -0.8], [0.6, 1.4]
    gauss = GaussianMixture([1.0], [mu], [var])
    x, _ = gauss.sample(3000, torch.Generator().manual_seed(4))
    res = ddpm_vlb_nll(
        gauss.denoiser(process), x, process, variance=variance, generator=torch.Generator().manual_seed(5)
    )
    assert res.nfe == 200
    expected = closed_form_ddpm_bound(process, mu, var, variance)
    se = res.nll_nats.std().item() / math.sqrt(x.shape[0])
    assert abs(res.nll_nats.mean().item() - expected) < 4 * se + 1e-3, (res.nll_nats.mean().item(), expected, se)
    entropy = sum(0.5 * math.log(2 * math.pi * math.e * v) for v in var)
    assert expected >= entropy  # a bound on E[−log p] = the entropy


def test_discretized_decoder_is_a_distribution_over_256_levels():
    levels = torch.arange(256, dtype=torch.float64) / 255 * 2 - 1
    for mean, log_var in [(0.1, -3.0), (-0.95, -6.0), (1.3, 0.0)]:
        logp = discretized_gaussian_log_likelihood(
            levels, torch.full_like(levels, mean), torch.full_like(levels, log_var)
        )
        assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_bits_per_dim_offsets_uniform_density_is_eight_bits():
    """A uniform density on [-1, 1]^D (NLL D·ln 2 in model space) is 8 bits/dim of 8-bit data; in [0, 1] too."""
    from scorekit.data import DataTransform

    d = 64
    nll_model = torch.tensor([d * math.log(2.0)])
    assert bits_per_dim(nll_model, d, DataTransform.image()).item() == pytest.approx(8.0)
    assert bits_per_dim(torch.tensor([0.0]), d, DataTransform("vector", 0.0, 1.0)).item() == pytest.approx(8.0)
    discrete = torch.tensor([d * 3 * math.log(2.0)])
    assert bits_per_dim(discrete, d, dequantize=False).item() == pytest.approx(3.0)
    x = torch.arange(256, dtype=torch.float64) / 255
    y = dequantize(x.repeat(20), torch.Generator().manual_seed(0))
    assert torch.equal(torch.floor(y * 256), (x * 255).round().repeat(20))


def test_errors_are_one_line_value_errors():
    gmm = mixture_2d()
    x, _ = gmm.sample(4, torch.Generator().manual_seed(0))
    den = gmm.denoiser(get_process("vp"))
    with pytest.raises(ValueError, match="divergence"):
        log_likelihood(den, x, divergence="nope")
    with pytest.raises(ValueError, match="method"):
        log_likelihood(den, x, method="nope")
    with pytest.raises(ValueError, match="ddpm"):
        log_likelihood(den, x, method="vlb")
    with pytest.raises(ValueError, match="rtol"):
        log_likelihood(den, x, rtol=-1.0)


def _write_spec(tmp_path, gmm):
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(gmm.to_spec()))
    return p


def test_cli_likelihood_with_an_analytic_model(tmp_path, capsys):
    from scorekit.cli import main

    gmm = mixture_2d()
    spec = _write_spec(tmp_path, gmm)
    x, _ = gmm.sample(24, torch.Generator().manual_seed(7))
    np.save(tmp_path / "x.npy", x.numpy().astype(np.float32))
    out = tmp_path / "ll.json"
    rc = main(
        ["likelihood", "--model", f"gmm:{spec}", "--data", str(tmp_path / "x.npy"), "--out", str(out),
         "--batch-size", "10", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res) >= {"nll_nats", "bpd", "per_sample", "nfe"}
    assert res["bpd"] is None and len(res["per_sample"]) == 24 and res["nfe"] > 0
    true = -gmm.log_prob(torch.from_numpy(np.load(tmp_path / "x.npy")).double())
    assert np.abs(np.array(res["per_sample"]) - true.numpy()).mean() / 2 <= 0.01
    assert res["nll_nats"] == pytest.approx(float(np.mean(res["per_sample"])))

    rc = main(["likelihood", "--model", f"gmm:{spec}", "--data", "digits", "--out", str(out), "--no-progress"])
    assert rc == 2
    assert "shape" in capsys.readouterr().err
    rc = main(["likelihood", "--model", f"gmm:{tmp_path / 'missing.json'}", "--data", "moons", "--out", str(out)])
    assert rc == 2
    capsys.readouterr()
    for bad_out in (str(tmp_path), "/proc/forbidden/ll.json"):
        rc = main(["likelihood", "--model", f"gmm:{spec}", "--data", str(tmp_path / "x.npy"), "--out", bad_out])
        assert rc == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_likelihood_of_a_run_on_digits_reports_bits_per_dim(tmp_path):
    """A DDPM run (untrained MLP) on digits: ODE bpd and vlb bpd are finite and the vlb one is ≥ 0."""
    from scorekit.checkpoint import save_tensors, write_config
    from scorekit.cli import main
    from scorekit.data import DataTransform
    from scorekit.models.registry import build_network

    net_cfg = {"arch": "mlp", "dim": 64, "hidden": 32, "depth": 1, "emb_dim": 16}
    net = build_network(net_cfg)
    run = tmp_path / "run"
    write_config(
        run,
        {
            "kind": "score_model",
            "data": {"spec": "digits", "kind": "image", "shape": [64], "num_classes": 0,
                     "transform": DataTransform.image().to_config()},
            "process": DDPM(num_steps=20).to_config(),
            "network": net_cfg,
            "denoiser": {"parameterization": "eps", "conditioning": "index", "sigma_data": 0.5,
                         "output_channels": None, "class_conditional": False},
        },
    )  # fmt: skip
    save_tensors(run / "model.safetensors", net.state_dict())
    digits = np.random.default_rng(0).integers(0, 17, size=(6, 64)) / 16.0
    np.save(tmp_path / "d.npy", digits.astype(np.float32))
    for method in ("ode", "vlb"):
        out = tmp_path / f"{method}.json"
        rc = main(["likelihood", "--run", str(run), "--data", str(tmp_path / "d.npy"), "--method", method,
                   "--out", str(out), "--no-progress", "--rtol", "1e-3", "--atol", "1e-3"])  # fmt: skip
        assert rc == 0, method
        res = json.loads(out.read_text())
        assert math.isfinite(res["bpd"]) and res["bpd"] > 0
        assert res["bpd"] == pytest.approx(res["nll_nats"] / (64 * math.log(2)))
