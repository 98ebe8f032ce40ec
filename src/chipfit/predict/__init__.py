"""predict: a Profile on a Hardware entry under a Plan -> Estimate. Pure: no torch, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..catalog.schema import Hardware, Instance
from ..errors import ChipfitError
from ..workload.profile import Profile
from ..workload.workload import Workload
from . import energy as _energy
from .cost import price_source, rental_cost_usd
from .efficiency import Efficiency, default_efficiency
from .estimate import Estimate
from .memory import activation_element_bytes, memory_per_device
from .parallel import (Network, PlanStep, bubble_fraction, link_bandwidth, needs_links, overlap_slowdown,
                       plan_step, ring_allreduce_s, shard_arrays, topology)
from .plan import ModelShape, Plan
from .as_run import arrays_as_run, profile_as_run, rules
from .host import describe as describe_host
from .roofline import MissingFigure, OpArrays, StepTime, step_time

__all__ = ["Conditions", "Efficiency", "Estimate", "ModelShape", "OpArrays", "Plan", "PlanStep",
           "bubble_fraction", "link_bandwidth", "plan_step", "predict", "predict_fitting", "ring_allreduce_s"]



@dataclass(frozen=True)
class Conditions:
    """Where the job runs: data-centre overhead and grid carbon intensity."""

    pue: float = _energy.DEFAULT_PUE
    grid_kg_per_kwh: float = _energy.DEFAULT_GRID_KG_PER_KWH

    def __post_init__(self) -> None:
        if self.pue < 1.0:
            raise ChipfitError(f"PUE {self.pue:g} is below 1, which no data centre reaches; give --pue 1.0 or more.")
        if self.grid_kg_per_kwh < 0:
            raise ChipfitError(f"Grid intensity {self.grid_kg_per_kwh:g} kg/kWh is negative; give 0 or more.")


def _excluded(hw: Hardware, plan: Plan, reason: str) -> Estimate:
    return Estimate(hardware=hw.id, hw_class=hw.hw_class, name=hw.name, devices=plan.devices, excluded_reason=reason)


def grad_bytes_per_param(precision: str) -> int:
    """Bytes per gradient element that data parallelism reduces (fp32 or 16-bit)."""
    return 4 if precision in ("fp32", "tf32") else 2


def predict(
    profile: Profile,
    hw: Hardware,
    workload: Workload,
    plan: Plan,
    *,
    arrays: OpArrays | None = None,
    efficiency: Efficiency | None = None,
    instance: Instance | None = None,
    conditions: Conditions = Conditions(),
    shape: ModelShape | None = None,
    network: Network | str | None = None,
    framework: str | None = None,
    channels_last: bool = False,
) -> Estimate:
    """Step time, memory fit, job totals and their bounds for `workload` on `plan.devices` x `hw`.

    `profile` is one device's share of a step before tensor/pipeline splitting: the whole model
    traced at the per-device micro-batch (batch / data-parallel degree / micro-batches).
    `shape` (layers, hidden, heads, sequence) is needed for tensor, pipeline and expert
    parallelism and recomputation; `network` names the scale-out network (default: the
    vendor's reference node for the hardware). The step is priced as the device runs it under `framework`
    (as_run: XLA on TPUs and under jax, eager PyTorch's kernels and host stream on CUDA/ROCm GPUs, its
    convolutions in NCHW unless `channels_last`); `arrays`, when given, are the step as it runs.
    """
    dp, m = plan.data_parallel, plan.micro_batches
    if profile.batch * dp * m != workload.batch:
        split = f"{dp} data-parallel devices" + (f" and {m} micro-batches" if m > 1 else "")
        raise ChipfitError(
            f"The profile holds batch {profile.batch} per device, but batch {workload.batch} over "
            f"{split} needs {workload.batch / (dp * m):g}; profile at the per-device micro-batch."
        )
    if shape is not None:
        plan.check(shape)
    if reason := hw.excluded_for(workload.training):
        return _excluded(hw, plan, reason)
    arrays = shard_arrays(arrays or arrays_as_run(profile, hw, framework, workload.precision, channels_last),
                          plan.tensor_parallel, plan.sequence_parallel, plan.context_parallel)
    eff = efficiency or default_efficiency(hw)
    fast_eff, slow_eff = eff.bounds(hw.hw_class)
    try:
        central = step_time(arrays, hw, eff)
    except MissingFigure as missing:
        return _excluded(hw, plan, str(missing))
    fast, slow = step_time(arrays, hw, fast_eff), step_time(arrays, hw, slow_eff)
    topo = topology(hw, network)
    if needs_links(plan, workload.training) and topo is None:
        return _excluded(hw, plan, f"The catalog has no sourced interconnect bandwidth for {hw.name}, so a {plan.devices}-device plan cannot be predicted; compare with --devices 1.")
    if (needs_links(plan, workload.training) and topo.inter_bw_bytes_per_s is None
            and topo.node_size is not None and plan.devices > topo.node_size):
        return _excluded(hw, plan, f"No scale-out network is known for {hw.name}, so a {plan.devices}-device plan "
                                   f"beyond one {topo.node_size}-device node cannot be predicted; use at most "
                                   f"{topo.node_size} devices.")

    def parts(st: StepTime, overlap: bool = True) -> PlanStep:
        return plan_step(st.phase_s, plan, training=workload.training, micro_batch=profile.batch,
                         grad_params=profile.trainable_params / (plan.tensor_parallel * plan.pipeline_parallel),
                         grad_bytes=grad_bytes_per_param(workload.precision),
                         act_bytes=activation_element_bytes(workload.precision), topo=topo, shape=shape,
                         overlap=overlap, overlap_slowdown=overlap_slowdown(hw.hw_class))

    mid = parts(central)
    assumptions = [
        eff.describe(),
        *central.notes,
    ]
    assumptions += rules(profile, hw, framework, workload.precision, eff, channels_last)
    if central.host_s:
        assumptions.append(describe_host(central.host_s, central.device_s, central.total_s, framework))
    if plan.devices > 1:
        assumptions.append(_plan_assumption(plan, topo, hw.hw_class) if needs_links(plan, workload.training)
                           else f"{plan.devices} independent replicas, each serving its own share of the batch; "
                                "no traffic between devices")

    mem = memory_per_device(profile_as_run(profile, hw, framework), workload, plan, hw.hw_class, shape)
    capacity = hw.memory_bytes.value if hw.memory_bytes else None
    fits = None if capacity is None else mem["total"] <= capacity
    if capacity is None:
        assumptions.append(f"memory fit unknown: the catalog gives no memory size for {hw.name} (host-dependent)")

    step = mid.step_s
    # Faster kernels can hide less communication, so the fast plan's step may pass the central one: bound it.
    step_lo, step_hi = min(parts(fast).step_s, step), max(parts(slow, overlap=False).step_s, step)
    scale = mid.compute_s / central.total_s if central.total_s else 0.0
    steps = workload.steps()
    total = steps * step
    est = Estimate(
        hardware=hw.id, hw_class=hw.hw_class, name=hw.name, devices=plan.devices, fits=fits,
        memory_per_device_bytes=mem["total"], memory_breakdown=mem,
        step_time_s=step, compute_s=central.compute_s * scale, memory_s=central.memory_s * scale,
        overhead_s=central.overhead_s * scale, communication_s=mid.communication_s, bubble_s=mid.bubble_s,
        total_time_s=total, device_hours=total * plan.devices / 3600,
        assumptions=assumptions,
    )
    per_s = workload.batch / step
    if workload.seq_len:
        est.throughput_per_s, est.throughput_unit = per_s * workload.seq_len, "tokens/s"
    else:
        est.throughput_per_s = per_s
    if not workload.training:
        est.latency_s = step
    est.low = {"step_time_s": step_lo, "total_time_s": steps * step_lo}
    est.high = {"step_time_s": step_hi, "total_time_s": steps * step_hi}
    add_energy_and_cost(est, hw, instance, conditions, plan.devices)
    return est


def _plan_assumption(plan: Plan, topo, hw_class: str) -> str:
    """One sentence on how the plan's communication was priced."""
    text = (f"{plan.describe()} on {plan.devices} devices ({topo.description}); collectives at "
            f"{topo.intra_bw_bytes_per_s / 1e9:.0f} GB/s per direction inside a node")
    if topo.inter_bw_bytes_per_s:
        text += f", {topo.inter_bw_bytes_per_s / 1e9:.0f} GB/s across nodes"
    slowdown = overlap_slowdown(hw_class)
    text += ("; data-parallel gradient traffic overlapped with backward"
             + (f", which runs {slowdown:.1%} slower beside it" if slowdown else "")
             + " (high bound: not overlapped); tensor, context, expert and pipeline traffic not overlapped")
    if plan.pipeline_parallel > 1:
        bubble = bubble_fraction(plan.pipeline_parallel, plan.micro_batches, plan.virtual_stages)
        text += f"; 1F1B pipeline bubble {bubble:.0%}"
    return text


def add_energy_and_cost(est: Estimate, hw: Hardware, instance: Instance | None,
                         conditions: Conditions, devices: int) -> None:
    hours = {"": est.device_hours, "low": est.low["total_time_s"] * devices / 3600,
             "high": est.high["total_time_s"] * devices / 3600}
    if hw.tdp_watts:
        lo_f, hi_f = _energy.POWER_FRACTION_RANGE
        kwh = _energy.energy_kwh(hours[""], hw.tdp_watts.value, conditions.pue)
        est.energy_kwh = kwh
        est.co2_kg = _energy.co2_kg(kwh, conditions.grid_kg_per_kwh)
        for bound, frac in (("low", lo_f), ("high", hi_f)):
            e = _energy.energy_kwh(hours[bound], hw.tdp_watts.value, conditions.pue, frac)
            getattr(est, bound).update(energy_kwh=e, co2_kg=_energy.co2_kg(e, conditions.grid_kg_per_kwh))
        est.assumptions.append(
            f"power: {hw.tdp_watts.value:g} W TDP per device while busy (low bound {lo_f:.0%}), PUE {conditions.pue:g}, "
            f"grid {conditions.grid_kg_per_kwh:g} kg CO2/kWh; host power not included"
        )
    else:
        est.assumptions.append(f"energy unknown: the catalog gives no TDP for {hw.name}")
    if instance is not None:
        est.cost_usd = rental_cost_usd(hours[""], instance)
        est.cost_source = price_source(instance)
        for bound in ("low", "high"):
            getattr(est, bound)["cost_usd"] = rental_cost_usd(hours[bound], instance)
    else:
        est.assumptions.append(f"cost unknown: no cloud offering of {hw.name} in the catalog")


def predict_fitting(profile: Profile, hw: Hardware, workload: Workload, plan: Plan, **kw) -> Estimate:
    """`predict`, raising the ZeRO stage (for multi-device training) until the job fits."""
    est = predict(profile, hw, workload, plan, **kw)
    if not workload.training or plan.data_parallel == 1 or est.fits is not False:
        return est
    for stage in range(plan.zero_stage + 1, 4):
        est = predict(profile, hw, workload, replace(plan, zero_stage=stage), **kw)
        if est.fits is not False:
            break
    return est
