"""compare and serve: one job on every catalog entry, ranked."""

from __future__ import annotations

import time
from dataclasses import replace

from ..catalog import Catalog, load_catalog
from ..comparison import Comparison, select_hardware
from ..errors import ArgumentError, ChipfitError
from ..predict import Plan
from ..predictors import ServingPredictor, StepPredictor, rank_key, ranked
from ..units import seconds
from .job import Job
from .profiling import Profiler, counted, llm_spec, prepared, profile_job

YEAR_S = 365.25 * 86400


def check_split(batch: int, devices: int) -> None:
    """A data-parallel batch splits evenly over the devices, or one sentence says what to give."""
    if batch % devices:
        raise ArgumentError(f"Batch {batch} does not split evenly over {devices} devices; give a batch that "
                            f"is a multiple of {devices}.")


def _setup(job: Job, catalog: Catalog | None, question: str = "compare"):
    catalog = catalog if catalog is not None else load_catalog()
    job = prepared(counted(job, catalog), question)
    check_split(job.batch, job.devices)
    return job, catalog, select_hardware(catalog, job.hw_class, list(job.hardware))


def compare(job: Job, catalog: Catalog | None = None, store=None, *, profiler: Profiler = profile_job) -> Comparison:
    """Profile the job once at the per-device batch and rank the catalog for it.

    `store` (chipfit.store.Store) gives the local CPU's calibration; `profiler` lets the dashboard
    cache profiles. LLM serving (a job with prompt and generate) goes to `serve`.
    """
    if job.serving:
        return serve(job, catalog, store)
    job, catalog, entries = _setup(job, catalog)
    plan = Plan(devices=job.devices)
    t0 = time.perf_counter()
    prof = profiler(job, job.batch // plan.data_parallel)
    t1 = time.perf_counter()
    predictor = StepPredictor(prof, job.workload(), plan, catalog, framework=job.framework,
                              conditions=job.conditions, network=job.network)
    estimates = [predictor.estimate(hw) for hw in entries]
    local = None
    if job.local:
        from ..calibrate import stored_calibration
        from ..measure.devices import local_cpu_hardware

        local = local_cpu_hardware()
        cal = stored_calibration(store, local.id) if store is not None else None
        mine = predictor.alone(cal.efficiency(local) if cal else None).estimate(local)
        estimates.append(mine)
        for e in estimates:
            if e.total_time_s and mine.total_time_s:
                e.speedup_vs_local_cpu = mine.total_time_s / e.total_time_s
    estimates.sort(key=rank_key)
    t2 = time.perf_counter()
    return Comparison(workload=predictor.workload, plan=plan, profile=prof, estimates=estimates,
                      conditions=job.conditions, local_cpu=local.id if local else None,
                      timings_s={"profile": t1 - t0, "predict": t2 - t1},
                      notes=[*job.defaults, *_hints(job, estimates)])


def serve(job: Job, catalog: Catalog | None = None, store=None) -> Comparison:
    """LLM serving, prefill then token-by-token decode, of the job's requests on every entry.

    Each estimate's step is one decode step, its latency the time to first token; the
    Comparison's `max_batch` gives the largest batch that fits each entry.
    """
    if not job.serving:
        raise ArgumentError("LLM serving needs --prompt and --generate, the tokens in and out of each request.")
    job, catalog, entries = _setup(replace(job, mode="infer"), catalog)
    try:
        spec = llm_spec(job)
    except ChipfitError as exc:
        raise ChipfitError(f"LLM serving (--prompt/--generate) needs a decoder LLM; {exc}") from exc
    t0 = time.perf_counter()
    prof = profile_job(job, job.batch)
    t1 = time.perf_counter()
    predictor = ServingPredictor(spec, job.workload(), job.devices, catalog, conditions=job.conditions,
                                 framework=job.framework)
    estimates = ranked(predictor, entries)
    return Comparison(workload=predictor.workload, plan=Plan(devices=job.devices), profile=prof,
                      estimates=estimates, conditions=job.conditions, notes=list(job.defaults),
                      timings_s={"profile": t1 - t0, "predict": time.perf_counter() - t1},
                      max_batch=dict(predictor.max_batch))


def _hints(job: Job, estimates) -> list[str]:
    """On one device, a training job that takes years (or fits nowhere) is a question for `plan`."""
    if not job.training or job.devices > 1:
        return []
    runs = [e for e in estimates if e.fits is not False and not e.excluded_reason and e.total_time_s]
    fastest = min((e.total_time_s for e in runs), default=None)
    if fastest is not None and fastest < YEAR_S:
        return []
    how = (f"`chipfit plan {job.name if job.spec is None else '--spec ' + job.spec} --hardware ID` searches "
           "parallel plans over many devices" if job.llm else
           "`--devices N` spreads it data-parallel over N devices")
    found = f"the fastest single device takes {seconds(fastest)}" if fastest else "no single device fits it"
    return [f"This training job on one device: {found}; {how}."]

