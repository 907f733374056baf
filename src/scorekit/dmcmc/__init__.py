"""Denoising MCMC (Kim & Ye 2022): noise-level estimators and the Denoising Langevin Gibbs driver.

Training the noise-level classifier is `dmcmc.noise_training` (it uses the training loop, which samples through the
front end, which runs DLG: importing it here would close a cycle)."""

from .dlg import DLGConfig, DLGRun, DMCMCResult, GibbsKernel, run_sampler, sample_dlg
from .estimators import ExactNoisePosterior, NoiseLevelEstimator, TrainedNoiseClassifier, make_levels

__all__ = [
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
