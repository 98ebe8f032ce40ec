"""The one exception users see: a sentence that names the input and what to do."""

from __future__ import annotations

import difflib
from typing import Iterable


class ChipfitError(Exception):
    """Bad input or an impossible request. The CLI prints the message and exits non-zero."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' Did you mean a, b?' for an unknown name, or '' when nothing is close."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    hits += [c for c in lowered if name.lower() in c and c not in hits][: n - len(hits)]
    return f" Did you mean {', '.join(lowered[h] for h in hits)}?" if hits else ""
