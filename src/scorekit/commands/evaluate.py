"""`scorekit evaluate`: sample-quality metrics of an `.npz` of samples against a data set, written as JSON."""

from __future__ import annotations

from pathlib import Path

NAME = "evaluate"
HELP = "metrics of samples against data: FID/KID/IS/precision/recall (images), sliced W/MMD/W2 (vectors)"


def add_arguments(p):
    p.add_argument(
        "--samples", required=True, help="OUT.npz from `scorekit sample` (key 'samples', user range; docs/formats.md)"
    )
    p.add_argument("--data", required=True, help="reference data: digits, a toy name, gmm:SPEC.json, or a path")
    p.add_argument("--out", required=True, help="METRICS.json to write (atomically)")
    p.add_argument(
        "--metrics",
        default=None,
        help="comma list from fid,kid,is,pr (images) or swd,mmd,w2 (vectors); default: all for the data kind",
    )
    p.add_argument(
        "--extractor",
        default="auto",
        choices=["auto", "digits", "fashion", "inception"],
        help="feature network (auto: digits for 8x8 digits, fashion for fashion-mnist, inception for side >= 32)",
    )
    p.add_argument(
        "--inception-weights",
        default=None,
        metavar="PATH",
        help="local pt_inception-2015-12-05-6726825d.pth (or set SCOREKIT_INCEPTION_WEIGHTS); never downloaded",
    )
    p.add_argument(
        "--inception-sha256", default=None, help="accept an Inception file with this SHA-256 instead of the published"
    )
    p.add_argument("--ref-stats", default=None, metavar="FILE.npz", help="cached reference features (made if absent)")
    p.add_argument("--ref-split", default="train", choices=["train", "test", "all"], help="split of --data to use")
    p.add_argument("--num-ref", type=int, default=None, help="reference samples (default: all of the split)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--is-splits", type=int, default=10)
    p.add_argument("--pr-k", type=int, default=3, help="k of the k-NN manifolds for precision/recall")
    p.add_argument("--w2-max", type=int, default=1000, help="exact W2 on at most this many points per side")
    p.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="vector metrics: mean ± std over this many estimates (fresh reference draws where possible)",
    )
    p.add_argument("--no-floor", action="store_true", help="skip the two-sample floor (gmm: and toy references)")
    p.add_argument(
        "--classifier",
        default="auto",
        choices=["auto", "none"],
        help="per-class accuracy of labelled samples (digits / fashion-mnist: the pinned classifiers; gmm: the exact "
        "posterior)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def run(args) -> int:
    from ..checkpoint import write_json_atomic
    from ..distributed import barrier, init_distributed, is_main_process, resolve_device
    from ..metrics.evaluate import evaluate_samples, load_labels_npz, load_samples_npz
    from ..provenance import attach_to_json, provenance

    device = resolve_device(args.device)
    init_distributed(device)  # under torchrun: ranks share feature extraction; rank 0 writes

    if args.num_ref is not None and args.num_ref < 2:
        raise ValueError(f"--num-ref must be >= 2, got {args.num_ref}")
    import time

    from ..outputs import check_output_file

    check_output_file(args.out, "--out")
    if args.ref_stats is not None and not Path(args.ref_stats).exists():
        check_output_file(args.ref_stats, "--ref-stats", ".npz")
    t_start = time.perf_counter()
    samples, extras = load_samples_npz(args.samples)
    labels = load_labels_npz(args.samples)
    result = evaluate_samples(
        samples,
        args.data,
        metrics=args.metrics,
        extractor=args.extractor,
        inception_path=args.inception_weights,
        inception_sha256=args.inception_sha256,
        ref_stats=args.ref_stats,
        num_ref=args.num_ref,
        split=args.ref_split,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        is_splits=args.is_splits,
        pr_k=args.pr_k,
        w2_max=args.w2_max,
        seed=args.seed,
        device=device,
        repeats=args.repeats,
        floor=False if args.no_floor else None,
        labels=labels,
        classifier=args.classifier,
    )
    result.update(extras)
    result["samples"] = str(Path(args.samples))
    if is_main_process():
        from ..provenance import read_provenance

        try:
            source = read_provenance(args.samples)
        except ValueError:
            source = None
        rec = provenance(data=args.data, seed=args.seed, repeats=args.repeats, samples=str(args.samples))
        rec["wall_s"] = round(time.perf_counter() - t_start, 3)
        if "nfe" in extras:
            rec["nfe"] = extras["nfe"]
        if source is not None:
            rec["samples_provenance"] = source
        result = attach_to_json(result, rec)
        write_json_atomic(args.out, result)
        shown = {k: v for k, v in result.items() if isinstance(v, float)}
        print(" ".join(f"{k}={v:.4g}" for k, v in shown.items()) + f"  -> {args.out}")
    barrier()
    return 0
