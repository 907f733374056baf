"""Network registry: config["arch"] → constructor. Modules are imported lazily, so each family of networks
lives in its own file and registering one never touches another."""

from __future__ import annotations

import importlib

from torch import nn

__all__ = ["NETWORKS", "build_network"]

# arch name → "module:Class" inside scorekit.models
NETWORKS: dict[str, str] = {
    "mlp": "mlp:MLP",
    "unet": "unet:UNet",
    "ncsnpp": "ncsnpp:NCSNpp",
    "adm_unet": "adm:ADMUNet",
    "adm_classifier": "adm:ADMEncoderClassifier",
    "diffusers_unet2d": "diffusers_unet:DiffusersUNet2D",
    "noise_level_cnn": "noise_classifier:NoiseLevelCNN",
    "noise_level_mlp": "noise_classifier:NoiseLevelMLP",
    "noisy_classifier_unet": "classifiers:NoisyUNetClassifier",
    "noisy_classifier_mlp": "classifiers:NoisyMLPClassifier",
    "clean_classifier_cnn": "classifiers:CleanCNNClassifier",
    # EDM (Karras et al. 2022) and EDM2 (Karras et al. 2024) networks; *_precond are what `import edm` writes
    "edm_precond": "edm_nets:EDMPrecondNet",
    "edm_songunet": "edm_nets:SongUNet",
    "edm_dhariwalunet": "edm_nets:DhariwalUNet",
    "edm2_precond": "edm2_net:EDM2PrecondNet",
    "edm2_unet": "edm2_net:MPUNet",
}


def build_network(config: dict) -> nn.Module:
    """Build a network from {"arch": NAME, **kwargs}; unknown names or arguments give a one-line ValueError."""
    if not isinstance(config, dict) or "arch" not in config:
        raise ValueError("network config must be an object with an 'arch' key")
    kwargs = dict(config)
    arch = kwargs.pop("arch")
    if arch not in NETWORKS:
        raise ValueError(f"unknown network arch {arch!r} (choose from {', '.join(sorted(NETWORKS))})")
    module_name, cls_name = NETWORKS[arch].split(":")
    module = importlib.import_module(f"scorekit.models.{module_name}")
    cls = getattr(module, cls_name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"bad network config for {arch!r}: {e}") from None
