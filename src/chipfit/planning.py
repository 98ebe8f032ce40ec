"""plan: the best ways to lay one transformer training job on one kind of hardware.

The API behind `chipfit plan`: the model is profiled once at micro-batch 1 and the search
(predict/plans.py) scales that profile to each plan instead of re-tracing.
"""

from __future__ import annotations

import re

from .catalog import hardware_named, load_catalog
from .errors import ChipfitError
from .predict.plan import ModelShape
from .predict.plans import PlanSearch, search_plans
from .workload.workload import Workload

# Global batch when none is given: about 4M tokens per step, the LLaMA recipe
# (Touvron et al. 2023, Table 2: 4M-token batches for every model size).
DEFAULT_BATCH_TOKENS = 4 * 2**20
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'90d', '12h', '45m', '3600s' or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([smhdw]?)\s*", text.lower())
    if not m:
        raise ChipfitError(f"Duration {text!r} is not understood; write it like 90d, 12h, 45m or 3600s.")
    value = float(m.group(1)) * _DURATION[m.group(2) or "s"]
    if value <= 0:
        raise ChipfitError(f"Duration {text!r} is not positive; give a deadline after now.")
    return value


def shape_of(spec, seq_len: int) -> ModelShape:
    """The plan-relevant sizes of a TransformerSpec trained at `seq_len` (an encoder-decoder's layers together)."""
    return ModelShape(layers=spec.layers + spec.encoder_layers, hidden=spec.hidden, heads=spec.heads, seq_len=seq_len,
                      experts=spec.experts, top_k=spec.top_k, expert_params=spec.expert_params(),
                      moe_layers=spec.moe_layers)


def plan(
    model: str | None,
    hardware: str,
    *,
    spec: str | None = None,
    tokens: float | None = None,
    samples: float | None = None,
    epochs: float = 1.0,
    batch: int | None = None,
    seq_len: int | None = None,
    precision: str = "bf16",
    optimizer: str = "adamw",
    max_devices: int | None = None,
    devices: int | None = None,
    objective: str = "time",
    deadline: str | None = None,
    budget_usd: float | None = None,
    pue: float = 1.10,
    network: str | None = None,
    top: int = 5,
    catalog_dirs: tuple = (),
) -> tuple[Workload, PlanSearch]:
    """Search data/tensor/pipeline/ZeRO/micro-batch/recompute plans for a transformer training job.

    network: a named scale-out fabric (predict.parallel.NETWORKS); default, the vendor's reference node's.
    """
    from .workload import library, llm

    if spec is not None:
        tspec = llm.parse_spec(spec)
        seq_len = seq_len or 2048
    elif model is not None:
        try:
            tspec = library.transformer_spec(model)
        except ChipfitError as exc:
            raise ChipfitError(f"chipfit plan searches transformer plans; {exc} For other models use "
                               "`chipfit compare MODEL --devices N`.") from exc
        from .workload.source import resolve

        seq_len = seq_len or resolve(model).default_seq_len
    else:
        raise ChipfitError("Name a transformer of the model library (`chipfit models`) or give --spec.")
    if budget_usd is not None and budget_usd <= 0:
        raise ChipfitError(f"Budget {budget_usd:g} USD is not positive; give --budget above 0.")
    catalog = load_catalog(catalog_dirs)
    hw = hardware_named(hardware, catalog)
    batch = batch or max(1, DEFAULT_BATCH_TOKENS // seq_len)
    workload = Workload(model=tspec.name if spec else model, mode="train", batch=batch, seq_len=seq_len,
                        tokens=tokens, samples=samples, epochs=epochs, precision=precision, optimizer=optimizer)
    shape = shape_of(tspec, seq_len)

    def profile_at(micro_batch: int):
        return llm.profile_spec(tspec, mode="train", batch=micro_batch, seq_len=seq_len, precision=precision,
                                optimizer=optimizer)

    search = search_plans(
        profile_at, shape, workload, hw, max_devices=max_devices, devices=devices, objective=objective,
        deadline_s=parse_duration(deadline) if deadline else None, budget_usd=budget_usd,
        instance=catalog.cheapest_instance(hw.id), pue=pue, network=network, top=top,
    )
    return workload, search
