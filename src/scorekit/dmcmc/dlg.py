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
from .diagnostics import ChainDiagnostics
from .estimators import NoiseLevelEstimator, ResidualNoiseEstimator, estimator_cost


@dataclass
class DLGConfig:
    """Settings of Denoising Langevin Gibbs. The field defaults are scorekit's derived defaults (`plan_dlg` sizes
    chains and steps from a budget); `DLGConfig.reference(dataset)` is the official code's setting.

    chains: persistent chains (memory is bounded by this, not by the number of samples);
    skip: Gibbs steps per output; eta: Langevin step (constant, or the factor c of η = c·σ² with
    eta_schedule="sigma2"); adapt_target: MALA acceptance rate the step is adapted to during burn-in (None: η
    fixed) with `adapt_steps` MALA steps on the first `adapt_chains` chains (their cost shared by all);
    sigma_update: "argmax" (reference), "sample" from p(σ | x), or "residual" (no classifier: σ̂² =
    mean((x − D(x, σ))²) from the Langevin step's own denoiser call); kernel: "ula" (reference) or "mala";
    sigma_floor/sigma_cap: chains live on levels sigma_floor ≤ σ ≤ sigma_cap (0/None: all); warmup: (steps, η)
    phases at constant η before burn_in (the reference's first phase); burn_in: Gibbs steps after the start-up
    sample (and warm-up);
    init_sampler/init_steps/init_schedule/init_options: the full start-up integrator; init_noise: std of the noise
    added to its output; finisher/finisher_steps/finisher_schedule: the integrator that denoises from σ_start
    (schedule: a name or σ list, None = the sampler's default); tweedie_sigma: the lowest σ of the finisher
    schedule, whose final step D(x, σ) is the Tweedie step; tweedie_step: an extra Tweedie step x ← D(x, σ) at
    this σ after the finisher (the reference's, +1 NFE; None: none); include_carried: whether the state carried
    in from the previous round competes for the next output; repeat_outputs: whether a state already handed to
    the finisher may be handed again (the reference: yes; default: never, so every output is distinct);
    ties: "latest" or "earliest" (the reference's strict <) among states of equal σ;
    finisher_options: extra keyword options of the finisher (e.g. rk45's rtol/atol).
    """

    chains: int = 256
    skip: int = 1
    eta: float = 0.5
    eta_schedule: str = "sigma2"
    adapt_target: float | None = 0.574
    adapt_steps: int = 16
    adapt_chains: int = 32
    sigma_update: str = "argmax"
    kernel: str = "ula"
    sigma_floor: float = 0.0
    sigma_cap: float | None = None
    warmup: tuple = ()
    burn_in: int = 10
    init_sampler: str = "dpmpp_2m"
    init_steps: int = 10
    init_schedule: str | None = "logsnr"
    init_options: dict = field(default_factory=dict)
    init_noise: float = 0.0
    finisher: str = "dpmpp_2m"
    finisher_steps: int = 3
    finisher_schedule: str | tuple[float, ...] | None = "logsnr"
    tweedie_sigma: float = 0.01
    tweedie_step: float | None = None
    include_carried: bool = False
    repeat_outputs: bool = False
    ties: str = "latest"
    finisher_options: dict = field(default_factory=dict)

    @classmethod
    def reference(cls, dataset: str = "cifar10", finisher: str = "edm_stochastic", **overrides) -> DLGConfig:
        """The official code's setting for `dataset` ("cifar10" or "celebahq"); see `dmcmc.reference`."""
        from .reference import reference_config

        return reference_config(cls, dataset, finisher, **overrides)

    def validate(self) -> DLGConfig:
        if int(self.chains) < 1:
            raise ValueError(f"DLG needs at least one chain, got chains={self.chains}")
        if int(self.skip) < 1:
            raise ValueError(f"DLG skip must be >= 1, got {self.skip}")
        if not (float(self.eta) > 0 and math.isfinite(float(self.eta))):
            raise ValueError(f"DLG step size eta must be positive, got {self.eta}")
        if self.eta_schedule not in ("constant", "sigma2"):
            raise ValueError(f"unknown eta schedule {self.eta_schedule!r} (choose constant or sigma2)")
        if self.adapt_target is not None and not 0 < float(self.adapt_target) < 1:
            raise ValueError(f"adapt_target must be in (0, 1), got {self.adapt_target}")
        if self.sigma_update not in ("argmax", "sample", "residual"):
            raise ValueError(f"unknown sigma update {self.sigma_update!r} (choose argmax, sample or residual)")
        if self.kernel not in ("ula", "mala"):
            raise ValueError(f"unknown DLG kernel {self.kernel!r} (choose ula or mala)")
        if self.ties not in ("latest", "earliest"):
            raise ValueError(f"unknown tie rule {self.ties!r} (choose latest or earliest)")
        if int(self.burn_in) < 0 or int(self.init_steps) < 1 or int(self.finisher_steps) < 1:
            raise ValueError("burn_in must be >= 0 and init/finisher steps >= 1")
        if int(self.adapt_steps) < 0 or int(self.adapt_chains) < 1:
            raise ValueError("adapt_steps must be >= 0 and adapt_chains >= 1")
        for phase in self.warmup:
            if len(phase) != 2 or int(phase[0]) < 0 or not float(phase[1]) > 0:
                raise ValueError(f"warm-up phases are (steps >= 0, eta > 0), got {phase!r}")
        if float(self.init_noise) < 0 or not float(self.tweedie_sigma) > 0 or float(self.sigma_floor) < 0:
            raise ValueError("init_noise and sigma_floor must be >= 0 and tweedie_sigma > 0")
        if self.sigma_cap is not None and not float(self.sigma_cap) >= float(self.sigma_floor):
            raise ValueError(f"sigma_cap must be >= sigma_floor, got {self.sigma_cap} < {self.sigma_floor}")
        if self.tweedie_step is not None and not float(self.tweedie_step) > 0:
            raise ValueError(f"tweedie_step must be > 0, got {self.tweedie_step}")
        get_sampler(self.init_sampler).check_options(self.init_options)
        get_sampler(self.finisher).check_options(self.finisher_options)
        for sched in (self.finisher_schedule, self.init_schedule):
            if sched is not None:
                Schedule.parse(sched)
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
    chain: Tensor | None = None


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
    x' = x + η/2·∇log p_σ(x) + √η·z (ULA, or MALA with a Metropolis test), then σ ← argmax or a draw of p(σ | x'),
    or (sigma_update="residual") the residual estimate σ̂² = mean((x − D(x, σ))²) of the step's own D call.

    The score is (D(x, σ) − x)/σ² through a `CountingDenoiser` (`calls`); `estimator_calls` counts p(σ | x).
    `adapt(steps)` runs MALA steps that tune η's factor to `cfg.adapt_target` (Robbins–Monro on log η with the
    mean acceptance probability of all chains), using `log_density` or the trapezoid line integral of the score.
    `version` counts the moves of each chain (a rejected MALA proposal does not move it).
    """

    def __init__(self, denoiser: CountingDenoiser, estimator, levels: Tensor, cfg: DLGConfig, generator, log_density):
        self.D, self.estimator, self.levels, self.cfg = denoiser, estimator, levels, cfg
        self.gen, self.log_density = generator, log_density
        self.estimator_calls, self.accepted, self.proposed = 0, 0.0, 0
        self.eta = float(cfg.eta)
        self.adapt_trace: list[tuple[float, float]] = []  # (η factor, mean acceptance probability) per step
        self.version: Tensor | None = None
        floor = float(cfg.sigma_floor)
        self.top = int((levels >= floor * (1 - 1e-9)).sum()) - 1 if floor > 0 else levels.numel() - 1
        self.top = max(self.top, 0)  # largest allowed index (levels decrease)
        cap = cfg.sigma_cap
        self.bottom = int((levels > float(cap) * (1 + 1e-9)).sum()) if cap is not None else 0
        self.bottom = min(self.bottom, self.top)  # smallest allowed index
        self._resid: Tensor | None = None

    def score(self, x: Tensor, sigma: Tensor) -> Tensor:
        d = self.D(x, sigma)
        if self.cfg.sigma_update == "residual":
            self._resid = (x - d).flatten(1).pow(2).mean(1).double().sqrt()
        return (d - x) / bcast(sigma, x) ** 2

    def nearest(self, sigma: Tensor) -> Tensor:
        """Index of the level nearest to σ in log space (clamped to the σ floor)."""
        lv = self.levels.log()
        i = (sigma.double().clamp(min=1e-12).log().to(lv.device)[:, None] - lv[None]).abs().argmin(1)
        return i.clamp(min=self.bottom, max=self.top)

    def sigma_index(self, x: Tensor, sig: Tensor | None = None) -> Tensor:
        """σ ← argmax p(σ | x) (the reference), a draw from it, or the residual fixed-point estimate; an index
        into the levels, at most `top` (the σ floor)."""
        if self.cfg.sigma_update == "residual":
            if sig is None or self._resid is None:  # a fresh estimate: two fixed-point iterations from rms(x)
                s = x.flatten(1).pow(2).mean(1).double().sqrt().clamp(max=float(self.levels[0]))
                for _ in range(2):
                    s = self.levels[self.nearest(s)]
                    d = self.D(x, s.to(x.dtype))
                    s = (x - d).flatten(1).pow(2).mean(1).double().sqrt()
                return self.nearest(s)
            return self.nearest(self._resid)
        self.estimator_calls += 1
        lp = self.estimator.log_probs(x).to(self.levels.device)
        lp = lp[:, self.bottom : self.top + 1]
        if self.cfg.sigma_update == "argmax":
            return lp.argmax(1) + self.bottom
        return torch.multinomial(torch.softmax(lp.double(), 1), 1, generator=self.gen).squeeze(1) + self.bottom

    def _eta(self, sig: Tensor, eta: float) -> Tensor:
        return torch.full_like(sig, eta) if self.cfg.eta_schedule == "constant" else eta * sig**2

    def __call__(
        self, x: Tensor, idx: Tensor, *, mala: bool | None = None, eta: float | None = None
    ) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        mala = cfg.kernel == "mala" if mala is None else mala
        sig = self.levels[idx].to(x.dtype)
        eta_t = self._eta(sig, self.eta if eta is None else float(eta))
        eta_b = bcast(eta_t, x)
        s_x = self.score(x, sig)
        resid = self._resid
        mean_fwd = x + 0.5 * eta_b * s_x
        prop = mean_fwd + eta_b.sqrt() * noise_like(x, self.gen)
        if self.version is None or self.version.shape[0] != x.shape[0]:
            self.version = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        moved = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        if mala:
            s_p = self.score(prop, sig)
            mean_bwd = prop + 0.5 * eta_b * s_p
            log_q_fwd = -((prop - mean_fwd) ** 2).flatten(1).sum(1) / (2 * eta_t)
            log_q_bwd = -((x - mean_bwd) ** 2).flatten(1).sum(1) / (2 * eta_t)
            if self.log_density is not None:
                log_ratio = (self.log_density(prop, sig) - self.log_density(x, sig)).to(x.dtype)
            else:  # trapezoid line integral of the score along prop − x
                log_ratio = (0.5 * (s_x + s_p) * (prop - x)).flatten(1).sum(1)
            log_alpha = (log_ratio + log_q_bwd - log_q_fwd).clamp(max=0.0).nan_to_num(nan=-math.inf)
            self.last_alpha = float(log_alpha.exp().mean())
            u = torch.rand(log_alpha.shape, generator=self.gen, dtype=x.dtype, device=x.device)
            moved = u.log() < log_alpha
            x = torch.where(bcast(moved, x), prop, x)
            self.accepted += float(moved.float().sum())
            self.proposed += moved.numel()
            self._resid = resid
        else:
            x = prop
        self.version = self.version + moved.long()
        return x, self.sigma_index(x, sig)

    def adapt(self, x: Tensor, idx: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        """`steps` MALA steps that tune the step factor η to `cfg.adapt_target`: log η += γ_t (ᾱ − target),
        γ_t = 2/√(t + 1), ᾱ the mean acceptance probability over the chains."""
        target = float(self.cfg.adapt_target)
        for t in range(int(steps)):
            x, idx = self(x, idx, mala=True)
            self.adapt_trace.append((self.eta, self.last_alpha))
            self.eta = float(math.exp(math.log(self.eta) + 2.0 / math.sqrt(t + 1) * (self.last_alpha - target)))
        return x, idx


class DLGRun:
    """The DLG driver: start-up, then rounds of `skip` Gibbs steps whose least-noisy state each chain hands to the
    finisher (Kim & Ye 2022, Alg. 1 with the official code's start-up). Iterating yields each round's
    (samples, σ_start, labels or None, chain ids), the outputs cut to `num`; `result()` then gives the costs.

    Unless `repeat_outputs`, a chain emits in a round only if its chosen state was not handed to the finisher
    before (a carried-in state may compete, never twice; a MALA chain that rejected every move sits a round
    out), so every output is a distinct state. Chain diagnostics (distinct fraction, lag-1 and batch-means ESS)
    accumulate in `diagnostics`.
    """

    def __init__(
        self,
        denoiser,
        estimator: NoiseLevelEstimator | None,
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
        if schedule.spacing is None and cfg.finisher_schedule is not None:  # else the caller's spacing wins
            schedule = replace(schedule, spacing=Schedule.parse(cfg.finisher_schedule).spacing)
        self.schedule = schedule
        proc = self.process
        top = schedule.sigma_max if schedule.sigma_max is not None else (proc or denoiser).sigma_max
        self.sigma_max = float(min(top, proc.sigma_max) if proc is not None else top)
        if estimator is None:
            if cfg.sigma_update != "residual":
                raise ValueError("DLG needs a noise-level estimator (or sigma_update='residual')")
            estimator = ResidualNoiseEstimator(denoiser, sigma_max=self.sigma_max)
        estimator.to(device)
        self.estimator = estimator
        self.levels = estimator.levels.to(device, torch.float64)
        if proc is not None and float(self.levels.max()) > proc.sigma_max * (1 + 1e-6):
            raise ValueError(
                f"the estimator's largest σ {float(self.levels.max()):g} exceeds the model's σ_max {proc.sigma_max:g}"
            )
        tweedie = float(schedule.sigma_min if schedule.sigma_min is not None else cfg.tweedie_sigma)
        self.tweedie = max(tweedie, float(proc.sigma_min) * (1 + 1e-6)) if proc is not None else tweedie
        if log_density is None and (cfg.kernel == "mala" or cfg.adapt_target is not None) and denoiser.has_log_density:
            log_density = denoiser.log_density
        self.chains = min(int(cfg.chains), self.num)
        self.rounds = math.ceil(self.num / self.chains)  # rounds if every chain emits every round
        self.labels = class_labels[: self.chains] if class_labels is not None else None
        self.D = CountingDenoiser(denoiser, self.labels)
        self.kernel = GibbsKernel(self.D, estimator, self.levels, cfg, self.gen, log_density)
        self.startup_nfe = self.startup_estimator = 0.0
        self.init_nfe = 0.0
        self.gibbs_sample_nfe = self.finisher_sample_nfe = 0.0  # NFE summed over rows (chains or outputs)
        self.gibbs_estimator_rows = 0.0
        self.emitted = 0
        self.rounds_run = 0
        self.idx = None
        self.emitted_version = torch.full((self.chains,), -1, dtype=torch.long, device=device)
        self.diagnostics = ChainDiagnostics(int(math.prod(self.shape)), self.chains)

    def _integrate(self, name, x, steps, sigma_max, schedule: Schedule, options=None, labels=None):
        return run_sampler(
            name,
            self.denoiser,
            x,
            steps,
            schedule,
            process=self.process,
            sigma_min=self.tweedie,
            sigma_max=sigma_max,
            generator=self.gen,
            class_labels=labels,
            options=options,
        )

    @torch.no_grad()
    def startup(self) -> tuple[Tensor, Tensor]:
        """One full `init_sampler` sample per chain from σ_max, + N(0, init_noise²), σ from the estimator, the
        warm-up phases, then burn-in (adapting η when `adapt_target` is set)."""
        cfg, C = self.cfg, self.chains
        x = self.sigma_max * torch.randn((C, *self.shape), generator=self.gen, dtype=self.dtype, device=self.device)
        spacing = None if cfg.init_schedule is None else Schedule.parse(cfg.init_schedule).spacing
        sched = replace(self.schedule, spacing=spacing)
        x, init_nfe = self._integrate(
            cfg.init_sampler, x, cfg.init_steps, self.sigma_max, sched, cfg.init_options, self.labels
        )
        self.init_nfe = init_nfe
        if float(cfg.init_noise) > 0:
            x = x + float(cfg.init_noise) * noise_like(x, self.gen)
        idx = self.kernel.sigma_index(x)
        for steps, eta in cfg.warmup:
            for _ in range(int(steps)):
                x, idx = self.kernel(x, idx, mala=False, eta=float(eta))
        adapt_rows = adapt_est = 0.0
        if cfg.adapt_target is not None and int(cfg.adapt_steps) > 0:  # tune η on a few chains, then all use it
            a = min(int(cfg.adapt_chains), C)
            before, est_before = self.D.calls, self.kernel.estimator_calls
            xa, ia = self.kernel.adapt(x[:a], idx[:a], int(cfg.adapt_steps))
            x, idx = torch.cat([xa, x[a:]]), torch.cat([ia, idx[a:]])
            adapt_rows = (self.D.calls - before) * a / C
            adapt_est = (self.kernel.estimator_calls - est_before) * a / C
            self.D.calls, self.kernel.estimator_calls = before, est_before
            self.kernel.version = None
        for _ in range(int(cfg.burn_in)):
            x, idx = self.kernel(x, idx)
        self.startup_nfe = init_nfe + self.D.calls + adapt_rows
        self.startup_estimator = self.kernel.estimator_calls + adapt_est
        self.kernel.version = torch.zeros(C, dtype=torch.long, device=x.device)
        if self.callback is not None:
            self.callback({"stage": "startup", "x": x, "sigma": self.levels[idx]})
        return x, idx

    @torch.no_grad()
    def next_round(self, x: Tensor, idx: Tensor, want: int | None = None):
        """`skip` Gibbs steps on every chain; each chain's least-noisy state among them (and the carried-in one,
        if `include_carried` and not yet emitted) goes to the finisher (ties: `cfg.ties`). Only chains with a
        fresh state emit, at most `want` of them. Returns (samples, σ_start, chain ids, chain x, chain σ index)."""
        cfg, kernel = self.cfg, self.kernel
        calls, est_calls = self.D.calls, kernel.estimator_calls
        C = x.shape[0]
        if kernel.version is None:
            kernel.version = torch.zeros(C, dtype=torch.long, device=x.device)
        best_x, best_idx, best_ver = x.clone(), idx.clone(), kernel.version.clone()
        if not cfg.include_carried:
            best_idx = torch.full_like(idx, -1)  # the carried state never wins
        elif not cfg.repeat_outputs:  # it may compete only if it was not emitted already
            best_idx = torch.where(best_ver == self.emitted_version, torch.full_like(idx, -1), best_idx)
        for _ in range(int(cfg.skip)):
            x, idx = kernel(x, idx)
            # larger index = smaller σ
            take = idx >= best_idx if cfg.ties == "latest" else idx > best_idx
            if not cfg.repeat_outputs:  # a state already emitted (a rejected move) never wins
                take = take & (kernel.version != self.emitted_version)
            best_x = torch.where(bcast(take, x), x, best_x)
            best_idx = torch.where(take, idx, best_idx)
            best_ver = torch.where(take, kernel.version, best_ver)
        self.gibbs_sample_nfe += C * (self.D.calls - calls)
        self.gibbs_estimator_rows += C * (kernel.estimator_calls - est_calls)
        fresh = best_idx >= 0 if not cfg.repeat_outputs else torch.ones_like(best_idx, dtype=torch.bool)
        best_idx = best_idx.clamp(min=0)
        rows = fresh.nonzero().squeeze(1)
        if want is not None:
            rows = rows[: int(want)]
        self.emitted_version[rows] = best_ver[rows]
        sigma_start = self.levels[best_idx[rows]]
        smax = sigma_start.clamp(min=self.tweedie * 1.0001).clamp(max=self.sigma_max)
        labels = None if self.labels is None else self.labels[rows]
        if len(rows):
            out, nfe = self._integrate(
                cfg.finisher, best_x[rows], cfg.finisher_steps, smax, self.schedule, cfg.finisher_options, labels
            )
            if cfg.tweedie_step is not None:  # the reference's extra Tweedie step D(x, σ_t): +1 NFE
                t = torch.full((len(rows),), float(cfg.tweedie_step), dtype=out.dtype, device=out.device)
                out = self.D.denoiser(out, t) if labels is None else self.D.denoiser(out, t, labels)
                nfe += 1
        else:
            out, nfe = best_x[:0], 0.0
        self.finisher_sample_nfe += nfe * len(rows)
        self.idx = idx
        self.rounds_run += 1
        return out, sigma_start, rows, x, idx

    def __iter__(self):
        x, idx = self.startup()
        trim_heap = _heap_trimmer() if self.streaming else None
        max_rounds = 20 * self.rounds + 100
        r = 0
        while self.emitted < self.num:
            if r >= max_rounds:
                raise RuntimeError(
                    f"DLG made only {self.emitted} distinct outputs of {self.num} in {r} rounds "
                    "(MALA rejects nearly every move: a smaller eta)"
                )
            out, sigma_start, rows, x, idx = self.next_round(x, idx, self.num - self.emitted)
            self.emitted += len(rows)
            self.diagnostics.update(out, rows)
            lab = None if self.labels is None else self.labels[rows]
            yield out, sigma_start, lab, rows
            if trim_heap is not None and r % 10 == 9:  # every 10th round: a trim costs ~0.1 s
                trim_heap()
            if self.callback is not None:
                self.callback({"stage": "round", "round": r, "x": out, "sigma": sigma_start, "chain_x": x})
            r += 1

    def result(self, samples: Tensor, sigma_start: Tensor, chain: Tensor | None = None) -> DMCMCResult:
        """Costs per sample: all chains' work (start-up, Gibbs, finisher) divided over the `num` samples kept."""
        C, num, kernel = self.chains, max(self.emitted, 1), self.kernel
        startup = C * self.startup_nfe
        total_nfe = startup + self.gibbs_sample_nfe + self.finisher_sample_nfe
        clf_evals = C * self.startup_estimator + self.gibbs_estimator_rows
        clf_cost = estimator_cost(self.estimator, self.denoiser)
        info = {
            "chains": C,
            "rounds": self.rounds_run,
            "outputs_per_chain": num / C,
            "startup_nfe_per_chain": self.startup_nfe,
            "startup_integrator_nfe": self.init_nfe,
            "startup_classifier_evals_per_chain": self.startup_estimator,
            "gibbs_nfe_per_output": self.gibbs_sample_nfe / num,
            "finisher_nfe_per_output": self.finisher_sample_nfe / num,
            "amortised_startup_nfe": startup / num,
            "classifier_evals_per_output": clf_evals / num,
            "classifier_cost_per_eval": clf_cost,
            "classifier_denoiser_equivalent_nfe": clf_evals / num * clf_cost["relative_cost"],
            "acceptance_rate": kernel.accepted / kernel.proposed if kernel.proposed else None,
            "adapted_eta": kernel.eta,
            "adapt_trace": kernel.adapt_trace,
            "sigma_start_median": float(sigma_start.median()) if sigma_start.numel() else float("nan"),
            "final_sigma_index": None if self.idx is None else self.idx.cpu(),
            "levels": self.levels.numel(),
            "config": asdict(self.cfg),
            **self.diagnostics.summary(),
        }
        if self.labels is not None and chain is not None:  # each output carries its chain's label
            info["labels"] = self.labels.cpu()[chain.cpu()]
        return DMCMCResult(samples, total_nfe / num, sigma_start, clf_evals / num, info, chain)


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
    outputs, starts, chains = [], [], []
    for x, sigma_start, _, chain in run:
        if sink is not None:
            sink(x, sigma_start)
        else:
            outputs.append(x.cpu())
        starts.append(sigma_start.cpu())
        chains.append(chain.cpu())
    samples = torch.cat(outputs) if outputs else torch.empty((0, *run.shape), dtype=dtype)
    return run.result(samples, torch.cat(starts), torch.cat(chains))
