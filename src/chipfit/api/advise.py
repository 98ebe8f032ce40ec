"""advise: the job compared at each device count, then the decision under the user's constraints."""

from __future__ import annotations

from dataclasses import replace

from ..advise import Advice
from ..advise import advise as decide
from ..catalog import Catalog, load_catalog
from ..errors import ArgumentError
from .compare import check_split, compare
from .job import Job
from .profiling import Profiler, prepared, profile_job

# Device counts advise weighs when none are given: one device, one node, eight nodes of 8.
DEVICE_COUNTS = (1, 8, 64)


def advise(job: Job, catalog: Catalog | None = None, store=None, *, profiler: Profiler = profile_job) -> Advice:
    """Rank hardware and device counts for the job under `job.constraints`; rent versus buy with buy_years."""
    counts = sorted(set(job.device_counts or DEVICE_COUNTS))
    job = prepared(replace(job, device_counts=tuple(counts)), "advise")
    c = job.constraints
    usable = [n for n in counts if job.batch % n == 0]
    if len(counts) == 1:
        check_split(job.batch, counts[0])
    if not usable:
        raise ArgumentError(f"Batch {job.batch} splits over none of the device counts {counts}; give a batch that is "
                          "a multiple of one of them.")
    notes = [f"{n} devices not considered: batch {job.batch} does not split over them; give a batch that is a "
             f"multiple of {n}" for n in counts if n not in usable]
    catalog = catalog if catalog is not None else load_catalog()
    comparisons = [compare(replace(job, devices=n, local=job.local and not i), catalog, store, profiler=profiler)
                   for i, n in enumerate(usable)]
    return decide(comparisons, deadline_s=c.deadline_s, budget_usd=c.budget_usd, energy_kwh_max=c.energy_kwh,
                  co2_kg_max=c.co2_kg, framework=job.framework, where=c.where, single_device=c.single_device,
                  objective=c.objective, buy_years=c.buy_years, electricity_usd_per_kwh=c.electricity_usd_per_kwh,
                  utilisation=c.utilisation, catalog=catalog,
                  notes=[*comparisons[0].notes, *notes])
