"""`scorekit likelihood`: negative log-likelihood (nats) and bits/dim of data under a trained run or an analytic
mixture, by the probability-flow ODE or the DDPM variational bound.

OUT.json: {"nll_nats": mean per sample, "bpd": bits/dim or null, "per_sample": [...], "nfe": mean, ...}.
Vector data: nll_nats is the continuous NLL in the data's own units (the run's standardisation undone).
Image data: nll_nats is the NLL of the 8-bit data (ODE: of its uniformly dequantised copy plus the offsets,
an upper bound on −log P(k); vlb: the bound with a discretised decoder), and bpd = nll_nats / (D ln 2).
"""

from __future__ import annotations

import math

import torch

NAME = "likelihood"
HELP = "negative log-likelihood and bits/dim of data under a model (probability-flow ODE or DDPM bound)"


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory of a trained score model")
    src.add_argument("--model", help="gmm:SPEC.json — the exact denoiser of a Gaussian mixture (docs/formats.md)")
    p.add_argument("--process", default=None, help="process of the ODE (default: the run's; vp for --model gmm:)")
    p.add_argument("--data", required=True, help="data: digits, a toy name, gmm:SPEC.json, or a path (e.g. X.npy)")
    p.add_argument("--split", default="test", help="split of a built-in data set (train | test | all)")
    p.add_argument("--num", type=int, default=None, help="evaluate at most N samples")
    p.add_argument("--out", required=True, help="output OUT.json (keys incl. provenance: docs/formats.md)")
    p.add_argument("--method", default="ode", choices=["ode", "vlb"], help="probability-flow ODE or DDPM bound")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0, help="seed of probes, dequantisation noise and bound noise")
    p.add_argument(
        "--divergence",
        default="auto",
        choices=["auto", "exact", "hutchinson"],
        help="divergence of the ODE drift (auto: exact up to 16 dimensions, Hutchinson above)",
    )
    p.add_argument("--probes", type=int, default=1, help="Hutchinson probes per sample")
    p.add_argument(
        "--noise", default="rademacher", choices=["gaussian", "rademacher", "sphere"], help="Hutchinson probe law"
    )
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--no-dequantize", action="store_true", help="images: evaluate the 8-bit values themselves")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--no-progress", action="store_true")


def _check_writable(path: str) -> None:
    """Fail before the (long) computation if OUT.json cannot be written (creating nothing)."""
    from ..outputs import check_output_file

    check_output_file(path, "--out")


def _load_model(args):
    from ..analytic import load_gmm_spec
    from ..checkpoint import load_denoiser, read_config
    from ..data import DataTransform
    from ..processes import get_process

    if args.model is not None:
        if not args.model.startswith("gmm:"):
            raise ValueError(f"--model must be gmm:SPEC.json, got {args.model!r}")
        gmm = load_gmm_spec(args.model[4:])
        process = get_process(args.process or "vp")
        return gmm.denoiser(process), process, DataTransform.identity(), "vector", (gmm.dim,)
    cfg = read_config(args.run)
    den = load_denoiser(args.run, ema=not args.no_ema, device=args.device)
    process = get_process(args.process) if args.process else den.process
    data_cfg = cfg["data"]
    transform = DataTransform.from_config(data_cfg["transform"]) if "transform" in data_cfg else None
    kind = data_cfg.get("kind", "vector")
    if transform is None:
        transform = DataTransform.image() if kind == "image" else DataTransform.identity()
    return den, process, transform, kind, tuple(data_cfg["shape"])


def _load_user_data(args):
    from ..data import load_data

    ds = load_data(args.data, split=args.split, num=args.num, seed=args.seed)
    x = ds.user_data()
    if args.num is not None:
        x = x[: args.num]
    return x, ds.kind


def run(args) -> int:
    import time

    from tqdm import tqdm

    from ..checkpoint import write_json_atomic
    from ..likelihood import dequantize, discrete_nll_nats, log_likelihood
    from ..provenance import attach_to_json, provenance

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    if args.probes < 1:
        raise ValueError(f"--probes must be positive, got {args.probes}")
    if args.num is not None and args.num < 1:
        raise ValueError(f"--num must be positive, got {args.num}")
    for name in ("rtol", "atol"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            raise ValueError(f"--{name} must be a positive number")
    _check_writable(args.out)
    t_start = time.perf_counter()
    den, process, transform, kind, shape = _load_model(args)
    x_user, _ = _load_user_data(args)
    if tuple(x_user.shape[1:]) != shape:
        raise ValueError(f"data samples have shape {tuple(x_user.shape[1:])}, the model expects {shape}")
    is_image = kind == "image"
    dim = math.prod(shape)
    divergence = args.divergence
    if divergence == "auto":
        divergence = "exact" if dim <= 16 else "hutchinson"
    gen = torch.Generator().manual_seed(args.seed)
    dtype = torch.float64 if args.model is not None else torch.float32

    per_sample, nfes = [], []
    n = x_user.shape[0]
    batches = range(0, n, args.batch_size)
    bar = tqdm(batches, desc="likelihood", unit="batch", disable=args.no_progress or None)
    for start in bar:
        xu = x_user[start : start + args.batch_size].to(torch.float64)
        if is_image and args.method == "ode" and not args.no_dequantize:
            xu = dequantize(xu, gen)
        elif is_image:
            xu = torch.round(xu.clamp(0, 1) * 255) / 255
        xm = transform.to_model(xu).to(dtype).to(args.device)
        if args.method == "ode":
            res = log_likelihood(
                den,
                xm,
                process=process,
                method="ode",
                divergence=divergence,
                probes=args.probes,
                noise=args.noise,
                rtol=args.rtol,
                atol=args.atol,
                generator=gen,
            )
            nll_m = res.nll_nats.double().cpu()
            nll = discrete_nll_nats(nll_m, dim, transform) if is_image else nll_m + dim * math.log(transform.scale)
        else:
            steps = tqdm(total=getattr(process, "num_steps", 0), desc="  bound terms", unit="step", leave=False,
                         disable=args.no_progress or None)  # fmt: skip
            res = log_likelihood(
                den, xm, process=process, method="vlb", generator=gen, progress=lambda i, bar=steps: bar.update()
            )
            steps.close()
            nll_m = res.nll_nats.double().cpu()
            nll = nll_m if is_image else nll_m + dim * math.log(transform.scale)
        per_sample.extend(float(v) for v in nll)
        nfes.append((res.nfe, xu.shape[0]))
    nll_mean = sum(per_sample) / len(per_sample)
    nfe_mean = sum(f * k for f, k in nfes) / n
    bpd = nll_mean / (dim * math.log(2.0)) if is_image else None
    out = {
        "nll_nats": nll_mean,
        "bpd": bpd,
        "per_sample": per_sample,
        "nfe": nfe_mean,
        "method": args.method,
        "divergence": divergence if args.method == "ode" else None,
        "num": n,
        "dim": dim,
    }
    settings = {"method": args.method, "data": args.data, "split": args.split, "num": n, "seed": args.seed}
    if args.method == "ode":
        settings.update(divergence=divergence, rtol=args.rtol, atol=args.atol, dequantize=not args.no_dequantize)
        if divergence == "hutchinson":
            settings.update(probes=args.probes, noise=args.noise)
    record = provenance(model=args.run or args.model, **settings)
    record.update(nfe=nfe_mean, wall_s=round(time.perf_counter() - t_start, 3))
    out = attach_to_json(out, record)
    try:
        write_json_atomic(args.out, out)
    except OSError as e:
        raise ValueError(f"cannot write --out {args.out}: {e.strerror or e}") from None
    bpd_text = f", {bpd:.4f} bits/dim" if bpd is not None else ""
    print(f"nll {nll_mean:.4f} nats per sample{bpd_text} over {n} samples (nfe {nfe_mean:.1f})")
    return 0
