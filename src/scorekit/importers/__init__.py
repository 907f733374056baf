"""Import published score models into scorekit run directories: one module per foreign format (`score_sde`,
`adm`), sharing `common` (weights-only reading, the state-dict check, the output run directory).

- score_sde (Song et al. 2021): `checkpoint_*.pth` = {"model" (keys prefixed "module."), "ema": {"shadow_params"
  in `model.parameters()` order, trainable parameters only}, "optimizer", "step"}; NCSN++ / DDPM++ networks.
- guided-diffusion (Dhariwal & Nichol 2021): ADM U-Net and noisy-classifier `.pt` state dicts.

Files are read with `torch.load(..., weights_only=True)` only. Names and shapes are checked against the network
built from the config; the first offending key is named in a one-line `CheckpointError`. The result is an
ordinary run directory (config.json + model/ema.safetensors) that every sampler, DLG, guidance, likelihood and
evaluation use unchanged.

Conditioning recorded for the denoiser wrapper (see models/parameterization.py):
- VE NCSN++ (Fourier σ embedding, scale-by-σ): network(x, σ) is the score → parameterization "score",
  conditioning "sigma", c_in = 1.
- VP / sub-VP DDPM++ (continuous): network(s·x, 999·t) predicts ε → "eps", "t999".
- ADM: network(s·x, step) predicts ε in its first C channels (learned variance in the other C) → "eps",
  "index" on the `ddpm` process (T steps, linear or cosine β), `output_channels` C.
"""

from __future__ import annotations

from .adm import (
    _ADM_ALIASES,
    ADM_CONFIGS,
    _adm_process,
    adm_classifier_network_config,
    adm_unet_network_config,
    import_adm,
    resolve_adm_config,
)
from .common import check_state_dict, read_torch_file
from .diffusers import export_diffusers, import_diffusers
from .edm import import_edm
from .score_sde import (
    SCORE_SDE_CONFIGS,
    import_score_sde,
    ncsnpp_network_config,
    resolve_score_sde_config,
    score_sde_state_dicts,
)

__all__ = [
    "SCORE_SDE_CONFIGS",
    "ADM_CONFIGS",
    "resolve_score_sde_config",
    "resolve_adm_config",
    "ncsnpp_network_config",
    "adm_unet_network_config",
    "adm_classifier_network_config",
    "read_torch_file",
    "score_sde_state_dicts",
    "check_state_dict",
    "import_score_sde",
    "import_adm",
    "_adm_process",
    "_ADM_ALIASES",
    "import_diffusers",
    "export_diffusers",
    "import_edm",
]
