"""LLM inference on a catalog device (or a tensor-parallel group): prefill, then token-by-token decode.

Pure: a TransformerSpec and a Hardware entry in, an InferenceEstimate out.

    prefill      = max(FLOPs / (peak * eff_matmul), bytes / (bandwidth * eff_memory)) + all-reduces
    decode step  = the same at one new token per sequence, with context c, for c = P .. P+G-1

Prefill FLOPs: 2 * tokens * (layer matmul weights a token uses) + causal attention
2 * b * P^2 * heads * head_dim per layer (kernels skip the masked half) + the LM head at the last
position only. Decode FLOPs per step: 2 * b * (matmul weights incl. LM head) + 4 * b * c *
heads * head_dim per layer. Decode bytes per step: every weight a step touches (all matrices and norms,
the embedding rows looked up; for MoE the experts at least one token reaches) plus the whole
KV cache read. Weights are stored at the weight precision; fp8/int8 weights compute at
their own peak (W8A8), int4 at 16 bits (W4A16, dequantised in the kernel).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..catalog.schema import Hardware
from ..errors import ChipfitError
from ..workload.llm import TransformerSpec
from ..workload.workload import BYTES_PER_ELEMENT
from .efficiency import Efficiency, default_efficiency
from .host import decode_host_s, describe_serving, serving_framework
from .parallel import group_collective_s, topology
from .roofline import peak_for

WEIGHT_PRECISIONS = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")
KV_PRECISIONS = ("fp32", "bf16", "fp16", "fp8", "int8")
# Matrix-unit precision each weight format runs at.
COMPUTE_PRECISION = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "int8": "int8", "int4": "fp16"}
# Share of device memory an LLM server takes for weights, KV cache and activations: vLLM's
# default gpu_memory_utilization (docs.vllm.ai, engine arguments); the rest is the CUDA
# context, allocator slack and other processes.
SERVING_MEMORY_FRACTION = 0.9


@dataclass
class InferenceEstimate:
    """One LLM serving job on `devices` x `hardware` (tensor parallel); times for the whole batch.

    Bytes are per device. decode_step_s is the mean time of one decode step (one token for
    every sequence). tokens_per_s counts generated tokens of the device group over prefill
    plus decode; tokens_per_s_per_request is one sequence's decode speed.
    """

    hardware: str
    name: str
    devices: int
    batch: int
    prompt_tokens: int
    generated_tokens: int
    weight_precision: str
    kv_precision: str
    compute_precision: str = ""
    weight_bytes: float | None = None
    kv_cache_bytes: float | None = None
    memory_per_device_bytes: float | None = None
    memory_breakdown: dict[str, float] = field(default_factory=dict)
    fits: bool | None = None
    max_batch: int | None = None
    prefill_s: float | None = None
    prefill_bound: str = ""
    time_to_first_token_s: float | None = None
    decode_step_s: float | None = None
    decode_bound: str = ""
    communication_s: float | None = None
    total_s: float | None = None
    tokens_per_s: float | None = None
    tokens_per_s_per_device: float | None = None
    tokens_per_s_per_request: float | None = None
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    excluded_reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Times:
    prefill_s: float
    prefill_bound: str
    step_s: np.ndarray  # one entry per generated token
    decode_bound: str
    comm_s: float


def experts_reached(spec: TransformerSpec, tokens: float) -> float:
    """Expected experts per layer that at least one of `tokens` tokens is routed to, under uniform
    independent top-k routing: E * (1 - (1 - k/E)^tokens). All layers' weights for a dense model."""
    if not spec.moe:
        return 1.0
    return spec.experts * (1.0 - (1.0 - spec.top_k / spec.experts) ** tokens)


def _weights_touched(spec: TransformerSpec, tokens: float, wbytes: float) -> float:
    """Bytes of weights one forward over `tokens` tokens reads: attention, norms, the experts reached
    (or the dense MLP), router, LM head, and the embedding rows looked up."""
    mlp = spec.linear_params(spec.expert_matrices()) * experts_reached(spec, tokens) + spec.hidden * spec.experts
    layer = spec.linear_params(spec.attention_matrices()) + mlp + 2 * spec.norm_params
    rows = min(tokens, spec.vocab) * spec.hidden * (2 if spec.max_positions else 1)
    head = spec.norm_params + spec.vocab * spec.hidden
    return (spec.layers * layer + head + rows) * wbytes


def _active_layer_matmul(spec: TransformerSpec) -> int:
    """Matmul weights one token runs through in one layer (top_k experts and the router for MoE)."""
    return spec.layer_params(active=True) - 2 * spec.norm_params


def _activation_traffic(spec: TransformerSpec, tokens: float, act: float) -> float:
    """Bytes the layer matmuls read and write as activations: tokens * (in + out) per matrix."""
    attn = sum(i + o for _, i, o in spec.attention_matrices())
    mlp = sum(i + o for _, i, o in spec.expert_matrices()) * (spec.top_k if spec.moe else 1)
    return spec.layers * tokens * (attn + mlp) * act


def _times(spec: TransformerSpec, hw: Hardware, eff: Efficiency, batch: int, prompt: int, generate: int,
           wb: float, kvb: float, act: float, peak: float, devices: int, allreduce) -> _Times:
    bw = hw.mem_bw_bytes_per_s.value * eff.memory
    rate = peak * eff.matmul
    h, layers = spec.hidden, spec.layers
    kv_per_token = spec.kv_cache_bytes(1, kvb)

    tokens = batch * prompt
    flops = 2 * tokens * layers * _active_layer_matmul(spec) + layers * 2 * batch * prompt**2 * spec.q_dim
    flops += 2 * batch * h * spec.vocab
    moved = _weights_touched(spec, tokens, wb) + tokens * kv_per_token + _activation_traffic(spec, tokens, act)
    compute, memory = flops / devices / rate, moved / devices / bw
    comm_prefill = 2 * layers * allreduce(tokens * h * act)
    prefill = max(compute, memory) + comm_prefill

    context = prompt + 1 + np.arange(generate, dtype=float)  # positions attended, the new token included
    step_flops = 2 * batch * (spec.matmul_params(active=True)) + layers * 4 * batch * context * spec.q_dim
    step_bytes = _weights_touched(spec, batch, wb) + batch * context * kv_per_token
    step_compute, step_memory = step_flops / devices / rate, step_bytes / devices / bw
    comm_step = 2 * layers * allreduce(batch * h * act)
    steps = np.maximum(step_compute, step_memory) + comm_step
    return _Times(
        prefill_s=prefill,
        prefill_bound="compute" if compute >= memory else "memory",
        step_s=steps,
        decode_bound="compute" if step_compute.sum() >= step_memory.sum() else "memory",
        comm_s=comm_prefill + comm_step * generate,
    )


def _check(spec: TransformerSpec, batch: int, prompt: int, generate: int, weight_precision: str,
           kv_precision: str, devices: int) -> None:
    if weight_precision not in WEIGHT_PRECISIONS:
        raise ChipfitError(f"Weight precision {weight_precision!r} is not known; use one of {', '.join(WEIGHT_PRECISIONS)}.")
    if kv_precision not in KV_PRECISIONS:
        raise ChipfitError(f"KV-cache precision {kv_precision!r} is not known; use one of {', '.join(KV_PRECISIONS)}.")
    if batch < 1:
        raise ChipfitError(f"Batch {batch} is not a positive number of requests; give --batch 1 or more.")
    if prompt < 1 or generate < 1:
        raise ChipfitError(
            f"Prompt {prompt} and generated tokens {generate} must both be 1 or more; give --prompt and --generate."
        )
    if spec.max_positions is not None and prompt + generate > spec.max_positions:
        raise ChipfitError(
            f"Prompt {prompt} plus {generate} generated tokens exceed the {spec.max_positions} positions of "
            f"{spec.name!r}; shorten them to {spec.max_positions} in all."
        )
    if devices < 1:
        raise ChipfitError(f"--devices {devices} is not a device count; give 1 or more.")
    if spec.heads % devices:
        raise ChipfitError(
            f"Tensor parallelism over {devices} devices does not divide the {spec.heads} attention heads of "
            f"{spec.name!r}; give a device count that divides {spec.heads}."
        )


def predict_inference(
    spec: TransformerSpec,
    hw: Hardware,
    *,
    batch: int = 1,
    prompt_tokens: int,
    generated_tokens: int,
    weight_precision: str = "bf16",
    kv_precision: str | None = None,
    devices: int = 1,
    efficiency: Efficiency | None = None,
    framework: str | None = None,
) -> InferenceEstimate:
    """Prefill and decode of `batch` requests of `prompt_tokens` + `generated_tokens` on `devices` x `hw`.

    devices > 1 is Megatron tensor parallelism: weights and KV heads split across devices,
    two all-reduces of the activations per layer. kv_precision defaults to the weight
    precision for fp32/bf16/fp16 and to bf16 for quantised weights. `framework` names the serving stack
    (host.serving_framework): a serving engine (vllm by default, sglang, tensorrt-llm), whose device time
    decides, or pytorch, an eager decode loop whose host may.
    """
    serving = serving_framework(framework)
    kv_precision = kv_precision or (weight_precision if weight_precision in ("fp32", "bf16", "fp16") else "bf16")
    _check(spec, batch, prompt_tokens, generated_tokens, weight_precision, kv_precision, devices)
    est = InferenceEstimate(
        hardware=hw.id, name=hw.name, devices=devices, batch=batch, prompt_tokens=prompt_tokens,
        generated_tokens=generated_tokens, weight_precision=weight_precision, kv_precision=kv_precision,
    )
    if reason := hw.excluded_for(training=False):
        est.excluded_reason = reason
        return est
    wb, kvb = BYTES_PER_ELEMENT[weight_precision], BYTES_PER_ELEMENT[kv_precision]
    act = 4 if weight_precision == "fp32" else 2
    peak, used = peak_for(hw, COMPUTE_PRECISION[weight_precision])
    if peak is None or hw.mem_bw_bytes_per_s is None:
        missing = "memory bandwidth" if hw.mem_bw_bytes_per_s is None else f"{COMPUTE_PRECISION[weight_precision]} throughput"
        est.excluded_reason = f"The catalog has no sourced {missing} figure for {hw.name}, so its inference cannot be predicted."
        return est
    est.compute_precision = used
    eff = efficiency or default_efficiency(hw)
    assumptions = [
        f"efficiency: matmul {eff.matmul:.0%} of the {used} peak, memory {eff.memory:.0%} of bandwidth ({eff.source})",
        f"weights stored at {weight_precision} ({wb:g} B/parameter, quantisation scales not counted); "
        f"KV cache at {kv_precision}; activations at {8 * act} bits",
        "prefill: all requests arrive together; attention causal (half of S x S), logits at the last position only; "
        "time to first token is the whole batch's prefill",
        "decode: each step reads every weight it touches and the whole KV cache; no speculative decoding",
    ]
    if spec.moe:
        assumptions.append(f"MoE: uniform top-{spec.top_k} routing; a step reads the experts at least one token reaches")

    if devices > 1:
        topo = topology(hw)
        if topo is None:
            est.excluded_reason = (f"The catalog has no sourced interconnect bandwidth for {hw.name}, so {devices}-way "
                                   "tensor parallelism cannot be predicted; use one device.")
            return est

        def allreduce(size: float) -> float:
            return group_collective_s("all_reduce", size, devices, topo)

        assumptions.append(f"tensor parallel over {devices} devices ({topo.description}): two all-reduces of the "
                           "activations per layer, not overlapped with compute")
    else:
        def allreduce(size: float) -> float:
            return 0.0

    # Memory per device; KV heads are replicated when there are more devices than KV heads.
    kv_share = math.ceil(spec.kv_heads / devices) / spec.kv_heads
    weights = spec.params() * wb / devices
    kv_per_seq = spec.kv_cache_bytes(prompt_tokens + generated_tokens, kvb) * kv_share
    width = spec.ffn * (spec.top_k if spec.moe else 1) * (3 if spec.gated_mlp else 2) / devices
    workspace = prompt_tokens * (2 * spec.hidden + width) * act
    est.weight_bytes, est.kv_cache_bytes = weights, batch * kv_per_seq
    est.memory_breakdown = {"weights": weights, "kv_cache": batch * kv_per_seq, "prefill_activations": workspace}
    est.memory_per_device_bytes = sum(est.memory_breakdown.values())
    assumptions.append("prefill activations: one prompt's layer intermediates live at a time (chunked prefill)")
    if hw.memory_bytes is not None:
        usable = hw.memory_bytes.value * SERVING_MEMORY_FRACTION
        est.fits = est.memory_per_device_bytes <= usable
        est.max_batch = max(0, math.floor((usable - weights - workspace) / kv_per_seq))
        assumptions.append(f"usable memory {SERVING_MEMORY_FRACTION:.0%} of the device's (vLLM default)")
    else:
        assumptions.append(f"memory fit unknown: the catalog gives no memory size for {hw.name}")

    host_step = decode_host_s(spec.layers, serving)
    assumptions.append(describe_serving(serving, host_step))

    def run(e: Efficiency) -> _Times:
        t = _times(spec, hw, e, batch, prompt_tokens, generated_tokens, wb, kvb, act, peak, devices, allreduce)
        bound = "host" if host_step > float(t.step_s.mean()) else t.decode_bound
        return replace(t, step_s=np.maximum(t.step_s, host_step), prefill_s=max(t.prefill_s, host_step),
                       decode_bound=bound)

    central = run(eff)
    est.prefill_s, est.prefill_bound = central.prefill_s, central.prefill_bound
    est.time_to_first_token_s = central.prefill_s
    est.decode_step_s, est.decode_bound = float(central.step_s.mean()), central.decode_bound
    est.communication_s = central.comm_s
    est.total_s = central.prefill_s + float(central.step_s.sum())
    est.tokens_per_s = batch * generated_tokens / est.total_s
    est.tokens_per_s_per_device = est.tokens_per_s / devices
    est.tokens_per_s_per_request = 1.0 / est.decode_step_s
    for bound, e in zip(("low", "high"), eff.bounds(hw.hw_class)):
        t = run(e)
        total = t.prefill_s + float(t.step_s.sum())
        getattr(est, bound).update(prefill_s=t.prefill_s, decode_step_s=float(t.step_s.mean()), total_s=total,
                                   tokens_per_s=batch * generated_tokens / total)
    est.assumptions = assumptions
    return est
