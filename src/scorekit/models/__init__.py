"""Networks and the network → denoiser wrapper."""

from .parameterization import Denoiser, NetworkDenoiser, Preconditioning

__all__ = ["Denoiser", "NetworkDenoiser", "Preconditioning"]
