"""`evaluate_samples`: samples (user units) against a data set → a metrics dict, as `scorekit evaluate` writes it.

Image data: fid, kid (± std over subsets), is (± std over splits), precision / recall, on features of a pinned
extractor (named with its SHA-256 in the result). Vector data: sliced Wasserstein, MMD (RBF, unbiased) and
exact W2 on at most `w2_max` points per side, each the mean over `repeats` estimates with `<metric>_std` beside
it: independent reference draws when the reference can be drawn afresh (`gmm:` specs and toy data sets), otherwise
fresh projections / subsamples of the fixed reference (`uncertainty` says which). For a redrawable reference the
two-sample floor — the same metric between two independent exact samples of the same sizes — is reported as
`<metric>_floor` (± `<metric>_floor_std`): no sampler can do better than the floor on average.
Class-conditional samples (`labels`): `class_accuracy` and `per_class_accuracy` (fraction classified as their
label) by the pinned digits classifier (digits) or the exact class posterior (`gmm:` specs with labels).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "IMAGE_METRICS",
    "VECTOR_METRICS",
    "parse_metrics",
    "load_samples_npz",
    "load_labels_npz",
    "evaluate_samples",
    "class_accuracy",
]

IMAGE_METRICS = ("fid", "kid", "is", "pr")
VECTOR_METRICS = ("swd", "mmd", "w2")
_ALIASES = {"precision": "pr", "recall": "pr", "inception_score": "is", "sliced_wasserstein": "swd"}


def parse_metrics(spec: str | list[str] | None, kind: str) -> list[str]:
    """Comma list → metric names valid for this data kind (default: all of that kind)."""
    allowed = IMAGE_METRICS if kind == "image" else VECTOR_METRICS
    if spec is None or spec == "" or spec == "all":
        return list(allowed)
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for n in (s.strip().lower() for s in names):
        n = _ALIASES.get(n, n)
        if n not in IMAGE_METRICS + VECTOR_METRICS:
            raise ValueError(f"unknown metric {n!r} (choose from {', '.join(IMAGE_METRICS + VECTOR_METRICS)})")
        if n not in allowed:
            raise ValueError(f"metric {n!r} is for {'vector' if kind == 'image' else 'image'} data, not {kind} data")
        if n not in out:
            out.append(n)
    return out


def load_samples_npz(path: str | Path) -> tuple[np.ndarray, dict]:
    """The `samples` array (float32) and the scalar extras (`nfe`, …) of a `scorekit sample` output."""
    from ..data.readers import require_npz

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"samples file not found: {path}")
    require_npz(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "samples" not in z.files:
                raise ValueError(f"{path} has no 'samples' array (keys: {', '.join(z.files) or 'none'})")
            samples = z["samples"]
            extras = {k: float(z[k]) for k in ("nfe",) if k in z.files and z[k].size == 1}
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {path}: {' '.join(str(e).split())}") from None
    if not np.issubdtype(samples.dtype, np.number):
        raise ValueError(f"{path}: 'samples' is not numeric (dtype {samples.dtype})")
    return samples.astype(np.float32), extras


def load_labels_npz(path: str | Path) -> np.ndarray | None:
    """The `labels` array (int64, one per sample) of a `scorekit sample` output, or None when it has none."""
    from ..data.readers import require_npz

    path = require_npz(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "labels" not in z.files:
                return None
            labels = z["labels"]
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {path}: {' '.join(str(e).split())}") from None
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' must be integers (dtype {labels.dtype})")
    return labels.astype(np.int64).reshape(-1)


def _check_samples(samples: np.ndarray, shape: tuple, kind: str) -> np.ndarray:
    if samples.ndim < 2 or tuple(samples.shape[1:]) != tuple(shape):
        raise ValueError(f"samples have shape {tuple(samples.shape)}, the data has per-sample shape {tuple(shape)}")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"samples contain {int((~np.isfinite(samples)).sum())} NaN/Inf values")
    if kind == "image":
        lo, hi = float(samples.min()), float(samples.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"image samples must lie in [0, 1] (found [{lo:.3g}, {hi:.3g}]): pass user-range images")
        samples = np.clip(samples, 0.0, 1.0)
    return samples


def evaluate_samples(
    samples,
    data: str,
    *,
    metrics: str | list[str] | None = None,
    extractor: str = "auto",
    inception_path=None,
    inception_sha256: str | None = None,
    ref_stats: str | Path | None = None,
    num_ref: int | None = None,
    split: str = "train",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    pr_k: int = 3,
    swd_projections: int = 256,
    w2_max: int = 1000,
    seed: int = 0,
    device="cpu",
    repeats: int = 5,
    floor: bool | None = None,
    labels=None,
    classifier: str = "auto",
) -> dict:
    """Metrics of `samples` (user units: images in [0, 1], channels first) against `data`'s `split`.
    With `ref_stats`, reference features come from that `.npz` (created if absent; refused if its extractor,
    hash, data, split or N differ). Vector metrics are means over `repeats` estimates with `<metric>_std`;
    `floor` (default: whenever the reference can be redrawn) adds the two-sample floor. With `labels` (one per
    sample) and a classifier for the data (`classifier="auto"`; "none" skips), per-class accuracy."""
    from ..data import load_data

    samples = np.asarray(samples.detach().cpu() if torch.is_tensor(samples) else samples, dtype=np.float32)
    ds_ref = None
    if ref_stats is None or not Path(ref_stats).is_file():
        ds_ref = load_data(data, split=split, num=num_ref, seed=seed)
        kind, shape = ds_ref.kind, tuple(ds_ref.shape)
    else:  # the data's kind and shape still come from the data set (cheap), not the cached file
        probe = load_data(data, split=split, num=2, seed=seed)
        kind, shape = probe.kind, tuple(probe.shape)
    names = parse_metrics(metrics, kind)
    if kind != "image" and ref_stats is not None:
        raise ValueError("--ref-stats caches image features; vector metrics compare with the data directly")
    samples = _check_samples(samples, shape, kind)
    if len(samples) < 2:
        raise ValueError(f"need at least 2 samples, got {len(samples)}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if labels is not None:
        labels = np.asarray(labels.detach().cpu() if torch.is_tensor(labels) else labels).reshape(-1)
        if len(labels) != len(samples):
            raise ValueError(f"{len(labels)} labels for {len(samples)} samples")
    result: dict = {}
    if kind == "image":
        result.update(
            _image_metrics(samples, data, split, num_ref, ds_ref, shape, names, extractor, inception_path,
                           inception_sha256, ref_stats, kid_subsets, kid_subset_size, is_splits, pr_k, seed, device)
        )  # fmt: skip
    else:
        ref = ds_ref.user_data().double().reshape(len(ds_ref), -1)
        x = torch.from_numpy(samples).double().reshape(len(samples), -1)
        result.update(_vector_metrics_repeated(x, ref, data, split, names, swd_projections, w2_max, seed, repeats,
                                               floor))  # fmt: skip
        result["num_reference"] = len(ref)
    if labels is not None and classifier != "none":
        acc = class_accuracy(samples, labels, data, kind, shape, device=device)
        if acc is None and classifier not in ("auto", "none"):
            raise ValueError(f"no classifier for the samples of {data!r} (per-class accuracy needs digits or gmm:)")
        if acc is not None:
            result.update(acc)
    result["num_samples"] = len(samples)
    result["data"] = data
    result["split"] = split
    return result


def _image_metrics(samples, data, split, num_ref, ds_ref, shape, names, extractor, inception_path, inception_sha256,
                   ref_stats, kid_subsets, kid_subset_size, is_splits, pr_k, seed, device) -> dict:  # fmt: skip
    from .features import get_extractor
    from .fid import frechet_distance_from_features, gaussian_stats
    from .inception_score import inception_score
    from .kid import kernel_inception_distance
    from .precision_recall import precision_recall
    from .reference import load_reference, save_reference

    if extractor == "auto" and data == "fashion-mnist":
        extractor = "fashion"  # the pinned Fashion-MNIST classifier, not a digits or Inception network
    ext = get_extractor(extractor, "image", shape, inception_path, inception_sha256, device=device)
    # The Inception pipelines (pytorch-fid, clean-fid) see 8-bit images: round both sides to 1/255 steps.
    quantize = ext.name == "inception"
    if quantize:
        samples = np.round(samples * 255.0) / 255.0
    feats, logits = _features(ext, samples)
    need_ref_features = "kid" in names or "pr" in names
    if ref_stats is not None and Path(ref_stats).is_file():
        ref = load_reference(ref_stats, extractor=ext.name, extractor_sha256=ext.sha256, data=data, split=split,
                             num=num_ref)  # fmt: skip
        if need_ref_features and ref["features"] is None:
            raise ValueError(f"{ref_stats} holds only mean/covariance; KID and precision/recall need its features")
        ref_mu, ref_sigma, ref_feats, n_ref = ref["mu"], ref["sigma"], ref["features"], int(ref["meta"]["num"])
    else:
        ref_user = ds_ref.user_data()
        ref_feats, _ = _features(ext, torch.round(ref_user * 255) / 255 if quantize else ref_user)
        ref_mu, ref_sigma = gaussian_stats(ref_feats)
        n_ref = len(ref_feats)
        if ref_stats is not None:
            save_reference(ref_stats, ref_feats, extractor=ext.name, extractor_sha256=ext.sha256, data=data,
                           split=split)  # fmt: skip
    out: dict = {}
    if "fid" in names:
        out["fid"] = frechet_distance_from_features(feats, ref_mu, ref_sigma)
    if "kid" in names:
        out["kid"], out["kid_std"] = kernel_inception_distance(
            feats, ref_feats, num_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
        )
        out["kid_subset_size"] = min(int(kid_subset_size), len(feats), len(ref_feats))
    if "is" in names:
        splits = max(1, min(int(is_splits), len(logits) // 2))
        out["is"], out["is_std"] = inception_score(logits, splits=splits)
        out["is_splits"] = splits
    if "pr" in names:
        out["precision"], out["recall"] = precision_recall(ref_feats, feats, k=pr_k)
        out["pr_k"] = int(pr_k)
    out["feature_extractor"] = ext.name
    out["feature_extractor_sha256"] = ext.sha256
    out["quantized_uint8"] = quantize
    out["num_reference"] = n_ref
    return out


def _features(ext, x) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (and logits) of x; under torchrun each rank extracts a contiguous share and all ranks gather."""
    from ..distributed import gather_batches, rank_world

    rank, world = rank_world()
    if world == 1:
        return ext.features_and_logits(x)
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    share = torch.tensor_split(torch.arange(len(x)), world)[rank]
    f, lg = ext.features_and_logits(x[share])
    parts = {rank: torch.from_numpy(f if lg is None else np.concatenate([f, lg], 1))}
    allf = torch.cat([v for _, v in sorted(gather_batches(parts).items())]).numpy()
    return (allf, None) if lg is None else (allf[:, : f.shape[1]], allf[:, f.shape[1] :])


def redrawable(data: str) -> bool:
    """Whether `load_data(data, seed=s)` gives an independent exact sample for each seed (`gmm:` and toys)."""
    from ..data import TOY_DATASETS

    return data.startswith("gmm:") or data in TOY_DATASETS


def _vector_metrics_repeated(x, ref, data, split, names, swd_projections, w2_max, seed, repeats, floor) -> dict:
    """Each metric as the mean ± std of `repeats` estimates (repeat 0 is the single estimate of old), and the
    two-sample floor when the reference can be redrawn."""
    from ..data import load_data
    from .vector import mean_std

    redraw = redrawable(data)
    if floor and not redraw:
        raise ValueError(f"a two-sample floor needs a reference that can be drawn afresh (gmm: or a toy), not {data!r}")
    floor = redraw if floor is None else bool(floor)

    def fresh(num, s):
        return load_data(data, split=split, num=num, seed=s).user_data().double().reshape(num, -1)

    refs = [ref] + [fresh(len(ref), seed + 1000 * r) if redraw else ref for r in range(1, repeats)]
    runs = [_vector_metrics(x, refs[r], names, swd_projections, w2_max, seed + 101 * r) for r in range(repeats)]
    out = dict(runs[0])
    for k in runs[0]:
        if k in ("sliced_wasserstein", "mmd", "w2"):
            out[k], out[f"{k}_std"] = mean_std(run[k] for run in runs)
    out["metric_repeats"] = int(repeats)
    out["uncertainty"] = "reference redraws" if redraw else "projections and subsamples of the fixed reference"
    if floor:
        fl = [_vector_metrics(fresh(len(x), seed + 1000 * r + 500), refs[r], names, swd_projections, w2_max,
                              seed + 101 * r) for r in range(repeats)]  # fmt: skip
        for k in ("sliced_wasserstein", "mmd", "w2"):
            if k in fl[0]:
                out[f"{k}_floor"], out[f"{k}_floor_std"] = mean_std(f[k] for f in fl)
    return out


def class_accuracy(samples, labels, data: str, kind: str, shape, device="cpu") -> dict | None:
    """Per-class accuracy of labelled samples under the data's classifier: the pinned digits CNN for digits,
    the exact class posterior for a labelled `gmm:` spec; None when there is no classifier for `data`."""
    from .vector import per_class_accuracy

    x = torch.as_tensor(np.asarray(samples))
    if kind == "image" and data == "digits" and tuple(shape) == (1, 8, 8):
        from .digits_classifier import load_digits_classifier

        net, digest = load_digits_classifier()
        net = net.to(device)
        with torch.no_grad():
            pred = torch.cat([net(b.float().to(device)).argmax(1).cpu() for b in x.split(1024)])
        name = f"digits ({digest[:12]})"
    elif data.startswith("gmm:"):
        from ..analytic import load_gmm_spec

        gmm = load_gmm_spec(data[4:])
        if gmm.labels is None:
            return None
        pred = gmm.class_posterior(x.double().reshape(len(x), -1), 0.0).argmax(1)
        name = "gmm exact class posterior"
    elif kind == "image" and data == "fashion-mnist" and tuple(shape) == (1, 28, 28):
        from .fashion_classifier import load_fashion_classifier

        net, digest = load_fashion_classifier()
        net = net.to(device).eval()
        with torch.no_grad():
            pred = torch.cat([net(b.float().to(device)).argmax(1).cpu() for b in x.split(1024)])
        name = f"fashion ({digest[:12]})"
    else:
        return None
    overall, per = per_class_accuracy(pred.numpy(), labels)
    return {"class_accuracy": overall, "per_class_accuracy": per, "class_accuracy_classifier": name}


def _vector_metrics(x: torch.Tensor, ref: torch.Tensor, names, swd_projections, w2_max, seed, mmd_max=2000) -> dict:
    from .vector import mmd_rbf, sliced_wasserstein, wasserstein2_exact

    out: dict = {}
    if "swd" in names:
        g = torch.Generator().manual_seed(int(seed))
        out["sliced_wasserstein"] = sliced_wasserstein(x, ref, num_projections=swd_projections, generator=g)
    if "mmd" in names:
        g = torch.Generator().manual_seed(int(seed) + 1)
        m = min(mmd_max, len(x), len(ref))  # three m×m float64 kernel matrices
        xs = x[torch.randperm(len(x), generator=g)[:m]]
        rs = ref[torch.randperm(len(ref), generator=g)[:m]]
        out["mmd"] = mmd_rbf(xs, rs)
        out["mmd_num"] = m
    if "w2" in names:
        g = torch.Generator().manual_seed(int(seed) + 2)
        m = min(int(w2_max), len(x), len(ref))
        xs = x[torch.randperm(len(x), generator=g)[:m]]
        rs = ref[torch.randperm(len(ref), generator=g)[:m]]
        out["w2"] = wasserstein2_exact(xs, rs, max_n=max(m, 1))
        out["w2_num"] = m
    for k, v in out.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"metric {k} is not finite")
    return out
