"""The official Denoising MCMC setting (Kim & Ye 2022; "Sampling Demo.ipynb" of github.com/1202kbs/DMCMC, read
for its numbers): `DLGConfig.reference(dataset, finisher)` builds it from these tables."""

from __future__ import annotations

from dataclasses import replace

# the official code's settings ("Sampling Demo.ipynb"): KAR2's stochasticity, the two-phase warm-up per data set
# ((steps, η) of phase 1, steps of phase 2 at the sampling η) and the Tweedie σ
KAR2_OPTIONS = {"s_churn": 80.0, "s_tmin": 0.05, "s_tmax": 1.0, "s_noise": 1.007}
REFERENCE_WARMUP = {"cifar10": ((10, 0.5), 10), "celebahq": ((50, 1.6), 20)}
REFERENCE_TWEEDIE = {"cifar10": 1e-2, "celebahq": 1e-3}
# the paper's six integrators: name -> (scorekit sampler, official steps, official options). KAR1/KAR2 run N = 20
# points (19 steps); reverse diffusion and EM use the VE SDE's N = 20 discretisation from σ_start; the PF ODE
# is score_sde's RK45 (scipy solve_ivp, rtol = atol = 1e-5)
REFERENCE_INTEGRATORS = {
    "heun": ("heun", 19, {}),
    "edm_stochastic": ("edm_stochastic", 19, KAR2_OPTIONS),
    "reverse_diffusion": ("reverse_diffusion", 20, {}),
    "euler_maruyama": ("euler_maruyama", 20, {}),
    "pf_euler": ("pf_euler", 20, {}),
    "rk45": ("rk45", 2, {"rtol": 1e-5, "atol": 1e-5}),
}


def reference_config(cls, dataset: str = "cifar10", finisher: str = "edm_stochastic", **overrides):
    """The official code's setting ("Sampling Demo.ipynb" of github.com/1202kbs/DMCMC): KAR2 start-up (EDM
    stochastic, 20 points, S_churn 80, S_tmin 0.05, S_tmax 1, S_noise 1.007) + N(0, 0.5²), σ ← argmax of
    the classifier, constant-η ULA, warm-up 10 steps at η = 0.5 then 10 at η (CIFAR-10) or 50 at 1.6 then 20
    at η (CelebA-HQ), η = 0.8, 10 Gibbs steps per output with the carried state competing (strict <), the
    finisher on Karras ρ = 7 down to σ = 0.01, then a Tweedie step at 1e-2 (CIFAR-10) or 1e-3 (CelebA-HQ).
    The finisher is one of `REFERENCE_INTEGRATORS` with its official options."""
    ds = dataset.lower().replace("-", "")
    if ds not in REFERENCE_WARMUP:
        raise ValueError(f"unknown reference data set {dataset!r} (choose {', '.join(REFERENCE_WARMUP)})")
    if finisher not in REFERENCE_INTEGRATORS:
        raise ValueError(f"the reference integrators are {', '.join(REFERENCE_INTEGRATORS)}, got {finisher!r}")
    (w_steps, w_eta), burn = REFERENCE_WARMUP[ds]
    name, steps, opts = REFERENCE_INTEGRATORS[finisher]
    cfg = cls(
        chains=200 if ds == "cifar10" else 20,
        skip=10,
        eta=0.8,
        eta_schedule="constant",
        adapt_target=None,
        sigma_update="argmax",
        kernel="ula",
        sigma_floor=0.0,
        warmup=((w_steps, w_eta),),
        burn_in=burn,
        init_sampler="edm_stochastic",
        init_steps=19,  # the official N = 20 points, 19 steps, NFE 2(N − 1) − 1 = 37
        init_schedule="karras",
        init_options=dict(KAR2_OPTIONS),
        init_noise=0.5,
        finisher=name,
        finisher_steps=steps,
        finisher_schedule="karras" if name in ("heun", "edm_stochastic") else None,
        tweedie_sigma=0.01,
        tweedie_step=REFERENCE_TWEEDIE[ds],
        include_carried=True,
        repeat_outputs=True,
        ties="earliest",
        finisher_options=dict(opts),
    )
    return replace(cfg, **overrides).validate()
