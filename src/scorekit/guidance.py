"""Classifier guidance and classifier-free guidance as transforms of the denoiser D(x, σ).

Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", Alg. 1–2) adds s·∇x log p(y | x_t)
to the score. In σ-space, where score = (D − x)/σ², that is

    D_s(x, σ) = D(x, σ) + σ²·s·∇_x̂ log p(y | x̂, σ),

so every sampler is guidable unchanged. Equivalently ε̂_s = (x̂ − D_s)/σ = ε̂ − σ·s·∇_x̂ log p: with
x_t = s(t)·x̂ and ∇_{x_t} = ∇_x̂ / s(t) this is the paper's ε̂ − √(1−ᾱ)·s·∇_{x_t} log p (Alg. 2), because
σ·s(t) = √(1−ᾱ) for VP/DDPM. The mean-shift form for DDPM ancestral sampling (Alg. 1, μ + s·Σ·∇ log p)
is `ancestral_mean_shift` (sampled by `sample_ancestral(..., mean_shift=True)`); it agrees with the score form
to first order in the step size.

Classifier-free guidance (Ho & Salimans 2022, eq. 6): D_w = (1 + w)·D(x, σ | y) − w·D(x, σ | ∅).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .analytic import GaussianMixture
from .checkpoint import CheckpointError, load_network, read_config
from .models.parameterization import Denoiser, Preconditioning, bcast, sigma_vector
from .processes import Process, get_process
from .samplers.ddpm import shifted_mean

__all__ = [
    "NoisyClassifier",
    "ExactClassifier",
    "TrainedClassifier",
    "load_classifier",
    "ClassifierGuidedDenoiser",
    "ClassifierFreeGuidedDenoiser",
    "ancestral_mean_shift",
    "parse_class_labels",
    "default_class_labels",
    "INPUT_MODES",
    "NOISE_BANDS",
]

INPUT_MODES = ("process", "normalized")
NOISE_BANDS = (0.0, 0.25, 0.5, 0.75, 1.0)  # edges in the process's time t


# --------------------------------------------------------------------------------------------------------
# classifiers p(y | x, σ)
# --------------------------------------------------------------------------------------------------------
class NoisyClassifier(nn.Module):
    """A classifier of noisy σ-space inputs: `log_probs(x, σ) -> [B, num_classes]` = log p(y | x, σ).

    `grad_log_prob(x, σ, y)` is ∇_x log p(y | x, σ) for one label per sample; by default through autograd.
    """

    num_classes: int = 0

    def log_probs(self, x: Tensor, sigma) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, sigma) -> Tensor:
        return self.log_probs(x, sigma)

    def grad_log_prob(self, x: Tensor, sigma, y: Tensor) -> Tensor:
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            lp = self.log_probs(x_in, sigma)
            picked = lp.gather(1, y.reshape(-1, 1).to(lp.device, torch.long)).sum()
            (grad,) = torch.autograd.grad(picked, x_in)
        return grad.to(x.dtype)


class ExactClassifier(NoisyClassifier):
    """p(y | x, σ) of a labelled Gaussian mixture, exactly: Σ_{k: label_k = y} r_k(x, σ) (float64 inside)."""

    def __init__(self, gmm: GaussianMixture):
        super().__init__()
        if gmm.labels is None:
            raise ValueError("the exact classifier needs a mixture whose SPEC has 'labels'")
        self.gmm = gmm
        self.num_classes = gmm.num_classes

    def log_probs(self, x: Tensor, sigma) -> Tensor:
        return self.gmm.class_log_posterior(x, sigma).to(x.dtype if x.is_floating_point() else torch.float64)

    def grad_log_prob(self, x: Tensor, sigma, y: Tensor) -> Tensor:
        """∇ log p(y | x, σ) = ∇ log p_σ(x | y) − ∇ log p_σ(x), in closed form."""
        return self.gmm.class_log_posterior_grad(x.detach(), sigma, y.reshape(-1).cpu()).to(x.dtype)


class TrainedClassifier(NoisyClassifier):
    """A network p_φ(y | x_t, t) wrapped to take σ-space inputs.

    The network sees the process-space input s(t)·x̂ (`input="process"`, as guided-diffusion's classifiers) or
    x̂/√(1 + σ²) (`input="normalized"`, the same thing for VP/DDPM, and bounded for VE), and c_noise computed
    as `Preconditioning.c_noise` does (`t`, `t999`, `sigma`, `log_sigma` or DDPM `index`). σ outside the
    process's range is clamped to it.
    """

    def __init__(
        self,
        net: nn.Module,
        process: Process | dict | str,
        num_classes: int,
        conditioning: str = "t999",
        input_mode: str = "process",
    ):
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"unknown classifier input {input_mode!r} (choose from {', '.join(INPUT_MODES)})")
        self.net = net
        self.process = get_process(process)
        self.precond = Preconditioning(self.process, "eps", conditioning)
        self.num_classes = int(num_classes)
        self.conditioning = conditioning
        self.input_mode = input_mode

    def network_input(self, x: Tensor, sigma) -> tuple[Tensor, Tensor]:
        """(scaled input, c_noise) the network is fed for σ-space x at noise level σ."""
        sig = sigma_vector(sigma, x).clamp(self.process.sigma_min, self.process.sigma_max)
        if self.input_mode == "process":
            s = self.process.scale_of_sigma(sig.to(torch.float64)).to(x.dtype)
        else:
            s = torch.rsqrt(1.0 + sig**2)
        return bcast(s, x) * x, self.precond.c_noise(sig)

    def logits(self, x: Tensor, sigma) -> Tensor:
        inp, c_noise = self.network_input(x, sigma)
        p = next(iter(self.net.parameters()), None)
        if p is not None and p.is_floating_point():
            inp, c_noise = inp.to(p.dtype), c_noise.to(p.dtype)
        return self.net(inp, c_noise)

    def log_probs(self, x: Tensor, sigma) -> Tensor:
        return F.log_softmax(self.logits(x, sigma).float(), dim=-1)

    def classifier_config(self) -> dict:
        return {
            "conditioning": self.conditioning,
            "num_classes": self.num_classes,
            "input": self.input_mode,
        }


def load_classifier(run_dir: str | Path, device="cpu", ema: bool = True) -> TrainedClassifier:
    """A kind="classifier" run directory (config.json + weights) as a `TrainedClassifier`."""
    cfg = read_config(run_dir)
    if cfg.get("kind") != "classifier":
        raise CheckpointError(f"{run_dir} holds a {cfg.get('kind', 'score_model')!r}, not a classifier")
    for key in ("network", "process", "classifier"):
        if key not in cfg:
            raise CheckpointError(f"{Path(run_dir) / 'config.json'}: no {key!r} section")
    c = cfg["classifier"]
    if "num_classes" not in c:
        raise CheckpointError(f"{Path(run_dir) / 'config.json'}: classifier section lacks num_classes")
    net = load_network(run_dir, ema=ema, device=device, config=cfg)
    clf = TrainedClassifier(
        net,
        get_process(cfg["process"]),
        int(c["num_classes"]),
        conditioning=c.get("conditioning", "t"),
        input_mode=c.get("input", "process"),
    )
    clf.data_config = cfg.get("data", {})
    return clf.to(device).eval()


# --------------------------------------------------------------------------------------------------------
# guided denoisers
# --------------------------------------------------------------------------------------------------------
def _labels_for(fixed, given, batch: int, device) -> Tensor:
    y = given if given is not None else fixed
    if y is None:
        raise ValueError("guidance needs class labels (fixed at construction or passed per call)")
    y = torch.as_tensor(y, dtype=torch.long, device=device)
    if y.ndim == 0:
        y = y.expand(batch)
    y = y.reshape(-1)
    if y.numel() != batch:
        raise ValueError(f"got {y.numel()} class labels for a batch of {batch}")
    return y


class _Wrapper(Denoiser):
    """A transform of a protocol denoiser: same process, data shape and σ range; labels are given per call."""

    def __init__(self, denoiser: Denoiser):
        super().__init__(denoiser.process, denoiser.data_shape)
        self.denoiser = denoiser
        self.sigma_min, self.sigma_max = denoiser.sigma_min, denoiser.sigma_max

    @property
    def labels_required(self) -> bool:
        return True

    @property
    def network_evals_per_call(self) -> float:
        return self.denoiser.network_evals_per_call

    def network_evals_at(self, sigma: float) -> float:
        return self.denoiser.network_evals_at(sigma)


_MODEL_NULL = object()  # ClassifierFreeGuidedDenoiser: take the model's own null label


class ClassifierGuidedDenoiser(_Wrapper):
    """D_s(x, σ | y) = D(x, σ) + σ²·s·∇_x log p(y | x, σ) (Dhariwal & Nichol 2021, Alg. 2 in σ-space).

    `scale` is a float or a [B] tensor; `class_labels` an int, a [B] tensor, or None to take them per call
    (samplers pass them through `CountingDenoiser`). The base denoiser is called without labels unless
    `condition_base=True` (guiding a class-conditional model).
    """

    def __init__(
        self,
        denoiser: Denoiser,
        classifier: NoisyClassifier,
        scale: float | Tensor = 1.0,
        class_labels: int | Tensor | None = None,
        condition_base: bool = False,
    ):
        super().__init__(denoiser)
        if not isinstance(scale, Tensor) and not math.isfinite(float(scale)):
            raise ValueError(f"guidance scale must be finite, got {scale}")
        self.classifier = classifier
        self.scale = scale
        self.class_labels = class_labels
        self.condition_base = bool(condition_base)
        self.num_classes = int(classifier.num_classes)

    def guidance_term(self, x: Tensor, sigma: Tensor, y: Tensor) -> Tensor:
        """σ²·s·∇_x log p(y | x, σ), the shift added to D."""
        grad = self.classifier.grad_log_prob(x, sigma, y)
        scale = torch.as_tensor(self.scale, dtype=x.dtype, device=x.device)
        scale = bcast(scale.expand(x.shape[0]), x) if scale.ndim else scale
        return bcast(sigma, x) ** 2 * scale * grad

    def base(self, x: Tensor, sigma, class_labels: Tensor | None = None) -> Tensor:
        """D(x, σ) before guidance (given the label when `condition_base`)."""
        y = _labels_for(self.class_labels, class_labels, x.shape[0], x.device)
        return self.denoiser(x, sigma, y if self.condition_base else None)

    def guidance_grad(self, x: Tensor, sigma, class_labels: Tensor | None = None) -> Tensor:
        """s·∇_x log p(y | x, σ) (what Alg. 1's mean shift multiplies by Σ; `sample_ancestral(mean_shift=True)`)."""
        y = _labels_for(self.class_labels, class_labels, x.shape[0], x.device)
        scale = torch.as_tensor(self.scale, dtype=x.dtype, device=x.device)
        scale = bcast(scale.expand(x.shape[0]), x) if scale.ndim else scale
        return scale * self.classifier.grad_log_prob(x, sigma_vector(sigma, x), y)

    def denoise(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None) -> Tensor:
        y = _labels_for(self.class_labels, class_labels, x.shape[0], x.device)
        base = self.denoiser(x, sigma, y if self.condition_base else None)
        if not isinstance(self.scale, Tensor) and float(self.scale) == 0.0:
            return base
        return base + self.guidance_term(x, sigma, y)


class ClassifierFreeGuidedDenoiser(_Wrapper):
    """D_w = (1 + w)·D(x, σ | y) − w·D(x, σ | ∅) (Ho & Salimans 2022, eq. 6); w = 0 is plain conditional.

    `null_label`: the label index the model was trained with for "no condition" (default: the model's
    `null_label`); both branches then run as one doubled batch. None calls the unconditional branch with
    class_labels=None (e.g. the exact mixture denoiser).

    `interval` = (σ_lo, σ_hi): guide only where σ_lo < σ ≤ σ_hi and use the plain conditional D(x, σ | y)
    elsewhere (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval improves sample and
    distribution quality"): guidance at high noise collapses the variety of the samples and at low noise does
    little but cost. Outside the interval only the conditional branch is evaluated; `network_evals` counts the
    network evaluations actually run (one per sample and branch); `network_evals_per_call` stays the upper bound 2
    and `network_evals_at(σ)` is 2 inside the interval and 1 outside, which budgets are planned with.
    """

    def __init__(
        self,
        cond_denoiser: Denoiser,
        w: float = 1.0,
        null_label=_MODEL_NULL,
        class_labels: int | Tensor | None = None,
        interval: tuple[float, float] | None = None,
    ):
        super().__init__(cond_denoiser)
        if null_label is _MODEL_NULL:
            null_label = cond_denoiser.null_label
        if not math.isfinite(float(w)):
            raise ValueError(f"classifier-free guidance weight must be finite, got {w}")
        if interval is not None:
            lo, hi = (float(v) for v in interval)
            if not (0.0 <= lo < hi) or math.isnan(hi):
                raise ValueError(f"a guidance interval needs 0 <= σ_lo < σ_hi, got ({lo:g}, {hi:g})")
            interval = (lo, hi)
        self.interval = interval
        self.network_evals = 0
        self.w = float(w)
        self._null_label = None if null_label is None else int(null_label)
        self.class_labels = class_labels
        self.num_classes = int(cond_denoiser.num_classes)

    @property
    def null_label(self) -> int | None:
        """The unconditional branch's label (the model's null label)."""
        return self._null_label

    @property
    def network_evals_per_call(self) -> float:
        """Two network evaluations (conditional and unconditional branch) per call unless w = 0."""
        return self.denoiser.network_evals_per_call * (1.0 if self.w == 0.0 else 2.0)

    def network_evals_at(self, sigma: float) -> float:
        """Both branches inside the guidance interval (everywhere without one), the conditional alone outside."""
        lo, hi = self.interval if self.interval is not None else (-math.inf, math.inf)
        guided = self.w != 0.0 and lo < float(sigma) <= hi
        return self.denoiser.network_evals_at(sigma) * (2.0 if guided else 1.0)

    def denoise(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None) -> Tensor:
        y = _labels_for(self.class_labels, class_labels, x.shape[0], x.device)
        if self.w == 0.0:
            self.network_evals += x.shape[0]
            return self.denoiser(x, sigma, y)
        if self.interval is None:
            return self._guided(x, sigma, y)
        lo, hi = self.interval
        inside = (sigma > lo) & (sigma <= hi)
        if bool(inside.all()):
            return self._guided(x, sigma, y)
        self.network_evals += x.shape[0]
        out = self.denoiser(x, sigma, y)
        if bool(inside.any()):
            out = out.clone()
            out[inside] = self._guided(x[inside], sigma[inside], y[inside], cond=out[inside])
        return out

    def _guided(self, x: Tensor, sigma: Tensor, y: Tensor, cond: Tensor | None = None) -> Tensor:
        """The guided D for a batch whose every σ is guided; `cond` is the conditional branch if already run."""
        self.network_evals += x.shape[0] * (1 if cond is not None else 2)
        if cond is not None:
            uncond = self.denoiser(x, sigma, None if self.null_label is None else torch.full_like(y, self.null_label))
        elif self.null_label is None:
            cond = self.denoiser(x, sigma, y)
            uncond = self.denoiser(x, sigma, None)
        else:
            both = self.denoiser(
                torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([y, torch.full_like(y, self.null_label)])
            )
            cond, uncond = both.chunk(2)
        return uncond + (1.0 + self.w) * (cond - uncond)


# --------------------------------------------------------------------------------------------------------
# the mean-shift form for ancestral sampling
# --------------------------------------------------------------------------------------------------------
def ancestral_mean_shift(
    classifier: NoisyClassifier,
    x: Tensor,
    sigma,
    sigma_next,
    mean: Tensor,
    class_labels,
    scale: float = 1.0,
    process: Process | None = None,
    variance: Tensor | None = None,
) -> Tensor:
    """Dhariwal & Nichol 2021, Alg. 1: μ ↦ μ + s·Σ·∇_{x_t} log p(y | x_t), in σ-space (`samplers.ddpm.shifted_mean`).

    x at σ, `mean` the ancestral step's mean at σ_next, `variance` its variance (default: the DDPM posterior
    variance σ_next²(σ² − σ_next²)/σ², i.e. β̃_t). `sample_ancestral(..., mean_shift=True)` samples with it.
    """
    sig = sigma_vector(sigma, x)
    sig_next = sigma_vector(sigma_next, x)
    y = _labels_for(None, class_labels, x.shape[0], x.device)
    if variance is None:
        variance = sig_next**2 * (sig**2 - sig_next**2) / sig**2
    variance = sigma_vector(variance, x) if not isinstance(variance, Tensor) or variance.ndim <= 1 else variance
    grad = float(scale) * classifier.grad_log_prob(x, sig, y)
    return shifted_mean(mean, grad, sig, sig_next, variance, process)


# --------------------------------------------------------------------------------------------------------
# class labels from text (`--class`)
# --------------------------------------------------------------------------------------------------------
def parse_class_labels(spec, num: int, num_classes: int, seed: int = 0, counts=None) -> Tensor:
    """`--class` → [num] labels: an int K, "random" (uniform, from `seed`), "balanced" (every class ⌊num/K⌋ times,
    the remainder distinct random classes, in a random order from `seed`: a sample whose class proportions are
    those of a balanced set, which takes the class-proportion noise out of a FID against one), "stratified" (each
    class in proportion to `counts`, the training set's class counts, by largest remainder, in a random order from
    `seed`; "balanced" when `counts` is None or equal), or a list "0,3,7" (cycled)."""
    if num < 1:
        raise ValueError(f"need at least one sample, got {num}")
    if num_classes < 1:
        raise ValueError("class labels need a model or classifier with classes")
    if isinstance(spec, int):
        values = [spec]
    elif isinstance(spec, (list, tuple)):
        values = [int(v) for v in spec]
    else:
        text = str(spec).strip().lower()
        if text == "random":
            g = torch.Generator().manual_seed(int(seed) + 7_777)
            return torch.randint(0, num_classes, (num,), generator=g)
        weights = _nonuniform_weights(counts, num_classes) if text == "stratified" else None
        if weights is not None:
            return _stratified_labels(num, weights, seed)
        if text in ("balanced", "stratified"):
            g = torch.Generator().manual_seed(int(seed) + 7_777)
            rest = torch.randperm(num_classes, generator=g)[: num % num_classes]
            labels = torch.cat([torch.arange(num_classes).repeat(num // num_classes), rest])
            return labels[torch.randperm(num, generator=g)]
        try:
            values = [int(v) for v in text.replace(" ", ",").split(",") if v != ""]
        except ValueError:
            raise ValueError(
                "--class must be an integer, a comma-separated list, 'random', 'balanced' or 'stratified'; "
                f"got {spec!r}"
            ) from None
        if not values:
            raise ValueError("--class is empty")
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        raise ValueError(f"class {bad[0]} is out of range: the model has classes 0..{num_classes - 1}")
    reps = -(-num // len(values))
    return torch.tensor(values * reps, dtype=torch.long)[:num]


def default_class_labels(num: int, num_classes: int, seed: int = 0, counts=None) -> Tensor:
    """Labels for sampling a class-conditional model without `--class`: each sample's class drawn independently
    with the training set's class frequencies (`counts`, the run's ``data.class_counts``), so the samples follow
    the data distribution Σ_c p(c) p(x | c) also for imbalanced data; uniform classes when the counts are equal
    or unknown (runs made before they were recorded), drawn exactly as before."""
    if num_classes < 1:
        raise ValueError("class labels need a model with classes")
    g = torch.Generator().manual_seed(int(seed))
    weights = _nonuniform_weights(counts, num_classes)
    if weights is None:
        return torch.randint(0, num_classes, (num,), generator=g)
    return torch.multinomial(weights, num, replacement=True, generator=g)


def _nonuniform_weights(counts, num_classes: int) -> Tensor | None:
    """`counts` normalised to class probabilities; None when they are absent or all equal (uniform classes)."""
    if counts is None:
        return None
    w = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if w.numel() != num_classes or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            f"class counts must be {num_classes} non-negative numbers with a positive sum, got {list(counts)!r}"
        )
    return None if bool((w == w[0]).all()) else w / w.sum()


def _stratified_labels(num: int, weights: Tensor, seed: int) -> Tensor:
    """num·p_c of each class rounded by largest remainder (ties to random classes), in a random order."""
    g = torch.Generator().manual_seed(int(seed) + 7_777)
    exact = weights * num
    base = exact.floor().long()
    short = num - int(base.sum())
    if short > 0:
        perm = torch.randperm(len(weights), generator=g)  # a random order among equal remainders
        order = torch.argsort((exact - base)[perm], descending=True, stable=True)
        base[perm[order[:short]]] += 1
    labels = torch.repeat_interleave(torch.arange(len(weights)), base)
    return labels[torch.randperm(num, generator=g)]
