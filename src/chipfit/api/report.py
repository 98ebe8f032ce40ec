"""report data: everything the HTML report and the plots draw, worked out here from the advice, the
user's catalog and the stored measurements, so report/ only draws.

Operators are priced with the efficiency each entry's estimate used: a stored calibration for
the local CPU, the published defaults for the rest.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..advise import Advice, label
from ..catalog import Catalog, Hardware, load_catalog
from ..predict import Estimate, OpArrays
from ..predict import roofline as _roofline
from ..predict.efficiency import Efficiency, default_efficiency
from ..predict.roofline import MissingFigure, peak_for
from ..workload.profile import Profile
from .advise import advise
from .job import Job
from .profiling import Profiler, profile_job

MEMORY_ROWS = 6
PLOTTED_DEVICES = 3
LAYERS_SHOWN = 20


def op_times(profile: Profile, hw: Hardware, precision: str, efficiency: Efficiency | None = None) -> np.ndarray:
    """Each operator's predicted time on one `hw` device (NaN where the catalog lacks a figure)."""
    try:
        return _roofline.op_times(OpArrays.from_profile(profile, precision), hw, efficiency or default_efficiency(hw))
    except MissingFigure:
        return np.full(len(profile.ops), np.nan)


def roofline_data(profile: Profile, hw: Hardware, precision: str, efficiency: Efficiency | None = None) -> dict:
    """The device's roof (peak, bandwidth) and each counted operator's intensity and achieved FLOP/s."""
    peak, used = peak_for(hw, precision)
    bw = hw.mem_bw_bytes_per_s.value if hw.mem_bw_bytes_per_s else None
    times = op_times(profile, hw, precision, efficiency) if peak and bw else np.full(len(profile.ops), np.nan)
    ops = [{"name": op.name, "kind": op.kind, "module": op.module, "phase": op.phase,
            "intensity_flop_per_byte": op.flops / op.bytes, "achieved_flops_per_s": op.flops / t}
           for op, t in zip(profile.ops, times) if op.flops > 0 and op.bytes > 0 and t > 0]
    return {"hardware": hw.id, "name": hw.name, "peak_flops_per_s": peak, "peak_precision": used,
            "mem_bw_bytes_per_s": bw, "ops": ops, "ops_not_shown": len(profile.ops) - len(ops)}


def _layer_key(op, depth: int) -> str:
    # The same grouping as Profile.by_layer: optimizer ops count with their parameter's module.
    path = op.module.rsplit(".", 1)[0] if op.phase == "optimizer" and "." in op.module else op.module
    return ".".join(path.split(".")[:depth]) if path else "(top)"


def layer_times(profile: Profile, hw: Hardware, precision: str, depth: int = 2,
                efficiency: Efficiency | None = None) -> dict[str, dict[str, float]]:
    """Predicted seconds per layer (Profile.by_layer's grouping) and phase on one `hw` device."""
    times = op_times(profile, hw, precision, efficiency)
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


@dataclass
class ReportData:
    """The advice and what each plot shows, by name; `hardware` holds every entry the advice priced."""

    advice: Advice
    hardware: dict[str, Hardware]
    rooflines: list[dict] = field(default_factory=list)
    memory: list[dict] = field(default_factory=list)
    layers: dict = field(default_factory=dict)
    measured: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"advice": self.advice.to_dict(), "rooflines": self.rooflines, "memory": self.memory,
                "layers": self.layers, "measured": self.measured}


def _chosen(advice: Advice, hardware: dict[str, Hardware], n: int) -> list[Estimate]:
    """Up to `n` estimates of distinct catalog hardware: the winner, the Pareto front, the rest by rank."""
    runnable = [e for e in advice.estimates() if not e.excluded_reason and e.total_time_s is not None]
    out, seen = [], set()
    for e in [*([advice.winner] if advice.winner else []), *advice.pareto, *advice.candidates, *runnable]:
        if e.hardware not in seen and e.hardware in hardware:
            seen.add(e.hardware)
            out.append(e)
    return out[:n]


def _memory_rows(advice: Advice, hardware: dict[str, Hardware]) -> list[dict]:
    """Up to MEMORY_ROWS estimates with a memory breakdown and a device of known capacity, best first."""
    rows: list[Estimate] = []
    for e in [*([advice.winner] if advice.winner else []), *advice.pareto, *advice.candidates, *advice.estimates()]:
        known = e.hardware in hardware and hardware[e.hardware].memory_bytes
        if e.memory_breakdown and known and all(r is not e for r in rows):
            rows.append(e)
    return [{"label": label(e), "hardware": e.hardware, "breakdown": dict(e.memory_breakdown),
             "capacity_bytes": hardware[e.hardware].memory_bytes.value} for e in rows[:MEMORY_ROWS]]


def report_data(advice: Advice, catalog: Catalog, measurements=(), efficiencies: dict | None = None) -> ReportData:
    """What the report draws for `advice`, its entries from `catalog` (the user's folders included);
    `efficiencies` by hardware id replace the published ones (a calibrated local CPU)."""
    from ..measure.devices import local_cpu_hardware

    efficiencies = efficiencies or {}
    hardware = {e.hardware: catalog.hardware[e.hardware] for e in advice.estimates() if e.hardware in catalog.hardware}
    local = advice.comparison.local_cpu
    if local and local not in hardware:
        hardware[local] = local_cpu_hardware()
    cmp = advice.comparison
    prof, precision = cmp.profile, cmp.workload.precision
    picks = _chosen(advice, hardware, PLOTTED_DEVICES)
    rooflines = [roofline_data(prof, hardware[e.hardware], precision, efficiencies.get(e.hardware)) for e in picks]
    layers = {}
    if picks:
        hw = hardware[picks[0].hardware]
        layers = {"hardware": hw.id, "name": hw.name, "batch": prof.batch,
                  "times": layer_times(prof, hw, precision, efficiency=efficiencies.get(hw.id))}
    return ReportData(advice=advice, hardware=hardware, rooflines=rooflines, memory=_memory_rows(advice, hardware),
                      layers=layers, measured=measured_data(measurements))


def report(job: Job, catalog: Catalog | None = None, store=None, *, profiler: Profiler = profile_job) -> ReportData:
    """The advice for the job and the data of every plot; measured steps and calibrations from `store`."""
    from ..calibrate import stored_calibration

    catalog = catalog if catalog is not None else load_catalog()
    advice = advise(job, catalog, store, profiler=profiler)
    measurements = store.measurements() if store is not None else ()
    efficiencies = {}
    local = advice.comparison.local_cpu
    if store is not None and local:
        from ..measure.devices import local_cpu_hardware

        cal = stored_calibration(store, local)
        if cal is not None:
            efficiencies[local] = cal.efficiency(local_cpu_hardware())
    return report_data(advice, catalog, measurements, efficiencies)
