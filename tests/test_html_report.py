"""`scorekit report --run RUN --html OUT.html`: one self-contained page (loss curve, grids over training, quality
with error bars and floor, quality vs NFE, per-class accuracy), checked in headless Chromium where installed."""

import base64
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cli(*argv):
    from scorekit.cli import main

    return main([str(a) for a in argv])


def _fake_run(tmp_path):
    """A run directory as training leaves it: config, log.jsonl, samples/step_N.png (2-D scatter plots)."""
    import torch

    from scorekit.checkpoint import write_config
    from scorekit.data import save_scatter

    run = tmp_path / "run"
    write_config(run, {"kind": "score_model", "data": {"spec": "moons"}, "process": {"name": "vp"},
                       "network": {"arch": "mlp"}, "objective": "dsm", "training": {"steps": 400}})  # fmt: skip
    with open(run / "log.jsonl", "w") as f:
        for step in range(10, 401, 10):
            f.write(json.dumps({"step": step, "loss": 1.0 + 2.0 / step**0.5, "steps_per_s": 20.0}) + "\n")
        f.write("not json\n")  # a torn last line is skipped
    g = torch.Generator().manual_seed(0)
    for step in (100, 200, 300, 400):
        save_scatter(run / "samples" / f"step_{step:08d}.png", torch.randn(200, 2, generator=g) * (400 / step))
    results = []
    for sampler, scale in (("heun", 1.0), ("euler", 2.0)):
        for steps in (4, 8, 16):
            p = tmp_path / "results" / f"{sampler}_{steps}.json"
            p.parent.mkdir(exist_ok=True)
            rec = {"sliced_wasserstein": scale / steps + 0.05, "sliced_wasserstein_std": 0.01,
                   "sliced_wasserstein_floor": 0.05, "sliced_wasserstein_floor_std": 0.005, "w2": scale / steps,
                   "w2_std": 0.02, "nfe": 2 * steps - 1, "num_samples": 1000,
                   "provenance": {"command_line": "scorekit evaluate"}}  # fmt: skip
            p.write_text(json.dumps(rec))
            results.append(p)
    labelled = tmp_path / "results" / "guided.json"
    labelled.write_text(json.dumps({"class_accuracy": 0.9, "per_class_accuracy": {"0": 0.8, "1": 1.0}}))
    return run, results + [labelled]


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def test_html_report_is_self_contained(tmp_path, capsys):
    run, results = _fake_run(tmp_path)
    np.savez(tmp_path / "s.npz", samples=np.random.default_rng(0).standard_normal((300, 2)).astype(np.float32))
    out = tmp_path / "page" / "report.html"
    assert _cli("report", "--run", run, "--results", *results, "--samples", tmp_path / "s.npz", "--html", out) == 0
    page = out.read_text()
    imgs = _images(page)
    # loss curve + 4 grids over training + NFE plot + per-class plot + 1 sample grid
    assert len(imgs) == 8 and all(b.startswith(PNG_MAGIC) for b in imgs)
    assert f"data-images='{len(imgs)}'" in page
    assert not re.search(r"(src|href)=['\"](?!data:)", page), "the page must not reference external files"
    assert list(out.parent.iterdir()) == [out]  # nothing written beside it
    for text in ("Training loss", "Samples over training", "step 400", "sliced_wasserstein vs NFE", "sliced W floor",
                 "0.3 ± 0.01", "0.05 ± 0.005", "Per-class accuracy", "steps planned"):  # fmt: skip
        assert text in page, text
    # the Markdown report keeps its behaviour, now with ± and the floor for vector metrics
    md = tmp_path / "md" / "REPORT.md"
    assert _cli("report", "--results", *results, "--out", md) == 0
    table = md.read_text()
    assert "| run | sliced_wasserstein | sliced_wasserstein_floor | w2 | nfe |" in table
    assert "| heun_4 | 0.3 ± 0.01 | 0.05 ± 0.005 | 0.25 ± 0.02 | 7 |" in table
    capsys.readouterr()
    for bad in (["--html", out], ["--run", tmp_path / "nowhere", "--html", out], ["--run", run, "--out", md]):
        assert _cli("report", *bad) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err, (bad, err)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium on this machine")
def test_html_report_renders_in_chromium(tmp_path):
    from matplotlib.image import imread

    run, results = _fake_run(tmp_path)
    out = tmp_path / "report.html"
    assert _cli("report", "--run", run, "--results", *results, "--html", out) == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", out.as_uri()], capture_output=True, text=True,
                         timeout=120, env=env)  # fmt: skip
    n = len(_images(out.read_text()))
    assert f'data-decoded="{n}"' in dom.stdout, dom.stderr[-2000:]  # every inlined image decoded
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1100,1800", out.as_uri()],
                   capture_output=True, timeout=120, env=env)  # fmt: skip
    px = imread(shot)[..., :3]
    assert px.shape[0] >= 1000 and px.std() > 0.05  # not blank
    colour = (px.max(-1) - px.min(-1)) > 0.2  # the page's text is grey; colour comes from the plots
    assert colour.mean() > 0.002


def test_quality_vs_nfe_curves_keep_dlg_and_budget_choices_apart():
    from scorekit.metrics.html_report import _series

    def rec(settings, plan=None, label="x"):
        sp = {"settings": settings, **({"nfe_plan": plan} if plan else {})}
        return {"_label": label, "provenance": {"samples_provenance": sp}}

    plain = rec({"sampler": "dpmpp_2m"})
    dlg = rec({"sampler": "dpmpp_2m", "dmcmc": {"method": "dlg"}})
    tuned = rec({"sampler": "dpmpp_2m"}, {"reason": "tuned schedule RUN/schedules/dpmpp_2m-nfe10.json"})
    rule = rec({"sampler": "dpmpp_2m"}, {"reason": "built-in rule for NFE 10: dpmpp_2m"})
    names = [_series(r) for r in (plain, dlg, tuned, rule)]
    assert names == ["dpmpp_2m", "dlg+dpmpp_2m", "dpmpp_2m (--nfe tuned)", "dpmpp_2m (--nfe rule)"]
    assert _series(rec({"sampler": "dlg+dpmpp_2m", "dmcmc": {}})) == "dlg+dpmpp_2m"  # the quickstart's own name
    assert _series({"_label": "heun_16"}) == "heun"
