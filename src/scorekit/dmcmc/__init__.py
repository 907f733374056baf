"""Denoising MCMC (Kim & Ye 2022): noise-level estimators, the Denoising Langevin Gibbs driver, its budget planner
(`plan_dlg`) and chain diagnostics.

Training the noise-level classifier is `dmcmc.noise_training` (it uses the training loop, which samples through the
front end, which runs DLG: importing it here would close a cycle)."""

from .budget import DLGPlan, plan_dlg
from .diagnostics import ChainDiagnostics
from .dlg import DLGConfig, DLGRun, DMCMCResult, GibbsKernel, run_sampler, sample_dlg
from .estimators import (
    ExactNoisePosterior,
    NoiseLevelEstimator,
    ResidualNoiseEstimator,
    TrainedNoiseClassifier,
    estimator_cost,
    make_levels,
)
from .reference import REFERENCE_INTEGRATORS

__all__ = [
    "plan_dlg",
    "DLGPlan",
    "ChainDiagnostics",
    "REFERENCE_INTEGRATORS",
    "ResidualNoiseEstimator",
    "estimator_cost",
    "make_levels",
    "NoiseLevelEstimator",
    "ExactNoisePosterior",
    "TrainedNoiseClassifier",
    "DLGConfig",
    "DMCMCResult",
    "sample_dlg",
    "DLGRun",
    "GibbsKernel",
    "run_sampler",
]
