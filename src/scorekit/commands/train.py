"""`scorekit train`: train a score model on a data set into a run directory."""

from __future__ import annotations

import json
from pathlib import Path

from . import add_ema_arguments

NAME = "train"
HELP = "train a score model (denoising score matching / DDPM ε-loss / EDM) on DATA into a run directory"


def add_arguments(p):
    p.add_argument(
        "--data",
        default=None,
        help="(required unless --resume) digits | moons | swissroll | rings | checkerboard | gmm:SPEC.json | PATH",
    )
    p.add_argument("--process", default=None, choices=["ve", "vp", "subvp", "ddpm", "edm"], help="default: vp")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 2000; 8000 for vector data)")
    p.add_argument("--batch-size", type=int, default=None, help="per-process batch size (default 128)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 2e-4; 1e-3 for vector data)")
    p.add_argument(
        "--lr-decay",
        type=float,
        default=None,
        metavar="F",
        help="decay the learning rate linearly to zero over the last fraction F of the steps (default 0: constant)",
    )
    p.add_argument(
        "--objective",
        default=None,
        help="dsm | dsm_likelihood | dsm_single | ncsn | ism | ssm | ddpm_simple | ddpm_vlb | ddpm_hybrid | edm "
        "(default depends on the process)",
    )
    p.add_argument(
        "--objective-opt", action="append", default=[], metavar="KEY=VALUE", help="objective option, repeatable"
    )
    p.add_argument("--out", default="runs/run", help="run directory (default runs/run)")
    p.add_argument("--config", default=None, help="JSON config file (full, or a partial one merged onto the defaults)")
    p.add_argument(
        "--preset",
        choices=["cpu", "gpu"],
        default=None,
        help="image presets: cpu (a 28x28 U-Net for a budget of 60 CPU-minutes at 1 thread: unless --steps is given, "
        "a short pilot times a step in bf16 and float32 on this machine and picks the precision and the steps) or "
        "gpu (one modern GPU)",
    )
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default 500)")
    p.add_argument("--sample-every", type=int, default=None, help="steps between sample grids (0 = never)")
    add_ema_arguments(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (--steps may extend it; --data, --process, --lr, "
        "--batch-size, ... must match the run)",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--class-conditional", action="store_true", help="condition the network on labels")
    p.add_argument("--p-uncond", type=float, default=None, help="label dropout for classifier-free guidance")
    p.add_argument(
        "--amp",
        default=None,
        choices=["auto", "none", "bf16", "fp16"],
        help="forward-pass precision (default auto: bf16 on CUDA, float32 on a CPU; bf16 also runs on a CPU; fp16 is "
        "CUDA-only)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the network (opt-in)")
    p.add_argument("--nan-policy", default=None, choices=["stop", "skip"])
    p.add_argument(
        "--log",
        default="jsonl",
        choices=["jsonl", "tensorboard"],
        help="jsonl: RUN/log.jsonl only (default); tensorboard: also TensorBoard scalars in RUN/tensorboard "
        "(needs the tensorboard package)",
    )
    p.add_argument("--no-progress", action="store_true")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _user_config(args) -> dict:
    """The --config file's object ({} without one)."""
    if not args.config:
        return {}
    p = Path(args.config)
    if not p.is_file():
        raise ValueError(f"config file not found: {p}")
    try:
        user = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"config file {p} is not valid JSON: {e}") from None
    if not isinstance(user, dict):
        raise ValueError(f"config file {p} must hold a JSON object")
    return user


def build_config(args) -> dict:
    from ..training import DEFAULT_DENOISER, default_config

    user = _user_config(args)
    process = args.process or (user.get("process", {}) or {}).get("name") or "vp"
    if process not in DEFAULT_DENOISER:
        raise ValueError(f"unknown process {process!r}")
    device = getattr(args, "device", None) or "cpu"
    cfg = default_config(args.data, process, class_conditional=args.class_conditional, device=str(device))
    if args.preset:  # sizes for the device class; --config and the flags below still override it
        from ..presets import apply_preset, preset_config

        preset = preset_config(args.preset, args.data, args.class_conditional, cfg["denoiser"]["conditioning"])
        cfg = apply_preset(cfg, preset)
    if user:
        user = dict(user)
        user.pop("data", None)  # the data section always describes --data
        if "objective" in user and user["objective"] != cfg["objective"] and "objective_options" not in user:
            cfg["objective_options"] = {}  # the default objective's options do not apply to another one
        cfg = _merge(cfg, user)
    tr = cfg["training"]
    for flag, key in [
        ("steps", "steps"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("lr_decay", "lr_decay"),
        ("checkpoint_every", "checkpoint_every"),
        ("sample_every", "sample_every"),
        ("seed", "seed"),
        ("p_uncond", "p_uncond"),
        ("amp", "amp"),
        ("nan_policy", "nan_policy"),
        ("ema_sigma_rel", "ema_sigma_rel"),
        ("ema_snapshot_every", "ema_snapshot_every"),
    ]:
        v = getattr(args, flag)
        if v is not None:
            tr[key] = v
    if args.compile:
        tr["compile"] = True
    if args.objective:
        if args.objective != cfg["objective"]:
            cfg["objective_options"] = {}
        cfg["objective"] = args.objective
    if args.objective_opt:
        from ..sampling import parse_sampler_options

        cfg.setdefault("objective_options", {}).update(parse_sampler_options(args.objective_opt))
    if (
        cfg["objective"] == "ddpm_hybrid"
        and cfg["network"].get("arch") == "unet"
        and not cfg["network"].get("out_channels")
    ):
        # learned reverse variances (Improved DDPM): the network outputs 2C channels, D uses the first C
        c = int(cfg["network"]["in_channels"])
        cfg["network"]["out_channels"] = 2 * c
        cfg["denoiser"]["output_channels"] = c
    return cfg


def run(args) -> int:
    from ..distributed import init_distributed, resolve_device
    from ..training import train, validate_config

    if not args.resume and not args.data:
        raise ValueError("--data is required (unless --resume continues an existing run)")
    device = resolve_device(args.device)
    init_distributed(device)
    if args.resume:
        from ..checkpoint import read_config

        cfg = read_config(args.out)
        resume_overrides(cfg, args)
        settings = None
    else:
        cfg = build_config(args)
        settings = plan_cpu_preset(cfg, args, device)
    cfg = validate_config(cfg)
    log_fn, writer = None, None
    if getattr(args, "log", "jsonl") == "tensorboard":
        log_fn, writer = tensorboard_logger(Path(args.out) / "tensorboard")
    try:
        res = train(
            cfg,
            args.out,
            resume=args.resume,
            device=device,
            progress=not args.no_progress,
            log_fn=log_fn,
            provenance_settings=settings,
        )
    finally:
        if writer is not None:
            writer.close()
    from ..distributed import is_main_process

    if is_main_process():
        print(
            f"trained {res.step} steps ({res.steps_per_second:.1f} steps/s), final loss {res.last_loss:.4f}; "
            f"run saved in {res.run_dir}"
        )
    return 130 if res.stopped_early else 0


def plan_cpu_preset(cfg: dict, args, device) -> dict | None:
    """For `--preset cpu` on a CPU, unless --steps (or the --config file) fixes the steps: time a pilot of the
    configured run in each candidate precision on this machine (`pilot.time_training_step`), keep the faster and
    the steps it fits in the budget (`presets.cpu_plan`), say so on stderr, and return the record for the run's
    provenance. None (the preset's table stays) otherwise, and under torchrun, where ranks must agree."""
    import sys

    import torch

    if args.preset != "cpu" or torch.device(device).type != "cpu":
        return None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return None
    user_tr = _user_config(args).get("training") or {}
    if args.steps is not None or "steps" in user_tr:
        return None
    from ..pilot import time_training_step
    from ..presets import CPU_BUDGET_S, CPU_MARGIN, cpu_pilot_precisions, cpu_plan

    tr = cfg["training"]
    fixed_amp = args.amp is not None or "amp" in user_tr
    amps = (tr["amp"],) if fixed_amp else cpu_pilot_precisions()
    pilot_steps = 16
    seconds = {a: time_training_step({**cfg, "training": {**tr, "amp": a}}, device, steps=pilot_steps) for a in amps}
    amp, steps = cpu_plan(seconds)
    tr["amp"], tr["steps"] = amp, steps
    names = {"bf16": "bf16", "none": "float32"}
    costs = ", ".join(f"{seconds[a]:.3f} CPU-s in {names.get(a, a)}" for a in amps)
    sys.stderr.write(
        f"cpu preset: a training step costs {costs} on this machine (pilot of {pilot_steps} steps) → "
        f"{names.get(amp, amp)}, {steps:,} steps for the {CPU_BUDGET_S // 60} CPU-minute budget "
        "(give --steps N or --amp to choose yourself)\n"
    )
    return {
        "preset": {
            "name": "cpu",
            "budget_cpu_s": CPU_BUDGET_S,
            "margin": CPU_MARGIN,
            "pilot_steps": pilot_steps,
            "pilot_cpu_s_per_step": {a: round(v, 4) for a, v in seconds.items()},
            "amp": amp,
            "steps": steps,
        }
    }


# Flags that must agree with the run being resumed: (flag, attribute, the run's value).
_RESUME_FIXED = [
    ("--data", "data", lambda c: c["data"].get("spec")),
    ("--process", "process", lambda c: c["process"].get("name")),
    ("--lr", "lr", lambda c: c["training"].get("lr")),
    ("--lr-decay", "lr_decay", lambda c: c["training"].get("lr_decay", 0.0)),
    ("--objective", "objective", lambda c: c.get("objective")),
    ("--seed", "seed", lambda c: c["training"].get("seed")),
    ("--p-uncond", "p_uncond", lambda c: c["training"].get("p_uncond")),
    ("--ema-sigma-rel", "ema_sigma_rel", lambda c: c["training"].get("ema_sigma_rel")),
]


def resume_overrides(cfg: dict, args) -> None:
    """Apply the flags a resumed run may change (--steps extends it; --batch-size is checked against the run's
    global batch by the loop; --checkpoint-every, --sample-every, --ema-snapshot-every, --amp, --nan-policy are
    operational) and refuse, in one line naming the flag and both values, any that contradicts the run."""
    for flag, attr, current in _RESUME_FIXED:
        v = getattr(args, attr, None)
        if v is None or v == current(cfg):
            continue
        if isinstance(v, float) and isinstance(current(cfg), (int, float)) and abs(v - current(cfg)) <= 1e-12 * abs(v):
            continue
        raise ValueError(
            f"{flag} {v} conflicts with the run being resumed ({args.out} was trained with {current(cfg)}); "
            f"drop {flag} to resume it, or train a new run with another --out"
        )
    if args.class_conditional and not cfg.get("denoiser", {}).get("class_conditional"):
        raise ValueError(f"--class-conditional conflicts with the run being resumed ({args.out} is unconditional)")
    tr = cfg["training"]
    for attr in ("steps", "batch_size", "checkpoint_every", "sample_every", "ema_snapshot_every", "amp", "nan_policy"):
        v = getattr(args, attr, None)
        if v is not None:
            tr[attr] = v
    if args.compile:
        tr["compile"] = True


def tensorboard_logger(log_dir: Path):
    """(log_fn, writer): every numeric field of each log.jsonl record as a TensorBoard scalar train/<field>."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("--log tensorboard needs the tensorboard package (pip install tensorboard)") from None
    from ..distributed import is_main_process

    if not is_main_process():
        return None, None
    writer = SummaryWriter(log_dir=str(log_dir))

    def log_fn(rec: dict) -> None:
        for k, v in rec.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                writer.add_scalar(f"train/{k}", v, rec["step"])

    return log_fn, writer
