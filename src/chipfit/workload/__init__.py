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
) -> _profile_module.Profile:
    """Profile one step of `model` (zoo name, 'package.module:factory' or nn.Module); see source.profile."""
    from .source import profile as _profile

    return _profile(model, mode=mode, batch=batch, seq_len=seq_len, precision=precision, optimizer=optimizer)
