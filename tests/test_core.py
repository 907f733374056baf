"""Processes, the analytic mixture oracle and the network → denoiser preconditioning."""

import math

import pytest
import torch

from scorekit import DDPM, EDM, VESDE, VPSDE, GaussianMixture, SubVPSDE, get_process
from scorekit.models.parameterization import NetworkDenoiser, Preconditioning

PROCESSES = [VESDE(0.01, 50.0), VPSDE(0.1, 20.0), SubVPSDE(0.1, 20.0), DDPM(1000, "linear"), DDPM(1000, "cosine")]


@pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: repr(p)[:40])
def test_t_of_sigma_inverts_sigma(proc):
    t = torch.linspace(proc.t_min, 1.0, 257, dtype=torch.float64)
    assert torch.allclose(proc.t_of_sigma(proc.sigma(t)), t, atol=1e-9, rtol=0)


@pytest.mark.parametrize("proc", PROCESSES[:3], ids=["ve", "vp", "subvp"])
def test_closed_form_f_g_match_generic_edm_formulas(proc):
    """f = ṡ/s and g² = 2s²σσ̇ (Karras et al. eq. 4) agree with the closed forms of Song et al."""
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    f_generic = proc.scale_deriv(t) / proc.scale(t)
    g2_generic = 2 * proc.scale(t) ** 2 * proc.sigma(t) * proc.sigma_deriv(t)
    assert torch.allclose(proc.drift_coef(t), f_generic, rtol=1e-10, atol=1e-12)
    assert torch.allclose(proc.diffusion(t) ** 2, g2_generic, rtol=1e-8)
    # derivatives against finite differences
    h = 1e-6
    assert torch.allclose(proc.sigma_deriv(t), (proc.sigma(t + h) - proc.sigma(t - h)) / (2 * h), rtol=1e-5)
    assert torch.allclose(proc.scale_deriv(t), (proc.scale(t + h) - proc.scale(t - h)) / (2 * h), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("proc", PROCESSES[:3], ids=["ve", "vp", "subvp"])
def test_forward_sde_monte_carlo_matches_marginal(proc):
    """Simulate dx = f x dt + g dw from x0 and compare mean/std at t with s(t)x0, s(t)σ(t)."""
    gen = torch.Generator().manual_seed(0)
    n, steps = 20000, 400
    x0 = 1.5
    t0 = proc.t_min
    x = torch.full((n,), x0, dtype=torch.float64)
    # start from the exact marginal at t_min (tiny noise) to avoid the t = 0 singularity
    x = proc.scale(torch.tensor(t0)) * (
        x + proc.sigma(torch.tensor(t0)) * torch.randn(n, generator=gen, dtype=torch.float64)
    )
    ts = torch.linspace(t0, 0.6, steps + 1, dtype=torch.float64)
    for i in range(steps):
        t, dt = ts[i], ts[i + 1] - ts[i]
        # Euler–Maruyama with the process's f and g
        x = (
            x
            + proc.drift_coef(t) * x * dt
            + proc.diffusion(t) * dt.sqrt() * torch.randn(n, generator=gen, dtype=torch.float64)
        )
    mean, std = proc.marginal(torch.tensor([x0], dtype=torch.float64), ts[-1:])
    assert abs(x.mean().item() - mean.item()) < 4 * std.item() / math.sqrt(n) + 0.01 * abs(mean.item())
    assert abs(x.std().item() / std.item() - 1) < 0.03


@pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: repr(p)[:40])
def test_discretize_is_the_exact_transition(proc):
    """Composing (a, v) over two steps equals the one-step transition (Markov property of the marginal)."""
    t0, t1, t2 = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    a01, v01 = proc.discretize(t1, t0)
    a12, v12 = proc.discretize(t2, t1)
    a02, v02 = proc.discretize(t2, t0)
    assert torch.allclose(a12 * a01, a02, rtol=1e-10)
    assert torch.allclose(a12**2 * v01 + v12, v02, rtol=1e-8)


def test_prior_matches_marginal_at_t_max():
    for proc in (VPSDE(), SubVPSDE()):
        _, std = proc.marginal(torch.zeros(1, dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
        assert abs(std.item() - proc.prior_std) < 1e-3
    assert VESDE(0.01, 50).prior_std == 50.0


def test_get_process_errors_are_one_line():
    with pytest.raises(ValueError, match="unknown process"):
        get_process("nope")
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        get_process("ve", sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="bad settings"):
        get_process({"name": "vp", "beta": 3})


GMM = GaussianMixture([0.3, 0.7], [[-2.0], [1.5]], [[0.25], [0.5]])


@pytest.mark.parametrize("sigma", [0.05, 0.5, 2.0])
def test_analytic_denoiser_equals_numerical_posterior_mean(sigma):
    """E[x0 | x] by quadrature on a grid in 1-D equals GaussianMixture.denoise."""
    grid = torch.linspace(-8, 8, 40001, dtype=torch.float64)
    logp0 = GMM.log_prob(grid[:, None])
    xs = torch.tensor([-3.0, -0.4, 0.0, 0.9, 2.5], dtype=torch.float64)
    for x in xs:
        w = torch.exp(logp0 - (x - grid) ** 2 / (2 * sigma**2))
        post_mean = (w * grid).sum() / w.sum()
        assert abs(GMM.denoise(x.reshape(1, 1), sigma).item() - post_mean.item()) < 1e-6


def test_analytic_score_is_gradient_of_log_prob_and_tweedie():
    x = torch.linspace(-4, 4, 17, dtype=torch.float64)[:, None].requires_grad_(True)
    for sigma in (0.1, 1.0):
        lp = GMM.log_prob(x, sigma).sum()
        (grad,) = torch.autograd.grad(lp, x)
        assert torch.allclose(GMM.score(x.detach(), sigma), grad, atol=1e-10)
        # Tweedie: D = x + σ² ∇log p_σ
        assert torch.allclose(GMM.denoise(x.detach(), sigma), x.detach() + sigma**2 * grad, atol=1e-10)


def test_analytic_log_prob_integrates_to_one_and_process_space_density():
    grid = torch.linspace(-15, 15, 60001, dtype=torch.float64)[:, None]
    dx = float(grid[1] - grid[0])
    for sigma in (0.0, 0.7):
        assert abs(GMM.log_prob(grid, sigma).exp().sum().item() * dx - 1) < 1e-6
    vp = VPSDE()
    t = torch.tensor(0.3, dtype=torch.float64)
    assert abs(GMM.log_prob_process(grid, t, vp).exp().sum().item() * dx - 1) < 1e-6


def test_noise_and_class_posteriors():
    g = GaussianMixture([0.5, 0.5], [[-3.0, 0.0], [3.0, 0.0]], [[0.1, 0.1], [0.1, 0.1]], labels=[0, 1])
    levels = torch.tensor([0.01, 0.1, 1.0, 10.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x0, comp = g.sample(4000, gen)
    x = x0 + 1.0 * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    post = g.noise_posterior(x, levels)
    assert torch.allclose(post.sum(1), torch.ones(4000, dtype=torch.float64))
    assert (post.argmax(1) == 2).double().mean() > 0.6  # the true level is the most probable one
    cp = g.class_posterior(x, 1.0)
    assert (cp.argmax(1) == comp).double().mean() > 0.95
    # conditional denoiser restricted to class 1 moves everything to the right mode
    d1 = g.denoise(x, 1.0, class_labels=torch.ones(4000, dtype=torch.long))
    assert (d1[:, 0] > 0).all()


def test_gmm_spec_errors():
    with pytest.raises(ValueError, match="disagree"):
        GaussianMixture([0.5, 0.5], [[0.0, 1.0]], [[1.0, 1.0]])
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture([1.0], [[0.0]], [[-1.0]])
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixture([1.0], [[float("nan")]], [[1.0]])


@pytest.mark.parametrize("param", ["eps", "score", "x0", "v", "edm"])
@pytest.mark.parametrize("proc", [VESDE(0.01, 50), VPSDE(), SubVPSDE(), DDPM(), EDM()], ids=lambda p: p.name)
def test_preconditioning_round_trip(param, proc):
    """A network that outputs the exact target F* makes NetworkDenoiser return the exact D, for every
    parameterisation under every process; conditioning inputs are the right functions of σ."""
    conditioning = "index" if isinstance(proc, DDPM) else "t"
    pre = Preconditioning(proc, param, conditioning)
    gmm = GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.0, -0.5]], [[0.2, 0.3], [0.1, 0.4]])
    x0 = gmm.sample(64, torch.Generator().manual_seed(1))[0]
    sigma = torch.exp(torch.linspace(math.log(max(proc.sigma_min, 0.02)), math.log(min(proc.sigma_max, 20)), 64))
    sigma = sigma.to(torch.float64)
    x = x0 + sigma[:, None] * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    d_exact = gmm.denoise(x, sigma)

    class Perfect(torch.nn.Module):
        def forward(self, x_in, c_noise, class_labels=None):
            # recover σ from c_noise, x from c_in·x, and output the exact target
            c_skip, c_out, c_in = pre.coefficients(sigma)
            xs = x_in / c_in[:, None]
            return (gmm.denoise(xs, sigma) - c_skip[:, None] * xs) / c_out[:, None]

    den = NetworkDenoiser(Perfect(), proc, param, conditioning, data_shape=(2,))
    assert torch.allclose(den(x, sigma), d_exact, atol=1e-8)
    # target() is what the loss regresses on
    assert torch.allclose(den.network_output(x, sigma), den.target(d_exact, x, sigma), atol=1e-8)
    if conditioning == "t":
        assert torch.allclose(pre.c_noise(sigma), proc.t_of_sigma(sigma), atol=1e-9)
    else:
        idx = pre.c_noise(proc.sigmas[[0, 10, 500, 999]].clone())
        assert torch.allclose(idx, torch.tensor([0.0, 10.0, 500.0, 999.0], dtype=torch.float64), atol=1e-6)
