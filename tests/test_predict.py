"""predict/: roofline sides, memory formulas, collectives, energy and cost, on hand-made inputs."""

import math

import pytest

from chipfit.catalog.schema import Figure, Hardware, Instance
from chipfit.errors import ChipfitError
from chipfit.predict import Conditions, Plan, predict, predict_fitting
from chipfit.predict.efficiency import Efficiency
from chipfit.predict.memory import memory_per_device
from chipfit.predict.parallel import link_bandwidth, ring_allreduce_s
from chipfit.predict.roofline import OpArrays, op_times, step_time
from chipfit.workload.profile import Op, Profile
from chipfit.workload.workload import Workload

S = "test figure"
GPU = Hardware(
    id="test-gpu", name="Test GPU", vendor="T", hw_class="gpu",
    peak_flops={"fp32": Figure(100e12, S, True), "bf16": Figure(400e12, S, True), "fp8": Figure(800e12, S, True)},
    memory_bytes=Figure(80 * 2**30, S), mem_bw_bytes_per_s=Figure(2e12, S),
    interconnect_bw_bytes_per_s=Figure(800e9, S), tdp_watts=Figure(500, S),
)
PERFECT = Efficiency(matmul=1.0, vector=1.0, memory=1.0, kernel_overhead_s=0.0)


def op(kind, flops, nbytes, dtype="fp32", phase="forward"):
    return Op(name=f"aten.{kind}", kind=kind, flops=flops, bytes_read=nbytes, bytes_written=0,
              dtype=dtype, phase=phase, module="m")


def profile_of(ops, batch=1, params=1000, mode="train", activation_bytes=0):
    return Profile(model="t", mode=mode, batch=batch, seq_len=None, dtype="fp32", ops=ops, params=params,
                   trainable_params=params, param_bytes=4 * params, activation_bytes=activation_bytes)


def test_compute_bound_matmul_runs_at_peak():
    # 4096^3 GEMM in bf16: 2*4096^3 FLOP over 3*4096^2*2 bytes -> intensity 1365 FLOP/B > 400e12/2e12 = 200.
    n = 4096
    arrays = OpArrays.from_profile(profile_of([op("matmul", 2 * n**3, 3 * n * n * 2, "bf16")]))
    t = step_time(arrays, GPU, PERFECT)
    assert t.total_s == pytest.approx(2 * n**3 / 400e12)
    assert t.compute_s == pytest.approx(t.total_s) and t.memory_s == 0


def test_memory_bound_elementwise_runs_at_bandwidth():
    # An fp32 add of 2^28 elements: 1 FLOP per 12 bytes, far left of the ridge.
    n = 2**28
    arrays = OpArrays.from_profile(profile_of([op("elementwise", n, 12 * n)]))
    t = step_time(arrays, GPU, PERFECT)
    assert t.total_s == pytest.approx(12 * n / 2e12)
    assert t.memory_s == pytest.approx(t.total_s) and t.compute_s == 0


def test_per_operator_times_are_what_the_step_sums():
    n = 4096
    arrays = OpArrays.from_profile(profile_of([op("matmul", 2 * n**3, 3 * n * n * 2, "bf16"),
                                               op("elementwise", n * n, 12 * n * n)]))
    times = op_times(arrays, GPU, PERFECT)
    assert times.tolist() == pytest.approx([2 * n**3 / 400e12, 12 * n * n / 2e12])
    assert times.sum() == pytest.approx(step_time(arrays, GPU, PERFECT).total_s)


def test_efficiency_and_overhead_enter_linearly():
    eff = Efficiency(matmul=0.5, vector=1.0, memory=1.0, kernel_overhead_s=1e-5)
    arrays = OpArrays.from_profile(profile_of([op("matmul", 1e12, 1, "bf16")] * 3))
    assert step_time(arrays, GPU, eff).total_s == pytest.approx(3 * (1e12 / 200e12 + 1e-5))


def test_views_and_allocations_launch_no_kernel_on_an_accelerator_but_dispatch_on_a_cpu():
    eff = Efficiency(matmul=1.0, vector=1.0, memory=1.0, kernel_overhead_s=1e-5)
    ops = [op("matmul", 1e12, 1, "bf16"), op("memory", 0, 0), op("memory", 0, 0)]  # a GEMM, a view, an empty
    arrays = OpArrays.from_profile(profile_of(ops))
    assert op_times(arrays, GPU, eff).tolist() == pytest.approx([1e12 / 400e12 + 1e-5, 0, 0])
    cpu = Hardware(**{**GPU.__dict__, "id": "test-cpu", "hw_class": "cpu"})
    assert op_times(arrays, cpu, eff).tolist() == pytest.approx([1e12 / 400e12 + 1e-5, 1e-5, 1e-5])


def test_a_training_batch_norm_reads_again_what_the_cache_does_not_hold():
    # PyTorch's two-pass kernels: statistics, then normalise (forward); reduce, then the input gradient (backward).
    mb = 2**20
    cached = Hardware(**{**GPU.__dict__, "l2_cache_bytes": Figure(40 * mb, S)})
    bn = [Op(name="aten.native_batch_norm.default", kind="norm", flops=0, bytes_read=100 * mb, bytes_written=100 * mb,
             dtype="fp32", phase="forward", module="bn"),
          Op(name="aten.native_batch_norm_backward.default", kind="norm", flops=0, bytes_read=200 * mb,
             bytes_written=100 * mb, dtype="fp32", phase="backward", module="bn")]
    train = profile_of(bn)
    one_pass = [200 * mb / 2e12, 300 * mb / 2e12]
    assert op_times(OpArrays.from_profile(train), GPU, PERFECT).tolist() == pytest.approx(
        [one_pass[0] + 100 * mb / 2e12, one_pass[1] + 200 * mb / 2e12])
    assert op_times(OpArrays.from_profile(train), cached, PERFECT).tolist() == pytest.approx(
        [one_pass[0] + 60 * mb / 2e12, one_pass[1] + 160 * mb / 2e12])
    # A compiler's fused graph, and inference with the stored statistics, read the input once.
    assert op_times(OpArrays.from_profile(train, eager=False), GPU, PERFECT).tolist() == pytest.approx(one_pass)
    infer = profile_of(bn[:1], mode="infer")
    assert op_times(OpArrays.from_profile(infer), GPU, PERFECT).tolist() == pytest.approx(one_pass[:1])


def test_matrix_work_never_beats_the_devices_best_measured_matmul():
    from chipfit.predict.efficiency import MATMUL_EFFICIENCY, default_efficiency

    slow = Hardware(**{**GPU.__dict__, "matmul_max_flops": Figure(240e12, S)})  # 60% of the 400 TFLOP/s bf16 peak
    fast = Hardware(**{**GPU.__dict__, "matmul_max_flops": Figure(340e12, S)})  # 85%: the default stays
    assert default_efficiency(slow).matmul == pytest.approx(0.6) and "capped at the 60%" in default_efficiency(slow).source
    assert default_efficiency(fast).matmul == default_efficiency(GPU).matmul == MATMUL_EFFICIENCY
    arrays = OpArrays.from_profile(profile_of([op("matmul", 1e15, 1, "bf16")]))
    eff = default_efficiency(slow)
    assert step_time(arrays, slow, eff).total_s == pytest.approx(1e15 / 240e12 + eff.kernel_overhead_s)


def test_fp8_workload_moves_matmuls_to_fp8_rate_and_missing_precision_falls_back():
    arrays = OpArrays.from_profile(profile_of([op("matmul", 8e12, 1, "bf16")]), matmul_precision="fp8")
    assert step_time(arrays, GPU, PERFECT).total_s == pytest.approx(8e12 / 800e12)
    no_fp8 = Hardware(**{**GPU.__dict__, "peak_flops": {"fp32": Figure(100e12, S, True), "bf16": Figure(400e12, S, True)}})
    t = step_time(arrays, no_fp8, PERFECT)
    assert t.total_s == pytest.approx(8e12 / 400e12)
    assert t.notes == ("no fp8 figure for test-gpu: fp8 matrix ops priced at its bf16 rate",)


def test_sparse_figures_are_never_used():
    sparse = Hardware(**{**GPU.__dict__, "peak_flops": {"fp32": Figure(100e12, S, True), "bf16": Figure(800e12, S, False)}})
    arrays = OpArrays.from_profile(profile_of([op("matmul", 1e12, 1, "bf16")]))
    assert step_time(arrays, sparse, PERFECT).total_s == pytest.approx(1e12 / 100e12)


def test_training_memory_mixed_precision_adam_is_16_bytes_per_param_and_zero_divides_it():
    p = profile_of([], params=1_000_000, activation_bytes=5_000_000)
    w = Workload(model="t", precision="bf16", batch=8)
    m = memory_per_device(p, w, Plan(devices=1), "cpu")
    assert (m["weights"], m["gradients"], m["optimizer"]) == (2e6, 2e6, 12e6)
    assert m["total"] == pytest.approx((16e6 + 5e6) * 1.10)
    z3 = memory_per_device(p, w, Plan(devices=8, zero_stage=3), "cpu")
    assert (z3["weights"], z3["gradients"], z3["optimizer"]) == (2e6 / 8, 2e6 / 8, 12e6 / 8)
    z1 = memory_per_device(p, w, Plan(devices=8, zero_stage=1), "cpu")
    assert (z1["weights"], z1["gradients"], z1["optimizer"]) == (2e6, 2e6, 12e6 / 8)


def test_inference_memory_counts_weights_at_precision():
    p = profile_of([op("matmul", 1, 100)], params=1_000_000, mode="infer")
    m = memory_per_device(p, Workload(model="t", mode="infer", precision="int8"), Plan(), "gpu")
    assert m["weights"] == 1e6 and m["gradients"] == 0 and m["optimizer"] == 0


def test_ring_allreduce_matches_closed_form():
    size, n, bw, alpha = 1e9, 8, 100e9, 5e-6
    assert ring_allreduce_s(size, n, bw, alpha) == pytest.approx(2 * 7 / 8 * size / bw + 14 * alpha)
    assert ring_allreduce_s(size, 1, bw) == 0.0
    assert link_bandwidth(GPU) == pytest.approx(800e9 / 2 * 0.8)


def test_job_totals_energy_co2_and_cost():
    p = profile_of([op("matmul", 2e14, 1, "bf16")], batch=4)
    w = Workload(model="t", batch=4, samples=4000, epochs=2, precision="bf16")
    inst = Instance(id="cloud-x", provider="aws", name="x", hardware="test-gpu", count=8,
                    price_usd_per_hour=Figure(80.0, "price page"), price_date="2025-01-01")
    e = predict(p, GPU, w, Plan(), efficiency=PERFECT, instance=inst, conditions=Conditions(pue=1.2, grid_kg_per_kwh=0.5))
    step = 2e14 / 400e12
    assert e.step_time_s == pytest.approx(step)
    assert e.total_time_s == pytest.approx(2000 * step)
    assert e.device_hours == pytest.approx(2000 * step / 3600)
    assert e.energy_kwh == pytest.approx(e.device_hours * 500 * 1.2 / 1000)
    assert e.co2_kg == pytest.approx(e.energy_kwh * 0.5)
    assert e.cost_usd == pytest.approx(e.device_hours * 10.0)
    assert e.throughput_per_s == pytest.approx(4 / step)
    assert e.low["total_time_s"] <= e.total_time_s <= e.high["total_time_s"]
    assert e.fits is True


def test_multi_device_training_adds_exposed_allreduce_and_zero_makes_it_fit():
    params = 10_000_000_000  # 10B params: 160 GB of training state, no fit in 80 GiB under plain data parallel
    p = profile_of([op("matmul", 1e12, 1, "bf16", "forward"), op("matmul", 2e12, 1, "bf16", "backward")],
                   batch=1, params=params)
    w = Workload(model="t", batch=8, precision="bf16")
    plain = predict(p, GPU, w, Plan(devices=8), efficiency=PERFECT)
    assert plain.fits is False
    comm = ring_allreduce_s(2 * params, 8, link_bandwidth(GPU))
    assert plain.communication_s == pytest.approx(comm - 2e12 / 400e12)
    # ZeRO-1 shards the 12 B/param of optimizer state: 2+2+1.5 B/param x 10B = 55 GB (+10%, +0.5 GiB) fits.
    fitted = predict_fitting(p, GPU, w, Plan(devices=8), efficiency=PERFECT)
    assert fitted.fits is True and any("ZeRO stage 1" in a for a in fitted.assumptions)
    # 30B params: stage 2 still needs 2*30 + (2+12)*30/8 = 112.5 GB; stage 3 needs 16*30/8 = 60 GB.
    big = profile_of(p.ops, batch=1, params=30_000_000_000)
    fitted = predict_fitting(big, GPU, w, Plan(devices=8), efficiency=PERFECT)
    assert fitted.fits is True and any("ZeRO stage 3" in a for a in fitted.assumptions)
    assert fitted.memory_breakdown["weights"] == pytest.approx(2 * 30e9 / 8)


def test_excluded_entries_say_why():
    loihi = Hardware(id="loihi", name="Loihi 2", vendor="Intel", hw_class="neuromorphic", trainable=False,
                     excluded_reason="Loihi 2 runs spiking networks, not backpropagation through dense layers.")
    e = predict(profile_of([op("matmul", 1, 1)]), loihi, Workload(model="t"), Plan())
    assert e.excluded_reason == loihi.excluded_reason and e.step_time_s is None
    no_bw = Hardware(id="x", name="X", vendor="v", hw_class="fpga", peak_flops=GPU.peak_flops)
    e = predict(profile_of([op("matmul", 1, 1)]), no_bw, Workload(model="t"), Plan())
    assert e.excluded_reason == "The catalog has no sourced memory bandwidth figure for X, so its step time cannot be predicted."


def test_profile_batch_must_match_per_device_share():
    with pytest.raises(ChipfitError, match=r"^The profile holds batch 4 per device, but batch 4 over 2 data-parallel"):
        predict(profile_of([], batch=4), GPU, Workload(model="t", batch=4), Plan(devices=2))


@pytest.mark.parametrize("kwargs, message", [
    ({"batch": 0}, "Batch 0 is not a positive number of samples; give --batch 1 or more."),
    ({"batch": -3}, "Batch -3 is not a positive number of samples; give --batch 1 or more."),
    ({"samples": 0}, "--samples 0 leaves nothing to do; give a positive number of samples."),
    ({"tokens": -1}, "--tokens -1 leaves nothing to do; give a positive number of tokens."),
    ({"precision": "fp4"}, "Precision 'fp4' is not known; use one of fp32, tf32, bf16, fp16, fp8, int8."),
])
def test_impossible_jobs_are_refused(kwargs, message):
    with pytest.raises(ChipfitError) as err:
        Workload(model="t", **kwargs)
    assert str(err.value) == message


def test_plan_and_conditions_refuse_nonsense():
    with pytest.raises(ChipfitError, match=r"^--devices 0 is not a device count; give 1 or more\.$"):
        Plan(devices=0)
    with pytest.raises(ChipfitError, match="PUE 0.9 is below 1"):
        Conditions(pue=0.9)


def test_workload_steps():
    w = Workload(model="t", batch=256, samples=1281167, epochs=90)
    assert w.steps() == pytest.approx(1281167 * 90 / 256)
    llm = Workload(model="t", batch=8, seq_len=4096, tokens=1e9)
    assert llm.steps() == pytest.approx(1e9 / 4096 / 8)
    assert math.isclose(Workload(model="t", mode="infer", batch=4).steps(), 1.0)


def test_fp32_never_runs_at_a_narrower_rate_except_on_tpus():
    bf16_only = {"bf16": Figure(400e12, S, True)}
    npu = Hardware(**{**GPU.__dict__, "hw_class": "asic", "name": "NPU", "peak_flops": bf16_only})
    arrays = OpArrays.from_profile(profile_of([op("matmul", 4e12, 1, "fp32")]))
    e = predict(profile_of([op("matmul", 4e12, 1, "fp32")]), npu, Workload(model="t"), Plan())
    assert e.excluded_reason == ("The catalog has no sourced fp32 throughput figure for NPU, so its step time cannot "
                                 "be predicted; it has figures for bf16: compare with --precision set to one of them.")
    tpu = Hardware(**{**npu.__dict__, "hw_class": "tpu", "name": "TPU"})
    t = step_time(arrays, tpu, PERFECT)
    assert t.total_s == pytest.approx(4e12 / 400e12)
    assert t.notes == ("no fp32 figure for test-gpu: fp32 matrix ops priced at its bf16 rate",)


def test_plans_beyond_a_node_without_a_known_network_are_left_out_with_the_reason():
    from chipfit.predict.parallel import topology

    gaudi_like = Hardware(**{**GPU.__dict__, "id": "npu-x", "name": "NPU X", "hw_class": "asic"})
    topo = topology(gaudi_like)
    assert topo.inter_bw_bytes_per_s is None and topo.node_size  # an ASIC with no named scale-out network
    n = topo.node_size * 2
    p = profile_of([op("matmul", 1e12, 1, "bf16", "backward")], batch=1)
    e = predict(p, gaudi_like, Workload(model="t", batch=n, precision="bf16"), Plan(devices=n))
    assert e.excluded_reason == (f"No scale-out network is known for NPU X, so a {n}-device plan beyond one "
                                 f"{topo.node_size}-device node cannot be predicted; use at most {topo.node_size} devices.")


def test_h800_nodes_link_at_400_gb_s_inside_and_ndr_infiniband_across():
    """The H800's cut NVLink (400 GB/s both directions) inside the node and the HGX H100's NDR 400 Gb/s per
    GPU across nodes (DeepSeek-V3 report: 50 GB/s InfiniBand per GPU)."""
    from chipfit.catalog.loader import load_catalog
    from chipfit.predict.parallel import COLLECTIVE_EFFICIENCY, topology

    topo = topology(load_catalog().get("nvidia-h800-sxm5-80gb"))
    assert topo.node_size == 8
    assert topo.intra_bw_bytes_per_s == pytest.approx(400e9 / 2 * COLLECTIVE_EFFICIENCY)
    assert topo.inter_bw_bytes_per_s == pytest.approx(50e9 * COLLECTIVE_EFFICIENCY)
