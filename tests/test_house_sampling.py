"""One house for sampling: every path builds its σ schedule the same way, and only the command line knows argparse."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scorekit.analytic import GaussianMixture
from scorekit.cli import main
from scorekit.dmcmc import DLGConfig, ExactNoisePosterior, make_levels
from scorekit.models.parameterization import Denoiser
from scorekit.processes import VPSDE
from scorekit.samplers import SAMPLERS, SamplerSpec, Schedule, get_sampler, get_sigmas
from scorekit.sampling import sample_stream

SRC = Path(__file__).resolve().parents[1] / "src" / "scorekit"
SPEC = {"weights": [0.5, 0.5], "means": [[-2.0, 0.0], [2.0, 0.0]], "variances": [[0.1, 0.1], [0.1, 0.1]]}


# --- one schedule on every path -------------------------------------------------------------------------------
@pytest.fixture
def spy(monkeypatch):
    """A registered sampler `spy` (Heun underneath) that records every σ table it is handed."""
    tables = []
    heun = get_sampler("heun")

    def fn(denoiser, x, sigmas, **kw):
        tables.append(torch.as_tensor(sigmas, dtype=torch.float64).clone())
        return heun.fn(denoiser, x, sigmas, **kw)

    monkeypatch.setitem(SAMPLERS, "spy", SamplerSpec("spy", fn, True, "karras", heun.nfe, "records its σ tables"))
    return tables


def _sample(tmp_path, tables, flags, dlg: bool):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    out = tmp_path / ("dlg.npz" if dlg else "plain.npz")
    argv = ["sample", "--model", f"gmm:{spec}", "--sampler", "spy", "--steps", "4", "--num", "12", "--out", str(out)]
    argv += ["--batch-size", "12", "--no-progress", *flags]
    if dlg:
        argv += ["--dmcmc", "dlg", "--noise-posterior", "exact", "--dlg-chains", "6", "--dlg-burn-in", "0"]
        argv += ["--dlg-init-sampler", "heun", "--dlg-init-steps", "2", "--dlg-skip", "1"]
    tables.clear()
    assert main(argv) == 0
    with np.load(out) as f:
        assert f["samples"].shape == (12, 2) and np.isfinite(f["samples"]).all()
        starts = torch.as_tensor(f["sigma_start"], dtype=torch.float64) if dlg else None
    return [t for t in tables], starts


CASES = [
    ["--rho", "3"],
    ["--sigma-min", "0.05", "--sigma-max", "20"],
    ["--schedule", "log", "--sigma-min", "0.05", "--sigma-max", "20"],
    ["--schedule", "karras", "--rho", "2", "--sigma-max", "30"],
]


@pytest.mark.parametrize("flags", CASES, ids=lambda f: " ".join(f))
def test_schedule_flags_give_the_same_schedule_on_the_plain_and_dlg_paths(tmp_path, spy, flags):
    """Plain: the table from σ_max. DLG: the finisher's rows are the same schedule started at each σ_start."""
    kw = dict(zip([f.lstrip("-").replace("-", "_") for f in flags[::2]], flags[1::2]))
    sched = Schedule.parse(
        kw.get("schedule"),
        rho=float(kw.get("rho", 7.0)),
        sigma_min=float(kw["sigma_min"]) if "sigma_min" in kw else None,
        sigma_max=float(kw["sigma_max"]) if "sigma_max" in kw else None,
    )
    vp = VPSDE()
    (plain,), _ = _sample(tmp_path, spy, flags, dlg=False)
    torch.testing.assert_close(plain.flatten(), sched.table(4, default="karras", process=vp))
    if "sigma_max" in kw:
        assert plain[0].item() == pytest.approx(float(kw["sigma_max"]))
    if "sigma_min" in kw:
        assert plain[-2].item() == pytest.approx(float(kw["sigma_min"]))
    finisher, starts = _sample(tmp_path, spy, flags, dlg=True)
    assert len(finisher) == 2  # two rounds of six chains
    rows = torch.cat([t.expand(6, -1) for t in finisher])
    assert rows.shape == (12, 5)
    # --sigma-min is the finisher's lowest σ (else tweedie_sigma), never below the process's
    smin = max(float(kw.get("sigma_min", 0.01)), vp.sigma_min * (1 + 1e-6))
    want = sched.table(4, default="karras", process=vp, sigma_min=smin, sigma_max=rows[:, 0])
    torch.testing.assert_close(rows, want, rtol=1e-6, atol=1e-7)
    top = float(kw.get("sigma_max", vp.sigma_max))
    torch.testing.assert_close(rows[:, 0], starts.clamp(min=smin * 1.0001, max=top), rtol=1e-6, atol=1e-6)
    if "sigma_max" in kw:
        assert float(rows[:, 0].max()) <= float(kw["sigma_max"]) + 1e-9
    if "rho" in kw:  # ρ reached the finisher: the same rows with the default ρ differ
        assert not torch.allclose(rows, Schedule().table(4, process=vp, sigma_min=smin, sigma_max=rows[:, 0]))


def test_explicit_sigma_list_works_on_the_dlg_path(tmp_path, spy):
    """`--schedule 1,0.5`: plain sampling uses the list; DLG runs from each σ_start through the list's lower levels."""
    (plain,), _ = _sample(tmp_path, spy, ["--schedule", "1,0.5"], dlg=False)
    torch.testing.assert_close(plain.flatten(), torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))
    finisher, starts = _sample(tmp_path, spy, ["--schedule", "1,0.5"], dlg=True)
    rows = [r for t in finisher for r in t]
    assert len(rows) == 12
    for row in rows:
        s = row[0].item()
        assert row[-1] == 0 and (row[1:-1] < s).all()
        lower = [v for v in (1.0, 0.5) if v < s]
        torch.testing.assert_close(row[1:-1], torch.tensor(lower, dtype=torch.float64))
    assert sorted(r[0].item() for r in rows) == pytest.approx(sorted(starts.clamp(min=0.01 * 1.0001).tolist()))


def test_library_front_end_builds_the_schedule_once_for_both_paths(spy):
    gmm = GaussianMixture(SPEC["weights"], SPEC["means"], SPEC["variances"])
    den = gmm.denoiser(VPSDE())
    sched = Schedule("log", rho=7.0, sigma_min=0.02, sigma_max=10.0)
    plain = list(sample_stream(den, "spy", 3, 5, schedule=sched, seed=1))
    assert sum(len(b.x) for b in plain) == 5
    torch.testing.assert_close(spy[0].flatten(), get_sigmas("log", 3, sigma_min=0.02, sigma_max=10.0))
    spy.clear()
    est = ExactNoisePosterior(gmm, make_levels(0.02, 10.0, 50))
    cfg = DLGConfig(chains=5, skip=1, burn_in=0, init_sampler="heun", init_steps=2)
    stream = sample_stream(den, "spy", 3, 5, schedule=sched, dlg=cfg, estimator=est, seed=1)
    (batch,) = list(stream)
    assert stream.nfe > 0 and "sigma_start" in stream.extra
    torch.testing.assert_close(spy[0], get_sigmas("log", 3, sigma_min=0.02, sigma_max=spy[0][:, 0]))
    torch.testing.assert_close(spy[0][:, 0], batch.sigma_start.double().clamp(min=0.02 * 1.0001))


def test_uniform_t_without_a_process_falls_back_to_log_on_every_path():
    assert Schedule().spacing_for("uniform_t", None) == "log"
    assert Schedule().spacing_for("uniform_t", VPSDE()) == "uniform_t"
    assert Schedule("karras").spacing_for("uniform_t", None) == "karras"


def test_schedule_rejects_bad_input():
    for bad in ("nope", "1,x", ","):
        with pytest.raises(ValueError, match="schedule"):
            Schedule.parse(bad)
    with pytest.raises(ValueError, match="rho"):
        Schedule(rho=-1)


# --- the denoiser protocol --------------------------------------------------------------------------------------
def test_protocol_answers_for_the_mixture_and_a_network():
    from scorekit.models.mlp import MLP
    from scorekit.models.parameterization import NetworkDenoiser

    gmm = GaussianMixture(SPEC["weights"], SPEC["means"], SPEC["variances"], labels=[0, 1])
    mix = gmm.denoiser(VPSDE())
    net = NetworkDenoiser(MLP(2, hidden=8, depth=1, num_classes=2), "vp", data_shape=(2,), num_classes=2)
    x, sigma = torch.randn(4, 2, dtype=torch.float64), torch.full((4,), 0.7, dtype=torch.float64)
    for den in (mix, net):
        assert isinstance(den, Denoiser) and den.data_shape == (2,) and den.num_classes == 2
    assert (mix.null_label, mix.labels_required, mix.has_log_density) == (None, False, True)
    assert (net.null_label, net.labels_required, net.has_log_density) == (2, True, False)
    torch.testing.assert_close(mix.unconditional(x, sigma), gmm.denoise(x, sigma))
    torch.testing.assert_close(mix.log_density(x, sigma), gmm.log_prob(x, sigma))
    assert net.unconditional(x.float(), sigma.float()).shape == (4, 2)
    with pytest.raises(NotImplementedError):
        net.log_density(x, sigma)


# --- only the command line knows argparse ---------------------------------------------------------------------------
def _library_modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "cli.py" or rel.startswith("commands/"):
            continue
        yield rel, ast.parse(path.read_text(), filename=str(path))


def test_no_library_module_imports_argparse_or_reads_a_namespace():
    bad = []
    for rel, tree in _library_modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "argparse" for a in node.names):
                bad.append(f"{rel}:{node.lineno} imports argparse")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "argparse":
                bad.append(f"{rel}:{node.lineno} imports from argparse")
            elif isinstance(node, ast.ImportFrom) and "commands" in (node.module or "").split("."):
                bad.append(f"{rel}:{node.lineno} imports scorekit.commands")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "argparse":
                bad.append(f"{rel}:{node.lineno} uses argparse.{node.attr}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "vars")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in ("args", "namespace", "ns", "opts")
            ):
                bad.append(f"{rel}:{node.lineno} {node.func.id}({node.args[0].id}, ...) reads a namespace")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = {a.arg for a in node.args.args + node.args.kwonlyargs} & {"args", "namespace", "ns"}
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in params:
                        bad.append(f"{rel}:{sub.lineno} {node.name}() reads {sub.value.id}.{sub.attr}")
    assert not bad, "\n".join(bad)


def test_no_module_hides_a_failing_import_of_the_package_itself():
    """`try: from .x import y / except ImportError` around scorekit's own modules hides real errors."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try):
                continue
            catches = {
                n.id
                for h in node.handlers
                for n in ast.walk(h.type or ast.Name("BaseException"))
                if isinstance(n, ast.Name)
            }
            if not catches & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}:
                continue
            for stmt in node.body:
                for sub in ast.walk(stmt):
                    own = (
                        isinstance(sub, ast.ImportFrom) and (sub.level > 0 or (sub.module or "").startswith("scorekit"))
                    ) or (
                        isinstance(sub, ast.Call)
                        and isinstance(sub.func, ast.Attribute)
                        and sub.func.attr == "import_module"
                    )
                    if own:
                        bad.append(f"{path.relative_to(SRC)}:{sub.lineno}")
    assert not bad, "own imports guarded by except ImportError: " + ", ".join(bad)


# --- classifier guidance by mean shift is an option of the registered ancestral sampler -------------------------
def test_mean_shift_is_an_ancestral_option_on_a_guided_denoiser(tmp_path):
    from scorekit.guidance import ClassifierGuidedDenoiser, ExactClassifier

    gmm = GaussianMixture(SPEC["weights"], SPEC["means"], SPEC["variances"], labels=[0, 1])
    den = gmm.denoiser(VPSDE())
    guided = ClassifierGuidedDenoiser(den, ExactClassifier(gmm), 1.0)
    labels = torch.ones(64, dtype=torch.long)
    opts = {"mean_shift": True}
    out = torch.cat(
        [b.x for b in sample_stream(guided, "ancestral", 100, 64, class_labels=labels, sampler_options=opts)]
    )
    assert (out[:, 0] > 0).float().mean() > 0.95  # class 1 is the component at +2
    with pytest.raises(ValueError, match="mean_shift needs classifier guidance"):
        list(sample_stream(den, "ancestral", 10, 4, sampler_options=opts))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "labels": [0, 1]}))
    argv = ["sample", "--model", f"gmm:{spec}", "--sampler", "ancestral", "--steps", "50", "--num", "32"]
    argv += ["--out", str(tmp_path / "ms.npz"), "--sampler-opt", "mean_shift=true"]
    argv += ["--guidance", "classifier", "--classifier", "exact", "--class", "0"]
    assert main(argv) == 0
    with np.load(tmp_path / "ms.npz") as f:
        assert (f["samples"][:, 0] < 0).mean() > 0.9 and (f["labels"] == 0).all()


def test_progress_is_quiet_when_stderr_is_not_a_terminal(capsys):
    gmm = GaussianMixture(SPEC["weights"], SPEC["means"], SPEC["variances"])
    stream = sample_stream(gmm.denoiser(VPSDE()), "heun", 3, 10, batch_size=4, progress=True)
    batches = list(stream)
    assert [b.index for b in batches] == [0, 1, 2] and [len(b.x) for b in batches] == [4, 4, 2]
    assert capsys.readouterr().err == ""
