"""Retrain the pinned digits classifier (bit-for-bit on the same torch build, single thread); prints the test
accuracy and the new weights' SHA-256 (scorekit.metrics.digits_classifier pins it)."""

from __future__ import annotations

import argparse
import sys

import torch

from scorekit.checkpoint import save_tensors
from scorekit.metrics.digits_classifier import (
    DIGITS_CLASSIFIER_SHA256,
    DIGITS_WEIGHTS_PATH,
    accuracy,
    train_digits_classifier,
    weights_sha256,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Retrain the pinned digits classifier.")
    p.add_argument("--out", default=str(DIGITS_WEIGHTS_PATH))
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # bit-for-bit reproducibility
    net = train_digits_classifier(epochs=args.epochs)
    meta = {"train_split": "scorekit.data.load_data('digits', split='train')"}
    meta.update({"test_accuracy": f"{accuracy(net, 'test'):.4f}", "train_accuracy": f"{accuracy(net, 'train'):.4f}"})
    save_tensors(args.out, net.state_dict(), meta)
    digest = weights_sha256(net.state_dict())
    print(f"train accuracy {meta['train_accuracy']}  test accuracy {meta['test_accuracy']}")
    print(f"wrote {args.out}  sha256 {digest}")
    if digest != DIGITS_CLASSIFIER_SHA256:
        print(f"note: differs from the pinned SHA-256 {DIGITS_CLASSIFIER_SHA256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
