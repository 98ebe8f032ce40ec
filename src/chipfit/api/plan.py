"""plan: the best ways to lay one transformer training job on one kind of hardware.

The model is profiled analytically per micro-batch size and the search (predict/plans.py,
through predictors.PlanPredictor) scales that profile to each plan instead of re-tracing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..catalog import Catalog, load_catalog, resolve_hardware
from ..errors import ArgumentError, ChipfitError
from ..predict.plans import PlanSearch
from ..predictors import PlanPredictor, plan_shape
from ..workload.workload import Workload
from .job import Job
from .profiling import llm_spec, lora_spec, prepared


@dataclass
class PlanResult:
    """The job as planned and the ranked plans; `to_dict()` is `chipfit plan --json`. `finetune` describes the
    LoRA adapters trained on a frozen base ("" for full training)."""

    workload: Workload
    search: PlanSearch
    notes: list[str]
    finetune: str = ""

    def to_dict(self) -> dict:
        return {"workload": self.workload.to_dict(), "search": self.search.to_dict(), "notes": list(self.notes),
                "finetune": self.finetune}


def plan(job: Job, catalog: Catalog | None = None, store=None, *, top: int = 5) -> PlanResult:
    """Search data/tensor/pipeline/ZeRO/micro-batch/recompute plans on `job.hardware` (one entry)."""
    if len(job.hardware) != 1:
        raise ArgumentError("chipfit plan searches one kind of hardware; give --hardware ID once.")
    if job.mode == "infer" or job.serving:
        raise ArgumentError("chipfit plan searches training plans; leave out --infer, --prompt and --generate.")
    job = replace(job, mode="train")
    try:
        spec = llm_spec(job)
    except ChipfitError as exc:
        raise ChipfitError(f"chipfit plan searches transformer plans; {exc} For other models use "
                           "`chipfit compare MODEL --devices N`.") from exc
    lora = job.lora_config()
    if lora is not None:
        lora_spec(job)
    catalog = catalog if catalog is not None else load_catalog()
    named = resolve_hardware(job.hardware[0], catalog)
    if job.devices is None and job.max_devices is None and named.devices:
        job = replace(job, devices=named.devices)  # "8x H100", "p5.48xlarge": the count the name gives
    job = prepared(job, "plan")
    hw = catalog.hardware[named.hw_id]
    workload = job.workload()
    if job.spec is not None:
        workload = replace(workload, model=spec.name)

    def profile_at(micro_batch: int):
        from ..workload import llm

        return llm.profile_spec(spec, mode="train", batch=micro_batch, seq_len=job.seq, precision=job.precision,
                                optimizer=job.optimizer, lora=lora)

    c = job.constraints
    predictor = PlanPredictor(profile_at, plan_shape(spec, job.seq), workload, catalog, max_devices=job.max_devices,
                              devices=job.devices,
                              objective=c.objective, deadline_s=c.deadline_s, budget_usd=c.budget_usd,
                              conditions=job.conditions, network=job.network, top=top)
    return PlanResult(workload=workload, search=predictor.search(hw), notes=list(job.defaults),
                      finetune=f"{lora.describe()}, the rest frozen" if lora else "")
