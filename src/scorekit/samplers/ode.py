"""Probability-flow ODE integrators (Song et al. 2021, eq. 13) in the process's own time and space."""

from __future__ import annotations

import numpy as np
import torch

from .base import (
    CountingDenoiser,
    ProcessGrid,
    SamplerOutput,
    bcast,
    check_choice,
    check_positive,
    resolve_process,
    sigma_steps,
    sigma_table,
)
from .sde import process_score

__all__ = ["sample_pf_euler", "sample_rk45", "RK45_BACKENDS"]

RK45_BACKENDS = ("torchdiffeq", "scipy")


@torch.no_grad()
def sample_pf_euler(denoiser, x, sigmas, *, process=None, generator=None, callback=None, class_labels=None):
    """Euler on dx/dt = f(t)x − ½g(t)²∇log p_t(x); the step to σ = 0 is x ← D(x, σ_{N−1}).

    With process=None (σ-space) each step is x ← x + (σ_next − σ)(x − D)/σ (EDM's Euler). NFE = N.
    """
    del generator  # deterministic
    table = sigma_table(sigmas, x)
    grid = ProcessGrid(resolve_process(process), table)
    D = CountingDenoiser(denoiser, class_labels)
    for i, sig, _, last in sigma_steps(table):
        if last:
            den = D(x, sig)
            x = den
        else:
            s, f, g2 = (bcast(v[:, i], x) for v in (grid.s, grid.f, grid.g2))
            score, den = process_score(D, x, sig, grid.s[:, i])
            xp = s * x
            xp = xp + (f * xp - 0.5 * g2 * score) * bcast(grid.t[:, i + 1] - grid.t[:, i], x)
            x = xp / bcast(grid.s[:, i + 1], x)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig.expand(x.shape[0]), "denoised": den})
    return SamplerOutput(x, float(D.calls))


@torch.no_grad()
def sample_rk45(
    denoiser,
    x,
    sigmas,
    *,
    process=None,
    generator=None,
    callback=None,
    class_labels=None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    backend: str = "torchdiffeq",
):
    """Adaptive Dormand–Prince RK45 on the probability-flow ODE (Song et al. 2021, §4.3), then x ← D(x, σ_end).

    Integrates in the process's space over t from t(σ_0) to t(σ_end), σ_end the last positive level; with a
    per-sample schedule each sample runs in normalised time u ∈ [0, 1], t = t_0 + u·(t_end − t_0). Only the
    first and last positive levels of the schedule are used. NFE = the solver's denoiser calls + 1.
    """
    del generator  # deterministic
    check_choice("backend", backend, RK45_BACKENDS)
    rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
    proc = resolve_process(process)
    table = sigma_table(sigmas, x)
    if table.shape[1] < 3:  # one positive level: nothing to integrate, the "sample" would be D(x, σ_max) ≈ the mean
        raise ValueError(
            "rk45 is adaptive (rtol/atol set its evaluations); its schedule only gives the σ range, so it needs "
            "at least two positive levels (steps >= 2)"
        )
    D = CountingDenoiser(denoiser, class_labels)
    sig0, sig_end = table[:, 0], table[:, -2]
    t0, t1 = proc.t_of_sigma(sig0), proc.t_of_sigma(sig_end)
    span = t1 - t0

    def state_at(u, xp):
        t = t0 + u * span
        sig, s = proc.sigma(t), proc.scale(t)
        return t, sig, s, xp / bcast(s, xp)

    def rhs(u, xp):
        t, sig, s, xh = state_at(u, xp)
        score, _ = process_score(D, xh, sig, s)
        return proc.reverse_drift(xp, t, score, probability_flow=True) * bcast(span, xp)

    xp0 = bcast(proc.scale(t0), x) * x
    if bool((span == 0).all()):
        xp1 = xp0
    elif backend == "torchdiffeq":
        from torchdiffeq import odeint

        u = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        # step_t: land a step exactly on u = 1 (t below t_min may be outside the process's domain)
        opts = {"step_t": u[1:]}
        xp1 = odeint(rhs, xp0, u, rtol=rtol, atol=atol, method="dopri5", options=opts)[-1]
    else:
        from scipy.integrate import solve_ivp

        shape, dtype, device = x.shape, x.dtype, x.device

        def f(u, y):
            yt = torch.as_tensor(y, dtype=dtype, device=device).reshape(shape)
            return rhs(torch.as_tensor(u, dtype=dtype), yt).reshape(-1).double().cpu().numpy()

        sol = solve_ivp(f, (0.0, 1.0), xp0.reshape(-1).double().cpu().numpy(), rtol=rtol, atol=atol, method="RK45")
        if not sol.success:
            raise RuntimeError(f"RK45 failed: {sol.message}")
        xp1 = torch.as_tensor(np.asarray(sol.y[:, -1]), dtype=dtype, device=device).reshape(shape)
    _, _, _, x_end = state_at(torch.ones((), dtype=x.dtype, device=x.device), xp1)
    den = D(x_end, sig_end)
    if callback is not None:
        callback({"i": 0, "x": den, "sigma": sig_end.expand(x.shape[0]), "denoised": den})
    return SamplerOutput(den, float(D.calls))
