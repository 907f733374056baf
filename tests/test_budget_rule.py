"""The built-in `--nfe` rule above 3 evaluations is the candidate measured best across problem families
(benchmarks/budget_rule.py → benchmarks/results/budget_rule.json), and a plan made by it costs what it says."""

import json
from pathlib import Path

import pytest

from scorekit.samplers import get_sampler
from scorekit.samplers.budget import BUDGET_RULE, budget_sigmas, plan_for_budget, rule_solver

RESULT = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "budget_rule.json").read_text())


def test_rule_above_three_is_the_measured_choice():
    chosen = RESULT["rule_for_nfe_4_and_more"]
    catch_all = next(e for e in BUDGET_RULE["solvers"] if e[0] is None)
    assert (catch_all[1], catch_all[3]) == (chosen["sampler"], chosen["schedule"])
    scores = RESULT["scores"]
    assert scores[f"{chosen['sampler']}+{chosen['schedule']}"]["mean"] == min(v["mean"] for v in scores.values())
    assert len(RESULT["families"]) >= 3  # mixtures and two image models


@pytest.mark.parametrize("nfe", [1, 2, 3, 4, 7, 12])
def test_rule_plans_cost_their_budget(nfe):
    plan = plan_for_budget(nfe, sigma_min=0.002, sigma_max=80.0)
    name, opts = rule_solver(nfe)
    assert plan.sampler == name and plan.options == opts
    assert get_sampler(plan.sampler).nfe(plan.steps, **plan.options) == plan.nfe <= nfe
    sig = budget_sigmas(nfe, 0.002, 80.0)
    assert len(sig) == nfe + 1 and float(sig[0]) == pytest.approx(80.0) and float(sig[-1]) == 0.0
    assert bool((sig[:-1] > sig[1:]).all())
