"""`scorekit ema`: post-hoc EMA of any width from a run's EMA snapshots (Karras et al. 2024, Sec. 3.2)."""

from __future__ import annotations

from pathlib import Path

NAME = "ema"
HELP = "reconstruct an EMA of another width (sigma_rel) after training, from the run's EMA snapshots"


def add_arguments(p):
    p.add_argument("--run", required=True, help="run directory with ema_snapshots/")
    p.add_argument("--sigma-rel", type=float, required=True, help="relative EMA width, e.g. 0.05–0.2")
    p.add_argument("--step", type=int, default=None, help="reconstruct the EMA as of this step (default: last)")
    p.add_argument("--out", default=None, help="output file (default: RUN/ema_sigma_rel_X.safetensors)")
    p.add_argument(
        "--replace-ema",
        action="store_true",
        help="also replace RUN/ema.safetensors with the reconstruction (what `sample --run` uses)",
    )


def run(args) -> int:
    from ..checkpoint import load_state_dict_strict, load_tensors, read_config, save_tensors
    from ..ema import list_snapshots, posthoc_coefficients, reconstruct_ema, sigma_rel_to_gamma
    from ..models.registry import build_network
    from ..provenance import provenance

    run_dir = Path(args.run)
    cfg = read_config(run_dir)
    sigma_rel_to_gamma(args.sigma_rel)  # range check before any loading
    snaps = list_snapshots(run_dir / "ema_snapshots")
    state = reconstruct_ema(snaps, args.sigma_rel, args.step)
    if "network" in cfg:  # refuse a reconstruction the run's network cannot load
        load_state_dict_strict(build_network(cfg["network"]), state, run_dir / "ema_snapshots")
    step = args.step if args.step is not None else max(s.step for s in snaps)
    coef = posthoc_coefficients([s.step for s in snaps], [s.sigma_rel for s in snaps], args.sigma_rel, step)
    out = Path(args.out) if args.out else run_dir / f"ema_sigma_rel_{args.sigma_rel:g}.safetensors"
    meta = {
        "step": str(step),
        "sigma_rel": repr(float(args.sigma_rel)),
        "posthoc_from": str(sum(1 for c in coef if c != 0.0)),
        "provenance": provenance(run=run_dir, sigma_rel=args.sigma_rel, step=step),
    }
    save_tensors(out, state, meta)
    written = [out]
    if args.replace_ema:
        save_tensors(run_dir / "ema.safetensors", state, meta)
        load_tensors(run_dir / "ema.safetensors")  # verify what was written
        written.append(run_dir / "ema.safetensors")
    used = sum(1 for c in coef if c != 0.0)
    print(
        f"EMA sigma_rel={args.sigma_rel:g} at step {step} from {used} snapshots -> "
        + " and ".join(str(p) for p in written)
    )
    return 0
