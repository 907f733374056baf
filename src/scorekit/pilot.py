"""A pilot of a training run: what one step of it costs on this machine, measured by running a few real steps.

`scorekit train --preset cpu` sizes its steps to a CPU budget from this (`presets.cpu_plan`), so the budget holds
on whatever CPU the run lands on, not only on the one a table was measured on.
"""

from __future__ import annotations

import time

import torch

from .training import (
    RunEMA,
    _autocast,
    _backward,
    _clip_norm,
    _network_of,
    _optimizer,
    _optimizer_step,
    build_trainable,
    make_objective,
    validate_config,
)

__all__ = ["time_training_step"]


def time_training_step(
    config: dict, device: str | torch.device = "cpu", *, steps: int = 16, warmup: int = 4, seed: int = 0
) -> float:
    """Seconds per training step of `config`'s run on `device`, from a pilot: `warmup` untimed steps, then `steps`
    timed ones of the loop's work (the objective's forward and backward in the run's precision, gradient clipping,
    the optimizer step, the EMA update) on random batches of the data's shape and the run's batch size. The pilot's
    model is thrown away, nothing is written, and the global torch RNG is left as it was. On a CPU the time is the
    process's CPU time (all its threads): the cost a CPU budget counts, as the loop will pay it beside whatever else
    the machine runs. On CUDA it is wall time between synchronisations."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"a pilot needs steps >= 1 and warmup >= 0, not {steps} and {warmup}")
    cfg = validate_config(config)
    tr = {**cfg["training"], "ema_snapshot_every": 0}
    device = torch.device(device)
    shape, bs = tuple(int(v) for v in cfg["data"]["shape"]), int(tr["batch_size"])
    num_classes = max(1, int(cfg["data"].get("num_classes") or 0))
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        trainable = build_trainable(cfg).to(device)
        model = _network_of(cfg, trainable)
        ema, objective, opt = RunEMA(model, tr), make_objective(cfg), _optimizer(model.parameters(), tr)
        autocast, scaler = _autocast(device, tr["amp"])
        labelled = bool(cfg.get("denoiser", {}).get("class_conditional")) or getattr(objective, "needs_labels", False)
        trainable.train()

        def one_step(done: int) -> None:
            x0 = torch.randn((bs, *shape), generator=gen).to(device)
            labels = torch.randint(0, num_classes, (bs,), generator=gen).to(device) if labelled else None
            rand = objective.draw(bs, shape, gen, device, x0.dtype)
            with autocast:
                out = objective(trainable, x0, gen, labels, **(rand or {}))
            _backward(out.float().mean(), opt, scaler)
            torch.nn.utils.clip_grad_norm_(model.parameters(), _clip_norm(tr))
            _optimizer_step(opt, scaler)
            ema.update(model, done + 1)

        clock = time.perf_counter if cuda else time.process_time
        for i in range(warmup):
            one_step(i)
        if cuda:
            torch.cuda.synchronize(device)
        t0 = clock()
        for i in range(warmup, warmup + steps):
            one_step(i)
        if cuda:
            torch.cuda.synchronize(device)
        return (clock() - t0) / steps
