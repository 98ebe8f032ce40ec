"""One predictor interface for the three ways a job is priced: `estimate(hw) -> Estimate`.

- StepPredictor: training or inference steps of a Profile on a data-parallel plan (predict.predict);
- ServingPredictor: LLM serving, prefill then decode (predict/decode.py), as an Estimate;
- PlanPredictor: the best parallel plan for a transformer training job (predict/plans.py), as an Estimate.

Every use case ranks `[p.estimate(hw) for hw in entries]` the same way (rank_key), so a table,
a plot or the dashboard shows a step, a served request and a plan alike. The predictors only
adapt: predict/ does the pricing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

from .catalog import Catalog
from .catalog.schema import Hardware
from .predict import Conditions, Estimate, OpArrays, Plan, add_energy_and_cost, predict_fitting
from .predict.efficiency import Efficiency
from .predict.plan import ModelShape
from .predict.plans import PlanSearch, search_plans
from .predict.as_run import arrays_as_run, as_run_key
from .predict.fusion import FUSING_FRAMEWORKS, fuse_for_engine
from .workload.profile import Profile
from .workload.workload import Workload


class Predictor(Protocol):
    def estimate(self, hw: Hardware) -> Estimate:
        """The job on `hw`: a full Estimate, or one with `excluded_reason` set."""


def plan_shape(spec, seq_len: int) -> ModelShape:
    """The plan-relevant sizes of a workload.llm.TransformerSpec trained at `seq_len` (an encoder-decoder's
    layers together)."""
    return ModelShape(layers=spec.layers + spec.encoder_layers, hidden=spec.hidden, heads=spec.heads, seq_len=seq_len,
                      experts=spec.experts, top_k=spec.top_k, expert_params=spec.expert_params(),
                      moe_layers=spec.moe_layers, kv_dim=spec.kv_dim)


def rank_key(e: Estimate) -> tuple:
    """Runnable and fitting first, fastest first; unknown fit next; no fit; excluded last."""
    if e.excluded_reason:
        return (3, 0.0, e.hardware)
    order = {True: 0, None: 1, False: 2}[e.fits]
    return (order, e.total_time_s, e.hardware)


def ranked(predictor: Predictor, hardware: list[Hardware]) -> list[Estimate]:
    return sorted((predictor.estimate(hw) for hw in hardware), key=rank_key)


def _excluded(hw: Hardware, devices: int, reason: str) -> Estimate:
    return Estimate(hardware=hw.id, hw_class=hw.hw_class, name=hw.name, devices=devices, excluded_reason=reason)


# Frameworks that run the graph operator by operator, as traced (predict.as_run prices how a device runs them).
EAGER_FRAMEWORKS = ("pytorch", "tensorflow", "keras", "jax")


def deployed_framework(hw: Hardware) -> str | None:
    """The framework `hw` runs a job with when none is named: None (eager, as traced) where it runs an
    eager framework, else the first inference engine or vendor compiler it lists (Vitis AI on an FPGA,
    Core ML on the Apple Neural Engine), which fuses the graph (predict.fusion)."""
    if any(fw in EAGER_FRAMEWORKS for fw in hw.frameworks):
        return None
    return next((fw for fw in hw.frameworks if fw in FUSING_FRAMEWORKS), None)


@dataclass
class StepPredictor:
    """Steps of `profile` (traced at the per-device batch) on `plan` x each entry.

    An inference engine named as `framework` (TensorRT, ONNX Runtime, ...) runs the fused graph,
    and TPUs (and every device under JAX) the XLA-fused one (predict.fusion). With no `framework`, a
    device that runs no eager framework (an FPGA overlay, an NPU) runs the job as it is deployed
    (deployed_framework). `efficiency` replaces the published efficiencies (a calibration of the device).
    """

    profile: Profile
    workload: Workload
    plan: Plan
    catalog: Catalog
    framework: str | None = None
    conditions: Conditions = field(default_factory=Conditions)
    network: str | None = None
    efficiency: Efficiency | None = None
    _graphs: dict[bool, Profile] = field(default_factory=dict, repr=False)  # traced, and as an engine runs it
    _arrays: dict[tuple, OpArrays] = field(default_factory=dict, repr=False)

    def graph(self, fw: str | None) -> Profile:
        """The traced graph, or the one an inference engine `fw` runs (fused once, on first use)."""
        engine = fw in FUSING_FRAMEWORKS
        if engine not in self._graphs:
            self._graphs[engine] = fuse_for_engine(self.profile, self.workload.precision) if engine else self.profile
        return self._graphs[engine]

    def arrays_for(self, hw: Hardware, fw: str | None) -> OpArrays:
        """The operators as `hw` runs them under `fw`; built once per graph a device runs (as_run_key)."""
        key = (fw in FUSING_FRAMEWORKS, *as_run_key(hw, fw, self.workload.precision))
        if key not in self._arrays:
            self._arrays[key] = arrays_as_run(self.graph(fw), hw, fw, self.workload.precision)
        return self._arrays[key]

    def estimate(self, hw: Hardware) -> Estimate:
        if self.framework and self.framework not in hw.frameworks:
            runs = ", ".join(hw.frameworks) or "no listed framework"
            return _excluded(hw, self.plan.devices, f"{hw.name} does not run {self.framework} (runs: {runs}).")
        fw = self.framework or deployed_framework(hw)
        priced = hw.id in self.catalog.hardware  # the local CPU is not in the catalog, nor rented
        return predict_fitting(self.graph(fw), hw, self.workload, self.plan, arrays=self.arrays_for(hw, fw),
                               framework=fw,
                               instance=self.catalog.cheapest_instance(hw.id) if priced else None,
                               conditions=self.conditions, network=self.network, efficiency=self.efficiency)

    def alone(self, efficiency: Efficiency | None = None) -> StepPredictor:
        """One device running the whole job, the global batch as per-device micro-batches in turn
        (how the local CPU is priced)."""
        return replace(self, workload=replace(self.workload, batch=self.profile.batch), plan=Plan(devices=1),
                       framework=None, network=None, efficiency=efficiency, _graphs=self._graphs,
                       _arrays=self._arrays)


def serving_weight_precision(precision: str) -> str:
    """The precision served weights are stored at for a job's `precision` (tf32 weights are fp32)."""
    return "fp32" if precision == "tf32" else precision


@dataclass
class ServingPredictor:
    """LLM serving of `workload.batch` requests per batch, `workload.total_samples()` requests in all,
    on `devices` x each entry (tensor parallel within a node).

    step_time_s is one decode step, latency_s the time to first token, total_time_s serves every
    request in batches; `max_batch` keeps, per entry, the largest batch that fits.
    """

    spec: object  # workload.llm.TransformerSpec
    workload: Workload
    devices: int
    catalog: Catalog
    conditions: Conditions = field(default_factory=Conditions)
    framework: str | None = None  # the serving stack (predict.host.serving_framework); default a serving engine
    max_batch: dict[str, int | None] = field(default_factory=dict)

    def estimate(self, hw: Hardware) -> Estimate:
        from .predict.decode import predict_inference
        from .predict.host import SERVING_ENGINES, engine_version, serving_framework

        serving = serving_framework(self.framework)
        base = SERVING_ENGINES.get(engine_version(serving)[0], serving)
        if self.framework is not None and base not in hw.frameworks:
            runs = ", ".join(hw.frameworks) or "no listed framework"
            return _excluded(hw, self.devices, f"{hw.name} does not run {serving} (it needs {base}; runs: {runs}).")
        w = self.workload
        inf = predict_inference(self.spec, hw, batch=w.batch, prompt_tokens=w.prompt_tokens,
                                generated_tokens=w.generate_tokens,
                                weight_precision=serving_weight_precision(w.precision), devices=self.devices,
                                framework=serving)
        self.max_batch[hw.id] = None if inf.excluded_reason else inf.max_batch
        est = Estimate(hardware=hw.id, hw_class=hw.hw_class, name=hw.name, devices=inf.devices,
                       excluded_reason=inf.excluded_reason, assumptions=list(inf.assumptions))
        if inf.excluded_reason:
            return est
        batches = w.total_samples() / inf.batch
        est.fits, est.memory_per_device_bytes, est.memory_breakdown = (inf.fits, inf.memory_per_device_bytes,
                                                                       inf.memory_breakdown)
        est.step_time_s, est.latency_s, est.communication_s = (inf.decode_step_s, inf.time_to_first_token_s,
                                                               inf.communication_s)
        est.throughput_per_s, est.throughput_unit = inf.tokens_per_s, "tokens/s"
        est.total_time_s = inf.total_s * batches
        est.device_hours = est.total_time_s * inf.devices / 3600
        est.low = {"total_time_s": inf.low.get("total_s", inf.total_s) * batches}
        est.high = {"total_time_s": inf.high.get("total_s", inf.total_s) * batches}
        add_energy_and_cost(est, hw, self.catalog.cheapest_instance(hw.id), self.conditions, inf.devices)
        return est


@dataclass
class PlanPredictor:
    """The best data/tensor/pipeline/ZeRO/micro-batch/recompute plan for a transformer training job
    on each entry; `searches` keeps each entry's full PlanSearch."""

    profile_at: Callable[[int], Profile]
    shape: ModelShape
    workload: Workload
    catalog: Catalog
    max_devices: int | None = None
    devices: int | None = None
    objective: str = "time"
    deadline_s: float | None = None
    budget_usd: float | None = None
    conditions: Conditions = field(default_factory=Conditions)
    network: str | None = None
    top: int = 5
    searches: dict[str, PlanSearch] = field(default_factory=dict)

    def search(self, hw: Hardware) -> PlanSearch:
        found = search_plans(self.profile_at, self.shape, self.workload, hw, max_devices=self.max_devices,
                             devices=self.devices, objective=self.objective, deadline_s=self.deadline_s,
                             budget_usd=self.budget_usd, instance=self.catalog.cheapest_instance(hw.id),
                             pue=self.conditions.pue, network=self.network, top=self.top)
        self.searches[hw.id] = found
        return found

    def estimate(self, hw: Hardware) -> Estimate:
        found = self.search(hw)
        best = found.best
        if best is None:
            return _excluded(hw, self.devices or 1, found.why or f"No plan on {hw.name} fits the job.")
        parts = best.parts
        return Estimate(hardware=hw.id, hw_class=hw.hw_class, name=hw.name, devices=best.plan.devices, fits=True,
                        memory_per_device_bytes=best.memory_per_device_bytes, step_time_s=best.step_time_s,
                        compute_s=parts.compute_s, bubble_s=parts.bubble_s,
                        communication_s=parts.communication_s,
                        throughput_per_s=best.global_batch / best.step_time_s, total_time_s=best.total_time_s,
                        device_hours=best.device_hours, energy_kwh=best.energy_kwh, cost_usd=best.cost_usd,
                        assumptions=[f"plan: {best.plan.describe()}, micro-batch {best.micro_batch}", found.links])
