"""Regenerate tests/fixtures/edm/: tiny EDM / EDM2 snapshot pickles made by the reference code, and their D(x, σ).

    python scripts/make_edm_fixtures.py --edm PATH/TO/NVlabs-edm --edm2 PATH/TO/NVlabs-edm2 [--out tests/fixtures/edm]

Each repository is run in its own subprocess (both ship top-level `dnnlib` and `torch_utils` packages). Networks
are built the way their training scripts build them (`dnnlib.util.construct_class_by_name(**network_kwargs,
**interface_kwargs)`), given random weights (their zero-initialised output layers would make D trivial), and
pickled the way their training loops write snapshots:
- EDM: `pickle.dump(dict(ema=net, loss_fn=…, augment_pipe=…, dataset_kwargs=dict(…)))` (training/training_loop.py);
- EDM2: `pickle.dump(dnnlib.EasyDict(encoder=…, dataset_kwargs=…, loss_fn=…, ema=net.to(float16)))`, and a post-hoc
  EMA snapshot written by their `reconstruct_phema.reconstruct_phema` from two such snapshots.
The ADM fixture's weights are stored in float16 (their layers cast weights to the input dtype, so the network
computes in float32 either way); at 16 channels its blocks have no attention heads (64 channels per head), so
the attention path of the shared UNetBlock is covered by the SongUNet fixtures (one head) instead.
Reference outputs D(x, σ[, one-hot y]) come from the unpickled network's own forward on CPU in float32 and are
written beside each pickle as NAME.npz (x, sigma, labels, D, D_cond when conditional, D_native for float16
snapshots evaluated with their float16 parameters as unpickled).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# name → (precond class, network kwargs without the interface, label_dim, weights in float16)
EDM_NETS = {
    "edm-ddpmpp-vp": (
        "training.networks.VPPrecond",
        dict(
            model_type="SongUNet",
            embedding_type="positional",
            encoder_type="standard",
            decoder_type="standard",
            channel_mult_noise=1,
            resample_filter=[1, 1],
            model_channels=8,
            channel_mult=[1, 2],
            num_blocks=1,
            attn_resolutions=[4],
            dropout=0.13,
            augment_dim=9,
        ),
        0,
        False,
    ),
    "edm-ncsnpp-ve": (
        "training.networks.VEPrecond",
        dict(
            model_type="SongUNet",
            embedding_type="fourier",
            encoder_type="residual",
            decoder_type="standard",
            channel_mult_noise=2,
            resample_filter=[1, 3, 3, 1],
            model_channels=8,
            channel_mult=[1, 2],
            num_blocks=1,
            attn_resolutions=[4],
            dropout=0.13,
        ),
        0,
        False,
    ),
    "edm-skip-edm-cond": (
        "training.networks.EDMPrecond",
        dict(
            model_type="SongUNet",
            embedding_type="positional",
            encoder_type="skip",
            decoder_type="skip",
            channel_mult_noise=1,
            resample_filter=[1, 3, 3, 1],
            model_channels=8,
            channel_mult=[1, 2],
            num_blocks=1,
            attn_resolutions=[4],
            dropout=0.1,
            label_dropout=0.1,
        ),
        4,
        False,
    ),
    "edm-adm-edm-cond": (
        "training.networks.EDMPrecond",
        dict(
            model_type="DhariwalUNet",
            model_channels=8,
            channel_mult=[1, 2],
            num_blocks=1,
            attn_resolutions=[4],
            dropout=0.1,
            augment_dim=9,
        ),
        5,
        True,
    ),
}
EDM_LOSS = {
    "training.networks.VPPrecond": "training.loss.VPLoss",
    "training.networks.VEPrecond": "training.loss.VELoss",
    "training.networks.EDMPrecond": "training.loss.EDMLoss",
}
EDM2_NETS = {
    "edm2-uncond": (
        dict(model_channels=8, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], channels_per_head=8),
        0,
    ),
    "edm2-cond": (
        dict(
            model_channels=8,
            channel_mult=[1, 2],
            num_blocks=1,
            attn_resolutions=[8, 4],
            channels_per_head=4,
            logvar_channels=8,
            dropout=0.1,
            label_balance=0.4,
            concat_balance=0.6,
        ),
        6,
    ),
}
RESOLUTION, CHANNELS, BATCH = 8, 3, 4
SIGMAS = [0.004, 0.3, 2.5, 60.0]


def _randomize(net, torch, seed: int) -> None:
    """Random weights everywhere (fan-in scaled), so no zero-initialised layer hides a mismatch."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(net.named_parameters()):
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
            elif p.ndim == 1:
                n = torch.randn(p.shape, generator=g)
                p.copy_(1.0 + 0.2 * n if p.shape[0] > 1 else n)
            else:
                p.copy_(0.5 + 0.3 * torch.randn((), generator=g))


def _inputs(torch, label_dim: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(BATCH, CHANNELS, RESOLUTION, RESOLUTION, generator=g) * 2 - 1
    sigma = torch.tensor(SIGMAS, dtype=torch.float32)
    x = x0 + sigma.reshape(-1, 1, 1, 1) * torch.randn(x0.shape, generator=g)
    labels = torch.randint(0, max(label_dim, 1), (BATCH,), generator=g) if label_dim else torch.full((BATCH,), -1)
    return x, sigma, labels


def _reference(net, torch, np, x, sigma, labels, label_dim: int) -> dict:
    """D of the unpickled network with its weights in float32 ("D", "D_cond"), and, for float16 snapshots, as
    unpickled ("D_native"): EDM2's MPConv computes the gain scalar gain/√fan_in in the gain parameter's dtype,
    so float16 gains round it to float16 (a relative change of ~1e-4 in D)."""
    import copy

    net32 = copy.deepcopy(net).to(torch.float32)
    with torch.no_grad():
        out = {"x": x.numpy(), "sigma": sigma.numpy(), "labels": labels.numpy(), "D": net32(x, sigma).numpy()}
        if label_dim:
            onehot = torch.nn.functional.one_hot(labels, label_dim).to(torch.float32)
            out["D_cond"] = net32(x, sigma, onehot).numpy()
        if any(p.dtype == torch.float16 for p in net.parameters()):
            out["D_native"] = net(x, sigma).to(torch.float32).numpy()
    return out


def run_edm(repo: Path, out: Path) -> None:
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    import pickle

    import dnnlib
    import numpy as np
    import torch

    manifest = {}
    for i, (name, (cls, kwargs, label_dim, half)) in enumerate(EDM_NETS.items()):
        torch.manual_seed(100 + i)
        interface = dict(img_resolution=RESOLUTION, img_channels=CHANNELS, label_dim=label_dim)
        net = dnnlib.util.construct_class_by_name(class_name=cls, **kwargs, **interface)
        _randomize(net, torch, 200 + i)
        loss_fn = dnnlib.util.construct_class_by_name(class_name=EDM_LOSS[cls])
        augment = None
        if kwargs.get("augment_dim"):
            augment = dnnlib.util.construct_class_by_name(
                class_name="training.augment.AugmentPipe", p=0.12, xflip=1e8, yflip=1, scale=1, rotate_frac=1
            )
        ema = net.eval().requires_grad_(False)
        if half:
            ema = ema.to(torch.float16)
        dataset_kwargs = dnnlib.EasyDict(
            class_name="training.dataset.ImageFolderDataset", path="tiny.zip", use_labels=bool(label_dim), xflip=False
        )
        data = dict(ema=ema, loss_fn=loss_fn, augment_pipe=augment, dataset_kwargs=dict(dataset_kwargs))
        with open(out / f"{name}.pkl", "wb") as f:
            pickle.dump(data, f)
        with open(out / f"{name}.pkl", "rb") as f:  # the reference network is the unpickled one
            net2 = pickle.load(f)["ema"]
        x, sigma, labels = _inputs(torch, label_dim, 300 + i)
        np.savez(out / f"{name}.npz", **_reference(net2, torch, np, x, sigma, labels, label_dim))
        manifest[name] = {"class_name": cls, "network_kwargs": kwargs, "label_dim": label_dim, "float16": half}
    (out / "edm_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def run_edm2(repo: Path, out: Path, scratch: Path) -> None:
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    import pickle

    import dnnlib
    import numpy as np
    import torch

    sys.argv = [sys.argv[0]]
    if "psutil" not in sys.modules:  # training_loop.py imports it for memory statistics only
        import types

        sys.modules["psutil"] = types.ModuleType("psutil")
    import reconstruct_phema

    manifest = {}
    for i, (name, (kwargs, label_dim)) in enumerate(EDM2_NETS.items()):
        torch.manual_seed(500 + i)
        interface = dict(img_resolution=RESOLUTION, img_channels=CHANNELS, label_dim=label_dim)
        net = dnnlib.util.construct_class_by_name(class_name="training.networks_edm2.Precond", **kwargs, **interface)
        _randomize(net, torch, 600 + i)
        encoder = dnnlib.util.construct_class_by_name(class_name="training.encoders.StandardRGBEncoder")
        loss_fn = dnnlib.util.construct_class_by_name(class_name="training.training_loop.EDM2Loss")
        dataset_kwargs = dnnlib.EasyDict(
            class_name="training.dataset.ImageFolderDataset", path="tiny.zip", use_labels=bool(label_dim)
        )

        def snapshot(net, encoder=encoder, dataset_kwargs=dataset_kwargs, loss_fn=loss_fn):
            data = dnnlib.EasyDict(encoder=encoder, dataset_kwargs=dataset_kwargs, loss_fn=loss_fn)
            data.ema = net.cpu().eval().requires_grad_(False).to(torch.float16)
            return data

        with open(out / f"{name}.pkl", "wb") as f:
            pickle.dump(snapshot(net), f)
        with open(out / f"{name}.pkl", "rb") as f:
            net2 = pickle.load(f)["ema"]
        x, sigma, labels = _inputs(torch, label_dim, 700 + i)
        np.savez(out / f"{name}.npz", **_reference(net2, torch, np, x, sigma, labels, label_dim))
        cls = "training.networks_edm2.Precond"
        manifest[name] = {"class_name": cls, "network_kwargs": kwargs, "label_dim": label_dim}

        if label_dim:  # post-hoc EMA: two power-EMA snapshots (as training writes them) → one reconstruction
            phema_in = scratch / "phema_in"
            phema_in.mkdir(parents=True, exist_ok=True)
            import copy

            for k, std in enumerate((0.050, 0.100)):
                other = copy.deepcopy(net).to(torch.float32)
                _randomize(other, torch, 800 + k)
                with open(phema_in / f"network-snapshot-0000064-{std:.3f}.pkl", "wb") as f:
                    pickle.dump(snapshot(other), f)
            pkls = reconstruct_phema.list_input_pickles(str(phema_in))
            for _ in reconstruct_phema.reconstruct_phema(
                pkls, out_std=[0.07], out_dir=str(scratch / "phema_out"), verbose=False
            ):
                pass
            (src,) = sorted((scratch / "phema_out").glob("*.pkl"))
            pname = f"{name}-phema"
            (out / f"{pname}.pkl").write_bytes(src.read_bytes())
            with open(out / f"{pname}.pkl", "rb") as f:
                net3 = pickle.load(f)["ema"]
            x, sigma, labels = _inputs(torch, label_dim, 900)
            np.savez(out / f"{pname}.npz", **_reference(net3, torch, np, x, sigma, labels, label_dim))
            manifest[pname] = {**manifest[name], "phema": src.name}
    (out / "edm2_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--edm", type=Path, help="checkout of NVlabs/edm")
    p.add_argument("--edm2", type=Path, help="checkout of NVlabs/edm2")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "edm")
    p.add_argument("--scratch", type=Path, default=None, help="folder for the post-hoc EMA inputs (temporary)")
    p.add_argument("--only", choices=["edm", "edm2"], help=argparse.SUPPRESS)  # the per-repo subprocess
    a = p.parse_args()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if a.only == "edm":
        run_edm(a.edm.resolve(), out)
        return 0
    if a.only == "edm2":
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            run_edm2(a.edm2.resolve(), out, Path(a.scratch or tmp).resolve())
        return 0
    if a.edm is None and a.edm2 is None:
        p.error("give --edm and/or --edm2")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    for which, repo in (("edm", a.edm), ("edm2", a.edm2)):
        if repo is not None:
            cmd = [sys.executable, __file__, f"--{which}", str(repo), "--out", str(out), "--only", which]
            subprocess.run(cmd, check=True, env=env)
    sizes = {f.name: f.stat().st_size for f in sorted(out.iterdir())}
    print(json.dumps({"out": str(out), "bytes": sum(sizes.values()), "files": sizes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
