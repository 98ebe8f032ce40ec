"""advise: the decision. Ranked estimates filtered by the user's constraints, the time-cost
Pareto front, the winner with why it wins, what to change when the best does not fit, and
rent versus buy. The API behind `chipfit advise`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from .catalog import Catalog, Hardware, load_catalog
from .catalog.schema import FRAMEWORKS
from .comparison import Comparison
from .errors import ChipfitError, closest
from .predict import Estimate
from .predict.memory import activation_element_bytes, memory_per_device
from .predict.plans import scale_profile
from .predictors import plan_shape
from .rentbuy import OWNED_PUE, RentBuy, check_terms, rent_vs_buy
from .units import kwh, nbytes, seconds, usd

WHERE = ("any", "cloud", "local")
OBJECTIVES = ("time", "cost", "energy")
_BEST_WORD = {"time": "fastest", "cost": "cheapest", "energy": "most frugal"}
_METRIC = {"time": "total_time_s", "cost": "cost_usd", "energy": "energy_kwh"}
# Bytes per element of the dtype a profile was traced in (activations scale with it).
_DTYPE_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}
# Largest device count the "more devices with ZeRO-3" change tries.
_MAX_DEVICES = 1024


def label(e: Estimate) -> str:
    """'nvidia-h100-sxm5-80gb x8', or the bare id for one device."""
    return e.hardware + (f" x{e.devices}" if e.devices > 1 else "")


@dataclass
class Dropped:
    """An estimate the constraints ruled out, with the reason in one sentence."""

    hardware: str
    devices: int
    reason: str

    def to_dict(self) -> dict:
        return {"hardware": self.hardware, "devices": self.devices, "reason": self.reason}


@dataclass
class FitChange:
    """One change to the job and the memory per device it leads to on `hardware`."""

    change: str
    hardware: str
    memory_per_device_bytes: float
    capacity_bytes: float
    memory_breakdown: dict[str, float]

    @property
    def fits(self) -> bool:
        return self.memory_per_device_bytes <= self.capacity_bytes

    def to_dict(self) -> dict:
        return {"change": self.change, "hardware": self.hardware, "fits": self.fits,
                "memory_per_device_bytes": self.memory_per_device_bytes, "capacity_bytes": self.capacity_bytes,
                "memory_breakdown": dict(self.memory_breakdown)}


@dataclass
class Advice:
    """What to run on: candidates meeting every constraint (best first), the rest with reasons."""

    comparisons: list[Comparison]
    objective: str
    constraints: dict
    candidates: list[Estimate]
    dropped: list[Dropped]
    pareto: list[Estimate]
    winner: Estimate | None
    why: str
    changes: list[FitChange] = field(default_factory=list)
    rent_buy: list[RentBuy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def comparison(self) -> Comparison:
        """The first (fewest-device) comparison: the workload and profile every entry shares."""
        return self.comparisons[0]

    def estimates(self) -> list[Estimate]:
        """Every estimate of every device count, once each."""
        return _unique(e for c in self.comparisons for e in c.estimates)

    def to_dict(self) -> dict:
        return {
            "workload": self.comparison.to_dict()["workload"],
            "device_counts": [c.plan.devices for c in self.comparisons],
            "objective": self.objective,
            "constraints": dict(self.constraints),
            "winner": self.winner.to_dict() if self.winner else None,
            "why": self.why,
            "candidates": [e.to_dict() for e in self.candidates],
            "pareto": [{"hardware": e.hardware, "devices": e.devices, "total_time_s": e.total_time_s,
                        "cost_usd": e.cost_usd} for e in self.pareto],
            "dropped": [d.to_dict() for d in self.dropped],
            "changes": [c.to_dict() for c in self.changes],
            "rent_buy": [r.to_dict() for r in self.rent_buy],
            "notes": list(self.notes),
        }


def _unique(estimates) -> list[Estimate]:
    seen, out = set(), []
    for e in estimates:
        if (e.hardware, e.devices) not in seen:
            seen.add((e.hardware, e.devices))
            out.append(e)
    return out


def pareto_front(estimates: Sequence[Estimate]) -> list[Estimate]:
    """Entries with a time and a cost that no other entry beats on both, fastest first."""
    priced = [e for e in estimates if e.total_time_s is not None and e.cost_usd is not None]
    front = [e for e in priced
             if not any(o.total_time_s <= e.total_time_s and o.cost_usd <= e.cost_usd
                        and (o.total_time_s < e.total_time_s or o.cost_usd < e.cost_usd) for o in priced)]
    return sorted(front, key=lambda e: (e.total_time_s, e.cost_usd))


def _join(clauses: list[str]) -> str:
    return clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + ", and " + clauses[-1]


def drop_reason(e: Estimate, hw: Hardware | None, *, deadline_s=None, budget_usd=None, energy_kwh_max=None,
                co2_kg_max=None, framework=None, where="any", local_ids=(), single_device=False) -> str:
    """Why `e` does not meet the constraints, in one sentence, or '' when it meets them all."""
    name = label(e)
    if e.excluded_reason:
        return e.excluded_reason
    if framework and hw is not None and framework not in hw.frameworks:
        return f"{hw.name} does not run {framework} (runs: {', '.join(hw.frameworks) or 'no listed framework'})."
    if where == "cloud" and e.cost_usd is None:
        return f"{name} has no cloud price in the catalog, and only cloud offerings were asked for."
    if where == "local" and e.hardware not in local_ids:
        return f"{name} is not hardware here, and only local hardware was asked for."
    if single_device and e.devices > 1:
        return f"{name} spreads the job over {e.devices} devices, and it must run on one."
    if e.fits is False:
        cap = f" but has {nbytes(hw.memory_bytes.value)}" if hw is not None and hw.memory_bytes else ""
        return f"{name} needs {nbytes(e.memory_per_device_bytes)} per device{cap}, so the job does not fit."
    clauses = []
    if deadline_s is not None and e.total_time_s is not None and e.total_time_s > deadline_s:
        clauses.append(f"takes {seconds(e.total_time_s)}, past the {seconds(deadline_s)} deadline")
    if budget_usd is not None:
        if e.cost_usd is None:
            clauses.append(f"has no sourced price to hold against the {usd(budget_usd)} budget")
        elif e.cost_usd > budget_usd:
            clauses.append(f"costs {usd(e.cost_usd)}, over the {usd(budget_usd)} budget")
    if energy_kwh_max is not None:
        if e.energy_kwh is None:
            clauses.append(f"has no sourced power figure to hold against the {kwh(energy_kwh_max)} limit")
        elif e.energy_kwh > energy_kwh_max:
            clauses.append(f"uses {kwh(e.energy_kwh)}, over the {kwh(energy_kwh_max)} limit")
    if co2_kg_max is not None:
        if e.co2_kg is None:
            clauses.append(f"has no sourced power figure to hold against the {co2_kg_max:.3g} kg CO2 limit")
        elif e.co2_kg > co2_kg_max:
            clauses.append(f"emits {e.co2_kg:.3g} kg CO2, over the {co2_kg_max:.3g} kg limit")
    return f"{name} {_join(clauses)}." if clauses else ""


def _metric(e: Estimate, objective: str) -> float | None:
    return getattr(e, _METRIC[objective])


def _by_objective(estimates, objective: str) -> list[Estimate]:
    return sorted(estimates, key=lambda e: (_metric(e, objective) is None, _metric(e, objective) or 0.0,
                                            e.total_time_s or 0.0, e.hardware))


def _figures(e: Estimate) -> str:
    return seconds(e.total_time_s) + (f" for {usd(e.cost_usd)}" if e.cost_usd is not None else "")


def why_wins(winner: Estimate, candidates: Sequence[Estimate], objective: str) -> str:
    """One sentence: the winner's figures against the best option on the other axis."""
    head = {
        "time": f"{label(winner)} finishes in {_figures(winner)}",
        "cost": f"{label(winner)} costs {usd(winner.cost_usd)} and finishes in {seconds(winner.total_time_s)}",
        "energy": f"{label(winner)} uses {kwh(winner.energy_kwh)} and finishes in {_figures(winner)}",
    }[objective]
    others = [e for e in candidates if e is not winner]
    if not others:
        return f"{head}, the only option that meets the constraints."
    # Time is weighed against the cheapest option; cost and energy against the fastest.
    rival_axis = "cost" if objective == "time" else "time"
    with_rival = [e for e in candidates if _metric(e, rival_axis) is not None]
    rival = _by_objective(with_rival, rival_axis)[0] if with_rival else None
    best_word = _BEST_WORD[objective]
    rival_word = {"cost": "cheapest", "time": "fastest"}[rival_axis]
    if rival is None or rival is winner:
        also = f" and also the {rival_word}" if rival is winner else ""
        return f"{head}, the {best_word} option that meets the constraints{also}."
    ratio = _metric(rival, objective) / _metric(winner, objective) if _metric(winner, objective) else None
    how = {"time": "faster", "cost": "cheaper", "energy": "less energy"}[objective]
    gain = f"{ratio:.2g}x {how} than" if ratio is not None else "ahead of"
    return (f"{head}, {gain} the {rival_word} option that meets the constraints "
            f"({label(rival)}, {_figures(rival)}).")


def _shape_for(workload):
    """The transformer sizes activation checkpointing needs, for the library's transformers; None otherwise."""
    from .workload import library

    try:
        spec = library.transformer_spec(workload.model)
    except ChipfitError:
        return None
    return plan_shape(spec, workload.seq_len or 1)


def fit_changes(cmp: Comparison, hw: Hardware, capacity_bytes: float) -> tuple[list[FitChange], list[str]]:
    """Changes that shrink the memory per device of `cmp`'s job on `hw`, each with the memory it leaves.

    Lower precision, a smaller per-device batch (gradient accumulation keeps the global batch),
    activation checkpointing (transformers from the zoo), more devices with ZeRO stage 3, and,
    when no single change is enough, all of them together. Returns the changes and notes on
    changes that could not be worked out.
    """
    prof, work, plan = cmp.profile, cmp.workload, cmp.plan

    def mem(profile, workload, plan_, shape=None) -> dict:
        return memory_per_device(profile, workload, plan_, hw.hw_class, shape)

    def at_precision(precision: str):
        traced = _DTYPE_BYTES.get(prof.dtype, 4)
        k = (activation_element_bytes(precision) if work.training else _DTYPE_BYTES[precision]) / traced
        scaled = replace(prof, activation_bytes=round(prof.activation_bytes * k),
                         peak_activation_bytes=round(prof.peak_activation_bytes * k))
        return scaled, replace(work, precision=precision)

    def largest_batch(profile, workload, plan_, shape, start: int):
        """The largest per-device batch from `start` down (halving) that fits, else batch 1."""
        b = start
        while True:
            parts = mem(scale_profile(profile, b), workload, replace(plan_, micro_batches=max(1, profile.batch // b)), shape)
            if parts["total"] <= capacity_bytes or b == 1:
                return b, parts
            b //= 2

    def zero3(profile, workload, plan_, shape):
        """The fewest devices (doubling) with ZeRO stage 3 that fit, and the batch that fits there."""
        n = plan_.devices
        while True:
            sharded = replace(plan_, devices=n, zero_stage=3, tensor_parallel=1, pipeline_parallel=1)
            b, parts = largest_batch(profile, workload, sharded, shape, profile.batch)
            if parts["total"] <= capacity_bytes or n >= _MAX_DEVICES:
                return n, b, parts
            n *= 2

    out: list[FitChange] = []
    notes: list[str] = []

    def add(text: str, parts: dict) -> None:
        out.append(FitChange(text, hw.id, parts["total"], capacity_bytes, parts))

    lower = [p for p in (("bf16",) if work.training else ("bf16", "int8"))
             if _DTYPE_BYTES[p] < _DTYPE_BYTES[work.precision]]
    for p in lower:
        add(f"{'bf16 mixed precision' if work.training else p + ' weights and activations'} (--precision {p})",
            mem(*at_precision(p), plan))
    if prof.batch > 1:
        b, parts = largest_batch(prof, work, plan, None, prof.batch // 2)
        keep = f", {prof.batch // b} accumulation steps keeping the global batch" if work.training else ""
        add(f"per-device batch {b} (from {prof.batch}){keep}", parts)
    if not work.training:
        return out, notes
    shape = _shape_for(work)
    if shape is not None:
        add("activation checkpointing", mem(prof, work, replace(plan, activation_checkpointing=True), shape))
    else:
        notes.append(f"activation checkpointing needs the layer sizes of a transformer from the zoo; "
                     f"not worked out for {work.model}")
    n = max(2, plan.devices)
    while True:
        parts = mem(prof, work, replace(plan, devices=n, zero_stage=3, tensor_parallel=1, pipeline_parallel=1))
        if parts["total"] <= capacity_bytes or n >= _MAX_DEVICES:
            break
        n *= 2
    add(f"{n} devices with ZeRO stage 3 (FSDP), same per-device batch" if parts["total"] <= capacity_bytes else
        f"ZeRO stage 3 (FSDP) even over {n} devices (activations do not shard)", parts)
    if not any(c.fits for c in out):
        both_prof, both_work = at_precision(lower[0]) if lower else (prof, work)
        both_plan = replace(plan, activation_checkpointing=shape is not None)
        n, b, parts = zero3(both_prof, both_work, both_plan, shape)
        done = ([lower[0]] if lower else []) + (["activation checkpointing"] if shape is not None else [])
        add(" + ".join([*done, f"per-device batch {b}", f"{n} devices with ZeRO stage 3"]), parts)
    return out, notes


def _check_constraints(deadline_s, budget_usd, energy_kwh_max, co2_kg_max, framework, where, objective) -> None:
    for value, what, flag in ((deadline_s, "Deadline", "--deadline"), (budget_usd, "Budget", "--budget"),
                              (energy_kwh_max, "Energy limit", "--energy"), (co2_kg_max, "CO2 limit", "--co2")):
        if value is not None and value <= 0:
            raise ChipfitError(f"{what} {value:g} is not positive; give {flag} above 0.")
    if framework is not None and framework not in FRAMEWORKS:
        raise ChipfitError(f"Framework {framework!r} is not known.{closest(framework, FRAMEWORKS)} Known: {', '.join(FRAMEWORKS)}.")
    if where not in WHERE:
        raise ChipfitError(f"Where {where!r} is not known.{closest(where, WHERE)} Use one of: {', '.join(WHERE)}.")
    if objective not in OBJECTIVES:
        raise ChipfitError(f"Objective {objective!r} is not known.{closest(objective, OBJECTIVES)} "
                           f"Use one of: {', '.join(OBJECTIVES)}.")


def _sorted(target) -> list[Comparison]:
    if isinstance(target, Comparison):
        target = [target]
    if not (isinstance(target, (list, tuple)) and target and all(isinstance(c, Comparison) for c in target)):
        raise ChipfitError("advise takes a Comparison or a list of them; for a model, use chipfit.advise(MODEL, ...).")
    return sorted(target, key=lambda c: c.plan.devices)


def advise(
    target,
    *,
    deadline_s: float | None = None,
    budget_usd: float | None = None,
    energy_kwh_max: float | None = None,
    co2_kg_max: float | None = None,
    framework: str | None = None,
    where: str = "any",
    single_device: bool = False,
    objective: str = "time",
    local_hardware: Sequence[str] = (),
    buy_years: float | None = None,
    electricity_usd_per_kwh: float | None = None,
    utilisation: float = 1.0,
    owned_pue: float = OWNED_PUE,
    catalog: Catalog | None = None,
    notes: Sequence[str] = (),
) -> Advice:
    """Advise on `target`: a Comparison, or a list of them (one per device count).

    `local_hardware` names catalog ids of devices that are here (the local CPU always counts).
    `buy_years` with `electricity_usd_per_kwh` adds rent versus buy for the winner and the Pareto
    front. `catalog` (default: the built-in one) holds the entries the comparisons priced.
    """
    _check_constraints(deadline_s, budget_usd, energy_kwh_max, co2_kg_max, framework, where, objective)
    if buy_years is not None:
        if electricity_usd_per_kwh is None:
            raise ChipfitError("Rent versus buy needs the electricity price; give --electricity in USD per kWh.")
        check_terms(buy_years, electricity_usd_per_kwh, utilisation, owned_pue)
    comparisons, notes = _sorted(target), list(notes)
    catalog = catalog if catalog is not None else load_catalog()
    local_ids = {*local_hardware, *(c.local_cpu for c in comparisons if c.local_cpu)}
    constraints = {"deadline_s": deadline_s, "budget_usd": budget_usd, "energy_kwh_max": energy_kwh_max,
                   "co2_kg_max": co2_kg_max, "framework": framework, "where": where, "single_device": single_device}

    candidates, dropped, failed = [], [], []
    for e in _unique(e for c in comparisons for e in c.estimates):
        hw = catalog.hardware.get(e.hardware)
        reason = drop_reason(e, hw, local_ids=local_ids, **constraints)
        if reason:
            dropped.append(Dropped(e.hardware, e.devices, reason))
            failed.append(e)
        else:
            candidates.append(e)
    candidates = _by_objective(candidates, objective)
    winner = candidates[0] if candidates else None
    if winner is not None:
        why = why_wins(winner, candidates, objective)
    else:
        runs = [e for e in _by_objective(failed, objective) if not e.excluded_reason]
        why = "No option meets the constraints" + (
            f"; the {_BEST_WORD[objective]} that runs at all: {dropped[failed.index(runs[0])].reason}" if runs else ".")

    # What to change: for the best entry (by the objective) that only memory rules out.
    changes: list[FitChange] = []
    too_big = [e for e in _by_objective(failed, objective) if e.fits is False and not e.excluded_reason]
    if winner is None:
        # Nothing meets the constraints: work on the entry closest to fitting.
        too_big.sort(key=lambda e: e.memory_per_device_bytes / _capacity(catalog, e))
    if too_big and (winner is None or _better(too_big[0], winner, objective)):
        target_est = too_big[0]
        hw = catalog.hardware.get(target_est.hardware)
        cmp = next(c for c in comparisons if c.plan.devices == target_est.devices)
        if hw is not None and hw.memory_bytes:
            changes, more = fit_changes(cmp, hw, hw.memory_bytes.value)
            notes += more

    rent_buy = []
    if buy_years is not None:
        for e in _unique([*([winner] if winner else []), *pareto_front(candidates)]):
            hw = catalog.hardware.get(e.hardware)
            if hw is not None:
                rent_buy.append(rent_vs_buy(hw, catalog, years=buy_years, electricity_usd_per_kwh=electricity_usd_per_kwh,
                                            utilisation=utilisation, pue=owned_pue, devices=e.devices,
                                            job_device_hours=e.device_hours))
    return Advice(comparisons=comparisons, objective=objective, constraints=constraints, candidates=candidates,
                  dropped=dropped, pareto=pareto_front(candidates), winner=winner, why=why, changes=changes,
                  rent_buy=rent_buy, notes=notes)


def _capacity(catalog: Catalog, e: Estimate) -> float:
    hw = catalog.hardware.get(e.hardware)
    return hw.memory_bytes.value if hw is not None and hw.memory_bytes else float("inf")


def _better(a: Estimate, b: Estimate, objective: str) -> bool:
    ma, mb = _metric(a, objective), _metric(b, objective)
    return ma is not None and (mb is None or ma < mb)
