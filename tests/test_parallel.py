"""Collectives, pipeline, ZeRO and tensor-parallel memory under a plan, against closed forms by hand."""

import math

import pytest

from chipfit.errors import ChipfitError
from chipfit.predict import Plan, plan_step
from chipfit.predict.memory import memory_per_device
from chipfit.predict.parallel import (OVERLAP_SLOWDOWN, Topology, bubble_fraction, collective_s,
                                      group_collective_s, overlapped_exposed_s, ring_allreduce_s)
from chipfit.predict.plan import ModelShape
from chipfit.workload.profile import Profile
from chipfit.workload.workload import Workload

TOPO = Topology(node_size=8, intra_bw_bytes_per_s=100e9, inter_bw_bytes_per_s=10e9,
                intra_latency_s=1e-6, inter_latency_s=1e-5)
SHAPE = ModelShape(layers=8, hidden=1024, heads=16, seq_len=512)


def prof(params=1_000_000_000, activation_bytes=8 * 2**30, batch=1):
    return Profile(model="t", mode="train", batch=batch, seq_len=512, dtype="bf16", ops=[], params=params,
                   trainable_params=params, param_bytes=2 * params, activation_bytes=activation_bytes)


def test_ring_collectives_match_closed_forms():
    S, n, B, a = 1e9, 8, 100e9, 1e-6
    assert ring_allreduce_s(S, n, B, a) == pytest.approx(2 * 7 / 8 * S / B + 14 * a)
    assert collective_s("all_gather", S, n, B, a) == pytest.approx(7 / 8 * S / B + 7 * a)
    assert collective_s("reduce_scatter", S, n, B, a) == pytest.approx(7 / 8 * S / B + 7 * a)
    assert collective_s("all_to_all", S, n, B, a) == pytest.approx(7 / 8 * S / B + 7 * a)
    assert collective_s("all_reduce", S, n, B, a, "tree") == pytest.approx(2 * S / B + 2 * 3 * a)
    # Tiny message: the tree's log2 N latency beats the ring's N - 1 steps, and the group picks it.
    assert group_collective_s("all_reduce", 8, 8, TOPO) == pytest.approx(2 * 8 / 100e9 + 6e-6)


def test_hierarchical_allreduce_is_intra_reduce_scatter_inter_allreduce_intra_all_gather():
    S = 8e9  # 64 devices = 8 nodes of 8: RS of 8 GB in the node, all-reduce of 1 GB over 8 nodes, AG in the node
    intra = 7 / 8 * S / 100e9 + 7e-6
    inter = 2 * 7 / 8 * (S / 8) / 10e9 + 14 * 1e-5
    assert group_collective_s("all_reduce", S, 64, TOPO) == pytest.approx(2 * intra + inter)
    # Members 8 ranks apart: one per node, all on the network.
    assert group_collective_s("all_reduce", S, 4, TOPO, stride=8) == pytest.approx(2 * 3 / 4 * S / 10e9 + 6 * 1e-5)


def test_pipeline_bubble_fraction_and_1f1b_step():
    assert bubble_fraction(4, 12) == pytest.approx(3 / 15)
    assert bubble_fraction(1, 7) == 0
    # 8 layers on 4 stages, 12 micro-batches, no comm but the stage boundary: fwd 4 s + bwd 8 s for the model.
    plan = Plan(devices=4, pipeline_parallel=4, micro_batches=12)
    topo = Topology(node_size=8, intra_bw_bytes_per_s=1e30, inter_bw_bytes_per_s=None, intra_latency_s=0.0)
    st = plan_step({"forward": 4.0, "backward": 8.0, "optimizer": 0.0}, plan, training=True, micro_batch=1,
                   grad_params=0, grad_bytes=2, act_bytes=2, topo=topo, shape=SHAPE)
    slot = (4.0 + 8.0) / 4
    assert st.step_s == pytest.approx((12 + 3) * slot)
    assert st.bubble_s / st.step_s == pytest.approx(bubble_fraction(4, 12))


def test_recompute_adds_a_forward_and_tensor_parallel_adds_six_allreduces_per_layer():
    plan = Plan(devices=2, tensor_parallel=2, activation_checkpointing=True)
    st = plan_step({"forward": 1.0, "backward": 2.0, "optimizer": 0.0}, plan, training=True, micro_batch=1,
                   grad_params=0, grad_bytes=2, act_bytes=2, topo=TOPO, shape=SHAPE)
    ar = group_collective_s("all_reduce", 512 * 1024 * 2, 2, TOPO)
    assert st.tensor_comm_s == pytest.approx(8 * 6 * ar)
    assert st.step_s == pytest.approx(1.0 + 3.0 + 8 * 6 * ar)


def test_zero3_memory_per_device_matches_formula():
    N, t, p, dp = 1_000_000_000, 2, 2, 8
    plan = Plan(devices=t * p * dp, tensor_parallel=t, pipeline_parallel=p, zero_stage=3, micro_batches=8,
                sequence_parallel=True)
    m = memory_per_device(prof(N), Workload(model="t", batch=64, precision="bf16"), plan, "gpu", SHAPE)
    assert m["weights"] + m["gradients"] + m["optimizer"] == pytest.approx(16 * N / (t * p * dp))
    # Activations: 1/p of the layers, split by t under SP, p micro-batches in flight on stage one.
    assert m["activations"] == pytest.approx(8 * 2**30 / p / t * min(p, 8))


def test_recompute_keeps_layer_inputs_and_one_layer():
    plan = Plan(devices=1, activation_checkpointing=True)
    m = memory_per_device(prof(), Workload(model="t", batch=1, precision="bf16"), plan, "gpu", SHAPE)
    assert m["activations"] == pytest.approx(8 * 512 * 1024 * 2 + 8 * 2**30 / 8)


def test_tensor_parallel_without_sp_splits_24_of_34_activation_bytes():
    plan = Plan(devices=4, tensor_parallel=4)
    m = memory_per_device(prof(), Workload(model="t", batch=1, precision="bf16"), plan, "gpu", SHAPE)
    assert m["activations"] == pytest.approx(8 * 2**30 * (10 / 34 + 24 / 34 / 4))


@pytest.mark.parametrize("plan, message", [
    (Plan(devices=8, tensor_parallel=8, sequence_parallel=True),
     "Tensor parallelism 8 does not divide the model's 12 attention heads; "
     "use a tensor-parallel degree that divides 12 (1, 2, 3, 4, 6, 12)."),
    (Plan(devices=16, pipeline_parallel=16),
     "16 pipeline stages are more than the model's 12 layers; use at most 12 stages."),
    (Plan(devices=4, expert_parallel=4),
     "Expert parallelism 4 does not divide the model's no experts; "
     "use an expert-parallel degree that divides the expert count (1 for a dense model)."),
])
def test_impossible_plans_are_refused_with_the_reason(plan, message):
    with pytest.raises(ChipfitError) as err:
        plan.check(ModelShape(layers=12, hidden=768, heads=12, seq_len=1024))
    assert str(err.value) == message


def test_zero_devices_and_bad_expert_split_are_refused():
    with pytest.raises(ChipfitError) as err:
        Plan(devices=0)
    assert str(err.value) == "--devices 0 is not a device count; give 1 or more."
    with pytest.raises(ChipfitError) as err:
        Plan(devices=6, expert_parallel=4)
    assert str(err.value) == ("Expert parallelism 4 does not divide the data-parallel degree 6; "
                              "use an expert-parallel degree that divides it.")


def test_zero3_gathers_are_exposed_only_beyond_compute():
    plan = Plan(devices=8, zero_stage=3, micro_batches=2)
    st = plan_step({"forward": 0.001, "backward": 0.002, "optimizer": 0.0}, plan, training=True, micro_batch=1,
                   grad_params=1e9, grad_bytes=2, act_bytes=2, topo=TOPO, shape=None)
    per_mb = 3 * (7 / 8 * 2e9 / 100e9 + 7e-6)
    assert st.data_comm_s == pytest.approx(2 * per_mb)
    assert st.data_comm_exposed_s == pytest.approx(2 * (per_mb - 0.003))
    assert math.isclose(st.step_s, 2 * 0.003 + st.data_comm_exposed_s)


def test_overlapped_communication_slows_the_compute_beside_it():
    s = OVERLAP_SLOWDOWN["gpu"]
    # 1 s of traffic beside 10 s of compute: compute runs 1 + s slower for that second.
    assert overlapped_exposed_s(1.0, 10.0, s) == pytest.approx(1.0 * 0.189 / 1.189)
    # Traffic that outlasts the slowed compute is exposed beyond it; the two forms meet at 10 (1 + s).
    assert overlapped_exposed_s(20.0, 10.0, s) == pytest.approx(10.0)
    assert overlapped_exposed_s(10 * 1.189, 10.0, s) == pytest.approx(10 * 0.189)
    assert overlapped_exposed_s(1.0, 10.0, 0.0) == 0.0
    # ZeRO-3 gathers hidden under each micro-batch's compute still cost their share of it.
    plan = Plan(devices=8, zero_stage=3, micro_batches=2)
    st = plan_step({"forward": 0.1, "backward": 0.2, "optimizer": 0.0}, plan, training=True, micro_batch=1,
                   grad_params=1e9, grad_bytes=2, act_bytes=2, topo=TOPO, shape=None, overlap_slowdown=s)
    per_mb = 3 * (7 / 8 * 2e9 / 100e9 + 7e-6)
    assert st.data_comm_exposed_s == pytest.approx(2 * per_mb * 0.189 / 1.189)
    assert st.step_s == pytest.approx(2 * 0.3 + st.data_comm_exposed_s)


def test_plan_step_parts_add_up_to_the_step():
    shape, topo = SHAPE, TOPO
    for m in (1, 4):
        plan = Plan(devices=32, tensor_parallel=4, pipeline_parallel=4, micro_batches=m, zero_stage=1)
        st = plan_step({"forward": 0.01, "backward": 0.02, "optimizer": 0.003}, plan, training=True, micro_batch=1,
                       grad_params=1e8, grad_bytes=2, act_bytes=2, topo=topo, shape=shape)
        parts = st.compute_s + st.bubble_s + st.tensor_comm_s + st.expert_comm_s + st.pipeline_comm_s
        assert parts + st.data_comm_exposed_s == pytest.approx(st.step_s)
        # compute: m micro-batches of a quarter of the layers, plus the ZeRO-1 sharded optimizer.
        assert st.compute_s == pytest.approx(m * (0.01 + 0.02) / 4 + 0.003 / 4 / 2)
