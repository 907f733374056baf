"""scorekit: score-based diffusion generative modelling in PyTorch."""

from .analytic import GaussianMixture, load_gmm_spec
from .models.parameterization import Denoiser, NetworkDenoiser
from .processes import DDPM, EDM, VESDE, VPSDE, SubVPSDE, get_process

__version__ = "0.1.0"

__all__ = [
    "DDPM",
    "EDM",
    "VESDE",
    "VPSDE",
    "SubVPSDE",
    "Denoiser",
    "GaussianMixture",
    "NetworkDenoiser",
    "get_process",
    "load_gmm_spec",
]
