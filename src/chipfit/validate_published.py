"""Check predictions against figures that papers, model cards and MLPerf logs published.

Every row goes through the same parts as `compare`, `plan` and `serve`, fed only the row's inputs
(published_run.read_run), never its `value`:

- the model through the model library (hub ids and names as aliases; MoE 'active / total'), the
  hardware through the hardware resolver, the network from the row or the resolver's default;
- a decoder LLM's training through the plan search (predict.plans) on its analytic profile
  (workload.llm.profile_spec): the fastest plan that fits on the row's device count, or the fewest
  device-hours where it gives none; its serving through predict.decode at the row's prompt and
  output lengths and batch (an Offline row without a batch: the largest batch that fits);
- any other model (CNNs, encoders) traced on fake tensors at per-device batch 1 and 2, scaled to the
  row's batch, data parallel over its devices, as `compare` prices it; an engine the row names
  (TensorRT, NVIDIA's MXNet) runs its fused graph (predict.fusion).

Each metric a published run reports (METRICS) is read off that one prediction. Whole-run hours divide
by WHOLE_RUN_GOODPUT for restarts, evaluation and lost work. A row that cannot be predicted says why
("not predicted: ..."); no row stops the others.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .catalog import Catalog, load_catalog
from .errors import ChipfitError, check_file
from .api.job import PLAN_BATCH_TOKENS as DEFAULT_BATCH_TOKENS
from .predict import Plan, predict
from .predict.decode import predict_inference
from .predict.energy import DEFAULT_PUE
from .predict.parallel import NODE_SIZE, Network
from .predict.plans import scale_profile, search_plans
from .predictors import plan_shape
from .published_run import (DEFAULT_SEQ_LEN, PublishedRun, RowUnreadable, parse_precision, plan_hints, read_run,
                            row_network)
from .row_lookup import RowModel, resolve_row_hardware, resolve_row_model
from .predict.fusion import fuse_for_engine, fuse_into_norms
from .workload.llm import profile_spec
from .workload.lora import LoRA
from .workload.profile import Profile
from .workload.workload import Workload

# Share of wall-clock time a large run spends on useful training steps: Llama 3 reports "higher
# than 90% effective training time" over its 54-day pre-training snapshot (Dubey et al. 2024,
# "The Llama 3 Herd of Models", Sec. 3.3.4). Whole-run device-hours are step time / this.
WHOLE_RUN_GOODPUT = 0.90
# Per-device batch of traced-model rows that give none: the ResNet-50 reference batch of 256 per 8 GPUs
# scaled linearly (Goyal et al. 2017, "Accurate, Large Minibatch SGD") is what NVIDIA's
# DeepLearningExamples trains at per GPU (README: --batch-size 256 with AMP).
TRACED_BATCH_PER_DEVICE = 256
SERVING_KINDS = ("mlperf_infer", "infer_throughput", "infer_latency")


@dataclass
class RowResult:
    """One published row against its prediction; `reason` says why there is no prediction."""

    id: str
    kind: str
    metric: str
    unit: str
    published: float | None
    predicted: float | None = None
    reason: str = ""
    how: str = ""

    @property
    def error(self) -> float | None:
        """|predicted / published - 1|."""
        return None if self.predicted is None or not self.published else abs(self.predicted / self.published - 1)

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "metric": self.metric, "unit": self.unit,
                "published": self.published, "predicted": self.predicted, "error": self.error,
                "reason": self.reason, "how": self.how}


@dataclass
class Validation:
    rows: list[RowResult]
    summary: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"rows": [r.to_dict() for r in self.rows], "summary": self.summary}


def _p90(values: list[float]) -> float:
    """90th percentile with linear interpolation between order statistics."""
    s = sorted(values)
    k = 0.9 * (len(s) - 1)
    lo = math.floor(k)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (k - lo)


def summarize(rows: list[RowResult]) -> dict[str, dict[str, float]]:
    """Median and 90th percentile of |r - 1| per kind and over all rows, with counts."""
    out: dict[str, dict[str, float]] = {}
    for kind in [*dict.fromkeys(r.kind for r in rows), "all"]:
        group = [r for r in rows if kind in ("all", r.kind)]
        errors = [r.error for r in group if r.error is not None]
        out[kind] = {"rows": len(group), "predicted": len(errors),
                     "median": statistics.median(errors) if errors else math.nan,
                     "p90": _p90(errors) if errors else math.nan}
    return out


# --- one prediction per row ---------------------------------------------------------------------

@dataclass
class Predicted:
    """What the predictors say about a row's job; each metric reads the figures it needs."""

    how: str
    devices: int
    tdp_watts: float | None = None
    peak_flops: float | None = None  # per device, at the row's precision
    step_s: float | None = None  # training: one optimizer step
    samples_per_step: float | None = None
    tokens_per_sample: int | None = None
    total_s: float | None = None  # the whole job (training amount, or one serving batch)
    model_flops_per_token: float | None = None  # 6N + attention (PaLM App. B)
    hardware_flops_per_token: float | None = None  # Megatron's count: recomputed forward included
    output_tokens_per_s: float | None = None  # serving, whole system
    time_to_first_token_s: float | None = None
    latency_s: float | None = None  # one inference step of the whole batch
    samples_per_s: float | None = None  # whole system

    def need(self, name: str, what: str):
        value = getattr(self, name)
        if value is None:
            raise RowUnreadable(f"the prediction has no {what} for this row")
        return value

    def device_hours(self) -> float:
        return self.need("total_s", "job length (the row gives no amount trained)") * self.devices / 3600

    def tokens_per_s_per_device(self) -> float:
        rate = self.need("samples_per_step", "throughput") / self.need("step_s", "step time")
        return rate * self.need("tokens_per_sample", "sequence length") / self.devices


def _energy_mwh(p: Predicted, pue: float) -> float:
    if p.tdp_watts is None:
        raise RowUnreadable("the catalog has no TDP for the hardware")
    return p.device_hours() / WHOLE_RUN_GOODPUT * p.tdp_watts * pue / 1e6


def _co2_t(p: Predicted, run: PublishedRun) -> float:
    m = re.search(r"([\d.]+)\s*kg\s*co2", run.unit.lower())
    if m is None:
        raise RowUnreadable("a CO2 row must state the grid intensity it used in its unit ('at 0.42 kgCO2eq/kWh')")
    pue = 1.0 if "incl. pue" in run.unit.lower() else DEFAULT_PUE
    return _energy_mwh(p, pue) * float(m.group(1))  # MWh x kg/kWh = t


def _peak_basis(p: Predicted, run: PublishedRun) -> float:
    """The peak a '% of N TF per device' unit states, else the catalog's at the row's precision."""
    m = re.search(r"of\s+([\d.]+)\s*tf", run.unit.lower())
    return float(m.group(1)) * 1e12 if m else p.need("peak_flops", "peak FLOP/s at this precision")


# Every metric a published run reports, in the unit its rows use, read off one prediction.
METRICS: dict[str, Callable[[Predicted, PublishedRun], float]] = {
    "gpu_hours": lambda p, r: p.device_hours() / WHOLE_RUN_GOODPUT,
    "device_hours": lambda p, r: p.device_hours() / WHOLE_RUN_GOODPUT,
    "chip_hours": lambda p, r: p.device_hours() / WHOLE_RUN_GOODPUT,
    "wall_clock_hours": lambda p, r: p.need("total_s", "job length") / 3600 / WHOLE_RUN_GOODPUT,
    "wall_clock_days": lambda p, r: p.need("total_s", "job length") / 86400 / WHOLE_RUN_GOODPUT,
    "energy": lambda p, r: _energy_mwh(p, DEFAULT_PUE),
    "energy_dynamic": lambda p, r: _energy_mwh(p, 1.0),
    "co2": _co2_t,
    "time_to_train": lambda p, r: p.need("total_s", "job length (the row gives no amount trained)") / 60,
    "tokens_per_s_per_device": lambda p, r: p.tokens_per_s_per_device(),
    "mfu": lambda p, r: 100 * p.tokens_per_s_per_device() * p.need("model_flops_per_token", "FLOP count")
    / p.need("peak_flops", "peak FLOP/s at this precision"),
    "tflops_per_device": lambda p, r: p.tokens_per_s_per_device() * p.need("hardware_flops_per_token", "FLOPs") / 1e12,
    "fraction_of_peak": lambda p, r: 100 * p.tokens_per_s_per_device() * p.need("hardware_flops_per_token", "FLOPs")
    / _peak_basis(p, r),
    "samples_per_s": lambda p, r: p.need("samples_per_s", "throughput"),
    "samples_per_s_per_device": lambda p, r: p.need("samples_per_s", "throughput") / p.devices,
    "output_tokens_per_s": lambda p, r: p.need("output_tokens_per_s", "serving throughput"),
    "output_tokens_per_s_per_device": lambda p, r: p.need("output_tokens_per_s", "serving throughput") / p.devices,
    "time_to_first_token": lambda p, r: p.need("time_to_first_token_s", "time to first token") * 1e3,
    "latency_avg_batch1": lambda p, r: p.need("latency_s", "latency") * 1e3,
}


def _tokens_trained(run: PublishedRun, seq: int, active: float) -> float | None:
    """Tokens the row's amount trains: FLOPs over 6N, samples times the sequence, or the tokens given."""
    if run.amount is None:
        return None
    kind, n = run.amount
    if kind == "flops":
        return n / (6 * active)
    if kind == "samples":
        return n * seq
    return n


def _check_params(run: PublishedRun, model: RowModel) -> None:
    """The library's model is the row's: its parameters within 10% of those the row gives."""
    counts = (("total", run.params, model.params), ("active", run.active_params, model.active_params))
    for label, row_n, lib_n in counts:
        if row_n and abs(lib_n / row_n - 1) > 0.10:
            raise RowUnreadable(f"the library's {model.name} has {lib_n / 1e9:.4g}B {label} parameters, the row "
                                f"{row_n / 1e9:.4g}B; name the model the row ran")


def _llm_train(run: PublishedRun, model: RowModel, catalog: Catalog, hw_id: str, devices: int | None,
               network: Network | None) -> Predicted:
    spec = model.spec
    lora = LoRA(run.lora_rank) if run.lora_rank else None
    if lora is None and re.search(r"\badapters?\b", run.model.lower()):
        raise RowUnreadable("adapter fine-tuning other than LoRA is not modelled by the training predictors")
    seq = run.seq_len or DEFAULT_SEQ_LEN
    precision = parse_precision(run.precision_text)
    hw = catalog.get(hw_id)
    active = float(spec.active_params())
    tokens = _tokens_trained(run, seq, active)
    if run.kind in ("train_total", "mlperf_train") and tokens is None:
        raise RowUnreadable("the row gives no number of tokens or samples trained")
    batch = run.batch(seq) or max(1, round(DEFAULT_BATCH_TOKENS / seq))
    job = Workload(model=model.name, batch=batch, seq_len=seq, tokens=tokens or float(batch * seq),
                   precision=precision)
    zero_stages, recompute = plan_hints(run.precision_text)
    search = search_plans(lambda b: profile_spec(spec, batch=b, seq_len=seq, precision=precision, lora=lora),
                          plan_shape(spec, seq),
                          job, hw, devices=devices, max_devices=None if devices else batch,
                          objective="time" if devices else "device_hours", network=network,
                          zero_stages=zero_stages, recompute=recompute)
    best = search.best
    if best is None:
        raise RowUnreadable(f"no plan fits: {search.why}")
    # Passes over the weights: forward, backward's input and weight gradients (a frozen base has none), recompute.
    passes = (2 if lora else 3) + best.plan.activation_checkpointing
    adapters = 6 * profile_spec(spec, seq_len=seq, precision=precision, lora=lora).trainable_params if lora else 0
    return Predicted(
        how=(f"{best.plan.describe()} on {best.plan.devices} x {hw_id}, micro-batch {best.micro_batch}, {precision}; "
             f"{spec.layers}x{spec.hidden} ({model.source})" + (f"; {lora.describe()}" if lora else "")),
        devices=best.plan.devices, tdp_watts=hw.tdp_watts.value if hw.tdp_watts else None,
        peak_flops=hw.peak(precision) or hw.peak("bf16"), step_s=best.step_time_s,
        samples_per_step=best.global_batch, tokens_per_sample=seq,
        total_s=best.total_time_s if tokens else None,
        # PaLM App. B: 6N + 12 L H Q T; LoRA 4N + 6 N_adapters
        model_flops_per_token=(passes - best.plan.activation_checkpointing) * 2 * active + adapters
        + 12 * spec.layers * spec.q_dim * seq,
        hardware_flops_per_token=2 * active * passes * (1 + seq / (6 * spec.hidden)) + adapters,  # Narayanan 2021 Eq. 3
    )


def _llm_serve(run: PublishedRun, model: RowModel, catalog: Catalog, hw_id: str, devices: int | None,
               network: Network | None) -> Predicted:
    if run.prompt_tokens is None or run.output_tokens is None:
        raise RowUnreadable("serving depends on the prompt and output lengths, and the row does not give both")
    hw = catalog.get(hw_id)
    devices = devices or 1
    weights = parse_precision(run.precision_text)
    kv = weights if "kv" in run.precision_text.lower() else None

    def serve(batch: int):
        return predict_inference(model.spec, hw, batch=batch, prompt_tokens=run.prompt_tokens,
                                 generated_tokens=run.output_tokens, weight_precision=weights, kv_precision=kv,
                                 devices=devices, framework=run.engine)

    batch = run.batch(None)
    if batch is None and run.kind == "infer_latency":
        batch = 1
    if batch is None:  # an Offline row: the server fills its memory with requests
        batch = serve(1).max_batch or 0
        if batch < 1:
            raise RowUnreadable(f"{model.name} does not fit on {devices} x {hw.name} at {weights}")
    est = serve(batch)
    if est.excluded_reason:
        raise RowUnreadable(est.excluded_reason)
    if est.fits is False:
        raise RowUnreadable(f"batch {batch} of {model.name} does not fit on {devices} x {hw.name}")
    return Predicted(how=f"{devices} x {hw_id} tensor parallel, batch {batch}, {weights} weights, "
                         f"{est.kv_precision} KV, {run.engine or 'default engine'} ({model.source})",
                     devices=devices, tdp_watts=hw.tdp_watts.value if hw.tdp_watts else None,
                     output_tokens_per_s=est.tokens_per_s, time_to_first_token_s=est.time_to_first_token_s,
                     latency_s=est.total_s, samples_per_s=batch / est.total_s)


_TRACES: dict[tuple, tuple[Profile, Profile]] = {}


def _traced_profile(name: str, mode: str, precision: str, batch: int, seq_len: int | None) -> Profile:
    """`name` at `batch`, through its traces (torch, fake tensors) at batch 1 and 2."""
    key = (name, mode, precision, seq_len)
    if key not in _TRACES:
        from .workload import profile as trace

        _TRACES[key] = tuple(trace(name, mode=mode, batch=b, precision=precision, seq_len=seq_len) for b in (1, 2))
    one, two = _TRACES[key]
    return scale_profile(one, batch, reference=two)


def _engine(precision_text: str, training: bool) -> tuple[Callable[[Profile, str], Profile] | None, str, str]:
    """The fused graph of an engine the row's precision column names, how to say it, and the framework."""
    t = precision_text.lower()
    if "tensorrt" in t and not training:
        return fuse_for_engine, "fused as TensorRT runs it", "tensorrt"
    if "mxnet" in t and training:
        return lambda prof, _: fuse_into_norms(prof), "NGC MXNet's fused batch norms", "mxnet"
    return None, "", "pytorch"


def _forward(run: PublishedRun, model: RowModel, catalog: Catalog, hw_id: str, devices: int | None,
             network: Network | None) -> Predicted:
    """A job priced as `compare` prices it: one profile at the per-device batch, data parallel over the devices;
    traced models through the tracer, transformers through their analytic profile."""
    hw = catalog.get(hw_id)
    devices = devices or 1
    precision = parse_precision(run.precision_text)
    mode = "train" if run.training else "infer"
    seq = (run.seq_len or DEFAULT_SEQ_LEN) if model.sequence else None
    batch = run.batch(seq) or (1 if run.kind == "infer_latency" else TRACED_BATCH_PER_DEVICE * devices)
    per_device = max(1, batch // devices)
    profile_precision = "bf16" if precision in ("int8", "fp8") else precision
    if model.spec is not None:
        prof = profile_spec(model.spec, mode=mode, batch=per_device, seq_len=seq, precision=profile_precision)
    else:
        prof = _traced_profile(model.traced, mode, profile_precision, per_device, seq)
    fuse, fused, framework = _engine(run.precision_text, run.training)
    # NVIDIA's PyTorch ResNet-50 (DeepLearningExamples) trains and infers in channels-last under AMP
    # (its README: --memory-format nhwc), as does a row that says so; engines and NGC MXNet choose their own layouts.
    channels_last = framework == "pytorch" and model.spec is None and bool(
        re.search(r"amp|channels[-_ ]last|nhwc", run.precision_text.lower()))
    if fuse:
        prof = fuse(prof, precision)
    samples = None
    if run.amount is not None:
        kind, n = run.amount
        samples = n / seq if kind == "tokens" and seq else n if kind in ("samples", "count") else None
    job = Workload(model=model.name, mode=mode, batch=per_device * devices, seq_len=seq,
                   samples=samples or float(per_device * devices), precision=precision)
    est = predict(prof, hw, job, Plan(devices=devices), network=network, framework=framework,
                  channels_last=channels_last)
    if est.excluded_reason:
        raise RowUnreadable(est.excluded_reason)
    return Predicted(
        how=f"{'analytic' if model.spec else 'traced'} {model.name}, batch {per_device} per device x {devices} "
            f"{hw_id}, {precision}" + (f", {fused}" if fused else "")
            + (", PyTorch channels-last" if channels_last else ""),
        devices=devices, tdp_watts=hw.tdp_watts.value if hw.tdp_watts else None,
        peak_flops=hw.peak(precision), step_s=est.step_time_s, samples_per_step=per_device * devices,
        total_s=est.total_time_s if samples else None, latency_s=est.step_time_s,
        samples_per_s=per_device * devices / est.step_time_s,
    )


def _predict(run: PublishedRun, catalog: Catalog) -> Predicted:
    if run.metric not in METRICS:
        raise RowUnreadable(f"metric {run.metric!r} is not one chipfit predicts; use one of {', '.join(METRICS)}")
    hw_id, devices = resolve_row_hardware(run.hardware, catalog)
    devices = run.devices or devices
    network = row_network(run.hardware, NODE_SIZE.get(catalog.get(hw_id).hw_class) or 1)
    model = resolve_row_model(run.model)
    _check_params(run, model)
    if model.spec is None or (run.kind in SERVING_KINDS and not model.generative):
        return _forward(run, model, catalog, hw_id, devices, network)
    return (_llm_serve if run.kind in SERVING_KINDS else _llm_train)(run, model, catalog, hw_id, devices, network)


def predict_row(row: dict, catalog: Catalog) -> RowResult:
    """Prediction (or the one-sentence reason there is none) for one published row."""
    published = None
    try:
        published = float(row.get("value") or "nan")
    except ValueError:
        pass
    result = RowResult(id=row.get("id") or "?", kind=row.get("kind") or "?", metric=row.get("metric") or "?",
                       unit=row.get("unit") or "", published=published if published == published else None)
    try:
        run = read_run(row)
        predicted = _predict(run, catalog)
        result.predicted, result.how = METRICS[run.metric](predicted, run), predicted.how
    except (RowUnreadable, ChipfitError) as err:
        result.reason = str(err).rstrip(".")
    return result


def _rows(path: Path) -> list[dict]:
    """Every row of one file; a file that is not a UTF-8 CSV is one sentence."""
    check_file(path, "Published figures file", "give the path to published.csv")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as err:
        raise ChipfitError(f"Published figures file {path} is not a UTF-8 CSV ({err}); give a file with the columns "
                           "of published.csv.") from None
    return rows


def validate_published(paths: str | Path | Iterable[str | Path], catalog: Catalog | None = None) -> Validation:
    """Predict every row of one or more published-runs CSVs; the summary gives median and p90 of |r - 1| per kind."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    catalog = catalog or load_catalog()
    rows = [predict_row(row, catalog) for row in [r for path in paths for r in _rows(Path(path))]]
    return Validation(rows=rows, summary=summarize(rows))


def format_table(v: Validation) -> str:
    """The plain-text table `chipfit validate --published` prints: every row, then the summary per kind."""
    lines = [f"{'id':<32} {'kind':<17} {'predicted':>11} {'published':>11} {'error':>7}  unit / reason"]
    for r in v.rows:
        published = "-" if r.published is None else f"{r.published:.4g}"
        if r.predicted is None:
            lines.append(f"{r.id:<32} {r.kind:<17} {'-':>11} {published:>11} {'-':>7}  not predicted: {r.reason}")
        else:
            lines.append(f"{r.id:<32} {r.kind:<17} {r.predicted:>11.4g} {published:>11} {r.error:>7.1%}  {r.unit}")
    lines.append("")
    lines.append(f"{'kind':<17} {'rows':>5} {'predicted':>9} {'median':>8} {'p90':>8}")
    for kind, s in v.summary.items():
        med = "-" if math.isnan(s["median"]) else f"{s['median']:.1%}"
        p90 = "-" if math.isnan(s["p90"]) else f"{s['p90']:.1%}"
        lines.append(f"{kind:<17} {s['rows']:>5} {s['predicted']:>9} {med:>8} {p90:>8}")
    return "\n".join(lines)

