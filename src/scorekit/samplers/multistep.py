"""Multistep exponential integrators in σ-space with λ = −log σ: DPM-Solver++(2M) (Lu et al. 2022, Alg. 2)."""

from __future__ import annotations

import torch

from .base import CountingDenoiser, SamplerOutput, as_sigma_table, bcast, sigma_at

__all__ = ["sample_dpmpp_2m"]


@torch.no_grad()
def sample_dpmpp_2m(denoiser, x, sigmas, *, process=None, generator=None, callback=None, class_labels=None):
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Alg. 2): x' = (σ'/σ)x − expm1(−h)·D̃ with
    h = log(σ/σ') and D̃ = (1 + 1/2r)D_i − (1/2r)D_{i−1}, r = h_{i−1}/h_i (first step: D̃ = D). NFE = N."""
    del process, generator  # σ-space and deterministic
    table = as_sigma_table(sigmas, x)
    D = CountingDenoiser(denoiser, class_labels)
    n = table.shape[1] - 1
    den_prev, h_prev = None, None
    for i in range(n):
        sig, sig_next = sigma_at(table, i), sigma_at(table, i + 1)
        den = D(x, sig)
        if i == n - 1 or bool((sig_next <= 0).all()):
            x = den
        else:
            h = sig.log() - sig_next.log()
            if den_prev is None:
                d = den
            else:
                c = bcast(h / (2 * h_prev), x)  # 1/(2r)
                d = (1 + c) * den - c * den_prev
            x = bcast(sig_next / sig, x) * x - bcast(torch.expm1(-h), x) * d
            den_prev, h_prev = den, h
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig, "denoised": den})
    return SamplerOutput(x, float(D.calls))
