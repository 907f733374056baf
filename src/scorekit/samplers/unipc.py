"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
Models", Alg. 2/3, data-prediction form) in σ-space with λ = −log σ, h = λ_{i+1} − λ_i:

    UniP-p:  x̃_{i+1} = (σ_{i+1}/σ_i)x_i − expm1(−h)·D_i − B(h)·Σ_{m<p−1} a_m D1_m
    UniC-p:  x_{i+1}  = (σ_{i+1}/σ_i)x_i − expm1(−h)·D_i − B(h)·(Σ_{m<p−1} a^c_m D1_m + a^c_{p−1}(D(x̃_{i+1}) − D_i))

with D1_m = (D_{i−m−1} − D_i)/r_m, r_m = (λ_{i−m−1} − λ_i)/h, B(h) = −h ("bh1") or expm1(−h) ("bh2"), and a, a^c
solving the order conditions Σ_m a_m r_m^{k−1} = φ_{k+1}(−h)·k!/B(h) (eq. 8). The corrector reuses the evaluation
D(x̃_{i+1}) the next step needs anyway, so it costs no NFE: the D of the next step is taken at the predicted point
and the corrected point carries on. The last step, to σ = 0, is x ← D_{N−1} (the limit of the data-prediction
update as σ_{i+1} → 0), taken explicitly.
"""

from __future__ import annotations

import torch

from .base import CountingDenoiser, SamplerOutput, bcast, check_choice, sigma_table
from .ipndm import step_order

__all__ = ["sample_unipc", "unipc_predict", "unipc_correct"]


def _order_system(hist, sig_next, order: int, variant: str):
    """r_m (previous points), the right-hand side b_k and B(h) of UniPC's order conditions; all per row."""
    sig = hist[-1][0]
    h = torch.log(sig / sig_next)
    hh = -h
    phi1 = torch.expm1(hh)
    B = hh if variant == "bh1" else phi1
    rks = [torch.log(sig / s) / h for s, _, _ in reversed(hist[-order:-1])]  # λ_m − λ_i over h (negative)
    b, hk, fact = [], phi1 / hh - 1, 1
    for k in range(1, order + 1):
        b.append(hk * fact / B)
        fact *= k + 1
        hk = hk / hh - 1 / fact
    return rks, b, B, phi1


def _base(hist, sig_next, phi1):
    sig, x, den = hist[-1]
    return bcast(sig_next / sig, x) * x - bcast(phi1, x) * den


def _solve(rks, b, n):
    """a with Σ_m a_m r_m^{k−1} = b_k, k = 1…n (r includes the corrector's 1); per row."""
    R = torch.stack([torch.stack([r**k for r in rks[:n]], -1) for k in range(n)], -2)  # [rows, n, n]
    return torch.linalg.solve(R, torch.stack(b[:n], -1))


def unipc_predict(hist, sig_next, order: int, variant: str = "bh2"):
    """UniP-`order` from hist[-1] = (σ_i, x_i, D_i) (older points before it) to σ_{i+1} > 0."""
    rks, b, B, phi1 = _order_system(hist, sig_next, order, variant)
    x = _base(hist, sig_next, phi1)
    if order == 1:
        return x
    den = hist[-1][2]
    d1 = [(dk - den) / bcast(r, den) for r, (_, _, dk) in zip(rks, reversed(hist[-order:-1]))]
    if order == 2:
        a = [torch.full_like(rks[0], 0.5)]
    else:
        a = _solve(rks, b, order - 1).unbind(-1)
    return x - bcast(B, x) * sum(bcast(am, x) * dm for am, dm in zip(a, d1))


def unipc_correct(hist, sig_next, den_next, order: int, variant: str = "bh2"):
    """UniC-`order`: the corrected x at σ_{i+1} from hist (ending at σ_i) and D evaluated at the predicted point."""
    rks, b, B, phi1 = _order_system(hist, sig_next, order, variant)
    x = _base(hist, sig_next, phi1)
    den = hist[-1][2]
    d1 = [(dk - den) / bcast(r, den) for r, (_, _, dk) in zip(rks, reversed(hist[-order:-1]))]
    d1.append(den_next - den)
    if order == 1:
        a = [torch.full_like(sig_next, 0.5)]
    else:
        a = _solve(rks + [torch.ones_like(sig_next)], b, order).unbind(-1)
    return x - bcast(B, x) * sum(bcast(am, x) * dm for am, dm in zip(a, d1))


@torch.no_grad()
def sample_unipc(
    denoiser,
    x,
    sigmas,
    *,
    process=None,
    generator=None,
    callback=None,
    class_labels=None,
    order: int = 3,
    variant: str = "bh1",
    corrector: bool = True,
    lower_order_final: bool = True,
):
    """UniPC-`order` (Zhao et al. 2023, Alg. 3 with data prediction): UniP predictor, UniC corrector reusing the next
    evaluation (no extra NFE), B(h) `variant` bh1 | bh2, warm start with lower orders, and with `lower_order_final`
    (diffusers' default) order ≤ N − i at step i. NFE = N."""
    del process, generator
    check_choice("order", int(order), (1, 2, 3))
    check_choice("variant", variant, ("bh1", "bh2"))
    table = sigma_table(sigmas, x)
    D = CountingDenoiser(denoiser, class_labels)
    n = table.shape[1] - 1
    hist, k_prev = [], 1
    for i in range(n):
        sig = table[:, i]
        den = D(x, sig)
        if i > 0 and corrector:  # UniC on the point just reached, with the D already evaluated there
            x = unipc_correct(hist, sig, den, k_prev, variant)
        hist = (hist + [(sig, x, den)])[-int(order) :]
        k_prev = step_order(i, n, order, lower_order_final)
        if i == n - 1:
            x = den  # σ_{i+1} = 0: the data-prediction update's limit
        else:
            x = unipc_predict(hist, table[:, i + 1], k_prev, variant)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig.expand(x.shape[0]), "denoised": den})
    return SamplerOutput(x, float(D.calls))
