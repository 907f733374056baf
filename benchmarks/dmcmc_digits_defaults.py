"""Digits: DLG with the defaults at --nfe 10 (trained classifier, cost counted; and the residual σ estimate) against
plain samplers at 10 NFE, FID in chunks of 359 samples (the test split size, so the floor is comparable).

    python benchmarks/dmcmc_digits_defaults.py 1077 [RUN NOISE_CLASSIFIER]   # -> JSON lines on stdout
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from scorekit.checkpoint import load_denoiser, read_config
from scorekit.commands.quickstart import digits_fid
from scorekit.data import DataTransform, load_data
from scorekit.dmcmc import TrainedNoiseClassifier, estimator_cost, plan_dlg, sample_dlg
from scorekit.samplers import Schedule, get_sampler
from scorekit.samplers.budget import plan_for_budget
from scorekit.samplers.tuning import run_fingerprint, save_schedule, tune_schedule

torch.set_num_threads(1)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
run = sys.argv[2] if len(sys.argv) > 2 else "/work/runs/qs/run"
nc = sys.argv[3] if len(sys.argv) > 3 else "/work/runs/qs/noise_classifier"
den = load_denoiser(run)
clf = TrainedNoiseClassifier(nc)
tr = DataTransform.from_config(read_config(run)["data"]["transform"])
ref = load_data("digits").user_data().float()
test = load_data("digits", split="test").user_data().float()


def fid(x):
    """FID of all N samples to the training set (`fid.all`: what a user sees; within-chain correlation of DLG's
    outputs counts against it) and the mean over chunks of 359 samples (the test split's size, so that the floor is
    comparable; DLG emits one output per chain per round, so a chunk holds nearly one output per chain)."""
    u = tr.to_user(x.float()).clamp(0, 1)
    vals = [digits_fid(u[i : i + 359], ref) for i in range(0, len(u) - 358, 359)]
    fid.std = float(torch.tensor(vals).std()) if len(vals) > 1 else float("nan")  # spread over the chunks
    fid.all = digits_fid(u, ref)
    return sum(vals) / len(vals), len(vals)


rows = []
floor = digits_fid(test, ref)
print(json.dumps({"floor_test359_vs_train": floor}), flush=True)
cc = estimator_cost(clf, den)["relative_cost"]
for B in (10,):
    for label, kw, est in (
        ("DLG classifier", {}, clf),
        ("DLG residual (no classifier)", {"sigma_update": "residual"}, None),
    ):
        p = plan_dlg(B, N, classifier_cost=cc if est is not None else 0.0, **kw)
        t = time.time()
        r = sample_dlg(den, est, N, p.config, generator=torch.Generator().manual_seed(0))
        f, k = fid(r.samples)
        row = {
            "method": label,
            "budget": B,
            "plan": p.describe(),
            "nfe": r.nfe_per_sample,
            "classifier_nfe": r.info["classifier_denoiser_equivalent_nfe"],
            "fid": f,
            "fid_chunk_std": fid.std,
            "fid_all": fid.all,
            "chunks": k,
            "distinct": r.info["distinct_fraction"],
            "ess": r.info["ess"],
            "s": round(time.time() - t),
        }
        print(json.dumps(row), flush=True)
    with tempfile.TemporaryDirectory() as tmp:  # `--nfe B` with schedules tuned for this model (tune-schedule)
        for name in ("ipndm", "unipc"):
            start = plan_for_budget(B, sampler=name, denoiser=den, process=den.process)
            t = time.process_time()
            res = tune_schedule(den, name, B, shape=tuple(den.data_shape), start=start.sigmas_tensor(),
                                options=start.options, sigma_min=float(den.process.sigma_min),
                                sigma_max=float(den.process.sigma_max), teachers=16, seed=0,
                                model=run_fingerprint(run), dtype=torch.float32)  # fmt: skip
            save_schedule(Path(tmp) / "schedules" / f"{name}-nfe{B}.json", res)
            print(json.dumps({"tuned": name, "chosen": res["chosen"], "cpu_s": time.process_time() - t}), flush=True)
        plan = plan_for_budget(B, denoiser=den, process=den.process, run_dir=Path(tmp))
        sig = plan.sigmas_tensor()
        g = torch.Generator().manual_seed(0)
        x = float(sig[0]) * torch.randn((N, *den.data_shape), generator=g)
        out = get_sampler(plan.sampler).fn(den, x, sig.float(), **plan.options)
        f, k = fid(out.x)
        row = {"method": f"--nfe {B} with tuned schedules ({plan.sampler})", "budget": B, "nfe": float(out.nfe),
               "fid": f, "fid_chunk_std": fid.std, "fid_all": fid.all, "chunks": k}  # fmt: skip
        print(json.dumps(row), flush=True)
    for name, sched in (
        ("budget-rule", None),
        ("dpmpp_2m", "logsnr"),
        ("dpmpp_2m", "karras"),
        ("ipndm", "logsnr"),
        ("unipc", "logsnr"),
        ("heun", "karras"),
        ("ddim", "logsnr"),
    ):
        g = torch.Generator().manual_seed(0)
        smax = float(den.process.sigma_max)
        if name == "budget-rule":
            plan = plan_for_budget(B, denoiser=den, process=den.process)
            spec, opts = get_sampler(plan.sampler), plan.options
            sig = plan.sigmas_tensor(process=den.process, sigma_min=float(den.process.sigma_min), sigma_max=smax)
            label = f"budget rule ({plan.sampler})"
        else:
            spec, opts = get_sampler(name), {}
            steps = max(s for s in range(1, 30) if spec.nfe(s) <= B)
            sig = Schedule(sched).table(steps, default=spec.default_schedule, process=den.process, model=den)
            label = f"{name}+{sched}"
        x = float(sig[0]) * torch.randn((N, *den.data_shape), generator=g)
        out = spec.fn(den, x, sig.float(), process=den.process, generator=g, **opts)
        f, k = fid(out.x)
        row = {"method": label, "budget": B, "nfe": float(out.nfe), "fid": f, "fid_chunk_std": fid.std,
               "fid_all": fid.all, "chunks": k}  # fmt: skip
        print(json.dumps(row), flush=True)
