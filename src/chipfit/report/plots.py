"""Plots of a report (chipfit.api.ReportData): roofline with the model's operators, time-versus-cost Pareto, memory per
device, time per layer, measured against predicted, rent versus buy. The data is worked out by
chipfit.api.report; here it is only drawn, with matplotlib (the `report` extra), imported only here.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..advise import label
from ..api.report import ReportData
from ..errors import ChipfitError
from ..units import nbytes, seconds, usd

MEMORY_PARTS = ("weights", "gradients", "optimizer", "activations", "workspace")
KIND_COLOURS = {"matmul": "#1f77b4", "conv": "#2ca02c", "attention": "#9467bd", "elementwise": "#ff7f0e",
                "reduction": "#8c564b", "norm": "#e377c2", "memory": "#7f7f7f", "other": "#bcbd22"}
# Where every bar is below this share of its device's memory, the memory axis stops short of 100%.
ZOOM_BELOW = 0.5
PART_COLOURS = dict(zip(MEMORY_PARTS, ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")))


# --- drawing ------------------------------------------------------------------------------------
def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ChipfitError("Plots need matplotlib; install it with `pip install 'chipfit[report]'`.") from exc
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def _log_axes(ax, xfmt, yfmt) -> None:
    """Log axes labelled in readable units."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis, fmt in ((ax.xaxis, xfmt), (ax.yaxis, yfmt)):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(fmt))
        axis.set_minor_formatter(NullFormatter())


def roofline_figure(data: ReportData):
    """One panel per chosen device: its roof and the model's operators at their predicted FLOP/s."""
    if not data.rooflines:
        return None
    fig = _figure(4.4 * len(data.rooflines), 3.8)
    axes = fig.subplots(1, len(data.rooflines), sharey=True, squeeze=False)[0]
    for ax, d in zip(axes, data.rooflines):
        _style(ax, d["name"], "arithmetic intensity (FLOP/byte)", "FLOP/s" if ax is axes[0] else "")
        ax.set_xscale("log")
        ax.set_yscale("log")
        by_kind = defaultdict(list)
        for op in d["ops"]:
            by_kind[op["kind"]].append((op["intensity_flop_per_byte"], op["achieved_flops_per_s"]))
        for kind, pts in sorted(by_kind.items()):
            x, y = zip(*pts)
            ax.scatter(x, y, s=10, alpha=0.6, color=KIND_COLOURS.get(kind, "#333333"), label=kind, linewidths=0)
        if d["peak_flops_per_s"] and d["mem_bw_bytes_per_s"]:
            xs = [op["intensity_flop_per_byte"] for op in d["ops"]] or [1.0]
            ridge = d["peak_flops_per_s"] / d["mem_bw_bytes_per_s"]
            grid = np.logspace(np.log10(min(min(xs), ridge) / 4), np.log10(max(max(xs), ridge) * 4), 200)
            ax.plot(grid, np.minimum(d["peak_flops_per_s"], grid * d["mem_bw_bytes_per_s"]), color="black", lw=1.5,
                    label=f"roof ({d['peak_precision']} peak, memory bandwidth)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, frameon=False, loc="outside lower center", ncols=min(len(names), 5))
    return fig


def pareto_figure(data: ReportData):
    """Every priced entry's total time against cost; the front of the candidates joined up; the winner starred."""
    advice = data.advice
    pts = [e for e in advice.estimates() if e.total_time_s and e.cost_usd]
    if not pts:
        return None
    ok = {id(e) for e in advice.candidates}
    fig = _figure(8, 5.2)
    ax = fig.subplots()
    _style(ax, "Time to finish against cost (lower left is better)", "total time", "cost")
    _log_axes(ax, lambda h, _: seconds(h * 3600), lambda c, _: usd(c))
    for group, colour, name in ((False, "#bbbbbb", "ruled out by a constraint"), (True, "#4c72b0", "meets the constraints")):
        sel = [e for e in pts if (id(e) in ok) == group]
        if sel:
            ax.scatter([e.total_time_s / 3600 for e in sel], [e.cost_usd for e in sel], s=28, color=colour, label=name)
    if advice.pareto:
        ax.plot([e.total_time_s / 3600 for e in advice.pareto], [e.cost_usd for e in advice.pareto], "-",
                color="#c44e52", lw=1.2, label="Pareto front")
        for e in advice.pareto:
            ax.annotate(label(e), (e.total_time_s / 3600, e.cost_usd), textcoords="offset points", xytext=(5, 4), fontsize=7)
    if advice.winner and advice.winner.cost_usd and advice.winner.total_time_s:
        ax.scatter([advice.winner.total_time_s / 3600], [advice.winner.cost_usd], marker="*", s=260, color="#f2b701",
                   edgecolors="black", linewidths=0.8, zorder=6, label=f"winner: {label(advice.winner)}")
    deadline = advice.constraints.get("deadline_s")
    if deadline:
        ax.axvline(deadline / 3600, color="#55a868", ls="--", lw=1, label=f"deadline {seconds(deadline)}")
    budget = advice.constraints.get("budget_usd")
    if budget:
        ax.axhline(budget, color="#dd8452", ls="--", lw=1, label=f"budget {usd(budget)}")
    fig.legend(fontsize=8, frameon=False, loc="outside lower center", ncols=3)
    return fig


def memory_figure(data: ReportData):
    """Memory per device by part (weights, gradients, optimizer, activations, workspace), each bar as a share
    of its own device's capacity, so small jobs on big devices stay readable; sizes written beside the bars."""
    rows = data.memory
    if not rows:
        return None
    fig = _figure(8, 0.55 * len(rows) + 1.8)
    ax = fig.subplots()
    _style(ax, "Memory per device against capacity", "share of the device's memory", "")
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
    names = [r["label"] for r in rows]
    left = np.zeros(len(rows))
    for part in MEMORY_PARTS:
        vals = np.array([r["breakdown"].get(part, 0.0) / r["capacity_bytes"] for r in rows])
        ax.barh(names, vals, left=left, color=PART_COLOURS[part], label=part, height=0.6)
        left += vals
    from matplotlib.ticker import PercentFormatter

    top = float(left.max())
    if top >= ZOOM_BELOW:
        ax.axvline(1.0, color="black", lw=2, label="capacity")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(0, top * 1.45 if top < ZOOM_BELOW else max(1.05, top * 1.3))
    for i, r in enumerate(rows):
        total = r["breakdown"].get("total") or sum(v for k, v in r["breakdown"].items() if k in MEMORY_PARTS)
        ax.annotate(f"{nbytes(total)} of {nbytes(r['capacity_bytes'])}", (left[i], i), textcoords="offset points",
                    xytext=(4, -3), fontsize=7)
    ax.invert_yaxis()
    fig.legend(fontsize=8, frameon=False, ncols=6, loc="outside lower center")
    return fig


def layers_figure(data: ReportData, top: int = 20):
    """Predicted time per layer on the first chosen device, by phase, slowest layers first."""
    layers = data.layers.get("times") if data.layers else None
    if not layers:
        return None
    rows = sorted(layers.items(), key=lambda kv: -sum(kv[1].values()))[:top]
    fig = _figure(8, 0.28 * len(rows) + 1.8)
    ax = fig.subplots()
    more = f" (slowest {top} of {len(layers)})" if len(layers) > top else ""
    _style(ax, f"Predicted time per layer on one {data.layers['name']}, per-device batch {data.layers['batch']}{more}",
           "seconds per step", "")
    names = [k for k, _ in rows]
    left = np.zeros(len(rows))
    for phase, colour in (("forward", "#4c72b0"), ("backward", "#dd8452"), ("optimizer", "#55a868")):
        vals = np.array([v[phase] for _, v in rows])
        if vals.any():
            ax.barh(names, vals, left=left, color=colour, label=phase, height=0.7)
            left += vals
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    fig.legend(fontsize=8, frameon=False, loc="outside lower center", ncols=3)
    return fig


def measured_figure(data: ReportData):
    """Measured step time against chipfit's prediction for each stored step; the diagonal is a perfect guess."""
    pts = data.measured
    if not pts:
        return None
    fig = _figure(5.5, 4.6)
    ax = fig.subplots()
    _style(ax, "Measured against predicted step time", "predicted", "measured")
    _log_axes(ax, lambda s, _: seconds(s), lambda s, _: seconds(s))
    pred = [p["predicted_s"] for p in pts]
    meas = [p["measured_s"] for p in pts]
    lo, hi = min(pred + meas) / 2, max(pred + meas) * 2
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="measured = predicted")
    ax.scatter(pred, meas, s=24, color="#4c72b0")
    for p in pts:
        ax.annotate(f"{p['label']} ({p['device']})", (p["predicted_s"], p["measured_s"]), textcoords="offset points",
                    xytext=(4, 3), fontsize=7)
    fig.legend(fontsize=8, frameon=False, loc="outside lower center")
    return fig


def rentbuy_figure(data: ReportData):
    """Cumulative cost per device of renting (each sourced price) and owning, over the lifetime.

    Only entries with a sourced purchase price are drawn.
    """
    cases, seen = [], set()
    for r in data.advice.rent_buy:  # curves are per device: one panel per hardware entry with a purchase price
        if r.owned_usd(0) is not None and r.hardware not in seen:
            seen.add(r.hardware)
            cases.append(r)
    if not cases:
        return None
    fig = _figure(4.6 * len(cases), 3.8)
    axes = fig.subplots(1, len(cases), squeeze=False)[0]
    for ax, rb in zip(axes, cases):
        _style(ax, rb.name, "hours of use per device", "cumulative USD per device" if ax is axes[0] else "")
        hours = np.linspace(0, rb.lifetime_hours, 100)
        for offer in rb.offers:
            ax.plot(hours, hours * offer.usd_per_device_hour, lw=1.4, label=f"rent, {offer.pricing}")
        if rb.owned_usd(0) is not None:
            ax.plot(hours, [rb.owned_usd(h) for h in hours], color="black", lw=2, label="buy (price + electricity)")
        for offer in rb.offers:
            if offer.break_even_hours and offer.break_even_hours <= rb.lifetime_hours:
                ax.axvline(offer.break_even_hours, color="#999999", ls=":", lw=1)
        ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2)
    return fig


def figures(data: ReportData) -> dict:
    """Every plot that has data, by name (missing data: the plot is left out)."""
    made = {
        "pareto": pareto_figure(data),
        "memory": memory_figure(data),
        "roofline": roofline_figure(data),
        "layers": layers_figure(data),
        "measured": measured_figure(data),
        "rent_buy": rentbuy_figure(data),
    }
    return {k: v for k, v in made.items() if v is not None}


def plots(data: ReportData, out_dir, fmt: str = "svg") -> dict[str, Path]:
    """Write each plot to `out_dir`/<name>.<fmt> (svg or png, for slides); returns the paths by name."""
    if fmt not in ("svg", "png"):
        raise ChipfitError(f"Plot format {fmt!r} is not supported; use svg or png.")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ChipfitError(f"Plot folder {out} cannot be made ({exc}); give a writable folder.") from exc
    paths = {}
    for name, fig in figures(data).items():
        paths[name] = out / f"{name}.{fmt}"
        fig.savefig(paths[name], format=fmt, dpi=150)
    return paths
