"""Training objectives: optimum at the closed-form score for Gaussian data, closed-form expected losses,
ISM ≡ DSM on a 1-D Gaussian, exact ε-loss / EDM-loss identities, and clear errors."""

import math

import pytest
import torch
from torch import nn

from scorekit.analytic import GaussianMixture
from scorekit.likelihood import ddpm_posterior
from scorekit.losses import OBJECTIVES, geometric_sigmas, get_objective
from scorekit.models.parameterization import NetworkDenoiser
from scorekit.processes import DDPM, get_process

MU, VAR = [0.7, -0.4], [0.5, 1.5]  # 2-D Gaussian data N(μ, diag(v))


def gaussian():
    return GaussianMixture([1.0], [MU], [VAR])


class ExactNet(nn.Module):
    """F(c_in·x, σ): the network output whose denoiser is the exact D* of `gmm`, moved by σ·(θ0 + θ1·x_in).

    Conditioning "sigma" (c_noise = σ). With `learned_variance` it returns 2C channels, the second C being the
    optimal variance interpolation v* (+ θ2) from the true reverse variance β̃ + c0²·Var[x0 | x_i].
    """

    def __init__(self, gmm, precond, learned_variance=False, process=None):
        super().__init__()
        self.gmm, self.precond, self.learned, self.process = gmm, precond, learned_variance, process
        self.theta = nn.Parameter(torch.zeros(3, dtype=torch.float64))

    def forward(self, x_in, c_noise, class_labels=None):
        sigma = c_noise
        c_skip, c_out, c_in = (c.reshape(-1, 1) for c in self.precond.coefficients(sigma))
        x = x_in / c_in
        f = (self.gmm.denoise(x, sigma) - c_skip * x) / c_out
        f = f + sigma.reshape(-1, 1) / c_out * (self.theta[0] + self.theta[1] * x_in)  # D + σ·(θ0 + θ1·x_in)
        if not self.learned:
            return f
        step = self.process.index_of_sigma(sigma.detach()).round().long()
        post = ddpm_posterior(self.process, step)
        var_x0 = self.gmm.variances[0] * sigma.reshape(-1, 1) ** 2 / (self.gmm.variances[0] + sigma.reshape(-1, 1) ** 2)
        true_var = post["var"].reshape(-1, 1) + post["c0"].reshape(-1, 1) ** 2 * var_x0
        lo, hi = post["log_var_clipped"].reshape(-1, 1), post["log_beta"].reshape(-1, 1)
        v = 2 * (true_var.log() - lo) / (hi - lo) - 1
        return torch.cat([f, v + self.theta[2]], dim=1)


def exact_denoiser(gmm, process, parameterization="eps", learned_variance=False):
    den = NetworkDenoiser(nn.Identity(), process, parameterization, conditioning="sigma", data_shape=(gmm.dim,))
    den.net = ExactNet(gmm, den.precond, learned_variance, process)
    if learned_variance:
        den.output_channels = gmm.dim
    return den


def mean_gradient(objective, den, data_gmm, batches=24, batch=256, seed=0):
    """Mean and standard error of ∂(loss)/∂θ over independent batches of data from `data_gmm`."""
    grads = []
    for k in range(batches):
        g = torch.Generator().manual_seed(seed + k)
        x0, _ = data_gmm.sample(batch, g)
        den.net.theta.grad = None
        objective(den, x0, g).mean().backward()
        grads.append(den.net.theta.grad.clone())
    grads = torch.stack(grads)
    return grads.mean(0), grads.std(0) / math.sqrt(batches)


CASES = [
    ("dsm", "vp", "eps", {}),
    ("dsm", "ve", "score", {}),
    ("dsm", "subvp", "x0", {}),
    ("dsm", "edm", "edm", {}),
    ("dsm", "vp", "edm", {"weighting": "sigma2"}),
    ("dsm_likelihood", "vp", "eps", {}),
    ("dsm_likelihood", "ve", "v", {"importance_sampling": False}),
    ("dsm_single", "ve", "score", {"sigma": 0.3}),
    ("ncsn", "ve", "score", {"num_levels": 8}),
    ("ism", "vp", "eps", {}),
    ("ssm", "vp", "eps", {"num_projections": 2}),
    ("ssm", "ve", "edm", {"noise": "rademacher", "variance_reduction": False, "sigma": 0.5}),
    ("ddpm_simple", "ddpm", "eps", {}),
    ("ddpm_vlb", "ddpm", "eps", {}),
    ("ddpm_vlb", "ddpm", "x0", {"variance": "large"}),
    ("ddpm_hybrid", "ddpm", "eps", {}),
    ("edm", "edm", "edm", {}),
    ("edm", "vp", "eps", {"sigma_data": 1.0}),
]


@pytest.mark.parametrize("name,proc,param,opts", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_exact_score_is_a_stationary_point_and_a_wrong_one_is_not(name, proc, param, opts):
    """For Gaussian data, E ∂loss/∂θ = 0 at the closed-form denoiser (mean, and for the hybrid the variance);
    the denoiser of a different Gaussian is visibly not stationary, so the test can fail."""
    process = get_process(proc, **({"num_steps": 200} if proc == "ddpm" else {}))
    objective = get_objective(name, process, **opts)
    learned = name == "ddpm_hybrid"
    data = gaussian()
    mean, se = mean_gradient(objective, exact_denoiser(data, process, param, learned), data)
    n_params = 3 if learned else 2
    t_stat = (mean[:n_params] / se[:n_params].clamp(min=1e-12)).abs()
    assert (t_stat < 4.5).all(), (name, mean, se)

    wrong = GaussianMixture([1.0], [[m + 1.0 for m in MU]], [[v * 3.0 for v in VAR]])
    mean_w, se_w = mean_gradient(objective, exact_denoiser(wrong, process, param, learned), data)
    assert (mean_w[:2] / se_w[:2].clamp(min=1e-12)).abs().max() > 6.0, (name, mean_w, se_w)


def test_ism_and_dsm_give_the_same_minimiser_on_a_1d_gaussian():
    """Affine D(x) = a·x + b at one σ: both minimisers equal the closed form a = v/(v+σ²), b = μσ²/(v+σ²)."""
    mu, var, sigma = 1.3, 0.8, 0.6
    data = torch.Generator().manual_seed(1)
    x0 = mu + math.sqrt(var) * torch.randn(20000, 1, generator=data, dtype=torch.float64)
    process = get_process("ve")
    fits = {}
    for name in ("ism", "dsm_single"):
        lin = nn.Linear(1, 1).double()
        net = _LinearNet(lin)
        den = NetworkDenoiser(net, process, "x0", conditioning="sigma", data_shape=(1,))
        objective = get_objective(name, process, sigma=sigma)
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

        def closure(opt=opt, objective=objective, den=den):
            opt.zero_grad()
            loss = objective(den, x0, torch.Generator().manual_seed(7)).mean()
            loss.backward()
            return loss

        opt.step(closure)
        fits[name] = (lin.weight.item(), lin.bias.item())
    a_star, b_star = var / (var + sigma**2), mu * sigma**2 / (var + sigma**2)
    for name, (a, b) in fits.items():
        assert a == pytest.approx(a_star, abs=0.02), name
        assert b == pytest.approx(b_star, abs=0.02), name
    assert fits["ism"][0] == pytest.approx(fits["dsm_single"][0], abs=0.02)


class _LinearNet(nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, x, c_noise, class_labels=None):
        return self.lin(x)


def test_dsm_of_an_eps_network_is_the_plain_eps_mse():
    process = get_process("vp")
    net = _TinyNet(2)
    den = NetworkDenoiser(net, process, "eps", conditioning="t")
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    loss = get_objective("dsm", process)(den, x0, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    t = process.t_min + (1 - process.t_min) * torch.rand(64, generator=g, dtype=torch.float64)
    sigma = process.sigma(t).float()
    eps = torch.randn(x0.shape, generator=g)
    x = x0 + sigma[:, None] * eps
    eps_hat = net(
        process.scale_of_sigma(sigma.double()).float()[:, None] * x, process.t_of_sigma(sigma.double()).float()
    )
    torch.testing.assert_close(loss, (eps_hat - eps).pow(2).mean(1), rtol=1e-4, atol=1e-6)


def test_edm_loss_of_an_edm_network_is_the_network_output_mse():
    process = get_process("edm")
    den = NetworkDenoiser(_TinyNet(3), process, "edm", conditioning="log_sigma", sigma_data=0.5)
    x0 = torch.randn(128, 3, generator=torch.Generator().manual_seed(0))
    loss = get_objective("edm", process)(den, x0, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(128, generator=g))
    x = x0 + sigma[:, None] * torch.randn(x0.shape, generator=g)
    raw = (den.network_output(x, sigma) - den.target(x0, x, sigma)).pow(2).mean(1)
    torch.testing.assert_close(loss, raw, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("param,weighting,is_sigma2", [("score", "auto", True), ("x0", "auto", True),
                                                         ("edm", "auto", False), ("edm", "sigma2", True),
                                                         ("score", "output", False)])  # fmt: skip
def test_dsm_weighting_is_sigma_squared_or_network_output_mse(param, weighting, is_sigma2):
    process = get_process("ve")
    den = NetworkDenoiser(_TinyNet(2), process, param, conditioning="sigma")
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    loss = get_objective("dsm", process, weighting=weighting)(den, x0, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    t = process.t_min + (1 - process.t_min) * torch.rand(64, generator=g, dtype=torch.float64)
    sigma = process.sigma(t).float()
    x = x0 + sigma[:, None] * torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        if is_sigma2:
            expected = ((den(x, sigma) - x0) / sigma[:, None]).pow(2).mean(1)
        else:
            expected = (den.network_output(x, sigma) - den.target(x0, x, sigma)).pow(2).mean(1)
    torch.testing.assert_close(loss.detach(), expected, rtol=2e-4, atol=1e-6)


class _TinyNet(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d + 1, d)
        torch.nn.init.normal_(self.lin.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x, c_noise, class_labels=None):
        return self.lin(torch.cat([x, c_noise.reshape(-1, 1).to(x.dtype)], 1))


@pytest.mark.parametrize("importance_sampling", [True, False])
def test_likelihood_weighted_dsm_expectation_matches_closed_form(importance_sampling):
    """E[loss] of the exact denoiser = ∫ (σ̇/σ)·v/(v+σ²) dt = Σ_dims ½ ln(σ²/(v+σ²)) |_{σ_min}^{σ_max} / d."""
    process = get_process("vp")
    data = gaussian()
    den = exact_denoiser(data, process, "eps")
    obj = get_objective("dsm_likelihood", process, importance_sampling=importance_sampling)
    x0, _ = data.sample(40000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        loss = obj(den, x0, torch.Generator().manual_seed(3)).double()
    smin = float(process.sigma(torch.tensor(process.t_min, dtype=torch.float64)))
    smax = float(process.sigma(torch.tensor(1.0, dtype=torch.float64)))
    prim = lambda s, v: 0.5 * math.log(s**2 / (v + s**2))  # noqa: E731
    expected = sum(prim(smax, v) - prim(smin, v) for v in VAR) / len(VAR)
    se = loss.std().item() / math.sqrt(loss.numel())
    assert abs(loss.mean().item() - expected) < 4 * se + 1e-3, (loss.mean().item(), expected, se)


@pytest.mark.parametrize("name,opts", [("ism", {"sigma": 0.4}), ("ssm", {"sigma": 0.4, "num_projections": 3})])
def test_score_matching_value_at_the_optimum_is_minus_half_the_fisher_term(name, opts):
    """σ²(½‖s‖² + tr ∇s) at the true score of N(μ, v) has mean −½σ²/(v+σ²) per dimension (Hyvärinen 2005)."""
    process, data, sigma = get_process("ve"), gaussian(), 0.4
    den = exact_denoiser(data, process, "score")
    x0, _ = data.sample(20000, torch.Generator().manual_seed(4))
    loss = get_objective(name, process, **opts)(den, x0, torch.Generator().manual_seed(5)).detach()
    expected = sum(-0.5 * sigma**2 / (v + sigma**2) for v in VAR) / len(VAR)
    se = loss.std().item() / math.sqrt(loss.numel())
    assert abs(loss.mean().item() - expected) < 4 * se, (loss.mean().item(), expected, se)


def test_ddpm_vlb_objective_is_an_unbiased_estimate_of_the_full_bound():
    """E[T·L_i + L_T] over uniform i equals the full bound summed over every step (same exact denoiser)."""
    from scorekit.likelihood import ddpm_vlb_nll

    process = DDPM(num_steps=50)
    data = gaussian()
    den = exact_denoiser(data, process, "eps")
    x0, _ = data.sample(20000, torch.Generator().manual_seed(6))
    with torch.no_grad():
        est = get_objective("ddpm_vlb", process, reduction="sum")(den, x0, torch.Generator().manual_seed(7)).double()
        full = ddpm_vlb_nll(den, x0[:4000], process, variance="small", generator=torch.Generator().manual_seed(8))
    se = est.std().item() / math.sqrt(est.numel()) + full.nll_nats.std().item() / math.sqrt(4000)
    assert abs(est.mean().item() - full.nll_nats.mean().item()) < 4 * se


def test_ncsn_draws_only_its_geometric_levels_and_dsm_single_only_its_sigma():
    process = get_process("ve")
    seen = []

    class Spy(nn.Module):
        def forward(self, x, c_noise, class_labels=None):
            seen.append(c_noise.detach().double())
            return torch.zeros_like(x)

    den = NetworkDenoiser(Spy(), process, "score", conditioning="sigma")
    x0 = torch.zeros(500, 2)
    get_objective("ncsn", process, sigma_min=0.01, sigma_max=10.0, num_levels=5)(den, x0, torch.Generator())
    levels = geometric_sigmas(0.01, 10.0, 5)
    assert torch.allclose(levels[1:] / levels[:-1], torch.full((4,), (0.01 / 10) ** 0.25, dtype=torch.float64))
    got = torch.unique(seen[-1].float())
    torch.testing.assert_close(got.sort().values.double(), levels.sort().values.float().double(), rtol=1e-5, atol=0)
    get_objective("dsm_single", process, sigma=0.25)(den, x0, torch.Generator())
    assert torch.unique(seen[-1].float()).tolist() == [0.25]


def test_losses_are_reproducible_from_a_seed():
    process = get_process("vp")
    den = NetworkDenoiser(_TinyNet(2), process, "eps")
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    for name in ("dsm", "dsm_likelihood", "ncsn", "ism", "ssm", "edm"):
        a = get_objective(name, process)(den, x0, torch.Generator().manual_seed(9))
        b = get_objective(name, process)(den, x0, torch.Generator().manual_seed(9))
        c = get_objective(name, process)(den, x0, torch.Generator().manual_seed(10))
        assert torch.equal(a, b), name
        assert not torch.equal(a, c), name


def test_hybrid_vlb_term_trains_only_the_variances():
    """Nichol & Dhariwal eq. 16: the bound sees the mean with stopped gradient, so ∂L_vlb/∂mean = 0."""
    process = DDPM(num_steps=100)
    data = gaussian()
    den = exact_denoiser(data, process, "eps", learned_variance=True)
    x0, _ = data.sample(256, torch.Generator().manual_seed(0))
    obj_big = get_objective("ddpm_hybrid", process, lambda_vlb=1.0)
    obj_zero = get_objective("ddpm_hybrid", process, lambda_vlb=0.0)
    grads = []
    for obj in (obj_big, obj_zero):
        den.net.theta.grad = None
        obj(den, x0, torch.Generator().manual_seed(1)).mean().backward()
        grads.append(den.net.theta.grad.clone())
    torch.testing.assert_close(grads[0][:2], grads[1][:2])
    assert grads[1][2] == 0 and grads[0][2] != 0


def test_objective_registry_and_errors():
    assert set(OBJECTIVES) >= {
        "dsm", "dsm_likelihood", "dsm_single", "ncsn", "ism", "ssm", "ddpm_simple", "ddpm_vlb", "ddpm_hybrid", "edm",
    }  # fmt: skip
    vp = get_process("vp")
    with pytest.raises(ValueError, match="unknown objective"):
        get_objective("nope", vp)
    with pytest.raises(ValueError, match="no option"):
        get_objective("dsm", vp, sigma=1.0)
    with pytest.raises(ValueError, match="ddpm process"):
        get_objective("ddpm_vlb", vp)
    with pytest.raises(ValueError, match="ddpm process"):
        get_objective("ddpm_hybrid", vp)
    with pytest.raises(ValueError, match="sigma"):
        get_objective("dsm_single", vp, sigma=-1)
    with pytest.raises(ValueError, match="num_levels"):
        get_objective("ncsn", vp, num_levels=1)
    with pytest.raises(ValueError, match="num_projections"):
        get_objective("ssm", vp, num_projections=0)
    with pytest.raises(ValueError, match="weighting"):
        get_objective("dsm", vp, weighting="nope")
    with pytest.raises(ValueError, match="reduction"):
        get_objective("dsm", vp, reduction="max")
    ddpm = DDPM(num_steps=10)
    den = NetworkDenoiser(_TinyNet(2), ddpm, "eps", conditioning="index")
    with pytest.raises(ValueError, match="4 output channels"):
        get_objective("ddpm_hybrid", ddpm)(den, torch.zeros(4, 2), torch.Generator())
    with pytest.raises(ValueError, match="max_dim"):
        get_objective("ism", vp, max_dim=1)(NetworkDenoiser(_TinyNet(2), vp), torch.zeros(4, 2), torch.Generator())


def test_denoise_with_variance_is_the_denoiser_plus_the_variance_channels():
    proc = DDPM(num_steps=10)
    den = exact_denoiser(gaussian(), proc, learned_variance=True)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    sigma = proc.sigmas[torch.tensor([1, 3, 5, 7, 9])].float()
    d, v = den.denoise_with_variance(x, sigma)
    assert torch.allclose(d, den(x, sigma)) and v.shape == x.shape
    with pytest.raises(ValueError, match="4 output channels"):
        NetworkDenoiser(_TinyNet(2), proc, "eps", conditioning="index").denoise_with_variance(x, sigma)
