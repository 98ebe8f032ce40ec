"""chipfit: which hardware should a deep-learning job run on, and what will it cost?

    import chipfit
    p = chipfit.profile("resnet50", mode="train", batch=64)     # -> Profile
    c = chipfit.compare("resnet50", batch=256, samples=1281167, epochs=90)  # -> Comparison
    c.to_dict()                                                  # the JSON schema of `compare --json`
"""

from __future__ import annotations

__version__ = "0.1.0"

from .catalog import load_catalog
from .errors import ChipfitError

__all__ = ["ChipfitError", "compare", "load_catalog", "profile", "__version__"]


def profile(model, **kwargs):
    """Trace one step of `model` (zoo name, 'package.module:factory' or nn.Module) on fake tensors."""
    from .workload import profile as _profile

    return _profile(model, **kwargs)


def compare(model, **kwargs):
    """Profile `model` and rank every catalog entry for the job; see chipfit.comparison.compare."""
    from .comparison import compare as _compare

    return _compare(model, **kwargs)
