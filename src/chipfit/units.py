"""Human-readable units for the terminal and the HTML report."""

from __future__ import annotations


def seconds(s: float | None) -> str:
    if s is None:
        return "-"
    for limit, div, unit in ((1e-3, 1e-6, "us"), (1, 1e-3, "ms"), (120, 1, "s"), (7200, 60, "min"),
                             (172800, 3600, "h"), (3.15e7 * 2, 86400, "d")):
        if s < limit:
            return f"{s / div:.3g} {unit}"
    return f"{s / 3.15576e7:.3g} y"


def nbytes(b: float | None) -> str:
    if b is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(b) < 1024 or unit == "TiB":
            return f"{b:.3g} {unit}" if unit != "B" else f"{b:.0f} B"
        b /= 1024
    raise AssertionError("unreachable")


def si(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    for div, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def usd(x: float | None) -> str:
    if x is None:
        return "-"
    return f"${x:,.0f}" if x >= 100 else f"${x:,.2f}" if x >= 0.01 else f"${x:.2g}"


def kwh(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1e3:
        return si(x * 1e3, "Wh")
    if x < 1e-3:
        return si(x * 3.6e6, "J")
    return f"{x:.3g} kWh" if x >= 1 else f"{x * 1000:.3g} Wh"
