"""Imported runs are ordinary run directories: a diffusers pipeline and an EDM snapshot, once imported, go through
the budget sampler, Denoising MCMC with a noise classifier trained on the user's data, likelihood and evaluation."""

import json
from pathlib import Path

import numpy as np
import pytest

from scorekit.cli import main

FIX = Path(__file__).parent / "fixtures"
SOURCES = {
    "diffusers": ["import", "diffusers", str(FIX / "diffusers" / "uncond_linear")],
    "edm": ["import", "edm", str(FIX / "edm" / "edm2-uncond.pkl")],
}


@pytest.fixture(scope="module", params=sorted(SOURCES))
def imported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    run = root / "run"
    assert main([*SOURCES[request.param], "--out", str(run)]) == 0
    shape = json.loads((run / "config.json").read_text())["data"]["shape"]
    data = np.random.default_rng(0).uniform(0, 1, (64, *shape)).astype(np.float32)  # "the user's data"
    np.save(root / "user.npy", data)
    return root, run


def test_budget_sampling_on_an_imported_run(imported):
    root, run = imported
    out = root / "nfe.npz"
    assert main(["sample", "--run", str(run), "--nfe", "4", "--num", "4", "--out", str(out), "--no-progress"]) == 0
    with np.load(out) as d:
        assert float(d["nfe"]) <= 4 and np.isfinite(d["samples"]).all()


def test_dlg_with_a_noise_classifier_trained_on_user_data(imported):
    root, run = imported
    clf = root / "noise_clf"
    argv = ["train-noise-classifier", "--run", str(run), "--data", str(root / "user.npy"), "--steps", "3"]
    assert main([*argv, "--batch-size", "8", "--levels", "20", "--eval-num", "16", "--out", str(clf)]) == 0
    out = root / "dlg.npz"
    argv = ["sample", "--run", str(run), "--dmcmc", "dlg", "--noise-classifier", str(clf), "--sampler", "dpmpp_2m"]
    assert main([*argv, "--steps", "2", "--num", "4", "--dlg-chains", "2", "--out", str(out), "--no-progress"]) == 0
    with np.load(out) as d:
        assert d["samples"].shape[0] == 4 and "sigma_start" in d and np.isfinite(d["samples"]).all()


def test_likelihood_and_evaluate_on_an_imported_run(imported, capsys):
    root, run = imported
    out = root / "nll.json"
    argv = ["likelihood", "--run", str(run), "--data", str(root / "user.npy"), "--num", "2", "--out", str(out)]
    assert main(argv) == 0
    res = json.loads(out.read_text())
    assert np.isfinite(res["nll_nats"]) and res["bpd"] is not None
    capsys.readouterr()
    samples = root / "nfe.npz"
    if not samples.exists():
        main(["sample", "--run", str(run), "--nfe", "4", "--num", "4", "--out", str(samples), "--no-progress"])
    # 3×8×8 images have no pinned feature extractor (digits is 1×8×8, Inception needs side ≥ 32): evaluate says so
    # in one line and writes nothing, rather than scoring them in a meaningless feature space
    metrics = root / "m.json"
    argv = ["evaluate", "--samples", str(samples), "--data", str(root / "user.npy"), "--out", str(metrics)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "feature extractor" in err[0] and not metrics.exists()
