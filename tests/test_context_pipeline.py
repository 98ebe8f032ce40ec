"""Context parallelism, uneven and interleaved pipeline stages: formulas by hand, and the search using them."""

import pytest

from chipfit.catalog import load_catalog
from chipfit.errors import ChipfitError
from chipfit.predict import Plan, plan_step
from chipfit.predict.memory import in_flight_micro_batches, memory_per_device, stage_layers, stage_share
from chipfit.predict.parallel import Topology, bubble_fraction, context_exchange_bytes, group_collective_s
from chipfit.predict.plan import ModelShape
from chipfit.predict.plans import search_plans
from chipfit.predictors import plan_shape
from chipfit.workload.llm import TransformerSpec, profile_spec
from chipfit.workload.profile import Profile
from chipfit.workload.workload import Workload

TOPO = Topology(node_size=8, intra_bw_bytes_per_s=100e9, inter_bw_bytes_per_s=10e9,
                intra_latency_s=1e-6, inter_latency_s=1e-5)
# Llama-3-405B-like sizes: 8 KV heads of 128 (kv width 1024) against hidden 16384.
SHAPE = ModelShape(layers=126, hidden=16384, heads=128, seq_len=131072, kv_dim=1024)


def prof(params=1_000_000_000, activation_bytes=64 * 2**30):
    return Profile(model="t", mode="train", batch=1, seq_len=131072, dtype="bf16", ops=[], params=params,
                   trainable_params=params, param_bytes=2 * params, activation_bytes=activation_bytes)


def test_uneven_stages_hold_the_ceiling_of_the_layers():
    assert stage_layers(126, 16) == 8 and stage_layers(128, 16) == 8 and stage_layers(80, 3) == 27
    plan = Plan(devices=16, pipeline_parallel=16, micro_batches=16)
    assert stage_share(plan, SHAPE) == pytest.approx(8 / 126)
    assert stage_share(plan, None) == pytest.approx(1 / 16)
    assert Plan(devices=1).model_parallel == 1
    with pytest.raises(ChipfitError, match="128 pipeline stages are more than the model's 126 layers"):
        Plan(devices=32, pipeline_parallel=32, virtual_stages=4).check(SHAPE)


def test_interleaving_divides_the_idle_slots_and_raises_the_first_stage_memory():
    # Narayanan et al. 2021, Sec. 2.2.2: (p - 1) / v idle slots among m busy ones.
    assert bubble_fraction(16, 16, 4) == pytest.approx((15 / 4) / (16 + 15 / 4))
    assert bubble_fraction(16, 16) == pytest.approx(15 / 31)
    # Korthikanti et al. 2022, Sec. 4.2.3: the first stage holds (1 + (p-1)/(p v)) x min(p, m) micro-batches.
    assert in_flight_micro_batches(Plan(devices=4, pipeline_parallel=4, micro_batches=8, virtual_stages=2)) == \
        pytest.approx(4 * (1 + 3 / 8))
    assert in_flight_micro_batches(Plan(devices=4, pipeline_parallel=4, micro_batches=2)) == 2
    free = Topology(node_size=8, intra_bw_bytes_per_s=1e30, inter_bw_bytes_per_s=None, intra_latency_s=0.0)
    shape = ModelShape(layers=8, hidden=1024, heads=16, seq_len=512)
    plan = Plan(devices=4, pipeline_parallel=4, micro_batches=12, virtual_stages=2)
    st = plan_step({"forward": 4.0, "backward": 8.0, "optimizer": 0.0}, plan, training=True, micro_batch=1,
                   grad_params=0, grad_bytes=2, act_bytes=2, topo=free, shape=shape)
    slot = (4.0 + 8.0) * 2 / 8
    assert st.step_s == pytest.approx((12 + 3 / 2) * slot)
    assert st.bubble_s == pytest.approx(3 / 2 * slot)


def test_context_parallel_exchanges_keys_and_values_per_layer():
    # 2 (K and V) x b 1 x s 131072 x kv 1024 / tp 8 x 2 bytes = 64 MiB per layer.
    assert context_exchange_bytes(SHAPE, 1, 8, 2) == 2 * 131072 * 1024 // 8 * 2 == 64 * 2**20
    plan = Plan(devices=8 * 16 * 16, tensor_parallel=8, context_parallel=16, pipeline_parallel=16, micro_batches=16,
                sequence_parallel=True)
    assert plan.data_parallel == 1 and plan.shard_group == 16
    st = plan_step({"forward": 0.0, "backward": 0.0, "optimizer": 0.0}, plan, training=True, micro_batch=1,
                   grad_params=0, grad_bytes=2, act_bytes=2, topo=TOPO, shape=SHAPE)
    kv = 64 * 2**20
    # CP ranks sit 8 apart (after tp 8): one per node, so the all-gather and reduce-scatter run on the network.
    per = (15 / 16 * kv / 10e9 + 15 * 1e-5)
    assert group_collective_s("all_gather", kv, 16, TOPO, stride=8) == pytest.approx(per)
    assert st.context_comm_s == pytest.approx(16 * 8 * 2 * per)  # m x 8 layers x (gather + reduce-scatter)
    recompute = plan_step({"forward": 0.0, "backward": 0.0, "optimizer": 0.0},
                          Plan(devices=plan.devices, tensor_parallel=8, context_parallel=16, pipeline_parallel=16,
                               micro_batches=16, sequence_parallel=True, activation_checkpointing=True),
                          training=True, micro_batch=1, grad_params=0, grad_bytes=2, act_bytes=2, topo=TOPO,
                          shape=SHAPE)
    assert recompute.context_comm_s == pytest.approx(16 * 8 * 3 * per)  # the recomputed forward gathers again


def test_context_parallel_splits_activations_and_shards_state_over_its_ranks():
    job = Workload(model="t", batch=4, seq_len=131072, precision="bf16")
    base = Plan(devices=4, zero_stage=1, micro_batches=1)
    split = Plan(devices=16, context_parallel=4, zero_stage=1, micro_batches=1)
    one, four = (memory_per_device(prof(), job, plan, "gpu", SHAPE) for plan in (base, split))
    assert four["activations"] == pytest.approx(one["activations"] / 4)
    assert four["optimizer"] == pytest.approx(one["optimizer"] / 4)  # ZeRO over dp 4 x cp 4 ranks
    assert four["weights"] == pytest.approx(one["weights"])
    with pytest.raises(ChipfitError, match="does not split the sequence of 131072 tokens"):
        Plan(devices=3 * 2**16, context_parallel=3 * 2**16).check(SHAPE)


def test_plan_describes_context_parallel_and_interleaving():
    plan = Plan(devices=16384, tensor_parallel=8, context_parallel=16, pipeline_parallel=16, virtual_stages=4,
                micro_batches=16, sequence_parallel=True, zero_stage=1)
    assert plan.describe() == "dp 8 x tp 8 (SP) x cp 16 x pp 16 (interleaved 4), ZeRO stage 1, 16 micro-batches"
    with pytest.raises(ChipfitError, match="tensor 8 x context 16 x pipeline 16"):
        Plan(devices=1000, tensor_parallel=8, context_parallel=16, pipeline_parallel=16)


def test_a_128k_sequence_finds_a_context_parallel_plan():
    """Llama 3 405B at 128K tokens, 128 sequences on 16384 H100s (Dubey et al. 2024, Table 4: TP 8, CP 16, PP 16):
    the search reaches for context parallelism (before, no plan fit), and only where activations bind."""
    spec = TransformerSpec(name="405b", layers=126, hidden=16384, heads=128, kv_heads=8, ffn=53248, vocab=128256)
    hw = load_catalog().get("nvidia-h100-sxm5-80gb")
    seq = 131072
    job = Workload(model="405b", batch=128, seq_len=seq, tokens=128 * seq, precision="bf16")
    search = search_plans(lambda b: profile_spec(spec, batch=b, seq_len=seq, precision="bf16"), plan_shape(spec, seq),
                          job, hw, devices=16384, micro_batch_sizes=(1,), top=50)
    assert search.best is not None and search.best.plan.context_parallel > 1
    assert search.best.memory_per_device_bytes <= hw.memory_bytes.value
    short = Workload(model="405b", batch=2048, seq_len=2048, tokens=2048 * 2048, precision="bf16")
    small = TransformerSpec(name="1b", layers=16, hidden=2048, heads=16, kv_heads=16, ffn=8192, vocab=32000)
    plain = search_plans(lambda b: profile_spec(small, batch=b, seq_len=2048, precision="bf16"),
                         plan_shape(small, 2048), short, hw, devices=64, top=200)
    assert not plain.best.plan.activation_checkpointing
    assert all(r.plan.context_parallel == 1 for r in plain.ranked)
