"""Plan search: feasibility, divisibility, ranking, and analytic micro-batch scaling."""

import pytest
import torch

from chipfit.catalog.schema import Figure, Hardware
from chipfit.errors import ChipfitError
from chipfit.predictors import plan_shape as shape_of
from chipfit.predict.plans import scale_profile, search_plans
from chipfit.workload import profile as trace
from chipfit.workload.llm import TransformerSpec, profile_spec
from chipfit.workload.workload import Workload

S = "test figure"
GPU = Hardware(id="test-gpu", name="Test GPU", vendor="T", hw_class="gpu",
               peak_flops={"fp32": Figure(100e12, S, True), "bf16": Figure(400e12, S, True)},
               memory_bytes=Figure(40 * 2**30, S), mem_bw_bytes_per_s=Figure(2e12, S),
               interconnect_bw_bytes_per_s=Figure(800e9, S), tdp_watts=Figure(500, S))
SPEC = TransformerSpec(layers=8, hidden=4608, heads=12, kv_heads=12, ffn=4 * 4608, vocab=32000, gated_mlp=False)
SHAPE = shape_of(SPEC, 2048)
JOB = Workload(model="t", batch=64, seq_len=2048, tokens=64 * 2048 * 1000, precision="bf16")


def factory(b):
    return profile_spec(SPEC, batch=b, seq_len=2048, precision="bf16")


def test_search_rejects_plans_that_do_not_fit_and_keeps_only_fitting_ones():
    small = Hardware(**{**GPU.__dict__, "memory_bytes": Figure(8 * 2**30, S)})
    # 2.3e9 params x 16 B = 37 GB of training state: no 8 GiB device holds it without sharding.
    result = search_plans(factory, SHAPE, JOB, small, devices=8, micro_batch_sizes=(1,))
    assert result.rejected["does not fit in memory"] > 0
    assert "needs" in result.examples["does not fit in memory"]
    assert result.ranked and all(r.memory_per_device_bytes <= 8 * 2**30 for r in result.ranked)
    assert all(r.plan.zero_stage > 0 or r.plan.tensor_parallel * r.plan.pipeline_parallel > 1 for r in result.ranked)
    tiny = Hardware(**{**GPU.__dict__, "memory_bytes": Figure(2**20, S)})
    none = search_plans(factory, SHAPE, JOB, tiny, devices=8, micro_batch_sizes=(1,))
    assert none.best is None and none.why.startswith("No plan of the")


def test_tensor_parallel_not_dividing_heads_is_dropped_with_the_reason():
    result = search_plans(factory, SHAPE, JOB, GPU, devices=8, micro_batch_sizes=(1,))
    assert result.rejected["tensor parallelism does not divide the heads"] > 0
    assert all(12 % r.plan.tensor_parallel == 0 for r in result.ranked)
    assert result.why.startswith(result.best.plan.describe())


def test_ranked_by_time_and_deadline_drops_slow_plans():
    result = search_plans(factory, SHAPE, JOB, GPU, max_devices=16, micro_batch_sizes=(1, 2), top=50)
    times = [r.total_time_s for r in result.ranked]
    assert times == sorted(times)
    cut = times[len(times) // 2]
    late = search_plans(factory, SHAPE, JOB, GPU, max_devices=16, micro_batch_sizes=(1, 2), top=50, deadline_s=cut)
    assert all(r.total_time_s <= cut for r in late.ranked) and late.rejected["misses the deadline"] > 0
    # Device-hours: the global batch of 64 sequences x 1000 steps is the same work on every plan.
    assert result.best.global_batch == 64


def test_bad_search_input():
    with pytest.raises(ChipfitError) as err:
        search_plans(factory, SHAPE, JOB, GPU, max_devices=0)
    assert str(err.value) == "--max-devices 0 is not a device count; give 1 or more."
    with pytest.raises(ChipfitError) as err:
        search_plans(factory, SHAPE, JOB, GPU, max_devices=8, objective="cost")
    assert str(err.value) == ("Ranking by cost needs a price for Test GPU, and the catalog has no offering of it; "
                              "rank by time, energy or device_hours.")


def test_scale_profile_is_linear_in_the_micro_batch_except_the_optimizer():
    one, four = factory(1), scale_profile(factory(1), 4)
    assert four.flops("forward") == pytest.approx(4 * one.flops("forward"))
    assert four.flops("optimizer") == one.flops("optimizer")
    assert four.activation_bytes == 4 * one.activation_bytes and four.batch == 4


def test_scale_profile_through_two_traces_keeps_the_weight_traffic_fixed():
    # Every operator's bytes are (weights, fixed) + (activations, per sample): the line through
    # micro-batches 1 and 2 gives micro-batch 8 exactly, where scaling 1 by 8 also multiplies the weights.
    exact, lined = factory(8), scale_profile(factory(1), 8, reference=factory(2))
    assert [op.bytes for op in lined.ops] == pytest.approx([op.bytes for op in exact.ops], abs=1)
    assert [op.flops for op in lined.ops] == pytest.approx([op.flops for op in exact.ops])
    assert lined.activation_bytes == pytest.approx(exact.activation_bytes, abs=1)
    qkvo = next(i for i, op in enumerate(exact.ops) if op.module == "layers.0.attn" and op.kind == "matmul")
    weights = 4 * 4608**2 * 2  # q, k, v, o in bf16, read once whatever the batch
    assert scale_profile(factory(1), 8).ops[qkvo].bytes - exact.ops[qkvo].bytes == pytest.approx(7 * weights, abs=8)


class _PositionsMajor(torch.nn.Module):
    """A linear layer over an image's positions: the reshape after the permute is a view at batch 1 and a copy
    from batch 2 on, so the traces at batch 1 and 2 differ by one operator."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(64, 64)

    def forward(self, x):
        return self.proj(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 64))

    def example_inputs(self, batch, seq_len):
        return (torch.randn(batch, 64, 8, 8),)


def test_scale_profile_pairs_operators_when_batch_one_elides_a_copy():
    traced = {b: trace(_PositionsMajor(), mode="train", batch=b) for b in (1, 2, 8)}
    assert len(traced[2].ops) == len(traced[1].ops) + 1
    lined = scale_profile(traced[1], 8, reference=traced[2])
    assert [op.name for op in lined.ops] == [op.name for op in traced[8].ops]
    assert [op.bytes for op in lined.ops] == pytest.approx([op.bytes for op in traced[8].ops], abs=1)
    assert lined.flops() == pytest.approx(traced[8].flops())


def test_a_tpu_slice_takes_tensor_parallelism_beyond_eight_chips():
    # A TPU slice is one ICI torus: no 8-device node bounds tensor parallelism there.
    tpu = Hardware(**{**GPU.__dict__, "id": "test-tpu", "hw_class": "tpu"})
    spec = TransformerSpec(layers=4, hidden=2048, heads=16, kv_heads=16, ffn=8192, vocab=32000)
    job = Workload(model="t", batch=16, seq_len=512, tokens=16 * 512 * 10, precision="bf16")
    result = search_plans(lambda b: profile_spec(spec, batch=b, seq_len=512, precision="bf16"), shape_of(spec, 512),
                          job, tpu, devices=16, micro_batch_sizes=(1,), top=500)
    assert "tensor parallelism beyond one node" not in result.rejected
    assert 16 in {r.plan.tensor_parallel for r in result.ranked}
    gpu = search_plans(lambda b: profile_spec(spec, batch=b, seq_len=512, precision="bf16"), shape_of(spec, 512),
                       job, GPU, devices=16, micro_batch_sizes=(1,), top=500, network="ib-ndr-400")
    assert max(r.plan.tensor_parallel for r in gpu.ranked) == 8  # GPUs: within one 8-GPU node


def test_a_named_network_prices_the_data_parallel_traffic_between_nodes():
    from chipfit.predict.parallel import COLLECTIVE_EFFICIENCY, GBIT

    big = Hardware(**{**GPU.__dict__, "memory_bytes": Figure(80 * 2**30, S)})

    def dp16(network):
        search = search_plans(factory, SHAPE, JOB, big, devices=16, micro_batch_sizes=(1,), zero_stages=(0,),
                              recompute=(False,), top=500, network=network)
        (r,) = [r for r in search.ranked if r.plan.tensor_parallel == r.plan.pipeline_parallel == 1]
        return search, r

    opa, slow = dp16("opa-4x100")
    ndr, fast = dp16("ib-ndr-400")
    assert "Omni-Path, 4x 100 Gb/s per 8 GPUs" in opa.links and "NDR" in ndr.links
    # Two nodes: the all-reduce across them moves each GPU's eighth of the gradients once each way
    # (ring over 2: 2 (n-1)/n = 1), over 50 against 400 Gb/s per GPU; the in-node parts are the same.
    grads = SPEC.params() * 2 / 8
    gap = grads / (50 * GBIT * COLLECTIVE_EFFICIENCY) - grads / (400 * GBIT * COLLECTIVE_EFFICIENCY)
    assert slow.parts.data_comm_s - fast.parts.data_comm_s == pytest.approx(gap, rel=1e-6)


def test_micro_batches_include_every_divisor_of_an_even_per_device_batch():
    from chipfit.predict.plans import _micro_batches

    assert _micro_batches(48, 8) == (1, 2, 3, 4, 6, 8)  # MosaicML's MPT-7B: 48 sequences on 8 GPUs
    assert _micro_batches(1953, 1024) == (1, 2, 4, 8)  # no even split: the powers of two, rounded up
    assert _micro_batches(512 * 96, 4) == (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # capped at 64
    spec = TransformerSpec(layers=4, hidden=1024, heads=16, kv_heads=16, ffn=4096, vocab=32000)
    job = Workload(model="t", batch=48, seq_len=512, tokens=48 * 512 * 10, precision="bf16")
    big = Hardware(**{**GPU.__dict__, "memory_bytes": Figure(80 * 2**30, S)})
    result = search_plans(lambda b: profile_spec(spec, batch=b, seq_len=512, precision="bf16"), shape_of(spec, 512),
                          job, big, devices=8, top=1000)
    # The whole per-device batch in one micro-batch is a plan, and no plan changes the global batch.
    assert any(r.micro_batch == 6 and r.plan.micro_batches == 1 for r in result.ranked)
    assert {r.global_batch for r in result.ranked} == {48}


def test_plan_takes_the_device_count_a_hardware_name_gives(capsys):
    """"4x H100 SXM" and an 8-GPU instance name a count: plan searches that many devices, --devices wins."""
    import json

    from chipfit.cli import main

    args = ["plan", "--spec", "layers=2,hidden=256,heads=4,ffn=1024,vocab=1000", "--train", "--tokens", "1e6",
            "--seq", "128", "--batch", "8", "--json"]
    cases = (("4x H100 SXM", [], 4), ("p5.48xlarge", [], 8), ("4x H100 SXM", ["--devices", "2"], 2))
    for hardware, extra, devices in cases:
        assert main(args + ["--hardware", hardware] + extra) == 0
        ranked = json.loads(capsys.readouterr().out)["search"]["ranked"]
        assert {r["plan"]["devices"] for r in ranked} == {devices}
