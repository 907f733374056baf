"""Metrics against closed forms and known behaviour: Fréchet distance, FID on digits, KID unbiasedness, IS,
precision/recall, MMD / exact W2, reference-statistics metadata, streaming statistics, the pinned digits
classifier, and the `evaluate` / `report` commands."""

import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.linalg import sqrtm

from scorekit.metrics import (
    StreamingStats,
    fid_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd_rbf,
    precision_recall,
    wasserstein2_exact,
)
from scorekit.metrics.kid import mmd2_unbiased, polynomial_kernel


def _spd(d, seed):
    g = np.random.default_rng(seed)
    a = g.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# --- Fréchet distance --------------------------------------------------------------------------------------
def test_frechet_closed_forms():
    # 1-D: (μ1 − μ2)² + (σ1 − σ2)².
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9 + 1, rel=1e-12)
    # Diagonal: |Δμ|² + Σ (√a − √b)².
    a, b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.2, 0.5])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-12)
    # Full covariances: the textbook formula with scipy's general matrix square root.
    s1, s2 = _spd(6, 0), _spd(6, 1)
    m1, m2 = np.arange(6.0), np.ones(6)
    ref = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_singular_covariance_is_stable():
    # Rank-1 covariances (fewer samples than dimensions): the result is real, ≥ 0 and exact.
    u = np.zeros(50)
    u[0] = 1.0
    v = np.zeros(50)
    v[1] = 1.0
    s1, s2 = 4 * np.outer(u, u), 9 * np.outer(v, v)  # orthogonal supports: tr sqrt(S1 S2) = 0
    assert frechet_distance(np.zeros(50), s1, np.zeros(50), s2) == pytest.approx(13.0, rel=1e-12)
    assert frechet_distance(np.zeros(50), s1, np.zeros(50), s1) == pytest.approx(0.0, abs=1e-10)
    # Fewer samples than dimensions: the N×N factor form equals the dense formula with scipy's sqrtm.
    from scorekit.metrics.fid import frechet_distance_from_features, gaussian_stats

    g = np.random.default_rng(4)
    few, many = g.standard_normal((6, 12)), 1.5 * g.standard_normal((400, 12)) + 0.3
    m1, s1_ = gaussian_stats(few)
    m2, s2_ = gaussian_stats(many)
    dense = ((m1 - m2) ** 2).sum() + np.trace(s1_ + s2_ - 2 * sqrtm(s1_ @ s2_).real)
    assert frechet_distance_from_features(few, m2, s2_) == pytest.approx(dense, rel=1e-6)
    assert fid_from_features(many, few) == pytest.approx(frechet_distance_from_features(few, m2, s2_), rel=1e-12)
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance([np.nan], [[1.0]], [0.0], [[1.0]])


def test_fid_of_samples_converges_to_closed_form():
    g = np.random.default_rng(0)
    s1, s2 = _spd(4, 2), _spd(4, 3)
    m1, m2 = np.zeros(4), np.full(4, 0.5)
    exact = frechet_distance(m1, s1, m2, s2)
    errs = []
    for n in (500, 50_000):
        x = g.multivariate_normal(m1, s1, size=n)
        y = g.multivariate_normal(m2, s2, size=n)
        errs.append(abs(fid_from_features(x, y) - exact))
    assert errs[1] < errs[0] and errs[1] < 0.02 * exact


# --- FID on digits with the pinned classifier --------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    from scorekit.data import load_data
    from scorekit.metrics.features import get_extractor

    ext = get_extractor("auto", "image", (1, 8, 8))
    ds = load_data("digits", split="test")
    return ext, ds.user_data(), ds.labels


def _blur(x, s):
    r = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-(r**2) / (2 * s * s))
    k = (k / k.sum()).view(1, 1, 1, 5)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k)
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.transpose(2, 3))


def test_fid_digits_zero_on_itself_and_monotone_in_corruption(digits):
    ext, x, _ = digits
    f = ext.features(x)
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-6)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    noisy = [fid_from_features(f, ext.features((x + s * noise).clamp(0, 1))) for s in (0.05, 0.1, 0.2, 0.4)]
    blurred = [fid_from_features(f, ext.features(_blur(x, s))) for s in (0.5, 0.8, 1.2, 2.0)]
    for seq in (noisy, blurred):
        assert all(b > a for a, b in zip(seq, seq[1:])), seq
        assert seq[0] > 0.01
    # Another sample of real digits (train split) is closer than lightly corrupted ones.
    from scorekit.data import load_data

    train = ext.features(load_data("digits", split="train").user_data())
    assert fid_from_features(f, train) < noisy[-1]


def test_digits_classifier_pinned_and_accurate(digits, tmp_path):
    from scorekit.checkpoint import load_tensors, save_tensors
    from scorekit.metrics import digits_classifier as dc

    net, digest = dc.load_digits_classifier()
    assert digest == dc.DIGITS_CLASSIFIER_SHA256
    _, x, y = digits
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).double().mean())
    assert acc > 0.97
    tensors, _ = load_tensors(dc.DIGITS_WEIGHTS_PATH)
    tensors["fc2.bias"] = tensors["fc2.bias"] + 1e-3
    save_tensors(tmp_path / "tampered.safetensors", tensors)
    with pytest.raises(ValueError, match="expected"):
        dc.load_digits_classifier(tmp_path / "tampered.safetensors", sha256=dc.DIGITS_CLASSIFIER_SHA256)


def test_digits_inception_score_and_precision_recall(digits):
    ext, x, y = digits
    f, logits = ext.features_and_logits(x)
    is_mean, is_std = inception_score(logits, splits=5)
    assert 7.0 < is_mean <= 10.0 and is_std >= 0  # ten well-separated balanced classes: IS near 10
    keep = (y != 3).numpy()  # a generator that lost one mode
    p, r = precision_recall(f, f[keep], k=3)
    assert p > 0.95 and r < 0.97
    assert precision_recall(f, f) == (1.0, 1.0)


# --- KID ---------------------------------------------------------------------------------------------------
def test_mmd2_unbiased_has_zero_mean_when_distributions_match():
    g = torch.Generator().manual_seed(0)
    unbiased, biased = [], []
    for _ in range(300):
        x, y = torch.randn(2, 20, 8, generator=g, dtype=torch.float64)
        kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
        unbiased.append(mmd2_unbiased(kxx, kyy, kxy))
        biased.append(float(kxx.mean() + kyy.mean() - 2 * kxy.mean()))
    u, b = np.array(unbiased), np.array(biased)
    se = u.std(ddof=1) / np.sqrt(len(u))
    assert abs(u.mean()) < 3 * se  # unbiased: E = 0
    assert b.mean() > 10 * se  # the V-statistic is biased upwards


def test_kid_same_vs_shifted():
    g = np.random.default_rng(1)
    x, y = g.standard_normal((1500, 16)), g.standard_normal((1500, 16))
    same, same_std = kernel_inception_distance(x, y, num_subsets=50, subset_size=500)
    shifted, _ = kernel_inception_distance(x, y + 0.3, num_subsets=50, subset_size=500)
    assert abs(same) < 2 * same_std and same_std > 0
    assert shifted > 10 * abs(same) and shifted > 3 * same_std
    assert kernel_inception_distance(x, y, num_subsets=5, subset_size=100, seed=3) == kernel_inception_distance(
        x, y, num_subsets=5, subset_size=100, seed=3
    )
    with pytest.raises(ValueError, match="dimensions"):
        kernel_inception_distance(x, y[:, :3])


# --- Inception Score ---------------------------------------------------------------------------------------
def test_inception_score_closed_forms():
    n, k = 320, 8  # 80 per split: each class 10 times in every split
    assert inception_score(np.zeros((n, k)), splits=4)[0] == pytest.approx(1.0)  # p(y|x) = p(y): IS = 1
    confident = np.full((n, k), -1e4)
    confident[np.arange(n), np.arange(n) % k] = 0.0  # one-hot, all classes equally used: IS = K
    mean, std = inception_score(confident, splits=4)
    assert mean == pytest.approx(k, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.zeros((3, 2)), splits=10)


# --- Precision / recall ------------------------------------------------------------------------------------
def test_precision_recall_modes():
    g = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    real = np.concatenate([c + g.standard_normal((300, 2)) for c in centers])
    fake = np.concatenate([c + g.standard_normal((300, 2)) for c in centers])
    p, r = precision_recall(real, real)
    assert (p, r) == (1.0, 1.0)
    p, r = precision_recall(real, fake)
    assert p > 0.9 and r > 0.9
    p3, r3 = precision_recall(real, fake[:900])  # the fourth mode removed
    assert p3 > 0.9 and 0.70 < r3 < 0.80
    p_off, _ = precision_recall(real, fake + np.array([5.0, 5.0]))  # samples between the modes
    assert p_off < 0.3


# --- vector metrics ----------------------------------------------------------------------------------------
def test_mmd_and_exact_w2():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 2, generator=g, dtype=torch.float64)
    b = torch.randn(400, 2, generator=g, dtype=torch.float64)
    same, shifted = mmd_rbf(a, b), mmd_rbf(a, b + 1.0)
    assert abs(same) < 0.01 and shifted > 0.1
    # 1-D: the optimal coupling is the sorted matching.
    x, y = a[:, :1], 2 * b[:, :1] + 3
    sorted_w2 = float(((x.sort(0).values - y.sort(0).values) ** 2).mean().sqrt())
    assert wasserstein2_exact(x, y, backend="scipy") == pytest.approx(sorted_w2, rel=1e-10)
    # A translate: W2 = |c| exactly; unequal sizes (LP) with duplicated atoms: 0.
    c = torch.tensor([0.3, -0.4], dtype=torch.float64)
    assert wasserstein2_exact(a[:100], a[:100] + c, backend="scipy") == pytest.approx(0.5, rel=1e-9)
    assert wasserstein2_exact(a[:50], torch.cat([a[:50], a[:50]]), backend="scipy") == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="max_n"):
        wasserstein2_exact(a, b, max_n=100)


def test_w2_pot_backend_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ot", None)  # import ot → ImportError
    a = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="pip install POT"):
        wasserstein2_exact(a, a, backend="pot")
    assert wasserstein2_exact(a, a + 1, backend="auto") == pytest.approx(2**0.5)


# --- reference statistics and streaming --------------------------------------------------------------------
def test_reference_stats_metadata_is_enforced(tmp_path):
    from scorekit.metrics.reference import load_reference, save_reference

    f = np.random.default_rng(0).standard_normal((100, 5))
    path = tmp_path / "ref.npz"
    meta = dict(extractor="digits", extractor_sha256="ab" * 32, data="digits", split="train")
    save_reference(path, f, **meta)
    ref = load_reference(path, **meta, num=100)
    np.testing.assert_allclose(ref["mu"], f.mean(0))
    np.testing.assert_allclose(ref["sigma"], np.cov(f, rowvar=False))
    np.testing.assert_allclose(ref["features"], f, rtol=1e-6)
    for key, wrong in (("extractor", "inception"), ("extractor_sha256", "cd" * 32), ("data", "mnist"),
                       ("split", "test"), ("num", 5000)):  # fmt: skip
        with pytest.raises(ValueError, match=key):
            load_reference(path, **{key: wrong})
    np.savez(tmp_path / "bare.npz", mu=f.mean(0), sigma=np.cov(f, rowvar=False))
    with pytest.raises(ValueError, match="lack metadata"):
        load_reference(tmp_path / "bare.npz")


def test_streaming_stats_match_batch_and_resume(tmp_path):
    g = np.random.default_rng(0)
    x = g.standard_normal((1000, 6)) @ g.standard_normal((6, 6)) + 3.0
    s = StreamingStats()
    for i in range(0, 1000, 128):
        s.update(x[i : i + 128])
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False), rtol=1e-10)
    a, b = StreamingStats().update(x[:300]), StreamingStats().update(x[300:])
    np.testing.assert_allclose(a.merge(b).cov, np.cov(x, rowvar=False), rtol=1e-10)
    s.save(tmp_path / "s.npz", note="x")
    s2, meta = StreamingStats.load(tmp_path / "s.npz")
    assert meta == {"note": "x"} and s2.n == 1000 and np.array_equal(s2.m2, s.m2)


def test_accumulate_features_resumes(tmp_path, digits):
    from scorekit.metrics.streaming import accumulate_features

    ext, x, _ = digits
    calls = []

    def batch(b, fail_at=None):
        if b == fail_at:
            raise KeyboardInterrupt
        calls.append(b)
        return x[b * 50 : (b + 1) * 50]

    state = tmp_path / "state.npz"
    with pytest.raises(KeyboardInterrupt):
        accumulate_features(ext, lambda b: batch(b, fail_at=4), 7, state_path=state)
    resumed = accumulate_features(ext, batch, 7, state_path=state)
    assert calls == [0, 1, 2, 3, 4, 5, 6]  # batches 0-3 were not recomputed
    full = ext.features(x[:350])
    np.testing.assert_allclose(resumed.mean, full.mean(0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(resumed.cov, np.cov(full, rowvar=False), rtol=1e-8, atol=1e-10)


# --- commands ----------------------------------------------------------------------------------------------
def _cli(*argv):
    from scorekit.cli import main

    return main([str(a) for a in argv])


def test_evaluate_command_images_and_errors(tmp_path, digits, capsys):
    _, x, _ = digits
    np.savez(tmp_path / "s.npz", samples=x.numpy(), nfe=np.float64(35.0))
    out = tmp_path / "m.json"
    ref = tmp_path / "ref.npz"
    args = ["evaluate", "--samples", tmp_path / "s.npz", "--data", "digits", "--out", out, "--ref-split", "test"]
    assert _cli(*args, "--ref-stats", ref, "--kid-subsets", 10) == 0
    m = json.loads(out.read_text())
    assert m["fid"] == pytest.approx(0.0, abs=1e-6) and m["precision"] == 1.0 and m["recall"] == 1.0
    assert m["feature_extractor"] == "digits" and len(m["feature_extractor_sha256"]) == 64
    assert m["num_samples"] == len(x) == m["num_reference"] and m["nfe"] == 35.0
    assert ref.is_file()
    assert _cli(*args, "--ref-stats", ref, "--metrics", "fid") == 0  # cached reference reused
    assert json.loads(out.read_text())["fid"] == pytest.approx(0.0, abs=1e-6)
    capsys.readouterr()
    assert _cli(*args[:-2], "--ref-stats", ref, "--metrics", "fid") == 2  # split differs from the cached file
    assert "split" in capsys.readouterr().err
    bad = {"nokey.npz": {"x": x.numpy()}, "shape.npz": {"samples": x.numpy()[:, :, :4]},
           "nan.npz": {"samples": np.full((4, 1, 8, 8), np.nan, np.float32)},
           "range.npz": {"samples": 2 * x.numpy() - 1}}  # fmt: skip
    for name, arrays in bad.items():
        np.savez(tmp_path / name, **arrays)
        assert _cli("evaluate", "--samples", tmp_path / name, "--data", "digits", "--out", out) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err, (name, err)


def test_evaluate_command_vectors(tmp_path):
    from scorekit.data import load_data

    pts = load_data("moons", split="test", num=600).user_data().numpy()
    np.savez(tmp_path / "v.npz", samples=pts)
    out = tmp_path / "v.json"
    assert _cli("evaluate", "--samples", tmp_path / "v.npz", "--data", "moons", "--out", out, "--num-ref", 600) == 0
    m = json.loads(out.read_text())
    assert {"sliced_wasserstein", "mmd", "w2"} <= set(m) and m["w2_num"] == 600
    assert m["sliced_wasserstein"] < 0.2 and abs(m["mmd"]) < 0.01
    assert _cli("evaluate", "--samples", tmp_path / "v.npz", "--data", "moons", "--out", out, "--metrics", "fid") == 2


def _fmt_kid(fid: str) -> str:
    return f"{float(fid) / 10:.4g}"


def test_report_command(tmp_path, digits):
    _, x, _ = digits
    results = []
    for nfe, fid in ((10, 30.0), (20, 12.0), (40, 5.0)):
        p = tmp_path / f"m{nfe}.json"
        p.write_text(json.dumps({"fid": fid, "kid": fid / 10, "nfe": nfe, "sampler": "heun"}))
        results.append(p)
    np.savez(tmp_path / "s.npz", samples=x.numpy()[:16])
    out = tmp_path / "report" / "REPORT.md"
    assert _cli("report", "--results", *results, "--samples", tmp_path / "s.npz", "--out", out, "--html") == 0
    md = out.read_text()
    assert "| run | fid | kid | nfe | extractor |" in md
    for nfe, fid in ((10, "30"), (20, "12"), (40, "5")):
        assert f"| {fid} | {_fmt_kid(fid)} | {nfe} |" in md
    assert "![fid vs NFE](fid_vs_nfe.png)" in md and "<table>" in (out.parent / "REPORT.html").read_text()
    assert (out.parent / "fid_vs_nfe.png").is_file() and (out.parent / "REPORT.html").is_file()
    grids = list(out.parent.glob("grid_*.png"))
    assert len(grids) == 1 and f"]({grids[0].name})" in md
    from scorekit.metrics.report import render_report

    with pytest.raises(ValueError, match="no metric results"):
        render_report([out.parent], tmp_path / "x.md")  # a folder with no metrics JSON


def test_vector_metrics_converge_as_sampler_steps_grow(tmp_path):
    """Exact-mixture denoiser + Heun: sliced W, MMD and exact W2 against the mixture fall as steps grow."""
    from scorekit.analytic import GaussianMixture
    from scorekit.metrics.evaluate import evaluate_samples
    from scorekit.sampling import generate

    spec = {"weights": [0.5, 0.5], "means": [[-2.0, 0.0], [2.0, 0.0]], "variances": [[0.25, 0.25], [0.25, 0.25]]}
    (tmp_path / "gmm.json").write_text(json.dumps(spec))
    gmm = GaussianMixture(spec["weights"], spec["means"], spec["variances"])
    results = []
    for steps in (3, 6, 24):
        x = generate(gmm.denoiser(), "heun", steps, 600, seed=0, data_shape=(2,)).samples
        results.append(evaluate_samples(x, f"gmm:{tmp_path / 'gmm.json'}", num_ref=600, w2_max=600))
    for key in ("sliced_wasserstein", "w2", "mmd"):
        seq = [r[key] for r in results]
        assert seq[0] > seq[1] > seq[2], (key, seq)
    # 24 Heun steps are near the finite-sample floor (exact mixture samples; W2 of 600 points is noisy:
    # a 2σ imbalance between the two modes alone moves it by ~0.2).
    exact = gmm.sample(600, generator=torch.Generator().manual_seed(7))[0].float()
    floor = evaluate_samples(exact, f"gmm:{tmp_path / 'gmm.json'}", num_ref=600, w2_max=600)
    assert results[-1]["w2"] < 2 * floor["w2"] and results[0]["w2"] > 3 * results[-1]["w2"]
    assert abs(results[-1]["mmd"]) < 0.01


# --- uncertainty, floor, per-class accuracy --------------------------------------------------------------
def _two_modes(tmp_path, labels=True):
    spec = {"weights": [0.5, 0.5], "means": [[-2.0, 0.0], [2.0, 0.0]], "variances": [[0.25, 0.25], [0.25, 0.25]]}
    if labels:
        spec["labels"] = [0, 1]
    (tmp_path / "gmm.json").write_text(json.dumps(spec))
    from scorekit.analytic import GaussianMixture

    return f"gmm:{tmp_path / 'gmm.json'}", GaussianMixture(spec["weights"], spec["means"], spec["variances"],
                                                            spec.get("labels"))  # fmt: skip


def test_vector_metrics_carry_std_and_floor(tmp_path):
    from scorekit.metrics.evaluate import evaluate_samples

    data, gmm = _two_modes(tmp_path)
    exact = gmm.sample(1000, generator=torch.Generator().manual_seed(11))[0].float()
    shifted = exact + torch.tensor([1.0, 0.0])
    good = evaluate_samples(exact, data, num_ref=1000, w2_max=300)
    bad = evaluate_samples(shifted, data, num_ref=1000, w2_max=300)
    for m in ("sliced_wasserstein", "mmd", "w2"):
        for r in (good, bad):
            assert {m, f"{m}_std", f"{m}_floor", f"{m}_floor_std"} <= set(r) and r[f"{m}_std"] > 0
        # exact samples sit at the floor; a shift of two mode std stands far above it
        assert abs(good[m] - good[f"{m}_floor"]) < 3 * (good[f"{m}_std"] + good[f"{m}_floor_std"]), m
        assert bad[m] - good[m] > 3 * (bad[f"{m}_std"] + good[f"{m}_std"]), m
    assert good["metric_repeats"] == 5 and good["uncertainty"] == "reference redraws"
    assert good["w2_num"] == 300 and good["num_reference"] == 1000  # existing keys kept
    one = evaluate_samples(exact, data, num_ref=500, w2_max=300, repeats=1, floor=False)
    assert one["w2_std"] == 0.0 and "w2_floor" not in one
    # a fixed reference (a file) cannot be redrawn: std over projections/subsamples, no floor
    np.save(tmp_path / "ref.npy", gmm.sample(400, generator=torch.Generator().manual_seed(3))[0].numpy())
    fixed = evaluate_samples(exact, str(tmp_path / "ref.npy"), w2_max=300)
    assert "w2_floor" not in fixed and fixed["uncertainty"].startswith("projections")
    with pytest.raises(ValueError, match="floor"):
        evaluate_samples(exact, str(tmp_path / "ref.npy"), floor=True)
    with pytest.raises(ValueError, match="repeats"):
        evaluate_samples(exact, data, repeats=0)


def test_per_class_accuracy(tmp_path, digits):
    from scorekit.metrics.evaluate import evaluate_samples
    from scorekit.metrics.vector import per_class_accuracy

    acc, per = per_class_accuracy([0, 1, 1, 2], [0, 1, 2, 2])
    assert acc == 0.75 and per == {"0": 1.0, "1": 1.0, "2": 0.5}
    data, gmm = _two_modes(tmp_path)
    g = torch.Generator().manual_seed(0)
    x = torch.cat([gmm.sample_class(300, 0, generator=g)[0], gmm.sample_class(300, 1, generator=g)[0]]).float()
    y = np.repeat([0, 1], 300)
    r = evaluate_samples(x, data, labels=y, repeats=1, floor=False, num_ref=600)
    assert r["class_accuracy"] > 0.99 and set(r["per_class_accuracy"]) == {"0", "1"}
    assert r["class_accuracy_classifier"] == "gmm exact class posterior"
    flipped = evaluate_samples(x, data, labels=np.where(np.arange(600) < 450, y, 1 - y), repeats=1, floor=False)
    # 150 class-1 samples now claim label 0: label 0 is right for 300 of its 450 samples
    assert flipped["per_class_accuracy"]["0"] == pytest.approx(2 / 3, abs=0.01) and flipped["class_accuracy"] < 0.76
    with pytest.raises(ValueError, match="labels for"):
        evaluate_samples(x, data, labels=y[:10])
    # digits through the command: the pinned classifier on real test digits with their labels
    _, xd, yd = digits
    np.savez(tmp_path / "d.npz", samples=xd.numpy()[:300], labels=yd.numpy()[:300])
    out = tmp_path / "d.json"
    assert _cli("evaluate", "--samples", tmp_path / "d.npz", "--data", "digits", "--out", out, "--metrics", "fid",
                "--ref-split", "test") == 0  # fmt: skip
    m = json.loads(out.read_text())
    assert m["class_accuracy"] > 0.9 and len(m["per_class_accuracy"]) == 10 and "fid" in m
    assert m["provenance"]["scorekit_version"] and m["provenance"]["settings"]["data"] == "digits"
