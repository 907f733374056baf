"""Sampling at a budget: iPNDM, UniPC and DEIS against their papers' formulas, their convergence orders and exact
NFE; tuned σ schedules (never worse than the start on fresh seeds), the schedule file, the budget planner and the
tune-schedule command. All on exact Gaussian mixtures."""

from __future__ import annotations

import json
import math

import pytest
import torch

from scorekit.analytic import GaussianMixture
from scorekit.guidance import ClassifierGuidedDenoiser, ExactClassifier
from scorekit.samplers import SAMPLERS, get_sigmas
from scorekit.samplers.budget import plan_for_budget
from scorekit.samplers.tuning import endpoint_error, gmm_fingerprint, load_schedule, save_schedule, tune_schedule

NEW = ("ipndm", "unipc", "deis")
F64 = torch.float64


@pytest.fixture(scope="module")
def gmm():
    return GaussianMixture(
        [1.0, 3.0, 0.5],
        [[-2.0, 0.0], [1.0, 1.0], [3.0, -2.0]],
        [[0.01, 0.04], [0.09, 0.0025], [0.04, 0.04]],
        labels=[0, 1, 1],
    )


@pytest.fixture(scope="module")
def smooth():
    return GaussianMixture([1.0, 2.0], [[-1.0, 0.0], [1.5, 0.5]], [[0.5, 0.8], [0.6, 0.4]])


def _z(n, d=2, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _eps(gmm, x, s):
    return (x - gmm.denoise(x, torch.full((x.shape[0],), s, dtype=F64))) / s


# --- one step against the paper's formula -------------------------------------------------------------------------
def test_ipndm_matches_adams_bashforth(gmm):
    """iPNDM: x_{i+1} = x_i + (σ_{i+1} − σ_i)·(AB weights of order min(i+1, 4)) · (ε_i, ε_{i−1}, …)."""
    sig = [8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.0]
    x = 8.0 * _z(16)
    out = SAMPLERS["ipndm"].fn(gmm.denoiser(), x, torch.tensor(sig, dtype=F64)).x
    w = [[1.0], [1.5, -0.5], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24]]
    eps, y = [], x
    for i in range(len(sig) - 1):
        eps.insert(0, _eps(gmm, y, sig[i]))
        k = min(i + 1, 4)
        y = y + (sig[i + 1] - sig[i]) * sum(c * e for c, e in zip(w[k - 1], eps[:k]))
    torch.testing.assert_close(out, y, rtol=1e-12, atol=1e-12)


def test_deis_coefficients_integrate_polynomials_exactly(gmm):
    """DEIS tAB (eq. 14): Σ C_j ε(σ_j) = ∫ ε over the step when ε is a polynomial of degree < order in σ; on equal
    steps the weights are Adams–Bashforth's."""
    from scorekit.samplers.deis import deis_coefficients

    nodes = [torch.tensor([1.0], dtype=F64), torch.tensor([1.7], dtype=F64), torch.tensor([3.1], dtype=F64)]
    nxt = torch.tensor([0.4], dtype=F64)
    c = deis_coefficients(nodes, nxt)
    for p in (lambda s: 1 + 0 * s, lambda s: s, lambda s: 2 * s**2 - s):
        approx = sum(cj * p(sj) for cj, sj in zip(c, nodes))
        fine = torch.linspace(1.0, 0.4, 20001, dtype=F64)
        exact = -torch.trapezoid(p(fine), -fine)
        torch.testing.assert_close(approx, exact.reshape(1), rtol=1e-6, atol=1e-9)
    eq = deis_coefficients([torch.tensor([3.0]), torch.tensor([4.0]), torch.tensor([5.0])], torch.tensor([2.0]))
    torch.testing.assert_close(torch.cat(eq), -torch.tensor([23 / 12, -16 / 12, 5 / 12]), rtol=1e-6, atol=1e-6)
    # and the sampler's second step is the variable-step AB2 formula x + h(ε_1 + h/(2h_0)(ε_1 − ε_0))
    sig = torch.tensor([6.0, 2.0, 0.7, 0.0], dtype=F64)
    got = {}
    x0 = 6.0 * _z(8)
    SAMPLERS["deis"].fn(gmm.denoiser(), x0, sig, order=2, callback=lambda d: got.__setitem__(d["i"], d["x"]))
    x1 = x0 + (2.0 - 6.0) * _eps(gmm, x0, 6.0)
    e0, e1 = _eps(gmm, x0, 6.0), _eps(gmm, x1, 2.0)
    h0, h1 = 2.0 - 6.0, 0.7 - 2.0
    torch.testing.assert_close(got[1], x1 + h1 * (e1 + h1 / (2 * h0) * (e1 - e0)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_matches_paper(gmm, variant):
    """UniPC (Zhao et al. 2023, Alg. 2–3, data prediction): UniP-2 with a_1 = ½, UniC-p solving Σ a_m r_m^{k−1} =
    φ_{k+1}(−h)·k!/B(h) (UniC-1: a = ½), and the step to σ = 0 is x = D."""
    sig = [10.0, 3.0, 0.8, 0.0]
    x0 = 10.0 * _z(8)
    out = SAMPLERS["unipc"].fn(gmm.denoiser(), x0, torch.tensor(sig, dtype=F64), order=2, variant=variant).x

    def D(x, s):
        return gmm.denoise(x, torch.full((x.shape[0],), s, dtype=F64))

    def B(h):
        return -h if variant == "bh1" else math.expm1(-h)

    def phis(h):  # φ_2(−h)·1!/B, φ_3(−h)·2!/B in the recursion of the paper's b vector
        hh = -h
        p1 = math.expm1(hh)
        p2 = p1 / hh - 1
        p3 = p2 / hh - 0.5
        return p1, p2 / B(h), p3 * 2 / B(h)

    # step 0: UniP-1 (DDIM) to σ_1
    h0 = math.log(sig[0] / sig[1])
    p1, _, _ = phis(h0)
    d0 = D(x0, sig[0])
    xt1 = sig[1] / sig[0] * x0 - p1 * d0
    d1 = D(xt1, sig[1])
    # UniC-1 at σ_1: a^c = ½ (the reference implementation's choice; b_1 → ½ as h → 0)
    x1 = sig[1] / sig[0] * x0 - p1 * d0 - B(h0) * 0.5 * (d1 - d0)
    # step 1: order min(2, N − i = 2) = 2: UniP-2 with a = ½
    h1 = math.log(sig[1] / sig[2])
    q1, c1, c2 = phis(h1)
    r = math.log(sig[1] / sig[0]) / h1
    xt2 = sig[2] / sig[1] * x1 - q1 * d1 - B(h1) * 0.5 * (d0 - d1) / r
    d2 = D(xt2, sig[2])
    torch.testing.assert_close(out, d2, rtol=1e-10, atol=1e-10)  # last step: x = D at σ_{N−1}


def test_unipc_corrector_uses_the_order_system(gmm):
    """UniC-2: a from the 2×2 order system [[1, 1], [r, 1]] a = (b_1, b_2) (Zhao et al. 2023, eq. 8)."""
    from scorekit.samplers.unipc import unipc_correct

    s0, s1, s2 = (torch.tensor([v], dtype=F64) for v in (9.0, 3.0, 1.0))
    x0 = 9.0 * _z(4)
    d0 = gmm.denoise(x0, 9.0)
    x1 = 3.0 * _z(4, seed=1)
    d1 = gmm.denoise(x1, 3.0)
    x2p = 1.0 * _z(4, seed=2)
    d2 = gmm.denoise(x2p, 1.0)
    got = unipc_correct([(s0, x0, d0), (s1, x1, d1)], s2, d2, 2, "bh2")
    h = math.log(3.0 / 1.0)
    r = math.log(3.0 / 9.0) / h
    Bh = math.expm1(-h)
    p1 = math.expm1(-h)
    b = [(p1 / -h - 1) / Bh, ((p1 / -h - 1) / -h - 0.5) * 2 / Bh]
    R = torch.tensor([[1.0, 1.0], [r, 1.0]], dtype=F64)
    a = torch.linalg.solve(R, torch.tensor(b, dtype=F64))
    want = (1 / 3) * x1 - p1 * d1 - Bh * (a[0] * (d0 - d1) / r + a[1] * (d2 - d1))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# --- convergence, NFE, per-sample rows ------------------------------------------------------------------------------
def _x_at_last_level(name, den, x, sig, **opts):
    got = {}
    n = sig.shape[-1] - 1
    SAMPLERS[name].fn(den, x, sig, callback=lambda d: got.__setitem__(d["i"], d["x"]), **opts)
    return got[n - 2]


@pytest.mark.parametrize(
    "name,opts,schedule,expect",
    [
        ("ipndm", {"max_order": 4}, "uniform", 3.0),  # equal steps: AB4 exact; the Euler warm start caps it
        ("ipndm", {"max_order": 2}, "log", 1.8),
        ("deis", {"order": 3}, "log", 2.5),  # any spacing
        ("deis", {"order": 2}, "log", 1.8),
        ("unipc", {"order": 2}, "log", 2.8),  # UniC raises UniP-p to p + 1
        ("unipc", {"order": 3}, "log", 3.6),
    ],
)
def test_observed_convergence_order(smooth, name, opts, schedule, expect):
    den = smooth.denoiser()
    x0 = _z(32)

    def sched(n):
        if schedule == "uniform":
            s = torch.linspace(4.0, 0.5, n, dtype=F64)
        else:
            s = torch.exp(torch.linspace(math.log(20.0), math.log(0.05), n, dtype=F64))
        return torch.cat([s, torch.zeros(1, dtype=F64)])

    def result(n, nm=name, o=opts):
        s = sched(n)
        if nm == "unipc":  # its output is D at the last level; compare outputs
            return SAMPLERS[nm].fn(den, float(s[0]) * x0, s, **o).x
        return _x_at_last_level(nm, den, float(s[0]) * x0, s, **o)

    ref = result(600, "deis" if name != "unipc" else "unipc", {"order": 3})
    errs = [(result(n) - ref).abs().max().item() for n in (12, 24, 48)]
    orders = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert orders[-1] > expect, (errs, orders)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_nfe_exact(gmm, name, n):
    calls = []

    def den(x, s):
        calls.append(float(s.max()))
        return gmm.denoise(x, s)

    sig = get_sigmas("karras", n, sigma_min=0.01, sigma_max=20.0)
    out = SAMPLERS[name].fn(den, 20.0 * _z(4), sig)
    assert out.nfe == n == len(calls) == SAMPLERS[name].nfe(n)
    assert min(calls) > 0  # never an evaluation at σ = 0
    assert torch.isfinite(out.x).all()


@pytest.mark.parametrize("name", NEW)
def test_per_sample_rows_equal_running_each_alone(gmm, name):
    smax = torch.tensor([20.0, 5.0, 1.0], dtype=F64)
    table = get_sigmas("karras", 5, sigma_min=0.01, sigma_max=smax)
    x = smax[:, None] * _z(3)
    both = SAMPLERS[name].fn(gmm.denoiser(), x, table).x
    for b in range(3):
        alone = SAMPLERS[name].fn(gmm.denoiser(), x[b : b + 1], table[b]).x
        torch.testing.assert_close(both[b : b + 1], alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NEW)
def test_guidance_and_class_labels(gmm, name):
    """Exact classifier guidance at scale 1 is the class-conditional denoiser: both paths agree, and land on class 1."""
    sig = get_sigmas("karras", 8, sigma_min=0.01, sigma_max=20.0)
    x = 20.0 * _z(64)
    y = torch.ones(64, dtype=torch.long)
    cond = SAMPLERS[name].fn(gmm.denoiser(), x, sig, class_labels=y).x
    guided_den = ClassifierGuidedDenoiser(gmm.denoiser(), ExactClassifier(gmm), 1.0)
    guided = SAMPLERS[name].fn(guided_den, x, sig, class_labels=y).x
    torch.testing.assert_close(guided, cond, rtol=1e-6, atol=1e-6)
    comp = gmm._responsibilities(cond, torch.zeros(64, dtype=F64)).argmax(1)
    assert bool((gmm.labels[comp] == 1).float().mean() > 0.95)


# --- tuning, files, budget, command -----------------------------------------------------------------------------
def _truth(gmm, z, smax):
    sig = get_sigmas("karras", 400, sigma_min=0.01, sigma_max=smax)
    return SAMPLERS["dpmpp_3m"].fn(gmm.denoiser(), smax * z, sig).x


@pytest.mark.parametrize("sampler", ["unipc", "ipndm"])
def test_tuned_schedule_never_worse_on_fresh_seeds(gmm, sampler):
    start = get_sigmas("karras", 5, sigma_min=0.01, sigma_max=80.0)
    res = tune_schedule(gmm.denoiser(), sampler, 5, shape=(2,), start=start, sigma_min=0.01, teachers=16, seed=0)
    assert res["endpoint_error"]["heldout_tuned"] <= res["endpoint_error"]["heldout_start"] or res["chosen"] == "start"
    z = _z(256, seed=1234)  # fresh seeds
    truth = _truth(gmm, z, 80.0)
    fn = SAMPLERS[sampler].fn
    e_tuned = endpoint_error(fn, gmm.denoiser(), z, res["sigmas"], truth, {})
    e_start = endpoint_error(fn, gmm.denoiser(), z, start, truth, {})
    assert e_tuned <= e_start


def test_schedule_file_round_trip(gmm, tmp_path):
    start = get_sigmas("karras", 4, sigma_min=0.01, sigma_max=80.0)
    res = tune_schedule(
        gmm.denoiser(), "deis", 4, shape=(2,), start=start, sigma_min=0.01, teachers=8, seed=3, grid_size=16,
        polish=False, model=gmm_fingerprint(gmm),
    )  # fmt: skip
    p = save_schedule(tmp_path / "s.json", res)
    assert load_schedule(p) == json.loads(json.dumps(res))
    for key in ("model", "sampler", "nfe", "sigmas", "teacher", "seed"):
        assert key in res
    assert res["teacher"]["trajectories"] == 8 and res["model"]["kind"] == "gmm"
    torch.testing.assert_close(get_sigmas(str(p), 4), torch.tensor(res["sigmas"], dtype=F64))
    with pytest.raises(ValueError, match="steps"):
        get_sigmas(str(p), 5)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sigmas": [1.0, 2.0, 0.0]}))
    with pytest.raises(ValueError, match="decrease"):
        get_sigmas(str(bad), 2)
    with pytest.raises(ValueError, match="not found"):
        get_sigmas(str(tmp_path / "none.json"), 2)


def test_budget_plan_never_exceeds_n(gmm, tmp_path):
    den = gmm.denoiser()
    for n in range(1, 13):
        plan = plan_for_budget(n, denoiser=den)
        sig = plan.sigmas_tensor()
        assert plan.nfe <= n and sig.numel() - 1 == plan.steps and plan.reason
        out = SAMPLERS[plan.sampler].fn(den, float(sig[0]) * _z(4), sig, **plan.options)
        assert out.nfe <= n
    with pytest.raises(ValueError):
        plan_for_budget(0)
    # a tuned file next to the run is preferred, and only for its own NFE
    run = tmp_path / "run"
    (run / "schedules").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    sched = {"format": "scorekit-schedule/1", "sampler": "ipndm", "options": {}, "nfe": 3, "sigmas": [80, 5, 0.5, 0]}
    (run / "schedules" / "ipndm-nfe3.json").write_text(json.dumps(sched))
    plan = plan_for_budget(3, run_dir=run)
    assert plan.sampler == "ipndm" and plan.sigmas == (80.0, 5.0, 0.5, 0.0) and "tuned" in plan.reason
    assert plan_for_budget(4, run_dir=run).sigmas != plan.sigmas
    with pytest.raises(ValueError, match="budget"):
        plan_for_budget(2, tuned_schedule_path=run / "schedules" / "ipndm-nfe3.json")


def test_tune_schedule_command(gmm, tmp_path):
    from scorekit.cli import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(gmm.to_spec()))
    out = tmp_path / "sched.json"
    rc = main(
        ["tune-schedule", "--model", f"gmm:{spec}", "--sampler", "unipc", "--nfe", "4", "--out", str(out),
         "--teachers", "8", "--seed", "1", "--grid", "16"]
    )  # fmt: skip
    assert rc in (0, None)
    data = json.loads(out.read_text())
    assert data["nfe"] == 4 and data["sampler"] == "unipc" and data["seed"] == 1
    assert data["model"]["sha256"] == gmm_fingerprint(gmm)["sha256"]
    sig = get_sigmas(str(out), 4)
    x = SAMPLERS["unipc"].fn(gmm.denoiser(), float(sig[0]) * _z(16), sig, **data["options"])
    assert x.nfe == 4 and torch.isfinite(x.x).all()
