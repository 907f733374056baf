"""Reproduce ADM's classifier-guided ImageNet 64×64 / 128×128 FID (Dhariwal & Nichol 2021, sec. 4–5).

The released guided-diffusion U-Net and noisy classifier are imported into a scorekit run and sampled the way
guided-diffusion's `classifier_sample.py` does: DDPM ancestral steps on 250 evenly respaced timesteps, the
learned variance Σ_θ (interpolated between β̃ and β in log space), x̂0 clipped to [−1, 1], and the guidance
mean shift μ + s·Σ·∇ log p_φ(y | x_t, t) (Alg. 1) with random class labels. `--sampler scorekit` uses
scorekit's own σ-space ancestral sampler with the guidance engineer's mean-shift step instead (fixed β̃).

Published classifier scales (guided-diffusion README): 64×64 → 1.0, 128×128 → 0.5.

GPU run:

    python benchmarks/reproduce/adm_guided_imagenet.py --resolution 64 \
        --model /data/adm/64x64_diffusion.pt --classifier /data/adm/64x64_classifier.pt \
        --reference /data/adm/VIRTUAL_imagenet64_labeled.npz --inception /data/pt_inception-2015-12-05.pth \
        --out benchmarks/results/adm_guided --device cuda

CPU dry run (tiny fixture U-Net + classifier, random reference images and features):

    python benchmarks/reproduce/adm_guided_imagenet.py --dry-run --out /tmp/adm_dry
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Timer,
    fid_against,
    fixtures_dir,
    make_extractor,
    quantize_uint8,
    reference_stats,
    write_results,
)

RELEASED = {
    64: {"config": "adm_imagenet64_cond", "classifier_config": "adm_classifier64", "scale": 1.0},
    128: {"config": "adm_imagenet128_cond", "classifier_config": "adm_classifier128", "scale": 0.5},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, choices=sorted(RELEASED), default=64)
    p.add_argument("--model", help="guided-diffusion U-Net .pt (e.g. 64x64_diffusion.pt)")
    p.add_argument("--classifier", help="guided-diffusion noisy classifier .pt (e.g. 64x64_classifier.pt)")
    p.add_argument("--run", help="an already imported run directory (with classifier/)")
    p.add_argument("--reference", help="reference batch .npz: images 'arr_0' [N, H, W, 3] uint8")
    p.add_argument("--inception", help="FID Inception weights file")
    p.add_argument("--inception-sha256", default=None)
    p.add_argument("--scales", default=None, help="comma list of classifier scales (default: the published one)")
    p.add_argument("--steps", type=int, default=250, help="respaced DDPM steps")
    p.add_argument("--sampler", choices=["adm", "scorekit"], default="adm")
    p.add_argument("--num", type=int, default=50000)
    p.add_argument("--num-ref", type=int, default=50000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true")
    return p.parse_args(argv)


def respaced_indices(num_steps: int, count: int) -> list[int]:
    """guided-diffusion's space_timesteps for one section: `count` evenly strided steps, rounded."""
    if count > num_steps or count < 1:
        raise ValueError(f"cannot take {count} steps out of {num_steps}")
    if count == 1:
        return [0]
    stride = (num_steps - 1) / (count - 1)
    return sorted({round(i * stride) for i in range(count)})


@torch.no_grad()
def sample_adm_guided(net, classifier, process, x, labels, steps: list[int], scale: float, generator):
    """guided-diffusion p_sample loop with learned range variance and classifier mean shift (process space)."""
    if len(steps) < 2:
        raise ValueError("ADM sampling needs at least 2 respaced steps")
    abar_all = process.alphas_cumprod.to(x.device)
    idx = torch.tensor(steps, device=x.device)
    abar = abar_all[idx].double()
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    betas = 1 - abar / abar_prev
    post_var = betas * (1 - abar_prev) / (1 - abar)
    post_log_var = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
    coef_x0 = betas * abar_prev.sqrt() / (1 - abar)
    coef_xt = (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar)
    c = x.shape[1]
    for k in reversed(range(len(steps))):
        t = torch.full((x.shape[0],), steps[k], device=x.device, dtype=torch.long)
        out = net(x, t, labels)
        eps, v = out[:, :c].double(), out[:, c:].double()
        frac = (v + 1) / 2
        log_var = frac * torch.log(betas[k]) + (1 - frac) * post_log_var[k]
        x0 = ((1 / abar[k]).sqrt() * x.double() - (1 / abar[k] - 1).sqrt() * eps).clamp(-1, 1)
        mean = coef_x0[k] * x0 + coef_xt[k] * x.double()
        if scale != 0:
            with torch.enable_grad():
                xin = x.detach().requires_grad_(True)
                logp = torch.log_softmax(classifier(xin, t).float(), dim=-1)
                sel = logp[torch.arange(x.shape[0], device=x.device), labels].sum()
                grad = torch.autograd.grad(sel, xin)[0].double()
            mean = mean + log_var.exp() * grad * scale
        if k > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float64)
            x = (mean + (0.5 * log_var).exp() * noise).to(x.dtype)
        else:
            x = mean.to(x.dtype)
    return x


def _import_run(args, out: Path) -> Path:
    from scorekit.importers import import_adm

    if args.run:
        return Path(args.run)
    run = out / f"run{args.resolution}"
    if (run / "config.json").exists():
        return run
    if args.dry_run:
        fx = fixtures_dir()
        cfg = str(fx / "adm_tiny.json")
        return import_adm(
            fx / "adm_unet_tiny.pt", cfg, run, classifier=fx / "adm_classifier_tiny.pt", classifier_config=cfg
        )
    if not (args.model and args.classifier):
        raise ValueError("--model and --classifier (or --run) are required")
    rel = RELEASED[args.resolution]
    return import_adm(
        args.model, rel["config"], run, classifier=args.classifier, classifier_config=rel["classifier_config"]
    )


def _reference_images(args, shape) -> torch.Tensor:
    if args.dry_run:
        return torch.rand((64, *shape), generator=torch.Generator().manual_seed(7))
    if not args.reference:
        raise ValueError("--reference NPZ (ImageNet reference batch, images in 'arr_0') is required")
    arr = np.load(args.reference)["arr_0"][: args.num_ref]
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


def main(argv=None) -> int:
    args = parse_args(argv)
    from scorekit.checkpoint import load_denoiser, load_network, read_config
    from scorekit.guidance import ClassifierGuidedDenoiser, load_classifier
    from scorekit.samplers import sample_ancestral

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        args.num, args.batch_size, args.steps, args.device = 4, 4, 4, "cpu"
    run = _import_run(args, out)
    cfg = read_config(run)
    process_cfg = cfg["process"]
    shape = tuple(cfg["data"]["shape"])
    num_classes = int(cfg["data"]["num_classes"])
    net = load_network(run, device=args.device)
    clf_net = load_network(run / "classifier", device=args.device)
    den = load_denoiser(run, device=args.device)
    clf = load_classifier(run / "classifier", device=args.device)
    process = den.process
    scales = [float(s) for s in args.scales.split(",")] if args.scales else [RELEASED[args.resolution]["scale"]]
    if args.dry_run and not args.scales:
        scales = [0.0, 1.0]
    extractor = make_extractor(args, shape[0])
    ref = reference_stats(
        extractor,
        _reference_images(args, shape),
        None if args.dry_run else out / f"ref{args.resolution}_{extractor.name}.npz",
    )
    steps = respaced_indices(process.num_steps, args.steps)
    rows = []
    for scale in scales:
        samples, nfe = [], 0.0
        with Timer() as t:
            for b, lo in enumerate(range(0, args.num, args.batch_size)):
                n = min(args.batch_size, args.num - lo)
                g = torch.Generator(device=args.device).manual_seed(args.seed * 100003 + b)
                labels = torch.randint(0, num_classes, (n,), generator=g, device=args.device)
                x = torch.randn((n, *shape), generator=g, device=args.device)
                if args.sampler == "adm":
                    x = sample_adm_guided(net, clf_net, process, x, labels, steps, scale, g)
                    nfe = float(len(steps))
                else:  # scorekit σ-space ancestral sampler; x_T scaled to σ-space (s = √ᾱ_T)
                    sig = torch.cat([process.sigmas[steps].flip(0), process.sigmas.new_zeros(1)]).float()
                    x = x * torch.sqrt(1 + sig[0] ** 2)  # σ-space x = x_t / s, s = 1/√(1 + σ²)
                    # Alg. 1: the class-conditional model, shifted by Σ·s·∇log p(y | x_t)
                    guided = ClassifierGuidedDenoiser(den, clf, scale, condition_base=True)
                    res = sample_ancestral(
                        guided,
                        x,
                        sig.to(args.device),
                        class_labels=labels,
                        process=process,
                        generator=g,
                        mean_shift=True,
                    )
                    x, nfe = res.x, float(res.nfe)
                samples.append(quantize_uint8((x.float() + 1) / 2).cpu())  # as saved by the reference
        fid = fid_against(extractor, torch.cat(samples), ref)
        rows.append(
            {
                "resolution": shape[-1],
                "scale": scale,
                "steps": len(steps),
                "nfe": nfe,
                "fid": fid,
                "seconds": round(t.seconds, 1),
            }
        )
    meta = {
        "run": str(run),
        "process": process_cfg,
        "sampler": args.sampler,
        "num": args.num,
        "extractor": extractor.describe(),
        "dry_run": args.dry_run,
        "device": str(args.device),
    }
    write_results(
        out,
        "adm_guided_dryrun" if args.dry_run else f"adm_guided_imagenet{args.resolution}",
        f"ADM guided ImageNet {args.resolution}×{args.resolution}: FID by classifier scale",
        ["resolution", "scale", "steps", "nfe", "fid", "seconds"],
        rows,
        meta,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
