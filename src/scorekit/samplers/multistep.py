"""Multistep exponential integrators in σ-space with λ = −log σ: DPM-Solver++(2M) and (3M) (Lu et al. 2022).

In σ-space the data-prediction form of the probability-flow ODE is x(λ') = (σ'/σ)x + σ'∫ e^λ D dλ; the
solvers interpolate D through the last two or three evaluations. The step to σ = 0 is x ← D.
"""

from __future__ import annotations

import torch

from .base import CountingDenoiser, SamplerOutput, bcast, sigma_steps, sigma_table

__all__ = ["sample_dpmpp_2m", "sample_dpmpp_3m"]


def _multistep(denoiser, x, sigmas, callback, class_labels, order):
    table = sigma_table(sigmas, x)
    D = CountingDenoiser(denoiser, class_labels)
    # per-step coefficients for all steps at once (columns), broadcast against x
    pos = table[:, :-1]
    h_all = pos[:, :-1].log() - pos[:, 1:].log()  # h_i = λ_{i+1} − λ_i, i < n − 1
    ratio_all = pos[:, 1:] / pos[:, :-1]
    phi1_all = torch.expm1(-h_all)  # e^{−h} − 1
    hist_d = []  # previous denoised values, newest last
    for i, sig, _, last in sigma_steps(table):
        den = D(x, sig)
        if last:
            x = den
        else:
            h, phi1 = h_all[:, i], phi1_all[:, i]
            k = min(order, len(hist_d) + 1)
            if k == 1:
                d = den
            elif k == 2:  # DPM-Solver++(2M), Lu et al. 2022 Alg. 2
                c = bcast(h / (2 * h_all[:, i - 1]), x)  # 1/(2r), r = h_prev/h
                d = (1 + c) * den - c * hist_d[-1]
            if k <= 2:
                x = bcast(ratio_all[:, i], x) * x - bcast(phi1, x) * d
            else:  # third-order multistep (DPM-Solver++ 3M): divided differences of D in λ
                r0, r1 = bcast(h_all[:, i - 1] / h, x), bcast(h_all[:, i - 2] / h, x)
                d1_0 = (den - hist_d[-1]) / r0
                d1_1 = (hist_d[-1] - hist_d[-2]) / r1
                d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi2 = phi1 / h + 1
                phi3 = phi2 / h - 0.5
                x = bcast(ratio_all[:, i], x) * x - bcast(phi1, x) * den + bcast(phi2, x) * d1 - bcast(phi3, x) * d2
            hist_d = (hist_d + [den])[-2:]
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig.expand(x.shape[0]), "denoised": den})
    return SamplerOutput(x, float(D.calls))


@torch.no_grad()
def sample_dpmpp_2m(denoiser, x, sigmas, *, process=None, generator=None, callback=None, class_labels=None):
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Alg. 2): x' = (σ'/σ)x − expm1(−h)·D̃ with
    h = log(σ/σ') and D̃ = (1 + 1/2r)D_i − (1/2r)D_{i−1}, r = h_{i−1}/h_i (first step: D̃ = D). NFE = N."""
    del process, generator  # σ-space and deterministic
    return _multistep(denoiser, x, sigmas, callback, class_labels, 2)


@torch.no_grad()
def sample_dpmpp_3m(denoiser, x, sigmas, *, process=None, generator=None, callback=None, class_labels=None):
    """DPM-Solver++(3M) (Lu et al. 2022, §4 multistep, third order): x' = (σ'/σ)x − φ1·D + φ2·D' − φ3·D'' with
    φ1 = expm1(−h), φ2 = φ1/h + 1, φ3 = φ2/h − ½ and D', D'' from divided differences of the last three D
    (first steps: orders 1, 2). NFE = N."""
    del process, generator
    return _multistep(denoiser, x, sigmas, callback, class_labels, 3)
