"""The one exception users see: a sentence that names the input and what to do."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path
from typing import Callable, Iterable


class ChipfitError(Exception):
    """Bad input or an impossible request. The CLI prints the message and exits with `exit_status`
    (1: a bad file, an impossible request)."""

    exit_status = 1


class ArgumentError(ChipfitError):
    """A bad command-line argument or request field: exit status 2, as argparse's own refusals."""

    exit_status = 2


def check_file(path: Path, what: str, give: str, max_bytes: int | None = None, too_big: str = "") -> None:
    """The one-sentence error for an input file that does not exist ("{what} {path} does not exist;
    {give}.") or, with `max_bytes`, is larger ("{what} {path} is N bytes, {too_big}.")."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ChipfitError(f"{what} {path} does not exist; {give}.") from None
    except PermissionError:
        raise ChipfitError(f"{what} {path} cannot be read: permission denied; make it readable or {give}.") from None
    except OSError as exc:  # a symlink loop (ELOOP), a name too long, a path through a file
        raise ChipfitError(f"{what} {path} cannot be opened ({exc.strerror or exc}); {give}.") from None
    if stat.S_ISDIR(info.st_mode):
        raise ChipfitError(f"{what} {path} is a folder, not a file; {give}.")
    if not stat.S_ISREG(info.st_mode):
        raise ChipfitError(f"{what} {path} is not a regular file (a device, pipe or socket); {give}.")
    if not os.access(path, os.R_OK):
        raise ChipfitError(f"{what} {path} cannot be read: permission denied; make it readable or {give}.")
    if max_bytes is not None and info.st_size > max_bytes:
        raise ChipfitError(f"{what} {path} is {info.st_size} bytes, {too_big}.")


def closest(name: str, choices: Iterable[str], n: int = 3, label: Callable[[str], str] = str) -> str:
    """' Did you mean a, b?' for an unknown name, or '' when nothing is close; `label` shows each close
    choice (an alias as the name it stands for), each label once."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=3 * n, cutoff=0.5)
    hits += [c for c in lowered if name.lower() in c and c not in hits]
    shown = list(dict.fromkeys(label(lowered[h]) for h in hits))[:n]
    return f" Did you mean {', '.join(shown)}?" if shown else ""


def unexpected(exc: BaseException) -> str:
    """One sentence for an error no check caught: a file the system refused, a document nested too
    deep, memory exhausted, or a defect in chipfit (set CHIPFIT_DEBUG=1 for its traceback)."""
    if isinstance(exc, OSError):
        name = f" {exc.filename}" if exc.filename else ""
        return f"The system refused file{name}: {exc.strerror or exc}; check the path and its permissions."
    if isinstance(exc, RecursionError):
        return "An input is nested too deeply to read; give a flatter file (docs/limits.md)."
    if isinstance(exc, MemoryError):
        return "The job ran out of memory; give smaller sizes (docs/limits.md)."
    return (f"chipfit failed unexpectedly ({type(exc).__name__}: {str(exc)[:200]}); this is a bug: report it "
            "with the command, and run with CHIPFIT_DEBUG=1 for the traceback.")
