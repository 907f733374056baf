"""Flags of `scorekit sample --guidance` and the guided denoiser they build."""

from __future__ import annotations

import argparse
import math

from ..analytic import GaussianMixture
from ..checkpoint import read_config
from ..guidance import (
    ClassifierFreeGuidedDenoiser,
    ClassifierGuidedDenoiser,
    ExactClassifier,
    TrainedClassifier,
    load_classifier,
    parse_class_labels,
)


def add_guidance_arguments(parser: argparse.ArgumentParser) -> None:
    """The CONTRACT's guidance flags: --guidance classifier (--classifier RUN3|exact) --class K --scale S,
    and --guidance cfg --cfg-weight W."""
    is_group = isinstance(parser, argparse._ArgumentGroup)  # the caller may hand us a group already
    g = parser if is_group else parser.add_argument_group("guidance")
    g.add_argument(
        "--guidance",
        choices=("none", "classifier", "cfg"),
        default=None,
        help="steer sampling toward --class with a noisy classifier, or classifier-free guidance",
    )
    g.add_argument("--classifier", default=None, help="classifier run directory (train-classifier), or 'exact'")
    g.add_argument(
        "--class",
        dest="class_label",
        default=None,
        help="class to generate: an integer, a comma-separated list (cycled over samples), 'random' (uniform), "
        "'balanced' (each class equally often, in a random order; the fairest FID against a balanced test set) or "
        "'stratified' (each class as often as in the training set, in a random order). Default for a "
        "class-conditional model: a random class per sample, drawn as often as in the training set",
    )
    g.add_argument("--scale", type=float, default=None, help="classifier guidance scale s (default 1)")
    g.add_argument("--cfg-weight", type=float, default=None, help="classifier-free guidance weight w (default 1)")
    g.add_argument(
        "--guidance-interval",
        default=None,
        metavar="LO,HI",
        help="classifier-free guidance only for noise levels LO < σ <= HI (the model's σ); the plain conditional "
        "model elsewhere, at one network evaluation a step (default: guide at every σ)",
    )


def _check_compatible(classifier: TrainedClassifier, denoiser, run_config: dict | None = None) -> None:
    """The classifier must see the model's data space: same shape and the same user → model range map."""
    data = getattr(classifier, "data_config", {}) or {}
    shape = data.get("shape")
    dshape = denoiser.data_shape
    if shape is not None and dshape is not None and tuple(shape) != tuple(dshape):
        raise ValueError(f"the classifier was trained on data of shape {tuple(shape)}, the model makes {dshape}")
    mine, theirs = data.get("transform"), ((run_config or {}).get("data") or {}).get("transform")
    if isinstance(mine, dict) and isinstance(theirs, dict):
        keys = set(mine) | set(theirs)
        for k in keys:
            a, b = mine.get(k), theirs.get(k)
            same = (
                math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)
                if isinstance(a, float) and isinstance(b, float)
                else a == b
            )
            if not same:
                raise ValueError(
                    f"the classifier and the model scale data differently (transform {k}: {a} vs {b}); "
                    "train the classifier on the model's data set"
                )


def guided_denoiser_from_args(args, denoiser, gmm: GaussianMixture | None = None, device="cpu", run_config=None):
    """Wrap `denoiser` per the guidance flags; returns (denoiser, labels [num] or None).

    Labels are per sample (for the npz): pass `labels[batch]` as the sampler's `class_labels`. With
    --guidance none and --class on a class-conditional model, the model is sampled conditionally.
    """
    mode = getattr(args, "guidance", None) or "none"
    spec = getattr(args, "class_label", None)
    if getattr(args, "guidance_interval", None) is not None and mode != "cfg":
        raise ValueError("--guidance-interval applies to --guidance cfg")
    num = int(getattr(args, "num", 1) or 1)
    seed = int(getattr(args, "seed", 0) or 0)
    counts = training_class_counts(args, run_config) if str(spec).strip().lower() == "stratified" else None
    if mode == "none":
        if spec is None:
            return denoiser, None
        k = denoiser.num_classes
        if k <= 0:
            raise ValueError("--class needs --guidance classifier|cfg or a class-conditional model")
        return denoiser, parse_class_labels(spec, num, k, seed, counts)
    if spec is None:
        raise ValueError(f"--guidance {mode} needs --class K (an integer, a list, or 'random')")
    if mode == "classifier":
        which = getattr(args, "classifier", None)
        if not which:
            raise ValueError(
                "--guidance classifier needs --classifier DIR (a classifier run directory made by "
                "train-classifier) or --classifier exact (gmm: models)"
            )
        if which == "exact":
            if gmm is None or gmm.labels is None:
                raise ValueError("--classifier exact needs --model gmm:SPEC.json whose SPEC has 'labels'")
            classifier = ExactClassifier(gmm)
        else:
            classifier = load_classifier(which, device=device)
            if run_config is None and getattr(args, "run", None):
                run_config = read_config(args.run)
            _check_compatible(classifier, denoiser, run_config)
        scale = getattr(args, "scale", None)
        scale = 1.0 if scale is None else float(scale)
        labels = parse_class_labels(spec, num, classifier.num_classes, seed, counts)
        # a model that needs labels is guided *and* conditioned on them (ADM's conditional models)
        cond = denoiser.labels_required
        return ClassifierGuidedDenoiser(denoiser, classifier, scale, condition_base=cond), labels
    if mode == "cfg":
        k = denoiser.num_classes
        if k <= 0:
            raise ValueError("--guidance cfg needs a class-conditional model (trained with labels)")
        w = 1.0 if args.cfg_weight is None else float(args.cfg_weight)
        interval = parse_interval(getattr(args, "guidance_interval", None))
        guided = ClassifierFreeGuidedDenoiser(denoiser, w, interval=interval)
        return guided, parse_class_labels(spec, num, k, seed, counts)
    raise ValueError(f"unknown guidance {mode!r} (choose from none, classifier, cfg)")


def training_class_counts(args, run_config: dict | None = None) -> list | None:
    """The run's ``data.class_counts`` (None for a --model or a run made before they were recorded)."""
    if run_config is None and getattr(args, "run", None):
        run_config = read_config(args.run)
    return ((run_config or {}).get("data") or {}).get("class_counts")


def parse_interval(spec: str | None) -> tuple[float, float] | None:
    """'LO,HI' → (LO, HI), two σ values with 0 <= LO < HI (HI may be 'inf')."""
    if spec is None:
        return None
    parts = str(spec).split(",")
    try:
        lo, hi = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or math.isnan(lo) or math.isnan(hi) or not 0.0 <= lo < hi:
        raise ValueError(f"--guidance-interval must be LO,HI with 0 <= LO < HI (σ values), got {spec!r}")
    return lo, hi
