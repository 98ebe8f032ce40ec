"""Comparison: one workload on every catalog entry, ranked (the result of chipfit.api.compare)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import Catalog, hardware_named
from .catalog.schema import FRAMEWORKS, Hardware
from .errors import ChipfitError, closest
from .predict import Conditions, Estimate, Plan
from .predict.parallel import network_named
from .predictors import StepPredictor, rank_key
from .workload.profile import Profile
from .workload.workload import Workload


@dataclass
class Comparison:
    """A ranked list of estimates for one workload and plan; `to_dict()` is the JSON schema."""

    workload: Workload
    plan: Plan
    profile: Profile
    estimates: list[Estimate]
    conditions: Conditions
    local_cpu: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # the defaults the job took, hints
    max_batch: dict[str, int | None] = field(default_factory=dict)  # LLM serving: the largest batch that fits

    def to_dict(self) -> dict:
        summary = self.profile.to_dict()
        return {
            "workload": self.workload.to_dict() | {
                "plan": self.plan.to_dict(),
                "params": summary["params"],
                "flops_per_step_per_device": summary["flops"]["total"],
                "uncounted_ops": summary["uncounted"],
                "profile_notes": summary["notes"],
                "pue": self.conditions.pue,
                "grid_kg_per_kwh": self.conditions.grid_kg_per_kwh,
            },
            "local_cpu": self.local_cpu,
            "notes": list(self.notes),
            **({"max_batch": dict(self.max_batch)} if self.max_batch else {}),
            "estimates": [e.to_dict() for e in self.estimates],
        }

    def to_rows(self) -> list[dict]:
        """One flat dict per estimate (for CSV or a pandas DataFrame)."""
        return [estimate_row(e) for e in self.estimates]


def estimate_row(e: Estimate) -> dict:
    """An Estimate as one flat row: bounds as `<figure>_low/_high`, step parts as `<part>_s`."""
    d = e.to_dict()
    for bound in ("low", "high"):
        for k, v in d.pop(bound).items():
            d[f"{k}_{bound}"] = v
    d.pop("memory_breakdown")
    d.update({f"{k}_s": v for k, v in d.pop("step_breakdown_s").items()})
    d["assumptions"] = "; ".join(d["assumptions"])
    return d


def select_hardware(catalog: Catalog, hw_class: str | None, hardware: list[str] | None) -> list[Hardware]:
    if hardware:
        return [hardware_named(h, catalog) for h in hardware]
    entries = catalog.select(hw_class=hw_class)
    if not entries:
        raise ChipfitError(f"No catalog entry has class {hw_class!r}; run `chipfit hardware list` to see the classes.")
    return entries


def compare_profile(
    profile: Profile,
    workload: Workload,
    plan: Plan,
    hardware: list[Hardware],
    catalog: Catalog,
    *,
    framework: str | None = None,
    conditions: Conditions = Conditions(),
    local_cpu: Hardware | None = None,
    local_calibration=None,
    network: str | None = None,
) -> list[Estimate]:
    """Pure part of compare: the profile on each entry, ranked. Fast (no tracing, no I/O).

    An inference engine named as `framework` (TensorRT, ONNX Runtime, ...) runs the fused graph,
    and TPUs (and every device under JAX) the XLA-fused one (predict.fusion).

    `local_calibration` (chipfit.calibrate.Calibration) replaces the published efficiencies
    for the local CPU's own estimate. `network` names the scale-out network (predict.parallel.NETWORKS)
    for every entry instead of its vendor's reference node's.
    """
    if framework is not None and framework not in FRAMEWORKS:
        raise ChipfitError(f"Framework {framework!r} is not known.{closest(framework, FRAMEWORKS)} Known: {', '.join(FRAMEWORKS)}.")
    if network is not None:
        network_named(network)  # refused even where no entry spans nodes
    predictor = StepPredictor(profile, workload, plan, catalog, framework=framework, conditions=conditions,
                              network=network)
    estimates = [predictor.estimate(hw) for hw in hardware]
    if local_cpu is not None:
        eff = local_calibration.efficiency(local_cpu) if local_calibration else None
        local = predictor.alone(eff).estimate(local_cpu)
        estimates.append(local)
        for e in estimates:
            if e.total_time_s and local.total_time_s:
                e.speedup_vs_local_cpu = local.total_time_s / e.total_time_s
    return sorted(estimates, key=rank_key)
