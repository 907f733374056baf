"""Power-function EMA and post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
Diffusion Models", Sec. 3 and App. C).

A power-function EMA averages the weights θ_τ of steps τ = 1..t with a profile ∝ τ^γ, so its width scales with
the run: the *relative* width σ_rel (std of the profile over its length, eq. 123) is what one chooses, and the
same σ_rel suits a 1k-step and a 1M-step run. It is tracked with the per-step decay β_t = (1 − 1/t)^(γ+1)
(eq. 127, one optimizer step per update); the first update copies the model (β_1 = 0), so nothing of the
random initialisation survives, unlike a fixed decay (0.999^2000 = 13.5 % of a 2,000-step run's average is the
initial network).

Discrete closed form of that recursion (our derivation; telescoping products): the EMA after step t is
Σ_τ w_t(τ)·θ_τ with  w_t(τ) = (τ/t)^(γ+1) · (1 − (1 − 1/τ)^(γ+1)),  Σ_τ w_t(τ) = 1.

Post-hoc EMA: snapshots of two profiles (σ_rel 0.05 and 0.10, every K steps) span enough profiles that an EMA of
another width is found afterwards as a linear combination of the snapshots, by least squares between the profiles
(EDM2 Algorithm 3). We solve it with the exact discrete profiles above, so the reconstruction error comes only
from how well the snapshots' span holds the target profile.

On-disk snapshots (`RUN/ema_snapshots/`): one safetensors file per (step, σ_rel), named
`step_{step:08d}_sigma_rel_{σ_rel:.4f}.safetensors`, holding the EMA network's state dict; metadata
`format` = "scorekit-ema-snapshot/1", `step`, `sigma_rel`, `gamma` (plus the checkpoint SHA-256).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "DEFAULT_SIGMA_REL",
    "SNAPSHOT_SIGMA_RELS",
    "SNAPSHOT_FORMAT",
    "EMA",
    "Snapshot",
    "sigma_rel_to_gamma",
    "gamma_to_sigma_rel",
    "power_beta",
    "power_profile",
    "posthoc_coefficients",
    "reconstruct_ema",
    "save_snapshot",
    "list_snapshots",
    "snapshot_name",
]

# Measured in benchmarks/ema.py (2-D mixture, 2,000 steps): see benchmarks/results/ema.md.
DEFAULT_SIGMA_REL = 0.10
# The two profiles EDM2 keeps for post-hoc reconstruction (Sec. 3.2).
SNAPSHOT_SIGMA_RELS = (0.05, 0.10)
SNAPSHOT_FORMAT = "scorekit-ema-snapshot/1"


def gamma_to_sigma_rel(gamma: float) -> float:
    """σ_rel of the profile ∝ τ^γ on [0, 1]: √((γ+1) / ((γ+2)² (γ+3))) (EDM2 eq. 123)."""
    g = float(gamma)
    if not g > -1:
        raise ValueError(f"power-function EMA exponent must be > -1, got {gamma}")
    return math.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3)))


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """γ with the given σ_rel: the largest real root of γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²) = 0 (EDM2 eq. 126,
    Algorithm 2). γ = 0 is the uniform average (σ_rel = √(1/12) ≈ 0.289); σ_rel in (0, 0.28) gives γ > 0."""
    s = float(sigma_rel)
    if not (0 < s < 0.28):
        raise ValueError(f"sigma_rel must be in (0, 0.28), got {sigma_rel}")
    t = s**-2
    roots = np.roots([1.0, 7.0, 16.0 - t, 12.0 - t])
    return float(roots.real[np.abs(roots.imag) < 1e-9].max())


def power_beta(step: int, gamma: float, prev_step: int | None = None) -> float:
    """Decay applied at optimizer step `step` (1-based): β_t = (1 − 1/t)^(γ+1) (EDM2 eq. 127). From an EMA last
    updated at `prev_step` < t − 1 (steps skipped, model unchanged): (prev/t)^(γ+1), the product of the skipped
    steps' decays (EDM2 eq. 127 with t_delta = t − prev)."""
    if step < 1:
        raise ValueError(f"EMA step must be >= 1, got {step}")
    if prev_step is None or prev_step == step - 1:
        return (1.0 - 1.0 / step) ** (gamma + 1.0)
    if not 0 <= prev_step < step:
        raise ValueError(f"EMA previous step {prev_step} must lie in [0, {step})")
    return (prev_step / step) ** (gamma + 1.0)


def power_profile(step: int, gamma: float, taus: np.ndarray | None = None) -> np.ndarray:
    """Weights w_t(τ) of θ_τ in the EMA after step t = `step`, for τ in `taus` (default 1..t); 0 for τ > t.
    Closed form of the β_t recursion: (τ/t)^(γ+1)·(1 − (1 − 1/τ)^(γ+1))."""
    taus = np.arange(1, step + 1, dtype=np.float64) if taus is None else np.asarray(taus, dtype=np.float64)
    e = gamma + 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.exp(e * (np.log(taus) - math.log(step))) * -np.expm1(e * np.log1p(-1.0 / taus))
    w = np.where(taus == 1, (1.0 / step) ** e, w)
    return np.where((taus >= 1) & (taus <= step), w, 0.0)


def _key(sigma_rel: float) -> str:
    return f"{float(sigma_rel):.4f}"


class EMA:
    """Power-function EMAs of one model at several widths. `update(model, step)` after each optimizer step
    (`step` = optimizer steps done, 1-based); `module()` is the EMA network of the first width.

    Floating-point parameters are averaged; buffers (e.g. BatchNorm statistics) are copied from the model.
    `state_dict()` is a flat {name: tensor} dict (safetensors-ready) that restores the exact state."""

    def __init__(self, model: nn.Module, sigma_rels=(DEFAULT_SIGMA_REL,)):
        rels = [float(s) for s in (sigma_rels if isinstance(sigma_rels, (list, tuple)) else [sigma_rels])]
        if not rels:
            raise ValueError("EMA needs at least one sigma_rel")
        seen: list[float] = []
        for s in rels:
            if _key(s) not in {_key(x) for x in seen}:
                seen.append(s)
        self.sigma_rels: tuple[float, ...] = tuple(seen)
        self.gammas = tuple(sigma_rel_to_gamma(s) for s in self.sigma_rels)
        self.step = 0
        self.modules: dict[str, nn.Module] = {
            _key(s): copy.deepcopy(model).eval().requires_grad_(False) for s in self.sigma_rels
        }
        # each EMA network's parameters and buffers, listed once (walking the modules every step costs more than
        # the averaging on a small network); loading a state copies into these same tensors
        self._tensors = {k: (list(m.parameters()), list(m.buffers())) for k, m in self.modules.items()}

    def module(self, sigma_rel: float | None = None) -> nn.Module:
        """The EMA network of `sigma_rel` (default: the first width)."""
        k = _key(self.sigma_rels[0] if sigma_rel is None else sigma_rel)
        if k not in self.modules:
            raise ValueError(f"sigma_rel {sigma_rel} is not tracked (tracked: {', '.join(self.modules)})")
        return self.modules[k]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in the model's weights after optimizer step `step` (> the last update's step). Steps skipped in
        between (e.g. a non-finite loss skipped under nan_policy=skip) count as updates with these weights,
        which is what they were."""
        step = int(step)
        if step <= self.step:
            raise ValueError(f"EMA update for step {step} after step {self.step} (steps must increase)")
        src = [p.detach() for p in model.parameters()]
        bufs = list(model.buffers())
        for s, g in zip(self.sigma_rels, self.gammas):
            beta = power_beta(step, g, self.step)
            ema_params, ema_bufs = self._tensors[_key(s)]
            floats = [(pe, pm) for pe, pm in zip(ema_params, src) if pe.is_floating_point()]
            # one fused lerp over every floating tensor instead of a Python loop (same arithmetic)
            torch._foreach_lerp_([pe for pe, _ in floats], [pm.to(pe.dtype) for pe, pm in floats], 1.0 - beta)
            for pe, pm in zip(ema_params, src):
                if not pe.is_floating_point():
                    pe.copy_(pm)
            for be, bm in zip(ema_bufs, bufs):
                be.copy_(bm)
        self.step = step

    def state_dict(self) -> dict[str, torch.Tensor]:
        """{"step", "sigma_rels", "ema.<σ_rel>.<name>" …}: every tensor needed for a bit-identical resume."""
        out: dict[str, torch.Tensor] = {
            "step": torch.tensor(self.step, dtype=torch.int64),
            "sigma_rels": torch.tensor(self.sigma_rels, dtype=torch.float64),
        }
        for k, m in self.modules.items():
            for name, t in m.state_dict().items():
                out[f"ema.{k}.{name}"] = t.detach().clone()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        try:
            rels = tuple(float(s) for s in state["sigma_rels"].tolist())
            step = int(state["step"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not an EMA state ({e})") from None
        if [_key(s) for s in rels] != [_key(s) for s in self.sigma_rels]:
            raise ValueError(f"EMA state tracks sigma_rel {list(rels)}, this EMA tracks {list(self.sigma_rels)}")
        for k, m in self.modules.items():
            prefix = f"ema.{k}."
            sd = {n[len(prefix) :]: t for n, t in state.items() if n.startswith(prefix)}
            missing = set(m.state_dict()) - set(sd)
            if missing:
                raise ValueError(f"EMA state misses {sorted(missing)[0]!r} for sigma_rel {k}")
            m.load_state_dict(sd, strict=True)
        self.step = step

    def save_snapshots(self, directory: str | Path, sigma_rels=None) -> list[Path]:
        """Write the current EMA of each width in `sigma_rels` (default: all tracked) as snapshot files."""
        rels = self.sigma_rels if sigma_rels is None else sigma_rels
        return [save_snapshot(directory, self.module(s).state_dict(), self.step, s) for s in rels]


# --- snapshots on disk ------------------------------------------------------------------------------------
def snapshot_name(step: int, sigma_rel: float) -> str:
    return f"step_{int(step):08d}_sigma_rel_{float(sigma_rel):.4f}.safetensors"


def save_snapshot(directory: str | Path, state: dict, step: int, sigma_rel: float) -> Path:
    """Write one snapshot (state dict of the EMA network at `step` with width `sigma_rel`), atomically."""
    from .checkpoint import save_tensors

    path = Path(directory) / snapshot_name(step, sigma_rel)
    meta = {
        "format": SNAPSHOT_FORMAT,
        "step": str(int(step)),
        "sigma_rel": repr(float(sigma_rel)),
        "gamma": repr(sigma_rel_to_gamma(sigma_rel)),
    }
    save_tensors(path, dict(state), meta)
    return path


@dataclass
class Snapshot:
    """One EMA snapshot: width `sigma_rel` at optimizer step `step`; weights in `state` or in the file `path`."""

    step: int
    sigma_rel: float
    state: dict | None = None
    path: Path | None = field(default=None)

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.state is not None:
            return self.state
        from .checkpoint import load_tensors

        t, _ = load_tensors(self.path)
        return t


def list_snapshots(directory: str | Path) -> list[Snapshot]:
    """The snapshots in `directory` (metadata only; weights load lazily), sorted by step then σ_rel."""
    from safetensors import SafetensorError, safe_open

    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"no EMA snapshots folder: {directory}")
    out = []
    for p in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = dict(f.metadata() or {})
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"corrupt EMA snapshot {p}: {' '.join(str(e).split())}") from None
        if meta.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"{p} is not a scorekit EMA snapshot (metadata format {meta.get('format')!r})")
        try:
            out.append(Snapshot(int(meta["step"]), float(meta["sigma_rel"]), path=p))
        except (KeyError, ValueError):
            raise ValueError(f"EMA snapshot {p} lacks a valid step / sigma_rel in its metadata") from None
    if not out:
        raise ValueError(f"no EMA snapshots in {directory}")
    return sorted(out, key=lambda s: (s.step, s.sigma_rel))


# --- post-hoc reconstruction ------------------------------------------------------------------------------
def _gram(steps, gammas, target_step, target_gamma, chunk=1 << 16):
    """A = [⟨w_i, w_j⟩], b = [⟨w_i, w_target⟩] over τ = 1..max step with the exact discrete profiles."""
    n = len(steps)
    t_max = max(max(steps), target_step)
    a, b = np.zeros((n, n)), np.zeros(n)
    for lo in range(1, t_max + 1, chunk):
        taus = np.arange(lo, min(lo + chunk, t_max + 1), dtype=np.float64)
        w = np.stack([power_profile(s, g, taus) for s, g in zip(steps, gammas)])
        wt = power_profile(target_step, target_gamma, taus)
        a += w @ w.T
        b += w @ wt
    return a, b


def posthoc_coefficients(steps, sigma_rels, target_sigma_rel: float, target_step: int | None = None) -> np.ndarray:
    """Weights x (summing to 1) such that Σ_i x_i·EMA_i best matches the power-function EMA of width
    `target_sigma_rel` at `target_step` (default: the last snapshot step), in the least-squares sense between
    profiles (EDM2 Algorithm 3, with the exact discrete profiles). Snapshots after `target_step` get weight 0."""
    steps = [int(s) for s in steps]
    rels = [float(s) for s in sigma_rels]
    if len(steps) != len(rels) or not steps:
        raise ValueError("need at least one snapshot, with one sigma_rel per step")
    target_step = max(steps) if target_step is None else int(target_step)
    tg = sigma_rel_to_gamma(target_sigma_rel)
    use = [i for i, s in enumerate(steps) if 1 <= s <= target_step]
    if not use:
        raise ValueError(f"no snapshot at or before step {target_step}")
    a, b = _gram([steps[i] for i in use], [sigma_rel_to_gamma(rels[i]) for i in use], target_step, tg)
    # Nearly collinear profiles make A ill-conditioned; a relative cutoff keeps the solution bounded.
    scale = np.sqrt(np.outer(np.diag(a), np.diag(a)))
    x_scaled = np.linalg.lstsq(a / scale, b / np.sqrt(np.diag(a)), rcond=1e-12)[0]
    x = x_scaled / np.sqrt(np.diag(a))
    x = x / x.sum()
    out = np.zeros(len(steps))
    out[use] = x
    return out


@torch.no_grad()
def reconstruct_ema(
    snapshots: list[Snapshot], target_sigma_rel: float, target_step: int | None = None
) -> dict[str, torch.Tensor]:
    """The state dict of an EMA of width `target_sigma_rel` at `target_step` (default: the last snapshot step),
    as the least-squares combination of `snapshots` (float tensors summed in float64, stored in their dtype;
    other tensors are taken from the latest snapshot used). Snapshots are loaded one at a time."""
    if not snapshots:
        raise ValueError("no EMA snapshots to reconstruct from")
    coef = posthoc_coefficients([s.step for s in snapshots], [s.sigma_rel for s in snapshots], target_sigma_rel,
                                target_step)  # fmt: skip
    acc: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    last_step, others = -1, {}
    for snap, c in zip(snapshots, coef):
        if c == 0.0 and snap.step > (target_step if target_step is not None else max(s.step for s in snapshots)):
            continue
        t = snap.tensors()
        if acc and set(t) != set(acc) | set(others):
            raise ValueError(f"EMA snapshot at step {snap.step} has different tensors from the others")
        for k, v in t.items():
            if v.is_floating_point():
                dtypes[k] = v.dtype
                acc[k] = acc.get(k, torch.zeros(v.shape, dtype=torch.float64)) + float(c) * v.double()
            elif snap.step >= last_step:
                others[k] = v.clone()
        last_step = max(last_step, snap.step)
    return {**{k: v.to(dtypes[k]) for k, v in acc.items()}, **others}
