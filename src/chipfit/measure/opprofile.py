"""Per-operator times of a real step: the step measure_step runs, under torch.profiler.

Each timed step is wrapped in a profiler range; the aten events inside it are matched, in
order, to the traced profile's operators (same aten name; views, ops the tracer skips and
profiler-only events are passed over; an event nested in an already matched one belongs to
it). An operator's time is its event's total time (itself and the kernels it calls): CPU
time on a CPU, kernel time on a GPU. The median over the timed steps is kept, one
Measurement of kind "op" per distinct operator call (same phase, name, dtype, FLOPs and
bytes), with the number of such calls in the step.

The profiler adds a little time to every event, so these times run a few percent above an
unprofiled step; the clean step is timed separately by measure_step.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from ..measurement import Measurement
from ..predict.efficiency import op_family
from ..predict.roofline import op_precision
from ..workload.profile import Op, Profile
from .devices import LocalDevice

STEP_RANGE = "chipfit_step_"
# How many profiler events past the last match to look for a traced operator before calling it unmatched.
MATCH_WINDOW = 400


@dataclass(frozen=True)
class Event:
    """One profiler event: aten name ("aten::mm"), start and end (microseconds), time it is charged (seconds)."""

    name: str
    start_us: float
    end_us: float
    time_s: float


def profiler_name(op_name: str) -> str:
    """The profiler's name of a traced operator: "aten.mm.default" -> "aten::mm"."""
    namespace, _, rest = op_name.partition(".")
    return f"{namespace}::{rest.split('.')[0]}"


def match_events(ops: list[Op], events: list[Event], window: int = MATCH_WINDOW) -> list[int | None]:
    """Index into `events` of each traced op's event, or None; greedy, in order.

    `events` are sorted by start (a parent before its children). An event that starts inside the
    last matched event is part of it and is not matched again.
    """
    out: list[int | None] = []
    j, busy_until = 0, float("-inf")
    for op in ops:
        name = profiler_name(op.name)
        found = None
        for k in range(j, min(len(events), j + window)):
            e = events[k]
            if e.name == name and e.start_us >= busy_until:
                found = k
                break
        out.append(found)
        if found is not None:
            j, busy_until = found + 1, events[found].end_us
    return out


@dataclass
class OpTimes:
    """Matched operator times of `repetitions` profiled steps, in the profile's op order."""

    profile: Profile
    times_s: list[list[float | None]]  # [rep][op index]; None where the op was not matched
    step_s: list[float]  # wall time of each profiled step
    unmatched: dict[str, int] = field(default_factory=dict)  # traced op name -> unmatched calls (first rep)

    @property
    def matched(self) -> int:
        return sum(t is not None for t in self.times_s[0]) if self.times_s else 0

    def summary(self) -> dict:
        """Counts and medians to keep beside the step measurement."""
        matched_s = [sum(t for t in rep if t is not None) for rep in self.times_s]
        by_phase: dict[str, int] = {}
        for op in self.profile.ops:
            by_phase[op.phase] = by_phase.get(op.phase, 0) + 1
        return {"ops": len(self.profile.ops), "ops_matched": self.matched, "ops_by_phase": by_phase,
                "profiled_step_s": statistics.median(self.step_s), "matched_ops_s": statistics.median(matched_s),
                "unmatched": dict(sorted(self.unmatched.items(), key=lambda kv: -kv[1])[:10])}

    def measurements(self, device: str, model: str) -> list[Measurement]:
        """One "op" Measurement per distinct operator call: seconds per call (median over the steps)."""
        groups: dict[tuple, list[int]] = {}
        for i, op in enumerate(self.profile.ops):
            if all(rep[i] is not None for rep in self.times_s):
                groups.setdefault((op.phase, op.name, op.kind, op.dtype, op.flops, op.bytes), []).append(i)
        out = []
        p = self.profile
        for (phase, name, kind, dtype, flops, nbytes), idx in groups.items():
            per_rep = [sum(rep[i] for i in idx) / len(idx) for rep in self.times_s]
            out.append(Measurement(
                kind="op", device=device, precision=op_precision(dtype), shape={"calls": len(idx)},
                flops=float(flops), bytes=float(nbytes), median_s=statistics.median(per_rep), min_s=min(per_rep),
                max_s=max(per_rep), repetitions=len(per_rep), label=name,
                extra={"model": model, "mode": p.mode, "batch": p.batch, "seq_len": p.seq_len or 0, "phase": phase,
                       "op_kind": kind, "family": op_family(kind, name, flops, nbytes)},
            ))
        return out


def _events(prof, device_kind: str) -> tuple[list[list[Event]], list[float]]:
    """Per profiled step, its aten events sorted by start; and each step's wall seconds."""
    steps, ats = [], []
    for e in prof.events():
        r = e.time_range
        if e.name.startswith(STEP_RANGE):
            steps.append((int(e.name[len(STEP_RANGE):]), r.start, r.end))
        elif "::" in e.name and not e.name.startswith("ProfilerStep"):
            t_us = e.device_time_total if device_kind == "cuda" else e.cpu_time_total
            ats.append(Event(e.name, r.start, r.end, t_us / 1e6))
    ats.sort(key=lambda e: (e.start_us, -e.end_us))
    per_step, walls = [], []
    for _, start, end in sorted(steps):
        per_step.append([e for e in ats if start <= e.start_us and e.end_us <= end])
        walls.append((end - start) / 1e6)
    return per_step, walls


def profile_ops(model, device: LocalDevice, profile: Profile, *, mode: str = "train", batch: int = 1,
                seq_len: int | None = None, precision: str = "fp32", optimizer: str = "adamw",
                warmup: int = 1, repetitions: int = 3) -> OpTimes:
    """Run `repetitions` real steps of the workload `profile` was traced from (measure_step's code path)
    under torch.profiler and match each step's aten events to `profile.ops`."""
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    from .steps import measure_step

    current: list = []

    def mark(i: int, total: int, label: str) -> None:
        while current:
            current.pop().__exit__(None, None, None)
        if i < total and i >= warmup:
            rf = record_function(f"{STEP_RANGE}{i}")
            rf.__enter__()
            current.append(rf)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.kind == "cuda" else [])
    with torch_profile(activities=activities, record_shapes=False, with_stack=False) as prof:
        measure_step(model, device, mode=mode, batch=batch, seq_len=seq_len, precision=precision,
                     optimizer=optimizer, warmup=warmup, repetitions=repetitions, profile=profile, progress=mark)
        if device.kind == "cuda":
            torch.cuda.synchronize()
    per_step, walls = _events(prof, device.kind)
    times, unmatched = [], {}
    for r, events in enumerate(per_step):
        idx = match_events(profile.ops, events)
        times.append([None if k is None else events[k].time_s for k in idx])
        if r == 0:
            for op, k in zip(profile.ops, idx):
                if k is None:
                    unmatched[op.name] = unmatched.get(op.name, 0) + 1
    return OpTimes(profile=profile, times_s=times, step_s=walls, unmatched=unmatched)
