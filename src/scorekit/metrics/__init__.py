"""Sample-quality metrics: vector metrics (sliced Wasserstein, …) and image metrics (FID, KID, IS, P/R)."""

from .vector import sliced_wasserstein

__all__ = ["sliced_wasserstein"]
