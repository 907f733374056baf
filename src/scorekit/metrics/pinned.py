"""Pinned feature-extractor weights: a safetensors file whose tensors' SHA-256 must equal the pinned value."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import _digest, load_state_dict_strict, load_tensors


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over sorted tensor names, dtypes, shapes and bytes (the checksum scorekit.checkpoint stores)."""
    return _digest(state)


def load_pinned(net: torch.nn.Module, path: Path, expected: str | None, what: str, retrain: str):
    """Load `path` into `net` after checking its weights' SHA-256 against `expected` (None: only the file's own
    stored checksum). Returns (net in eval mode, digest); a missing or altered file is one ValueError line."""
    if not path.is_file():
        raise ValueError(f"{what} weights not found: {path} (retrain: {retrain})")
    tensors, _ = load_tensors(path)
    digest = weights_sha256(tensors)
    if expected is not None and digest != expected:
        raise ValueError(f"{what} {path} has weights SHA-256 {digest}, expected {expected} (altered or stale)")
    load_state_dict_strict(net, tensors, path)
    return net.eval(), digest
