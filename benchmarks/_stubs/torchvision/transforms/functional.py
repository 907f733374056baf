"""Stub (see torchvision/__init__.py): any attribute use fails loudly."""


def __getattr__(name):
    raise ImportError(f"torchvision.transforms.functional.{name} is a benchmark stub")
