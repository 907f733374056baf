"""One module per `scorekit` subcommand (see scorekit.cli)."""


def add_ema_arguments(p) -> None:
    """--ema-sigma-rel / --ema-snapshot-every, shared by every training command (None = the training default)."""
    p.add_argument(
        "--ema-sigma-rel",
        type=float,
        default=None,
        help="relative width of the power-function EMA in ema.safetensors (default 0.10; suits any run length)",
    )
    p.add_argument(
        "--ema-snapshot-every",
        type=int,
        default=None,
        help="steps between EMA snapshots in RUN/ema_snapshots/ for `scorekit ema` (default steps // 32; 0 = off)",
    )
