"""Denoising MCMC (Kim & Ye 2022, "Denoising MCMC for Accelerating Diffusion-Based Generative Models").

Run MCMC on the product space (x, σ) so that states stay near the data manifold, then hand the least-noisy
state of each window to any reverse-S/ODE integrator, which only has to denoise from that per-sample σ to 0.

Pieces (all in σ-space, so VE, VP, sub-VP and DDPM models work alike; the score is (D(x, σ) − x)/σ²):
- a noise-level estimator over a decreasing σ grid: `ExactNoisePosterior` (p(σ_k | x) ∝ p_{σ_k}(x) for a
  Gaussian mixture) or `TrainedNoiseClassifier` (a `kind="noise_classifier"` run directory);
- the Denoising Langevin Gibbs (DLG) kernel: x ← x + η/2·s(x, σ) + √η·z (ULA, or Metropolis-adjusted:
  MALA), then σ ← argmax (reference) or a draw from p(σ | x);
- any registered sampler as the finisher, its schedule rebuilt per sample from σ_start down to
  `tweedie_sigma`, whose last step x ← D(x, σ) is the Tweedie step of the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from ..analytic import GaussianMixture
from ..models.parameterization import bcast
from ..processes import Process
from .estimators import NoiseLevelEstimator


@dataclass
class DLGConfig:
    """Settings of Denoising Langevin Gibbs (defaults follow the reference where it has one).

    chains: persistent chains (memory is bounded by this, not by the number of samples);
    skip: Gibbs steps per output; eta: Langevin step (constant, or η·σ² with eta_schedule="sigma2");
    sigma_update: "argmax" (reference) or "sample" from p(σ | x); kernel: "ula" (reference) or "mala";
    burn_in: Gibbs steps after the start-up sample; init_sampler/init_steps: the full start-up integrator;
    init_noise: std of the noise added to its output; finisher/finisher_steps/finisher_schedule: the
    integrator that denoises from σ_start (schedule None = the sampler's default); tweedie_sigma: the
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
    finisher_schedule: str | None = None
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


class _Score:
    """Counts batched denoiser calls; σ-space score (D − x)/σ²."""

    def __init__(self, denoiser, class_labels=None):
        self.denoiser = denoiser
        self.class_labels = class_labels
        self.calls = 0

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        self.calls += 1
        den = self.denoiser(x, sigma) if self.class_labels is None else self.denoiser(x, sigma, self.class_labels)
        return (den - x) / bcast(sigma, x) ** 2


def _heap_trimmer() -> Callable[[], None]:
    """glibc's malloc_trim(0) where available (Linux), else a no-op. Returning freed heap to the OS every 10
    streamed DLG rounds keeps memory flat in the number of rounds: without it, peak RSS of a 256-D run with 1000
    chains grew from 530 MB (10 rounds) to 940 MB (300 rounds) from freed-but-retained blocks, not from a leak
    (benchmarks/dmcmc_memory.py)."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


def _default_log_density(denoiser):
    gmm = getattr(denoiser, "gmm", None)
    if isinstance(gmm, GaussianMixture):
        return lambda x, sigma: gmm.log_prob(x, sigma)
    return None


def _schedule_for(spec, schedule: str | None, process: Process | None) -> str:
    sched = schedule or spec.default_schedule
    if sched == "uniform_t" and process is None:
        return "log"  # the VE SDE of σ-space: uniform t is log-uniform σ
    return sched


def _run_sampler(
    name, denoiser, x, sigma_max, steps, schedule, process, sigma_min, generator, class_labels, options=None
):
    from ..samplers import get_sampler, get_sigmas

    spec = get_sampler(name)
    sched = _schedule_for(spec, schedule, process)
    sigmas = get_sigmas(sched, steps, process=process, sigma_min=sigma_min, sigma_max=sigma_max)
    kw = {"process": process, "generator": generator, **(options or {})}
    if class_labels is not None:
        kw["class_labels"] = class_labels
    out = spec.fn(denoiser, x, sigmas.to(x.device, x.dtype), **kw)
    return out.x, float(out.nfe)


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
) -> DMCMCResult:
    """Denoising Langevin Gibbs + an integrator (Kim & Ye 2022, Alg. 1 with the official code's start-up).

    Start-up (per chain, amortised): a full `init_sampler` sample from σ_max, + N(0, init_noise²), σ from the
    estimator, `burn_in` Gibbs steps. Then per output round: `skip` Gibbs steps on every chain; among the
    carried-in state and those states the one with the smallest σ goes to the finisher (ties: the latest).
    Samples are interleaved over chains: output i comes from chain i mod chains.
    `log_density(x, σ)` (for MALA) defaults to the exact one of a Gaussian-mixture denoiser; otherwise MALA
    uses the trapezoid line integral ½(s(x) + s(x'))·(x' − x) of the score.
    `sink(samples, sigma_start)`, if given, receives each round's outputs in order (the last round cut to `num`)
    and the samples are not kept: memory is then bounded by the chain count, not by `num`, and the result's
    `samples` is empty ([0, *shape]).
    """
    cfg = (config or DLGConfig()).validate()
    if int(num) < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    shape = getattr(denoiser, "data_shape", None)
    if shape is None:
        raise ValueError("the denoiser does not know its data shape (data_shape)")
    process = process if process is not None else getattr(denoiser, "process", None)
    gen = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    estimator.to(device)
    levels = estimator.levels.to(device, torch.float64)
    L = levels.numel()
    sigma_max = float(process.sigma_max if process is not None else getattr(denoiser, "sigma_max", 80.0))
    if process is not None and float(levels.max()) > process.sigma_max * (1 + 1e-6):
        raise ValueError(
            f"the estimator's largest σ {float(levels.max()):g} exceeds the model's σ_max {process.sigma_max:g}"
        )
    tweedie = float(cfg.tweedie_sigma)
    if process is not None:
        tweedie = max(tweedie, float(process.sigma_min) * (1 + 1e-6))
    if log_density is None and cfg.kernel == "mala":
        log_density = _default_log_density(denoiser)

    C = min(int(cfg.chains), int(num))
    rounds = math.ceil(int(num) / C)
    score = _Score(denoiser, class_labels[:C] if class_labels is not None else None)
    classifier_calls = 0
    accepted, proposed = 0.0, 0

    def randn_like(x):
        return torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)

    def update_sigma(x: Tensor) -> Tensor:
        nonlocal classifier_calls
        classifier_calls += 1
        lp = estimator.log_probs(x).to(device)
        if cfg.sigma_update == "argmax":
            return lp.argmax(1)
        return torch.multinomial(lp.double().exp(), 1, generator=gen).squeeze(1)

    def gibbs_step(x: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal accepted, proposed
        sig = levels[idx].to(x.dtype)
        eta = torch.full_like(sig, float(cfg.eta)) if cfg.eta_schedule == "constant" else float(cfg.eta) * sig**2
        eta_b = bcast(eta, x)
        s_x = score(x, sig)
        mean_fwd = x + 0.5 * eta_b * s_x
        prop = mean_fwd + eta_b.sqrt() * randn_like(x)
        if cfg.kernel == "mala":
            s_p = score(prop, sig)
            mean_bwd = prop + 0.5 * eta_b * s_p
            log_q_fwd = -((prop - mean_fwd) ** 2).flatten(1).sum(1) / (2 * eta)
            log_q_bwd = -((x - mean_bwd) ** 2).flatten(1).sum(1) / (2 * eta)
            if log_density is not None:
                log_ratio = (log_density(prop, sig) - log_density(x, sig)).to(x.dtype)
            else:
                log_ratio = (0.5 * (s_x + s_p) * (prop - x)).flatten(1).sum(1)
            log_alpha = (log_ratio + log_q_bwd - log_q_fwd).clamp(max=0.0)
            u = torch.rand(log_alpha.shape, generator=gen, dtype=x.dtype, device=x.device)
            acc = u.log() < log_alpha
            x = torch.where(bcast(acc, x), prop, x)
            accepted += float(acc.float().sum())
            proposed += acc.numel()
        else:
            x = prop
        return x, update_sigma(x)

    # --- start-up: one full integrator sample per chain, noise, σ from the estimator, burn-in -------------
    x = sigma_max * torch.randn((C, *shape), generator=gen, dtype=dtype, device=device)
    x, init_nfe = _run_sampler(
        cfg.init_sampler,
        denoiser,
        x,
        sigma_max,
        cfg.init_steps,
        None,
        process,
        tweedie,
        gen,
        score.class_labels,
    )
    x = x + float(cfg.init_noise) * randn_like(x)
    idx = update_sigma(x)
    for _ in range(int(cfg.burn_in)):
        x, idx = gibbs_step(x, idx)
    startup_nfe = init_nfe + score.calls
    startup_classifier = classifier_calls
    if callback is not None:
        callback({"stage": "startup", "x": x, "sigma": levels[idx]})

    # --- output rounds -----------------------------------------------------------------------------------
    outputs, starts, finisher_nfe = [], [], 0.0
    trim_heap = _heap_trimmer() if sink is not None else None
    chain_calls_before = score.calls
    for r in range(rounds):
        if cfg.include_carried:
            best_x, best_idx = x.clone(), idx.clone()
        for k in range(int(cfg.skip)):
            x, idx = gibbs_step(x, idx)
            if k == 0 and not cfg.include_carried:
                best_x, best_idx = x.clone(), idx.clone()
            else:
                take = idx >= best_idx  # larger index = smaller σ; ties go to the latest state
                best_x = torch.where(bcast(take, x), x, best_x)
                best_idx = torch.where(take, idx, best_idx)
        sigma_start = levels[best_idx]
        smax = sigma_start.clamp(min=tweedie * 1.0001)
        if process is not None:
            smax = smax.clamp(max=process.sigma_max)
        out, nfe = _run_sampler(
            cfg.finisher,
            denoiser,
            best_x,
            smax,
            cfg.finisher_steps,
            cfg.finisher_schedule,
            process,
            tweedie,
            gen,
            score.class_labels,
            cfg.finisher_options,
        )
        finisher_nfe += nfe
        keep = min(C, int(num) - r * C)
        if sink is not None:
            sink(out[:keep], sigma_start[:keep])
            if r % 10 == 9:  # a trim costs ~0.1 s in the 256-D memory benchmark: every 10th round, ~3 %
                trim_heap()
        else:
            outputs.append(out.cpu())
        starts.append(sigma_start.cpu())
        if callback is not None:
            callback({"stage": "round", "round": r, "x": out, "sigma": sigma_start, "chain_x": x})
    chain_nfe = score.calls - chain_calls_before  # per chain over all rounds
    if sink is None:
        samples = torch.stack(outputs, 0).reshape(rounds * C, *shape)[: int(num)]
    else:
        samples = torch.empty((0, *shape), dtype=dtype)
    sigma_start = torch.stack(starts, 0).reshape(-1)[: int(num)]
    # per-sample costs: all C chains' work divided over the `num` samples kept
    total_nfe = C * (startup_nfe + chain_nfe + finisher_nfe)
    total_clf = C * classifier_calls
    info = {
        "chains": C,
        "rounds": rounds,
        "startup_nfe_per_chain": startup_nfe,
        "startup_classifier_evals_per_chain": startup_classifier,
        "gibbs_nfe_per_output": chain_nfe / rounds,
        "finisher_nfe_per_output": finisher_nfe / rounds,
        "amortised_startup_nfe": C * startup_nfe / int(num),
        "acceptance_rate": accepted / proposed if proposed else None,
        "sigma_start_median": float(sigma_start.median()),
        "final_sigma_index": idx.cpu(),
        "levels": L,
        "config": asdict(cfg),
    }
    if score.class_labels is not None:  # output i comes from chain i mod C and carries that chain's label
        info["labels"] = score.class_labels.cpu().repeat(rounds)[: int(num)]
    return DMCMCResult(samples, total_nfe / int(num), sigma_start, total_clf / int(num), info)


def compare_heun_vs_dlg(
    denoiser,
    estimator: NoiseLevelEstimator,
    reference: Tensor,
    *,
    num: int,
    generator: torch.Generator | None = None,
    config: DLGConfig | None = None,
    metric: Callable[[Tensor, Tensor], float] | None = None,
    sampler: str = "heun",
    device="cpu",
) -> list[dict]:
    """Run DLG + `sampler`, then plain `sampler` from σ_max with the fewest steps whose NFE is at least
    DLG's amortised NFE. Rows: {method, steps, nfe, classifier_evals, metric, samples} (samples model range).
    `metric(samples, reference)` defaults to the sliced Wasserstein distance on flattened samples."""
    from ..metrics.vector import sliced_wasserstein
    from ..samplers import get_sampler, get_sigmas

    gen = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    cfg = config or DLGConfig(finisher=sampler)
    cfg.finisher = sampler
    metric = metric or (lambda a, b: sliced_wasserstein(a.flatten(1), b.flatten(1)))
    res = sample_dlg(denoiser, estimator, num, cfg, generator=gen, device=device)
    spec = get_sampler(sampler)
    steps = 1
    while spec.nfe is not None and spec.nfe(steps) < res.nfe_per_sample and steps < 1000:
        steps += 1
    process = getattr(denoiser, "process", None)
    smax = float(process.sigma_max if process is not None else denoiser.sigma_max)
    sched = _schedule_for(spec, None, process)
    sigmas = get_sigmas(sched, steps, process=process, sigma_max=smax)
    x = smax * torch.randn((num, *denoiser.data_shape), generator=gen, device=device)
    plain = spec.fn(denoiser, x, sigmas.to(x.device, x.dtype), process=process, generator=gen)
    ref = reference.float().cpu()
    return [
        {
            "method": sampler,
            "steps": steps,
            "nfe": float(plain.nfe),
            "classifier_evals": 0.0,
            "metric": float(metric(plain.x.cpu(), ref)),
            "samples": plain.x.cpu(),
        },
        {
            "method": f"dlg+{sampler}",
            "steps": cfg.finisher_steps,
            "nfe": res.nfe_per_sample,
            "classifier_evals": res.classifier_evals_per_sample,
            "metric": float(metric(res.samples, ref)),
            "samples": res.samples,
        },
    ]
