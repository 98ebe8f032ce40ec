"""compare: one workload on every catalog entry, ranked. The API behind `chipfit compare`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from .catalog import Catalog, hardware_named, load_catalog
from .catalog.schema import FRAMEWORKS, Hardware
from .errors import ChipfitError, closest
from .predict import Conditions, Estimate, OpArrays, Plan, add_energy_and_cost, predict_fitting
from .predict.parallel import network_named
from .predict.as_run import arrays_as_run, as_run_key
from .predict.fusion import FUSING_FRAMEWORKS, fuse_for_engine
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


def _stored_calibration(hw_id: str):
    """The newest calibration of `hw_id` in the default results store, without creating the store."""
    from .calibrate import stored_calibration
    from .store import Store, default_db_path

    if not default_db_path().exists():
        return None
    with Store() as store:
        return stored_calibration(store, hw_id)


def _library_spec(name: str):
    from .workload import library

    try:
        return library.transformer_spec(name)
    except ChipfitError as exc:
        raise ChipfitError(f"LLM serving (--prompt/--generate) needs a decoder LLM; {exc}") from exc


EAGER_FRAMEWORKS = ("pytorch", "tensorflow", "keras", "jax")


def deployed_framework(hw: Hardware) -> str | None:
    """The framework `hw` runs a job with when none is named: None (eager, as traced) where it runs an
    eager framework, else the first inference engine or vendor compiler it lists (Vitis AI on an FPGA,
    Core ML on the Apple Neural Engine), which fuses the graph (predict.fusion)."""
    if any(fw in EAGER_FRAMEWORKS for fw in hw.frameworks):
        return None
    return next((fw for fw in hw.frameworks if fw in FUSING_FRAMEWORKS), None)


def rank_key(e: Estimate) -> tuple:
    """Runnable and fitting first, fastest first; unknown fit next; no fit; excluded last."""
    if e.excluded_reason:
        return (3, 0.0, e.hardware)
    order = {True: 0, None: 1, False: 2}[e.fits]
    return (order, e.total_time_s, e.hardware)


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
    and TPUs (and every device under JAX) the XLA-fused one (predict.fusion). With no `framework`,
    a device that runs no eager framework (an FPGA overlay, an NPU) runs the job as it is deployed
    (deployed_framework).

    `local_calibration` (chipfit.calibrate.Calibration) replaces the published efficiencies
    for the local CPU's own estimate. `network` names the scale-out network (predict.parallel.NETWORKS)
    for every entry instead of its vendor's reference node's.
    """
    if framework is not None and framework not in FRAMEWORKS:
        raise ChipfitError(f"Framework {framework!r} is not known.{closest(framework, FRAMEWORKS)} Known: {', '.join(FRAMEWORKS)}.")
    if network is not None:
        network_named(network)  # refused even where no entry spans nodes
    fused: dict[bool, Profile] = {False: profile}  # the traced graph, and the one an inference engine runs
    built: dict[tuple, OpArrays] = {}  # by the graph a device runs (as_run_key); each built on first use

    def graph(fw: str | None) -> Profile:
        engine = fw in FUSING_FRAMEWORKS
        if engine not in fused:
            fused[engine] = fuse_for_engine(profile, workload.precision)
        return fused[engine]

    def arrays_for(hw: Hardware, fw: str | None) -> OpArrays:
        key = (fw in FUSING_FRAMEWORKS, *as_run_key(hw, fw, workload.precision))
        if key not in built:
            built[key] = arrays_as_run(graph(fw), hw, fw, workload.precision)
        return built[key]

    estimates = []
    for hw in hardware:
        if framework and framework not in hw.frameworks:
            runs = ", ".join(hw.frameworks) or "no listed framework"
            estimates.append(Estimate(hardware=hw.id, hw_class=hw.hw_class, name=hw.name, devices=plan.devices,
                                      excluded_reason=f"{hw.name} does not run {framework} (runs: {runs})."))
            continue
        fw = framework or deployed_framework(hw)
        estimates.append(predict_fitting(graph(fw), hw, workload, plan, arrays=arrays_for(hw, fw), framework=fw,
                                         instance=catalog.cheapest_instance(hw.id), conditions=conditions,
                                         network=network))
    if local_cpu is not None:
        # One local CPU runs the whole job, the global batch as per-device micro-batches in turn.
        local_job = replace(workload, batch=profile.batch)
        eff = local_calibration.efficiency(local_cpu) if local_calibration else None
        local = predict_fitting(graph(framework), local_cpu, local_job, Plan(devices=1),
                                arrays=arrays_for(local_cpu, framework),
                                conditions=conditions, efficiency=eff)
        estimates.append(local)
        for e in estimates:
            if e.total_time_s and local.total_time_s:
                e.speedup_vs_local_cpu = local.total_time_s / e.total_time_s
    estimates.sort(key=rank_key)
    return estimates


# A transformer given only by its sizes has no context length of its own; this is the most
# common one among the published runs in ../shared/validation/published.csv.
SPEC_DEFAULT_SEQ = 2048


def serving_estimate(inf, hw: Hardware, requests: float, instance, conditions: Conditions) -> Estimate:
    """An InferenceEstimate (predict/decode.py) as an Estimate, so serving ranks like the rest.

    step_time_s is one decode step, latency_s the time to first token, total_time_s serves
    `requests` requests in batches.
    """
    est = Estimate(hardware=hw.id, hw_class=hw.hw_class, name=hw.name, devices=inf.devices,
                   excluded_reason=inf.excluded_reason, assumptions=list(inf.assumptions))
    if inf.excluded_reason:
        return est
    batches = requests / inf.batch
    est.fits, est.memory_per_device_bytes, est.memory_breakdown = inf.fits, inf.memory_per_device_bytes, inf.memory_breakdown
    est.step_time_s, est.latency_s, est.communication_s = inf.decode_step_s, inf.time_to_first_token_s, inf.communication_s
    est.throughput_per_s, est.throughput_unit = inf.tokens_per_s, "tokens/s"
    est.total_time_s = inf.total_s * batches
    est.device_hours = est.total_time_s * inf.devices / 3600
    est.low = {"total_time_s": inf.low.get("total_s", inf.total_s) * batches}
    est.high = {"total_time_s": inf.high.get("total_s", inf.total_s) * batches}
    add_energy_and_cost(est, hw, instance, conditions, inf.devices)
    return est


def serving_weight_precision(precision: str) -> str:
    """The precision served weights are stored at for a job's `precision` (tf32 weights are fp32)."""
    return "fp32" if precision == "tf32" else precision


def compare_serving(spec, workload: Workload, prompt: int, generate: int, devices: int, hardware: list[Hardware],
                    catalog: Catalog, conditions: Conditions, framework: str | None = None) -> list[Estimate]:
    """LLM serving (prefill, then decode) of `workload.batch` requests per batch on each entry, by the serving
    stack `framework` names (predict.host.serving_framework: a serving engine by default, or pytorch's eager
    decode loop); an engine runs only where its base framework does."""
    from .predict.decode import predict_inference
    from .predict.host import SERVING_ENGINES, serving_framework

    serving = serving_framework(framework)
    base = SERVING_ENGINES.get(serving, serving)
    weights = serving_weight_precision(workload.precision)
    out = []
    for hw in hardware:
        if framework is not None and base not in hw.frameworks:
            runs = ", ".join(hw.frameworks) or "no listed framework"
            out.append(Estimate(hardware=hw.id, hw_class=hw.hw_class, name=hw.name, devices=devices,
                                excluded_reason=f"{hw.name} does not run {serving} (it needs {base}; runs: {runs})."))
            continue
        inf = predict_inference(spec, hw, batch=workload.batch, prompt_tokens=prompt, generated_tokens=generate,
                                weight_precision=weights, devices=devices, framework=serving)
        out.append(serving_estimate(inf, hw, workload.total_samples(), catalog.cheapest_instance(hw.id), conditions))
    out.sort(key=rank_key)
    return out


def compare(
    model,
    *,
    mode: str = "train",
    batch: int = 1,
    seq_len: int | None = None,
    samples: float | None = None,
    epochs: float = 1.0,
    tokens: float | None = None,
    precision: str = "fp32",
    optimizer: str = "adamw",
    devices: int = 1,
    hw_class: str | None = None,
    hardware: list[str] | None = None,
    framework: str | None = None,
    pue: float | None = None,
    grid_kg_per_kwh: float | None = None,
    catalog_dirs: tuple = (),
    include_local_cpu: bool = True,
    spec: str | None = None,
    prompt: int | None = None,
    generate: int | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    network: str | None = None,
) -> Comparison:
    """Profile `model` once at the per-device batch and rank the catalog for the job.

    `spec` ("layers=32,hidden=4096,...") replaces `model` with an analytic transformer;
    `prompt`/`generate` turn inference into LLM serving (prefill, then token-by-token decode).
    """
    from .workload import llm
    from .workload import profile as profile_model
    from .workload.source import resolve

    if spec is not None:
        shape = llm.parse_spec(spec)
        name, source = shape.name, None
        seq_len = seq_len or SPEC_DEFAULT_SEQ
    else:
        if model is None:
            raise ChipfitError("Name a model (a zoo name, a file or package.module:factory) or give --spec.")
        source = resolve(model) if isinstance(model, str) else None
        name = model if isinstance(model, str) else type(model).__name__
        if seq_len is None and source is not None and getattr(source, "default_seq_len", None):
            seq_len = source.default_seq_len
    serving = prompt is not None or generate is not None
    if serving:
        from .predict.host import serving_framework

        serving_framework(framework)  # an engine chipfit does not model is refused before any work
        seq_len = (prompt or 0) + (generate or 0)
    workload = Workload(model=name, mode=mode, batch=batch, seq_len=seq_len, samples=samples, epochs=epochs,
                        tokens=tokens, precision=precision, optimizer=optimizer, prompt_tokens=prompt,
                        generate_tokens=generate)
    plan = Plan(devices=devices)
    if batch % plan.data_parallel:
        raise ChipfitError(
            f"Batch {batch} does not split evenly over {devices} devices; give a batch that is a multiple of {devices}."
        )
    conditions = Conditions(
        pue=Conditions.pue if pue is None else pue,
        grid_kg_per_kwh=Conditions.grid_kg_per_kwh if grid_kg_per_kwh is None else grid_kg_per_kwh,
    )
    catalog = load_catalog(catalog_dirs)
    entries = select_hardware(catalog, hw_class, hardware)
    if network is not None:
        network_named(network)  # before the trace, not after it
    if serving:
        if mode != "infer" or not prompt or not generate:
            raise ChipfitError("LLM serving needs --infer with both --prompt and --generate as token counts.")
        if network is not None:
            raise ChipfitError("--network prices the traffic between nodes of training and batch inference; LLM "
                               "serving (--prompt, --generate) is priced within one node, so leave --network out.")
        shape = shape if spec is not None else _library_spec(name)
    t0 = time.perf_counter()
    if spec is not None:
        prof = llm.profile_spec(shape, mode=mode, batch=batch // plan.data_parallel, seq_len=seq_len,
                                precision=precision, optimizer=optimizer)
        if seq_len == SPEC_DEFAULT_SEQ:
            prof.notes.append(f"sequence length {SPEC_DEFAULT_SEQ} assumed for the spec; set --seq")
    elif serving:
        # The prefill: an encoder-decoder's encoder reads the prompt and its decoder takes one start token.
        prof = llm.profile_spec(shape, mode="infer", batch=batch, seq_len=1 if shape.encoder_decoder else prompt,
                                precision=precision, encoder_len=prompt)
    else:
        prof = profile_model(model, mode=mode, batch=batch // plan.data_parallel, seq_len=seq_len,
                             precision=precision, optimizer=optimizer, input_shapes=input_shapes)
    t1 = time.perf_counter()
    if serving:
        estimates = compare_serving(shape, workload, prompt, generate, devices, entries, catalog, conditions,
                                    framework)
        return Comparison(workload=workload, plan=plan, profile=prof, estimates=estimates, conditions=conditions,
                          timings_s={"profile": t1 - t0, "predict": time.perf_counter() - t1})
    local, calibration = None, None
    if include_local_cpu:
        from .measure.devices import local_cpu_hardware

        local = local_cpu_hardware()
        calibration = _stored_calibration(local.id)
    t2 = time.perf_counter()
    estimates = compare_profile(prof, workload, plan, entries, catalog, framework=framework,
                                conditions=conditions, local_cpu=local, local_calibration=calibration,
                                network=network)
    t3 = time.perf_counter()
    return Comparison(workload=workload, plan=plan, profile=prof, estimates=estimates, conditions=conditions,
                      local_cpu=local.id if local else None,
                      timings_s={"profile": t1 - t0, "local_cpu": t2 - t1, "predict": t3 - t2})
