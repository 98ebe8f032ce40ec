"""measure and validate: what is measured here, predicted next to measured, stored."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..catalog import Catalog, load_catalog
from ..errors import BadArgument, ChipfitError, closest
from .job import Job
from .profiling import prepared


def local_device(device_id: str):
    """The local device `device_id` (see `chipfit devices`), or a ChipfitError naming those present."""
    from ..measure.devices import local_devices

    devices = {d.id: d for d in local_devices()}
    if device_id not in devices:
        raise ChipfitError(f"No device {device_id!r} here.{closest(device_id, devices)} Present: {', '.join(devices)}.")
    return devices[device_id]


def catalog_entry(device, catalog: Catalog):
    """The catalog entry that describes a local device."""
    from ..measure.devices import match_catalog

    return match_catalog(device, catalog.hardware)


def allocator(keep_freed_memory: bool) -> str:
    """Set this process's allocator for measuring (measure.allocator) when asked; say which it is."""
    from ..measure.allocator import describe, retain_freed_memory

    return retain_freed_memory() if keep_freed_memory else describe()


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


def measure(job: Job, catalog: Catalog | None, store, *, device: str = "local-cpu", reps: int = 5,
            keep_freed_memory: bool = False, progress=None) -> MeasureResult:
    """Real steps of the job on local `device`, its prediction (calibrated where stored), stored in `store`."""
    from ..calibrate import stored_calibration
    from ..measure.opprofile import profile_ops
    from ..measure.steps import measure_step
    from ..measurement import Environment
    from ..validate import predicted_step
    from ..workload import profile

    if reps < 1:
        raise BadArgument(f"--reps {reps} is not a positive number of repetitions; give --reps 1 or more.")
    if not isinstance(job.model, str):
        raise BadArgument("chipfit measure takes a model by name (zoo name, file or package.module:factory).")
    job = prepared(job, "measure")
    dev = local_device(device)
    hw = catalog_entry(dev, catalog if catalog is not None else load_catalog())
    prof = profile(job.model, mode=job.mode, batch=job.batch, seq_len=job.seq, precision=job.precision,
                   optimizer=job.optimizer)
    work = replace(job.workload(), seq_len=prof.seq_len)
    cal = stored_calibration(store, hw.id)
    predicted = predicted_step(prof, hw, work, cal)
    alloc = allocator(keep_freed_memory)
    step = dict(mode=job.mode, batch=job.batch, seq_len=job.seq, precision=job.precision, optimizer=job.optimizer)
    m = measure_step(job.model, dev, **step, repetitions=reps, profile=prof, predicted_s=predicted, progress=progress)
    ops = profile_ops(job.model, dev, prof, **step, repetitions=min(reps, 3))
    m = replace(m, extra={**m.extra, "model": m.label, "op_profile": ops.summary(m.median_s)})
    op_rows = ops.measurements(dev.id, m.label, m.median_s)
    env = Environment.capture(dev.id, dev.name, hw.id, model_path=_model_path(job.model), extra={"allocator": alloc})
    run_id = store.record_run("measure", dev.id, env, [m, *op_rows])
    return MeasureResult(run_id=run_id, hardware=hw, measurement=m, predicted_s=predicted, calibrated=cal is not None,
                         allocator=alloc, operator_rows=len(op_rows), matched=ops.matched, traced=len(prof.ops))


def _model_path(model: str) -> str | None:
    """The file of a user model's code, for the git commit recorded with a run."""
    if ":" not in model:
        return None
    import importlib.util

    spec = importlib.util.find_spec(model.split(":")[0])
    return spec.origin if spec and spec.origin else None


def validate(catalog: Catalog | None, store, *, reps: int = 3, rounds: int = 5, stored: bool = False,
             keep_freed_memory: bool = False, progress=None):
    """Predicted against measured for the validation cases on this CPU (chipfit.validate), stored; or,
    `stored`, the newest stored validate run's cases predicted again from what is stored."""
    from ..calibrate import device_measurements
    from ..measurement import Environment
    from ..validate import revalidate, run_validation

    catalog = catalog if catalog is not None else load_catalog()
    device = local_device("local-cpu")
    hw = catalog_entry(device, catalog)
    entries = list(catalog.hardware.values())
    if not stored and (reps < 1 or rounds < 1):
        raise BadArgument(f"--reps {reps} and --rounds {rounds} must both be 1 or more.")
    measurements, source = device_measurements(store, device.id, require_bench=False)
    if stored:
        runs = store.runs(kind="validate", device=device.id)
        if not runs:
            raise ChipfitError(f"No validate run of {device.id} in {store.path}; run `chipfit validate` first.")
        steps = [m for m in store.measurements(run_id=runs[-1].id) if m.kind in ("train_step", "infer_step")]
        v = revalidate(hw, steps, measurements, entries, source)
        v.allocator = runs[-1].environment.extra.get("allocator", "")
        return v
    records, alloc = [], allocator(keep_freed_memory)
    v = run_validation(hw, device, measurements, entries, repetitions=reps, rounds=rounds, progress=progress,
                       record=records.append, fitted_from=source)
    v.allocator = alloc
    env = Environment.capture(device.id, device.name, hw.id, extra={"calibration": v.calibration, "allocator": alloc})
    store.record_run("validate", device.id, env, records)
    return v
