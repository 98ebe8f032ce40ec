"""Plan search: enumerate parallel plans for a model, job and hardware; keep those that fit; rank.

Pure (no torch, no I/O). Re-tracing the model for every plan would be slow, so the search needs
one profile per micro-batch size: either a factory `profile_for(micro_batch) -> Profile` (called
once per size), or one Profile traced at some micro-batch that is scaled analytically
(scale_profile). Tensor parallelism then divides a rank's matrix work by t
(predict.parallel.shard_arrays).
"""

from __future__ import annotations

import itertools
import math
from difflib import SequenceMatcher
from dataclasses import dataclass, field, replace
from typing import Callable


from ..catalog.schema import Hardware, Instance
from ..errors import ChipfitError
from ..workload.profile import Profile
from ..workload.workload import Workload
from . import energy as _energy
from .efficiency import Efficiency, default_efficiency
from .memory import activation_element_bytes, memory_per_device, stage_share
from .parallel import Network, PlanStep, overlap_slowdown, plan_step, shard_arrays, topology
from .plan import ModelShape, Plan
from .as_run import arrays_as_run
from .roofline import MissingFigure, step_time

OBJECTIVES = ("time", "cost", "energy", "device_hours")
TENSOR_PARALLEL = (1, 2, 4, 8)
# Context-parallel degrees above 1 and interleaving degrees the search tries (powers of two; Llama 3 ran CP 16
# at 128K tokens, Dubey et al. 2024, Table 4).
CONTEXT_PARALLEL = (2, 4, 8, 16, 32)
VIRTUAL_STAGES = (1, 2, 4, 8)
MICRO_BATCH_SIZES = (1, 2, 4, 8)
MAX_MICRO_BATCH = 64
# A global batch that does not split evenly over dp x micro-batch is rounded up to the next
# multiple; plans that would grow it by more than this share are dropped (the optimiser's
# batch is a property of the training recipe, not of the plan).
BATCH_ROUNDING_TOLERANCE = 0.05


@dataclass(frozen=True)
class PlanResult:
    """One feasible plan with its step, totals and memory per device."""

    plan: Plan
    micro_batch: int
    global_batch: int
    step_time_s: float
    total_time_s: float
    device_hours: float
    memory_per_device_bytes: float
    energy_kwh: float | None
    cost_usd: float | None
    parts: PlanStep

    def to_dict(self) -> dict:
        return {
            "plan": self.plan.to_dict(), "describe": self.plan.describe(), "micro_batch": self.micro_batch,
            "global_batch": self.global_batch, "step_time_s": self.step_time_s, "total_time_s": self.total_time_s,
            "device_hours": self.device_hours, "memory_per_device_bytes": self.memory_per_device_bytes,
            "energy_kwh": self.energy_kwh, "cost_usd": self.cost_usd,
            "step_breakdown_s": {"compute": self.parts.compute_s, "bubble": self.parts.bubble_s,
                                 "tensor_comm": self.parts.tensor_comm_s, "expert_comm": self.parts.expert_comm_s,
                                 "pipeline_comm": self.parts.pipeline_comm_s,
                                 "data_comm_exposed": self.parts.data_comm_exposed_s},
        }


@dataclass
class PlanSearch:
    """Ranked feasible plans, and why the others were dropped (reason -> count and one example)."""

    hardware: str
    objective: str
    ranked: list[PlanResult]
    considered: int
    rejected: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    why: str = ""
    links: str = ""  # the scale-up and scale-out links the plans were priced on

    @property
    def best(self) -> PlanResult | None:
        return self.ranked[0] if self.ranked else None

    def to_dict(self) -> dict:
        return {"hardware": self.hardware, "objective": self.objective, "considered": self.considered,
                "links": self.links,
                "ranked": [r.to_dict() for r in self.ranked], "rejected": dict(self.rejected),
                "examples": dict(self.examples), "why": self.why}


def _counterparts(profile: Profile, reference: Profile) -> list:
    """For each operator of `profile`, the reference's at the same place in the step, or None for one the other
    trace lacks: a reshape that is a view at batch 1 copies from batch 2 on (merging a permuted batch axis)."""
    mine = [(op.name, op.module, op.phase) for op in profile.ops]
    theirs = [(op.name, op.module, op.phase) for op in reference.ops]
    if mine == theirs:
        return list(reference.ops)
    pairs: list = [None] * len(mine)
    for block in SequenceMatcher(None, mine, theirs, autojunk=False).get_matching_blocks():
        pairs[block.a:block.a + block.size] = reference.ops[block.b:block.b + block.size]
    return pairs


def scale_profile(profile: Profile, micro_batch: int, reference: Profile | None = None) -> Profile:
    """`profile` as if traced at `micro_batch`; optimizer operators do not change.

    With a `reference` traced at another batch, each operator's FLOPs, bytes and the saved activations
    follow the line through its two traces: exact for the per-sample part and the fixed part (weights read,
    weight gradients written). Scaling up starts from the larger trace; an operator only it has (a copy the
    batch-1 layout elides) and every operator without a reference grow linearly with the micro-batch, which
    overstates weight traffic when scaling up.
    """
    if micro_batch == profile.batch:
        return profile
    if reference is not None and reference.batch > profile.batch and micro_batch > profile.batch:
        profile, reference = reference, profile
    usable = reference is not None and reference.batch != profile.batch
    pairs = _counterparts(profile, reference) if usable else [None] * len(profile.ops)

    def at(x0: float, x1: float | None) -> float:
        """The value at micro_batch of a quantity that is x0 at profile.batch (x1 at the reference's)."""
        if x1 is None:
            return x0 * micro_batch / profile.batch
        return max(0.0, x0 + (x1 - x0) * (micro_batch - profile.batch) / (reference.batch - profile.batch))

    ops = []
    for op, ref in zip(profile.ops, pairs):
        if op.phase == "optimizer":
            ops.append(op)
            continue
        scaled = {k: at(getattr(op, k), None if ref is None else getattr(ref, k))
                  for k in ("flops", "bytes_read", "bytes_written")}
        ops.append(replace(op, flops=scaled["flops"], bytes_read=round(scaled["bytes_read"]),
                           bytes_written=round(scaled["bytes_written"])))
    ref_act = reference.activation_bytes if usable else None
    ref_peak = reference.peak_activation_bytes if usable else None
    how = f"from traces at micro-batch {profile.batch} and {reference.batch}" if usable else \
        f"linearly from micro-batch {profile.batch}"
    return replace(profile, batch=micro_batch, ops=ops, activation_bytes=round(at(profile.activation_bytes, ref_act)),
                   peak_activation_bytes=round(at(profile.peak_activation_bytes, ref_peak)),
                   notes=[*profile.notes, f"scaled to micro-batch {micro_batch} {how}"])


def _device_counts(max_devices: int, devices: int | None) -> list[int]:
    if devices is not None:
        return [devices]
    counts = {2**i for i in range(int(math.log2(max_devices)) + 1)} | {max_devices}
    return sorted(counts)


def _micro_batches(batch: int, data_parallel: int) -> tuple[int, ...]:
    """Micro-batch sizes to try: MICRO_BATCH_SIZES, and every divisor of the per-device batch up to
    MAX_MICRO_BATCH when the global batch splits evenly (48 over 8 devices: 3 and 6 as well)."""
    per_device, rest = divmod(batch, data_parallel)
    exact = () if rest or not per_device else tuple(d for d in _divisors(per_device) if d <= MAX_MICRO_BATCH)
    return tuple(sorted(set(MICRO_BATCH_SIZES) | set(exact)))


def _expert_degrees(shape: ModelShape, dp: int) -> list[int]:
    """Expert-parallel degrees to try: 1, and for an MoE the powers of two that divide both the expert count and
    the data-parallel degree (DeepSpeed-MoE and Megatron split experts over data-parallel ranks)."""
    degrees = [1]
    while shape.experts and shape.experts % (2 * degrees[-1]) == 0 and dp % (2 * degrees[-1]) == 0:
        degrees.append(2 * degrees[-1])
    return degrees


def _pipeline_degrees(layers: int) -> list[int]:
    """Pipeline stages to try: the divisors of the layer count and the powers of two up to it (the busiest
    stage then holds ceil(L / p) layers, memory.stage_layers)."""
    powers = {2**i for i in range(int(math.log2(layers)) + 1)}
    return sorted(set(_divisors(layers)) | powers)


def _context_degrees(seq_len: int) -> list[int]:
    """Context-parallel degrees above 1 to try: those of CONTEXT_PARALLEL that cut the sequence into 2c equal
    chunks."""
    return [c for c in CONTEXT_PARALLEL if seq_len % (2 * c) == 0]


def _virtual_stages(layers: int, pipeline_parallel: int) -> list[int]:
    """Interleaving degrees to try: 1, and with a pipeline those of VIRTUAL_STAGES that leave a layer per chunk."""
    if pipeline_parallel == 1:
        return [1]
    return [v for v in VIRTUAL_STAGES if pipeline_parallel * v <= layers]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def search_plans(
    profile: Profile | Callable[[int], Profile],
    shape: ModelShape,
    workload: Workload,
    hw: Hardware,
    *,
    max_devices: int | None = None,
    devices: int | None = None,
    objective: str = "time",
    deadline_s: float | None = None,
    budget_usd: float | None = None,
    instance: Instance | None = None,
    efficiency: Efficiency | None = None,
    network: Network | str | None = None,
    pue: float = _energy.DEFAULT_PUE,
    micro_batch_sizes: tuple[int, ...] | None = None,
    zero_stages: tuple[int, ...] = (0, 1, 2, 3),
    recompute: tuple[bool, ...] = (False, True),
    top: int = 5,
) -> PlanSearch:
    """Feasible plans for `workload` (training; `batch` = global batch) on up to `max_devices` x `hw`.

    Enumerates device counts (powers of two up to max_devices, or exactly `devices`), tensor
    parallelism in {1, 2, 4, 8} within a node, pipeline stages dividing the layers, ZeRO stages,
    micro-batch sizes (`micro_batch_sizes`, default: _micro_batches), expert parallelism for MoE models
    (_expert_degrees) and recomputation; drops plans
    that break divisibility, do not fit, miss the deadline or the budget; ranks the rest by `objective`.
    """
    if objective not in OBJECTIVES:
        raise ChipfitError(f"Objective {objective!r} is not known; rank by one of {', '.join(OBJECTIVES)}.")
    if devices is None and max_devices is None:
        raise ChipfitError("Plan search needs a device count; give --max-devices or --devices.")
    for name, value in (("--devices", devices), ("--max-devices", max_devices)):
        if value is not None and value < 1:
            raise ChipfitError(f"{name} {value} is not a device count; give 1 or more.")
    if objective == "cost" and instance is None:
        raise ChipfitError(f"Ranking by cost needs a price for {hw.name}, and the catalog has no offering of it; "
                           "rank by time, energy or device_hours.")
    if objective == "energy" and hw.tdp_watts is None:
        raise ChipfitError(f"Ranking by energy needs the TDP of {hw.name}, which the catalog lacks; rank by time.")
    if not workload.training:
        raise ChipfitError("Plan search covers training jobs; give --train.")
    topo = topology(hw, network)
    if topo is None and (devices or max_devices) > 1:
        raise ChipfitError(f"The catalog has no sourced interconnect bandwidth for {hw.name}, so plans over more "
                           "than one device cannot be predicted; search with --max-devices 1.")
    eff = efficiency or default_efficiency(hw)
    capacity = hw.memory_bytes.value if hw.memory_bytes else None
    seq = workload.seq_len or shape.seq_len
    # Tensor parallelism stays within the scale-up domain: {1, 2, 4, 8} in a node; one ICI domain
    # (a TPU slice, no node) takes any divisor of the heads up to 64.
    if topo is not None and topo.node_size is None:
        node, tensor_degrees = math.inf, tuple(d for d in shape.divisors_of_heads() if d <= 64)
    else:
        node, tensor_degrees = topo.node_size if topo is not None else max(TENSOR_PARALLEL), TENSOR_PARALLEL

    cache: dict[tuple[int, int, bool, int], tuple[Profile, dict[str, float]] | None] = {}

    def profiled(b: int, t: int, sp: bool, c: int):
        key = (b, t, sp, c)
        if key not in cache:
            prof = profile(b) if callable(profile) else scale_profile(profile, b)
            arrays = shard_arrays(arrays_as_run(prof, hw, None, workload.precision), t, sp, c)
            try:
                cache[key] = (prof, step_time(arrays, hw, eff).phase_s)
            except MissingFigure:
                cache[key] = None
        return cache[key]

    rejected: dict[str, int] = {}
    examples: dict[str, str] = {}

    def reject(reason: str, example: str) -> None:
        rejected[reason] = rejected.get(reason, 0) + 1
        examples.setdefault(reason, example)

    results: list[PlanResult] = []
    considered = 0
    shape_at_seq = replace(shape, seq_len=seq)

    def enumerate_plans(contexts: list[int]) -> None:
        """Append the feasible plans with these context-parallel degrees to `results`."""
        nonlocal considered
        for n in _device_counts(max_devices or devices, devices):
            if (topo is not None and topo.node_size is not None and topo.inter_bw_bytes_per_s is None
                    and n > topo.node_size):
                reject("spans nodes with no known network between them",
                       f"{n} devices > {topo.node_size} per node and no scale-out network for {hw.name}")
                continue
            for t in tensor_degrees:
                if n % t:
                    continue
                if t > node:
                    reject("tensor parallelism beyond one node", f"tp {t} > {node} devices per node")
                    continue
                for c, p in itertools.product(contexts, _pipeline_degrees(shape.layers)):
                    if n % (t * c * p):
                        continue
                    dp = n // (t * c * p)
                    for b in micro_batch_sizes or _micro_batches(workload.batch, dp):
                        m = math.ceil(workload.batch / (dp * b))
                        global_batch = dp * b * m
                        job = replace(workload, batch=global_batch, seq_len=seq)
                        for z, ep, rc, v in itertools.product(zero_stages, _expert_degrees(shape, dp), recompute,
                                                              _virtual_stages(shape.layers, p)):
                            if z and dp * c == 1:
                                continue
                            considered += 1
                            plan = Plan(devices=n, tensor_parallel=t, pipeline_parallel=p, zero_stage=z,
                                        micro_batches=m, activation_checkpointing=rc, sequence_parallel=t > 1,
                                        expert_parallel=ep, context_parallel=c, virtual_stages=v)
                            try:
                                plan.check(shape_at_seq)
                            except ChipfitError as err:
                                reason = str(err).split(";")[0]
                                reject("tensor parallelism does not divide the heads" if "heads" in reason
                                       else reason, str(err))
                                continue
                            if global_batch > workload.batch * (1 + BATCH_ROUNDING_TOLERANCE):
                                reject("global batch does not split over data-parallel x micro-batch",
                                       f"{plan.describe()}: batch {workload.batch} would grow to {global_batch}")
                                continue
                            got = profiled(b, t, t > 1, c)
                            if got is None:
                                raise ChipfitError(f"The catalog has no sourced throughput or bandwidth for {hw.name}; "
                                                   "its plans cannot be predicted.")
                            prof, phase_s = got
                            mem = memory_per_device(prof, job, plan, hw.hw_class, shape)["total"]
                            if capacity is not None and mem > capacity:
                                reject("does not fit in memory",
                                       f"{plan.describe()}, micro-batch {b}: needs {mem / 2**30:.1f} GiB of "
                                       f"{capacity / 2**30:.0f} GiB")
                                continue
                            experts = shape.expert_params  # split over ep x pp ranks, the rest over tp x pp
                            owned = (prof.params - experts) / t + experts / ep
                            share = owned * stage_share(plan, shape) / prof.params
                            grad_bytes = 4 if workload.precision in ("fp32", "tf32") else 2
                            gathered = (share * (prof.frozen_param_bytes + prof.trainable_params * grad_bytes)
                                        if prof.frozen_param_bytes else None)
                            parts = plan_step(phase_s, plan, training=True, micro_batch=b,
                                              grad_params=share * prof.trainable_params, grad_bytes=grad_bytes,
                                              act_bytes=activation_element_bytes(workload.precision),
                                              topo=topo, shape=shape,
                                              overlap_slowdown=overlap_slowdown(hw.hw_class), gather_bytes=gathered)
                            total = job.steps() * parts.step_s
                            hours = total * n / 3600
                            energy = (_energy.energy_kwh(hours, hw.tdp_watts.value, pue) if hw.tdp_watts else None)
                            cost = hours * instance.price_per_device_hour if instance is not None else None
                            if deadline_s is not None and total > deadline_s:
                                reject("misses the deadline", f"{plan.describe()}: {total / 86400:.1f} days")
                                continue
                            if budget_usd is not None and cost is not None and cost > budget_usd:
                                reject("over the budget", f"{plan.describe()}: ${cost:,.0f}")
                                continue
                            results.append(PlanResult(plan=plan, micro_batch=b, global_batch=global_batch,
                                                      step_time_s=parts.step_s, total_time_s=total,
                                                      device_hours=hours, memory_per_device_bytes=mem,
                                                      energy_kwh=energy, cost_usd=cost, parts=parts))

    key = {"time": lambda r: (r.total_time_s, r.device_hours),
           "cost": lambda r: (r.cost_usd, r.total_time_s),
           "energy": lambda r: (r.energy_kwh, r.total_time_s),
           "device_hours": lambda r: (r.device_hours, r.total_time_s)}[objective]

    def order(r: PlanResult) -> tuple:
        return (*key(r), r.plan.devices, r.plan.describe())

    enumerate_plans([1])
    results.sort(key=order)
    if not results or results[0].plan.activation_checkpointing:
        # Context parallelism trades communication for activation memory, as recomputation trades compute:
        # it is searched where activations bind (the best plan without it recomputes, or none fits).
        enumerate_plans(_context_degrees(seq))
        results.sort(key=order)
    search = PlanSearch(hardware=hw.id, objective=objective, ranked=results[:top], considered=considered,
                        rejected=rejected, examples=examples, links=topo.description if topo else "")
    search.why = _why(search, results, capacity)
    return search


def _figure(r: PlanResult, objective: str) -> str:
    if objective == "time":
        return f"{r.total_time_s / 86400:.1f} days"
    if objective == "cost":
        return f"${r.cost_usd:,.0f}"
    if objective == "energy":
        return f"{r.energy_kwh / 1000:,.1f} MWh"
    return f"{r.device_hours:,.0f} device-hours"


def _why(search: PlanSearch, results: list[PlanResult], capacity: float | None) -> str:
    """One sentence on why the best plan wins (or why none is left)."""
    if not results:
        worst = max(search.rejected, key=search.rejected.get) if search.rejected else "no plan enumerated"
        return f"No plan of the {search.considered} considered is feasible; most were dropped because they {worst}" \
               f" (e.g. {search.examples.get(worst, '')})." if search.rejected else "No plan was enumerated."
    best = results[0]
    p = best.parts
    step = p.step_s or 1.0
    share = (f"its step is {p.compute_s / step:.0%} compute, {p.bubble_s / step:.0%} pipeline bubble "
             f"and {p.communication_s / step:.0%} exposed communication")
    fit = f", and it fits in {best.memory_per_device_bytes / 2**30:.0f} of {capacity / 2**30:.0f} GiB" if capacity else ""
    if len(results) == 1:
        return f"{best.plan.describe()} (micro-batch {best.micro_batch}) is the only feasible plan: {share}{fit}."
    runner = results[1]
    return (f"{best.plan.describe()} on {best.plan.devices} devices (micro-batch {best.micro_batch}) wins on "
            f"{search.objective} with {_figure(best, search.objective)} against {_figure(runner, search.objective)} "
            f"for the runner-up ({runner.plan.describe()} on {runner.plan.devices}): {share}{fit}.")
