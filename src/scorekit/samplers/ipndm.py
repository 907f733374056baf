"""Improved PNDM (iPNDM; Zhang & Chen 2023, DEIS paper §5 / App. "iPNDM"): explicit Adams–Bashforth in σ on the
probability-flow ODE dx/dσ = ε(x, σ) = (x − D(x, σ))/σ, with the fixed (equal-step) coefficients of order 1…4 and a
lower-order warm start, so one D call per step. The step to σ = 0 is an ordinary step: it uses only the derivatives
already evaluated at σ_i, σ_{i−1}, …, never a call at σ = 0.
"""

from __future__ import annotations

import torch

from .base import CountingDenoiser, SamplerOutput, bcast, check_choice, sigma_table

__all__ = ["sample_ipndm", "ipndm_step", "AB_COEFFICIENTS"]

# Adams–Bashforth weights for equal steps, newest derivative first
AB_COEFFICIENTS = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def step_order(i: int, n: int, max_order: int, lower_order_final: bool) -> int:
    """Order of step i of n: warm start min(i + 1, ·); with lower_order_final also at most n − i."""
    k = min(int(max_order), i + 1)
    return min(k, n - i) if lower_order_final else k


def ipndm_step(hist, sig_next, order: int):
    """One iPNDM step from hist[-1] = (σ_i, x_i, D_i) (older points before it) to σ_{i+1}:
    x_{i+1} = x_i + (σ_{i+1} − σ_i)·Σ_j a_j ε_{i−j}, a = AB_COEFFICIENTS[order]."""
    sig, x, _ = hist[-1]
    d = 0
    for a, (s, xk, dk) in zip(AB_COEFFICIENTS[order], reversed(hist[-order:])):
        d = d + a * (xk - dk) / bcast(s, xk)
    return x + bcast(sig_next - sig, x) * d


@torch.no_grad()
def sample_ipndm(
    denoiser,
    x,
    sigmas,
    *,
    process=None,
    generator=None,
    callback=None,
    class_labels=None,
    max_order: int = 4,
    lower_order_final: bool = False,
):
    """iPNDM (Zhang & Chen 2023, eq. of the improved PNDM): fourth-order Adams–Bashforth on ε = (x − D)/σ in σ with
    orders 1, 2, 3 for the first steps. `lower_order_final` also lowers the order of the last steps (k-diffusion:
    off). NFE = N."""
    del process, generator  # σ-space and deterministic
    check_choice("max_order", int(max_order), (1, 2, 3, 4))
    return run_linear_multistep(
        denoiser, x, sigmas, ipndm_step, int(max_order), lower_order_final, class_labels, callback
    )


def run_linear_multistep(denoiser, x, sigmas, step, max_order: int, lower_order_final: bool, class_labels, callback):
    """The loop shared by the linear multistep solvers (iPNDM, DEIS): one evaluation per step, the last `max_order`
    (σ, x, D) kept, `step(history, σ_next, order)` with the warm-start / final order of `step_order`. NFE = N."""
    table = sigma_table(sigmas, x)
    D = CountingDenoiser(denoiser, class_labels)
    n = table.shape[1] - 1
    hist = []
    for i in range(n):
        sig = table[:, i]
        den = D(x, sig)
        hist = (hist + [(sig, x, den)])[-max_order:]
        x = step(hist, table[:, i + 1], step_order(i, n, max_order, lower_order_final))
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig.expand(x.shape[0]), "denoised": den})
    return SamplerOutput(x, float(D.calls))
