"""The analytic LLM path: spec parsing, exact parameter counts, the profile against the tracer,
activation memory against Korthikanti et al., and inference prefill/decode by hand formulas."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chipfit.catalog.schema import Figure, Hardware
from chipfit.errors import ChipfitError
from chipfit.predict import Plan, predict
from chipfit.predict.decode import SERVING_MEMORY_FRACTION, experts_reached, predict_inference
from chipfit.predict.efficiency import MATMUL_EFFICIENCY, MEMORY_EFFICIENCY
from chipfit.workload.library import transformer_spec as spec_for_zoo
from chipfit.workload.llm import TransformerSpec, activation_bytes_per_layer, parse_spec, profile_spec
from chipfit.workload.workload import Workload

SPEC_70B = "layers=80,hidden=8192,heads=64,kv_heads=8,ffn=28672,vocab=128256"
GIB = 2**30


def _gpu(peak_bf16: float = 1e15, bw: float = 1e12, memory: float = 80 * GIB) -> Hardware:
    src = "test figure"
    return Hardware(
        id="test-gpu", name="Test GPU", vendor="test", hw_class="gpu",
        peak_flops={"bf16": Figure(peak_bf16, src, dense=True), "fp32": Figure(peak_bf16 / 16, src, dense=True)},
        memory_bytes=Figure(memory, src), mem_bw_bytes_per_s=Figure(bw, src),
    )


# --- spec and parameters -------------------------------------------------------------------
def test_params_equal_published_counts():
    assert spec_for_zoo("llama-3-8b").params() == 8_030_261_248
    assert spec_for_zoo("llama-3-70b").params() == 70_553_706_496
    assert spec_for_zoo("mixtral-8x7b").params() == 46_702_792_704
    assert spec_for_zoo("gpt2").params() == 124_439_808  # tied head, biases, learned positions, LayerNorm


def test_every_zoo_decoder_matches_its_published_count():
    from chipfit.workload import zoo

    for name, entry in zoo.ZOO.items():
        if entry.task == "causal-lm":
            assert spec_for_zoo(name).params() == entry.published_params, name


def test_moe_active_params_by_hand():
    spec = spec_for_zoo("mixtral-8x7b")
    attn = 2 * 4096 * 4096 + 2 * 4096 * 1024
    expert = 3 * 4096 * 14336
    layer_active = attn + 2 * expert + 4096 * 8 + 2 * 4096  # two experts, router, two norms
    assert spec.active_params() == 2 * 32000 * 4096 + 32 * layer_active + 4096
    assert spec.active_params() == 12_879_925_248
    assert spec_for_zoo("llama-3-8b").active_params() == 8_030_261_248  # dense: all of them


def test_parse_spec_gives_the_zoo_shape():
    spec = parse_spec(SPEC_70B)
    zoo70 = spec_for_zoo("llama-3-70b")
    assert spec.params() == 70_553_706_496
    assert (spec.layers, spec.hidden, spec.heads, spec.kv_heads, spec.ffn, spec.vocab) == (
        zoo70.layers, zoo70.hidden, zoo70.heads, zoo70.kv_heads, zoo70.ffn, zoo70.vocab)
    assert spec.head_dim == 128 and spec.kv_dim == 1024
    assert spec.to_dict()["active_params"] == spec.to_dict()["params"] == 70_553_706_496
    assert spec.name == SPEC_70B
    assert parse_spec("layers=2,hidden=64,heads=4,ffn=256,vocab=100").kv_heads == 4  # MHA by default
    moe = parse_spec("layers=32,hidden=4096,heads=32,kv_heads=8,ffn=14336,vocab=32000,experts=8,top_k=2")
    assert moe.params() == 46_702_792_704


@pytest.mark.parametrize(
    "text, words",
    [
        ("layers=80,hiden=8192,heads=64,ffn=1,vocab=2", ["'hiden' is not known", "Did you mean hidden", "Known:"]),
        ("layers=80,hidden=8192,heads=60,ffn=1,vocab=2", ["heads=60 does not divide hidden=8192"]),
        ("layers=80,hidden=8192,heads=64,kv_heads=6,ffn=1,vocab=2", ["kv_heads=6 does not divide heads=64"]),
        ("layers=80,hidden=8192,heads=64,vocab=2", ["lacks ffn"]),
        ("layers=eighty,hidden=8192,heads=64,ffn=1,vocab=2", ["layers='eighty' is not a whole number"]),
        ("layers=0,hidden=8192,heads=64,ffn=1,vocab=2", ["layers=0 is not a positive whole number"]),
        ("layers=8,layers=8,hidden=8192,heads=64,ffn=1,vocab=2", ["'layers' is given twice"]),
        ("layers=8,hidden=8192,heads=64,ffn=1,vocab=2,top_k=2", ["top_k=2 needs experts"]),
        ("layers=8,hidden=8192,heads=64,ffn=1,vocab=2,experts=8,top_k=9", ["top_k=9 must be between 1 and experts=8"]),
        ("layers=8,hidden=8192,heads=64,ffn=1,vocab=2,tied_embeddings=maybe", ["is not true or false"]),
        ("layers=8,hidden=8192,heads=64,ffn=1,vocab=2,norm=batch", ["norm='batch' is not known"]),
        ("layers=8,hidden", ["'hidden' is not key=value"]),
    ],
)
def test_parse_spec_refuses_bad_input_with_one_sentence(text, words):
    with pytest.raises(ChipfitError) as info:
        parse_spec(text)
    for word in words:
        assert word in str(info.value)


def test_spec_for_zoo_refuses_non_decoders():
    with pytest.raises(ChipfitError, match="'resnet50' is a vision model, not a transformer given by its sizes"):
        spec_for_zoo("resnet50")
    with pytest.raises(ChipfitError, match="Did you mean"):
        spec_for_zoo("llama-3-8")


def test_head_dim_other_than_hidden_over_heads():
    # Gemma 7B: 16 heads of 256 over hidden 3072; 8,537,680,896 parameters (google/gemma-7b safetensors).
    gemma = parse_spec("layers=28,hidden=3072,heads=16,head_dim=256,ffn=24576,vocab=256000,tied_embeddings=true")
    assert (gemma.q_dim, gemma.kv_dim) == (4096, 4096)
    assert gemma.params() == 8_537_680_896
    prof = profile_spec(gemma, mode="infer", batch=1, seq_len=128, precision="bf16")
    assert prof.by_kind()["attention"]["flops"] == 28 * 4 * 128 * 128 * 4096
    assert parse_spec("layers=2,hidden=64,heads=4,ffn=256,vocab=100").head_dim == 16
    with pytest.raises(ChipfitError, match="head_dim=-1 is not a whole number of 0 or more"):
        parse_spec("layers=2,hidden=64,heads=4,ffn=256,vocab=100,head_dim=-1")


def test_kv_cache_bytes_formula():
    spec = spec_for_zoo("llama-3-70b")
    assert spec.kv_cache_bytes(1000, 2) == 2 * 80 * 8 * 128 * 1000 * 2


# --- the profile ------------------------------------------------------------------------
TINY = TransformerSpec(layers=2, hidden=8, heads=2, kv_heads=1, ffn=16, vocab=10)


def test_tiny_profile_by_hand():
    prof = profile_spec(TINY, mode="train", batch=1, seq_len=4, precision="fp32", optimizer="adamw")
    # matmul weights per layer: q, o 8x8; k, v 8x4; gate, up 8x16; down 16x8 = 576; LM head 8x10.
    matmul_params = 2 * 576 + 80
    matmul = sum(op.flops for op in prof.ops if op.kind == "matmul" and op.phase == "forward")
    assert matmul == 2 * 4 * matmul_params
    assert sum(op.flops for op in prof.ops if op.kind == "matmul" and op.phase == "backward") == 2 * matmul
    attention = [op for op in prof.ops if op.kind == "attention" and op.phase == "forward"]
    assert len(attention) == 2 and all(op.causal for op in attention)
    assert sum(op.flops for op in attention) == 2 * 4 * 1 * 4 * 4 * 8  # 4*B*S*S*hidden per layer
    assert prof.params == 80 + 2 * (576 + 16) + 8 + 80 == 1352
    assert prof.flops("optimizer") == 8 * 1352
    assert prof.param_bytes == 4 * 1352
    # Saved activations, fp32 (4 B): per layer norms 2*4*T*h + attention 4*T*(3h+2kv) + 4*B*a*S
    # + MLP 4*T*(h+4f); head: ids 8*T, two inputs 2*4*T*h, log-probs 4*T*V.
    per_layer = 2 * 4 * 4 * 8 + 4 * 4 * (24 + 8) + 4 * 1 * 2 * 4 + 4 * 4 * (8 + 64)
    assert prof.activation_bytes == 2 * per_layer + 8 * 4 + 2 * 4 * 4 * 8 + 4 * 4 * 10
    assert {"layers.0", "layers.1", "embed", "lm_head", "final_norm"} <= set(prof.by_layer())


def test_activation_formula_reduces_to_korthikanti_for_gpt():
    """GPT layer (kv = h, f = 4h, GELU, 16-bit), no dropout: the paper's 34*sbh + 5*as^2*b less its
    dropout masks and dropout output (2*sbh, 3*as^2*b) is 32*sbh + 2*as^2*b."""
    s, b, h, a = 2048, 4, 4096, 32
    gpt = TransformerSpec(layers=1, hidden=h, heads=a, kv_heads=a, ffn=4 * h, vocab=8, gated_mlp=False,
                          norm="layer", bias=True)
    # Sec. 4.1 term by term without dropout: attention 10*sbh (+ 2*as^2*b), MLP 18*sbh, norms 4*sbh.
    flash = activation_bytes_per_layer(gpt, b, s, 2, flash_attention=True)
    assert flash == 32 * s * b * h + 4 * b * a * s  # + flash's fp32 log-sum-exp
    plain = activation_bytes_per_layer(gpt, b, s, 2, flash_attention=False)
    assert plain - flash == 2 * a * s * s * b


@pytest.mark.parametrize("name", ["llama-3-8b", "mixtral-8x7b"])
def test_profile_matches_the_trace_within_two_percent(name):
    from chipfit.workload import profile

    traced = profile(name, mode="train", batch=1, seq_len=128, precision="bf16")
    analytic = profile_spec(spec_for_zoo(name), mode="train", batch=1, seq_len=128, precision="bf16")
    assert analytic.flops() == pytest.approx(traced.flops(), rel=0.02)
    for phase in ("forward", "backward", "optimizer"):
        assert analytic.flops(phase) == pytest.approx(traced.flops(phase), rel=0.02)
    for kind in ("matmul", "attention"):  # the same formulas: equal to the FLOP
        assert analytic.by_kind()[kind]["flops"] == traced.by_kind()[kind]["flops"]
    assert analytic.by_kind()["matmul"]["bytes"] == traced.by_kind()["matmul"]["bytes"]
    assert (analytic.params, analytic.param_bytes) == (traced.params, traced.param_bytes)


def test_attention_count_by_hand_for_llama_8b():
    prof = profile_spec(spec_for_zoo("llama-3-8b"), mode="infer", batch=2, seq_len=256, precision="bf16")
    assert prof.by_kind()["attention"]["flops"] == 32 * 4 * 2 * 256 * 256 * 4096
    assert prof.flops("backward") == 0 and prof.activation_bytes == 0
    assert prof.param_bytes == 2 * 8_030_261_248
    # Peak live set: the logits (T*V) and the final hidden state in bf16 beat a layer's intermediates.
    assert prof.peak_activation_bytes == 512 * (128256 + 4096) * 2


def test_predict_takes_the_analytic_profile_unchanged():
    spec = parse_spec(SPEC_70B)
    prof = profile_spec(spec, mode="train", batch=1, seq_len=4096, precision="bf16")
    assert prof.model == SPEC_70B
    workload = Workload(model=prof.model, mode="train", batch=1, seq_len=4096, tokens=1e9, precision="bf16")
    est = predict(prof, _gpu(), workload, Plan(devices=1))
    flops = prof.flops()
    assert est.compute_s >= flops * 0.9 / (1e15 * MATMUL_EFFICIENCY) * 0.9  # matmuls dominate the step
    assert est.fits is False  # 70B with AdamW needs far more than 80 GiB
    assert est.total_time_s == pytest.approx(est.step_time_s * 1e9 / 4096)


def test_profile_refuses_bad_input():
    with pytest.raises(ChipfitError, match="exceeds the 1024 positions"):
        profile_spec(spec_for_zoo("gpt2"), mode="train", batch=1, seq_len=2048)
    with pytest.raises(ChipfitError, match="Precision 'int4' is not known"):
        profile_spec(TINY, mode="infer", seq_len=4, precision="int4")
    with pytest.raises(ChipfitError, match="Mode 'serve'"):
        profile_spec(TINY, mode="serve", seq_len=4)


# --- inference ----------------------------------------------------------------------------
def test_decode_at_batch_one_is_bandwidth_over_weight_bytes():
    spec = spec_for_zoo("llama-3-8b")
    est = predict_inference(spec, _gpu(), batch=1, prompt_tokens=1, generated_tokens=1, weight_precision="bf16")
    # A step reads every weight but the embedding table (one row of it) and 2 positions of KV cache.
    weights = (8_030_261_248 - 128256 * 4096 + 4096) * 2
    kv = 2 * 32 * 8 * 128 * 2 * 2
    # On a GPU the matrix products pay their loads and their 2 FLOPs per matmul weight (layers and LM head, no
    # norms, no embedding); the attention kernel then reads the cache (its 2 x 32 x 256 x 2 keys x 32 FLOPs are
    # nothing beside it).
    matmul = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336) + 4096 * 128256
    step = 2 * matmul / (1e15 * MATMUL_EFFICIENCY) + (weights + kv) / (1e12 * MEMORY_EFFICIENCY)
    assert est.decode_bound == "memory"
    assert est.decode_step_s == pytest.approx(step, rel=1e-12)
    assert weights == 2 * 7_504_928_768


def test_decode_matmuls_add_loads_and_math_on_gpus_only():
    """A GPU's matrix products take FLOPs / rate + bytes / bandwidth (tiles: NeuSight); other classes the larger."""
    spec = spec_for_zoo("llama-3-8b")
    gpu = predict_inference(spec, _gpu(), batch=256, prompt_tokens=1, generated_tokens=1)
    tpu = predict_inference(spec, replace(_gpu(), hw_class="tpu"), batch=256, prompt_tokens=1, generated_tokens=1)
    matmul = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336) + 4096 * 128256
    weights = (matmul + 32 * 2 * 4096 + 4096 + 256 * 4096) * 2  # norms and 256 embedding rows
    kv = 256 * 2 * 32 * 8 * 128 * 2 * 2
    compute, memory = 2 * 256 * matmul / (1e15 * MATMUL_EFFICIENCY), weights / (1e12 * MEMORY_EFFICIENCY)
    attention = kv / (1e12 * MEMORY_EFFICIENCY)
    assert gpu.decode_step_s == pytest.approx(compute + memory + attention, rel=1e-12)
    assert tpu.decode_step_s == pytest.approx(max(compute, memory) + attention, rel=1e-12)


def test_old_tensorrt_llm_reads_the_kv_cache_once_per_query_head():
    """Before XQA (TensorRT-LLM 0.8) the decode kernel runs one block per query head: GQA's cache is read
    heads / kv_heads times per step; a current release (or none named) reads it once."""
    spec = spec_for_zoo("llama-3-8b")  # 32 query heads, 8 KV heads

    def step(framework):
        return predict_inference(spec, _gpu(), batch=8, prompt_tokens=4095, generated_tokens=1,
                                 framework=framework).decode_step_s

    kv = 8 * 2 * 32 * 8 * 128 * 4096 * 2
    assert step("tensorrt-llm==0.6.1") - step("tensorrt-llm") == pytest.approx(3 * kv / (1e12 * MEMORY_EFFICIENCY))
    assert step("tensorrt-llm==0.8") == step("tensorrt-llm") == step("vllm")
    old = predict_inference(spec, _gpu(), batch=8, prompt_tokens=4095, generated_tokens=1,
                            framework="tensorrt-llm==0.7.1")
    assert any("once per query head (4 times per step" in a for a in old.assumptions)


def test_kv_cache_bytes_and_int8_halves_the_weights():
    spec = spec_for_zoo("llama-3-70b")
    bf16 = predict_inference(spec, _gpu(), batch=4, prompt_tokens=1000, generated_tokens=24, weight_precision="bf16")
    int8 = predict_inference(spec, _gpu(), batch=4, prompt_tokens=1000, generated_tokens=24, weight_precision="int8")
    assert bf16.kv_cache_bytes == 2 * 80 * 8 * 128 * 1024 * 4 * 2
    assert int8.kv_precision == "bf16" and int8.kv_cache_bytes == bf16.kv_cache_bytes
    assert bf16.weight_bytes == 70_553_706_496 * 2
    assert int8.weight_bytes == bf16.weight_bytes / 2
    fp8_kv = predict_inference(spec, _gpu(), batch=4, prompt_tokens=1000, generated_tokens=24, kv_precision="fp8")
    assert fp8_kv.kv_cache_bytes == bf16.kv_cache_bytes / 2


def test_max_batch_by_hand():
    spec = spec_for_zoo("llama-3-8b")
    gpu = _gpu(memory=80 * GIB)
    est = predict_inference(spec, gpu, batch=1, prompt_tokens=4095, generated_tokens=1)
    usable = SERVING_MEMORY_FRACTION * 80 * GIB
    weights = 8_030_261_248 * 2
    kv_per_seq = 2 * 32 * 1024 * 4096 * 2  # 0.5 GiB
    workspace = 4095 * (2 * 4096 + 3 * 14336) * 2  # one prompt's layer intermediates
    assert est.max_batch == int((usable - weights - workspace) // kv_per_seq) == 113
    assert predict_inference(spec, gpu, batch=113, prompt_tokens=4095, generated_tokens=1).fits is True
    assert predict_inference(spec, gpu, batch=114, prompt_tokens=4095, generated_tokens=1).fits is False


def test_long_prefill_is_compute_bound_by_hand():
    spec = spec_for_zoo("llama-3-8b")
    est = predict_inference(spec, _gpu(), batch=1, prompt_tokens=8192, generated_tokens=16)
    assert est.prefill_bound == "compute"
    layer_matmul = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    flops = 2 * 8192 * 32 * layer_matmul + 2 * 4096 * 128256
    # Bytes: every weight (norms, 8192 embedding rows) and each matrix's input and output activations.
    weights = (32 * (layer_matmul + 2 * 4096) + 4096 + 128256 * 4096 + 8192 * 4096) * 2
    activations = 32 * 8192 * (2 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 14336)) * 2
    # Causal attention (half of 8192 x 8192 per head) at 35% of the 16-bit peak; it writes the KV cache.
    attention = 32 * 2 * 32 * 256 * 8192**2 / 2
    kv = 2 * 32 * 8 * 128 * 8192 * 2
    expected = (flops / (1e15 * MATMUL_EFFICIENCY) + (weights + activations) / (1e12 * MEMORY_EFFICIENCY)
                + max(attention / (1e15 * 0.35), kv / (1e12 * MEMORY_EFFICIENCY)))
    assert est.prefill_s == pytest.approx(expected, rel=1e-12)
    assert est.time_to_first_token_s == est.prefill_s
    assert est.total_s == pytest.approx(est.prefill_s + 16 * est.decode_step_s)
    assert est.low["total_s"] < est.total_s < est.high["total_s"]
    short = predict_inference(spec, _gpu(), batch=1, prompt_tokens=1, generated_tokens=1)
    assert short.prefill_bound == "memory"


def test_large_batches_raise_throughput_but_slow_each_request():
    spec = spec_for_zoo("llama-3-8b")
    one = predict_inference(spec, _gpu(), batch=1, prompt_tokens=128, generated_tokens=128)
    many = predict_inference(spec, _gpu(), batch=64, prompt_tokens=128, generated_tokens=128)
    assert many.tokens_per_s > 20 * one.tokens_per_s
    assert many.tokens_per_s_per_request < one.tokens_per_s_per_request


def test_moe_decode_reads_only_the_experts_reached():
    spec = spec_for_zoo("mixtral-8x7b")
    assert experts_reached(spec, 1) == 2
    assert experts_reached(spec, 1000) == pytest.approx(8)
    est = predict_inference(spec, _gpu(bw=1e12, memory=200 * GIB), batch=1, prompt_tokens=1, generated_tokens=1)
    active = 12_879_925_248 - 32000 * 4096 + 4096  # active weights less the embedding table, plus one row
    matmul = active - 4096 - (32 * 2 * 4096 + 4096)  # less that row and the norms: 2 FLOPs per matmul weight
    kv = 2 * 32 * 8 * 128 * 2 * 2
    step = 2 * matmul / (1e15 * MATMUL_EFFICIENCY) + (2 * active + kv) / (1e12 * MEMORY_EFFICIENCY)
    assert est.decode_step_s == pytest.approx(step, rel=1e-12)


def test_tensor_parallel_on_the_catalog_h100():
    from chipfit.catalog import load_catalog

    h100 = load_catalog().get("nvidia-h100-sxm5-80gb")
    spec = spec_for_zoo("llama-3-70b")
    one = predict_inference(spec, h100, batch=32, prompt_tokens=2048, generated_tokens=256, weight_precision="int8")
    assert one.fits is False and one.max_batch < 32  # 70 GB of int8 weights leave room for few sequences
    eight = predict_inference(spec, h100, batch=32, prompt_tokens=2048, generated_tokens=256,
                              weight_precision="int8", devices=8)
    assert eight.weight_bytes == one.weight_bytes / 8 and eight.fits is True
    assert eight.communication_s > 0 and eight.decode_step_s < one.decode_step_s
    assert eight.compute_precision == "int8"
    assert set(eight.to_dict()) >= {"prefill_s", "decode_step_s", "tokens_per_s_per_device", "assumptions"}


def test_inference_refuses_bad_input():
    spec = spec_for_zoo("llama-3-8b")
    with pytest.raises(ChipfitError, match="does not divide the 32 attention heads"):
        predict_inference(spec, _gpu(), prompt_tokens=8, generated_tokens=8, devices=3)
    with pytest.raises(ChipfitError, match="Weight precision 'int3'"):
        predict_inference(spec, _gpu(), prompt_tokens=8, generated_tokens=8, weight_precision="int3")
    with pytest.raises(ChipfitError, match="exceed the 1024 positions"):
        predict_inference(spec_for_zoo("gpt2"), _gpu(), prompt_tokens=1000, generated_tokens=100)
    with pytest.raises(ChipfitError, match="must both be 1 or more"):
        predict_inference(spec, _gpu(), prompt_tokens=8, generated_tokens=0)
    no_bw = Hardware(id="x", name="X", vendor="x", hw_class="gpu", peak_flops={"bf16": Figure(1e15, "s", dense=True)})
    est = predict_inference(spec, no_bw, prompt_tokens=8, generated_tokens=8)
    assert "no sourced memory bandwidth" in est.excluded_reason and est.prefill_s is None
