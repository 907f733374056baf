"""The sampler family against the exact Gaussian-mixture denoiser.

Sample quality is sliced W2 to fresh reference samples, averaged over C chunks × C references so that the
bimodal mixture's mode-weight noise does not dominate; the two-sample floor is the same statistic between
exact samples.
"""

import math

import pytest
import torch

from scorekit.analytic import GaussianMixture
from scorekit.metrics import sliced_wasserstein
from scorekit.processes import DDPM, VESDE, VPSDE, SubVPSDE
from scorekit.samplers import SAMPLERS, get_sampler, get_sigmas

GMM = GaussianMixture([0.3, 0.7], [[-1.5, 0.0], [1.5, 0.5]], [[0.1, 0.2], [0.2, 0.05]])
C = 3
PROCESSES = {"ve": VESDE(0.01, 50.0), "vp": VPSDE(), "subvp": SubVPSDE(), "ddpm": DDPM()}
VE = PROCESSES["ve"]
GEN = torch.Generator()
FIXED_STEP = sorted(n for n, s in SAMPLERS.items() if s.nfe is not None)


def chunked_sw(x, refs):
    m = refs[0].shape[0]
    vals = [sliced_wasserstein(x[i * m : (i + 1) * m], r, num_projections=64) for i in range(C) for r in refs]
    return sum(vals) / len(vals)


def _reference(m):
    g = torch.Generator().manual_seed(1234)
    refs = [GMM.sample(m, g)[0] for _ in range(C)]
    floor = sum(chunked_sw(GMM.sample(C * m, g)[0], refs) for _ in range(6)) / 6
    return refs, floor


@pytest.fixture(scope="module")
def reference():
    return _reference(1000)


@pytest.fixture(scope="module")
def small_reference():
    return _reference(300)


def run(name, process, steps, n, seed=0, denoiser=None, **opts):
    spec = get_sampler(name)
    sig = get_sigmas(spec.default_schedule, steps, process=process)
    gen = torch.Generator().manual_seed(seed)
    x = float(sig[0]) * torch.randn(n, 2, generator=gen)
    return spec.fn(denoiser or GMM.denoiser(), x, sig, process=process, generator=gen, **opts)


# generous step counts (VE's geometric σ over 3.7 decades needs more steps for first-order methods)
CONVERGE = {
    "euler_maruyama": {"ve": 400, "vp": 100},
    "reverse_diffusion": {"ve": 500, "vp": 150},
    "pc": {"ve": 200, "vp": 100},
    "ancestral": {"ve": 200, "vp": 100},
    "ddim": {"ve": 100, "vp": 100},
    "pf_euler": {"ve": 500, "vp": 100},
    "rk45": {"ve": 2, "vp": 2},
    "heun": {"ve": 30, "vp": 30},
    "edm_stochastic": {"ve": 100, "vp": 100},
    "dpmpp_2m": {"ve": 40, "vp": 40},
    "dpmpp_3m": {"ve": 30, "vp": 30},
}


@pytest.mark.parametrize("proc", ["ve", "vp"])
@pytest.mark.parametrize("name", sorted(CONVERGE))
def test_converges_to_the_mixture(name, proc, reference):
    refs, floor = reference
    n = C * refs[0].shape[0]
    fine = chunked_sw(run(name, PROCESSES[proc], CONVERGE[name][proc], n).x, refs)
    assert fine <= 1.5 * floor, f"{name}/{proc}: sliced W2 {fine:.4f} vs floor {floor:.4f}"
    if name != "rk45":  # and a coarse run is measurably worse: the error shrinks as steps grow
        coarse = chunked_sw(run(name, PROCESSES[proc], 3, n).x, refs)
        assert coarse > 1.5 * floor and coarse > fine


def test_annealed_langevin_converges(small_reference):
    refs, floor = small_reference
    out = run("annealed_langevin", PROCESSES["ve"], 100, C * refs[0].shape[0], n_steps_each=10, step_scale=0.2)
    assert out.nfe == 100 * 10 + 1
    assert chunked_sw(out.x, refs) <= 1.5 * floor


def test_langevin_at_fixed_sigma_targets_p_sigma():
    """Langevin at σ = 1 (no final denoise) samples p_σ: the mixture with every variance raised by σ²."""
    m = 300
    noisy = GaussianMixture(GMM.weights, GMM.means, GMM.variances + 1.0)
    g = torch.Generator().manual_seed(77)
    nrefs = [noisy.sample(m, g)[0] for _ in range(C)]
    floor = sum(chunked_sw(noisy.sample(C * m, g)[0], nrefs) for _ in range(6)) / 6
    sig = get_sigmas("log", 300, sigma_min=1.0, sigma_max=2.0)
    gen = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(C * m, 2, generator=gen)
    out = get_sampler("langevin").fn(GMM.denoiser(), x, sig, generator=gen, step_scale=0.1, denoise=False)
    assert out.nfe == 300
    assert chunked_sw(out.x, nrefs) <= 1.5 * floor


@pytest.mark.parametrize("proc", ["subvp", "ddpm"])
@pytest.mark.parametrize("name", sorted(CONVERGE))
def test_every_process(name, proc, small_reference):
    refs, floor = small_reference
    steps = {"pf_euler": 100, "euler_maruyama": 100, "reverse_diffusion": 150}.get(name, CONVERGE[name]["vp"])
    out = run(name, PROCESSES[proc], steps, C * refs[0].shape[0])
    assert torch.isfinite(out.x).all()
    assert chunked_sw(out.x, refs) <= 1.5 * floor


# --- exact answers on a single Gaussian: the PF-ODE flow is closed form --------------------------------------
GAUSS = GaussianMixture([1.0], [[0.5, -1.0]], [[0.3, 1.2]])


def exact_ode_output(x0, sigma0, sigma_end):
    """PF ODE from σ0 to σ_end for N(μ, v): x − μ scales by √((v+σ_end²)/(v+σ0²)); then x ← D(x, σ_end)."""
    mu, v = GAUSS.means[0], GAUSS.variances[0]
    x = mu + (x0.double() - mu) * ((v + sigma_end**2) / (v + sigma0**2)).sqrt()
    return mu + v / (v + sigma_end**2) * (x - mu)


@pytest.mark.parametrize(
    "name, proc, order",
    [
        ("pf_euler", "vp", 1),
        ("pf_euler", "ve", 1),
        ("ddim", "vp", 1),
        ("ddim", "ve", 1),
        ("heun", "ve", 2),
        ("heun", "vp", 2),
        ("dpmpp_2m", "vp", 2),
        ("dpmpp_2m", "ve", 2),
    ],
)
def test_ode_solvers_converge_at_their_order(name, proc, order):
    process = PROCESSES[proc]
    spec = get_sampler(name)
    gen = torch.Generator().manual_seed(5)
    x0 = torch.randn(256, 2, generator=gen, dtype=torch.float64)
    errs = []
    for steps in (32, 64, 128):
        sig = get_sigmas(spec.default_schedule, steps, process=process)
        x = float(sig[0]) * x0
        out = spec.fn(GAUSS.denoiser(), x, sig, process=process)
        want = exact_ode_output(x, float(sig[0]), float(sig[-2]))
        errs.append(float((out.x - want).abs().max()))
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert min(rates) > order - 0.25, f"{name}: errors {errs}, observed orders {rates}"


def test_dpmpp_3m_beats_2m_at_equal_steps():
    process = PROCESSES["vp"]
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for steps in (32, 64, 128):
        sig = get_sigmas("karras", steps, process=process)
        x = float(sig[0]) * x0
        want = exact_ode_output(x, float(sig[0]), float(sig[-2]))
        e2, e3 = (
            float((get_sampler(n).fn(GAUSS.denoiser(), x, sig).x - want).abs().max()) for n in ("dpmpp_2m", "dpmpp_3m")
        )
        assert e3 < e2 / 2, (steps, e2, e3)


@pytest.mark.parametrize("backend", ["torchdiffeq", "scipy"])
def test_rk45_matches_closed_form_and_counts_calls(backend):
    process = PROCESSES["vp"]
    sig = get_sigmas("uniform_t", 10, process=process)
    gen = torch.Generator().manual_seed(5)
    x = float(sig[0]) * torch.randn(64, 2, generator=gen, dtype=torch.float64)
    calls = []
    den = GAUSS.denoiser()

    def counting(x, s, c=None):
        calls.append(1)
        return den(x, s)

    loose = get_sampler("rk45").fn(counting, x, sig, process=process, rtol=1e-3, atol=1e-3, backend=backend)
    assert loose.nfe == len(calls)
    tight = get_sampler("rk45").fn(den, x, sig, process=process, rtol=1e-7, atol=1e-7, backend=backend)
    want = exact_ode_output(x, float(sig[0]), float(sig[-2]))
    err_loose, err_tight = float((loose.x - want).abs().max()), float((tight.x - want).abs().max())
    assert err_tight < 1e-4 and err_tight < err_loose
    assert tight.nfe > loose.nfe


# --- exact one-step formulas in the process's own space -----------------------------------------------------
def _one_step(name, process, sig, sig_next, x_hat, seed, **opts):
    """Run the sampler on the schedule [σ, σ', 0] and return x̂ after its first step (via the callback)."""
    seen = []
    gen = torch.Generator().manual_seed(seed)
    sched = torch.tensor([sig, sig_next, 0.0], dtype=torch.float64)
    get_sampler(name).fn(GMM.denoiser(), x_hat, sched, process=process, generator=gen, callback=seen.append, **opts)
    return seen[0]["x"]


@pytest.mark.parametrize("variance", ["posterior", "forward"])
def test_ancestral_is_ho_et_al_eq_11(variance):
    """x_{t−1} = (x_t − β_t/√(1−ᾱ_t)·ε̂)/√α_t + σ_t z with σ_t² = β̃_t or β_t (Ho et al. 2020, Alg. 2)."""
    proc = DDPM()
    i = 500
    abar, abar_prev, beta = proc.alphas_cumprod[i], proc.alphas_cumprod[i - 1], proc.betas[i]
    sig, sig_prev = float(proc.sigmas[i]), float(proc.sigmas[i - 1])
    x_hat = sig * torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = _one_step("ancestral", proc, sig, sig_prev, x_hat, 9, variance=variance) * abar_prev.sqrt()
    xt = x_hat * abar.sqrt()
    eps = (x_hat - GMM.denoise(x_hat, sig)) / sig
    var = beta * (1 - abar_prev) / (1 - abar) if variance == "posterior" else beta
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    want = (xt - beta / (1 - abar).sqrt() * eps) / (1 - beta).sqrt() + var.sqrt() * z
    torch.testing.assert_close(ours, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_is_song_et_al_eq_12(eta):
    """x_{t'} = √ᾱ_{t'}·x̂0 + √(1 − ᾱ_{t'} − σ_η²)·ε̂ + σ_η z, σ_η = η√((1−ᾱ_{t'})/(1−ᾱ_t))√(1 − ᾱ_t/ᾱ_{t'})."""
    proc = DDPM()
    i, j = 800, 600
    a_t, a_s = proc.alphas_cumprod[i], proc.alphas_cumprod[j]
    sig, sig_s = float(proc.sigmas[i]), float(proc.sigmas[j])
    x_hat = sig * torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = _one_step("ddim", proc, sig, sig_s, x_hat, 3, eta=eta) * a_s.sqrt()
    x0 = GMM.denoise(x_hat, sig)
    eps = (x_hat - x0) / sig
    s_eta = eta * ((1 - a_s) / (1 - a_t)).sqrt() * (1 - a_t / a_s).sqrt()
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    want = a_s.sqrt() * x0 + (1 - a_s - s_eta**2).sqrt() * eps + (s_eta * z if eta > 0 else 0)
    torch.testing.assert_close(ours, want, rtol=1e-6, atol=1e-8)


def test_reverse_diffusion_is_score_sde_ve_predictor():
    """VE: x' = x + (σ² − σ'²)∇log p_σ(x) + √(σ² − σ'²)·z (Song et al. 2021, eq. 47)."""
    proc = PROCESSES["ve"]
    sig, sig_next = 3.0, 2.0
    x = sig * torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = _one_step("reverse_diffusion", proc, sig, sig_next, x, 4)
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want = x + (sig**2 - sig_next**2) * GMM.score(x, sig) + math.sqrt(sig**2 - sig_next**2) * z
    torch.testing.assert_close(ours, want, rtol=1e-6, atol=1e-8)


# --- reproducibility, NFE, per-sample schedules -------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_same_seed_same_output(name):
    a = run(name, PROCESSES["vp"], 6, 64, seed=3)
    b = run(name, PROCESSES["vp"], 6, 64, seed=3)
    assert torch.equal(a.x, b.x) and a.nfe == b.nfe
    spec = get_sampler(name)
    sig = get_sigmas(spec.default_schedule, 6, process=PROCESSES["vp"])
    x = float(sig[0]) * torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    outs = [
        spec.fn(GMM.denoiser(), x, sig, process=PROCESSES["vp"], generator=torch.Generator().manual_seed(s)).x
        for s in (10, 11)
    ]
    assert torch.equal(outs[0], outs[1]) == spec.deterministic  # only the stochastic ones use the generator


NFE_CASES = [(n, {}) for n in FIXED_STEP] + [
    ("pc", {"corrector_steps": 2}),
    ("pc", {"corrector_steps": 0}),
    ("annealed_langevin", {"n_steps_each": 3, "denoise": False}),
    ("langevin", {"denoise": False}),
]


@pytest.mark.parametrize("name, opts", NFE_CASES, ids=[f"{n}-{o}" for n, o in NFE_CASES])
@pytest.mark.parametrize("steps", [1, 7])
def test_nfe_is_the_analytic_count(name, opts, steps):
    calls = []
    den = GMM.denoiser()

    def counting(x, s, c=None):
        calls.append(x.shape[0])
        return den(x, s)

    spec = get_sampler(name)
    out = run(name, PROCESSES["ve"], steps, 16, denoiser=counting, **opts)
    assert out.nfe == len(calls) == spec.nfe(steps, **opts)
    assert all(c == 16 for c in calls)


@pytest.mark.parametrize("name", sorted(set(SAMPLERS) - {"pc"}))
@pytest.mark.parametrize("proc", ["ve", "vp"])
def test_per_sample_start_equals_running_alone(name, proc):
    """DMCMC hands each sample its own σ_start: batch result == each sample run alone (per-sample generators)."""
    process = PROCESSES[proc]
    spec = get_sampler(name)
    smax = torch.tensor([process.sigma_max, 10.0, 2.0, 0.5], dtype=torch.float64)
    table = get_sigmas(spec.default_schedule, 5, process=process, sigma_max=smax)
    x = smax[:, None].float() * torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    gens = [torch.Generator().manual_seed(100 + b) for b in range(4)]
    batch = spec.fn(GMM.denoiser(), x, table, process=process, generator=gens).x
    tol = {"rtol": 2e-3, "atol": 2e-3} if name == "rk45" else {"rtol": 1e-5, "atol": 1e-5}
    for b in range(4):
        alone = spec.fn(
            GMM.denoiser(), x[b : b + 1], table[b], process=process, generator=[torch.Generator().manual_seed(100 + b)]
        ).x
        torch.testing.assert_close(batch[b : b + 1], alone, **tol)


def test_class_labels_reach_the_denoiser():
    labelled = GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], [[0.1, 0.1], [0.1, 0.1]], labels=[0, 1])
    sig = get_sigmas("karras", 12, sigma_min=0.01, sigma_max=50.0)
    x = 50.0 * torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    y = torch.ones(200, dtype=torch.long)
    out = get_sampler("heun").fn(labelled.denoiser(), x, sig, class_labels=y)
    assert bool((out.x[:, 0] > 0).all())


def test_callback_sees_every_step():
    seen = []
    sig = get_sigmas("karras", 6, sigma_min=0.01, sigma_max=50.0)
    x = 50.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    get_sampler("dpmpp_2m").fn(GMM.denoiser(), x, sig, callback=seen.append)
    assert [d["i"] for d in seen] == list(range(6))
    assert set(seen[0]) == {"i", "x", "sigma", "denoised"}
    torch.testing.assert_close(seen[-1]["x"], seen[-1]["denoised"])


def test_registry_lists_the_contract_names_and_options():
    contract = {"euler_maruyama", "reverse_diffusion", "pc", "ancestral", "ddim", "pf_euler", "rk45", "heun"}
    contract |= {"edm_stochastic", "dpmpp_2m", "langevin", "annealed_langevin"}
    assert contract <= set(SAMPLERS)
    for spec in SAMPLERS.values():
        defaults = spec.option_defaults()
        assert set(defaults) == set(spec.options)
    assert get_sampler("pc").option_defaults() == {"snr": 0.16, "corrector_steps": 1, "predictor": "reverse_diffusion"}


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: get_sampler("nope"), "unknown sampler"),
        (lambda: get_sampler("ddim").check_options({"etta": 1}), "no option etta"),
        (lambda: run("ddim", VE, 4, 4, eta=1.5), "eta"),
        (lambda: run("pc", VE, 4, 4, predictor="magic"), "predictor"),
        (lambda: run("pc", VE, 4, 4, snr=-1), "snr"),
        (lambda: run("pc", VE, 4, 4, corrector_steps=1.5), "corrector_steps"),
        (lambda: run("ancestral", VE, 4, 4, variance="huge"), "variance"),
        (lambda: run("langevin", VE, 4, 4, step_scale=0), "step_scale"),
        (lambda: run("annealed_langevin", VE, 4, 4, n_steps_each=0), "n_steps_each"),
        (lambda: run("edm_stochastic", VE, 4, 4, s_tmin=5, s_tmax=1), "s_tmax"),
        (lambda: run("rk45", VE, 4, 4, backend="euler"), "backend"),
        (
            lambda: get_sampler("ancestral").fn(GMM.denoiser(), torch.zeros(4, 2), [3.0, 1.0, 0.0], generator=[GEN]),
            "generators",
        ),
        (lambda: get_sampler("heun").fn(GMM.denoiser(), torch.zeros(4, 2), [3.0, 1.0]), "end in 0"),
        (lambda: get_sampler("heun").fn(GMM.denoiser(), torch.zeros(4, 2), [1.0, 3.0, 0.0]), "non-increasing"),
        (lambda: get_sampler("heun").fn(GMM.denoiser(), torch.zeros(4, 2), torch.ones(3, 3)), "sigmas must be"),
    ],
)
def test_bad_input_is_a_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


class _OracleNet(torch.nn.Module):
    """A 'network' that outputs exactly what a perfectly trained one would: F* = (D_exact − c_skip·x)/c_out."""

    def __init__(self, precond):
        super().__init__()
        self.precond = precond

    def forward(self, x_in, c_noise, class_labels=None):
        sigma = c_noise  # conditioning="sigma"
        c_skip, c_out, c_in = self.precond.coefficients(sigma)
        x = x_in / c_in[:, None]
        return (GMM.denoise(x, sigma) - c_skip[:, None] * x) / c_out[:, None]


@pytest.mark.parametrize("parameterization", ["eps", "score", "x0", "v", "edm"])
@pytest.mark.parametrize("name", ["pc", "ancestral", "dpmpp_2m", "pf_euler"])
def test_every_parameterization_through_the_denoiser(parameterization, name):
    """A network trained as ε, score, x0, v or EDM, wrapped into D, samples exactly like the exact D."""
    from scorekit.models.parameterization import NetworkDenoiser

    process = PROCESSES["vp"]
    wrapped = NetworkDenoiser(torch.nn.Identity(), process, parameterization, conditioning="sigma")
    wrapped.net = _OracleNet(wrapped.precond)
    spec = get_sampler(name)
    sig = get_sigmas(spec.default_schedule, 8, process=process)
    x = float(sig[0]) * torch.randn(64, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = spec.fn(wrapped, x, sig, process=process, generator=torch.Generator().manual_seed(3)).x
    b = spec.fn(GMM.denoiser(), x, sig, process=process, generator=torch.Generator().manual_seed(3)).x
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)
