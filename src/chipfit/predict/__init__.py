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
from .memory import memory_per_device
from .parallel import link_bandwidth, ring_allreduce_s
from .plan import Plan
from .roofline import OpArrays, StepTime, step_time

__all__ = ["Conditions", "Efficiency", "Estimate", "OpArrays", "Plan", "predict", "predict_fitting"]

# Gradient traffic per step relative to one all-reduce of the gradients (ZeRO paper, Sec. 7:
# stages 1 and 2 move the same 2x volume as DDP; stage 3 adds an all-gather of weights, 3x).
_ZERO_TRAFFIC = {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.5}
# Classes whose entries run no standard DNN step at all; the catalog says why for each.
NO_DNN_CLASSES = ("neuromorphic", "quantum")


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
) -> Estimate:
    """Step time, memory fit, job totals and their bounds for `workload` on `plan.devices` x `hw`.

    `profile` is one device's share of a step (traced at batch / data-parallel degree).
    """
    if profile.batch * plan.data_parallel != workload.batch:
        raise ChipfitError(
            f"The profile holds batch {profile.batch} per device, but batch {workload.batch} over "
            f"{plan.data_parallel} data-parallel devices needs {workload.batch / plan.data_parallel:g}; "
            "profile at the per-device batch."
        )
    if hw.hw_class in NO_DNN_CLASSES or (workload.training and not hw.trainable):
        return _excluded(hw, plan, hw.excluded_reason or f"{hw.name} is not built to run a training step.")
    arrays = arrays or OpArrays.from_profile(profile, workload.precision)
    eff = efficiency or default_efficiency(hw.hw_class)
    fast_eff, slow_eff = eff.bounds(hw.hw_class)
    central = step_time(arrays, hw, eff)
    if central is None:
        missing = "memory bandwidth" if hw.mem_bw_bytes_per_s is None else "throughput"
        return _excluded(hw, plan, f"The catalog has no sourced {missing} figure for {hw.name}, so its step time cannot be predicted.")
    fast, slow = step_time(arrays, hw, fast_eff), step_time(arrays, hw, slow_eff)

    assumptions = [
        f"efficiency: matmul {eff.matmul:.0%} of peak, memory {eff.memory:.0%} of bandwidth, "
        f"{eff.kernel_overhead_s * 1e6:.1f} us per kernel ({eff.source})",
        *central.notes,
    ]
    comm_s, comm_high_s = 0.0, 0.0
    if workload.training and plan.data_parallel > 1:
        bw = link_bandwidth(hw)
        if bw is None:
            return _excluded(hw, plan, f"The catalog has no sourced interconnect bandwidth for {hw.name}, so a {plan.devices}-device plan cannot be predicted; compare with --devices 1.")
        grad_bytes = profile.trainable_params * (4 if workload.precision in ("fp32", "tf32") else 2)
        comm = ring_allreduce_s(grad_bytes * _ZERO_TRAFFIC[plan.zero_stage], plan.data_parallel, bw)
        comm_s = max(0.0, comm - central.phase_s["backward"])
        comm_high_s = comm
        assumptions.append(
            f"data parallel over {plan.data_parallel} devices with ZeRO stage {plan.zero_stage}: ring all-reduce "
            f"of gradients at {bw / 1e9:.0f} GB/s per direction, overlapped with backward (high bound: not overlapped); "
            "all devices on one interconnect domain"
        )

    mem = memory_per_device(profile, workload, plan, hw.hw_class)
    capacity = hw.memory_bytes.value if hw.memory_bytes else None
    fits = None if capacity is None else mem["total"] <= capacity
    if capacity is None:
        assumptions.append(f"memory fit unknown: the catalog gives no memory size for {hw.name} (host-dependent)")

    step = central.total_s + comm_s
    step_lo, step_hi = fast.total_s, slow.total_s + comm_high_s
    steps = workload.steps()
    total = steps * step
    est = Estimate(
        hardware=hw.id, hw_class=hw.hw_class, name=hw.name, devices=plan.devices, fits=fits,
        memory_per_device_bytes=mem["total"], memory_breakdown=mem,
        step_time_s=step, compute_s=central.compute_s, memory_s=central.memory_s,
        overhead_s=central.overhead_s, communication_s=comm_s,
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
    _add_energy_and_cost(est, hw, instance, conditions, plan.devices)
    return est


def _add_energy_and_cost(est: Estimate, hw: Hardware, instance: Instance | None,
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
