"""How far a measurement or a calibration can be trusted: the load it was taken under, and results that
break physics (faster than the catalog peak, negative, a fit that explains its data badly).

bench, validate and calibrate show these flags beside their figures; calibration refuses a fit that
breaks physics, with a sentence saying why (docs/limits.md lists the thresholds).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

# A repetition spread ((max - min) / median) above this is noise, not a measurement of the operator.
NOISY_SPREAD = 0.5
# A fitted efficiency curve whose worst relative error, or an operator fit whose RMS relative error, is above
# this explains its own data too badly to predict from.
MAX_FIT_ERROR = 0.5
# Other processes running when a measurement starts, or a 1-minute load average above the cores the run uses
# by this much, make its times the machine's, not the operator's.
BUSY_LOAD_MARGIN = 0.5


def spread_text(spread: float | None) -> str:
    """A spread for a table: '-' where one round or repetition gives none."""
    return "-" if spread is None else f"{spread:.0%}"


def measurement_flags(m, peak_flops_per_s: float | None, peak_bytes_per_s: float | None) -> list[str]:
    """Why one Measurement should not be taken at face value; [] when nothing is wrong."""
    flags = []
    if not m.median_s > 0 or m.min_s < 0 or (m.flops or 0) < 0 or (m.bytes or 0) < 0:
        return ["impossible: a time or size is zero or negative"]
    if peak_flops_per_s and m.achieved_flops_per_s and m.achieved_flops_per_s > peak_flops_per_s:
        flags.append(f"above peak ({m.achieved_flops_per_s / peak_flops_per_s:.0%}): a timing error or a wrong "
                     "catalog peak")
    if peak_bytes_per_s and m.achieved_bytes_per_s and m.achieved_bytes_per_s > peak_bytes_per_s:
        flags.append(f"above bandwidth ({m.achieved_bytes_per_s / peak_bytes_per_s:.0%}): cached, or a timing error")
    spread = m.spread
    if spread is not None and spread > NOISY_SPREAD:
        flags.append(f"noisy (spread {spread:.0%})")
    return flags


def case_trust(spread: float | None) -> str:
    """A validate case's trust: its rounds' spread says whether an error of that size is noise."""
    if spread is None:
        return "one round: no spread, noise unknown"
    return f"noisy (spread {spread:.0%})" if spread > NOISY_SPREAD else "ok"


def _is_limit(figure) -> bool:
    """Whether a catalog figure is a physical limit: a datasheet's is; local-cpu's peaks derived from a clock that
    may be the base clock, and its bandwidth from another quick triad, are estimates a benchmark may beat."""
    return figure is not None and not figure.source.startswith(("derived", "measured"))


def calibration_refusals(cal, hw) -> list[str]:
    """Why a fitted Calibration breaks physics and must not be kept (each a clause); [] when it may."""
    out = []
    for c in cal.curves:
        if not c.e_max > 0:
            out.append(f"the {c.family} {c.precision} efficiency {c.e_max:.3g} is not positive")
        elif c.e_max > 1 and _is_limit(hw.peak_flops.get(c.precision)):
            out.append(f"the {c.family} {c.precision} efficiency {c.e_max:.3g} is outside (0, 1]: faster than "
                       f"{hw.id}'s catalog peak")
    efficiency = cal.memory_efficiency(hw)
    if cal.bandwidth_bytes_per_s is not None and not cal.bandwidth_bytes_per_s > 0:
        out.append("the measured memory bandwidth is not positive")
    elif efficiency is not None and efficiency > 1 and _is_limit(hw.mem_bw_bytes_per_s):
        out.append(f"the measured memory bandwidth is {efficiency:.3g}x {hw.id}'s figure")
    if cal.kernel_overhead_s is not None and not cal.kernel_overhead_s >= 0:
        out.append("the per-kernel overhead is negative")
    return out


def curve_flag(worst_error: float) -> str:
    """A fitted curve's trust from its worst relative error on its own benchmarks (flagged, not refused: a
    loaded machine's quick bench misses by 50-90% and still says something)."""
    return "ok" if worst_error <= MAX_FIT_ERROR else f"poor fit (worst {worst_error:.0%}): bench again when idle"


def op_fit_flags(fit) -> list[str]:
    """Why one operator family's fit is doubtful (shown in the calibration table; predictions use it)."""
    flags = []
    if not math.isfinite(fit.error) or fit.error > MAX_FIT_ERROR:
        flags.append(f"poor fit (RMS {fit.error:.0%})")
    if fit.e_compute is not None and fit.e_compute > 1:
        flags.append("above compute peak")
    return flags


def check_calibration(cal, hw) -> None:
    """Refuse `cal` (ChipfitError) when calibration_refusals finds anything."""
    from .errors import ChipfitError

    problems = calibration_refusals(cal, hw)
    if problems:
        raise ChipfitError(f"The calibration of {hw.id} was not kept: {'; '.join(problems)}. Run `chipfit bench` "
                           "again on an idle machine (`chipfit results show` lists each run's load).")


# --- load ---------------------------------------------------------------------------------------
def machine_load(proc: Path = Path("/proc")) -> dict:
    """What else the machine was doing: load averages, other running processes (by name), CPU clocks where
    readable. Keys are left out where the platform does not tell."""
    out: dict = {}
    try:
        out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    busy = _running_processes(proc)
    if busy is not None:
        out["other_running_processes"] = busy
    clocks = _clocks_mhz(proc)
    if clocks:
        out["cpu_mhz"] = clocks
    return out


def load_warning(load: dict, cores: int | None = None) -> str | None:
    """One sentence when `load` says the machine was busy, else None."""
    cores = cores or os.cpu_count() or 1
    parts = []
    if load.get("loadavg") and load["loadavg"][0] > cores * BUSY_LOAD_MARGIN:
        parts.append(f"1-minute load {load['loadavg'][0]:g} on {cores} cores")
    if load.get("other_running_processes"):
        names = load["other_running_processes"]
        parts.append(f"{len(names)} other running process{'es' if len(names) > 1 else ''} ({', '.join(names[:3])})")
    if not parts:
        return None
    return f"The machine was busy ({'; '.join(parts)}): times may be the other work's; measure again when idle."


def _running_processes(proc: Path) -> list[str] | None:
    """Names of other processes in state R (running), from /proc; None where there is no /proc."""
    if not (proc / "self").exists():
        return None
    me = os.getpid()
    names = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name_end = stat.rfind(")")
        if stat[name_end + 2: name_end + 3] == "R":
            names.append(stat[stat.find("(") + 1: name_end])
    return sorted(names)


def _clocks_mhz(proc: Path) -> dict | None:
    """Current CPU clocks (min, median, max over cores) from /proc/cpuinfo, where it lists them."""
    try:
        text = (proc / "cpuinfo").read_text()
    except OSError:
        return None
    mhz = sorted(float(line.split(":")[1]) for line in text.splitlines()
                 if line.startswith("cpu MHz") and ":" in line)
    if not mhz:
        return None
    return {"min": mhz[0], "median": mhz[len(mhz) // 2], "max": mhz[-1]}
