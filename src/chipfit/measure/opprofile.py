"""Per-operator times of a real step: the step measure_step runs, under torch.profiler.

Each timed step is wrapped in a profiler range; the aten events inside it, in the order they
end (the order the tracer records operators in), are matched to the traced profile's operators
(same aten name; views, ops the tracer skips and profiler-only events are passed over). An
operator's time is its event's total time (itself and the kernels it calls: CPU time on a CPU,
kernel time on a GPU) less that of matched operators nested in it. The median over the timed steps is kept, one
Measurement of kind "op" per distinct operator call (same phase, name, dtype, FLOPs and
bytes), with the number of such calls in the step; and the mean, which calibration fits: a step's
time is the sum of its operators', so an operator's expected share is its mean, and an operator
whose time jumps between steps (a page-faulting allocation) is not priced at whichever mode the
median of three steps lands on.

The profiler adds time to every event, and a profiled run can drift from the clean one on a
shared machine; so each profiled step's times are scaled by the clean step's time (timed separately by
measure_step) over that profiled step's wall time: a disturbed profiled step shifts how its time divides
between operators, not how much there is.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
from dataclasses import dataclass, field

from ..measurement import Measurement
from ..predict.efficiency import fresh_bytes, op_family
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


def _same_op(event_name: str, profiler_op: str) -> bool:
    """Same operator, in place or not: autograd accumulates a gradient with add_ where the tracer,
    on fake tensors, sees add."""
    return event_name.rstrip("_") == profiler_op.rstrip("_")


def match_events(ops: list[Op], events: list[Event], window: int = MATCH_WINDOW) -> list[int | None]:
    """Index into `events` of each traced op's event, or None; greedy, in order.

    `events` are sorted by end time: an operator after the operators it calls, the order in which
    the tracer (which records an operator when it returns) sees them. In-place and out-of-place
    forms of an operator match each other.
    """
    out: list[int | None] = []
    j = 0
    for op in ops:
        name = profiler_name(op.name)
        found = next((k for k in range(j, min(len(events), j + window)) if _same_op(events[k].name, name)), None)
        out.append(found)
        if found is not None:
            j = found + 1
    return out


def charged_times(events: list[Event], matched: list[int | None]) -> list[float | None]:
    """Each matched event's time less that of the matched events nested in it (a traced operator
    that calls another traced operator is not charged twice)."""
    order = sorted({k for k in matched if k is not None}, key=lambda k: (events[k].start_us, -events[k].end_us))
    own = {k: events[k].time_s for k in order}
    stack: list[int] = []
    for k in order:
        while stack and events[stack[-1]].end_us < events[k].end_us:
            stack.pop()
        if stack:  # k is nested in the matched event on top of the stack
            own[stack[-1]] -= events[k].time_s
        stack.append(k)
    return [None if k is None else max(own[k], 0.0) for k in matched]


@dataclass
class OpTimes:
    """Matched operator times of `repetitions` profiled steps, in the profile's op order."""

    profile: Profile
    times_s: list[list[float | None]]  # [rep][op index]; None where the op was not matched
    step_s: list[float]  # wall time of each profiled step
    unmatched: dict[str, int] = field(default_factory=dict)  # "phase:op name" -> unmatched calls (first rep)

    @classmethod
    def joined(cls, parts: list["OpTimes"]) -> "OpTimes":
        """The profiled steps of several runs of one profile (one per round) as one set of repetitions."""
        return cls(profile=parts[0].profile, times_s=[rep for p in parts for rep in p.times_s],
                   step_s=[s for p in parts for s in p.step_s], unmatched=parts[0].unmatched)

    @property
    def matched(self) -> int:
        return sum(t is not None for t in self.times_s[0]) if self.times_s else 0

    def scales(self, clean_step_s: float | None) -> list[float]:
        """Per profiled step, the factor taking its times to an unprofiled step's: the clean step time over
        its wall time (the profiler's own cost, and any drift between the two runs, cancel)."""
        return [clean_step_s / wall if clean_step_s else 1.0 for wall in self.step_s]

    def summary(self, clean_step_s: float | None = None) -> dict:
        """Counts and times to keep beside the step measurement (times scaled to `clean_step_s`); the
        matched operators' time is the mean over the steps, as the operators' own (measurements())."""
        ks = self.scales(clean_step_s)
        matched_s = [sum(t for t in rep if t is not None) * k for k, rep in zip(ks, self.times_s)]
        by_phase: dict[str, int] = {}
        for op in self.profile.ops:
            by_phase[op.phase] = by_phase.get(op.phase, 0) + 1
        return {"ops": len(self.profile.ops), "ops_matched": self.matched, "ops_by_phase": by_phase,
                "profiled_step_s": statistics.median(self.step_s), "matched_ops_s": statistics.fmean(matched_s),
                "scale": statistics.median(ks) if ks else 1.0,
                "unmatched": dict(sorted(self.unmatched.items(), key=lambda kv: -kv[1]))}

    def measurements(self, device: str, model: str, clean_step_s: float | None = None) -> list[Measurement]:
        """One "op" Measurement per distinct operator call: seconds per call (median over the steps, the
        mean in extra["mean_s"]), scaled to `clean_step_s` when given (see scales())."""
        ks = self.scales(clean_step_s)
        groups: dict[tuple, list[int]] = {}
        for i, op in enumerate(self.profile.ops):
            if all(rep[i] is not None for rep in self.times_s):
                groups.setdefault((op.phase, op.name, op.kind, op.dtype, op.flops, op.bytes, op.bytes_written,
                                   op.window), []).append(i)
        out = []
        p = self.profile
        for (phase, name, kind, dtype, flops, nbytes, written, window), idx in groups.items():
            per_rep = [k * sum(rep[i] for i in idx) / len(idx) for k, rep in zip(ks, self.times_s)]
            out.append(Measurement(
                kind="op", device=device, precision=op_precision(dtype), shape={"calls": len(idx)},
                flops=float(flops), bytes=float(nbytes), median_s=statistics.median(per_rep), min_s=min(per_rep),
                max_s=max(per_rep), repetitions=len(per_rep), label=name,
                extra={"model": model, "mode": p.mode, "batch": p.batch, "seq_len": p.seq_len or 0, "phase": phase,
                       "op_kind": kind, "family": op_family(kind, name, flops, nbytes, p.mode, window),
                       "fresh_bytes": fresh_bytes(name, written), "mean_s": statistics.fmean(per_rep)}
                | ({"window": window} if window else {}),
            ))
        return out


def _events(prof, device_kind: str) -> tuple[list[list[Event]], list[float]]:
    """Per profiled step, its aten events sorted by end; and each step's wall seconds."""
    steps, ats = [], []
    for e in prof.events():
        r = e.time_range
        if e.name.startswith(STEP_RANGE):
            steps.append((int(e.name[len(STEP_RANGE):]), r.start, r.end))
        elif "::" in e.name and not e.name.startswith("ProfilerStep"):
            t_us = e.device_time_total if device_kind == "cuda" else e.cpu_time_total
            ats.append(Event(e.name, r.start, r.end, t_us / 1e6))
    ats.sort(key=lambda e: (e.end_us, -e.start_us))
    per_step, walls = [], []
    for _, start, end in sorted(steps):
        per_step.append([e for e in ats if start <= e.start_us and e.end_us <= end])
        walls.append((end - start) / 1e6)
    return per_step, walls


@contextlib.contextmanager
def _without_stderr():
    """File descriptor 2 sent to /dev/null: torch's profiler writes a "USDT: ... profiler_start" and
    "profiler_stop" line there from C++ each time it starts and stops, once per profiled case and round."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profile_ops(model, device: LocalDevice, profile: Profile, *, mode: str = "train", batch: int = 1,
                seq_len: int | None = None, precision: str = "fp32", optimizer: str = "adamw",
                warmup: int = 1, repetitions: int = 3) -> OpTimes:
    """Run `repetitions` real steps of the workload `profile` was traced from (measure_step's code path)
    under torch.profiler and match each step's aten events to `profile.ops`."""
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    from .power import EnergyMeter
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
    prof = torch_profile(activities=activities, record_shapes=False, with_stack=False)
    with _without_stderr():
        prof.__enter__()
    try:
        measure_step(model, device, mode=mode, batch=batch, seq_len=seq_len, precision=precision,
                     optimizer=optimizer, warmup=warmup, repetitions=repetitions, profile=profile, progress=mark,
                     meter=EnergyMeter())  # no energy wanted, and no untimed steps under the profiler
        if device.kind == "cuda":
            torch.cuda.synchronize()
    finally:
        with _without_stderr():
            prof.__exit__(None, None, None)
    per_step, walls = _events(prof, device.kind)
    times, unmatched = [], {}
    for r, events in enumerate(per_step):
        idx = match_events(profile.ops, events)
        times.append(charged_times(events, idx))
        if r == 0:
            for op, k in zip(profile.ops, idx):
                if k is None:
                    key = f"{op.phase}:{op.name}"
                    unmatched[key] = unmatched.get(key, 0) + 1
    return OpTimes(profile=profile, times_s=times, step_s=walls, unmatched=unmatched)
