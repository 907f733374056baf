"""Gaussian mixtures with exact denoiser, score, log-density, noise-level and class posteriors.

For p0 = Σ_k w_k N(μ_k, diag(v_k)), the σ-perturbed density is p_σ = Σ_k w_k N(μ_k, diag(v_k + σ²)), so
everything a diffusion model learns is available in closed form. This is both a user feature (a "model"
needing no training) and the oracle the test-suite asserts against. Computed in float64.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from .models.parameterization import Denoiser, sigma_vector
from .processes import Process

__all__ = ["GaussianMixture", "GMMDenoiser", "load_gmm_spec"]

_LOG2PI = math.log(2 * math.pi)


class GaussianMixture:
    """Diagonal-covariance Gaussian mixture in D dimensions, optionally with a class label per component."""

    def __init__(self, weights, means, variances, labels=None):
        w = torch.as_tensor(weights, dtype=torch.float64).flatten()
        mu = torch.as_tensor(means, dtype=torch.float64)
        var = torch.as_tensor(variances, dtype=torch.float64)
        if mu.ndim == 1:
            mu = mu[:, None]
        if var.ndim == 0:
            var = var.expand_as(mu).clone()
        elif var.ndim == 1 and var.numel() == w.numel():  # one isotropic variance per component
            var = var[:, None].expand_as(mu).clone()
        if w.ndim != 1 or mu.shape[0] != w.numel() or var.shape != mu.shape:
            raise ValueError(
                f"GMM spec shapes disagree: weights {tuple(w.shape)}, means {tuple(mu.shape)}, "
                f"variances {tuple(var.shape)}"
            )
        if not torch.isfinite(w).all() or not torch.isfinite(mu).all() or not torch.isfinite(var).all():
            raise ValueError("GMM spec contains NaN or infinite values")
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("GMM weights must be non-negative and not all zero")
        if (var <= 0).any():
            raise ValueError("GMM variances must be positive")
        self.weights = w / w.sum()
        self.means = mu
        self.variances = var
        if labels is not None:
            lab = torch.as_tensor(labels, dtype=torch.long).flatten()
            if lab.numel() != w.numel() or (lab < 0).any():
                raise ValueError(f"GMM labels must be {w.numel()} non-negative integers")
            self.labels = lab
        else:
            self.labels = None

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: dict) -> GaussianMixture:
        missing = [k for k in ("weights", "means", "variances") if k not in spec]
        if missing:
            raise ValueError(f"GMM spec lacks {', '.join(missing)}")
        return cls(spec["weights"], spec["means"], spec["variances"], spec.get("labels"))

    def to_spec(self) -> dict:
        spec = {
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "variances": self.variances.tolist(),
        }
        if self.labels is not None:
            spec["labels"] = self.labels.tolist()
        return spec

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.weights.numel()

    @property
    def num_classes(self) -> int:
        return 0 if self.labels is None else int(self.labels.max()) + 1

    def mean(self) -> Tensor:
        return (self.weights[:, None] * self.means).sum(0)

    def second_moment(self) -> Tensor:
        """E[|x|²] per dimension."""
        return (self.weights[:, None] * (self.variances + self.means**2)).sum(0)

    # --- sampling ----------------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, component_weights: Tensor | None = None):
        """n samples (float64) and their component indices."""
        w = self.weights if component_weights is None else component_weights
        comp = torch.multinomial(w, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[comp] + self.variances[comp].sqrt() * z, comp

    def sample_class(self, n: int, y: int, generator: torch.Generator | None = None):
        """Samples from p(x | y): the mixture restricted to components labelled y."""
        return self.sample(n, generator, self._class_weights(y))

    def _class_weights(self, y: int) -> Tensor:
        if self.labels is None:
            raise ValueError("this mixture has no labels")
        w = self.weights * (self.labels == int(y)).double()
        if w.sum() <= 0:
            raise ValueError(f"no component has label {y}")
        return w / w.sum()

    # --- the exact quantities at noise level σ --------------------------------------------------------
    def _component_logp(self, x: Tensor, sigma: Tensor) -> Tensor:
        """log N(x; μ_k, v_k + σ²) for each component: [B, K]."""
        x = x.to(torch.float64).reshape(x.shape[0], -1)
        s2 = sigma.to(torch.float64).reshape(-1, 1, 1) ** 2
        var = self.variances[None] + s2  # [B or 1, K, D]
        diff = x[:, None, :] - self.means[None]
        return -0.5 * ((diff**2 / var) + var.log() + _LOG2PI).sum(-1)

    def _responsibilities(self, x: Tensor, sigma: Tensor, weights: Tensor | None = None) -> Tensor:
        w = self.weights if weights is None else weights
        logits = self._component_logp(x, sigma) + w.clamp(min=1e-300).log()[None]
        return torch.softmax(logits, dim=-1)

    def log_prob(self, x: Tensor, sigma=0.0) -> Tensor:
        """log p_σ(x) in σ-space, [B]."""
        sig = sigma_vector(sigma, x.to(torch.float64))
        return torch.logsumexp(self._component_logp(x, sig) + self.weights.clamp(min=1e-300).log()[None], dim=-1)

    def log_prob_process(self, x: Tensor, t, process: Process) -> Tensor:
        """log p_t(x) for x in the process's own space: p_t(x) = p_σ(x/s)/s^D."""
        x = x.to(torch.float64)
        t = torch.as_tensor(t, dtype=torch.float64)
        s, sig = process.scale(t), process.sigma(t)
        s_b = s.reshape(-1, *([1] * (x.ndim - 1))) if s.ndim else s
        return self.log_prob(x / s_b, sig) - self.dim * torch.log(s).reshape(-1)

    def denoise(self, x: Tensor, sigma, class_labels: Tensor | None = None) -> Tensor:
        """E[x0 | x] = Σ_k r_k(x)·(μ_k + v_k/(v_k + σ²)·(x − μ_k)); with class_labels, p(x0 | x, y)."""
        xd = x.to(torch.float64).reshape(x.shape[0], -1)
        sig = sigma_vector(sigma, xd)
        r = self._responsibilities(xd, sig)
        if class_labels is not None:
            r = self._restrict_to_class(r, class_labels)
        s2 = sig.reshape(-1, 1, 1) ** 2
        post_mean = self.means[None] + self.variances[None] / (self.variances[None] + s2) * (
            xd[:, None] - self.means[None]
        )
        out = (r[..., None] * post_mean).sum(1)
        return out.reshape(x.shape).to(x.dtype)

    def score(self, x: Tensor, sigma, class_labels: Tensor | None = None) -> Tensor:
        """∇_x log p_σ(x) = Σ_k r_k (μ_k − x)/(v_k + σ²)."""
        xd = x.to(torch.float64).reshape(x.shape[0], -1)
        sig = sigma_vector(sigma, xd)
        r = self._responsibilities(xd, sig)
        if class_labels is not None:
            r = self._restrict_to_class(r, class_labels)
        var = self.variances[None] + sig.reshape(-1, 1, 1) ** 2
        out = (r[..., None] * (self.means[None] - xd[:, None]) / var).sum(1)
        return out.reshape(x.shape).to(x.dtype)

    def _restrict_to_class(self, r: Tensor, class_labels: Tensor) -> Tensor:
        if self.labels is None:
            raise ValueError("class-conditional denoising needs a mixture with labels")
        mask = (self.labels[None, :] == class_labels.reshape(-1, 1).to(self.labels.device)).double()
        r = r * mask
        return r / r.sum(-1, keepdim=True).clamp(min=1e-300)

    def noise_posterior(self, x: Tensor, sigma_grid: Tensor, log_prior: Tensor | None = None) -> Tensor:
        """p(σ_k | x) ∝ p(σ_k)·p_{σ_k}(x) over a grid of levels (uniform prior by default): [B, L]."""
        xd = x.to(torch.float64).reshape(x.shape[0], -1)
        grid = torch.as_tensor(sigma_grid, dtype=torch.float64).flatten()
        cols = []
        for s in grid:  # L is ~1000: loop keeps memory at B·K·D
            cols.append(self.log_prob(xd, s))
        logp = torch.stack(cols, dim=1)
        if log_prior is not None:
            logp = logp + torch.as_tensor(log_prior, dtype=torch.float64)[None]
        return torch.softmax(logp, dim=1)

    def class_posterior(self, x: Tensor, sigma) -> Tensor:
        """p(y | x, σ) = Σ_{k: label_k = y} r_k(x): [B, num_classes]."""
        if self.labels is None:
            raise ValueError("class posterior needs a mixture with labels")
        xd = x.to(torch.float64).reshape(x.shape[0], -1)
        r = self._responsibilities(xd, sigma_vector(sigma, xd))
        out = torch.zeros(r.shape[0], self.num_classes, dtype=torch.float64)
        return out.index_add_(1, self.labels, r)

    def class_log_posterior(self, x: Tensor, sigma) -> Tensor:
        """log p(y | x, σ) = logsumexp over the components labelled y of log r_k(x): [B, num_classes]."""
        if self.labels is None:
            raise ValueError("class posterior needs a mixture with labels")
        xd = x.to(torch.float64).reshape(x.shape[0], -1)
        logits = self._component_logp(xd, sigma_vector(sigma, xd)) + self.weights.clamp(min=1e-300).log()[None]
        total = torch.logsumexp(logits, dim=-1, keepdim=True)
        per_class = [
            torch.logsumexp(logits[:, self.labels == c], dim=-1)
            if bool((self.labels == c).any())
            else torch.full_like(total[:, 0], -math.inf)
            for c in range(self.num_classes)
        ]
        return torch.stack(per_class, dim=1) - total

    def class_log_posterior_grad(self, x: Tensor, sigma, y: Tensor) -> Tensor:
        """∇_x log p(y | x, σ) = ∇log p_σ(x | y) − ∇log p_σ(x), exactly."""
        return self.score(x, sigma, class_labels=y) - self.score(x, sigma)

    def denoiser(
        self, process: Process | None = None, sigma_min: float = 0.002, sigma_max: float = 80.0
    ) -> GMMDenoiser:
        return GMMDenoiser(self, process, sigma_min, sigma_max)


class GMMDenoiser(Denoiser):
    """The exact D(x, σ) of a Gaussian mixture under the denoiser protocol: class_labels=None is the
    unconditional call (`null_label` None), labels are optional, and `log_density` is exact."""

    has_log_density = True

    def __init__(self, gmm: GaussianMixture, process: Process | None = None, sigma_min=0.002, sigma_max=80.0):
        super().__init__(process, (gmm.dim,))
        self.gmm = gmm
        if process is None:
            self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.num_classes = gmm.num_classes

    def denoise(self, x, sigma, class_labels=None):
        return self.gmm.denoise(x, sigma, class_labels)

    def log_density(self, x: Tensor, sigma) -> Tensor:
        """log p_σ(x), exactly (float64)."""
        return self.gmm.log_prob(x, sigma)


def load_gmm_spec(path: str | Path) -> GaussianMixture:
    """Read SPEC.json ({"weights", "means", "variances"[, "labels"]}) with a one-line error on failure."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"GMM spec file not found: {p}")
    try:
        spec = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"GMM spec {p} is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"GMM spec {p} must be a JSON object")
    try:
        return GaussianMixture.from_spec(spec)
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"GMM spec {p} is malformed: {e}") from None
