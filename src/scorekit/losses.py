"""Training objectives. An objective maps (denoiser, clean batch, generator) to a per-sample loss [B].

Every objective is written in σ-space (x = x0 + σ·n, the denoiser D(x, σ)); for a process with scale s(t)
the process-space score is ∇log p_t = (D − x)/(σ²·s), so a weighting λ(t) on the process-space score error
‖s_θ − ∇log p_{0t}‖² becomes λ(t)/(s·σ²)²·‖D − x0‖² on the denoiser. The denoising objectives are computed
in network-output space, w(σ)·c_out²·‖F − F*‖² with F* = (x0 − c_skip·x)/c_out (`NetworkDenoiser.target`),
which is exact and keeps the ε-loss of an ε-network bit-for-bit the plain MSE.

| name             | objective                                                                              |
| ---------------- | -------------------------------------------------------------------------------------- |
| `dsm`            | continuous-time DSM, t ~ U(t_min, 1), λ(t) = σ_t² (‖D − x0‖²/σ²) or the network-output MSE |
| `dsm_likelihood` | λ(t) = g(t)² (Song et al. 2021b, Thm 1), t importance-sampled ∝ g²/σ_t² (log σ uniform) |
| `dsm_single`     | DSM at one noise level σ (Vincent 2011)                                                 |
| `ncsn`           | multi-σ DSM, geometric levels, λ(σ) = σ² (Song & Ermon 2019, eq. 6)                      |
| `ism`            | implicit score matching ½‖s‖² + tr ∇s (Hyvärinen 2005, eq. 4), exact Jacobian trace      |
| `ssm`            | sliced score matching vᵀ∇s v + ½(vᵀs)² (Song et al. 2019, eq. 7; -VR form optional)     |
| `ddpm_simple`    | ‖ε − ε_θ‖² at uniform integer steps (Ho et al. 2020, eq. 14)                              |
| `ddpm_vlb`       | L_T + T·L_{t−1} at a uniform step (Ho et al. 2020, eq. 5), discretised Gaussian decoder  |
| `ddpm_hybrid`    | L_simple + λ·L_vlb with learned variances (Nichol & Dhariwal 2021, eq. 15–16)           |
| `edm`            | λ(σ) = (σ² + σ_d²)/(σ·σ_d)², ln σ ~ N(P_mean, P_std²) (Karras et al. 2022, eq. 8)         |

The classifiers' cross-entropy objectives (noise level, noisy classifier) are in `classifier_losses`; the DDPM
bound's pieces in `ddpm_bound` and the divergence estimators in `divergence`, shared with `likelihood`.

Losses are averaged over data dimensions (`reduction="mean"`, nats per dimension for the bounds) unless
`reduction="sum"` is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .ddpm_bound import ddpm_prior_kl, ddpm_vlb_term, denoise_for_bound
from .divergence import exact_divergence, probe_vectors
from .models.parameterization import NetworkDenoiser, bcast
from .processes import DDPM, Process

__all__ = [
    "Objective",
    "OBJECTIVES",
    "get_objective",
    "sample_training_sigma",
    "DenoisingObjective",
    "ImplicitScoreMatching",
    "SlicedScoreMatching",
    "DDPMBoundObjective",
    "EDMObjective",
    "DSMObjective",
    "geometric_sigmas",
    "likelihood_weighting_sampler",
]

REDUCTIONS = ("mean", "sum")


def sample_training_sigma(process: Process, n: int, generator=None, device=None, t_min: float | None = None) -> Tensor:
    """σ at training time: t ~ U(t_min, 1) mapped through σ(t); DDPM: integer steps uniform on {0, …, T−1}."""
    if isinstance(process, DDPM):
        i = torch.randint(0, process.num_steps, (n,), generator=generator)
        return process.sigmas[i].float().to(device)
    lo = process.t_min if t_min is None else t_min
    hi = process.t_max
    t = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    return process.sigma(t).float().to(device)


def _reduce(per_elem: Tensor, reduction: str) -> Tensor:
    flat = per_elem.flatten(1)
    return flat.mean(1) if reduction == "mean" else flat.sum(1)


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return reduction


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return v


def _need_network_denoiser(denoiser, objective: str) -> None:
    if not isinstance(denoiser, NetworkDenoiser):
        raise ValueError(f"objective {objective!r} trains a NetworkDenoiser, got {type(denoiser).__name__}")


class Objective:
    """Base class: `__call__(denoiser, x0, generator, class_labels=None) -> loss per sample [B]`."""

    name = "objective"

    def __call__(self, denoiser: NetworkDenoiser, x0: Tensor, generator=None, class_labels=None) -> Tensor:
        raise NotImplementedError

    def draw(self, n: int, sample_shape, generator, device=None, dtype=torch.float32) -> dict | None:
        """The random inputs of a batch of n, drawn up front (or None if the objective draws internally).

        Distributed training draws them for the *global* batch on every rank and passes each rank its slice
        as keyword arguments to `__call__`, so the result does not depend on the world size.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# ------------------------------------------------------------------------------------------------------------
# Denoising score matching family
# ------------------------------------------------------------------------------------------------------------
class DenoisingObjective(Objective):
    """E_σ E_n w(σ)·‖D(x0 + σn, σ) − x0‖², computed as w(σ)·c_out²·‖F − F*‖² (Vincent 2011; EDM eq. 2, 8).

    `sigma_sampler(n, generator) -> σ [n]` draws the training noise levels (default: `sample_training_sigma`);
    `weight(σ) -> [n]` is the weight on the denoiser error. `weight=None` regresses the raw network output
    (w = 1/c_out²), which is the ε-loss for an ε-network and the EDM loss for an `edm`-preconditioned one.
    """

    def __init__(
        self,
        process: Process,
        sigma_sampler: Callable | None = None,
        name: str = "dsm",
        weight: Callable[[Tensor], Tensor] | None = None,
        reduction: str = "mean",
    ):
        self.process = process
        self.sigma_sampler = sigma_sampler
        self.name = name
        self.weight = weight
        self.reduction = _check_reduction(reduction)

    def draw_sigma(self, n: int, generator, device, dtype) -> Tensor:
        if self.sigma_sampler is not None:
            return self.sigma_sampler(n, generator).to(device=device, dtype=dtype)
        return sample_training_sigma(self.process, n, generator, device).to(dtype)

    def draw(self, n, sample_shape, generator, device=None, dtype=torch.float32):
        sigma = self.draw_sigma(n, generator, device, dtype)
        noise = torch.randn((n, *sample_shape), generator=generator, dtype=dtype).to(device)
        return {"sigma": sigma, "noise": noise}

    def __call__(self, denoiser, x0, generator=None, class_labels=None, sigma=None, noise=None):
        _need_network_denoiser(denoiser, self.name)
        if sigma is None or noise is None:
            r = self.draw(x0.shape[0], x0.shape[1:], generator, x0.device, x0.dtype)
            sigma, noise = r["sigma"], r["noise"]
        sigma, noise = sigma.to(x0.device, x0.dtype), noise.to(x0.device, x0.dtype)
        x = x0 + bcast(sigma, x0) * noise
        target = denoiser.target(x0, x, sigma)
        out = denoiser.network_output(x, sigma, class_labels)
        err = (out.float() - target.float()).pow(2)
        loss = _reduce(err, self.reduction)
        weight = self.weight_for(denoiser)
        if weight is None:
            return loss
        _, c_out, _ = denoiser.precond.coefficients(sigma)
        return loss * (weight(sigma).float() * c_out.float() ** 2)

    def weight_for(self, denoiser):
        """The weight function on ‖D − x0‖² (None: plain network-output MSE)."""
        return self.weight


def _eps_weight(sigma: Tensor) -> Tensor:
    """λ(t) = σ_t² on the process-space score error ⇔ ‖D − x0‖²/σ² (the ε-MSE; independent of s(t))."""
    return sigma.reciprocal() ** 2


def geometric_sigmas(sigma_min: float, sigma_max: float, num_levels: int) -> Tensor:
    """σ_1 > … > σ_L geometric between σ_max and σ_min (Song & Ermon 2019, §4.2)."""
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), int(num_levels), dtype=torch.float64))


def likelihood_weighting_sampler(process: Process) -> tuple[Callable, float]:
    """Importance sampler for λ = g²: q(t) ∝ g(t)²/σ_t² = 2 d ln σ/dt, i.e. ln σ uniform; returns (sampler, Z).

    With σ_t the std of p_{0t} in process space, g² = 2s²σσ̇ (EDM eq. 4) so g²/σ_t² = 2σ̇/σ for every process;
    Z = ∫ g²/σ_t² dt = 2 ln(σ(1)/σ(t_min)) is the constant weight that makes the estimator unbiased.
    """
    lo = math.log(float(process.sigma(torch.tensor(process.t_min, dtype=torch.float64))))
    hi = math.log(float(process.sigma(torch.tensor(process.t_max, dtype=torch.float64))))

    def sampler(n, generator=None):
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.exp(lo + (hi - lo) * u)

    return sampler, 2.0 * (hi - lo)


def _uniform_t_likelihood_weight(process: Process) -> Callable[[Tensor], Tensor]:
    """Weight g²/(2σ_t²)·1/σ² on ‖D − x0‖² for t ~ U(t_min, 1) (no importance sampling)."""

    def weight(sigma: Tensor) -> Tensor:
        t = process.t_of_sigma(sigma.to(torch.float64))
        ratio = 2.0 * process.sigma_deriv(t) / process.sigma(t)  # g²/σ_t²
        return (0.5 * (process.t_max - process.t_min) * ratio / sigma.to(torch.float64) ** 2).to(sigma.dtype)

    return weight


class DSMObjective(DenoisingObjective):
    """Continuous-time DSM, t ~ U(t_min, 1) (Song et al. 2021, eq. 7) with `weighting`:

    - "sigma2": λ(t) = σ_t², i.e. ‖D − x0‖²/σ² (the ε-MSE, whatever the network predicts);
    - "output": the plain MSE of the network output F (λ set by the preconditioning: ε-MSE for `eps`,
      EDM's λ(σ) for `edm`/`v`);
    - "auto" (default): "output" for `eps`, `edm` and `v` networks (for `eps` the two are identical),
      "sigma2" for `score` and `x0` networks, whose raw output MSE would weight the noise levels badly.
    """

    WEIGHTINGS = ("auto", "sigma2", "output")

    def __init__(self, process, weighting: str = "auto", reduction: str = "mean"):
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f"dsm option weighting must be one of {', '.join(self.WEIGHTINGS)}, got {weighting!r}")
        super().__init__(process, name="dsm", weight=_eps_weight, reduction=reduction)
        self.weighting = weighting

    def weight_for(self, denoiser):
        mode = self.weighting
        if mode == "auto":
            mode = "sigma2" if denoiser.precond.parameterization in ("score", "x0") else "output"
        return _eps_weight if mode == "sigma2" else None


def _dsm(process, weighting="auto", reduction="mean", **kw):
    _no_options("dsm", kw)
    return DSMObjective(process, weighting, reduction)


def _ddpm_simple(process, reduction="mean", **kw):
    _no_options("ddpm_simple", kw)
    return DenoisingObjective(process, name="ddpm_simple", weight=_eps_weight, reduction=reduction)


def _dsm_likelihood(process, importance_sampling: bool = True, reduction="mean", **kw):
    """½·∫ g² E‖s_θ − ∇log p_{0t}‖² dt, the score-matching term of the NLL bound (Song et al. 2021b, Thm 1)."""
    _no_options("dsm_likelihood", kw)
    if importance_sampling:
        sampler, z = likelihood_weighting_sampler(process)
        return DenoisingObjective(
            process, sampler, name="dsm_likelihood", weight=lambda s: 0.5 * z * _eps_weight(s), reduction=reduction
        )

    def uniform_t(n, generator=None):
        t = process.t_min + (process.t_max - process.t_min) * torch.rand(n, generator=generator, dtype=torch.float64)
        return process.sigma(t)

    if isinstance(process, DDPM):
        raise ValueError("dsm_likelihood without importance sampling needs a continuous-time process, not ddpm")
    return DenoisingObjective(
        process, uniform_t, name="dsm_likelihood", weight=_uniform_t_likelihood_weight(process), reduction=reduction
    )


def _dsm_single(process, sigma: float = 0.1, reduction="mean", **kw):
    _no_options("dsm_single", kw)
    sig = _positive("dsm_single option sigma", sigma)
    return DenoisingObjective(
        process,
        lambda n, generator=None: torch.full((n,), sig, dtype=torch.float64),
        name="dsm_single",
        weight=_eps_weight,
        reduction=reduction,
    )


def _ncsn(process, sigma_min=None, sigma_max=None, num_levels: int = 10, reduction="mean", **kw):
    _no_options("ncsn", kw)
    smin = _positive("ncsn option sigma_min", process.sigma_min if sigma_min is None else sigma_min)
    smax = _positive("ncsn option sigma_max", process.sigma_max if sigma_max is None else sigma_max)
    if int(num_levels) < 2 or int(num_levels) != num_levels:
        raise ValueError(f"ncsn option num_levels must be an integer >= 2, got {num_levels!r}")
    if not smin < smax:
        raise ValueError(f"ncsn needs sigma_min < sigma_max, got {smin}, {smax}")
    levels = geometric_sigmas(smin, smax, int(num_levels))

    def sampler(n, generator=None):
        return levels[torch.randint(0, len(levels), (n,), generator=generator)]

    obj = DenoisingObjective(process, sampler, name="ncsn", weight=_eps_weight, reduction=reduction)
    obj.levels = levels
    return obj


class EDMObjective(DenoisingObjective):
    """EDM loss λ(σ)‖D − x0‖², λ = (σ² + σ_d²)/(σσ_d)², ln σ ~ N(P_mean, P_std²) (Karras et al. 2022, eq. 8).

    σ_d defaults to the denoiser's own `precond.sigma_data`; with `edm` preconditioning the loss is then the
    plain MSE of the network output.
    """

    def __init__(self, process, p_mean=-1.2, p_std=1.2, sigma_data=None, reduction="mean"):
        p_mean = float(p_mean)
        p_std = _positive("edm option p_std", p_std)
        self.sigma_data = None if sigma_data is None else _positive("edm option sigma_data", sigma_data)

        def sampler(n, generator=None):
            return torch.exp(p_mean + p_std * torch.randn(n, generator=generator))

        super().__init__(process, sampler, name="edm", weight=None, reduction=reduction)

    def weight_for(self, denoiser):
        sd = self.sigma_data if self.sigma_data is not None else denoiser.precond.sigma_data
        return lambda s: (s**2 + sd**2) / (s * sd) ** 2


def _edm(process, p_mean=-1.2, p_std=1.2, sigma_data=None, reduction="mean", **kw):
    _no_options("edm", kw)
    return EDMObjective(process, p_mean, p_std, sigma_data, reduction)


def _no_options(name: str, kw: dict) -> None:
    if kw:
        raise ValueError(f"objective {name!r} has no option(s) {', '.join(sorted(kw))}")


# ------------------------------------------------------------------------------------------------------------
# Score matching without noise targets: implicit (exact trace) and sliced
# ------------------------------------------------------------------------------------------------------------
def _score_sigma(objective, process: Process, sigma, n: int, generator, x0: Tensor) -> Tensor:
    if sigma is not None:
        return torch.full((n,), float(sigma), dtype=x0.dtype, device=x0.device)
    return sample_training_sigma(process, n, generator, x0.device).to(x0.dtype)


class ImplicitScoreMatching(Objective):
    """σ²·E[½‖s_θ(x, σ)‖² + tr ∇_x s_θ(x, σ)] on x ~ p_σ (Hyvärinen 2005, eq. 4), exact trace by autograd.

    With s = (D − x)/σ² this is ½‖D − x‖²/σ² + tr ∇_x D − d; its expectation equals the `dsm` loss up to a
    constant (Vincent 2011, eq. 11), so the minimiser is the same. σ is fixed (`sigma`) or drawn like `dsm`.
    The trace costs d backward rows (a d-fold replicated batch): for small dimension (`max_dim`).
    """

    name = "ism"

    def __init__(self, process: Process, sigma: float | None = None, max_dim: int = 128, reduction: str = "mean"):
        self.process = process
        self.sigma = None if sigma is None else _positive("ism option sigma", sigma)
        self.max_dim = int(max_dim)
        self.reduction = _check_reduction(reduction)

    def __call__(self, denoiser, x0, generator=None, class_labels=None):
        d = x0[0].numel()
        if d > self.max_dim:
            raise ValueError(
                f"ism computes an exact {d}-term Jacobian trace; the data has {d} > max_dim={self.max_dim} "
                "dimensions (use 'ssm', or raise max_dim)"
            )
        n = x0.shape[0]
        sigma = _score_sigma(self, self.process, self.sigma, n, generator, x0)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x = x0 + bcast(sigma, x0) * noise

        def fn(xx, ss, yy):
            return denoiser(xx, ss, yy)

        den, trace = exact_divergence(fn, x, sigma, class_labels, create_graph=True)
        sq = (den - x).pow(2).flatten(1).sum(1) / sigma**2
        loss = 0.5 * sq + trace - d
        return loss / d if self.reduction == "mean" else loss


class SlicedScoreMatching(Objective):
    """σ²·E_v[vᵀ∇_x s_θ v + ½(vᵀs_θ)²] on x ~ p_σ (Song et al. 2019, eq. 7); `variance_reduction`: ½‖s_θ‖².

    The sliced paper trains on clean data; a noise-conditional D(x, σ) is only defined for σ > 0, so here
    x = x0 + σn with σ fixed (`sigma`, e.g. small) or drawn like `dsm` (the noise-conditional form used in
    Song & Ermon 2019, §4.2). In D-terms: vᵀ(∇D − I)v + ½(vᵀ(D − x))²/σ². Projections v are Gaussian or
    Rademacher (E[vvᵀ] = I for both), `num_projections` per sample.
    """

    name = "ssm"

    def __init__(
        self,
        process: Process,
        num_projections: int = 1,
        sigma: float | None = None,
        noise: str = "gaussian",
        variance_reduction: bool = True,
        reduction: str = "mean",
    ):
        if int(num_projections) < 1 or int(num_projections) != num_projections:
            raise ValueError(f"ssm option num_projections must be a positive integer, got {num_projections!r}")
        if noise not in ("gaussian", "rademacher", "sphere"):
            raise ValueError(f"ssm option noise must be gaussian, rademacher or sphere, got {noise!r}")
        self.process = process
        self.num_projections = int(num_projections)
        self.sigma = None if sigma is None else _positive("ssm option sigma", sigma)
        self.noise = noise
        self.variance_reduction = bool(variance_reduction)
        self.reduction = _check_reduction(reduction)

    def __call__(self, denoiser, x0, generator=None, class_labels=None):
        n, m, d = x0.shape[0], self.num_projections, x0[0].numel()
        sigma = _score_sigma(self, self.process, self.sigma, n, generator, x0)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x = x0 + bcast(sigma, x0) * noise
        v = probe_vectors((m * n, *x0.shape[1:]), self.noise, generator, x0.dtype, x0.device)
        xr = x.repeat(m, *([1] * (x.ndim - 1))).detach().requires_grad_(True)
        sr = sigma.repeat(m)
        yr = None if class_labels is None else class_labels.repeat(m)
        den = denoiser(xr, sr, yr)
        (vjp,) = torch.autograd.grad((den * v).sum(), xr, create_graph=True)
        quad = (vjp * v).flatten(1).sum(1) - v.flatten(1).pow(2).sum(1)  # vᵀ(∇D − I)v
        resid = den - xr
        if self.variance_reduction:
            sq = resid.flatten(1).pow(2).sum(1)
        else:
            sq = (resid * v).flatten(1).sum(1).pow(2)
        loss = (quad + 0.5 * sq / sr**2).reshape(m, n).mean(0)
        return loss / d if self.reduction == "mean" else loss


def _ism(process, sigma=None, max_dim=128, reduction="mean", **kw):
    _no_options("ism", kw)
    return ImplicitScoreMatching(process, sigma=sigma, max_dim=max_dim, reduction=reduction)


def _ssm(process, num_projections=1, sigma=None, noise="gaussian", variance_reduction=True, reduction="mean", **kw):
    _no_options("ssm", kw)
    return SlicedScoreMatching(process, num_projections, sigma, noise, variance_reduction, reduction)


# ------------------------------------------------------------------------------------------------------------
# DDPM variational bound and the hybrid loss
# ------------------------------------------------------------------------------------------------------------
class DDPMBoundObjective(Objective):
    """L_T + T·L_{i} at a uniform step i (Ho et al. 2020, eq. 5), or L_simple + λ·(that) (`hybrid`).

    `variance`: "small" (β̃), "large" (β) or "learned" (the network returns 2C channels; the second C give
    v with Σ = exp(v' ln β + (1 − v') ln β̃), v' = (v + 1)/2, Nichol & Dhariwal 2021, eq. 15). In the hybrid
    loss the bound sees the mean with gradients stopped, so L_vlb trains only the variances (their eq. 16).
    `decoder`: "discretized" (8-bit images in [-1, 1], Ho et al. eq. 13), "gaussian" (continuous, vectors),
    or "auto" (discretized for [B, C, H, W] data).
    """

    def __init__(
        self,
        process: Process,
        hybrid: bool = False,
        variance: str = "small",
        lambda_vlb: float = 0.001,
        decoder: str = "auto",
        reduction: str = "mean",
    ):
        name = "ddpm_hybrid" if hybrid else "ddpm_vlb"
        if not isinstance(process, DDPM):
            raise ValueError(f"objective {name!r} needs the discrete ddpm process, got {process.name!r}")
        if variance not in ("small", "large", "learned"):
            raise ValueError(f"{name} option variance must be small, large or learned, got {variance!r}")
        if hybrid and variance != "learned":
            raise ValueError("ddpm_hybrid learns the reverse variances: variance must be 'learned'")
        if decoder not in ("auto", "discretized", "gaussian"):
            raise ValueError(f"{name} option decoder must be auto, discretized or gaussian, got {decoder!r}")
        self.name = name
        self.process = process
        self.hybrid = bool(hybrid)
        self.variance = variance
        self.lambda_vlb = float(lambda_vlb)
        self.decoder = decoder
        self.reduction = _check_reduction(reduction)

    def __call__(self, denoiser, x0, generator=None, class_labels=None):
        _need_network_denoiser(denoiser, self.name)
        proc = self.process
        n = x0.shape[0]
        d = x0[0].numel()
        decoder = self.decoder if self.decoder != "auto" else ("discretized" if x0.ndim == 4 else "gaussian")
        step = torch.randint(0, proc.num_steps, (n,), generator=generator)
        sigma = proc.sigmas[step].to(device=x0.device, dtype=x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x = x0 + bcast(sigma, x0) * noise
        den, log_var_frac = denoise_for_bound(denoiser, x, sigma, class_labels, self.variance)
        if self.hybrid:
            simple = _reduce((den - x0).pow(2), "sum") / sigma**2  # ε-MSE
            den_for_bound = den.detach()
        else:
            den_for_bound = den
        term = ddpm_vlb_term(proc, x0, x, step, den_for_bound, self.variance, log_var_frac, decoder)
        bound = proc.num_steps * term + ddpm_prior_kl(proc, x0)
        loss = simple + self.lambda_vlb * bound if self.hybrid else bound
        return loss / d if self.reduction == "mean" else loss


def _ddpm_vlb(process, variance="small", decoder="auto", reduction="mean", **kw):
    _no_options("ddpm_vlb", kw)
    return DDPMBoundObjective(process, hybrid=False, variance=variance, decoder=decoder, reduction=reduction)


def _ddpm_hybrid(process, lambda_vlb=0.001, decoder="auto", reduction="mean", **kw):
    _no_options("ddpm_hybrid", kw)
    return DDPMBoundObjective(
        process, hybrid=True, variance="learned", lambda_vlb=lambda_vlb, decoder=decoder, reduction=reduction
    )


OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "dsm": _dsm,
    "dsm_likelihood": _dsm_likelihood,
    "dsm_single": _dsm_single,
    "ncsn": _ncsn,
    "ism": _ism,
    "ssm": _ssm,
    "ddpm_simple": _ddpm_simple,
    "ddpm_vlb": _ddpm_vlb,
    "ddpm_hybrid": _ddpm_hybrid,
    "edm": _edm,
}


def get_objective(name: str, process: Process, **options) -> Objective:
    """The objective `name` (see the module table) for `process`; unknown names/options → ValueError."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r} (choose from {', '.join(sorted(OBJECTIVES))})")
    try:
        return OBJECTIVES[name](process, **options)
    except TypeError as e:
        raise ValueError(f"bad options for objective {name!r}: {e}") from None
