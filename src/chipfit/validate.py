"""Validate on a device here: predicted (before and after calibration) against measured steps.

For zoo models that fit here, train and infer at two batch sizes, from the case set sized for the device
(`case_set`: CPU-sized fp32 cases on a CPU; on a GPU, batches that keep it busy, in bf16 as GPUs are used, with
`--quick` a smaller set of each). Every case's step is timed in
`rounds` rounds, the rounds interleaved over the cases (so a slow minute of a shared machine is spread
over all cases instead of landing on one); the measured time is the median of the rounds' mean steps (a
training run takes its mean step times the steps, and a step whose time flips between two modes, as one that
writes hundreds of MB into new pages does on a VM, has a steady mean and a median that lands on either mode),
and their spread (median absolute deviation over the median, robust to one disturbed round as the median
is) is reported beside the error, as the part of it that is noise. `--keep-freed-memory` measures with freed
memory kept for the next step (measure.allocator), so a step times the device, not the page faults of glibc's
unmapped blocks (which on a VM cost what the host's memory reclaim makes them cost). Each case is
then run once more under the profiler for its operator times. Each case is predicted three ways: with
the published defaults (before), with the micro-benchmark calibration alone, and with a
leave-one-model-out calibration (after): operator fits from every *other* model's operators and steps,
plus the micro-benchmarks, so no case is predicted from its own model's measurements. Reported: each
case, the median and worst absolute error. Alongside: the measured bf16-over-fp32 speed-up of this CPU
and the predicted speed-up of each hardware class over it, scaled from the measured step by the two
devices' roofline ratio (Habitat's idea, at step level). The steps are timed as measure_step times them (CUDA
events and a synchronize on a GPU, the peak from torch.cuda.max_memory_allocated, energy from the device's meter).

The cases are chosen so that every operator family they use appears in at least two models (pooling
and batch norm in both ResNets, attention and layer norm in ViT, GPT-2 and BERT, embeddings in GPT-2
and BERT, 3x3 depthwise and thin pointwise convolutions in both MobileNets); depthwise convolutions are also
micro-benchmarked by `chipfit bench`, which alone prices MobileNetV3's 5x5 ones held out.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

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
    ("resnet50", "train", 2, None), ("resnet50", "infer", 4, None),
    ("mobilenet_v2", "train", 4, None), ("mobilenet_v2", "infer", 16, None),
    ("mobilenet_v3_large", "train", 4, None), ("mobilenet_v3_large", "infer", 16, None),
    ("vit_b_16", "train", 1, None), ("vit_b_16", "infer", 2, None),
    ("gpt2", "train", 1, 128), ("gpt2", "infer", 4, 128),
    ("bert-base-uncased", "train", 1, 128), ("bert-base-uncased", "infer", 4, 128),
)
# Sized for a GPU: batches that keep tens of SMs busy (the shared H200 run's were 2-4x these) while the largest
# training step (gpt2, bert) stays under about 8 GB, so a 16 GB GPU runs every case.
GPU_CASES = (
    ("resnet18", "train", 64, None), ("resnet18", "train", 256, None),
    ("resnet18", "infer", 64, None), ("resnet18", "infer", 256, None),
    ("resnet50", "train", 64, None), ("resnet50", "infer", 128, None),
    ("mobilenet_v2", "train", 64, None), ("mobilenet_v2", "infer", 256, None),
    ("mobilenet_v3_large", "train", 64, None), ("mobilenet_v3_large", "infer", 256, None),
    ("vit_b_16", "train", 32, None), ("vit_b_16", "infer", 64, None),
    ("gpt2", "train", 4, 1024), ("gpt2", "infer", 8, 1024),
    ("bert-base-uncased", "train", 8, 512), ("bert-base-uncased", "infer", 32, 512),
)
ROUNDS = 5  # interleaved rounds of timed steps per case


@dataclass(frozen=True)
class CaseSet:
    """The cases validated on a device, the precision they run in, and the one the first case is run in once
    more for the measured bf16-over-fp32 speed-up."""

    cases: tuple
    precision: str = "fp32"
    contrast: str = "bf16"


def _quick(cases: tuple) -> tuple:
    """One training and one inference case per model (the smaller batch), and every operator family still in
    two models: ResNet-50 and MobileNetV3 left out (ResNet-18 and MobileNetV2 have their families)."""
    seen, out = set(), []
    for case in cases:
        if case[0] not in ("resnet50", "mobilenet_v3_large") and (case[0], case[1]) not in seen:
            seen.add((case[0], case[1]))
            out.append(case)
    return tuple(out)


def case_set(device, quick: bool = False, models: tuple[str, ...] = ()) -> CaseSet:
    """The cases for LocalDevice `device`: CASES in fp32 on a CPU; on a GPU, GPU_CASES in bf16 (autocast
    training, bf16 inference; fp16 on a GPU without bf16), the speed-up step in fp32. `quick`: _quick's subset;
    `models`: only these models' cases."""
    from .errors import ChipfitError

    cpu = device.kind == "cpu"
    cases = CASES if cpu else GPU_CASES
    cases = _quick(cases) if quick else cases
    names = list(dict.fromkeys(c[0] for c in cases))
    unknown = [m for m in models if m not in names]
    if unknown:
        raise ChipfitError(f"--model {unknown[0]!r} is not among the validation cases here; give one or more of "
                           f"{', '.join(names)}.")
    cases = tuple(c for c in cases if not models or c[0] in models)
    if cpu:
        return CaseSet(cases)
    return CaseSet(cases, precision="bf16" if "bf16" in device.precisions else "fp16", contrast="fp32")


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
    spread: float | None = None  # median absolute deviation of the rounds' means, over their median

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
    allocator: str = ""  # the allocator the steps were measured under (measure.allocator.describe)

    def summary(self) -> dict[str, float | None]:
        before = [abs(c.error_before) for c in self.cases]
        after = [abs(c.error_after) for c in self.cases if c.error_after is not None]
        micro = [abs(c.error_micro) for c in self.cases if c.error_micro is not None]
        spreads = [c.spread for c in self.cases if c.spread is not None]
        return {
            "cases": len(self.cases),
            "median_abs_error_micro": statistics.median(micro) if micro else None,
            "worst_abs_error_micro": max(micro, default=None),
            "median_abs_error_before": statistics.median(before) if before else None,
            "worst_abs_error_before": max(before, default=None),
            "median_abs_error_after": statistics.median(after) if after else None,
            "worst_abs_error_after": max(after, default=None),
            "median_spread": statistics.median(spreads) if spreads else None,
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
            "allocator": self.allocator,
        }


def predicted_step(profile, hw: Hardware, workload: Workload, calibration: Calibration | None) -> float:
    eff = calibration.efficiency(hw) if calibration else default_efficiency(hw)
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


def measure_cases(device, cases=CASES, repetitions: int = 5, rounds: int = ROUNDS, progress=None,
                  precision: str = "fp32") -> list[tuple[Workload, object, Measurement, list[Measurement]]]:
    """(workload, profile, step, operator rows) of each case measured here, in `rounds` interleaved rounds: in
    each, `repetitions` timed steps of every case, each followed by one step under the profiler. The step's
    median_s is the median of the rounds' means (its extra keeps them, their mean and their spread); the operator
    times are the profiled steps', each scaled by its own wall time to that median, so both come from the same
    rounds and the same load."""
    from .measure.opprofile import OpTimes, profile_ops
    from .measure.steps import measure_step
    from .workload import profile as trace

    total = rounds * len(cases) + 1
    done = 0
    profiles = [trace(model, mode=mode, batch=batch, seq_len=seq, precision=precision)
                for model, mode, batch, seq in cases]
    rounds_of: list[list[Measurement]] = [[] for _ in cases]
    profiled_of: list[list[OpTimes]] = [[] for _ in cases]
    for r in range(rounds):
        for i, ((model, mode, batch, seq), prof) in enumerate(zip(cases, profiles)):
            if progress:
                progress(done, total, f"round {r + 1}/{rounds}: {model} {mode} batch {batch}")
            rounds_of[i].append(measure_step(model, device, mode=mode, batch=batch, seq_len=seq, precision=precision,
                                             repetitions=repetitions, profile=prof))
            profiled_of[i].append(profile_ops(model, device, prof, mode=mode, batch=batch, seq_len=seq,
                                              precision=precision, repetitions=1))
            done += 1
    out = []
    for (model, mode, batch, seq), prof, steps, profiled in zip(cases, profiles, rounds_of, profiled_of):
        means = [m.extra["mean_s"] for m in steps]
        mid = statistics.median(means)
        ops = OpTimes.joined(profiled)
        step = replace(steps[0], median_s=mid, min_s=min(m.min_s for m in steps), max_s=max(m.max_s for m in steps),
                       repetitions=sum(m.repetitions for m in steps),
                       extra={**steps[0].extra, "model": steps[0].label, "round_means_s": means,
                              "mean_s": statistics.fmean(means),
                              # One round has no spread to tell (None, shown '-'), not a spread of 0.
                              "spread": statistics.median(abs(x - mid) for x in means) / mid if len(means) > 1
                              else None,
                              "op_profile": ops.summary(mid)})
        out.append((Workload(model=model, mode=mode, batch=batch, seq_len=seq, precision=precision), prof, step,
                    ops.measurements(device.id, step.label, mid)))
    return out


def predict_cases(local: Hardware, measured, pool: list[Measurement], micro_cal: Calibration | None) -> list[Case]:
    """Each measured (workload, profile, step) predicted before calibration, with `micro_cal`, and with a
    calibration fitted from `pool` less the case's own model (leave-one-model-out)."""
    out = []
    held_out: dict[str, Calibration] = {}
    for work, prof, step in measured:
        model = step.extra.get("model") or step.label
        if model not in held_out:
            held_out[model] = fit(without_model(pool, model), local, f"all but {model}")
        out.append(Case(work.model, work.mode, work.batch, work.seq_len, step.precision, step.median_s,
                        predicted_step(prof, local, work, None), predicted_step(prof, local, work, held_out[model]),
                        predicted_step(prof, local, work, micro_cal) if micro_cal else None, step.extra.get("spread")))
    return out


LOMO = "leave-one-model-out: each case predicted from the other models' operators and steps"


def run_validation(local: Hardware, device, measurements: list[Measurement], entries: list[Hardware],
                   cases=CASES, repetitions: int = 5, rounds: int = ROUNDS, progress=None, record=None,
                   fitted_from: str = "", precision: str = "fp32", contrast: str = "bf16") -> LocalValidation:
    """Measure each case here in `precision` (measure_cases) and set it beside its predictions (predict_cases).

    `measurements`: what calibrations may be fitted from besides this run's rows (the device's
    micro-benchmarks and stored operator rows); `record(measurement)` stores each new row (the steps
    with their predictions, the operator rows, and the first case's step in `contrast`, for the measured
    bf16-over-fp32 speed-up).
    """
    from .measure.steps import measure_step

    measured = measure_cases(device, cases, repetitions, rounds, progress, precision)
    pool = list(measurements) + [m for _, _, step, rows in measured for m in (step, *rows)]
    result = _validation(local, [(w, p, s) for w, p, s, _ in measured], pool, entries, fitted_from)
    total = rounds * len(cases) + 1
    if progress:
        progress(total - 1, total, contrast)
    work, _, step, _ = measured[0]
    other = measure_step(work.model, device, mode=work.mode, batch=work.batch, seq_len=work.seq_len,
                         precision=contrast, repetitions=repetitions)
    if record:
        for case, (_, _, step_i, rows) in zip(result.cases, measured):
            record(replace(step_i, predicted_s=case.predicted_after_s,
                           extra={**step_i.extra, "predicted_before_s": case.predicted_before_s,
                                  "predicted_micro_s": case.predicted_micro_s}))
            for m in rows:
                record(m)
        record(replace(other, extra={**other.extra, "model": other.label}))
    result.bf16_speedup_measured = _bf16_speedup(step, other)
    if progress:
        progress(total, total, "done")
    return result


def revalidate(local: Hardware, steps: list[Measurement], pool: list[Measurement], entries: list[Hardware],
               fitted_from: str = "") -> LocalValidation:
    """Predict the steps of a stored validate run again from `pool` (what is stored: micro-benchmarks,
    operator rows, profiled steps), without measuring: after a new `chipfit bench` or a chipfit upgrade.
    The cases are the steps in the run's precision (that of most of its steps); the profiles are traced again;
    the run's one step in another precision, if stored, gives the measured speed-up."""
    from .workload import profile as trace

    measured, other = [], None
    precision = Counter(m.precision for m in steps).most_common(1)[0][0] if steps else "fp32"
    for m in steps:
        mode, seq = m.kind.removesuffix("_step"), m.shape.get("seq_len") or None
        if m.precision != precision:
            other = other or m
            continue
        work = Workload(model=m.label, mode=mode, batch=m.shape["batch"], seq_len=seq, precision=precision)
        measured.append((work, trace(m.label, mode=mode, batch=work.batch, seq_len=seq, precision=precision), m))
    result = _validation(local, measured, pool, entries, fitted_from)
    if measured and other is not None:
        step = measured[0][2]
        if other.label == step.label and other.kind == step.kind:
            result.bf16_speedup_measured = _bf16_speedup(step, other)
    return result


def _bf16_speedup(step: Measurement, other: Measurement) -> float | None:
    """How much faster the bf16 one of the validated `step` and the same case in another precision (`other`, one
    round of steps, at its mean) ran than the fp32 one; None unless the two are fp32 and bf16."""
    if {step.precision, other.precision} != {"fp32", "bf16"}:
        return None
    other_s = other.extra.get("mean_s", other.median_s)
    return step.median_s / other_s if step.precision == "fp32" else other_s / step.median_s


def _validation(local: Hardware, measured, pool: list[Measurement], entries: list[Hardware],
                fitted_from: str) -> LocalValidation:
    """`measured` (workload, profile, step) cases predicted from `pool` (predict_cases, the micro-benchmark
    calibration beside), with the predicted speed-up of each hardware class over this CPU on the first case."""
    micro = [m for m in pool if m.kind not in ("op", "train_step", "infer_step")]
    out = predict_cases(local, measured, pool, fit(micro, local, fitted_from) if micro else None)
    result = LocalValidation(hardware=local.id, cases=out,
                             calibration=LOMO + (f" plus {fitted_from}" if fitted_from else ""))
    if measured:
        work, prof, _ = measured[0]
        result.class_speedups = class_speedups(prof, work, local, fit(pool, local, fitted_from), entries)
    return result
