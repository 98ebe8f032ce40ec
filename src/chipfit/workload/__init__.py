"""Model sources -> Profile. `profile(model, ...)` traces a model on fake tensors (torch imported lazily)."""

from __future__ import annotations

# Load the Profile module first: the package attribute `profile` must be the function below,
# not the submodule of the same name (which stays importable as chipfit.workload.profile).
from . import profile as _profile_module

__all__ = ["profile"]


def profile(
    model,
    *,
    mode: str = "train",
    batch: int = 1,
    seq_len: int | None = None,
    precision: str = "fp32",
    optimizer: str = "adamw",
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> _profile_module.Profile:
    """Profile one step of `model`: a zoo name, 'package.module:factory', an nn.Module, a Hugging Face
    config.json, a .keras, .onnx or .prototxt file, or 'torchvision:NAME' / 'timm:NAME'; see source.profile.
    input_shapes ({input name: shape}) fixes an ONNX graph's inputs."""
    from .source import profile as _profile

    return _profile(model, mode=mode, batch=batch, seq_len=seq_len, precision=precision, optimizer=optimizer,
                    input_shapes=input_shapes)
