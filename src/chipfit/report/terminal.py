"""Tables for the terminal (rich). Colour only when stdout is a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..catalog.schema import Hardware
from ..workload.profile import PHASES, Profile
from .units import kwh, nbytes, seconds, si, usd

import sys

# Piped output keeps whole rows (rich would wrap at 80 columns); a terminal gets its own width.
console = Console() if sys.stdout.isatty() else Console(width=220)


def _fig(f, scale: float = 1.0, unit: str = "") -> str:
    return "-" if f is None else si(f.value * scale, unit)


def hardware_table(entries: list[Hardware]) -> Table:
    t = Table(title=f"{len(entries)} hardware entries", header_style="bold")
    for col in ("id", "class", "year", "bf16/fp16 dense", "fp32", "memory", "bandwidth", "TDP"):
        t.add_column(col, justify="left" if col in ("id", "class") else "right")
    for hw in entries:
        half = hw.peak_flops.get("bf16") or hw.peak_flops.get("fp16") or hw.peak_flops.get("int8")
        t.add_row(
            hw.id, hw.hw_class, str(hw.launch_year or "-"), _fig(half, unit="FLOP/s"),
            _fig(hw.peak_flops.get("fp32"), unit="FLOP/s"),
            nbytes(hw.memory_bytes.value) if hw.memory_bytes else "-",
            _fig(hw.mem_bw_bytes_per_s, unit="B/s"), _fig(hw.tdp_watts, unit="W"),
        )
    return t


def hardware_detail(d: dict) -> Table:
    """`d` is Catalog.to_dict(hw): every figure with its source."""
    t = Table(title=d.get("name", d.get("id")), show_header=True, header_style="bold")
    t.add_column("field")
    t.add_column("value", justify="right")
    t.add_column("source / note", overflow="fold")
    for key, value in d.items():
        if isinstance(value, dict) and "value" in value:
            note = value.get("source", "")
            if value.get("dense") is False:
                note = "SPARSE figure (not used by predictions). " + note
            if value.get("note"):
                note += f" [{value['note']}]"
            t.add_row(key, f"{value['value']:g}", note)
        elif isinstance(value, dict):
            for sub, fig in value.items():
                if isinstance(fig, dict) and "value" in fig:
                    flag = "dense" if fig.get("dense", True) else "SPARSE"
                    t.add_row(f"{key}.{sub}", f"{fig['value']:g} ({flag})", fig.get("source", ""))
        elif value not in (None, "", [], ()):
            t.add_row(key, ", ".join(value) if isinstance(value, (list, tuple)) else str(value), "")
    return t


def profile_tables(p: Profile, depth: int = 2, top: int = 25) -> list:
    head = Table(title=f"{p.model}: {p.mode}, batch {p.batch}" + (f", seq {p.seq_len}" if p.seq_len else "")
                 + f", traced in {p.dtype}", show_header=False)
    head.add_column("what")
    head.add_column("value", justify="right")
    head.add_row("parameters", f"{p.params:,} ({nbytes(p.param_bytes)})")
    for phase in PHASES:
        if p.flops(phase) or p.bytes(phase):
            head.add_row(f"{phase} FLOPs / bytes", f"{si(p.flops(phase), 'FLOP')} / {nbytes(p.bytes(phase))}")
    head.add_row("total FLOPs per step", si(p.flops(), "FLOP"))
    if p.mode == "train":
        head.add_row("activations saved for backward", nbytes(p.activation_bytes))
    if p.peak_activation_bytes:
        head.add_row("peak live activations", nbytes(p.peak_activation_bytes))
    head.add_row("operators traced", f"{len(p.ops):,}")
    kinds = Table(title="by operator kind", header_style="bold")
    for col in ("kind", "ops", "FLOPs", "bytes", "share of FLOPs"):
        kinds.add_column(col, justify="right" if col != "kind" else "left")
    total = p.flops() or 1.0
    for kind, row in sorted(p.by_kind().items(), key=lambda kv: -kv[1]["flops"]):
        kinds.add_row(kind, f"{row['ops']:,}", si(row["flops"], "FLOP"), nbytes(row["bytes"]), f"{row['flops'] / total:.1%}")
    layers = Table(title=f"by layer (module path to depth {depth}; first {top})", header_style="bold")
    for col in ("module", "forward FLOPs", "all FLOPs", "bytes"):
        layers.add_column(col, justify="right" if col != "module" else "left")
    for name, row in list(p.by_layer(depth).items())[:top]:
        layers.add_row(name, si(row["forward_flops"], "FLOP"), si(row["flops"], "FLOP"), nbytes(row["bytes"]))
    out = [head, kinds, layers]
    if p.uncounted:
        out.append("[yellow]Operators with no FLOP formula (counted as 0 FLOPs, bytes still counted): "
                   + ", ".join(f"{k} x{v}" for k, v in p.uncounted.items()) + "[/yellow]")
    out += [f"[dim]note: {n}[/dim]" for n in p.notes]
    return out


def comparison_table(cmp, top: int | None = None) -> list:
    w, plan = cmp.workload, cmp.plan
    job = f"{w.model} {w.mode}, batch {w.batch}" + (f", seq {w.seq_len}" if w.seq_len else "") + f", {w.precision}"
    job += f", {plan.devices} device(s)" + (f", {w.total_samples():.3g} samples" if w.training else "")
    t = Table(title=job, header_style="bold")
    infer = not w.training
    cols = ["#", "hardware", "class", "fits", "mem/device", "latency" if infer else "step", "throughput",
            "total time (low-high)", "energy", "cost", "vs local CPU"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("hardware", "class") else "right")
    excluded = []
    shown = [e for e in cmp.estimates if not e.excluded_reason]
    for i, e in enumerate(shown[:top] if top else shown, 1):
        fits = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "?"}[e.fits]
        span = f"{seconds(e.total_time_s)} ({seconds(e.low.get('total_time_s'))}-{seconds(e.high.get('total_time_s'))})"
        speed = "-" if e.speedup_vs_local_cpu is None else f"{e.speedup_vs_local_cpu:.3g}x"
        name = e.hardware + (f" x{e.devices}" if e.devices > 1 else "")
        t.add_row(str(i), name, e.hw_class, fits, nbytes(e.memory_per_device_bytes), seconds(e.step_time_s),
                  f"{si(e.throughput_per_s)} {e.throughput_unit}", span,
                  kwh(e.energy_kwh), usd(e.cost_usd), speed)
    excluded = [e for e in cmp.estimates if e.excluded_reason]
    out: list = [t]
    if top and len(shown) > top:
        out.append(f"[dim]{len(shown) - top} more entries: use --top 0 to show all, --json for every figure.[/dim]")
    if excluded:
        out.append("[bold]Left out:[/bold]")
        out += [f"  {e.hardware}: {e.excluded_reason}" for e in excluded]
    if cmp.profile.uncounted:
        out.append("[yellow]No FLOP formula for: " + ", ".join(cmp.profile.uncounted) + "[/yellow]")
    first = next((e for e in shown if e.fits is not False), None)
    if first:
        out.append("[dim]Assumptions (first row): " + "; ".join(first.assumptions) + "[/dim]")
    return out


def show(items) -> None:
    for item in items if isinstance(items, list) else [items]:
        console.print(item)
