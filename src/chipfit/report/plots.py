"""Plots of an Advice: roofline with the model's operators, time-versus-cost Pareto, memory per
device, time per layer, measured against predicted, rent versus buy. Each is had as data
(`*_data`) and drawn with matplotlib (the `report` extra), imported only here.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..advise import Advice, advise, label
from ..catalog import Hardware, load_catalog
from ..comparison import Comparison
from ..errors import ChipfitError
from ..predict import Estimate, OpArrays
from ..predict.efficiency import default_efficiency
from ..predict import roofline
from ..predict.roofline import MissingFigure, peak_for
from ..workload.profile import Profile
from .units import seconds, usd

MEMORY_PARTS = ("weights", "gradients", "optimizer", "activations", "workspace")
KIND_COLOURS = {"matmul": "#1f77b4", "conv": "#2ca02c", "attention": "#9467bd", "elementwise": "#ff7f0e",
                "reduction": "#8c564b", "norm": "#e377c2", "memory": "#7f7f7f", "other": "#bcbd22"}
PART_COLOURS = dict(zip(MEMORY_PARTS, ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")))


def as_advice(item: Advice | Comparison) -> Advice:
    """An Advice as is; a Comparison advised with no constraints."""
    return item if isinstance(item, Advice) else advise(item)


def chosen(advice: Advice, n: int = 3) -> list[Estimate]:
    """Up to `n` estimates of distinct catalog hardware to draw: the winner, the Pareto front, the rest by rank."""
    catalog = load_catalog()
    runnable = [e for e in advice.estimates() if not e.excluded_reason and e.total_time_s is not None]
    pool = [*([advice.winner] if advice.winner else []), *advice.pareto, *advice.candidates, *runnable]
    out, seen = [], set()
    for e in pool:
        if e.hardware not in seen and e.hardware in catalog.hardware:
            seen.add(e.hardware)
            out.append(e)
    return out[:n]


# --- data ---------------------------------------------------------------------------------------
def op_times(profile: Profile, hw: Hardware, precision: str) -> np.ndarray:
    """Each operator's predicted time on one `hw` device (NaN where the catalog lacks a figure)."""
    try:
        return roofline.op_times(OpArrays.from_profile(profile, precision), hw, default_efficiency(hw))
    except MissingFigure:
        return np.full(len(profile.ops), np.nan)


def roofline_data(profile: Profile, hw: Hardware, precision: str) -> dict:
    """The device's roof (peak, bandwidth) and each counted operator's intensity and achieved FLOP/s."""
    peak, used = peak_for(hw, precision)
    bw = hw.mem_bw_bytes_per_s.value if hw.mem_bw_bytes_per_s else None
    times = op_times(profile, hw, precision) if peak and bw else np.full(len(profile.ops), np.nan)
    ops = [{"name": op.name, "kind": op.kind, "module": op.module, "phase": op.phase,
            "intensity_flop_per_byte": op.flops / op.bytes, "achieved_flops_per_s": op.flops / t}
           for op, t in zip(profile.ops, times) if op.flops > 0 and op.bytes > 0 and t > 0]
    return {"hardware": hw.id, "name": hw.name, "peak_flops_per_s": peak, "peak_precision": used,
            "mem_bw_bytes_per_s": bw, "ops": ops, "ops_not_shown": len(profile.ops) - len(ops)}


def _layer_key(op, depth: int) -> str:
    # The same grouping as Profile.by_layer: optimizer ops count with their parameter's module.
    path = op.module.rsplit(".", 1)[0] if op.phase == "optimizer" and "." in op.module else op.module
    return ".".join(path.split(".")[:depth]) if path else "(top)"


def layer_times(profile: Profile, hw: Hardware, precision: str, depth: int = 2) -> dict[str, dict[str, float]]:
    """Predicted seconds per layer (Profile.by_layer's grouping) and phase on one `hw` device."""
    times = op_times(profile, hw, precision)
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"forward": 0.0, "backward": 0.0, "optimizer": 0.0})
    for op, t in zip(profile.ops, times):
        if t == t:  # not NaN
            out[_layer_key(op, depth)][op.phase] += float(t)
    return dict(out)


def measured_data(measurements) -> list[dict]:
    """Stored steps with chipfit's prediction next to the measured median."""
    return [{"label": m.label, "kind": m.kind, "device": m.device, "precision": m.precision,
             "predicted_s": m.predicted_s, "measured_s": m.median_s}
            for m in measurements if m.predicted_s and m.kind in ("train_step", "infer_step")]


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


def roofline_figure(advice: Advice, n: int = 3):
    """One panel per chosen device: its roof and the model's operators at their predicted FLOP/s."""
    cmp, catalog = advice.comparison, load_catalog()
    picks = chosen(advice, n)
    if not picks:
        return None
    fig = _figure(4.4 * len(picks), 3.8)
    axes = fig.subplots(1, len(picks), sharey=True, squeeze=False)[0]
    for ax, e in zip(axes, picks):
        d = roofline_data(cmp.profile, catalog.get(e.hardware), cmp.workload.precision)
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
        ax.legend(fontsize=7, loc="upper left", frameon=False)
    return fig


def pareto_figure(advice: Advice):
    """Every priced entry's total time against cost; the front of the candidates joined up."""
    pts = [e for e in advice.estimates() if e.total_time_s and e.cost_usd]
    if not pts:
        return None
    ok = {id(e) for e in advice.candidates}
    fig = _figure(8, 4.8)
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
    if advice.winner and advice.winner.cost_usd:
        ax.scatter([advice.winner.total_time_s / 3600], [advice.winner.cost_usd], marker="*", s=220, color="#c44e52",
                   zorder=5, label=f"winner: {label(advice.winner)}")
    deadline = advice.constraints.get("deadline_s")
    if deadline:
        ax.axvline(deadline / 3600, color="#55a868", ls="--", lw=1, label=f"deadline {seconds(deadline)}")
    budget = advice.constraints.get("budget_usd")
    if budget:
        ax.axhline(budget, color="#dd8452", ls="--", lw=1, label=f"budget {usd(budget)}")
    ax.legend(fontsize=8, frameon=False)
    return fig


def memory_figure(advice: Advice, n: int = 6):
    """Stacked memory per device (weights, gradients, optimizer, activations, workspace) against capacity."""
    catalog = load_catalog()
    rows: list[Estimate] = []
    for e in [*([advice.winner] if advice.winner else []), *advice.pareto, *advice.candidates, *advice.estimates()]:
        if e.memory_breakdown and e.hardware in catalog.hardware and all(r is not e for r in rows):
            rows.append(e)
    rows = rows[:n]
    if not rows:
        return None
    fig = _figure(8, 0.55 * len(rows) + 1.4)
    ax = fig.subplots()
    _style(ax, "Memory per device against capacity", "GiB per device", "")
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
    names = [label(e) for e in rows]
    left = np.zeros(len(rows))
    for part in MEMORY_PARTS:
        vals = np.array([e.memory_breakdown.get(part, 0.0) / 2**30 for e in rows])
        ax.barh(names, vals, left=left, color=PART_COLOURS[part], label=part, height=0.6)
        left += vals
    for i, e in enumerate(rows):
        cap = catalog.get(e.hardware).memory_bytes
        if cap:
            ax.plot([cap.value / 2**30] * 2, [i - 0.4, i + 0.4], color="black", lw=2,
                    label="capacity" if i == 0 else None)
    ax.invert_yaxis()
    ax.legend(fontsize=8, frameon=False, ncols=6, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / len(rows)))
    return fig


def layers_figure(advice: Advice, top: int = 20):
    """Predicted time per layer on the first chosen device, by phase, slowest layers first."""
    picks = chosen(advice, 1)
    if not picks:
        return None
    cmp, hw = advice.comparison, load_catalog().get(picks[0].hardware)
    layers = layer_times(cmp.profile, hw, cmp.workload.precision)
    rows = sorted(layers.items(), key=lambda kv: -sum(kv[1].values()))[:top]
    if not rows:
        return None
    fig = _figure(8, 0.28 * len(rows) + 1.6)
    ax = fig.subplots()
    more = f" (slowest {top} of {len(layers)})" if len(layers) > top else ""
    _style(ax, f"Predicted time per layer on one {hw.name}, per-device batch {cmp.profile.batch}{more}",
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
    ax.legend(fontsize=8, frameon=False)
    return fig


def measured_figure(measurements):
    """Measured step time against chipfit's prediction for each stored step; the diagonal is a perfect guess."""
    pts = measured_data(measurements)
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
    ax.legend(fontsize=8, frameon=False)
    return fig


def rentbuy_figure(advice: Advice):
    """Cumulative cost per device of renting (each sourced price) and owning, over the lifetime.

    Only entries with a sourced purchase price are drawn.
    """
    cases, seen = [], set()
    for r in advice.rent_buy:  # curves are per device: one panel per hardware entry with a purchase price
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
        ax.legend(fontsize=7, frameon=False)
    return fig


def figures(item: Advice | Comparison, measurements=()) -> dict:
    """Every plot that has data, by name (missing data: the plot is left out)."""
    advice = as_advice(item)
    made = {
        "pareto": pareto_figure(advice),
        "roofline": roofline_figure(advice),
        "memory": memory_figure(advice),
        "layers": layers_figure(advice),
        "measured": measured_figure(measurements),
        "rent_buy": rentbuy_figure(advice),
    }
    return {k: v for k, v in made.items() if v is not None}


def plots(item: Advice | Comparison, out_dir, fmt: str = "svg", measurements=()) -> dict[str, Path]:
    """Write each plot to `out_dir`/<name>.<fmt> (svg or png, for slides); returns the paths by name."""
    if fmt not in ("svg", "png"):
        raise ChipfitError(f"Plot format {fmt!r} is not supported; use svg or png.")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ChipfitError(f"Plot folder {out} cannot be made ({exc}); give a writable folder.") from exc
    paths = {}
    for name, fig in figures(item, measurements).items():
        paths[name] = out / f"{name}.{fmt}"
        fig.savefig(paths[name], format=fmt, dpi=150)
    return paths

