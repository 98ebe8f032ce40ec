"""'torchvision:NAME' and 'timm:NAME' model sources, built by those packages when installed (no weights)."""

from __future__ import annotations

import importlib

import torch
from torch import nn

from ..errors import ChipfitError, closest
from .source import surrogate_loss

PACKAGES = {"torchvision": "torchvision", "timm": "timm"}
IMAGE_SIZE = 224  # both packages' ImageNet classifiers default to 224x224 RGB
NUM_CLASSES = 1000


def _package(prefix: str):
    try:
        return importlib.import_module(PACKAGES[prefix])
    except ImportError:
        raise ChipfitError(
            f"Models named '{prefix}:NAME' need the {prefix} package, which is not installed; install a {prefix} "
            "build that matches your torch, or use a zoo name."
        ) from None


def _factory(prefix: str, package, model: str):
    if prefix == "torchvision":
        names = package.models.list_models()
        if model not in names:
            raise ChipfitError(f"torchvision has no model {model!r}.{closest(model, names)}")
        return lambda: package.models.get_model(model, weights=None)
    names = package.list_models()
    if model not in names:
        raise ChipfitError(f"timm has no model {model!r}.{closest(model, names)}")
    return lambda: package.create_model(model, pretrained=False)


class HubModel:
    """An image classifier named 'torchvision:NAME' or 'timm:NAME', randomly initialised."""

    task = "image-classification"
    default_seq_len = None

    def __init__(self, name: str) -> None:
        prefix, _, model = name.partition(":")
        self.name = name
        self._build = _factory(prefix, _package(prefix), model)
        self._size = IMAGE_SIZE

    def build(self) -> nn.Module:
        model = self._build()
        config = getattr(model, "pretrained_cfg", None) or {}
        self._size = config.get("input_size", (3, IMAGE_SIZE, IMAGE_SIZE))[-1]  # timm records its input size
        return model

    def make_batch(self, batch: int, seq_len: int | None) -> tuple[tuple, torch.Tensor]:
        if batch < 1:
            raise ChipfitError(f"Batch {batch} for model {self.name!r} is not positive; give a batch of 1 or more.")
        if seq_len is not None:
            raise ChipfitError(f"Model {self.name!r} takes images, not sequences; leave the sequence length out.")
        return (torch.randn(batch, 3, self._size, self._size),), torch.randint(0, NUM_CLASSES, (batch,))

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if isinstance(output, torch.Tensor) and output.dim() == 2:
            return nn.functional.cross_entropy(output, targets % output.shape[1])
        return surrogate_loss(output, targets)


def hub_model(name: str) -> HubModel:
    """The source for 'torchvision:NAME' or 'timm:NAME'."""
    return HubModel(name)
