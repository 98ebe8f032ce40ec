"""Validate on this machine: predicted (before and after calibration) against measured steps.

For zoo models that fit here, train and infer at two batch sizes: each case's step is timed,
then run again under the profiler for its operator times. Each case is then predicted three
ways: with the published defaults (before), with the micro-benchmark calibration alone, and
with a leave-one-model-out calibration (after): operator fits from every *other* model's
operators and steps, plus the micro-benchmarks, so no case is predicted from its own model's
measurements. Reported: each case, the median and worst absolute error. Alongside: the measured
bf16-over-fp32 speed-up of this CPU and the predicted speed-up of each hardware class over it,
scaled from the measured step by the two devices' roofline ratio (Habitat's idea, at step level).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from .calibrate import Calibration, fit, without_model
from .catalog.schema import Hardware
from .measurement import Measurement
from .predict import Plan, predict
from .predict.efficiency import default_efficiency
from .workload.workload import Workload

# (model, mode, batch, seq_len): small enough to run in a minute or two on a 2-core CPU.
CASES = (
    ("resnet18", "train", 2, None), ("resnet18", "train", 8, None),
    ("resnet18", "infer", 1, None), ("resnet18", "infer", 8, None),
    ("mobilenet_v3_large", "train", 4, None), ("mobilenet_v3_large", "infer", 16, None),
    ("gpt2", "train", 1, 128), ("gpt2", "infer", 4, 128),
    ("bert-base-uncased", "train", 1, 128), ("bert-base-uncased", "infer", 4, 128),
)


@dataclass
class Case:
    model: str
    mode: str
    batch: int
    seq_len: int | None
    precision: str
    measured_s: float
    predicted_before_s: float
    predicted_after_s: float | None  # leave-one-model-out calibration
    predicted_micro_s: float | None = None  # micro-benchmark calibration alone

    @property
    def error_micro(self) -> float | None:
        return None if self.predicted_micro_s is None else self.predicted_micro_s / self.measured_s - 1.0

    @property
    def error_before(self) -> float:
        return self.predicted_before_s / self.measured_s - 1.0

    @property
    def error_after(self) -> float | None:
        return None if self.predicted_after_s is None else self.predicted_after_s / self.measured_s - 1.0


@dataclass
class LocalValidation:
    hardware: str
    calibration: str
    cases: list[Case]
    bf16_speedup_measured: float | None = None
    class_speedups: dict[str, tuple[str, float]] = field(default_factory=dict)  # class -> (entry, speed-up)

    def summary(self) -> dict[str, float | None]:
        before = [abs(c.error_before) for c in self.cases]
        after = [abs(c.error_after) for c in self.cases if c.error_after is not None]
        micro = [abs(c.error_micro) for c in self.cases if c.error_micro is not None]
        return {
            "cases": len(self.cases),
            "median_abs_error_micro": statistics.median(micro) if micro else None,
            "worst_abs_error_micro": max(micro, default=None),
            "median_abs_error_before": statistics.median(before) if before else None,
            "worst_abs_error_before": max(before, default=None),
            "median_abs_error_after": statistics.median(after) if after else None,
            "worst_abs_error_after": max(after, default=None),
        }

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware,
            "calibration": self.calibration,
            "cases": [asdict(c) | {"error_before": c.error_before, "error_after": c.error_after,
                                   "error_micro": c.error_micro} for c in self.cases],
            "summary": self.summary(),
            "bf16_speedup_measured": self.bf16_speedup_measured,
            "class_speedups": {k: {"hardware": v[0], "speedup": v[1]} for k, v in self.class_speedups.items()},
        }


def predicted_step(profile, hw: Hardware, workload: Workload, calibration: Calibration | None) -> float:
    eff = calibration.efficiency(hw) if calibration else default_efficiency(hw.hw_class)
    return predict(profile, hw, workload, Plan(), efficiency=eff).step_time_s


def class_speedups(profile, workload: Workload, local: Hardware, calibration: Calibration | None,
                   entries: list[Hardware]) -> dict[str, tuple[str, float]]:
    """Per class, the fastest entry's predicted speed-up over this device.

    Habitat's scaling at step level: the entry's time is the measured local time times
    predicted(entry) / predicted(local), so the speed-up is predicted(local) / predicted(entry)
    with the local prediction calibrated, and the local model error cancels.
    """
    local_pred = predicted_step(profile, local, workload, calibration)
    best: dict[str, tuple[str, float]] = {}
    for hw in entries:
        est = predict(profile, hw, workload, Plan())
        if est.excluded_reason or est.step_time_s is None:
            continue
        speedup = local_pred / est.step_time_s
        if hw.hw_class not in best or speedup > best[hw.hw_class][1]:
            best[hw.hw_class] = (hw.id, speedup)
    return best


def run_validation(local: Hardware, device, measurements: list[Measurement], entries: list[Hardware],
                   cases=CASES, repetitions: int = 5, progress=None, record=None,
                   fitted_from: str = "") -> LocalValidation:
    """Measure each case here (step, then its operators) and set it beside its predictions.

    `measurements`: what calibrations may be fitted from besides this run's rows (the device's
    micro-benchmarks and stored operator rows); `record(measurement)` stores each new row.
    """
    from dataclasses import replace

    from .measure.opprofile import profile_ops
    from .measure.steps import measure_step
    from .workload import profile as trace

    total = 2 * len(cases) + 1
    measured = []
    for i, (model, mode, batch, seq) in enumerate(cases):
        if progress:
            progress(2 * i, total, f"{model} {mode} batch {batch}")
        prof = trace(model, mode=mode, batch=batch, seq_len=seq, precision="fp32")
        step = measure_step(model, device, mode=mode, batch=batch, seq_len=seq, repetitions=repetitions, profile=prof)
        if progress:
            progress(2 * i + 1, total, f"{model} {mode} batch {batch}: operators")
        ops = profile_ops(model, device, prof, mode=mode, batch=batch, seq_len=seq, repetitions=min(repetitions, 3))
        step = replace(step, extra={**step.extra, "model": step.label, "op_profile": ops.summary(step.median_s)})
        measured.append((prof, Workload(model=model, mode=mode, batch=batch, seq_len=seq), step,
                         ops.measurements(device.id, step.label, step.median_s)))
    new = [m for _, _, step, rows in measured for m in (step, *rows)]
    pool = list(measurements) + new
    micro = [m for m in measurements if m.kind not in ("op", "train_step", "infer_step")]
    micro_cal = fit(micro, local, fitted_from) if micro else None
    out: list[Case] = []
    for (model, mode, batch, seq), (prof, work, step, rows) in zip(cases, measured):
        before = predicted_step(prof, local, work, None)
        held_out = fit(without_model(pool, step.label), local, f"all but {step.label}")
        after = predicted_step(prof, local, work, held_out)
        micro_s = predicted_step(prof, local, work, micro_cal) if micro_cal else None
        if record:
            record(replace(step, predicted_s=after, extra={**step.extra, "predicted_before_s": before,
                                                           "predicted_micro_s": micro_s}))
            for m in rows:
                record(m)
        out.append(Case(model, mode, batch, seq, "fp32", step.median_s, before, after, micro_s))
    full = fit(pool, local, fitted_from)
    result = LocalValidation(
        hardware=local.id, cases=out,
        calibration=f"leave-one-model-out: each case predicted from the other models' operators and steps"
                    f"{' plus ' + fitted_from if fitted_from else ''}",
    )
    if progress:
        progress(total - 1, total, "bf16")
    prof, work, step, _ = measured[0]
    model, mode, batch, seq = cases[0]
    bf16 = measure_step(model, device, mode=mode, batch=batch, seq_len=seq, precision="bf16", repetitions=repetitions)
    result.bf16_speedup_measured = step.median_s / bf16.median_s
    result.class_speedups = class_speedups(prof, work, local, full, entries)
    if progress:
        progress(total, total, "done")
    return result
