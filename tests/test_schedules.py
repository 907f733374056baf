"""σ schedules: closed forms, per-sample starting σ, and input validation."""

import math

import pytest
import torch

from scorekit.processes import DDPM, VESDE, VPSDE, SubVPSDE
from scorekit.samplers import get_sigmas


@pytest.mark.parametrize("schedule", ["karras", "log", "logsnr", "uniform_t"])
@pytest.mark.parametrize("process", [VESDE(0.01, 50.0), VPSDE(), SubVPSDE(), DDPM()], ids=lambda p: p.name)
def test_endpoints_and_order(schedule, process):
    s = get_sigmas(schedule, 12, process=process)
    assert s.shape == (13,)
    assert s[-1] == 0
    assert float(s[0]) == pytest.approx(process.sigma_max, rel=1e-6)
    if schedule != "logsnr":
        assert float(s[-2]) == pytest.approx(process.sigma_min, rel=1e-6)
    assert bool((s[1:] < s[:-1]).all())


def test_karras_closed_form():
    s = get_sigmas("karras", 5, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    u = torch.linspace(0, 1, 5, dtype=torch.float64)
    want = (80.0 ** (1 / 7) + u * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    torch.testing.assert_close(s[:-1], want)


def test_logsnr_skips_sigma_min():
    s = get_sigmas("logsnr", 4, sigma_min=0.01, sigma_max=100.0)
    torch.testing.assert_close(s, torch.tensor([100.0, 10.0, 1.0, 0.1, 0.0], dtype=torch.float64))
    table = get_sigmas("logsnr", 4, sigma_min=0.01, sigma_max=torch.tensor([100.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(table[1], get_sigmas("logsnr", 4, sigma_min=0.01, sigma_max=1.0))


def test_log_is_geometric():
    s = get_sigmas("log", 10, sigma_min=0.01, sigma_max=10.0)
    ratios = s[1:-1] / s[:-2]
    torch.testing.assert_close(ratios, torch.full_like(ratios, (0.01 / 10.0) ** (1 / 9)))


@pytest.mark.parametrize("process", [VPSDE(), SubVPSDE(), VESDE(0.01, 50.0)], ids=lambda p: p.name)
def test_uniform_t_is_uniform_in_process_time(process):
    s = get_sigmas("uniform_t", 8, process=process)
    t = process.t_of_sigma(s[:-1])
    dt = t[1:] - t[:-1]
    torch.testing.assert_close(dt, torch.full_like(dt, float(dt.mean())), atol=1e-9, rtol=1e-6)
    assert float(t[0]) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("schedule", ["karras", "log", "uniform_t"])
def test_per_sample_sigma_max_rows_match_scalar_calls(schedule):
    proc = VPSDE()
    smax = torch.tensor([150.0, 20.0, 1.5], dtype=torch.float64)
    table = get_sigmas(schedule, 6, process=proc, sigma_max=smax)
    assert table.shape == (3, 7)
    for b in range(3):
        torch.testing.assert_close(table[b], get_sigmas(schedule, 6, process=proc, sigma_max=float(smax[b])))


def test_explicit_list():
    s = get_sigmas([5.0, 2.0, 1.0], 0)
    torch.testing.assert_close(s, torch.tensor([5.0, 2.0, 1.0, 0.0], dtype=torch.float64))
    s0 = get_sigmas([3.0, 1.0, 0.0], 0)
    assert s0.shape == (3,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(schedule="karras", steps=0), "steps"),
        (dict(schedule="nope", steps=4), "unknown schedule"),
        (dict(schedule="karras", steps=4, sigma_max=500.0, process=VESDE(0.01, 50.0)), "exceeds"),
        (dict(schedule="log", steps=4, sigma_max=0.001, sigma_min=0.01), "exceed"),
        (dict(schedule=[1.0, 2.0], steps=0), "non-increasing"),
        (dict(schedule=[1.0, -1.0], steps=0), "non-negative"),
        (dict(schedule=[1.0, math.nan], steps=0), "finite"),
        (dict(schedule="uniform_t", steps=4), "needs a process"),
    ],
)
def test_bad_input(kwargs, match):
    schedule, steps = kwargs.pop("schedule"), kwargs.pop("steps")
    with pytest.raises(ValueError, match=match):
        get_sigmas(schedule, steps, **kwargs)
