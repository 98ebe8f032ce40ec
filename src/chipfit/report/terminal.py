"""Tables for the terminal (rich). Colour only when stdout is a terminal."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from ..catalog.schema import Hardware
from ..trust import case_trust, curve_flag, measurement_flags, op_fit_flags, spread_text
from ..workload.profile import PHASES, Profile
from ..units import kwh, nbytes, seconds, si, usd

import sys

# Piped output keeps whole rows (rich would wrap at 80 columns); a terminal gets its own width.
console = Console() if sys.stdout.isatty() else Console(width=220)
PIPED_WIDTH = 220


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


def models_table(entries) -> Table:
    """Library entries (workload.library.ModelEntry): name, family, kind, parameters and aliases."""
    t = Table(title=f"{len(entries)} models", header_style="bold")
    for col in ("name", "family", "kind", "params", "active", "context", "aliases"):
        t.add_column(col, justify="right" if col in ("params", "active", "context") else "left")
    for e in entries:
        active = si(e.active_params) if e.active_params != e.params else "-"
        t.add_row(e.name, e.family, e.kind, si(e.params), active, str(e.context or "-"), ", ".join(e.aliases[:2]))
    return t


def hardware_detail(d: dict) -> list:
    """`d` is Catalog.to_dict(hw): every figure with its source, then its cloud offerings."""
    d = dict(d)
    instances = d.pop("instances", [])
    out: list = [_figures_table(d)]
    if instances:
        t = Table(title="cloud offerings", header_style="bold")
        for col in ("id", "devices", "pricing", "USD/h", "USD per device-hour", "date", "source"):
            t.add_column(col, overflow="fold")
        for i in instances:
            price = i["price_usd_per_hour"]
            t.add_row(i["id"], str(i["count"]), i.get("pricing", ""), f"{price['value']:g}",
                      f"{i['price_usd_per_device_hour']:.3g}", i["price_date"], price["source"])
        out.append(t)
    return out


def _figure_text(fig: dict) -> str:
    unit = {"bytes/s": "B/s"}.get(fig.get("unit", ""), fig.get("unit", ""))
    value = nbytes(fig["value"]) if unit == "bytes" else usd(fig["value"]) if unit == "USD" else si(fig["value"], unit)
    return value if fig.get("dense") is not False else f"{value} (SPARSE: not used by predictions)"


def _figures_table(d: dict) -> Table:
    t = Table(title=d.get("name", d.get("id")), show_header=True, header_style="bold")
    t.add_column("field")
    t.add_column("value", justify="right")
    t.add_column("source / note", overflow="fold")
    for key, value in d.items():
        figures = {key: value} if isinstance(value, dict) and "value" in value else {
            f"{key}.{sub}": fig for sub, fig in value.items()} if isinstance(value, dict) else None
        if figures is None:
            if value not in (None, "", [], ()):
                t.add_row(key, ", ".join(value) if isinstance(value, (list, tuple)) else str(value), "")
            continue
        for name, fig in figures.items():
            note = fig.get("source", "") + (f" [{fig['note']}]" if fig.get("note") else "")
            t.add_row(name, _figure_text(fig), note)
    return t


def op_rows(p: Profile) -> list[dict]:
    """Every traced operator as one flat row."""
    return [{"phase": op.phase, "module": op.module, "op": op.name, "kind": op.kind, "dtype": op.dtype,
             "flops": op.flops, "bytes_read": op.bytes_read, "bytes_written": op.bytes_written,
             "counted": op.counted, "causal": op.causal} for op in p.ops]


def ops_table(p: Profile) -> Table:
    """Every traced operator in order: phase, module, operator, FLOPs and bytes."""
    t = Table(title=f"{len(p.ops):,} traced operators", header_style="bold")
    for col in ("#", "phase", "module", "operator", "kind", "dtype", "FLOPs", "bytes"):
        t.add_column(col, justify="right" if col in ("#", "FLOPs", "bytes") else "left",
                     overflow="fold" if col in ("module", "operator") else "ellipsis")
    for i, op in enumerate(p.ops, 1):
        t.add_row(str(i), op.phase, op.module or "(top)", op.name.removeprefix("aten."), op.kind, op.dtype,
                  si(op.flops, "FLOP") if op.counted else "no formula", nbytes(op.bytes))
    return t


def profile_tables(p: Profile, depth: int = 2, top: int = 25, ops: bool = False) -> list:
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
    return out + ([ops_table(p)] if ops else [])


def money(x: float | None) -> str:
    """Dollars for a table: '< $0.01' below a cent."""
    return "-" if x is None else "< $0.01" if x < 0.005 else usd(x)


def times(x: float | None) -> str:
    """A speed-up: '1,120x', '37x', '0.52x'."""
    return "-" if x is None else f"{x:,.0f}x" if x >= 100 else f"{x:.2g}x"


def _label(e) -> str:
    return e.hardware + (f" x{e.devices}" if e.devices > 1 else "")


def _job_title(cmp) -> str:
    w, plan = cmp.workload, cmp.plan
    if w.prompt_tokens:
        job = f"{w.model} serving, batch {w.batch}, prompt {w.prompt_tokens} + {w.generate_tokens} generated"
    else:
        job = f"{w.model} {'training' if w.training else 'inference'}, batch {w.batch}" + (
            f", seq {w.seq_len}" if w.seq_len else "")
    job += f", {w.precision}, {plan.devices} device{'s' if plan.devices > 1 else ''}"
    return job + (f", {si(w.total_samples())} samples" if w.training else "")


def span(low: float | None, high: float | None) -> str:
    """A low-high range, the unit said once where both share it: '7.47-23.1 ms'."""
    lo, hi = seconds(low), seconds(high)
    if lo.split(" ")[-1] == hi.split(" ")[-1] and " " in lo:
        return f"{lo.split(' ')[0]}-{hi}"
    return f"{lo}-{hi}"


# Below this terminal width the ranking leaves out its rank and throughput columns (--json has them).
WIDE_COLUMNS = 130


def comparison_table(cmp, top: int | None = None, show_excluded: bool = False) -> list:
    """The ranking, readable at 100 columns: hardware ids wrap rather than being cut."""
    w = cmp.workload
    wide = console.width >= WIDE_COLUMNS
    t = Table(title=_job_title(cmp), header_style="bold underline", box=None, pad_edge=False, padding=(0, 1))
    step_col = "first token" if w.prompt_tokens else "latency" if not w.training else "step"
    unit = (cmp.estimates[0].throughput_unit if cmp.estimates else "samples/s") if wide else ""
    cols = ["#", "hardware", "fits", "mem/dev", step_col, unit, "total time", "low-high", "energy", "cost", "vs CPU"]
    for col in cols if wide else [c for c in cols if c not in ("#", "")]:
        t.add_column(col, justify="left" if col == "hardware" else "right",
                     overflow="fold" if col == "hardware" else "ellipsis", no_wrap=col != "hardware")
    shown = [e for e in cmp.estimates if not e.excluded_reason]
    for i, e in enumerate(shown[:top] if top else shown, 1):
        fits = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "?"}[e.fits]
        first = e.latency_s if w.prompt_tokens else e.step_time_s
        cells = [str(i), _label(e), fits, nbytes(e.memory_per_device_bytes), seconds(first), si(e.throughput_per_s),
                 seconds(e.total_time_s), span(e.low.get("total_time_s"), e.high.get("total_time_s")),
                 kwh(e.energy_kwh), money(e.cost_usd), times(e.speedup_vs_local_cpu)]
        t.add_row(*(cells if wide else [c for j, c in enumerate(cells) if j not in (0, 5)]))
    excluded = [e for e in cmp.estimates if e.excluded_reason]
    out: list = [t]
    if top and len(shown) > top:
        out.append(f"[dim]{len(shown) - top} more entries: --top 0 shows all, --json gives every figure.[/dim]")
    if excluded and show_excluded:
        out.append("[bold]Left out:[/bold]")
        out += [f"  {e.hardware}: {e.excluded_reason}" for e in excluded]
    elif excluded:
        out.append(f"[dim]{len(excluded)} entries cannot run this job (no figure for it, or the framework); "
                   "--show-excluded lists them with the reason.[/dim]")
    if cmp.profile.uncounted:
        out.append("[yellow]No FLOP formula for: " + ", ".join(cmp.profile.uncounted) + "[/yellow]")
    out += [f"[dim]{n}[/dim]" if not n.startswith("This training job") else f"[yellow]{n}[/yellow]"
            for n in cmp.notes]
    first = next((e for e in shown if e.fits is not False), None)
    if first:
        out.append("[dim]Assumptions (first row): " + "; ".join(first.assumptions) + "[/dim]")
    return out


def show(items) -> None:
    for item in items if isinstance(items, list) else [items]:
        console.print(item)


def working(message: str):
    """A spinner on stderr for a step with no natural count (tracing, ranking); silent when piped."""
    import contextlib

    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    return Console(stderr=True).status(message)


class progress_bar:
    """A rich progress bar as a `progress(done, total, label)` callback; silent when not a terminal."""

    def __init__(self, title: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn(f"{title} [dim]{{task.description}}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=Console(stderr=True), disable=not sys.stderr.isatty())
        self._task = None

    def __enter__(self):
        self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        self._bar.__exit__(*exc)

    def __call__(self, done: int, total: int, label: str) -> None:
        if self._task is None:
            self._task = self._bar.add_task(label, total=total)
        self._bar.update(self._task, completed=done, total=total, description=label)


def devices_table(rows: list[dict]) -> Table:
    t = Table(title="devices here", header_style="bold")
    for col in ("id", "kind", "name", "cores/threads", "ISA / precisions", "memory", "catalog entry"):
        t.add_column(col)
    for d in rows:
        ct = f"{d.get('cores') or '-'}/{d.get('threads') or '-'}" if d["kind"] == "cpu" else "-"
        isa = ", ".join(d.get("isa") or ()) or ", ".join(d.get("precisions") or ())
        t.add_row(d["id"], d["kind"], d["name"], ct, isa, nbytes(d.get("memory_bytes")), d.get("catalog", ""))
    return t


def measurements_table(ms, hw: Hardware | None = None, title: str = "measurements") -> Table:
    t = Table(title=title, header_style="bold")
    for col in ("kind", "label", "precision", "size", "median", "spread", "achieved", "of peak", "energy", "trust"):
        t.add_column(col, justify="left" if col in ("kind", "label", "precision", "size", "trust") else "right")
    for m in ms:
        peak = hw.peak(m.precision) if hw and m.kind in ("matmul", "conv2d", "train_step", "infer_step") else None
        bw = hw.mem_bw_bytes_per_s.value if hw and hw.mem_bw_bytes_per_s and m.kind in ("copy", "triad") else None
        size = " ".join(f"{k}={v}" for k, v in m.shape.items())
        if m.achieved_flops_per_s and m.kind in ("matmul", "conv2d", "train_step", "infer_step"):
            achieved = si(m.achieved_flops_per_s, "FLOP/s")
            share = f"{m.achieved_flops_per_s / peak:.0%}" if peak else "-"
        elif m.achieved_bytes_per_s and m.kind in ("copy", "triad"):
            achieved = si(m.achieved_bytes_per_s, "B/s")
            share = f"{m.achieved_bytes_per_s / bw:.0%}" if bw else "-"
        else:
            achieved, share = "-", "-"
        energy = "-" if m.energy_j is None else f"{m.energy_j:.3g} J" + (" (estimated)" if m.energy_estimated else "")
        t.add_row(m.kind, m.label, m.precision, size, seconds(m.median_s), spread_text(m.spread), achieved, share,
                  energy, "; ".join(measurement_flags(m, peak, bw)) or "ok")
    return t


def validation_tables(v) -> list:
    t = Table(title=f"predicted vs measured step time on {v.hardware} ({v.calibration})", header_style="bold")
    for col in ("model", "mode", "batch", "seq", "measured", "spread", "before", "error", "micro-bench cal.", "error",
                "after (leave-one-model-out)", "error", "trust"):
        t.add_column(col, justify="left" if col in ("model", "mode", "trust") else "right")
    for c in v.cases:
        cells = []
        for value, err in ((c.predicted_micro_s, c.error_micro), (c.predicted_after_s, c.error_after)):
            cells += ["-", "-"] if value is None else [seconds(value), f"{err:+.0%}"]
        t.add_row(c.model, c.mode, str(c.batch), str(c.seq_len or "-"), seconds(c.measured_s),
                  spread_text(c.spread), seconds(c.predicted_before_s),
                  f"{c.error_before:+.0%}", *cells, case_trust(c.spread))
    s = v.summary()
    out: list = [t]
    line = f"median |error| before calibration {s['median_abs_error_before']:.1%}, worst {s['worst_abs_error_before']:.1%}"
    if s["median_abs_error_micro"] is not None:
        line += f"; micro-benchmarks only: median {s['median_abs_error_micro']:.1%}, worst {s['worst_abs_error_micro']:.1%}"
    if s["median_abs_error_after"] is not None:
        line += (f"; after, leave-one-model-out: median {s['median_abs_error_after']:.1%}, "
                 f"worst {s['worst_abs_error_after']:.1%}")
    out.append(line + f" ({s['cases']} cases)")
    if v.allocator:
        out.append(f"measured with {v.allocator}")
    if s["median_spread"] is not None:
        out.append(f"spread: median absolute deviation of each case's round means over their median (median over "
                   f"cases {s['median_spread']:.1%}); an error of that size is within this machine's run-to-run noise.")
    out.append("Each 'after' prediction uses operator fits from the other models only; `chipfit calibrate` now fits "
               "from all of them for later predictions.")
    if v.bf16_speedup_measured:
        c = v.cases[0]
        out.append(f"measured bf16 speed-up over fp32 here ({c.model} {c.mode} batch {c.batch}): {v.bf16_speedup_measured:.2f}x")
    if v.class_speedups:
        sp = Table(title=f"predicted speed-up over {v.hardware}, fastest entry per class (same step)",
                   header_style="bold")
        for col in ("class", "entry", "speed-up"):
            sp.add_column(col)
        for cls, (hw, x) in sorted(v.class_speedups.items(), key=lambda kv: -kv[1][1]):
            sp.add_row(cls, hw, f"{x:.3g}x")
        out.append(sp)
    return out


def calibration_table(cal) -> list:
    t = Table(title=f"calibration of {cal.hardware_id} ({cal.measurements} measurements: {cal.fitted_from})",
              header_style="bold")
    for col in ("what", "fitted", "worst fit error", "trust"):
        t.add_column(col)
    for c in cal.curves:
        worst = cal.residuals.get(f"{c.family}/{c.precision}", 0)
        t.add_row(f"{c.family} {c.precision} efficiency", f"{c.e_max:.2f} x F / (F + {si(c.half_flops, 'FLOP')})",
                  f"{worst:.0%}", curve_flag(worst))
    if cal.bandwidth_bytes_per_s is not None:
        t.add_row("memory bandwidth", si(cal.bandwidth_bytes_per_s, "B/s"), "", "")
    if cal.kernel_overhead_s is not None:
        t.add_row("per-kernel overhead", seconds(cal.kernel_overhead_s), "", "")
    if not cal.op_fits:
        return t
    ops = Table(title="operator times from real steps: t = overhead + F / (peak x e_compute) + B / (bandwidth x "
                      f"e_memory), per family (models: {', '.join(cal.op_models)})", header_style="bold")
    for col in ("family", "precision", "calls", "overhead", "e_compute", "e_memory", "RMS rel. error", "trust"):
        ops.add_column(col, justify="left" if col in ("family", "precision", "trust") else "right")
    for f in cal.op_fits:
        ops.add_row(f.family, f.precision, str(f.calls), seconds(f.overhead_s),
                    "-" if f.e_compute is None else f"{f.e_compute:.3g}",
                    "-" if f.e_memory is None else f"{f.e_memory:.3g}", f"{f.error:.0%}",
                    "; ".join(op_fit_flags(f)) or "ok")
    out: list = [t, ops]
    if cal.step_overhead_s:
        out.append("framework time per operator outside the operators (Python, autograd, optimizer loop): "
                   + ", ".join(f"{p} {seconds(v)}" for p, v in cal.step_overhead_s.items()))
    return out


def measure_tables(r, model: str) -> list:
    """A chipfit.api.measure result: the step measured, the prediction beside it, what was stored."""
    m = r.measurement
    return [measurements_table([m], r.hardware, f"run {r.run_id}: {model} on {r.hardware.id}"),
            f"predicted {r.predicted_s * 1e3:.4g} ms ({'calibrated' if r.calibrated else 'published defaults'}), "
            f"measured {m.median_s * 1e3:.4g} ms: error {r.error:+.1%}",
            f"measured with {r.allocator}",
            f"{r.operator_rows} distinct operator calls timed under the profiler ({r.matched} of {r.traced} "
            "traced operators matched), stored for `chipfit calibrate`"]


def runs_table(runs) -> Table:
    t = Table(title=f"{len(runs)} stored runs", header_style="bold")
    for col in ("id", "kind", "device", "hardware", "created", "measurements", "torch", "threads"):
        t.add_column(col)
    for r in runs:
        t.add_row(str(r.id), r.kind, r.device, r.hardware_id, r.created_at, str(r.measurement_count),
                  r.environment.torch_version, str(r.environment.threads))
    return t


def plan_tables(result) -> list:
    """A chipfit.api.PlanResult: the ranked plans, why the best wins, what was rejected."""
    workload, search = result.workload, result.search
    t = Table(title=f"{workload.model}: {workload.total_samples() * (workload.seq_len or 1):.3g} tokens, batch "
                    f"{workload.batch} x {workload.seq_len}, {workload.precision}, on {search.hardware} "
                    f"(ranked by {search.objective}; {search.considered} plans considered)", header_style="bold")
    for col in ("#", "plan", "micro-batch", "step", "total time", "device-hours", "mem/device", "energy", "cost"):
        t.add_column(col, justify="left" if col == "plan" else "right")
    for i, r in enumerate(search.ranked, 1):
        t.add_row(str(i), r.plan.describe(), str(r.micro_batch), seconds(r.step_time_s), seconds(r.total_time_s),
                  f"{r.device_hours:,.0f}", nbytes(r.memory_per_device_bytes), kwh(r.energy_kwh), usd(r.cost_usd))
    out: list = [t]
    if search.why:
        out.append(search.why)
    if search.links:
        out.append(f"Links: {search.links}.")
    if result.finetune:
        out.append(f"Fine-tuning: {result.finetune}.")
    out += [f"[dim]default: {n}[/dim]" for n in result.notes]
    if search.rejected:
        out.append("[bold]Rejected:[/bold]")
        out += [f"  {n} plans: {reason}" + (f" (e.g. {search.examples[reason]})" if reason in search.examples else "")
                for reason, n in sorted(search.rejected.items(), key=lambda kv: -kv[1])]
    return out


def advice_tables(advice) -> list:
    """The advice: candidates that meet every constraint, the Pareto front, why, changes, rent vs buy."""
    from ..advise import label

    t = Table(title=f"meets every constraint (by {advice.objective}): " + (", ".join(
        f"{k} {v}" for k, v in advice.constraints.items() if v not in (None, False, "any", ())) or "none set"),
        header_style="bold")
    for col in ("#", "hardware", "fits", "step", "total time", "energy", "cost", "Pareto"):
        t.add_column(col, justify="left" if col == "hardware" else "right")
    front = {id(e) for e in advice.pareto}
    for i, e in enumerate(advice.candidates[:20], 1):
        t.add_row(str(i), label(e), {True: "yes", False: "no", None: "?"}[e.fits], seconds(e.step_time_s),
                  seconds(e.total_time_s), kwh(e.energy_kwh), usd(e.cost_usd), "*" if id(e) in front else "")
    out: list = [t, f"[bold]{advice.why}[/bold]" if advice.why else ""]
    if advice.changes:
        out.append("[bold]What would make it fit:[/bold]")
        out += [f"  {c.change} on {c.hardware}: {nbytes(c.memory_per_device_bytes)} of {nbytes(c.capacity_bytes)}"
                + (" (fits)" if c.fits else " (still too large)") for c in advice.changes]
    for rb in advice.rent_buy:
        out.append(f"[bold]Rent or buy {rb.devices} x {rb.name}:[/bold] {rb.verdict}")
    dropped = [d for d in advice.dropped if d.reason]
    if dropped:
        out.append(f"[dim]{len(dropped)} options ruled out; --json lists each with its reason.[/dim]")
    out += [f"[dim]note: {n}[/dim]" for n in advice.notes]
    return out
