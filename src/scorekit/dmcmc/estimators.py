"""Noise-level estimators p(σ_k | x) for Denoising MCMC (Kim & Ye 2022, Sec. 4) over a decreasing σ grid."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from ..analytic import GaussianMixture
from ..processes import get_process


def make_levels(sigma_min: float, sigma_max: float, num: int = 1000) -> Tensor:
    """Reference grid σ_k = σ_min·(σ_max/σ_min)^{t_k}, t_k = linspace(1, 1e-3, num): decreasing, float64 [num]."""
    if not (0 < float(sigma_min) < float(sigma_max)) or not math.isfinite(float(sigma_max)):
        raise ValueError(f"noise levels need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if int(num) < 2:
        raise ValueError(f"the σ grid needs at least 2 levels, got {num}")
    t = torch.linspace(1.0, 1e-3, int(num), dtype=torch.float64)
    return float(sigma_min) * (float(sigma_max) / float(sigma_min)) ** t


class NoiseLevelEstimator:
    """p(σ_k | x) over a decreasing grid `levels` [L]; `log_probs(x)` → [B, L] for σ-space x in model range."""

    levels: Tensor

    def log_probs(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def num_levels(self) -> int:
        return int(self.levels.numel())

    def to(self, device) -> NoiseLevelEstimator:
        self.levels = self.levels.to(device)
        return self


class ExactNoisePosterior(NoiseLevelEstimator):
    """Exact p(σ_k | x) ∝ p(σ_k)·N-mixture density Σ_j w_j N(x; μ_j, v_j + σ_k²), all L levels in one pass."""

    def __init__(self, gmm: GaussianMixture, levels: Tensor | None = None, log_prior: Tensor | None = None):
        self.gmm = gmm
        self.levels = make_levels(0.002, 80.0) if levels is None else torch.as_tensor(levels, dtype=torch.float64)
        if self.levels.ndim != 1 or self.levels.numel() < 2 or (self.levels[1:] >= self.levels[:-1]).any():
            raise ValueError("levels must be a strictly decreasing 1-D σ grid")
        self.log_prior = None if log_prior is None else torch.as_tensor(log_prior, dtype=torch.float64)
        var = gmm.variances[None] + self.levels.reshape(-1, 1, 1) ** 2  # [L, K, D]
        self._inv_var = 1.0 / var
        self._log_norm = -0.5 * (var.log().sum(-1) + gmm.dim * math.log(2 * math.pi))  # [L, K]
        self._log_w = gmm.weights.clamp(min=1e-300).log()

    def log_density(self, x: Tensor) -> Tensor:
        """log p_{σ_k}(x) = log Σ_k w_k N(x; μ_k, v_k + σ_k²) for every level: [B, L] (float64), in row chunks of
        ≤ 4 MB temporaries so repeated DLG steps do not fragment the heap (benchmarks/dmcmc_memory.py)."""
        xd = x.detach().to("cpu", torch.float64).reshape(x.shape[0], -1)
        L, K, D = self._inv_var.shape
        rows = max(1, (4 << 20) // (8 * max(L * K, K * D)))
        out = []
        for xc in xd.split(rows):
            diff2 = (xc[:, None, :] - self.gmm.means[None]) ** 2  # [b, K, D]
            quad = torch.einsum("bkd,lkd->blk", diff2, self._inv_var)
            out.append(torch.logsumexp(self._log_norm[None] - 0.5 * quad + self._log_w[None, None], dim=-1))
        return torch.cat(out) if out else xd.new_zeros((0, L))

    def log_probs(self, x: Tensor) -> Tensor:
        logp = self.log_density(x)
        if self.log_prior is not None:
            logp = logp + self.log_prior[None]
        return torch.log_softmax(logp, dim=1).to(x.device)

    def to(self, device):  # computed on CPU in float64; results are moved to x's device
        return self


class TrainedNoiseClassifier(NoiseLevelEstimator):
    """A trained classifier from a `kind="noise_classifier"` run directory: log_softmax(net(x)) over its grid."""

    def __init__(self, run_dir: str | Path, device="cpu", ema: bool = True):
        from ..checkpoint import CheckpointError, load_network, read_config

        cfg = read_config(run_dir)
        if cfg.get("kind") != "noise_classifier":
            raise CheckpointError(f"{run_dir} holds a {cfg.get('kind')!r}, not a noise_classifier")
        if "levels" not in cfg or "values" not in cfg["levels"]:
            raise CheckpointError(f"{Path(run_dir) / 'config.json'}: no 'levels' section")
        self.run_dir = Path(run_dir)
        self.config = cfg
        self.net = load_network(run_dir, ema=ema, device=device, config=cfg)
        self.levels = torch.tensor(cfg["levels"]["values"], dtype=torch.float64, device=device)
        self.accuracy = cfg.get("accuracy", {})
        self.process = get_process(cfg["process"]) if "process" in cfg else None

    @torch.no_grad()
    def log_probs(self, x: Tensor) -> Tensor:
        p = next(self.net.parameters())
        return torch.log_softmax(self.net(x.to(p.device, p.dtype)).double(), dim=1).to(x.device)

    def to(self, device):
        self.net = self.net.to(device)
        self.levels = self.levels.to(device)
        return self


class ResidualNoiseEstimator(NoiseLevelEstimator):
    """A noise-level estimate from the score model itself, no classifier: the fixed point
    σ̂² = mean((x − D(x, σ̂))²) (for x = x₀ + σ·n the residual x − D(x, σ) is the part of σ·n that D removes,
    whose mean square is ≈ σ² when the data fill few of the d dimensions). `iters` fixed-point iterations from
    σ̂₀ = rms(x) (each one NFE), snapped to the nearest level; log_probs is that level's one-hot (log 0 = -1e30).
    Inside DLG (sigma_update="residual") each Langevin step's own D(x, σ) gives the next iterate for free."""

    def __init__(self, denoiser, levels: Tensor | None = None, *, sigma_max: float | None = None, iters: int = 3):
        self.denoiser = denoiser
        top = float(sigma_max if sigma_max is not None else denoiser.sigma_max)
        lo = max(float(getattr(denoiser, "sigma_min", 0.002) or 0.002), 0.002)
        self.levels = make_levels(lo, top) if levels is None else torch.as_tensor(levels, dtype=torch.float64)
        self.iters = int(iters)

    def sigma_hat(self, x: Tensor) -> Tensor:
        lv = self.levels.to(x.device)
        s = x.flatten(1).pow(2).mean(1).double().sqrt().clamp(max=float(lv[0]), min=float(lv[-1]))
        for _ in range(self.iters):
            d = self.denoiser(x, s.to(x.dtype))
            s = (x - d).flatten(1).pow(2).mean(1).double().sqrt().clamp(max=float(lv[0]), min=float(lv[-1]))
        return s

    @torch.no_grad()
    def log_probs(self, x: Tensor) -> Tensor:
        s = self.sigma_hat(x)
        lv = self.levels.to(x.device)
        i = (s.log()[:, None] - lv.log()[None]).abs().argmin(1)
        out = torch.full((x.shape[0], lv.numel()), -1e30, dtype=torch.float64, device=x.device)
        out[torch.arange(x.shape[0]), i] = 0.0
        return out


def count_parameters(module) -> int:
    """Parameters of a network (0 when `module` has none)."""
    params = getattr(module, "parameters", None)
    return int(sum(p.numel() for p in params())) if callable(params) else 0


def estimator_cost(estimator, denoiser) -> dict:
    """One estimator call in denoiser evaluations: a trained classifier's parameter count over the denoiser's
    (both read the same input, so for convolutional/MLP nets FLOPs scale with parameters × spatial size and the
    spatial factor cancels); the exact mixture posterior costs no network (0); the residual estimate's own D
    calls are already counted as NFE (0 here)."""
    if isinstance(estimator, TrainedNoiseClassifier):
        pc, pd = count_parameters(estimator.net), count_parameters(denoiser)
        return {
            "method": "parameters(classifier) / parameters(denoiser), same input size",
            "classifier_parameters": pc,
            "denoiser_parameters": pd,
            "relative_cost": pc / pd if pd else float("nan"),
        }
    return {"method": f"{type(estimator).__name__}: no network evaluation beyond NFE", "relative_cost": 0.0}
