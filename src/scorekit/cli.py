"""The `scorekit` command line: a thin layer over the library.

Each subcommand lives in `scorekit/commands/<module>.py` and defines NAME, HELP, `add_arguments(parser)`
and `run(args) -> int`. Bad input anywhere becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main", "CliError", "COMMAND_MODULES"]

# Order here is the order in `scorekit --help`.
COMMAND_MODULES = [
    "quickstart",
    "train",
    "train_noise_classifier",
    "train_classifier",
    "sample",
    "tune_schedule",
    "likelihood",
    "evaluate",
    "report",
    "ema",
    "info",
    "import_cmd",
    "export",
]


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="scorekit",
        description="Score-based diffusion models: train, sample (any integrator, Denoising MCMC, guidance), "
        "likelihood and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"scorekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for modname in COMMAND_MODULES:
        mod = importlib.import_module(f"scorekit.commands.{modname}")
        names = mod.NAME if isinstance(mod.NAME, (list, tuple)) else [mod.NAME]
        p = sub.add_parser(names[0], aliases=list(names[1:]), help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _default_threads() -> None:
    """CPU threads: honour OMP_NUM_THREADS / SCOREKIT_THREADS, else half the cores (OpenMP threads spin-wait on
    busy shared cores)."""
    import torch

    want = os.environ.get("SCOREKIT_THREADS")
    if want is None and "OMP_NUM_THREADS" in os.environ:
        return
    n = int(want) if want and want.isdigit() and int(want) > 0 else max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(n)


def main(argv: list[str] | None = None) -> int:
    from .provenance import command_line

    with command_line(sys.argv[1:] if argv is None else list(argv)):
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    debug = os.environ.get("SCOREKIT_DEBUG") == "1"
    _default_threads()
    ok = False
    try:
        rc = args._run(args)
        ok = True
    except KeyboardInterrupt:
        sys.stderr.write(f"scorekit {args.command}: interrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (`scorekit info X | head`): stop quietly, like other tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (
        CliError,
        ValueError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
    ) as e:
        if debug:
            raise
        msg = _path_error(e) or " ".join(str(e).split()) or type(e).__name__
        sys.stderr.write(f"scorekit {args.command}: error: {msg}\n")
        return 2
    except (RuntimeError, OSError, TypeError, KeyError, IndexError) as e:  # last resort: still one line
        if debug:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        sys.stderr.write(f"scorekit {args.command}: error: {type(e).__name__}: {msg}\n")
        return 1
    finally:
        _shutdown_distributed(ok)
    return int(rc or 0)


def _path_error(e: Exception) -> str | None:
    """A clear line for an OS error about a path: which part of it is a file where a folder is needed."""
    import errno
    from pathlib import Path

    name = getattr(e, "filename", None)
    if not isinstance(e, OSError) or name is None:
        return None
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        p = Path(name)
        for parent in [p, *p.parents]:
            if parent.exists() and not parent.is_dir():
                return f"cannot write {name}: {parent} is a file, not a folder"
    if e.errno == errno.EACCES:
        return f"cannot write {name}: permission denied"
    return None


def _shutdown_distributed(ok: bool) -> None:
    """Leave the torchrun process group together: ranks that finish at different moments otherwise tear down
    gloo connections under each other (seen as SIGABRT at exit)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            if ok:
                dist.barrier()
        finally:
            dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
