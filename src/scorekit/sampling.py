"""THE sampling front end: plain, guided and Denoising-MCMC sampling as one stream of seeded batches.

`sample_stream(...)` validates the sampler and its options once, builds the σ schedule once (`Schedule`: the same
spacing, ρ and σ range on every path), and yields `Batch`es in order; `write_npz` streams them into an .npz
(memory flat in N). Plain batch b draws all its randomness from a generator seeded by (seed, b), so samples do not
depend on how many batches or ranks run; DMCMC runs `DLGRun` from `seed` and yields one batch per round.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .distributed import gather_batches, rank_world
from .dmcmc import DLGConfig, DLGRun, NoiseLevelEstimator
from .outputs import set_output_mode
from .processes import Process
from .provenance import npz_entry
from .samplers import Schedule, get_sampler
from .samplers.budget import BudgetPlan, plan_for_budget

__all__ = [
    "Batch",
    "SampleStream",
    "sample_stream",
    "write_npz",
    "GenerateResult",
    "generate",
    "batch_generator",
    "parse_sampler_options",
    "make_sigmas_for",
    "NpzStreamWriter",
    "default_batch_size",
    "save_samples_npz",
]


@dataclass
class GenerateResult:
    samples: Tensor  # [num, *shape], model range, float32, CPU
    nfe: float  # denoiser evaluations per sample
    labels: Tensor | None = None


@dataclass
class Batch:
    """Consecutive samples of a run: `x` [n, *shape] (model range, float32, CPU), their labels and, for DMCMC, the
    σ each sample's finisher started from. `index` is the batch (plain) or the DLG round."""

    index: int
    x: Tensor
    labels: Tensor | None = None
    sigma_start: Tensor | None = None


def batch_generator(seed: int, batch_index: int, device="cpu") -> torch.Generator:
    """The generator of batch `batch_index` of a run seeded with `seed`."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(batch_index) * 7_919 + 12_345) % (2**63 - 1))
    return g


def parse_sampler_options(pairs: list[str] | None, allowed: tuple[str, ...] | None = None) -> dict:
    """['snr=0.16', 'corrector_steps=2'] → {'snr': 0.16, 'corrector_steps': 2}; unknown keys are an error."""
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise ValueError(f"sampler option {item!r} must look like key=value")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if allowed is not None and k not in allowed:
            ok = ", ".join(allowed) if allowed else "none"
            raise ValueError(f"sampler option {k!r} is not accepted here (accepted: {ok})")
        low = v.strip().lower()
        if low in ("true", "false"):
            out[k] = low == "true"
            continue
        try:
            num = float(v)
        except ValueError:
            out[k] = v
            continue
        if not math.isfinite(num):
            raise ValueError(f"sampler option {k} must be finite, got {v}")
        out[k] = int(num) if num.is_integer() and "." not in v and "e" not in low else num
    return out


def make_sigmas_for(
    denoiser,
    sampler: str,
    steps: int,
    *,
    process: Process | None = None,
    schedule=None,
    sigma_min: float | None = None,
    sigma_max=None,
    rho: float = 7.0,
) -> Tensor:
    """The σ table plain sampling uses (`Schedule.table`, kept for scripts that called this)."""
    if not isinstance(schedule, Schedule):
        schedule = Schedule(schedule, rho=rho, sigma_min=sigma_min, sigma_max=sigma_max)
    proc = process if process is not None else denoiser.process
    return schedule.table(steps, default=get_sampler(sampler).default_schedule, process=proc, model=denoiser)


class SampleStream:
    """An iterable of `Batch`es in sample order; after iterating, `nfe` is the denoiser evaluations per sample
    (DMCMC start-up amortised in) and `arrays()` the small arrays the .npz carries with the samples."""

    def __init__(self, batches: Iterable[Batch], total: int, desc: str, progress: bool, hint: str = "more steps"):
        self._batches, self.total, self.desc, self.progress, self.hint = batches, total, desc, progress, hint
        self.nfe, self.extra, self.plan, self.dlg_info = 0.0, {}, None, None
        self.settings: dict = {}  # what made these samples (sampler, steps, schedule, seed, …): for provenance

    def __iter__(self) -> Iterator[Batch]:
        bar = None
        if self.progress and sys.stderr.isatty() and rank_world()[0] == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total or None, desc=self.desc, unit="sample", dynamic_ncols=True)
        try:
            for batch in self._batches:
                if not torch.isfinite(batch.x).all():
                    raise ValueError(f"{self.desc} produced non-finite values (batch {batch.index}); try {self.hint}")
                if bar is not None:
                    bar.update(len(batch.x))
                yield batch
        finally:
            if bar is not None:
                bar.close()

    def arrays(self) -> dict:
        return {"nfe": np.float64(self.nfe), **self.extra}

    def provenance(self, record: dict, wall_s: float | None = None) -> dict:
        """`record` (from `provenance.provenance`) completed with this stream's settings, the budget plan if any,
        the NFE per sample and the wall time."""
        settings = {**self.settings, **(record.get("settings") or {})}
        out = {**record, "settings": json.loads(json.dumps(settings, default=str)), "nfe": float(self.nfe)}
        if self.plan is not None:
            out["nfe_plan"] = self.plan.to_dict()
        if wall_s is not None:
            out["wall_s"] = round(float(wall_s), 3)
        return out


def default_batch_size(shape: tuple[int, ...], num: int, device="cpu") -> int:
    """Samples per batch when none is given, by data size and device. Vectors: 1,024 on a CPU (measured on the
    default 2-D MLP: per-sample arithmetic dominates, CPU time flat from 256 to 16,384 per batch), 16,384 on an
    accelerator (where a small batch is launch-bound). Images: about 2^21 input values per batch on a CPU (682 of
    3x32x32, 10 of 3x256x256), 2^23 on an accelerator, so activations fit. At least 1, at most `num`. (Sample
    values depend on the batch size, as on the device's random stream.)"""
    accel = torch.device(device).type != "cpu"
    dim = math.prod(shape) if shape else 1
    if len(shape) <= 1:
        cap = 16_384 if accel else 1_024
    else:
        cap = max(1, (1 << (23 if accel else 21)) // max(1, dim))
    return int(max(1, min(int(num), cap)))


def _check_option_types(fn, opts: dict, name: str) -> None:
    """A text value for an option whose default is a number or a flag is named in the error (`snr=abc`)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    for k, v in opts.items():
        p = params.get(k)
        if p is None or p.default is inspect.Parameter.empty or p.default is None:
            continue
        if isinstance(p.default, bool) and not isinstance(v, bool):
            raise ValueError(f"sampler {name!r}: option {k} must be true or false, got {v!r}")
        if isinstance(p.default, (int, float)) and not isinstance(p.default, bool) and isinstance(v, str):
            raise ValueError(f"sampler {name!r}: option {k} must be a number, got {v!r}")


def sample_stream(
    denoiser,
    sampler: str | None,
    steps: int | None,
    num: int,
    *,
    nfe: int | None = None,
    run_dir=None,
    schedule: Schedule | None = None,
    process: Process | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device="cpu",
    class_labels: Tensor | None = None,
    sampler_options: dict | None = None,
    data_shape: tuple[int, ...] | None = None,
    dlg: DLGConfig | None = None,
    estimator: NoiseLevelEstimator | None = None,
    batches: Iterable[int] | None = None,
    distributed: bool = False,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
) -> SampleStream:
    """`num` samples of `denoiser` (any protocol denoiser: plain, guided, conditional) with `sampler`.

    Plain: σ-space prior x = σ_max·n, then the sampler on `schedule`'s table; batch b is seeded by (seed, b);
    `batches` restricts to some batch indices, `distributed` splits them over torchrun ranks (rank 0 yields all,
    in order). With `dlg` (and a noise-level `estimator`), Denoising Langevin Gibbs makes the starting points and
    `sampler`/`steps`/`sampler_options` are its finisher (sampler None: the config's own finisher; a DLG budget is
    planned by `dmcmc.plan_dlg` before); one batch per round. `class_labels` [num] are per sample.
    With a budget `nfe` instead of `steps`, `samplers.plan_for_budget` picks the solver (or takes `sampler`), its
    options and σ steps (a tuned schedule in `run_dir`/schedules/ first); the plan is `stream.plan`.
    """
    plan = None
    if dlg is not None and sampler is None:
        sampler, steps = dlg.finisher, dlg.finisher_steps
    if nfe is not None:
        if steps is not None:
            raise ValueError("give either a step count or an NFE budget, not both")
        if dlg is not None:
            raise ValueError("Denoising MCMC at a budget is planned by dmcmc, not by plan_for_budget")
        sched = schedule if schedule is not None else Schedule()
        if sched.spacing is not None:
            raise ValueError("an NFE budget picks its own σ steps; drop the explicit schedule")
        cost = float(denoiser.network_evals_per_call)
        calls = int(int(nfe) / cost + 1e-9)  # the budget counts network evaluations (CFG: two per call)
        if calls < 1:
            raise ValueError(f"an NFE budget of {nfe} buys no step: each denoiser call costs {cost:g} network "
                             "evaluations here")  # fmt: skip

        def plan_of(k: int) -> BudgetPlan:
            return plan_for_budget(
                k,
                denoiser=denoiser,
                process=process if process is not None else denoiser.process,
                run_dir=run_dir,
                sampler=sampler,
                sigma_min=sched.sigma_min,
                sigma_max=sched.sigma_max,
            )

        plan = _most_calls_within(int(nfe), plan_of(calls), plan_of, denoiser)
        sampler, steps = plan.sampler, plan.steps
        sampler_options = {**plan.options, **(sampler_options or {})}
        schedule = Schedule(plan.sigmas, rho=sched.rho)
    if sampler is None or steps is None:
        raise ValueError("give a sampler and a step count, or an NFE budget")
    for name, v in (("num", num), ("steps", steps), ("batch-size", batch_size)):
        if v is not None and int(v) <= 0:
            raise ValueError(f"--{name} must be > 0, got {v}")
    spec = get_sampler(sampler)
    if sampler_options is None and dlg is not None:
        sampler_options = dlg.finisher_options
    opts = spec.check_options(dict(sampler_options or {}))
    _check_option_types(spec.fn, opts, spec.name)
    schedule = schedule if schedule is not None else Schedule()
    shape = tuple(data_shape or denoiser.data_shape or ())
    if not shape:
        raise ValueError("cannot tell the data shape of this model")
    batch_size = int(batch_size) if batch_size is not None else default_batch_size(shape, int(num), device)
    proc = process if process is not None else denoiser.process
    settings = {
        "sampler": spec.name,
        "steps": int(steps),
        "sampler_options": opts,
        "schedule": _schedule_record(schedule),
        "process": getattr(proc, "name", None) if proc is not None else None,
        "num": int(num),
        "seed": int(seed),
        "batch_size": batch_size,
        "class_labels": class_labels is not None,
    }
    if class_labels is not None and len(class_labels) != int(num):
        raise ValueError(f"got {len(class_labels)} class labels for {num} samples")
    if dlg is not None:
        if estimator is None and dlg.sigma_update != "residual":
            raise ValueError("Denoising MCMC needs a noise-level estimator (or the residual σ update)")
        cfg = replace(dlg, finisher=sampler, finisher_steps=int(steps), finisher_options=opts)
        run = DLGRun(
            denoiser,
            estimator,
            int(num),
            cfg,
            process=proc,
            generator=torch.Generator(device=device).manual_seed(int(seed)),
            device=device,
            class_labels=None if class_labels is None else class_labels.to(device),
            dtype=dtype,
            schedule=schedule,
            streaming=True,
        )
        stream = SampleStream([], int(num), f"dlg+{sampler}", progress, "a smaller eta or more steps")
        stream._batches = _dlg_batches(run, stream)
        settings.pop("batch_size")
        stream.settings = {**settings, "dmcmc": {"method": "dlg", **_jsonable(cfg)}}
        return stream
    sigmas = schedule.table(int(steps), default=spec.default_schedule, process=proc, model=denoiser)
    nb = math.ceil(int(num) / int(batch_size))
    todo = list(range(nb)) if batches is None else list(batches)
    stream = SampleStream([], int(num) if batches is None else 0, f"sample {sampler}", progress)
    stream.settings = settings

    @torch.no_grad()
    def one(b: int) -> tuple[Batch, float]:
        lo, hi = b * batch_size, min(int(num), (b + 1) * batch_size)
        g = batch_generator(seed, b)
        x = (sigmas[0].item() * torch.randn((hi - lo, *shape), generator=g, dtype=dtype)).to(device)
        labels = None if class_labels is None else class_labels[lo:hi]
        gen = g if torch.device(device).type == "cpu" else _device_generator(seed, b, device)
        lab = None if labels is None else labels.to(device)
        before = getattr(denoiser, "network_evals", None)  # a denoiser that counts the network evaluations it runs
        out = spec.fn(denoiser, x, sigmas.to(dtype), process=proc, generator=gen, class_labels=lab, **opts)
        net = None if before is None else (denoiser.network_evals - before) / (hi - lo)
        return Batch(b, out.x.detach().float().cpu(), labels), (float(out.nfe), net)

    def plain() -> Iterator[Batch]:
        nfe_sum, count, net_sum = 0.0, 0, None
        rank, world = rank_world() if distributed else (0, 1)
        mine = todo[rank::world]
        for r in range(math.ceil(len(todo) / world)):
            local = {mine[r]: one(mine[r])} if r < len(mine) else {}
            got = gather_batches(local) if distributed else local
            for b in sorted(got):
                batch, (nfe, net) = got[b]
                nfe_sum, count = nfe_sum + nfe * len(batch.x), count + len(batch.x)
                net_sum = None if net is None else (net_sum or 0.0) + net * len(batch.x)
                stream.nfe = nfe_sum / count
                if rank == 0:
                    yield batch
        if class_labels is not None:
            stream.extra["labels"] = class_labels.cpu().numpy().astype(np.int64)
        cost = float(denoiser.network_evals_per_call)
        if net_sum is not None and count and net_sum != nfe_sum:  # counted: e.g. guidance in a σ interval
            stream.extra["network_nfe"] = np.float64(net_sum / count)
        elif cost != 1.0:  # e.g. classifier-free guidance: the network runs twice per denoiser call
            stream.extra["network_nfe"] = np.float64(stream.nfe * cost)

    stream._batches = plain()
    if plan is not None:  # the budget choice travels with the samples (an .npz string array)
        stream.plan = plan
        stream.extra["nfe_plan"] = np.array(json.dumps(plan.to_dict()))
    return stream


def _network_evals_of(plan: BudgetPlan, denoiser) -> float:
    """Network evaluations per sample of a plan with one denoiser call per step, made at σ_0 … σ_{steps-1}."""
    return sum(float(denoiser.network_evals_at(s)) for s in plan.sigmas[: plan.steps])


def _most_calls_within(nfe: int, plan: BudgetPlan, plan_of, denoiser) -> BudgetPlan:
    """The plan with the most denoiser calls whose network evaluations fit in `nfe`, starting from `plan` (planned
    at the most a call can cost). Where a call's cost depends on its σ (classifier-free guidance in a σ interval:
    2 inside, 1 outside) the calls outside buy more steps; the reason then says what the budget bought."""
    if plan.sigmas is None:
        return plan
    best, used = plan, _network_evals_of(plan, denoiser)
    for k in range(plan.steps + 1, nfe + 1):
        candidate = plan_of(k)
        cost = math.inf if candidate.sigmas is None else _network_evals_of(candidate, denoiser)
        if cost > nfe + 1e-9:
            break
        best, used = candidate, cost
    if used != best.steps:
        best = replace(best, reason=f"{best.reason}; {best.steps} denoiser calls = {used:g} network evaluations")
    return best


def _schedule_record(schedule: Schedule) -> dict:
    return {
        "spacing": list(schedule.spacing) if isinstance(schedule.spacing, tuple) else schedule.spacing,
        "rho": schedule.rho,
        "sigma_min": schedule.sigma_min,
        "sigma_max": schedule.sigma_max,
    }


def _jsonable(cfg) -> dict:
    from dataclasses import asdict, is_dataclass

    d = asdict(cfg) if is_dataclass(cfg) else dict(vars(cfg))
    return json.loads(json.dumps(d, default=str))


def _dlg_batches(run: DLGRun, stream: SampleStream) -> Iterator[Batch]:
    starts, labels, chains = [], [], []
    for r, (x, sigma_start, lab, chain) in enumerate(run):
        starts.append(sigma_start.cpu())
        chains.append(chain.cpu())
        if lab is not None:
            labels.append(lab.cpu())
        yield Batch(r, x.detach().float().cpu(), None if lab is None else lab.cpu(), sigma_start.cpu())
    res = run.result(torch.empty(0), torch.cat(starts), torch.cat(chains))
    stream.nfe = res.nfe_per_sample
    stream.dlg_info = res.info
    info = res.info
    stream.extra = {
        "sigma_start": res.sigma_start.float().numpy(),
        "chain": torch.cat(chains).numpy().astype(np.int64),
        "classifier_evals": np.float64(res.classifier_evals_per_sample),
        "classifier_denoiser_equivalent_nfe": np.float64(info["classifier_denoiser_equivalent_nfe"]),
        "nfe_split": np.array(
            [info["amortised_startup_nfe"], info["gibbs_nfe_per_output"], info["finisher_nfe_per_output"]],
            dtype=np.float64,
        ),  # start-up (amortised), Gibbs, finisher NFE per sample
        "distinct_fraction": np.float64(info["distinct_fraction"]),
        "ess": np.float64(info["ess"]),
        "lag1_autocorrelation": np.float64(info["lag1_autocorrelation"]),
    }
    if labels:  # each DLG output carries its chain's label
        stream.extra["labels"] = torch.cat(labels).numpy().astype(np.int64)


def write_npz(
    stream: SampleStream,
    path,
    num: int,
    shape: tuple[int, ...],
    *,
    to_user=None,
    keep: int = 0,
    provenance: dict | None = None,
) -> Tensor:
    """Stream every batch (mapped by `to_user`) into `path` as `samples` plus `stream.arrays()`, atomically; returns
    the first `keep` rows (for a preview). With a `provenance` record (`provenance.provenance(...)`), the file also
    holds it, completed by `SampleStream.provenance` (settings, NFE, wall time, NFE plan). Only rank 0 writes."""
    t0 = time.perf_counter()
    writer = NpzStreamWriter(path, "samples", (int(num), *shape)) if rank_world()[0] == 0 else None
    kept: list[Tensor] = []
    try:
        for batch in stream:
            x = to_user(batch.x) if to_user is not None else batch.x
            if writer is not None:
                writer.append(x.numpy())
            have = sum(len(k) for k in kept)
            if have < keep:
                kept.append(x[: keep - have])
        if writer is not None:
            arrays = stream.arrays()
            if provenance is not None:
                arrays["provenance"] = npz_entry(stream.provenance(provenance, time.perf_counter() - t0))
            writer.close(**arrays)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return torch.cat(kept) if kept else torch.empty((0, *shape))


def save_samples_npz(path, samples: Tensor, nfe: float, *, labels=None, provenance: dict | None = None, **extra):
    """Write samples already in memory (user range) as an `OUT.npz` like `scorekit sample`'s: `samples`, `nfe`,
    optional `labels`, small `extra` arrays and a `provenance` record (its `nfe` filled in). Atomic."""
    x = torch.as_tensor(samples).detach().float().cpu().numpy()
    writer = NpzStreamWriter(path, "samples", x.shape)
    try:
        writer.append(x)
        arrays = {"nfe": np.float64(nfe), **{k: np.asarray(v) for k, v in extra.items()}}
        if labels is not None:
            arrays["labels"] = torch.as_tensor(labels).cpu().numpy().astype(np.int64)
        if provenance is not None:
            arrays["provenance"] = npz_entry({**provenance, "nfe": float(nfe)})
        writer.close(**arrays)
    except BaseException:
        writer.abort()
        raise
    return Path(path)


@torch.no_grad()
def generate(
    denoiser,
    sampler: str,
    steps: int,
    num: int,
    *,
    process: Process | None = None,
    schedule=None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    batch_size: int | None = None,
    seed: int = 0,
    device="cpu",
    class_labels: Tensor | None = None,
    sampler_options: dict | None = None,
    data_shape: tuple[int, ...] | None = None,
    batches: list[int] | None = None,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
) -> GenerateResult:
    """`sample_stream` collected in memory: [num, *shape] samples (those of `batches` only, if given)."""
    if not isinstance(schedule, Schedule):
        schedule = Schedule.parse(schedule, rho=rho, sigma_min=sigma_min, sigma_max=sigma_max)
    stream = sample_stream(
        denoiser,
        sampler,
        steps,
        num,
        schedule=schedule,
        process=process,
        batch_size=batch_size,
        seed=seed,
        device=device,
        class_labels=class_labels,
        sampler_options=sampler_options,
        data_shape=data_shape,
        batches=batches,
        progress=progress,
        dtype=dtype,
    )
    samples = torch.cat([b.x for b in stream])
    return GenerateResult(samples, stream.nfe, None if class_labels is None else class_labels.cpu())


def _device_generator(seed: int, b: int, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(b) * 7_919 + 54_321) % (2**63 - 1))
    return g


class NpzStreamWriter:
    """Write an .npz whose big array is appended batch by batch (memory flat in its length).

    The array `name` of known final shape is streamed into its zip member; small arrays are added at close.
    The file appears atomically (temp file + rename) only when every row was written.
    """

    def __init__(self, path, name: str, shape: tuple[int, ...], dtype=np.float32):
        self.path = Path(path)
        if self.path.suffix != ".npz":
            raise ValueError(f"output must end in .npz, got {self.path}")
        self._made_dirs = []  # folders this writer creates, removed again if it is aborted
        d = self.path.parent
        while not d.exists() and d != d.parent:
            self._made_dirs.append(d)
            d = d.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".npz", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.shape, self.dtype, self.rows = tuple(shape), np.dtype(dtype), 0
        self.zf = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.member = self.zf.open(f"{name}.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self.member, header)

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.rows + len(rows) > self.shape[0]:
            raise ValueError(f"rows of shape {rows.shape} do not fit an array of shape {self.shape}")
        self.member.write(rows.tobytes())
        self.rows += len(rows)

    def close(self, **small_arrays) -> None:
        self.member.close()
        if self.rows != self.shape[0]:
            self.abort()
            raise ValueError(f"only {self.rows} of {self.shape[0]} rows were written")
        for k, v in small_arrays.items():
            with self.zf.open(f"{k}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(v), allow_pickle=False)
        self.zf.close()
        set_output_mode(self.tmp)  # mkstemp makes 0600; every output gets 0666 & ~umask
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Discard the partial file (the destination, if it existed, is left untouched)."""
        for closer in (self.member.close, self.zf.close):
            try:
                closer()
            except (OSError, ValueError):
                pass
        self.tmp.unlink(missing_ok=True)
        for d in self._made_dirs:  # deepest first; only if still empty
            try:
                d.rmdir()
            except OSError:
                break
