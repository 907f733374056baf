"""`scorekit tune-schedule`: a σ schedule tuned for one model, solver and NFE (samplers.tuning), written as JSON.

    scorekit tune-schedule (--run RUN | --model gmm:SPEC.json) --sampler S --nfe N --out SCHED.json
                           [--teachers K] [--seed S] [--start SCHEDULE] [--option key=value ...]

The file records the model (config or spec SHA-256), sampler, options, NFE, σ list, the start schedule, the teacher
setting and the seed. `scorekit sample --schedule SCHED.json` (or samplers.get_sigmas(path, N)) uses it; the budget
planner picks up RUN/schedules/*.json by itself.
"""

from __future__ import annotations

NAME = "tune-schedule"
HELP = "tune a σ schedule for a model, a sampler and an NFE budget (GITS-style search) → SCHED.json"


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory of a trained score model")
    src.add_argument("--model", help="gmm:SPEC.json — the exact denoiser of a Gaussian mixture")
    p.add_argument("--process", default=None, help="process giving the σ range (default: the run's; vp for gmm:)")
    p.add_argument("--sampler", default=None, help="deterministic multistep sampler (default: the budget planner's)")
    p.add_argument("--nfe", type=int, required=True, help="denoiser evaluations per sample (= steps)")
    p.add_argument(
        "--out", default=None, help="output SCHED.json (default: RUN/schedules/SAMPLER-nfeN.json; docs/formats.md)"
    )
    p.add_argument("--teachers", type=int, default=32, help="teacher trajectories (and as many held out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", default=None, help="schedule to start from (default: the budget planner's rule)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="sampler option")
    p.add_argument("--grid", type=int, default=40, help="levels of the fine σ grid")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--no-progress", action="store_true")


def _parse_options(pairs) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--option must be key=value, got {pair!r}")
        k, v = pair.split("=", 1)
        low = v.strip().lower()
        if low in ("true", "false"):
            out[k] = low == "true"
        else:
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
    return out


def run(args) -> int:
    import time
    from pathlib import Path

    import torch

    from ..outputs import check_output_file
    from ..processes import get_process
    from ..provenance import attach_to_json, provenance
    from ..samplers import get_sigmas
    from ..samplers.tuning import gmm_fingerprint, run_fingerprint, save_schedule, tune_for_budget

    if args.nfe < 1:
        raise ValueError(f"--nfe must be >= 1, got {args.nfe}")
    if args.teachers < 2:
        raise ValueError(f"--teachers must be >= 2, got {args.teachers}")
    if args.grid < 4:
        raise ValueError(f"--grid must be >= 4, got {args.grid}")
    if args.out is not None:
        check_output_file(args.out, "--out", ".json")
    t_start = time.perf_counter()
    if args.model:
        if not args.model.startswith("gmm:"):
            raise ValueError(f"--model must be gmm:SPEC.json, got {args.model!r}")
        from ..analytic import load_gmm_spec

        gmm = load_gmm_spec(args.model[4:])
        proc = get_process(args.process or "vp")
        den, shape, model = gmm.denoiser(proc), (gmm.dim,), gmm_fingerprint(gmm)
    else:
        from ..checkpoint import load_denoiser, read_config

        cfg = read_config(args.run)
        den = load_denoiser(args.run, ema=not args.no_ema, device=args.device)
        proc = get_process(args.process) if args.process else den.process
        shape, model = tuple(cfg["data"]["shape"]), run_fingerprint(args.run)
    if args.out is None and args.run is None:
        raise ValueError("--out is required with --model")
    smin, smax = float(proc.sigma_min), float(proc.sigma_max)
    start = None
    if args.start is not None:
        start = get_sigmas(args.start, args.nfe, process=proc, sigma_min=smin, sigma_max=smax)
    result = tune_for_budget(
        den,
        args.nfe,
        shape=shape,
        process=proc,
        sampler=args.sampler,
        options=_parse_options(args.option) if args.option else None,
        start=start,
        teachers=args.teachers,
        grid_size=args.grid,
        seed=args.seed,
        model=model,
        dtype=torch.float64 if args.model else torch.float32,
    )
    sampler, options = result["sampler"], result.get("options", {})
    out = Path(args.out) if args.out else Path(args.run) / "schedules" / f"{sampler}-nfe{args.nfe}.json"
    record = provenance(
        model=args.run or args.model, sampler=sampler, options=options, nfe=args.nfe, start=args.start,
        teachers=args.teachers, grid=args.grid, seed=args.seed,
    )  # fmt: skip
    record["wall_s"] = round(time.perf_counter() - t_start, 3)
    save_schedule(out, attach_to_json(result, record))
    e = result["endpoint_error"]
    print(
        f"{out}: {sampler} at NFE {args.nfe}, {result['chosen']} schedule "
        f"(held-out endpoint error {e['heldout_tuned']:.4g} tuned vs {e['heldout_start']:.4g} start)"
    )
    return 0
