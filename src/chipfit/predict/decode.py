"""LLM inference on a catalog device (or a tensor-parallel group): prefill, then token-by-token decode.

Pure: a TransformerSpec (or a library entry) and a Hardware entry in, an InferenceEstimate out.

    prefill      = matmuls + attention + all-reduces   (kernels one after another)
    matmuls      = FLOPs / (peak * eff_matmul) + bytes / (bandwidth * eff_memory) on a GPU (tiles pay their loads
                   and their math: NeuSight), the larger of the two elsewhere
    attention    = max(FLOPs / (16-bit peak * attention eff), bytes / (bandwidth * eff_memory))
    decode step  = the same at one new token per sequence, with context c, for c = P .. P+G-1

Prefill FLOPs: 2 * tokens * (layer matmul weights a token uses) + causal attention
2 * b * pairs * heads * (qk head + v head) per layer, pairs = P^2/2 (kernels skip the masked half;
with a sliding window w, w^2/2 + (P - w) * w) + the LM head at the last position only. An
encoder-decoder's prefill is its encoder over the prompt (full attention) and the cross-attention
keys and values; its decoder then starts from nothing. Decode FLOPs per step: 2 * b * (matmul weights
incl. LM head) + 2 * b * c * heads * (qk head + v head) per layer (c capped at the window; MLA in its
absorbed form over the latent; cross-attention over the encoder's positions). Decode bytes per step:
every weight a step touches (all matrices and norms, the embedding rows looked up; for MoE the experts
at least one token reaches and the shared ones) plus the whole KV cache read (MLA: the latent and
rotary key; local layers: the window; encoder-decoders: the cross-attention cache too). Weights are
stored at the weight precision; fp8/int8 weights compute at their own peak (W8A8), int4 at 16 bits
(W4A16, dequantised in the kernel). Memory holds every weight, every expert included. An engine release
whose decode kernel reads a GQA/MQA cache once per query head (host.kv_reads_per_query_head) reads it
heads / kv_heads times per step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..catalog.schema import Hardware
from ..errors import ChipfitError
from ..workload.llm import Layer, TransformerSpec, as_spec
from ..workload.workload import BYTES_PER_ELEMENT
from .efficiency import MATMUL_EFFICIENCY, Efficiency, default_efficiency
from .gpu_efficiency import ATTENTION_GPU_EFFICIENCY
from .host import decode_host_s, describe_serving, kv_reads_per_query_head, serving_framework
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


def _decoder_layers(spec: TransformerSpec) -> list[Layer]:
    """The layers serving runs per generated token: the decoder's (all layers of a decoder-only model)."""
    return [k for k in spec.layer_kinds() if k.stack == "layers"]


def _encoder_layers(spec: TransformerSpec) -> list[Layer]:
    return [k for k in spec.layer_kinds() if k.stack == "encoder"]


def _weights_touched(spec: TransformerSpec, layers: list[Layer], tokens: float, wbytes: float,
                     head: bool = True) -> float:
    """Bytes of weights one forward of `layers` over `tokens` tokens reads: attention, norms, the experts
    reached plus the shared ones (or the dense MLP), router, and with `head` the LM head and the embedding
    rows looked up."""
    expert = spec.linear_params(spec.expert_matrices())
    total = 0.0
    for layer in layers:
        if layer.moe:
            mlp = expert * (experts_reached(spec, tokens) + spec.shared_experts) + spec.hidden * spec.experts
        else:
            mlp = spec.mlp_params(layer)
        total += spec.attention_params(layer) + mlp + 2 * spec.norm_params
    if head:
        rows = min(tokens, spec.vocab) * spec.hidden * (2 if spec.max_positions else 1)
        total += spec.norm_params + spec.vocab * spec.hidden + rows
    return total * wbytes


def _layer_matmul(spec: TransformerSpec, layers: list[Layer]) -> int:
    """Matmul weights one token runs through in `layers` (top_k and shared experts and the router for MoE)."""
    return sum(spec.layer_matmul_params(k, active=True) for k in layers)


def _activation_traffic(spec: TransformerSpec, layers: list[Layer], tokens: float, act: float) -> float:
    """Bytes the layer matmuls read and write as activations: tokens * (in + out) per matrix."""
    attn = sum(i + o for _, i, o in spec.attention_matrices())
    routed = sum(i + o for _, i, o in spec.expert_matrices()) * (spec.top_k + spec.shared_experts)
    dense = sum(i + o for _, i, o in spec.mlp_matrices(spec.dense_width))
    return sum(tokens * (attn + (routed if k.moe else dense)) for k in layers) * act


def _head_width(spec: TransformerSpec) -> int:
    """Query/key plus value head width: attention FLOPs per head and (query, key) pair are 2x this."""
    return spec.score_head_dim + spec.value_head_dim


def causal_pairs(tokens: int, window: int) -> float:
    """(query, key) pairs causal attention kernels compute over `tokens` positions: half of P x P (the masked
    half skipped), or with a window of w keys, w^2/2 for the first w positions and w for each later one."""
    if not window or tokens <= window:
        return tokens * tokens / 2
    return window * window / 2 + (tokens - window) * window


def _decode_attention_flops(spec: TransformerSpec, layers: list[Layer], batch: int, context: np.ndarray) -> np.ndarray:
    """Attention FLOPs of one decode step per layer summed: 2 * b * heads * width * keys attended, with MLA in
    its absorbed form over the cached latent (width: 2 * kv_lora_rank + rope_head_dim)."""
    width = 2 * spec.kv_lora_rank + spec.rope_head_dim if spec.mla else _head_width(spec)
    keys = sum(np.minimum(context, k.window) if k.window else context for k in layers)
    return 2 * batch * spec.heads * width * keys


@dataclass(frozen=True)
class _Rates:
    """What a phase's kernels run at: matmuls at the weight precision's peak, attention at the activations'."""

    matmul: float  # FLOP/s, efficiency applied
    attention: float  # FLOP/s, efficiency applied
    bandwidth: float  # bytes/s, efficiency applied
    pipelined: bool  # GPU tiles: a matmul's loads and math add up (NeuSight), not the larger of the two

    def matmuls(self, flops, nbytes):
        """Seconds of a phase's matrix products: flops / rate + bytes / bandwidth on a GPU, which is
        gpu_efficiency.matrix_efficiency's e * I / (I + balance) at the attained balance (peak x e over bandwidth
        x e); the larger of the two elsewhere."""
        compute, memory = flops / self.matmul, nbytes / self.bandwidth
        return compute + memory if self.pipelined else np.maximum(compute, memory)

    def attention_s(self, flops, nbytes):
        return np.maximum(flops / self.attention, nbytes / self.bandwidth)


def _rates(hw: Hardware, eff: Efficiency, peak: float, attention_peak: float) -> _Rates:
    gpu = hw.hw_class == "gpu"
    attention = min(1.0, ATTENTION_GPU_EFFICIENCY * eff.matmul / MATMUL_EFFICIENCY) if gpu else eff.matmul
    return _Rates(matmul=peak * eff.matmul, attention=attention_peak * attention,
                  bandwidth=hw.mem_bw_bytes_per_s.value * eff.memory, pipelined=gpu)


def _times(spec: TransformerSpec, hw: Hardware, eff: Efficiency, batch: int, prompt: int, generate: int,
           wb: float, kvb: float, act: float, peaks: tuple[float, float], devices: int, allreduce,
           kv_reads: float) -> _Times:
    """Prefill and each decode step as the sum of their kernel families (one after another on the device):
    the matrix products, the attention kernels, the tensor-parallel all-reduces."""
    rates = _rates(hw, eff, *peaks)
    h, decoder = spec.hidden, _decoder_layers(spec)
    # An encoder-decoder's encoder reads the prompt (Whisper: its fixed audio frames) and the decoder starts
    # from nothing; a decoder-only model's prompt fills its own cache.
    enc = spec.encoder_tokens(prompt) if spec.encoder_decoder else 0
    cached = 0 if spec.encoder_decoder else prompt

    tokens = batch * cached
    mm_flops = 2 * tokens * _layer_matmul(spec, decoder) + 2 * batch * h * spec.vocab
    mm_bytes = _weights_touched(spec, decoder, tokens, wb) + _activation_traffic(spec, decoder, tokens, act)
    attn_flops = 2 * batch * spec.heads * _head_width(spec) * sum(causal_pairs(cached, k.window) for k in decoder)
    attn_bytes = batch * spec.kv_cache_bytes(cached, kvb)
    comm_prefill = 2 * len(decoder) * allreduce(tokens * h * act)
    if enc:
        encoder, enc_tokens = _encoder_layers(spec), batch * enc
        cross_kv = 2 * spec.kv_heads * spec.head_dim * h * len(decoder)  # K and V projections of the encoder output
        mm_flops += 2 * enc_tokens * (_layer_matmul(spec, encoder) + cross_kv)
        mm_bytes += (_weights_touched(spec, encoder, enc_tokens, wb, head=False)
                     + _activation_traffic(spec, encoder, enc_tokens, act))
        attn_flops += 2 * batch * spec.heads * _head_width(spec) * enc * enc * len(encoder)
        attn_bytes += batch * spec.cross_kv_bytes(enc, kvb)
        comm_prefill += 2 * len(encoder) * allreduce(enc_tokens * h * act)
    compute = mm_flops / devices / rates.matmul + attn_flops / devices / rates.attention
    memory = (mm_bytes + attn_bytes) / devices / rates.bandwidth
    prefill = (float(rates.matmuls(mm_flops / devices, mm_bytes / devices))
               + float(rates.attention_s(attn_flops / devices, attn_bytes / devices)) + comm_prefill)

    context = cached + 1 + np.arange(generate, dtype=float)  # positions attended, the new token included
    step_mm_flops = 2 * batch * (_layer_matmul(spec, decoder) + h * spec.vocab)
    step_mm_bytes = _weights_touched(spec, decoder, batch, wb)
    step_attn_flops = _decode_attention_flops(spec, decoder, batch, context)
    step_attn_bytes = batch * (spec.kv_cache_bytes(context, kvb) + spec.cross_kv_bytes(enc, kvb)) * kv_reads
    if enc:
        step_attn_flops = step_attn_flops + 2 * batch * spec.heads * _head_width(spec) * enc * len(decoder)
    step_compute = step_mm_flops / devices / rates.matmul + step_attn_flops / devices / rates.attention
    step_memory = (step_mm_bytes + step_attn_bytes) / devices / rates.bandwidth
    comm_step = 2 * len(decoder) * allreduce(batch * h * act)
    steps = (rates.matmuls(step_mm_flops / devices, step_mm_bytes / devices)
             + rates.attention_s(step_attn_flops / devices, step_attn_bytes / devices) + comm_step)
    steps = np.broadcast_to(steps, context.shape).astype(float)
    return _Times(
        prefill_s=prefill,
        prefill_bound="compute" if compute >= memory else "memory",
        step_s=steps,
        decode_bound="compute" if np.sum(step_compute) >= np.sum(step_memory) else "memory",
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
    if spec.encoder_decoder and spec.max_positions is not None and generate > spec.max_positions:
        raise ChipfitError(
            f"{generate} generated tokens exceed the {spec.max_positions} decoder positions of {spec.name!r}; "
            f"generate {spec.max_positions} or fewer (the prompt goes to the encoder)."
        )
    if not spec.encoder_decoder and spec.max_positions is not None and prompt + generate > spec.max_positions:
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
    spec,
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
    spec = as_spec(spec)
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
    attention_peak = peak_for(hw, "fp32" if act == 4 else "bf16")[0] or peak
    eff = efficiency or default_efficiency(hw)
    kv_reads = spec.heads / spec.kv_heads if kv_reads_per_query_head(serving) and not spec.mla else 1.0
    assumptions = [
        f"efficiency: matmul {eff.matmul:.0%} of the {used} peak, memory {eff.memory:.0%} of bandwidth ({eff.source})",
        f"weights stored at {weight_precision} ({wb:g} B/parameter, quantisation scales not counted); "
        f"KV cache at {kv_precision}; activations at {8 * act} bits",
        "prefill: all requests arrive together; attention causal (half of S x S), logits at the last position only; "
        "time to first token is the whole batch's prefill",
        "decode: each step reads every weight it touches and the whole KV cache; no speculative decoding",
        "kernels one after another: a phase takes its matrix products, then its attention, then its all-reduces"
        + (f"; GPU matmuls pay their loads and their math (FLOPs / (peak x {eff.matmul:.0%}) + bytes / (bandwidth x "
           f"{eff.memory:.0%}), NeuSight-style tiles), attention at {ATTENTION_GPU_EFFICIENCY:.0%} of the 16-bit "
           "peak (FlashAttention-2 on H100)" if hw.hw_class == "gpu" else ""),
    ]
    if kv_reads > 1:
        assumptions.append(f"decode attention of {serving} reads each KV head once per query head ({kv_reads:g} "
                           "times per step: one thread block per query head, no grouped-query kernel before XQA)")
    if spec.moe:
        assumptions.append(f"MoE: uniform top-{spec.top_k} routing; a step reads the experts at least one token reaches"
                           + (f" and the {spec.shared_experts} shared" if spec.shared_experts else "")
                           + "; memory holds every expert")
    if spec.mla:
        assumptions.append(f"MLA: the cache holds the {spec.kv_lora_rank}-wide latent and the "
                           f"{spec.rope_head_dim}-wide rotary key per token and layer; decode attends over the latent "
                           "(absorbed projections)")
    if spec.sliding_window:
        assumptions.append(f"sliding window: local layers cache and attend to at most {spec.sliding_window} tokens")
    if spec.encoder_decoder:
        assumptions.append("encoder-decoder: prefill runs the encoder over the prompt "
                           f"({spec.encoder_tokens(prompt_tokens)} positions) and projects its cross-attention keys "
                           "and values once; decode runs the decoder only")

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

    # Memory per device: every weight (every expert); KV heads are replicated when there are more devices than
    # KV heads, and MLA's latent cache, shared by all heads, on every device.
    kv_share = 1.0 if spec.mla else math.ceil(spec.kv_heads / devices) / spec.kv_heads
    weights = spec.params() * wb / devices
    if spec.encoder_decoder:
        kv_per_seq = (spec.kv_cache_bytes(generated_tokens, kvb)
                      + spec.cross_kv_bytes(spec.encoder_tokens(prompt_tokens), kvb)) * kv_share
    else:
        kv_per_seq = spec.kv_cache_bytes(prompt_tokens + generated_tokens, kvb) * kv_share
    inner = max(spec.ffn * (spec.top_k + spec.shared_experts) if spec.moe else 0, spec.dense_width)
    width = inner * (3 if spec.gated_mlp else 2) / devices
    workspace = spec.encoder_tokens(prompt_tokens) * (2 * spec.hidden + width) * act
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
        t = _times(spec, hw, e, batch, prompt_tokens, generated_tokens, wb, kvb, act, (peak, attention_peak),
                   devices, allreduce, kv_reads)
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
