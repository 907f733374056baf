"""Output diagnostics of Denoising MCMC chains: the fraction of distinct outputs, and two effective-sample-size
estimates from a few fixed random projections of the outputs, streamed (memory O(chains), not O(outputs)).

- lag-1: ρ = correlation of successive outputs of the same chain, averaged over projections;
  ESS = n·(1 − ρ)/(1 + ρ) (an AR(1) chain's ESS);
- batch means with each chain as a batch (reported as `ess`): ESS = n·s²/(m·s_b²), s² the variance of all
  outputs, s_b² the
  variance of the chain means and m the mean outputs per chain. It sees what lag-1 misses: chains that never
  leave the mode their start-up sample landed in (then ESS ≈ the number of chains).
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


class ChainDiagnostics:
    def __init__(self, dim: int, chains: int, projections: int = 4, seed: int = 1234):
        g = torch.Generator().manual_seed(seed)
        self.P = torch.randn(int(dim), projections, generator=g, dtype=torch.float64)
        self.P /= self.P.norm(dim=0, keepdim=True)
        k = projections
        self.last = torch.full((int(chains), k), float("nan"), dtype=torch.float64)
        self.count = torch.zeros(int(chains), dtype=torch.float64)
        self.csum = torch.zeros(int(chains), k, dtype=torch.float64)
        self.n, self.s1, self.s2 = 0, torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
        self.pa = torch.zeros(5, k, dtype=torch.float64)  # lag-1 pairs: Σa, Σb, Σa², Σb², Σab
        self.pairs = 0
        self.hashes: set[bytes] = set()

    def update(self, x: Tensor, chain: Tensor) -> None:
        if x.shape[0] == 0:
            return
        xf = x.detach().float().cpu().reshape(x.shape[0], -1)
        for row in xf.numpy():
            self.hashes.add(hashlib.blake2b(row.tobytes(), digest_size=12).digest())
        proj = xf.double() @ self.P
        chain = chain.cpu().long()
        self.n += proj.shape[0]
        self.s1 += proj.sum(0)
        self.s2 += (proj**2).sum(0)
        prev = self.last[chain]
        ok = ~prev[:, 0].isnan()
        a, b = prev[ok], proj[ok]
        self.pairs += int(ok.sum())
        self.pa += torch.stack([a.sum(0), b.sum(0), (a * a).sum(0), (b * b).sum(0), (a * b).sum(0)])
        self.last[chain] = proj
        self.count.index_add_(0, chain, torch.ones(len(chain), dtype=torch.float64))
        self.csum.index_add_(0, chain, proj)

    def summary(self) -> dict:
        n = self.n
        out = {"outputs": n, "distinct_fraction": len(self.hashes) / n if n else float("nan")}
        rho = float("nan")
        if self.pairs > 2:
            m = self.pairs
            sa, sb, saa, sbb, sab = self.pa
            cov = sab / m - sa * sb / m**2
            va, vb = saa / m - (sa / m) ** 2, sbb / m - (sb / m) ** 2
            rho = float((cov / (va * vb).clamp(min=1e-300).sqrt()).mean())
        out["lag1_autocorrelation"] = rho
        r = min(max(rho, 0.0), 0.999999) if rho == rho else 0.0
        out["ess_lag1"] = n * (1 - r) / (1 + r)
        used = self.count > 0
        if n and used.sum() > 1 and (self.count[used] > 1).any():
            var = (self.s2 / n - (self.s1 / n) ** 2).clamp(min=1e-300)
            means = self.csum[used] / self.count[used, None]
            w = self.count[used, None]
            mu = self.s1 / n
            var_b = ((w * (means - mu) ** 2).sum(0) / n).clamp(min=1e-300)  # s_b², count-weighted
            chains = float(used.sum())  # n·s²/(m·s_b²) with m = n/chains
            ess = float((chains * var / var_b).clamp(max=n).mean())
            out["ess_batch_means"] = ess
        else:
            out["ess_batch_means"] = float(n)
        # the batch-means estimate is the one reported as "ess": the AR(1) extrapolation of lag-1 assumes long
        # chains and falls below the number of independent chains when each chain makes only a few outputs
        out["ess"] = out["ess_batch_means"]
        out["ess_fraction"] = out["ess"] / n if n else float("nan")
        return out
