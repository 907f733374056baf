"""Denoising MCMC (Kim & Ye 2022): noise-level estimators, the Denoising Langevin Gibbs driver, and the
training of the noise-level classifier."""

from .dlg import DLGConfig, DLGRun, DMCMCResult, GibbsKernel, run_sampler, sample_dlg
from .estimators import ExactNoisePosterior, NoiseLevelEstimator, TrainedNoiseClassifier, make_levels
from .noise_training import (
    noise_classifier_config,
    noise_classifier_network_config,
    noise_level_accuracy,
    save_noise_classifier_run,
    train_noise_classifier,
    train_noise_classifier_run,
)

__all__ = [
    "make_levels",
    "NoiseLevelEstimator",
    "ExactNoisePosterior",
    "TrainedNoiseClassifier",
    "noise_classifier_config",
    "noise_classifier_network_config",
    "train_noise_classifier",
    "train_noise_classifier_run",
    "noise_level_accuracy",
    "save_noise_classifier_run",
    "DLGConfig",
    "DMCMCResult",
    "sample_dlg",
    "DLGRun",
    "GibbsKernel",
    "run_sampler",
]
