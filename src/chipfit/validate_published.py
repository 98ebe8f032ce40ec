"""Check predictions against figures that papers, model cards and MLPerf logs published.

Each row of `published.csv` is predicted from its own inputs only (model, parameters, tokens or
samples, sequence, global batch, hardware, device count, precision), never from its `value`:

- LLM training: the analytic transformer profile `compare --spec` uses (workload.llm.profile_spec)
  of the row's published architecture, per micro-batch; the plan search
  (predict.plans) picks the fastest plan that fits on the row's device count (the fewest
  device-hours where the row gives no count), and its step time gives tokens/s, hours, energy.
- CNNs: the traced zoo model (ResNet-50) on the roofline, data parallel over the devices; rows
  run in TensorRT get the engine's fused graph, NVIDIA's MLPerf MXNet rows its fused batch norms
  (workload.fusion).
- Whole-run hours divide by WHOLE_RUN_GOODPUT for restarts, evaluation and lost work.
A row that cannot be predicted says why; no row is dropped.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from .catalog import Catalog, load_catalog
from .errors import ChipfitError, check_file
from .predict import Plan, predict
from .predict.parallel import GBIT, NETWORKS, Network
from .predict.plans import scale_profile, search_plans
from .predictors import plan_shape as shape_of
from .workload.fusion import fuse_for_engine, fuse_into_norms
from .workload.llm import TransformerSpec, profile_spec
from .workload.profile import Profile
from .workload.workload import Workload

# Share of wall-clock time a large run spends on useful training steps: Llama 3 reports "higher
# than 90% effective training time" over its 54-day pre-training snapshot (Dubey et al. 2024,
# "The Llama 3 Herd of Models", Sec. 3.3.4). Whole-run device-hours are step time / this.
WHOLE_RUN_GOODPUT = 0.90
# Global batch where a throughput row gives none: 4M tokens, the LLaMA recipe (Touvron et al.
# 2023, Table 2), near GPT-3 175B's 3.2M (Brown et al. 2020, Table 2.1).
DEFAULT_BATCH_TOKENS = 4_000_000
# Sequence length where a row gives none: GPT-3's 2048 (Brown et al. 2020).
DEFAULT_SEQ_LEN = 2048
# Per-device batch of CNN rows that give none: the ResNet-50 reference batch of 256 per 8 GPUs
# scaled linearly (Goyal et al. 2017, "Accurate, Large Minibatch SGD") is what NVIDIA's
# DeepLearningExamples trains at per GPU (README: --batch-size 256 with AMP).
CNN_BATCH = 256
# An MI250X package holds two graphics compute dies (AMD MI250X page); rows count dies.
GCDS_PER_MI250X = 2

# Architectures of the named models, each from its paper, model card or released config; each
# reproduces its row's parameter count within 1% (tests/test_published.py).
_SPECS = (
    (r"llama-7b", TransformerSpec(32, 4096, 32, 32, 11008, 32000, name="LLaMA-7B"),
     "Touvron et al. 2023, LLaMA, Table 2; ffn and vocab from the released params (HF config)"),
    (r"llama-65b", TransformerSpec(80, 8192, 64, 64, 22016, 32000, name="LLaMA-65B"),
     "Touvron et al. 2023, LLaMA, Table 2; ffn and vocab from the released params (HF config)"),
    (r"llama 2 70b", TransformerSpec(80, 8192, 64, 8, 28672, 32000, name="Llama-2-70B"),
     "Touvron et al. 2023, Llama 2, Sec. 2 (GQA, 8 KV heads); meta-llama/Llama-2-70b-hf config.json"),
    (r"bloom-176b", TransformerSpec(70, 14336, 112, 112, 57344, 250880, tied_embeddings=True, gated_mlp=False,
                                    norm="layer", bias=True, name="BLOOM-176B"),
     "BigScience 2022, BLOOM (arXiv:2211.05100), Table 3 (ALiBi, 4h GELU MLP, 250,880 vocab)"),
    (r"palm 540b", TransformerSpec(118, 18432, 48, 1, 73728, 256000, tied_embeddings=True, norm="layer",
                                   head_dim=256, name="PaLM-540B"),
     "Chowdhery et al. 2022, PaLM, Table 1 and Sec. 2 (SwiGLU d_ff = 4 d_model, multi-query with head size 256, "
     "256k vocabulary, shared input and output embeddings)"),
    (r"gpt 1t", TransformerSpec(128, 25600, 160, 160, 102400, 51200, tied_embeddings=True, gated_mlp=False,
                                norm="layer", max_positions=2048, bias=True, name="GPT-1T"),
     "Narayanan et al. 2021, Megatron-LM SC'21, Table 1 (GPT: 4h MLP, 51,200 padded vocab)"),
    (r"mpt-7b", TransformerSpec(32, 4096, 32, 32, 16384, 50432, tied_embeddings=True, gated_mlp=False,
                                norm="layer", name="MPT-7B"),
     "MosaicML MPT-7B model card (d_model 4096, 32 layers, 32 heads, expansion 4, vocab 50432, ALiBi)"),
    (r"mpt-70b", TransformerSpec(80, 8192, 64, 64, 32768, 50368, tied_embeddings=True, gated_mlp=False,
                                 norm="layer", name="MPT-70B"),
     "llm-foundry mpt-70b config (d_model 8192, n_layers 80, n_heads 64, expansion 4, vocab 50368)"),
    (r"175b", TransformerSpec(96, 12288, 96, 96, 49152, 50257, tied_embeddings=True, gated_mlp=False,
                              norm="layer", max_positions=2048, bias=True, name="GPT-3-175B"),
     "Brown et al. 2020, GPT-3, Table 2.1 (4h MLP, GPT-2 vocabulary, 2048 learned positions)"),
)
# How each source counts FLOPs (../shared/validation/README.md): PaLM and MosaicML count the
# attention FLOPs; Megatron-LM counts the recomputed forward of the plan (hardware FLOPs).
_HARDWARE_FLOPS_METRICS = ("tflops_per_device", "fraction_of_peak")

# Catalog ids for the hardware names rows use; patterns are tried against catalog ids.
_HARDWARE = (
    (r"a100.*80gb", r"^nvidia-a100-sxm4-80gb$"),
    (r"h100", r"^nvidia-h100-sxm5-80gb$"),
    (r"v100-sxm2-16gb", r"^nvidia-v100-sxm2-16gb$"),
    (r"tpu v4", r"tpu-?v4(?!i)"),
    (r"tpu v3", r"tpu-?v3"),
    (r"mi250x", r"mi250x"),
)

# Clusters a row's hardware column names, by their published scale-out network (predict.parallel.NETWORKS).
_CLUSTER_NETWORKS = (
    ("jean zay", "opa-4x100"),
    ("frontier", "slingshot-frontier"),
)


@dataclass
class RowResult:
    """One published row against its prediction; `reason` says why there is no prediction."""

    id: str
    kind: str
    metric: str
    unit: str
    published: float
    predicted: float | None = None
    reason: str = ""
    how: str = ""

    @property
    def error(self) -> float | None:
        """|predicted / published - 1|."""
        return None if self.predicted is None else abs(self.predicted / self.published - 1)

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


# --- parsing the row's inputs ------------------------------------------------------------------

def _number(text: str) -> float | None:
    m = re.match(r"\s*~?([\d.,]+(?:e[+-]?\d+)?)", text or "")
    return float(m.group(1).replace(",", "")) if m else None


def parse_devices(text: str) -> int | None:
    n = _number(text)
    return int(n) if n else None


def parse_batch(text: str, seq_len: int | None) -> int | None:
    """Global batch in sequences (or samples): '2048 seqs (4.2M tokens)', '4M tokens', '3264'."""
    if not text:
        return None
    m = re.search(r"([\d.]+)\s*M tokens", text)
    if m and "seqs" not in text:
        return round(float(m.group(1)) * 1e6 / (seq_len or DEFAULT_SEQ_LEN))
    m = re.search(r"([\d,]+)\s*seqs", text)
    return int(m.group(1).replace(",", "")) if m else parse_devices(text)


def parse_amount(text: str) -> tuple[str, float] | None:
    """('tokens', n), ('flops', n) or ('samples', epochs x images) from tokens_or_samples."""
    if not text:
        return None
    m = re.search(r"~?([\d.]+)\s*epochs\s*x\s*([\d,]+)", text)
    if m:
        return "samples", float(m.group(1)) * float(m.group(2).replace(",", ""))
    n = _number(text)
    if n is None:
        return None
    return ("flops", n) if "FLOPs" in text else ("tokens", n)


def parse_precision(text: str, hw_id: str) -> str:
    t = text.lower()
    if "fp8" in t:
        return "fp8"
    if "int8" in t:
        return "int8"
    if ("fp16" in t or t.strip() == "amp") and "bf16" not in t:
        return "fp16"  # plain "AMP" is torch.cuda.amp, whose default dtype is float16
    return "bf16"


def plan_hints(text: str) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """ZeRO stages and recomputation a row's precision column pins ('FULL_SHARD', 'act-ckpt')."""
    t = text.lower()
    zero = (3,) if "full_shard" in t else (0, 1, 2, 3)
    recompute = (False,) if "no act-ckpt" in t else (True,) if "act-ckpt" in t else (False, True)
    return zero, recompute


def catalog_id(hardware: str, catalog: Catalog) -> str | None:
    text = hardware.lower()
    for name, id_pattern in _HARDWARE:
        if re.search(name, text):
            hits = sorted(h for h in catalog.hardware if re.search(id_pattern, h))
            return hits[0] if hits else None
    return None


def model_spec(model: str) -> tuple[TransformerSpec, str] | None:
    """The published architecture of a row's model, and its source."""
    text = model.lower()
    for pattern, spec, source in _SPECS:
        if re.search(pattern, text):
            return spec, source
    return None


def row_network(hardware: str) -> Network | None:
    """The scale-out network the row's hardware column names: a rate ('(1600 Gbps RoCE)' per 8-GPU
    node) or a cluster whose fabric is published."""
    m = re.search(r"(\d+)\s*Gbps\s*RoCE", hardware)
    if m:
        gbps = float(m.group(1))
        return Network(f"RoCE, {gbps:g} Gb/s per 8 GPUs", gbps * GBIT / 8, "the published row's hardware column")
    for cluster, key in _CLUSTER_NETWORKS:
        if cluster in hardware.lower():
            return NETWORKS[key]
    return None


# --- predicting one row ----------------------------------------------------------------------------

class _Unpredictable(Exception):
    """A row the inputs do not determine; the message is the reason shown."""


def _llm_train(row: dict, catalog: Catalog, hw_id: str) -> tuple[float, str]:
    params = float(row["params"])
    seq = int(_number(row["seq_len"]) or DEFAULT_SEQ_LEN)
    got = model_spec(row["model"])
    if got is None:
        raise _Unpredictable(f"no published decoder-only architecture for {row['model']}")
    spec, shape_src = got
    shape = shape_of(spec, seq)
    amount = parse_amount(row["tokens_or_samples"])
    tokens = None
    if amount is not None:
        tokens = amount[1] if amount[0] == "tokens" else amount[1] / (6 * params)
    batch = parse_batch(row["global_batch"], seq) or round(DEFAULT_BATCH_TOKENS / seq)
    devices = parse_devices(row["device_count"])
    # MI250X rows count GCDs, half a package each; the catalog entry is the whole package.
    per_package = GCDS_PER_MI250X if "gcd" in row["device_count"].lower() else 1
    if devices:
        devices //= per_package
    precision = parse_precision(row["precision"], hw_id)
    hw = catalog.get(hw_id)
    zero_stages, recompute = plan_hints(row["precision"])
    if row["kind"] in ("train_total", "mlperf_train") and tokens is None:
        raise _Unpredictable("the row gives no number of tokens or samples trained")
    job = Workload(model=row["model"], batch=batch, seq_len=seq, tokens=tokens or float(batch * seq),
                   precision=precision)
    search = search_plans(lambda b: profile_spec(spec, batch=b, seq_len=seq, precision=precision), shape, job, hw,
                          devices=devices, max_devices=None if devices else batch,
                          objective="time" if devices else "device_hours", network=row_network(row["hardware"]),
                          zero_stages=zero_stages, recompute=recompute)
    best = search.best
    if best is None:
        raise _Unpredictable(f"no plan fits: {search.why}")
    n = best.plan.devices
    tok_per_s_dev = best.global_batch * seq / best.step_time_s / n
    how = (f"{best.plan.describe()} on {n} x {hw_id}, micro-batch {best.micro_batch}, {precision}; "
           f"shape {shape.layers}x{shape.hidden} ({shape_src})")
    metric, kind = row["metric"], row["kind"]
    peak = hw.peak(precision) or hw.peak("bf16")
    attention_per_token = 12 * spec.layers * spec.q_dim * seq  # PaLM App. B: 6N + 12 L H Q T (H heads of Q)
    if metric == "gpu_hours":
        return best.device_hours / WHOLE_RUN_GOODPUT, how + f"; goodput {WHOLE_RUN_GOODPUT:.0%}"
    if metric in ("energy_dynamic", "energy"):
        if hw.tdp_watts is None:
            raise _Unpredictable(f"the catalog has no TDP for {hw.name}")
        hours = best.device_hours / WHOLE_RUN_GOODPUT
        pue = 1.0 if metric == "energy_dynamic" else 1.10
        return hours * hw.tdp_watts.value * pue / 1e6, how + f"; {hw.tdp_watts.value:g} W TDP, PUE {pue:g}"
    if metric == "tokens_per_s_per_device":
        return tok_per_s_dev, how
    if metric == "mfu":
        return 100 * tok_per_s_dev * (6 * params + attention_per_token) / peak, how + "; MFU incl. attention"
    if metric in _HARDWARE_FLOPS_METRICS:
        passes = 4 if best.plan.activation_checkpointing else 3
        flops = 2 * params * passes * (1 + seq / (6 * shape.hidden)) * tok_per_s_dev
        if metric == "tflops_per_device":
            return flops / 1e12, how + "; Megatron hardware FLOPs (recomputed forward counted)"
        base = _number(row["unit"].split("of")[-1]) if "of" in row["unit"] else None
        basis = base * 1e12 * per_package if base else peak
        return 100 * flops / basis, how + "; hardware FLOPs over the row's peak basis"
    if metric == "time_to_train":
        return tokens / (tok_per_s_dev * n) / 60, how
    raise _Unpredictable(f"metric {metric!r} is not predicted for LLM training")


_CNN_CACHE: dict[tuple, tuple[Profile, Profile]] = {}


def _cnn_profile(mode: str, precision: str, batch: int) -> Profile:
    """ResNet-50 at `batch`, through its traces (torch, fake tensors) at batch 1 and 2."""
    key = (mode, precision)
    if key not in _CNN_CACHE:
        from .workload import profile as trace

        _CNN_CACHE[key] = tuple(trace("resnet50", mode=mode, batch=b, precision=precision) for b in (1, 2))
    one, two = _CNN_CACHE[key]
    return scale_profile(one, batch, reference=two)


def _cnn(row: dict, catalog: Catalog, hw_id: str) -> tuple[float, str]:
    if "resnet" not in row["model"].lower():
        raise _Unpredictable(f"no zoo model for {row['model']}")
    hw = catalog.get(hw_id)
    devices = parse_devices(row["device_count"]) or 1
    precision = parse_precision(row["precision"], hw_id)
    mode = "infer" if row["kind"] in ("mlperf_infer", "infer_latency") else "train"
    given = parse_batch(row["global_batch"], None)
    batch = given or CNN_BATCH * devices
    per_device = batch // devices
    trace_precision = "bf16" if precision == "int8" else precision
    prof = _cnn_profile(mode, trace_precision, per_device)
    engine = "tensorrt" if "tensorrt" in row["precision"].lower() else None
    if engine:
        prof = fuse_for_engine(prof, precision)
    ngc_mxnet = "mxnet" in row["precision"].lower() and row["kind"] == "mlperf_train"
    if ngc_mxnet:
        prof = fuse_into_norms(prof)
    amount = parse_amount(row["tokens_or_samples"])
    samples = amount[1] if amount and amount[0] == "samples" else float(batch)
    job = Workload(model="resnet50", mode=mode, batch=per_device * devices, samples=samples, precision=precision)
    est = predict(prof, hw, job, Plan(devices=devices))
    if est.excluded_reason:
        raise _Unpredictable(est.excluded_reason)
    how = f"traced ResNet-50, batch {per_device} per device x {devices} {hw_id}, {precision}" + \
        (f", fused as {engine} runs it" if engine else "") + (", NGC MXNet's fused batch norms" if ngc_mxnet else "")
    metric = row["metric"]
    if metric == "samples_per_s":
        return est.throughput_per_s / (devices if row["kind"] == "train_throughput" else 1), how
    if metric == "time_to_train":
        return est.total_time_s / 60, how + "; evaluation passes not modelled"
    if metric == "latency_avg_batch1":
        return est.step_time_s * 1e3, how
    raise _Unpredictable(f"metric {metric!r} is not predicted for CNNs")


def predict_row(row: dict, catalog: Catalog) -> RowResult:
    """Prediction (or the reason there is none) for one published row."""
    result = RowResult(id=row["id"], kind=row["kind"], metric=row["metric"], unit=row["unit"],
                       published=float(row["value"]))
    try:
        hw_id = catalog_id(row["hardware"], catalog)
        if hw_id is None:
            raise _Unpredictable(f"the catalog has no entry for {row['hardware']}")
        if row["kind"] in ("mlperf_infer", "infer_latency") and "resnet" not in row["model"].lower():
            raise _Unpredictable("LLM serving throughput depends on prompt and output lengths and batch, "
                                 "which the row does not give")
        if "lora" in row["model"].lower():
            raise _Unpredictable("the row gives no number of samples or tokens trained")
        is_cnn = "resnet" in row["model"].lower()
        result.predicted, result.how = (_cnn if is_cnn else _llm_train)(row, catalog, hw_id)
    except (_Unpredictable, ChipfitError) as err:
        result.reason = str(err)
    return result


def validate_published(path: str | Path, catalog: Catalog | None = None) -> Validation:
    """Predict every row of a published.csv; the summary gives median and p90 of |r - 1| per kind."""
    path = Path(path)
    check_file(path, "Published figures file", "give the path to published.csv")
    catalog = catalog or load_catalog()
    with path.open(newline="") as f:
        rows = [predict_row(row, catalog) for row in csv.DictReader(f)]
    return Validation(rows=rows, summary=summarize(rows))


def format_table(v: Validation) -> str:
    """The plain-text table `chipfit validate` prints: every row, then the summary per kind."""
    lines = [f"{'id':<30} {'kind':<17} {'predicted':>12} {'published':>12} {'error':>7}  unit / reason"]
    for r in v.rows:
        if r.predicted is None:
            lines.append(f"{r.id:<30} {r.kind:<17} {'-':>12} {r.published:>12.4g} {'-':>7}  not predicted: {r.reason}")
        else:
            lines.append(f"{r.id:<30} {r.kind:<17} {r.predicted:>12.4g} {r.published:>12.4g} {r.error:>7.1%}  {r.unit}")
    lines.append("")
    lines.append(f"{'kind':<17} {'rows':>5} {'predicted':>9} {'median':>8} {'p90':>8}")
    for kind, s in v.summary.items():
        med = "-" if math.isnan(s["median"]) else f"{s['median']:.1%}"
        p90 = "-" if math.isnan(s["p90"]) else f"{s['p90']:.1%}"
        lines.append(f"{kind:<17} {s['rows']:>5} {s['predicted']:>9} {med:>8} {p90:>8}")
    return "\n".join(lines)
