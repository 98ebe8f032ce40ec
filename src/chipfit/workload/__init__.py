"""Model sources -> Profile. `profile(model, ...)` traces a model on fake tensors (torch imported lazily)."""

from __future__ import annotations

# Load the Profile module first: the package attribute `profile` must be the function below,
# not the submodule of the same name (which stays importable as chipfit.workload.profile).
from . import profile as _profile_module

__all__ = ["profile"]


def profile(model, **options) -> _profile_module.Profile:
    """Profile one step of `model` on fake tensors; the options and sources are those of
    chipfit.workload.source.profile (imported here lazily, so `import chipfit` stays light)."""
    from .source import profile as _profile

    return _profile(model, **options)
