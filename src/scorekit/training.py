"""The one training loop for every network scorekit trains: score models (`kind="score_model"`), the
noise-level classifier of Denoising MCMC (`"noise_classifier"`) and the noisy classifier for guidance
(`"classifier"`). Adam/AdamW with warm-up, gradient clipping, EMA, AMP on CUDA, checkpoints, resume, NaN policy,
logging; the kind only decides what is trained (`build_trainable`) and with which objective (`make_objective`).

Determinism: all randomness comes from one `torch.Generator` (data order, σ and noise draws) plus the global
torch RNG (dropout); both states are saved in every checkpoint, so stopping and resuming gives bit-identical
weights to an uninterrupted run on CPU.

Distributed (torchrun): every rank draws the *global* batch's indices from the shared generator and takes its
slice, EMA and checkpoints are written by rank 0 only; gradients are averaged by DDP.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt
from .classifier_losses import NoiseLevelObjective, NoisyClassifierObjective
from .data import Dataset, DataTransform, load_data
from .ema import DEFAULT_SIGMA_REL, EMA, SNAPSHOT_SIGMA_RELS
from .guidance import TrainedClassifier
from .losses import Objective, get_objective
from .models.parameterization import denoiser_from_config
from .models.registry import build_network
from .plots import save_image_grid, save_scatter
from .processes import get_process
from .run_config import (
    DEFAULT_DENOISER,
    DEFAULT_PROCESS_SETTINGS,
    DEFAULT_TRAINING,
    KINDS,
    default_config,
    default_network,
    ema_snapshot_interval,
    training_defaults,
    validate_config,
)
from .sampling import generate

__all__ = [
    "TrainingError",
    "TrainResult",
    "default_config",
    "validate_config",
    "train",
    "build_denoiser_from_config",
    "build_trainable",
    "make_objective",
    "training_defaults",
    "DEFAULT_TRAINING",
    "DEFAULT_DENOISER",
    "DEFAULT_PROCESS_SETTINGS",
    "default_network",
    "KINDS",
    "BatchOrder",
]


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must see (non-finite loss, mismatched resume, …)."""


build_denoiser_from_config = denoiser_from_config  # the name benchmarks use


def build_trainable(cfg: dict, net: nn.Module | None = None) -> nn.Module:
    """What the objective is handed: D(x, σ) for a score model, the network itself for the noise-level classifier,
    a `TrainedClassifier` (σ-space inputs) for the noisy classifier. `.net` (or the module itself) is trained."""
    kind = cfg.get("kind", "score_model")
    net = build_network(cfg["network"]) if net is None else net
    if kind == "score_model":
        return denoiser_from_config(cfg, net)
    if kind == "noise_classifier":
        return net
    c = cfg["classifier"]
    return TrainedClassifier(net, cfg["process"], int(c["num_classes"]), c.get("conditioning", "t"), c["input"])


def make_objective(cfg: dict) -> Objective:
    """The objective named in config["objective"] for the run's kind and process."""
    name, options = cfg["objective"], cfg.get("objective_options", {})
    process = get_process(cfg["process"])
    if name == "noise_level":
        return NoiseLevelObjective(cfg["levels"]["values"], **options)
    if name == "noisy_classifier":
        return NoisyClassifierObjective(process, **options)
    return get_objective(name, process, **options)


def _network_of(cfg: dict, trainable: nn.Module) -> nn.Module:
    return trainable if cfg.get("kind") == "noise_classifier" else trainable.net


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_loss: float
    steps_per_second: float
    stopped_early: bool = False


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _rank_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """Stateless per-(step, rank) generator for objectives that draw their own randomness under DDP."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + rank * 104_729 + 1) % (2**63 - 1))


def _lr_at(step: int, tr: dict) -> float:
    """lr of step `step` (0-based): warm-up, constant, then linear to zero over the last lr_decay of the steps."""
    w = tr["warmup"]
    lr = tr["lr"] * min(1.0, (step + 1) / w) if w > 0 else tr["lr"]
    tail = tr.get("lr_decay", 0.0) * tr["steps"]
    return lr * min(1.0, max(0.0, tr["steps"] - step) / tail) if tail > 0 else lr


def _ema_decay(step: int, tr: dict) -> float:
    """Fixed-decay EMA (configs with a number in training.ema_decay), optionally warmed up."""
    d = tr["ema_decay"]
    return min(d, (1.0 + step) / (10.0 + step)) if tr["ema_warmup"] else d


def _optimizer(params, tr: dict) -> torch.optim.Optimizer:
    cls = torch.optim.Adam if tr["optimizer"] == "adam" else torch.optim.AdamW
    # foreach: one fused update over all tensors (the default on CUDA; on a CPU it saves ~5 ms a step on small nets)
    return cls(params, lr=tr["lr"], betas=tuple(tr["betas"]), weight_decay=tr["weight_decay"], foreach=True)


@torch.no_grad()
def _clip_norm(tr: dict) -> float:
    """The gradient-norm clip of training.grad_clip (0: no clipping, the norm is still measured)."""
    return tr["grad_clip"] if tr["grad_clip"] > 0 else 1e30


def _backward(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler) -> None:
    """Fresh gradients of `loss` (through the fp16 scaler, then unscaled, when there is one)."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    else:
        loss.backward()


def _optimizer_step(opt: torch.optim.Optimizer, scaler) -> None:
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


class RunEMA:
    """The loop's EMA. Default: power-function EMA of relative width training.ema_sigma_rel (ema.py; suits any run
    length, nothing of the initialisation survives). Configs with a number in training.ema_decay keep the fixed
    decay. When snapshots are on, power EMAs of σ_rel `SNAPSHOT_SIGMA_RELS` are tracked as well and written to
    RUN/ema_snapshots/ every `ema_snapshot_interval(tr)` steps and at the last step, for `scorekit ema`."""

    def __init__(self, model: nn.Module, tr: dict):
        self.tr = tr
        self.fixed = tr.get("ema_decay") is not None
        self.sigma_rel = float(tr.get("ema_sigma_rel", DEFAULT_SIGMA_REL))
        self.snapshot_every = ema_snapshot_interval(tr)
        rels = [] if self.fixed else [self.sigma_rel]
        if self.snapshot_every:
            rels += list(SNAPSHOT_SIGMA_RELS)
        self.power = EMA(model, rels) if rels else None
        self.fixed_net = copy.deepcopy(model).eval().requires_grad_(False) if self.fixed else None

    @property
    def net(self) -> nn.Module:
        """The EMA network the run publishes (ema.safetensors, sample grids)."""
        return self.fixed_net if self.fixed else self.power.module(self.sigma_rel)

    def update(self, model: nn.Module, step: int) -> None:
        """After optimizer step `step` (1-based count of steps done)."""
        if self.fixed:
            _ema_update(self.fixed_net, model, _ema_decay(step - 1, self.tr))
        if self.power is not None:
            self.power.update(model, step)

    def metadata(self) -> dict:
        return {"ema_decay": repr(float(self.tr["ema_decay"]))} if self.fixed else {"sigma_rel": repr(self.sigma_rel)}

    def state(self) -> dict[str, torch.Tensor]:
        return {} if self.power is None else {f"pema.{k}": v for k, v in self.power.state_dict().items()}

    def load(self, ema_tensors: dict, state: dict, source: Path) -> bool:
        """Restore from a checkpoint; False when it lacks the power-EMA state (a run from before it: snapshots are
        then turned off for this run and the fixed EMA continues)."""
        if self.fixed:
            ckpt.load_state_dict_strict(self.fixed_net, ema_tensors, source / "ema.safetensors")
        if self.power is None:
            return True
        ps = {k[len("pema.") :]: v for k, v in state.items() if k.startswith("pema.")}
        if not ps:
            if not self.fixed:
                raise ckpt.CheckpointError(f"{source / 'state.safetensors'}: no power-EMA state to resume from")
            self.power, self.snapshot_every = None, 0
            return False
        try:
            self.power.load_state_dict(ps)
        except (ValueError, RuntimeError) as e:
            raise ckpt.CheckpointError(f"{source / 'state.safetensors'}: {' '.join(str(e).split())}") from None
        return True

    def maybe_snapshot(self, out_dir: Path, step: int, total: int) -> None:
        if self.power is None or not self.snapshot_every:
            return
        if step % self.snapshot_every == 0 or step == total:
            self.power.save_snapshots(out_dir / "ema_snapshots", SNAPSHOT_SIGMA_RELS)


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (checkpoint, then exit)."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        if os.environ.get("SCOREKIT_NO_SIGNALS") == "1":
            return self
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


class BatchOrder:
    """The one shuffling style: epochs are permutations drawn from the loop's generator, concatenated and cut into
    global batches (a batch may straddle two epochs; no sample is dropped). State: (perm, pos) + the generator."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.gen = n, generator
        self.perm = torch.randperm(n, generator=generator)
        self.pos = 0

    def take(self, k: int) -> torch.Tensor:
        out = []
        while k > 0:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.gen)
                self.pos = 0
            m = min(k, self.n - self.pos)
            out.append(self.perm[self.pos : self.pos + m])
            self.pos += m
            k -= m
        return torch.cat(out)


def _precision(device: torch.device, amp: str) -> str:
    """The forward pass's precision that `training.amp` gives on `device`: ``auto`` is bf16 on CUDA and float32
    elsewhere; ``bf16`` also runs on a CPU (oneDNN's bf16 kernels; a gain only where the CPU computes bf16 in
    hardware, see `presets.cpu_computes_bf16`); ``fp16`` is CUDA-only. Returns "bf16", "fp16" or "none"."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    if amp == "bf16" and device.type in ("cuda", "cpu"):
        return "bf16"
    return "fp16" if amp == "fp16" and device.type == "cuda" else "none"


def _autocast(device: torch.device, amp: str):
    """The autocast context for `_precision(device, amp)` and, for fp16, a gradient scaler."""
    precision = _precision(device, amp)
    if precision == "none":
        return torch.autocast(device_type=device.type, enabled=False), None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    return torch.autocast(device_type=device.type, dtype=dtype), scaler


def _same_model(a: dict, b: dict) -> str | None:
    for key in ("data", "process", "network", "denoiser", "objective", "levels", "classifier"):
        if json.dumps(a.get(key), sort_keys=True) != json.dumps(b.get(key), sort_keys=True):
            return key
    return None


def train(
    config: dict,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    data: Dataset | None = None,
    max_steps_this_run: int | None = None,
    log_fn=None,
    provenance_settings: dict | None = None,
) -> TrainResult:
    """Train the network described by `config` (any kind) into run directory `out_dir` (see checkpoint.py).

    `max_steps_this_run` stops after that many steps (a checkpoint is written), for tests of resume.
    `provenance_settings` go into the `settings` of config.json's provenance (how the config was chosen, e.g. a
    preset's pilot); a resumed run keeps the settings its config already records.
    """
    cfg = validate_config(config)
    tr = cfg["training"]
    device = torch.device(device)
    out_dir = Path(out_dir)
    rank, world = _dist_info()

    if data is None:
        data = load_data(cfg["data"]["spec"])
    if list(data.shape) != list(cfg["data"]["shape"]):
        raise ValueError(f"data shape {tuple(data.shape)} does not match the config's {tuple(cfg['data']['shape'])}")
    if "transform" in cfg["data"]:
        DataTransform.from_config(cfg["data"]["transform"])  # validates

    existing = (out_dir / "config.json").exists()
    if resume:
        if not existing:
            raise ValueError(f"--resume: no run to resume in {out_dir}")
        old = ckpt.read_config(out_dir)
        diff = _same_model(old, cfg)
        if diff is not None:
            raise ValueError(f"--resume: {out_dir} was trained with a different {diff!r} section")
    elif existing and (out_dir / "model.safetensors").exists():
        raise ValueError(f"{out_dir} already holds a trained run; pass --resume to continue it or choose another --out")

    torch.manual_seed(tr["seed"] + 1000 * rank)
    gen = torch.Generator().manual_seed(tr["seed"])
    trainable = build_trainable(cfg).to(device)
    model = _network_of(cfg, trainable)
    ema = RunEMA(model, tr)
    objective = make_objective(cfg)
    opt = _optimizer(model.parameters(), tr)
    order = BatchOrder(len(data.data), gen)
    step = 0

    if resume:
        step, old_global = _load_state(out_dir, model, ema, opt, gen, order)
        if old_global is not None and old_global != tr["batch_size"] * world:
            raise ValueError(
                f"--batch-size {tr['batch_size']} (× {world} process(es) = global batch {tr['batch_size'] * world}) "
                f"conflicts with the run being resumed ({out_dir} was trained with global batch {old_global})"
            )
        if tr["steps"] < step:
            raise ValueError(
                f"--steps {tr['steps']} conflicts with the run being resumed ({out_dir} is already at step {step}); "
                "--steps may only extend a run"
            )
        if rank == 0:
            ckpt.truncate_log(out_dir / "log.jsonl", step)
            ckpt.drop_snapshots_after(out_dir, step)
            sys.stderr.write(f"resuming from step {step} of {tr['steps']} in {out_dir}\n")

    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if tr["compile"]:
        train_model = torch.compile(train_model)
    trainable_train = trainable if train_model is model else build_trainable(cfg, net=train_model)

    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        if provenance_settings is None and resume:
            provenance_settings = (old.get("provenance") or {}).get("settings")
        ckpt.write_config(out_dir, cfg, provenance_settings)
    autocast, scaler = _autocast(device, tr["amp"])
    if rank == 0 and tr["amp"] in ("bf16", "fp16") and _precision(device, tr["amp"]) == "none":
        sys.stderr.write(f"training.amp={tr['amp']} runs on CUDA only; this run on {device.type} computes in float32\n")

    x_all = data.data
    y_all = data.labels
    cond = bool(cfg.get("denoiser", {}).get("class_conditional"))
    if cond and y_all is None:
        raise ValueError("class-conditional training needs labelled data")
    needs_labels = cond or getattr(objective, "needs_labels", False)
    if needs_labels and y_all is None:
        raise ValueError(f"objective {objective.name!r} needs labelled data")
    num_classes = int(cfg["data"].get("num_classes", 0))
    global_bs = tr["batch_size"] * world
    total = tr["steps"]
    stop_at = total if max_steps_this_run is None else min(total, step + max_steps_this_run)

    bar = None
    if progress and rank == 0 and step < stop_at:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr,
                   disable=None)  # fmt: skip
    log_path = out_dir / "log.jsonl"
    t_start, steps_done, last_loss, skipped = time.perf_counter(), 0, float("nan"), 0
    stopped = False
    with _StopFlag() as stop:
        while step < stop_at:
            sl = slice(rank * tr["batch_size"], (rank + 1) * tr["batch_size"])
            idx = order.take(global_bs)[sl]
            x0 = x_all[idx].to(device, non_blocking=True)
            labels = None
            if needs_labels:
                labels = y_all[idx].to(device)
                if cond and tr["p_uncond"] > 0:
                    drop = (torch.rand(global_bs, generator=gen) < tr["p_uncond"])[sl]
                    labels = torch.where(drop.to(device), torch.full_like(labels, num_classes), labels)
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, tr)
            trainable_train.train()
            # Random inputs for the whole global batch, sliced per rank: results do not depend on world size.
            rand = objective.draw(global_bs, tuple(x0.shape[1:]), gen, device, x0.dtype)
            with autocast:
                if rand is not None:
                    loss_per = objective(trainable_train, x0, gen, labels, **{k: v[sl] for k, v in rand.items()})
                else:
                    g_obj = gen if world == 1 else _rank_generator(tr["seed"], step, rank)
                    loss_per = objective(trainable_train, x0, g_obj, labels)
            loss = loss_per.float().mean()
            if not torch.isfinite(loss):
                if tr["nan_policy"] == "skip":
                    skipped += 1
                    opt.zero_grad(set_to_none=True)
                    step += 1
                    continue
                raise TrainingError(
                    f"non-finite loss at step {step}; the last good checkpoint in {out_dir} is kept "
                    "(lower the learning rate, or set training.nan_policy=skip)"
                )
            _backward(loss, opt, scaler)
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), _clip_norm(tr))
            if not torch.isfinite(gnorm):
                if tr["nan_policy"] == "skip":
                    skipped += 1
                    opt.zero_grad(set_to_none=True)
                    step += 1
                    continue
                raise TrainingError(
                    f"non-finite gradient at step {step}; the last good checkpoint in {out_dir} is kept "
                    "(lower the learning rate, or set training.nan_policy=skip)"
                )
            _optimizer_step(opt, scaler)
            if rank == 0:
                ema.update(model, step + 1)
            step += 1
            steps_done += 1
            last_loss = float(loss.detach())
            if steps_done == _ESTIMATE_FROM:
                t_est = time.perf_counter()
            elif steps_done == _ESTIMATE_FROM + _ESTIMATE_STEPS and rank == 0:
                _print_estimate(
                    (time.perf_counter() - t_est) / _ESTIMATE_STEPS, stop_at - step, stop_at, device, tr["amp"]
                )
            if bar is not None:
                bar.update(1)
                if step % 10 == 0 or step == stop_at:
                    bar.set_postfix(loss=f"{last_loss:.4f}")
            if rank == 0 and tr["log_every"] and (step % tr["log_every"] == 0 or step == stop_at):
                rec = {
                    "step": step,
                    "loss": last_loss,
                    "grad_norm": float(gnorm),
                    "lr": _lr_at(step - 1, tr),
                    "steps_per_s": steps_done / max(time.perf_counter() - t_start, 1e-9),
                    "skipped": skipped,
                    **(objective.log_fields() if hasattr(objective, "log_fields") else {}),
                }
                with open(log_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                if log_fn is not None:
                    log_fn(rec)
            if rank == 0 and tr["sample_every"] and step % tr["sample_every"] == 0 and "denoiser" in cfg:
                _sample_grid(cfg, ema.net, out_dir / "samples" / f"step_{step:08d}.png", tr, device)
            if rank == 0:
                ema.maybe_snapshot(out_dir, step, total)
            want_ckpt = tr["checkpoint_every"] and step % tr["checkpoint_every"] == 0
            if want_ckpt or step == stop_at or stop.signum is not None:
                if rank == 0:
                    _save_state(out_dir, step, model, ema, opt, gen, order, tr["keep_checkpoints"], global_bs)
                if world > 1:
                    torch.distributed.barrier()
            if stop.signum is not None:
                stopped = True
                break
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t_start
    if stopped:
        sys.stderr.write(f"stopped by signal {stop.signum} at step {step}; checkpoint saved in {out_dir}\n")
    return TrainResult(out_dir, step, last_loss, steps_done / max(elapsed, 1e-9), stopped)


_ESTIMATE_FROM, _ESTIMATE_STEPS = 2, 8  # skip the first steps (allocation, warm caches), then time 8
LONG_RUN_S = 60.0  # runs expected to take longer than this print their estimate


def _print_estimate(per_step: float, remaining: int, total: int, device: torch.device, amp: str = "none") -> None:
    """'≈ X min for N steps on this device', from a few timed steps, before a long run goes on."""
    est = per_step * remaining
    if est < LONG_RUN_S:
        return
    where = device.type if device.type != "cpu" else f"cpu, {torch.get_num_threads()} thread(s)"
    precision = _precision(device, amp)
    if precision != "none":
        where += f", {precision} autocast"
    sys.stderr.write(
        f"≈ {est / 60:.1f} min for {remaining} more of {total} steps on this device ({where}; "
        f"{1 / per_step:.1f} steps/s; sampling and checkpoints extra)\n"
    )


def _save_state(out_dir, step, model, ema, opt, gen, order, keep, global_batch):
    otensors, ometa = ckpt.optimizer_to_tensors(opt)
    state = {
        **otensors,
        "step": torch.tensor(step, dtype=torch.int64),
        "generator_state": gen.get_state(),
        "torch_rng_state": torch.get_rng_state(),
        "data_perm": order.perm.clone(),
        "data_pos": torch.tensor(order.pos, dtype=torch.int64),
        "global_batch": torch.tensor(global_batch, dtype=torch.int64),
        **ema.state(),
    }
    files = {
        "model": ({k: v for k, v in model.state_dict().items()}, {}),
        "ema": ({k: v.detach().clone() for k, v in ema.net.state_dict().items()}, ema.metadata()),
        "state": (state, ometa),
    }
    ckpt.save_checkpoint(out_dir, step, files, keep=keep)


def _load_state(out_dir, model, ema, opt, gen, order) -> tuple[int, int | None]:
    """Restore a checkpoint; returns (step, the global batch it was trained with, None for older checkpoints)."""
    last = ckpt.latest_checkpoint(out_dir)
    base = last if last is not None else Path(out_dir)
    mt, _ = ckpt.load_tensors(base / "model.safetensors")
    et, _ = ckpt.load_tensors(base / "ema.safetensors")
    st, smeta = ckpt.load_tensors(base / "state.safetensors")
    ckpt.load_state_dict_strict(model, mt, base / "model.safetensors")
    if not ema.load(et, st, base):
        sys.stderr.write(f"{base}: checkpoint from before the power EMA; EMA snapshots are off for this run\n")
    try:
        ckpt.optimizer_from_tensors(opt, st, smeta)
        gen.set_state(st["generator_state"])
        torch.set_rng_state(st["torch_rng_state"])
        order.perm = st["data_perm"].clone()
        order.pos = int(st["data_pos"])
        return int(st["step"]), (int(st["global_batch"]) if "global_batch" in st else None)
    except (KeyError, ValueError, RuntimeError) as e:
        raise ckpt.CheckpointError(f"{base / 'state.safetensors'}: unusable training state ({e})") from None


@torch.no_grad()
def _sample_grid(cfg, ema_net, path: Path, tr, device):
    """A grid of EMA samples (heun) during training, for images; a scatter plot for 2-D vectors. A class-conditional
    model shows its conditional branch, one class per column (labels 0..K−1 across each row)."""
    den = denoiser_from_config(cfg, net=ema_net)
    k = int(cfg["data"].get("num_classes") or 0) if cfg.get("denoiser", {}).get("class_conditional") else 0
    num, nrow = (k * max(1, 64 // k), k) if k else (64, 8)
    labels = torch.arange(num, device=device) % k if k else None
    res = generate(den, "heun", tr["sample_steps"], num, batch_size=num, seed=0, device=device, class_labels=labels)
    transform = DataTransform.from_config(cfg["data"]["transform"])
    x = transform.to_user(res.samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    if cfg["data"]["kind"] == "image":
        save_image_grid(path, x, nrow=nrow)
    elif x.shape[1] == 2:
        save_scatter(path, x)
