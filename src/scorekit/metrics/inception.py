"""Inception-v3 in the exact FID configuration (Szegedy et al. 2016; Heusel et al. 2017's TF graph).

This is the network of TensorFlow's `inception-2015-12-05` graph as ported to PyTorch by pytorch-fid
(`pt_inception-2015-12-05-6726825d.pth`, also used by clean-fid, torch-fidelity and torchmetrics), written
here from the published architecture so its state dict keys and shapes are the reference ones
(`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch_pool.bn.running_mean`, …, `fc.weight` [1008, 2048]).
It differs from torchvision's Inception-v3 in four ways: 1008 output classes, no auxiliary head, average
pools that exclude padding (TF semantics) and a max pool in the last block's pool branch.

Weights are never downloaded: `load_fid_inception(path)` reads a local file and checks its SHA-256.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FID_INCEPTION_SHA256",
    "FID_INCEPTION_FILENAME",
    "FID_INCEPTION_URL",
    "INCEPTION_ENV",
    "FIDInceptionV3",
    "file_sha256",
    "load_fid_inception",
    "missing_weights_message",
]

FID_INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
# Published SHA-256 of that file (its first 8 hex digits are the 6726825d in its name, torch.hub's convention).
FID_INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
FID_INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_INCEPTION_FILENAME
INCEPTION_ENV = "SCOREKIT_INCEPTION_WEIGHTS"


class BasicConv2d(nn.Module):
    """conv (no bias) → BatchNorm (ε = 1e-3, TF's value) → ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x):
    # TF's average pool ignores the zero padding in the count.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """35×35 block: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1 (Szegedy et al. 2016, fig. 5)."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionB(nn.Module):
    """35→17 grid reduction: stride-2 3×3 | 1×1→3×3→stride-2 3×3 | stride-2 max pool."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (1×7 / 7×1) (Szegedy et al. 2016, fig. 6)."""

    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
        c = channels_7x7
        row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c, 1)
        self.branch7x7_2 = BasicConv2d(c, c, **row)
        self.branch7x7_3 = BasicConv2d(c, 192, **col)
        self.branch7x7dbl_1 = BasicConv2d(cin, c, 1)
        self.branch7x7dbl_2 = BasicConv2d(c, c, **col)
        self.branch7x7dbl_3 = BasicConv2d(c, c, **row)
        self.branch7x7dbl_4 = BasicConv2d(c, c, **col)
        self.branch7x7dbl_5 = BasicConv2d(c, 192, **row)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionD(nn.Module):
    """17→8 grid reduction: 1×1→stride-2 3×3 | 1×1→1×7→7×1→stride-2 3×3 | stride-2 max pool."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """8×8 block with expanded filter banks (Szegedy et al. 2016, fig. 7). `pool="avg"` for Mixed_7b;
    the FID graph's Mixed_7c uses a 3×3 max pool in its pool branch (`pool="max"`)."""

    def __init__(self, cin: int, pool: str = "avg"):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.pool == "max" else _avg_pool_tf(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3: input [N, 3, H, W] in [0, 1]; resized to 299×299 (bilinear, align_corners=False,
    as pytorch-fid), mapped to [−1, 1]; returns (pool3 features [N, 2048], logits [N, 1008]).

    The logits are pool3 · Wᵀ without the bias, as in the original Inception Score code (Salimans et al. 2016),
    which multiplies pool3 by the softmax weight matrix only."""

    def __init__(self, resize: bool = True):
        super().__init__()
        self.resize = resize
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Inception expects images [N, 3, H, W], got {tuple(x.shape)}")
        if self.resize:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.pool3(x)
        return f, f @ self.fc.weight.T


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def missing_weights_message() -> str:
    return (
        f"the FID Inception weights are needed locally: download {FID_INCEPTION_FILENAME} from {FID_INCEPTION_URL} "
        f"and pass --inception-weights PATH or set {INCEPTION_ENV}=PATH (scorekit never downloads)"
    )


def resolve_inception_path(path: str | Path | None = None) -> Path:
    """The local weights file: the given path, else $SCOREKIT_INCEPTION_WEIGHTS; a clear ValueError otherwise."""
    path = path or os.environ.get(INCEPTION_ENV)
    if not path:
        raise ValueError(missing_weights_message())
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"Inception weights file not found: {path}; {missing_weights_message()}")
    return path


def load_fid_inception(
    path: str | Path | None = None, sha256: str | None = FID_INCEPTION_SHA256, device="cpu"
) -> tuple[FIDInceptionV3, str]:
    """Build FIDInceptionV3 and load a local state dict (torch `.pth` read with weights_only=True, or
    `.safetensors`) after checking the file's SHA-256 against `sha256` (the published hash by default;
    None skips the check). Returns (network in eval mode, the file's SHA-256)."""
    from ..checkpoint import load_state_dict_strict

    path = resolve_inception_path(path)
    digest = file_sha256(path)
    if sha256 is not None and digest.lower() != sha256.lower():
        raise ValueError(
            f"Inception weights {path} have SHA-256 {digest}, expected {sha256} (wrong or damaged file; "
            f"the reference file is {FID_INCEPTION_FILENAME} from {FID_INCEPTION_URL}, or pass --inception-sha256)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes one line
        raise ValueError(f"cannot read Inception weights {path}: {str(e).splitlines()[0] if str(e) else e}") from None
    if not isinstance(state, dict):
        raise ValueError(f"Inception weights {path} do not hold a state dict")
    net = FIDInceptionV3()
    own = net.state_dict()
    # BatchNorm step counters are bookkeeping the TF port may or may not carry: keep ours when absent.
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
    extra = sorted(set(state) - set(own))
    if extra:
        raise ValueError(f"Inception weights {path}: unexpected key {extra[0]!r} (not the FID Inception-v3)")
    load_state_dict_strict(net, state, path)
    return net.to(device).eval(), digest
