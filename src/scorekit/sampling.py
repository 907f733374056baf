"""Batched, seeded generation from any denoiser with any registered sampler.

Batch b of a run draws all its randomness from a generator seeded by (seed, b), so the samples depend only on
(seed, batch_size) — not on how many batches run, on which process (distributed ranks take disjoint batches),
or on whether a run was resumed.
"""

from __future__ import annotations

import math
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .processes import Process
from .samplers import get_sampler, get_sigmas

__all__ = [
    "GenerateResult",
    "generate",
    "batch_generator",
    "parse_sampler_options",
    "make_sigmas_for",
    "NpzStreamWriter",
]


@dataclass
class GenerateResult:
    samples: Tensor  # [num, *shape], model range, float32, CPU
    nfe: float  # denoiser evaluations per sample
    labels: Tensor | None = None


def batch_generator(seed: int, batch_index: int, device="cpu") -> torch.Generator:
    """The generator of batch `batch_index` of a run seeded with `seed`."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(batch_index) * 7_919 + 12_345) % (2**63 - 1))
    return g


def parse_sampler_options(pairs: list[str] | None, allowed: tuple[str, ...] | None = None) -> dict:
    """['snr=0.16', 'corrector_steps=2'] → {'snr': 0.16, 'corrector_steps': 2}; unknown keys are an error."""
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise ValueError(f"sampler option {item!r} must look like key=value")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if allowed is not None and k not in allowed:
            ok = ", ".join(allowed) if allowed else "none"
            raise ValueError(f"sampler option {k!r} is not accepted here (accepted: {ok})")
        low = v.strip().lower()
        if low in ("true", "false"):
            out[k] = low == "true"
            continue
        try:
            num = float(v)
        except ValueError:
            out[k] = v
            continue
        if not math.isfinite(num):
            raise ValueError(f"sampler option {k} must be finite, got {v}")
        out[k] = int(num) if num.is_integer() and "." not in v and "e" not in low else num
    return out


def make_sigmas_for(
    denoiser,
    sampler: str,
    steps: int,
    *,
    process: Process | None = None,
    schedule=None,
    sigma_min: float | None = None,
    sigma_max=None,
    rho: float = 7.0,
) -> Tensor:
    spec = get_sampler(sampler)
    proc = process if process is not None else getattr(denoiser, "process", None)
    sched = schedule or spec.default_schedule
    if sched == "uniform_t" and proc is None:
        sched = "karras"
    smin = sigma_min if sigma_min is not None else (proc.sigma_min if proc is not None else denoiser.sigma_min)
    smax = sigma_max if sigma_max is not None else (proc.sigma_max if proc is not None else denoiser.sigma_max)
    return get_sigmas(sched, steps, process=proc, sigma_min=smin, sigma_max=smax, rho=rho)


@torch.no_grad()
def generate(
    denoiser,
    sampler: str,
    steps: int,
    num: int,
    *,
    process: Process | None = None,
    schedule=None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    batch_size: int = 256,
    seed: int = 0,
    device="cpu",
    class_labels: Tensor | None = None,
    sampler_options: dict | None = None,
    data_shape: tuple[int, ...] | None = None,
    batches: list[int] | None = None,
    progress: bool = False,
    on_batch: Callable[[int, Tensor], None] | None = None,
    dtype: torch.dtype = torch.float32,
) -> GenerateResult:
    """Draw `num` samples (σ-space prior x = σ_max·n, then the sampler). `batches` restricts to some batch
    indices (distributed ranks); `on_batch(b, x)` streams each finished batch (memory flat in num)."""
    if int(num) <= 0:
        raise ValueError(f"--num must be > 0, got {num}")
    if int(batch_size) <= 0:
        raise ValueError(f"--batch-size must be > 0, got {batch_size}")
    spec = get_sampler(sampler)
    opts = dict(sampler_options or {})
    allowed = getattr(spec, "options", None)
    bad = [k for k in opts if allowed is not None and k not in allowed]
    if bad:
        raise ValueError(f"sampler {sampler!r} does not take option(s) {', '.join(bad)}")
    shape = tuple(data_shape or getattr(denoiser, "data_shape", None) or ())
    if not shape:
        raise ValueError("cannot tell the data shape of this model")
    proc = process if process is not None else getattr(denoiser, "process", None)
    sigmas = make_sigmas_for(
        denoiser, sampler, steps, process=proc, schedule=schedule, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho
    )
    nb = math.ceil(num / batch_size)
    todo = list(range(nb)) if batches is None else list(batches)
    keep = on_batch is None
    outs: list[Tensor] = []
    nfe_total, count = 0.0, 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"sample {sampler}", unit="batch", dynamic_ncols=True)
    for b in todo:
        lo, hi = b * batch_size, min(num, (b + 1) * batch_size)
        g = batch_generator(seed, b)
        x = sigmas[0].item() * torch.randn((hi - lo, *shape), generator=g, dtype=dtype)
        x = x.to(device)
        labels = None if class_labels is None else class_labels[lo:hi].to(device)
        gen_dev = g if torch.device(device).type == "cpu" else _device_generator(seed, b, device)
        out = spec.fn(denoiser, x, sigmas.to(dtype), process=proc, generator=gen_dev, class_labels=labels, **opts)
        xs = out.x.detach().float().cpu()
        if not torch.isfinite(xs).all():
            raise ValueError(f"sampler {sampler!r} produced non-finite values (batch {b}); try more steps")
        nfe_total += out.nfe * (hi - lo)
        count += hi - lo
        if keep:
            outs.append(xs)
        else:
            on_batch(b, xs)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    samples = torch.cat(outs) if keep else torch.empty(0)
    labels_all = None if class_labels is None else class_labels.cpu()
    return GenerateResult(samples, nfe_total / max(count, 1), labels_all)


def _device_generator(seed: int, b: int, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(b) * 7_919 + 54_321) % (2**63 - 1))
    return g


class NpzStreamWriter:
    """Write an .npz whose big array is appended batch by batch (memory flat in its length).

    The array `name` of known final shape is streamed into its zip member; small arrays are added at close.
    The file appears atomically (temp file + rename) only when every row was written.
    """

    def __init__(self, path, name: str, shape: tuple[int, ...], dtype=np.float32):
        self.path = Path(path)
        if self.path.suffix != ".npz":
            raise ValueError(f"output must end in .npz, got {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".npz", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.shape, self.dtype, self.rows = tuple(shape), np.dtype(dtype), 0
        self.zf = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.member = self.zf.open(f"{name}.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self.member, header)

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.rows + len(rows) > self.shape[0]:
            raise ValueError(f"rows of shape {rows.shape} do not fit an array of shape {self.shape}")
        self.member.write(rows.tobytes())
        self.rows += len(rows)

    def close(self, **small_arrays) -> None:
        self.member.close()
        if self.rows != self.shape[0]:
            self.abort()
            raise ValueError(f"only {self.rows} of {self.shape[0]} rows were written")
        for k, v in small_arrays.items():
            with self.zf.open(f"{k}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(v), allow_pickle=False)
        self.zf.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Discard the partial file (the destination, if it existed, is left untouched)."""
        for closer in (self.member.close, self.zf.close):
            try:
                closer()
            except (OSError, ValueError):
                pass
        self.tmp.unlink(missing_ok=True)
