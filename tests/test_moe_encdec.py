"""Mixture of experts, latent attention, sliding windows and encoder-decoders in the analytic path:
parameter and FLOP counts by hand, memory of the largest models against hand-derived figures, serving,
the plan search's expert parallelism, and every library model profiled and compared on the catalog."""

from __future__ import annotations

import json

import pytest

from chipfit.catalog import load_catalog
from chipfit.cli import main
from chipfit.comparison import compare_profile
from chipfit.errors import ChipfitError
from chipfit.predictors import plan_shape as shape_of
from chipfit.predict import Plan
from chipfit.predict.decode import causal_pairs, predict_inference
from chipfit.predict.efficiency import MATMUL_EFFICIENCY, MEMORY_EFFICIENCY
from chipfit.predict.memory import memory_per_device
from chipfit.predict.plans import search_plans
from chipfit.workload import profile
from chipfit.workload.library import models, resolve_model
from chipfit.workload.llm import profile_spec
from chipfit.workload.workload import Workload
from chipfit.workload.zoo_vision_more import BUILDERS as VISION_MORE

from .test_llm import _gpu

GB = 1e9


def _spec(name: str):
    return resolve_model(name).spec


# --- parameters by hand -------------------------------------------------------------------
def _mla_attention(h: int, heads: int, q_rank: int) -> int:
    """DeepSeek's MLA with kv_lora_rank 512, rotary 64, query/key heads 128+64, value heads 128."""
    q = h * q_rank + q_rank * heads * 192 + q_rank  # down, up and the latent's norm
    kv = h * (512 + 64) + 512 * heads * (128 + 128) + 512
    return q + kv + heads * 128 * h


def test_deepseek_v3_parameters_by_hand():
    h, v = 7168, 129280
    attn = _mla_attention(h, 128, 1536)
    expert = 3 * h * 2048
    dense = attn + 3 * h * 18432 + 2 * h
    moe = attn + 257 * expert + h * 256 + 2 * h  # 256 routed + 1 shared expert, router, two norms
    moe_active = attn + 9 * expert + h * 256 + 2 * h  # top 8 routed + the shared one
    assert _spec("deepseek-v3").params() == 2 * v * h + 3 * dense + 58 * moe + h == 671_026_404_352
    assert _spec("deepseek-v3").active_params() == 2 * v * h + 3 * dense + 58 * moe_active + h


def test_llama_4_maverick_alternates_dense_and_moe_layers():
    spec = _spec("llama-4-maverick")
    kinds = spec.layer_kinds()
    assert [k.moe for k in kinds[:4]] == [False, True, False, True] and spec.moe_layers == 24
    h = 5120
    attn = h * 5120 + 2 * h * 1024 + 5120 * h
    moe = attn + 129 * 3 * h * 8192 + 16 * h * 8 + 2 * h  # 128 routed and 1 shared, router
    dense = attn + 3 * h * 16384 + 2 * h
    assert spec.params() == 2 * 202048 * h + 24 * (moe + dense) + h


def test_t5_and_whisper_parameters_by_hand():
    # t5-small: shared tied embedding, 6 encoder layers (attention, ReLU MLP, 2 norms), 6 decoder layers
    # (self- and cross-attention, MLP, 3 norms), a final norm per stack.
    h, f = 512, 2048
    enc, dec = 4 * h * h + 2 * h * f + 2 * h, 8 * h * h + 2 * h * f + 3 * h
    assert _spec("t5-small").params() == 32128 * h + 6 * enc + 6 * dec + 2 * h
    # whisper-tiny: audio stem (2 width-3 convolutions), 1500 encoder and 448 decoder positions, biases.
    h, f = 384, 1536
    attn = 4 * (h * h + h)
    enc = attn + 2 * h * f + f + h + 4 * h
    dec = 2 * attn + 2 * h * f + f + h + 6 * h
    stem = 80 * h * 3 + h + h * h * 3 + h
    assert _spec("whisper-tiny").params() == (51865 + 448 + 1500) * h + stem + 4 * enc + 4 * dec + 4 * h


# --- FLOPs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mixtral-8x7b", "deepseek-v3", "qwen3-235b-a22b", "llama-4-maverick",
                                  "deepseek-v2"])
def test_moe_training_flops_per_token_are_six_times_the_active_parameters(name):
    spec, seq = _spec(name), 256
    prof = profile_spec(spec, mode="train", batch=1, seq_len=seq, precision="bf16")
    matmul = sum(op.flops for op in prof.ops if op.kind == "matmul")
    assert matmul == 6 * seq * spec.matmul_params(active=True)  # every matrix a token runs through, fwd + 2x bwd
    step = sum(op.flops for op in prof.ops if op.phase in ("forward", "backward"))
    non_embedding = spec.active_params() - spec.vocab * spec.hidden  # the input table is a lookup, no FLOPs
    assert step / seq == pytest.approx(6 * non_embedding, rel=0.04)


def test_sliding_window_caps_attention_and_the_kv_cache():
    mistral = _spec("mistral-7b")
    assert mistral.kv_cache_bytes(32768, 2) == mistral.kv_cache_bytes(4096, 2) == 32 * 2 * 8 * 128 * 4096 * 2
    gemma = _spec("gemma-2-9b")  # even layers local (window 4096), odd layers global
    per_layer = 2 * 8 * 256 * 2
    assert gemma.kv_cache_bytes(8192, 2) == 21 * per_layer * 4096 + 21 * per_layer * 8192
    infer = profile_spec(mistral, mode="infer", batch=1, seq_len=8192, precision="bf16")
    attention = sum(op.flops for op in infer.ops if op.kind == "attention")
    assert attention == 32 * 4 * 8192 * 4096 * 4096  # each of 8192 queries against 4096 keys
    assert causal_pairs(8192, 4096) == 4096**2 / 2 + 4096 * 4096 and causal_pairs(100, 0) == 5000


def test_mla_caches_the_latent():
    spec = _spec("deepseek-v3")
    assert spec.kv_cache_bytes(1000, 2) == 61 * (512 + 64) * 1000 * 2  # 70 KB a token against 3.9 MB for MHA


def test_encoder_runs_over_its_own_length():
    whisper = _spec("whisper-base")
    prof = profile_spec(whisper, mode="infer", batch=2, seq_len=100, precision="bf16")
    enc = next(op for op in prof.ops if op.module == "encoder.0.attn" and op.kind == "attention")
    cross = next(op for op in prof.ops if op.module == "layers.0.cross" and op.kind == "attention")
    assert enc.flops == 4 * 2 * 1500 * 1500 * 512 and not enc.causal
    assert cross.flops == 4 * 2 * 100 * 1500 * 512
    t5 = profile_spec(_spec("t5-small"), mode="train", batch=1, seq_len=64, precision="bf16")
    assert {op.module.split(".")[0] for op in t5.ops} >= {"encoder", "layers", "lm_head"}


# --- memory against hand-derived figures -----------------------------------------------------
def _train_memory(name: str, plan: Plan):
    spec = _spec(name)
    prof = profile_spec(spec, mode="train", batch=1, seq_len=4096, precision="bf16")
    job = Workload(model=name, mode="train", batch=plan.data_parallel, seq_len=4096, precision="bf16")
    return memory_per_device(prof, job, plan, "gpu", shape_of(spec, 4096))


def test_405b_training_memory_within_2_gb_of_16_bytes_per_parameter():
    h, layers = 16384, 126
    params = layers * (h * (h + 2 * 1024) + h * h + 3 * h * 53248 + 2 * h) + 2 * 128256 * h + h
    assert params == 405_853_388_800
    one = _train_memory("llama-3.1-405b", Plan())
    # Mixed-precision Adam: 2 (bf16 weights) + 2 (gradients) + 12 (fp32 master, momentum, variance) bytes.
    assert abs(one["weights"] + one["gradients"] + one["optimizer"] - 16 * params) < 2 * GB
    # tp 8 x pp 16 x dp 8 with ZeRO 1: weights and gradients over 128 ranks, optimizer state over 1024.
    plan = Plan(devices=1024, tensor_parallel=8, pipeline_parallel=16, zero_stage=1)
    split = _train_memory("llama-3.1-405b", plan)
    hand = params / 128 * 4 + params / 1024 * 12
    assert abs(split["weights"] + split["gradients"] + split["optimizer"] - hand) < 2 * GB


@pytest.mark.parametrize("name", ["deepseek-v3", "mixtral-8x22b", "qwen3-235b-a22b"])
def test_moe_training_memory_holds_every_expert(name):
    spec = _spec(name)
    total = spec.params()
    one = _train_memory(name, Plan())
    assert abs(one["weights"] + one["gradients"] + one["optimizer"] - 16 * total) < 2 * GB
    # Expert parallelism 8 over 8 data-parallel ranks: the routed experts split 8 ways, the rest replicated.
    ep = _train_memory(name, Plan(devices=8, expert_parallel=8))
    hand = 16 * ((total - spec.expert_params()) + spec.expert_params() / 8)
    assert abs(ep["weights"] + ep["gradients"] + ep["optimizer"] - hand) < 2 * GB


@pytest.mark.parametrize("name, kv_per_token", [
    ("llama-3.1-405b", 126 * 2 * 8 * 128 * 2),
    ("deepseek-v3", 61 * (512 + 64) * 2),
    ("mixtral-8x22b", 56 * 2 * 8 * 128 * 2),
])
def test_serving_memory_is_weights_and_kv_cache_within_2_gb(name, kv_per_token):
    spec = _spec(name)
    est = predict_inference(spec, _gpu(memory=2e12), batch=8, prompt_tokens=3000, generated_tokens=1000)
    hand = 2 * spec.params() + 8 * 4000 * kv_per_token
    assert abs(est.memory_breakdown["weights"] + est.memory_breakdown["kv_cache"] - hand) < 2 * GB


# --- serving ---------------------------------------------------------------------------------
def test_encoder_decoder_decodes_with_the_decoder_only():
    spec = _spec("t5-large")
    est = predict_inference(spec, _gpu(), batch=1, prompt_tokens=512, generated_tokens=1)
    h, f, layers = 1024, 4096, 24
    decoder = layers * (8 * h * h + 2 * h * f + 3 * h) + h + 32128 * h + h  # layers, final norm, tied head, one row
    kv = 24 * 2 * 1024 * 1 * 2 + 2 * 24 * 1024 * 512 * 2  # its own cache (1 token) and the cross-attention cache
    matmul = layers * (8 * h * h + 2 * h * f) + 32128 * h  # 2 FLOPs per matmul weight, no norms or embedding row
    step = 2 * matmul / (1e15 * MATMUL_EFFICIENCY) + (2 * decoder + kv) / (1e12 * MEMORY_EFFICIENCY)
    assert est.decode_step_s == pytest.approx(step, rel=1e-9)


def test_mla_decode_reads_the_latent_cache():
    ds = predict_inference(_spec("deepseek-v3"), _gpu(memory=4e12), batch=64, prompt_tokens=4000,
                           generated_tokens=100)
    assert ds.kv_cache_bytes == 64 * 61 * 576 * 4100 * 2
    assert any("MLA" in a for a in ds.assumptions)


# --- plans ------------------------------------------------------------------------------------
def test_plan_search_uses_expert_parallelism_and_prices_its_all_to_all():
    catalog = load_catalog()
    hw = catalog.get("nvidia-h100-sxm5-80gb")
    spec = _spec("mixtral-8x7b")
    workload = Workload(model="mixtral-8x7b", mode="train", batch=256, seq_len=4096, tokens=1e9, precision="bf16")
    search = search_plans(lambda b: profile_spec(spec, mode="train", batch=b, seq_len=4096, precision="bf16"),
                          shape_of(spec, 4096), workload, hw, devices=64, top=50)
    with_ep = [r for r in search.ranked if r.plan.expert_parallel > 1]
    assert with_ep and all(r.parts.expert_comm_s > 0 for r in with_ep)
    assert all(r.parts.expert_comm_s == 0 for r in search.ranked if r.plan.expert_parallel == 1)


# --- every model of the library ---------------------------------------------------------------
# The further torchvision models (zoo_vision_more) run here under `pytest -m slow`; a model of each of
# their families is traced in the default run by test_zoo_vision_more.
_ENTRIES = [pytest.param(e, id=e.name, marks=[pytest.mark.slow] * (e.zoo in VISION_MORE)) for e in models()]


@pytest.mark.parametrize("entry", _ENTRIES)
def test_every_library_model_profiles_and_compares_on_the_catalog(entry):
    catalog = load_catalog()
    if entry.spec is not None:
        seq = min(128, entry.default_seq_len)
        prof = entry.profile(mode="train", batch=1, seq_len=seq, precision="bf16")
        assert prof.params == entry.spec.params()
    else:
        seq = None
        prof = profile(entry.name, mode="infer", batch=1)
        # The published count is what trains: a text-to-image model's frozen text encoders apart.
        assert abs(prof.trainable_params / entry.published_params - 1) <= 0.01
    job = Workload(model=entry.name, mode=prof.mode, batch=1, seq_len=seq, precision=prof.dtype)
    estimates = compare_profile(prof, job, Plan(), catalog.select(), catalog)
    assert sum(1 for e in estimates if e.total_time_s) >= 20


@pytest.mark.parametrize("name", ["deepseek-v3", "meta-llama/Llama-3.1-405B", "whisper-tiny", "t5-small"])
def test_profile_command_takes_library_names_and_hub_ids(capsys, name):
    assert main(["profile", name, "--json", "--seq", "64"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == resolve_model(name).spec.params()


def test_whisper_serving_sends_the_prompt_to_the_encoder(capsys):
    spec = _spec("whisper-large-v3")
    est = predict_inference(spec, _gpu(), batch=4, prompt_tokens=3000, generated_tokens=400)
    # Self-attention cache of the 400 generated tokens and the cross-attention cache of 1500 audio frames.
    assert est.kv_cache_bytes == 4 * (2 * 32 * 1280 * 400 * 2 + 2 * 32 * 1280 * 1500 * 2)
    with pytest.raises(ChipfitError, match="500 generated tokens exceed the 448 decoder positions of 'whisper-large-v3'"):
        predict_inference(spec, _gpu(), batch=1, prompt_tokens=10, generated_tokens=500)
    assert main(["compare", "whisper-large-v3", "--infer", "--prompt", "3000", "--generate", "200", "--json",
                 "--class", "gpu"]) == 0
    assert json.loads(capsys.readouterr().out)["estimates"][0]["throughput_unit"] == "tokens/s"
