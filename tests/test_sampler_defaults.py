"""Each fixed-step sampler's default σ schedule is the one measured best for it (benchmarks/sampler_defaults.py,
over the exact mixtures and the digits model), not an inherited choice."""

import json
from pathlib import Path

import pytest

from scorekit.samplers import SAMPLERS

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "sampler_defaults.json"
CHOSEN = json.loads(RESULT.read_text())


@pytest.mark.parametrize("name", sorted(CHOSEN))
def test_default_schedule_is_the_measured_best(name):
    row = CHOSEN[name]
    assert SAMPLERS[name].default_schedule == row["default_schedule"]
    errors = row["relative_error"]
    assert errors[row["default_schedule"]] == min(errors.values())


def test_every_fixed_step_sampler_was_measured():
    adaptive_or_langevin = {"rk45", "pc", "langevin", "annealed_langevin"}
    assert set(SAMPLERS) - adaptive_or_langevin <= set(CHOSEN)
