"""Networks and the network → denoiser wrapper."""

from .parameterization import Denoiser, NetworkDenoiser, Preconditioning
from .registry import NETWORKS, build_network

__all__ = ["Denoiser", "NetworkDenoiser", "Preconditioning", "NETWORKS", "build_network"]
