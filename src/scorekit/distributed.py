"""torch.distributed glue for `torchrun`: process group setup, rank info, deterministic gathers.

Launched by torchrun, the environment carries RANK / WORLD_SIZE / LOCAL_RANK; we then join a process group
(NCCL on CUDA, gloo on CPU). Without torchrun everything runs as a single process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "resolve_device", "rank_world", "is_main_process", "gather_batches", "barrier"]


def resolve_device(name: str | None) -> torch.device:
    """cpu | cuda | cuda:N (under torchrun, cuda means this rank's LOCAL_RANK GPU)."""
    name = (name or "cpu").strip()
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine")
        if name == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise ValueError(f"unknown device {name!r}") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
        return dev
    raise ValueError(f"unknown device {name!r} (cpu, cuda or cuda:N)")


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the torchrun process group if launched by torchrun; returns (rank, world_size)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend=backend)
    return rank_world()


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_world()[0] == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_batches(local: dict) -> dict:
    """Gather {batch_index: value} from every rank onto every rank (values are picklable, e.g. CPU tensors)."""
    rank, world = rank_world()
    if world == 1:
        return dict(local)
    parts: list = [None] * world
    dist.all_gather_object(parts, local)
    out: dict = {}
    for p in parts:
        out.update(p)
    return out
