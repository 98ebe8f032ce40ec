"""The one exception users see: a sentence that names the input and what to do."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable


class ChipfitError(Exception):
    """Bad input or an impossible request. The CLI prints the message and exits non-zero."""

    exit_code = 1


class BadArgument(ChipfitError):
    """An argument that is wrong on its own (a negative batch, NaN tokens), found before any work: exit 2."""

    exit_code = 2


def check_file(path: Path, what: str, give: str, max_bytes: int | None = None, too_big: str = "") -> None:
    """The one-sentence error for an input file that does not exist ("{what} {path} does not exist;
    {give}.") or, with `max_bytes`, is larger ("{what} {path} is N bytes, {too_big}.")."""
    if not path.is_file():
        raise ChipfitError(f"{what} {path} does not exist; {give}.")
    if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
        raise ChipfitError(f"{what} {path} is {size} bytes, {too_big}.")


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' Did you mean a, b?' for an unknown name, or '' when nothing is close."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    hits += [c for c in lowered if name.lower() in c and c not in hits][: n - len(hits)]
    return f" Did you mean {', '.join(lowered[h] for h in hits)}?" if hits else ""
