"""measure and validate: what is measured here, predicted next to measured, stored.

The device is found (measure.devices.local_device) by the shell before it opens the store, so a
device that is not here leaves nothing in the store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..catalog import Catalog, load_catalog
from ..errors import ArgumentError, ChipfitError
from .job import Job
from .profiling import prepared


def catalog_entry(device, catalog: Catalog):
    """The catalog entry that describes a local device."""
    from ..measure.devices import match_catalog

    return match_catalog(device, catalog)


@dataclass
class MeasureResult:
    """One workload's measured step beside its prediction, and the operator times stored with it."""

    run_id: int
    hardware: object  # catalog.Hardware
    measurement: object  # measurement.Measurement
    predicted_s: float
    calibrated: bool
    allocator: str
    operator_rows: int
    matched: int
    traced: int

    @property
    def error(self) -> float:
        return self.predicted_s / self.measurement.median_s - 1

    def to_dict(self) -> dict:
        return self.measurement.to_dict() | {"run_id": self.run_id, "hardware": self.hardware.id,
                                             "calibrated": self.calibrated, "error": self.error}


def measure(job: Job, catalog: Catalog | None, store, *, device, reps: int = 5, keep_freed_memory: bool = False,
            progress=None) -> MeasureResult:
    """Real steps of the job on the LocalDevice `device`, its prediction (calibrated where stored), stored."""
    from ..calibrate import stored_calibration
    from ..measure.allocator import device_allocator
    from ..measure.opprofile import profile_ops
    from ..measure.power import device_meter
    from ..measure.steps import measure_step
    from ..measurement import Environment
    from ..validate import predicted_step
    from ..workload import profile

    if reps < 1:
        raise ArgumentError(f"--reps {reps} is not a positive number of repetitions; give --reps 1 or more.")
    if not isinstance(job.model, str):
        raise ArgumentError("chipfit measure takes a model by name (zoo name, file or package.module:factory).")
    job = prepared(job, "measure")
    hw = catalog_entry(device, catalog if catalog is not None else load_catalog())
    prof = profile(job.model, mode=job.mode, batch=job.batch, seq_len=job.seq, precision=job.precision,
                   optimizer=job.optimizer)
    work = replace(job.workload(), seq_len=prof.seq_len)
    cal = stored_calibration(store, hw.id)
    predicted = predicted_step(prof, hw, work, cal)
    alloc = device_allocator(device, keep_freed_memory)
    step = dict(mode=job.mode, batch=job.batch, seq_len=job.seq, precision=job.precision, optimizer=job.optimizer)
    m = measure_step(job.model, device, **step, repetitions=reps, profile=prof, predicted_s=predicted,
                     progress=progress, meter=device_meter(device, hw))
    ops = profile_ops(job.model, device, prof, **step, repetitions=min(reps, 3))
    m = replace(m, extra={**m.extra, "model": m.label, "op_profile": ops.summary(m.median_s)})
    op_rows = ops.measurements(device.id, m.label, m.median_s)
    env = Environment.capture(device.id, device.name, hw.id, model_path=_model_path(job.model),
                              extra={"allocator": alloc})
    run_id = store.record_run("measure", device.id, env, [m, *op_rows])
    return MeasureResult(run_id=run_id, hardware=hw, measurement=m, predicted_s=predicted, calibrated=cal is not None,
                         allocator=alloc, operator_rows=len(op_rows), matched=ops.matched, traced=len(prof.ops))


def _model_path(model: str) -> str | None:
    """The file of a user model's code, for the git commit recorded with a run."""
    if ":" not in model:
        return None
    import importlib.util

    spec = importlib.util.find_spec(model.split(":")[0])
    return spec.origin if spec and spec.origin else None


def validate(catalog: Catalog | None, store, *, device, reps: int = 3, rounds: int = 5, stored: bool = False,
             quick: bool = False, models: tuple[str, ...] = (), keep_freed_memory: bool = False, progress=None):
    """Predicted against measured for the validation cases on the LocalDevice `device` (chipfit.validate),
    stored; or, `stored`, the newest stored validate run's cases predicted again from what is stored."""
    from ..calibrate import device_measurements
    from ..measure.allocator import device_allocator
    from ..measurement import Environment
    from ..validate import case_set, revalidate, run_validation

    catalog = catalog if catalog is not None else load_catalog()
    hw = catalog_entry(device, catalog)
    entries = list(catalog.hardware.values())
    if not stored and (reps < 1 or rounds < 1):
        raise ArgumentError(f"--reps {reps} and --rounds {rounds} must both be 1 or more.")
    measurements, source = device_measurements(store, device.id, require_bench=False)
    if stored:
        runs = store.runs(kind="validate", device=device.id)
        if not runs:
            raise ChipfitError(f"No validate run of {device.id} in {store.path}; run `chipfit validate` first.")
        steps = [m for m in store.measurements(run_id=runs[-1].id) if m.kind in ("train_step", "infer_step")]
        v = revalidate(hw, steps, measurements, entries, source)
        v.allocator = runs[-1].environment.extra.get("allocator", "")
        return v
    cases = case_set(device, quick, tuple(models))
    records, alloc = [], device_allocator(device, keep_freed_memory)
    v = run_validation(hw, device, measurements, entries, cases.cases, reps, rounds, progress, records.append, source,
                       cases.precision, cases.contrast)
    v.allocator = alloc
    env = Environment.capture(device.id, device.name, hw.id, extra={"calibration": v.calibration, "allocator": alloc})
    store.record_run("validate", device.id, env, records)
    v.environment = env  # the shell says when the machine was busy (trust.load_warning)
    return v
