"""The σ range defaults fit the data: VE/EDM σ_max from the data's extent, σ_min from its scale, and sampling
starts where the model's range says."""

import math

import pytest
import torch

from scorekit.data import load_data
from scorekit.processes import fit_sigma_max, get_process
from scorekit.run_config import DEFAULT_PROCESS_SETTINGS, default_config
from scorekit.samplers import Schedule
from scorekit.samplers.schedules import default_sigma_range


def test_fit_sigma_max_closed_form():
    # two points 10 apart, each 5 from the origin: twice the largest distance
    assert fit_sigma_max(torch.tensor([[3.0, 4.0], [-3.0, -4.0]])) == pytest.approx(20.0)
    # one point: its distance from the prior's centre (the origin) counts
    assert fit_sigma_max(torch.tensor([[3.0, 4.0]])) == pytest.approx(10.0)
    # images are flattened: two 1×2×2 images differing by 1 in every pixel are 2 apart, each ≤ 2 from the origin
    imgs = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    assert fit_sigma_max(imgs) == pytest.approx(4.0)


def test_fit_sigma_max_bounds_every_pair_and_is_a_property_of_the_data():
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 2.0, 0.5]) + 3
    smax = fit_sigma_max(x)
    pts = torch.cat([x, torch.zeros(1, 3)])
    assert float(torch.cdist(pts, pts).max()) == pytest.approx(smax / 2, rel=1e-6)
    big = torch.randn(7000, 2, generator=torch.Generator().manual_seed(2))
    assert fit_sigma_max(big) == fit_sigma_max(big.clone())  # the subsample is drawn from a fixed seed
    with pytest.raises(ValueError, match="finite"):
        fit_sigma_max(torch.tensor([[float("nan"), 0.0]]))


@pytest.mark.parametrize("process", ["ve", "edm"])
def test_default_config_fits_ve_and_edm_ranges_to_the_data(process):
    cfg = default_config("moons", process)
    data = load_data("moons")
    sd = cfg["denoiser"]["sigma_data"]
    assert cfg["process"]["sigma_max"] == pytest.approx(fit_sigma_max(data.data), rel=1e-3)
    want_min = DEFAULT_PROCESS_SETTINGS[process]["sigma_min"] * sd / 0.5
    assert cfg["process"]["sigma_min"] == pytest.approx(want_min, rel=1e-3)
    # the quickstart no longer carries its own constant: its VE range is the digits' fitted one
    from scorekit.commands.quickstart import quickstart_config

    qs = quickstart_config(10, 0)
    assert qs["process"]["sigma_max"] == pytest.approx(fit_sigma_max(load_data("digits").data), rel=1e-3)


def test_vp_keeps_its_beta_schedule_and_sampling_starts_at_the_models_sigma_max():
    cfg = default_config("moons", "vp")
    assert cfg["process"] == get_process("vp").to_config()
    ve = get_process("ve", sigma_min=0.02, sigma_max=7.5)

    class Model:  # any object answering the denoiser protocol's range
        sigma_min, sigma_max = 0.02, 7.5

    assert default_sigma_range(ve, Model()) == (0.02, 7.5)
    assert float(Schedule().table(5, default="logsnr", process=ve, model=Model())[0]) == pytest.approx(7.5)
    narrower = get_process("ve", sigma_min=0.05, sigma_max=3.0)  # a --process given at sampling may narrow it
    assert default_sigma_range(narrower, Model()) == (0.05, 3.0)
    assert default_sigma_range(None, None) == (0.002, 80.0)
    assert math.isclose(default_sigma_range(ve, None)[1], 7.5)
