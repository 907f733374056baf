"""Classifier guidance and classifier-free guidance as transforms of the denoiser D(x, σ).

Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", Alg. 1–2) adds s·∇x log p(y | x_t)
to the score. In σ-space, where score = (D − x)/σ², that is

    D_s(x, σ) = D(x, σ) + σ²·s·∇_x̂ log p(y | x̂, σ),

so every sampler is guidable unchanged. Equivalently ε̂_s = (x̂ − D_s)/σ = ε̂ − σ·s·∇_x̂ log p: with
x_t = s(t)·x̂ and ∇_{x_t} = ∇_x̂ / s(t) this is the paper's ε̂ − √(1−ᾱ)·s·∇_{x_t} log p (Alg. 2), because
σ·s(t) = √(1−ᾱ) for VP/DDPM. The mean-shift form for DDPM ancestral sampling (Alg. 1, μ + s·Σ·∇ log p)
is `ancestral_mean_shift` / `sample_ancestral_mean_shift`; it agrees with the score form to first order in
the step size.

Classifier-free guidance (Ho & Salimans 2022, eq. 6): D_w = (1 + w)·D(x, σ | y) − w·D(x, σ | ∅).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .analytic import GaussianMixture, GMMDenoiser
from .checkpoint import CheckpointError, load_network, read_config, save_tensors, write_config
from .models.parameterization import CONDITIONINGS, Denoiser, Preconditioning, bcast, sigma_vector
from .processes import Process, get_process
from .samplers.base import CountingDenoiser, SamplerOutput, as_sigma_table, noise_like, sigma_at

__all__ = [
    "NoisyClassifier",
    "ExactClassifier",
    "TrainedClassifier",
    "load_classifier",
    "ClassifierGuidedDenoiser",
    "ClassifierFreeGuidedDenoiser",
    "ancestral_mean_shift",
    "sample_ancestral_mean_shift",
    "parse_class_labels",
    "add_guidance_arguments",
    "guided_denoiser_from_args",
    "train_noisy_classifier",
    "noise_band_accuracy",
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
        xd = x.to(torch.float64).reshape(x.shape[0], -1)
        sig = sigma_vector(sigma, xd)
        logits = self.gmm._component_logp(xd, sig) + self.gmm.weights.clamp(min=1e-300).log()[None]
        total = torch.logsumexp(logits, dim=-1, keepdim=True)
        per_class = torch.stack(
            [
                torch.logsumexp(logits[:, self.gmm.labels == c], dim=-1)
                if bool((self.gmm.labels == c).any())
                else torch.full_like(total[:, 0], -math.inf)
                for c in range(self.num_classes)
            ],
            dim=1,
        )
        return (per_class - total).to(x.dtype if x.is_floating_point() else torch.float64)

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
    def __init__(self, denoiser: Denoiser):
        super().__init__(getattr(denoiser, "process", None), getattr(denoiser, "data_shape", None))
        self.denoiser = denoiser
        self.sigma_min = getattr(denoiser, "sigma_min", self.sigma_min)
        self.sigma_max = getattr(denoiser, "sigma_max", self.sigma_max)


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

    def denoise(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None) -> Tensor:
        y = _labels_for(self.class_labels, class_labels, x.shape[0], x.device)
        base = self.denoiser(x, sigma, y if self.condition_base else None)
        if not isinstance(self.scale, Tensor) and float(self.scale) == 0.0:
            return base
        return base + self.guidance_term(x, sigma, y)


class ClassifierFreeGuidedDenoiser(_Wrapper):
    """D_w = (1 + w)·D(x, σ | y) − w·D(x, σ | ∅) (Ho & Salimans 2022, eq. 6); w = 0 is plain conditional.

    `null_label`: the label index the model was trained with for "no condition" (num_classes for scorekit's
    networks trained with condition dropout); both branches then run as one doubled batch. None calls the
    unconditional branch with class_labels=None (e.g. the exact mixture denoiser).
    """

    def __init__(
        self,
        cond_denoiser: Denoiser,
        w: float = 1.0,
        null_label: int | None = None,
        class_labels: int | Tensor | None = None,
    ):
        super().__init__(cond_denoiser)
        if not math.isfinite(float(w)):
            raise ValueError(f"classifier-free guidance weight must be finite, got {w}")
        self.w = float(w)
        self.null_label = None if null_label is None else int(null_label)
        self.class_labels = class_labels
        self.num_classes = int(getattr(cond_denoiser, "num_classes", 0))

    def denoise(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None) -> Tensor:
        y = _labels_for(self.class_labels, class_labels, x.shape[0], x.device)
        if self.w == 0.0:
            return self.denoiser(x, sigma, y)
        if self.null_label is None:
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
    """Dhariwal & Nichol 2021, Alg. 1: μ ↦ μ + s·Σ·∇_{x_t} log p(y | x_t), taken in process space.

    All arguments are σ-space: x at σ, `mean` the ancestral step's mean at σ_next, `variance` its variance
    (default: the DDPM posterior variance σ_next²(σ² − σ_next²)/σ², i.e. β̃_t). With x_t = s_t·x̂ the process-
    space shift s·s_next²·Σ̂·∇_x̂/s_t becomes s·(s_next/s_t)·Σ̂·∇_x̂ log p in σ-space.
    """
    sig = sigma_vector(sigma, x)
    sig_next = sigma_vector(sigma_next, x)
    y = _labels_for(None, class_labels, x.shape[0], x.device)
    if variance is None:
        variance = sig_next**2 * (sig**2 - sig_next**2) / sig**2
    variance = sigma_vector(variance, x) if not isinstance(variance, Tensor) or variance.ndim <= 1 else variance
    if process is None:
        ratio = torch.ones_like(sig)
    else:
        s_t = process.scale_of_sigma(sig.to(torch.float64))
        s_n = process.scale_of_sigma(sig_next.clamp(min=process.sigma_min).to(torch.float64))
        ratio = (s_n / s_t).to(x.dtype)
    grad = classifier.grad_log_prob(x, sig, y)
    var = bcast(variance, x) if variance.ndim == 1 else variance
    return mean + float(scale) * bcast(ratio, x) * var * grad


@torch.no_grad()
def sample_ancestral_mean_shift(
    denoiser,
    x: Tensor,
    sigmas,
    *,
    classifier: NoisyClassifier,
    scale: float = 1.0,
    class_labels=None,
    process: Process | None = None,
    generator: torch.Generator | None = None,
    callback: Callable | None = None,
):
    """DDPM ancestral sampling with classifier guidance by mean shift (Dhariwal & Nichol 2021, Alg. 1).

    Each step draws x̂_next ~ N(μ + s·Σ·∇log p, Σ) with the DDPM posterior in σ-space
    μ = D + (σ_next²/σ²)(x̂ − D), Σ = σ_next²(σ² − σ_next²)/σ²; the last step returns D. NFE = N.
    """
    table = as_sigma_table(sigmas, x)
    D = CountingDenoiser(denoiser)
    n = table.shape[1] - 1
    y = _labels_for(None, class_labels, x.shape[0], x.device)
    for i in range(n):
        sig, sig_next = sigma_at(table, i), sigma_at(table, i + 1)
        den = D(x, sig)
        if i == n - 1 or bool((sig_next <= 0).all()):
            x = den
        else:
            r = bcast(sig_next**2 / sig**2, x)
            mean = den + r * (x - den)
            var = sig_next**2 * (sig**2 - sig_next**2) / sig**2
            mean = ancestral_mean_shift(classifier, x, sig, sig_next, mean, y, scale, process, var)
            x = mean + bcast(var.sqrt(), x) * noise_like(x, generator)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig, "denoised": den})
    return SamplerOutput(x, float(D.calls))


# --------------------------------------------------------------------------------------------------------
# command-line plumbing used by `scorekit sample`
# --------------------------------------------------------------------------------------------------------
def parse_class_labels(spec, num: int, num_classes: int, seed: int = 0) -> Tensor:
    """`--class` → [num] labels: an int K, "random" (uniform, from `seed`), or a list "0,3,7" (cycled)."""
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
        try:
            values = [int(v) for v in text.replace(" ", ",").split(",") if v != ""]
        except ValueError:
            raise ValueError(f"--class must be an integer, a comma-separated list or 'random'; got {spec!r}") from None
        if not values:
            raise ValueError("--class is empty")
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        raise ValueError(f"class {bad[0]} is out of range: the model has classes 0..{num_classes - 1}")
    reps = -(-num // len(values))
    return torch.tensor(values * reps, dtype=torch.long)[:num]


def add_guidance_arguments(parser: argparse.ArgumentParser) -> None:
    """The CONTRACT's guidance flags: --guidance classifier (--classifier RUN3|exact) --class K --scale S,
    and --guidance cfg --cfg-weight W."""
    is_group = isinstance(parser, argparse._ArgumentGroup)  # the caller may hand us a group already
    g = parser if is_group else parser.add_argument_group("guidance")
    g.add_argument(
        "--guidance",
        choices=("none", "classifier", "cfg"),
        default=None,
        help="steer sampling toward --class with a noisy classifier, or classifier-free guidance",
    )
    g.add_argument("--classifier", default=None, help="classifier run directory (train-classifier), or 'exact'")
    g.add_argument(
        "--class",
        dest="class_label",
        default=None,
        help="class to generate: an integer, a comma-separated list (cycled over samples) or 'random'",
    )
    g.add_argument("--scale", type=float, default=None, help="classifier guidance scale s (default 1)")
    g.add_argument("--cfg-weight", type=float, default=None, help="classifier-free guidance weight w (default 1)")


def _check_compatible(classifier: TrainedClassifier, denoiser, run_config: dict | None = None) -> None:
    """The classifier must see the model's data space: same shape and the same user → model range map."""
    data = getattr(classifier, "data_config", {}) or {}
    shape = data.get("shape")
    dshape = getattr(denoiser, "data_shape", None)
    if shape is not None and dshape is not None and tuple(shape) != tuple(dshape):
        raise ValueError(f"the classifier was trained on data of shape {tuple(shape)}, the model makes {dshape}")
    mine, theirs = data.get("transform"), ((run_config or {}).get("data") or {}).get("transform")
    if isinstance(mine, dict) and isinstance(theirs, dict):
        keys = set(mine) | set(theirs)
        for k in keys:
            a, b = mine.get(k), theirs.get(k)
            same = (
                math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)
                if isinstance(a, float) and isinstance(b, float)
                else a == b
            )
            if not same:
                raise ValueError(
                    f"the classifier and the model scale data differently (transform {k}: {a} vs {b}); "
                    "train the classifier on the model's data set"
                )


def guided_denoiser_from_args(args, denoiser, gmm: GaussianMixture | None = None, device="cpu", run_config=None):
    """Wrap `denoiser` per the guidance flags; returns (denoiser, labels [num] or None).

    Labels are per sample (for the npz): pass `labels[batch]` as the sampler's `class_labels`. With
    --guidance none and --class on a class-conditional model, the model is sampled conditionally.
    """
    mode = getattr(args, "guidance", None) or "none"
    spec = getattr(args, "class_label", None)
    num = int(getattr(args, "num", 1) or 1)
    seed = int(getattr(args, "seed", 0) or 0)
    if mode == "none":
        if spec is None:
            return denoiser, None
        k = int(getattr(denoiser, "num_classes", 0))
        if k <= 0:
            raise ValueError("--class needs --guidance classifier|cfg or a class-conditional model")
        return denoiser, parse_class_labels(spec, num, k, seed)
    if spec is None:
        raise ValueError(f"--guidance {mode} needs --class K (an integer, a list, or 'random')")
    if mode == "classifier":
        which = getattr(args, "classifier", None)
        if not which:
            raise ValueError("--guidance classifier needs --classifier RUN3 or --classifier exact")
        if which == "exact":
            if gmm is None:
                gmm = getattr(denoiser, "gmm", None)
            if gmm is None or gmm.labels is None:
                raise ValueError("--classifier exact needs --model gmm:SPEC.json whose SPEC has 'labels'")
            classifier = ExactClassifier(gmm)
        else:
            classifier = load_classifier(which, device=device)
            if run_config is None and getattr(args, "run", None):
                run_config = read_config(args.run)
            _check_compatible(classifier, denoiser, run_config)
        scale = getattr(args, "scale", None)
        scale = 1.0 if scale is None else float(scale)
        labels = parse_class_labels(spec, num, classifier.num_classes, seed)
        # a class-conditional network is guided *and* conditioned on the label (ADM's conditional models)
        cond = int(getattr(denoiser, "num_classes", 0)) > 0 and not isinstance(denoiser, GMMDenoiser)
        return ClassifierGuidedDenoiser(denoiser, classifier, scale, condition_base=cond), labels
    if mode == "cfg":
        k = int(getattr(denoiser, "num_classes", 0))
        if k <= 0:
            raise ValueError("--guidance cfg needs a class-conditional model (trained with labels)")
        null = None if isinstance(denoiser, GMMDenoiser) else k
        w = getattr(args, "cfg_weight", None)
        w = 1.0 if w is None else float(w)
        return ClassifierFreeGuidedDenoiser(denoiser, w, null_label=null), parse_class_labels(spec, num, k, seed)
    raise ValueError(f"unknown guidance {mode!r} (choose from none, classifier, cfg)")


# --------------------------------------------------------------------------------------------------------
# training a noisy classifier
# --------------------------------------------------------------------------------------------------------
def _band_of(t: Tensor) -> Tensor:
    edges = torch.tensor(NOISE_BANDS[1:-1], dtype=torch.float64)
    return torch.bucketize(t.to(torch.float64).cpu(), edges, right=True)


def _band_name(i: int) -> str:
    return f"t{NOISE_BANDS[i]:.2f}-{NOISE_BANDS[i + 1]:.2f}"


def _sample_t(process: Process, n: int, generator, lo: float | None = None, hi: float | None = None) -> Tensor:
    from .processes import DDPM

    lo = process.t_min if lo is None else max(lo, process.t_min)
    hi = process.t_max if hi is None else min(hi, process.t_max)
    t = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    if isinstance(process, DDPM):  # integer steps i, t = (i+1)/T
        t = (torch.ceil(t * process.num_steps).clamp(1, process.num_steps)) / process.num_steps
    return t


@torch.no_grad()
def noise_band_accuracy(
    classifier: NoisyClassifier,
    data: Tensor,
    labels: Tensor,
    process: Process,
    generator: torch.Generator | None = None,
    batch_size: int = 512,
) -> dict:
    """Accuracy of p(y | x_t, t) on data noised at t uniform within each band of NOISE_BANDS."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    out = {}
    dev = next(iter(classifier.parameters()), torch.zeros(())).device
    for b in range(len(NOISE_BANDS) - 1):
        correct = 0
        for start in range(0, len(data), batch_size):
            x0 = data[start : start + batch_size]
            y = labels[start : start + batch_size]
            t = _sample_t(process, len(x0), generator, NOISE_BANDS[b], NOISE_BANDS[b + 1])
            sig = process.sigma(t).to(torch.float32)
            x = x0 + bcast(sig, x0) * torch.randn(x0.shape, generator=generator)
            pred = classifier.log_probs(x.to(dev), sig.to(dev)).argmax(1).cpu()
            correct += int((pred == y).sum())
        out[_band_name(b)] = correct / max(1, len(data))
    return out


def default_classifier_network(kind: str, shape: tuple[int, ...], num_classes: int) -> dict:
    """U-Net-encoder classifier for images, MLP for vectors."""
    if kind == "image":
        c, h, w = shape
        if h != w:
            raise ValueError(f"the image classifier needs square images, got {h}x{w}")
        mult = [1, 2] if h <= 16 else [1, 2, 2, 2]
        return {
            "arch": "noisy_classifier_unet",
            "in_channels": c,
            "num_classes": num_classes,
            "image_size": h,
            "base_channels": 32,
            "channel_mult": mult,
        }
    dim = int(torch.tensor(shape).prod())
    return {"arch": "noisy_classifier_mlp", "dim": dim, "num_classes": num_classes}


def train_noisy_classifier(
    data: Tensor,
    labels: Tensor,
    process: Process | str | dict,
    *,
    num_classes: int,
    kind: str = "vector",
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 3e-4,
    weight_decay: float = 0.05,
    seed: int = 0,
    device="cpu",
    network: dict | None = None,
    conditioning: str = "t999",
    input_mode: str | None = None,
    out: str | Path | None = None,
    data_config: dict | None = None,
    eval_data: Tensor | None = None,
    eval_labels: Tensor | None = None,
    log_every: int = 100,
    log: Callable[[str], None] | None = print,
) -> tuple[TrainedClassifier, dict]:
    """Train p_φ(y | x_t, t) on data noised by `process` at t ~ U(t_min, 1) (DDPM: uniform integer steps) with
    cross-entropy (Dhariwal & Nichol 2021, §4.1). Writes a kind="classifier" run directory when `out` is set,
    with log.jsonl (loss and accuracy per noise band) and eval.json (held-out accuracy per band)."""
    from .models.registry import build_network

    process = get_process(process)
    data = torch.as_tensor(data, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if data.shape[0] != labels.shape[0]:
        raise ValueError(f"{data.shape[0]} data points but {labels.shape[0]} labels")
    if data.shape[0] < 2:
        raise ValueError("need at least two labelled examples to train a classifier")
    if int(steps) < 1 or int(batch_size) < 1:
        raise ValueError(f"steps and batch size must be positive, got {steps}, {batch_size}")
    if num_classes < 2 or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1} with at least two classes")
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"unknown conditioning {conditioning!r} (choose from {', '.join(CONDITIONINGS)})")
    if input_mode is None:
        input_mode = "normalized" if process.name in ("ve", "edm") else "process"
    shape = tuple(data.shape[1:])
    net_cfg = dict(network) if network is not None else default_classifier_network(kind, shape, num_classes)
    torch.manual_seed(int(seed))  # parameter initialisation
    gen = torch.Generator().manual_seed(int(seed))
    net = build_network(net_cfg).to(device)
    clf = TrainedClassifier(net, process, num_classes, conditioning, input_mode).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps, batch_size = int(steps), min(int(batch_size), data.shape[0])
    run_dir = Path(out) if out is not None else None
    config = {
        "kind": "classifier",
        "data": dict(data_config or {"kind": kind, "shape": list(shape), "num_classes": num_classes}),
        "process": process.to_config(),
        "network": net_cfg,
        "classifier": clf.classifier_config(),
        "training": {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": int(seed),
            "noise": "t ~ U(t_min, 1)",
        },
    }
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
        (run_dir / "log.jsonl").write_text("")
    nb = len(NOISE_BANDS) - 1
    hits, counts, loss_sum, loss_n = torch.zeros(nb), torch.zeros(nb), 0.0, 0
    order, pos = torch.randperm(data.shape[0], generator=gen), 0
    t0 = time.time()
    net.train()
    for step in range(1, steps + 1):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(data.shape[0], generator=gen), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        x0, y = data[idx], labels[idx]
        t = _sample_t(process, batch_size, gen)
        sig = process.sigma(t).to(torch.float32)
        x = x0 + bcast(sig, x0) * torch.randn(x0.shape, generator=gen)
        logp = clf.log_probs(x.to(device), sig.to(device))
        loss = F.nll_loss(logp, y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        band = _band_of(t)
        correct = (logp.detach().argmax(1).cpu() == y).float()
        hits.index_add_(0, band, correct)
        counts.index_add_(0, band, torch.ones_like(correct))
        loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
        if step % max(1, int(log_every)) == 0 or step == steps:
            acc = {_band_name(b): (float(hits[b] / counts[b]) if counts[b] > 0 else None) for b in range(nb)}
            rec = {
                "step": step,
                "loss": loss_sum / loss_n,
                "acc": float(hits.sum() / counts.sum().clamp(min=1)),
                "acc_by_noise": acc,
                "time_s": round(time.time() - t0, 2),
            }
            if run_dir is not None:
                with open(run_dir / "log.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
            if log is not None:
                bands = " ".join(f"{k}={v:.3f}" for k, v in acc.items() if v is not None)
                log(f"step {step}/{steps} loss {rec['loss']:.4f} acc {rec['acc']:.3f} [{bands}]")
            hits.zero_()
            counts.zero_()
            loss_sum, loss_n = 0.0, 0
    net.eval()
    ev_x = eval_data if eval_data is not None else data
    ev_y = eval_labels if eval_labels is not None else labels
    ev = noise_band_accuracy(clf, torch.as_tensor(ev_x, dtype=torch.float32), ev_y.long(), process)
    summary = {"steps": steps, "eval_split": "held-out" if eval_data is not None else "train", "acc_by_noise": ev}
    if run_dir is not None:
        save_tensors(run_dir / "model.safetensors", net.state_dict(), {"step": str(steps)})
        (run_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    if log is not None:
        log("held-out accuracy by noise band: " + " ".join(f"{k}={v:.3f}" for k, v in ev.items()))
    return clf, summary
