"""Denoising MCMC (Kim & Ye 2022, "Denoising MCMC for Accelerating Diffusion-Based Generative Models").

Run MCMC on the product space (x, σ) so that states stay near the data manifold, then hand the least-noisy
state of each window to any reverse-S/ODE integrator, which only has to denoise from that per-sample σ to 0.

Pieces (all in σ-space, so VE, VP, sub-VP and DDPM models work alike; the score is (D(x, σ) − x)/σ²):
- a noise-level estimator over a decreasing σ grid: `ExactNoisePosterior` (p(σ_k | x) ∝ p_{σ_k}(x) for a
  Gaussian mixture) or `TrainedNoiseClassifier` (a `kind="noise_classifier"` run directory);
- the Denoising Langevin Gibbs (DLG) kernel `GibbsKernel`: x ← x + η/2·s(x, σ) + √η·z (ULA, or
  Metropolis-adjusted: MALA), then σ ← argmax (reference) or a draw from p(σ | x);
- the driver `DLGRun` (start-up, rounds, costs) and any registered sampler as the finisher, its σ table built by
  `samplers.Schedule` per sample from σ_start down to `tweedie_sigma`; the last step x ← D(x, σ) is the
  reference's Tweedie step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor

from ..processes import Process
from ..samplers import Schedule, get_sampler
from ..samplers.base import CountingDenoiser, bcast, noise_like
from .estimators import NoiseLevelEstimator


@dataclass
class DLGConfig:
    """Settings of Denoising Langevin Gibbs (defaults follow the reference where it has one).

    chains: persistent chains (memory is bounded by this, not by the number of samples);
    skip: Gibbs steps per output; eta: Langevin step (constant, or η·σ² with eta_schedule="sigma2");
    sigma_update: "argmax" (reference) or "sample" from p(σ | x); kernel: "ula" (reference) or "mala";
    burn_in: Gibbs steps after the start-up sample; init_sampler/init_steps: the full start-up integrator;
    init_noise: std of the noise added to its output; finisher/finisher_steps/finisher_schedule: the
    integrator that denoises from σ_start (schedule: a name or σ list, None = the sampler's default); tweedie_sigma: the
    lowest σ of the finisher schedule, whose final step D(x, σ) is the Tweedie step;
    include_carried: whether the state carried in from the previous output competes for the next one;
    finisher_options: extra keyword options of the finisher (e.g. rk45's rtol/atol).
    """

    chains: int = 256
    skip: int = 2
    eta: float = 0.1
    eta_schedule: str = "constant"
    sigma_update: str = "argmax"
    kernel: str = "ula"
    burn_in: int = 20
    init_sampler: str = "edm_stochastic"
    init_steps: int = 20
    init_noise: float = 0.5
    finisher: str = "heun"
    finisher_steps: int = 3
    finisher_schedule: str | tuple[float, ...] | None = None
    tweedie_sigma: float = 0.01
    include_carried: bool = True
    finisher_options: dict = field(default_factory=dict)

    def validate(self) -> DLGConfig:
        if int(self.chains) < 1:
            raise ValueError(f"DLG needs at least one chain, got chains={self.chains}")
        if int(self.skip) < 1:
            raise ValueError(f"DLG skip must be >= 1, got {self.skip}")
        if not (float(self.eta) > 0 and math.isfinite(float(self.eta))):
            raise ValueError(f"DLG step size eta must be positive, got {self.eta}")
        if self.eta_schedule not in ("constant", "sigma2"):
            raise ValueError(f"unknown eta schedule {self.eta_schedule!r} (choose constant or sigma2)")
        if self.sigma_update not in ("argmax", "sample"):
            raise ValueError(f"unknown sigma update {self.sigma_update!r} (choose argmax or sample)")
        if self.kernel not in ("ula", "mala"):
            raise ValueError(f"unknown DLG kernel {self.kernel!r} (choose ula or mala)")
        if int(self.burn_in) < 0 or int(self.init_steps) < 1 or int(self.finisher_steps) < 1:
            raise ValueError("burn_in must be >= 0 and init/finisher steps >= 1")
        if float(self.init_noise) < 0 or not float(self.tweedie_sigma) > 0:
            raise ValueError("init_noise must be >= 0 and tweedie_sigma > 0")
        get_sampler(self.init_sampler)
        get_sampler(self.finisher).check_options(self.finisher_options)
        if self.finisher_schedule is not None:
            Schedule.parse(self.finisher_schedule)
        return self


@dataclass
class DMCMCResult:
    """DMCMC output: samples [num, *shape] (model range), NFE per sample with the start-up amortised in,
    σ_start [num] (where each sample's finisher started), classifier evaluations per sample, diagnostics."""

    samples: Tensor
    nfe_per_sample: float
    sigma_start: Tensor
    classifier_evals_per_sample: float
    info: dict = field(default_factory=dict)


def _heap_trimmer() -> Callable[[], None]:
    """glibc's malloc_trim(0) (a no-op elsewhere): returns freed heap to the OS so streamed runs stay flat in memory."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


def run_sampler(
    name,
    denoiser,
    x,
    steps,
    schedule: Schedule,
    *,
    process,
    sigma_min,
    sigma_max,
    generator,
    class_labels,
    options=None,
) -> tuple[Tensor, float]:
    """`name` from `sigma_max` (a float, or [B] per sample) to 0 on `schedule`'s tables; (x, NFE per sample)."""
    spec = get_sampler(name)
    kw = {"process": process, "generator": generator, **(options or {})}
    groups = schedule.groups(
        steps, default=spec.default_schedule, process=process, sigma_min=sigma_min, sigma_max=sigma_max
    )
    out, nfe = torch.empty_like(x), 0.0
    for rows, table in groups:
        xs = x if rows is None else x[rows.to(x.device)]
        if class_labels is not None:
            kw["class_labels"] = class_labels if rows is None else class_labels[rows.to(class_labels.device)]
        res = spec.fn(denoiser, xs, table.to(x.device, x.dtype), **kw)
        if rows is None:
            return res.x, float(res.nfe)
        out[rows.to(x.device)] = res.x
        nfe += float(res.nfe) * len(rows) / x.shape[0]
    return out, nfe


class GibbsKernel:
    """One Denoising Langevin Gibbs step on (x, σ) (Kim & Ye 2022, Alg. 1): a Langevin move on x at σ,
    x' = x + η/2·∇log p_σ(x) + √η·z (ULA, or MALA with a Metropolis test), then σ ← argmax or a draw of p(σ | x').

    The score is (D(x, σ) − x)/σ² through a `CountingDenoiser` (`calls`); `estimator_calls` counts p(σ | x).
    """

    def __init__(self, denoiser: CountingDenoiser, estimator, levels: Tensor, cfg: DLGConfig, generator, log_density):
        self.D, self.estimator, self.levels, self.cfg = denoiser, estimator, levels, cfg
        self.gen, self.log_density = generator, log_density
        self.estimator_calls, self.accepted, self.proposed = 0, 0.0, 0

    def score(self, x: Tensor, sigma: Tensor) -> Tensor:
        return (self.D(x, sigma) - x) / bcast(sigma, x) ** 2

    def sigma_index(self, x: Tensor) -> Tensor:
        """σ ← argmax p(σ | x) (the reference) or a draw from it, as an index into the levels."""
        self.estimator_calls += 1
        lp = self.estimator.log_probs(x).to(self.levels.device)
        if self.cfg.sigma_update == "argmax":
            return lp.argmax(1)
        return torch.multinomial(lp.double().exp(), 1, generator=self.gen).squeeze(1)

    def __call__(self, x: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        sig = self.levels[idx].to(x.dtype)
        eta = torch.full_like(sig, float(cfg.eta)) if cfg.eta_schedule == "constant" else float(cfg.eta) * sig**2
        eta_b = bcast(eta, x)
        s_x = self.score(x, sig)
        mean_fwd = x + 0.5 * eta_b * s_x
        prop = mean_fwd + eta_b.sqrt() * noise_like(x, self.gen)
        if cfg.kernel == "mala":
            s_p = self.score(prop, sig)
            mean_bwd = prop + 0.5 * eta_b * s_p
            log_q_fwd = -((prop - mean_fwd) ** 2).flatten(1).sum(1) / (2 * eta)
            log_q_bwd = -((x - mean_bwd) ** 2).flatten(1).sum(1) / (2 * eta)
            if self.log_density is not None:
                log_ratio = (self.log_density(prop, sig) - self.log_density(x, sig)).to(x.dtype)
            else:  # trapezoid line integral of the score along prop − x
                log_ratio = (0.5 * (s_x + s_p) * (prop - x)).flatten(1).sum(1)
            log_alpha = (log_ratio + log_q_bwd - log_q_fwd).clamp(max=0.0)
            u = torch.rand(log_alpha.shape, generator=self.gen, dtype=x.dtype, device=x.device)
            acc = u.log() < log_alpha
            x = torch.where(bcast(acc, x), prop, x)
            self.accepted += float(acc.float().sum())
            self.proposed += acc.numel()
        else:
            x = prop
        return x, self.sigma_index(x)


class DLGRun:
    """The DLG driver: start-up, then rounds of `skip` Gibbs steps whose least-noisy state each chain hands to the
    finisher (Kim & Ye 2022, Alg. 1 with the official code's start-up). Iterating yields each round's
    (samples, σ_start, labels or None), the last round cut to `num`; `result()` then gives the costs."""

    def __init__(
        self,
        denoiser,
        estimator: NoiseLevelEstimator,
        num: int,
        config: DLGConfig | None = None,
        *,
        process: Process | None = None,
        generator: torch.Generator | None = None,
        device="cpu",
        callback: Callable[[dict], None] | None = None,
        log_density: Callable[[Tensor, Tensor], Tensor] | None = None,
        class_labels: Tensor | None = None,
        dtype: torch.dtype = torch.float32,
        schedule: Schedule | None = None,
        streaming: bool = False,
    ):
        cfg = self.cfg = (config or DLGConfig()).validate()
        if int(num) < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        self.shape = denoiser.data_shape
        if self.shape is None:
            raise ValueError("the denoiser does not know its data shape (data_shape)")
        self.num, self.device, self.dtype, self.callback = int(num), device, dtype, callback
        self.denoiser, self.streaming = denoiser, streaming
        self.process = process if process is not None else denoiser.process
        self.gen = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
        schedule = schedule if schedule is not None else Schedule()
        if cfg.finisher_schedule is not None:  # the config's finisher spacing (a name or σ list) wins
            schedule = replace(schedule, spacing=Schedule.parse(cfg.finisher_schedule).spacing)
        self.schedule = schedule
        estimator.to(device)
        self.levels = estimator.levels.to(device, torch.float64)
        proc = self.process
        top = schedule.sigma_max if schedule.sigma_max is not None else (proc or denoiser).sigma_max
        self.sigma_max = float(min(top, proc.sigma_max) if proc is not None else top)
        if proc is not None and float(self.levels.max()) > proc.sigma_max * (1 + 1e-6):
            raise ValueError(
                f"the estimator's largest σ {float(self.levels.max()):g} exceeds the model's σ_max {proc.sigma_max:g}"
            )
        tweedie = float(schedule.sigma_min if schedule.sigma_min is not None else cfg.tweedie_sigma)
        self.tweedie = max(tweedie, float(proc.sigma_min) * (1 + 1e-6)) if proc is not None else tweedie
        if log_density is None and cfg.kernel == "mala" and denoiser.has_log_density:
            log_density = denoiser.log_density
        self.chains = min(int(cfg.chains), self.num)
        self.rounds = math.ceil(self.num / self.chains)
        self.labels = class_labels[: self.chains] if class_labels is not None else None
        self.D = CountingDenoiser(denoiser, self.labels)
        self.kernel = GibbsKernel(self.D, estimator, self.levels, cfg, self.gen, log_density)
        self.startup_nfe = self.startup_estimator = 0.0
        self.finisher_nfe, self.chain_nfe = 0.0, 0
        self.idx = None

    def _integrate(self, name, x, steps, sigma_max, spacing_from_schedule: bool, options=None):
        sched = self.schedule if spacing_from_schedule else replace(self.schedule, spacing=None)
        return run_sampler(
            name,
            self.denoiser,
            x,
            steps,
            sched,
            process=self.process,
            sigma_min=self.tweedie,
            sigma_max=sigma_max,
            generator=self.gen,
            class_labels=self.labels,
            options=options,
        )

    @torch.no_grad()
    def startup(self) -> tuple[Tensor, Tensor]:
        """One full `init_sampler` sample per chain from σ_max, + N(0, init_noise²), σ from the estimator, burn-in."""
        cfg, C = self.cfg, self.chains
        x = self.sigma_max * torch.randn((C, *self.shape), generator=self.gen, dtype=self.dtype, device=self.device)
        x, init_nfe = self._integrate(cfg.init_sampler, x, cfg.init_steps, self.sigma_max, False)
        x = x + float(cfg.init_noise) * noise_like(x, self.gen)
        idx = self.kernel.sigma_index(x)
        for _ in range(int(cfg.burn_in)):
            x, idx = self.kernel(x, idx)
        self.startup_nfe = init_nfe + self.D.calls
        self.startup_estimator = self.kernel.estimator_calls
        if self.callback is not None:
            self.callback({"stage": "startup", "x": x, "sigma": self.levels[idx]})
        return x, idx

    @torch.no_grad()
    def next_round(self, x: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """`skip` Gibbs steps on every chain; each chain's least-noisy state among them (and the carried-in one)
        goes to the finisher (ties: the latest). Returns (samples, σ_start, chain x, chain σ index)."""
        cfg = self.cfg
        calls = self.D.calls
        if cfg.include_carried:
            best_x, best_idx = x.clone(), idx.clone()
        for k in range(int(cfg.skip)):
            x, idx = self.kernel(x, idx)
            if k == 0 and not cfg.include_carried:
                best_x, best_idx = x.clone(), idx.clone()
            else:
                take = idx >= best_idx  # larger index = smaller σ; ties go to the latest state
                best_x = torch.where(bcast(take, x), x, best_x)
                best_idx = torch.where(take, idx, best_idx)
        self.chain_nfe += self.D.calls - calls
        sigma_start = self.levels[best_idx]
        smax = sigma_start.clamp(min=self.tweedie * 1.0001).clamp(max=self.sigma_max)
        out, nfe = self._integrate(cfg.finisher, best_x, cfg.finisher_steps, smax, True, cfg.finisher_options)
        self.finisher_nfe += nfe
        self.idx = idx
        return out, sigma_start, x, idx

    def __iter__(self):
        C = self.chains
        x, idx = self.startup()
        trim_heap = _heap_trimmer() if self.streaming else None
        for r in range(self.rounds):
            out, sigma_start, x, idx = self.next_round(x, idx)
            keep = min(C, self.num - r * C)
            yield out[:keep], sigma_start[:keep], None if self.labels is None else self.labels[:keep]
            if trim_heap is not None and r % 10 == 9:  # every 10th round: a trim costs ~0.1 s
                trim_heap()
            if self.callback is not None:
                self.callback({"stage": "round", "round": r, "x": out, "sigma": sigma_start, "chain_x": x})

    def result(self, samples: Tensor, sigma_start: Tensor) -> DMCMCResult:
        """Costs per sample: all chains' work (start-up, Gibbs, finisher) divided over the `num` samples kept."""
        C, num, rounds, kernel = self.chains, self.num, self.rounds, self.kernel
        total_nfe = C * (self.startup_nfe + self.chain_nfe + self.finisher_nfe)
        info = {
            "chains": C,
            "rounds": rounds,
            "startup_nfe_per_chain": self.startup_nfe,
            "startup_classifier_evals_per_chain": self.startup_estimator,
            "gibbs_nfe_per_output": self.chain_nfe / rounds,
            "finisher_nfe_per_output": self.finisher_nfe / rounds,
            "amortised_startup_nfe": C * self.startup_nfe / num,
            "acceptance_rate": kernel.accepted / kernel.proposed if kernel.proposed else None,
            "sigma_start_median": float(sigma_start.median()),
            "final_sigma_index": self.idx.cpu(),
            "levels": self.levels.numel(),
            "config": asdict(self.cfg),
        }
        if self.labels is not None:  # output i comes from chain i mod C and carries that chain's label
            info["labels"] = self.labels.cpu().repeat(rounds)[:num]
        return DMCMCResult(samples, total_nfe / num, sigma_start, C * kernel.estimator_calls / num, info)


@torch.no_grad()
def sample_dlg(
    denoiser,
    estimator: NoiseLevelEstimator,
    num: int,
    config: DLGConfig | None = None,
    *,
    process: Process | None = None,
    generator: torch.Generator | None = None,
    device="cpu",
    callback: Callable[[dict], None] | None = None,
    log_density: Callable[[Tensor, Tensor], Tensor] | None = None,
    class_labels: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    sink: Callable[[Tensor, Tensor], None] | None = None,
    schedule: Schedule | None = None,
) -> DMCMCResult:
    """Denoising Langevin Gibbs + an integrator (Kim & Ye 2022, Alg. 1): `DLGRun` run to the end.

    Output i comes from chain i mod chains. MALA's `log_density(x, σ)` defaults to the denoiser's own (the
    protocol's optional `log_density`), else the trapezoid line integral of the score. `schedule` sets the
    finisher's spacing (default `config.finisher_schedule`), ρ and σ range (σ_min replaces `tweedie_sigma`).
    With `sink(samples, sigma_start)` each round is handed over and not kept (result `samples` is empty).
    """
    run = DLGRun(
        denoiser,
        estimator,
        num,
        config,
        process=process,
        generator=generator,
        device=device,
        callback=callback,
        log_density=log_density,
        class_labels=class_labels,
        dtype=dtype,
        schedule=schedule,
        streaming=sink is not None,
    )
    outputs, starts = [], []
    for x, sigma_start, _ in run:
        if sink is not None:
            sink(x, sigma_start)
        else:
            outputs.append(x.cpu())
        starts.append(sigma_start.cpu())
    samples = torch.cat(outputs) if outputs else torch.empty((0, *run.shape), dtype=dtype)
    return run.result(samples, torch.cat(starts))
