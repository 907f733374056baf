"""`scorekit train-classifier`: a noise-conditional classifier p(y | x_t, t) for classifier guidance."""

from __future__ import annotations

from . import add_ema_arguments

NAME = "train-classifier"
HELP = "train a noisy classifier p(y | x_t, t) on labelled DATA noised by a process (for --guidance classifier)"


def add_arguments(p):
    p.add_argument("--data", required=True, help="labelled data: digits | gmm:SPEC.json (with labels) | PATH")
    p.add_argument("--process", required=True, choices=["ve", "vp", "subvp", "ddpm", "edm"])
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (default 3e-4)")
    p.add_argument(
        "--conditioning",
        default="t999",
        choices=["t", "t999", "sigma", "log_sigma", "index"],
        help="noise conditioning the network sees (default t999)",
    )
    p.add_argument("--out", default="runs/classifier", help="run directory (default runs/classifier)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--log-every", type=int, default=100, help="steps between log lines (default 100)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    add_ema_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")


def run(args) -> int:
    import torch

    from ..classifier_training import train_noisy_classifier
    from ..data import load_data
    from ..distributed import init_distributed, is_main_process, resolve_device
    from ..processes import get_process

    if args.steps <= 0:
        raise ValueError(f"--steps must be > 0, got {args.steps}")
    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be > 0, got {args.batch_size}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} requested but CUDA is not available")
    device = resolve_device(args.device)
    init_distributed(device)  # under torchrun the ranks share the global batch (training.train)
    train = load_data(args.data, split="train", seed=args.seed)
    if train.labels is None or train.num_classes < 2:
        raise ValueError(f"{args.data} has no class labels (at least two classes needed to train a classifier)")
    try:
        test = load_data(args.data, split="test", seed=args.seed)
        if test.labels is None or len(test) == 0:
            test = None
    except ValueError:
        test = None
    process = get_process(args.process)
    if args.conditioning == "index" and process.name != "ddpm":
        raise ValueError("--conditioning index needs --process ddpm")
    data_cfg = {
        "spec": args.data,
        "kind": train.kind,
        "shape": list(train.shape),
        "num_classes": int(train.num_classes),
        "transform": train.transform.to_config(),
    }
    _, summary = train_noisy_classifier(
        train.data,
        train.labels,
        process,
        num_classes=int(train.num_classes),
        kind=train.kind,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=device,
        conditioning=args.conditioning,
        out=args.out,
        data_config=data_cfg,
        eval_data=None if test is None else test.data,
        eval_labels=None if test is None else test.labels,
        log_every=args.log_every,
        log=print if is_main_process() else None,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        ema_sigma_rel=args.ema_sigma_rel,
        ema_snapshot_every=args.ema_snapshot_every,
    )
    if not summary:
        print(f"stopped; checkpoint saved in {args.out} (continue with --resume)")
        return 130
    if is_main_process():
        print(f"wrote classifier run {args.out} ({summary['eval_split']} accuracy by noise band above)")
    return 0
