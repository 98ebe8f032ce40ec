"""Calibration recovers the efficiencies it was given from synthetic measurements, micro-benchmarks and
operator times alike; leave-one-model-out validation never sees the held-out model."""

from dataclasses import replace

import numpy as np
import pytest

from chipfit.calibrate import Calibration, fit, fit_curve
from chipfit.catalog import load_catalog
from chipfit.catalog.schema import Figure, Hardware
from chipfit.errors import ChipfitError
from chipfit.measure.devices import LocalDevice
from chipfit.measure.microbench import DEPTHWISE_SHAPES
from chipfit.measurement import Measurement
from chipfit.predict.efficiency import Curve
from chipfit.predict.roofline import OpArrays, step_time
from chipfit.workload.profile import Op, Profile

HW = Hardware(id="cpu-x", name="CPU X", vendor="v", hw_class="cpu",
              peak_flops={"fp32": Figure(1e12, "s", True), "bf16": Figure(2e12, "s", True)},
              mem_bw_bytes_per_s=Figure(100e9, "s"))
CPU_DEVICE = LocalDevice(id="local-cpu", kind="cpu", name="test CPU", vendor="", torch_device="cpu",
                         precisions=("fp32", "bf16"), memory_bytes=2**30)
HW_OVERHEAD = 3e-6  # published CPU default per kernel, used where no overhead was benchmarked


def matmul(n, seconds, precision="fp32"):
    return Measurement(kind="matmul", device="local-cpu", precision=precision, shape={"m": n, "n": n, "k": n},
                       flops=2.0 * n**3, bytes=3 * n * n * 4, median_s=seconds, min_s=seconds, max_s=seconds,
                       repetitions=5)


def synthetic(e_max, half, precision="fp32", peak=1e12):
    out = []
    for n in (64, 128, 256, 512, 1024, 2048):
        flops = 2.0 * n**3
        out.append(matmul(n, flops / (peak * e_max * flops / (flops + half)), precision))
    return out


def test_fit_curve_recovers_parameters():
    flops = np.logspace(5, 11, 9)
    e = 0.8 * flops / (flops + 3e7)
    e_max, half = fit_curve(flops, e)
    assert e_max == pytest.approx(0.8, rel=0.01)
    assert half == pytest.approx(3e7, rel=0.01)


def test_fit_recovers_matmul_bandwidth_and_overhead():
    ms = synthetic(0.75, 2e7) + synthetic(0.6, 5e7, "bf16", peak=2e12)
    ms.append(Measurement(kind="triad", device="local-cpu", precision="fp32", shape={"elements": 10**7},
                          flops=2e7, bytes=12e7, median_s=12e7 / 80e9, min_s=1, max_s=1, repetitions=5))
    ms.append(Measurement(kind="overhead", device="local-cpu", precision="fp32", shape={"elements": 1},
                          flops=1, bytes=8, median_s=4e-6, min_s=4e-6, max_s=4e-6, repetitions=5))
    cal = fit(ms, HW, "synthetic")
    curves = {(c.family, c.precision): c for c in cal.curves}
    assert curves["matmul", "fp32"].e_max == pytest.approx(0.75, rel=0.01)
    assert curves["matmul", "bf16"].e_max == pytest.approx(0.6, rel=0.01)
    assert cal.bandwidth_bytes_per_s == pytest.approx(80e9)
    assert cal.memory_efficiency(HW) == pytest.approx(0.8)
    assert cal.kernel_overhead_s == pytest.approx(4e-6)
    assert max(cal.residuals.values()) < 0.02
    # The fitted efficiency reproduces the measured time of a matmul in a prediction.
    n = 512
    op = Op("aten.mm.default", "matmul", 2.0 * n**3, 3 * n * n * 4, 0, "fp32", "forward", "m")
    prof = Profile("t", "infer", 1, None, "fp32", [op], 0, 0, 0, 0)
    t = step_time(OpArrays.from_profile(prof), HW, cal.efficiency(HW))
    assert t.total_s - 4e-6 == pytest.approx(ms[3].median_s, rel=0.02)
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_fit_without_benchmarks_says_what_to_do():
    with pytest.raises(ChipfitError, match=r"^No micro-benchmarks of cpu-x to calibrate from; run `chipfit bench`"):
        fit([Measurement(kind="train_step", device="local-cpu", precision="fp32", shape={}, flops=1, bytes=1,
                         median_s=1, min_s=1, max_s=1, repetitions=3)], HW)


def test_curve_shape():
    c = Curve("matmul", "fp32", 0.8, 1e6)
    assert c.at(np.array([1e6]))[0] == pytest.approx(0.4)


def test_calibration_from_another_version_says_to_recalibrate():
    with pytest.raises(ChipfitError, match=r"^The stored calibration of local-cpu was written by another chipfit version; run"):
        Calibration.from_dict({"hardware_id": "local-cpu", "curves": [], "memory_efficiency": 0.5})


# --- operator calibration ---------------------------------------------------------------------

def op_row(model, kind, flops, nbytes, seconds, calls=1, name="aten.add.Tensor", precision="fp32", phase="forward"):
    """An "op" row of a real step; its family comes from kind and name (op_family)."""
    return Measurement(kind="op", device="local-cpu", precision=precision, shape={"calls": calls}, flops=flops,
                       bytes=nbytes, median_s=seconds, min_s=seconds, max_s=seconds, repetitions=3, label=name,
                       extra={"model": model, "phase": phase, "op_kind": kind})


CONV = "aten.convolution.default"


def conv_rows(model, overhead, e_compute, e_memory, peak=1e12, bw=100e9):
    """Synthetic dense conv ops (>= 10 FLOP per byte) timed exactly as t = overhead + F / (peak e_c) + B / (bw e_m)."""
    sizes = [(1e6, 5e4), (1e7, 1e6), (1e8, 8e6), (1e9, 2e7), (3e9, 9e7)]
    return [op_row(model, "conv", f, b, overhead + f / (peak * e_compute) + b / (bw * e_memory), calls=2, name=CONV)
            for f, b in sizes]


def test_fit_ops_recovers_a_family_from_synthetic_operator_times():
    rows = conv_rows("a", 20e-6, 0.6, 0.3)
    rows += [op_row("a", "elementwise", n * k, n * 3, 3e-6 + n * 3 / (100e9 * 0.4))
             for n, k in ((4e3, 1), (4e5, 5), (4e7, 2), (4e6, 1))]
    fits = {f.family: f for f in fit(rows, HW, "synthetic").op_fits}
    # Every prefix of a family path is fitted; here each holds the same rows.
    assert sorted(fits) == ["conv", "conv/forward", "conv/forward/dense", "elementwise", "elementwise/out"]
    conv = fits["conv/forward/dense"]
    assert (conv.overhead_s, conv.e_compute, conv.e_memory) == (pytest.approx(20e-6), pytest.approx(0.6),
                                                                pytest.approx(0.3))
    assert conv.calls == 10 and conv.models == ("a",) and conv.error < 1e-9
    assert fits["conv"].e_compute == pytest.approx(0.6)
    # These elementwise ops are timed by their bytes alone: the FLOP term is not needed and stays off.
    ew = fits["elementwise/out"]
    assert ew.overhead_s == pytest.approx(3e-6) and ew.e_memory == pytest.approx(0.4) and ew.e_compute is None


@pytest.mark.parametrize("kind, name, flops, nbytes, family", [
    ("conv", CONV, 9e6, 1e6, "conv/forward/low_intensity"),  # 9 FLOP per byte: depthwise-like
    ("conv", "aten.convolution_backward.default", 1e7, 1e6, "conv/backward/dense"),
    ("attention", "aten._scaled_dot_product_flash_attention_for_cpu_backward.default", 1, 1, "attention/backward"),
    ("elementwise", "aten.bernoulli_.float", 1, 1, "elementwise/rng"),
    ("elementwise", "aten.gelu.default", 1, 1, "elementwise/transcendental"),
    ("elementwise", "aten.add_.Tensor", 1, 1, "elementwise/inplace"),
    ("elementwise", "aten.add.Tensor", 1, 1, "elementwise/out"),
    ("norm", "aten.native_batch_norm_backward.default", 1, 1, "norm/batch/backward"),
    ("norm", "aten.native_batch_norm.default", 1, 1, "norm/batch/forward"),
    ("norm", "aten.native_layer_norm.default", 1, 1, "norm/layer/forward"),
    ("reduction", "aten.max_pool2d_with_indices.default", 1, 1, "reduction/pool/max/forward"),
    ("reduction", "aten.max_pool2d_with_indices_backward.default", 1, 1, "reduction/pool/max/backward"),
    ("reduction", "aten._adaptive_avg_pool2d.default", 1, 1, "reduction/pool/avg/forward"),
    ("reduction", "aten._log_softmax_backward_data.default", 1, 1, "reduction/softmax/backward"),
    ("reduction", "aten.nll_loss_forward.default", 1, 1, "reduction/loss/forward"),
    ("reduction", "aten.sum.dim_IntList", 1, 1, "reduction/sum/forward"),
    ("memory", "aten.embedding_dense_backward.default", 1, 1, "memory/indexed/backward"),
    ("memory", "aten.embedding.default", 1, 1, "memory/indexed/forward"),
    ("memory", "aten.cat.default", 1, 1, "memory/copy/forward"),
    ("elementwise", "aten.threshold_backward.default", 1, 1, "elementwise/out"),
    ("matmul", "aten.mm.default", 1, 1, "matmul"),
])
def test_op_family_splits_kinds_by_what_the_hardware_does(kind, name, flops, nbytes, family):
    from chipfit.predict.efficiency import op_family

    assert op_family(kind, name, flops, nbytes) == family


def test_a_low_intensity_convolution_is_priced_by_its_kernel_window():
    from chipfit.predict.efficiency import op_family

    backward = "aten.convolution_backward.default"
    assert op_family("conv", backward, 9e6, 1e6, "train", "k5s2") == "conv/backward/low_intensity/k5s2"
    assert op_family("conv", CONV, 9e6, 1e6, "infer", "k3s1") == "conv/forward/low_intensity/k3s1"
    # A dense convolution's speed is its FLOPs', whatever its window.
    assert op_family("conv", CONV, 1e8, 1e6, "infer", "k3s1") == "conv/forward/dense"


def test_batch_norm_forward_is_priced_by_the_steps_mode():
    """Training-mode batch norm (statistics, three passes) and inference-mode (one pass) are fitted apart: a
    training step's batch norm takes the train fit, an inference step's the infer fit."""
    from chipfit.predict.efficiency import op_family

    bn = "aten.native_batch_norm.default"
    assert op_family("norm", bn, 1, 1, "train") == "norm/batch/forward/train"
    assert op_family("norm", bn, 1, 1, "infer") == "norm/batch/forward/infer"
    assert op_family("norm", "aten.native_batch_norm_backward.default", 1, 1, "train") == "norm/batch/backward"
    rows = []
    for mode, bw in (("train", 10e9), ("infer", 50e9)):
        for n in (1e6, 4e6, 1.6e7):
            r = op_row(mode, "norm", n, n, 1e-6 + n / bw, name=bn)
            rows.append(Measurement(**{**r.__dict__, "extra": {**r.extra, "mode": mode}}))
    eff = fit(rows, HW, "synthetic").efficiency(HW)
    op = Op(bn, "norm", 8e6, 8 * 10**6, 0, "fp32", "forward", "b")
    for mode, bw in (("train", 10e9), ("infer", 50e9)):
        t = step_time(OpArrays.from_profile(Profile("t", mode, 1, None, "fp32", [op], 0, 0, 0, 0)), HW, eff)
        assert t.total_s == pytest.approx(1e-6 + 8e6 / bw, rel=1e-6)


def test_a_family_without_data_is_priced_by_its_parent_kind_then_the_roofline():
    from chipfit.predict.efficiency import family_chain

    assert family_chain("reduction/pool/max/forward") == ["reduction/pool/max/forward", "reduction/pool/max",
                                                          "reduction/pool", "reduction"]
    # Data: out-of-place adds (2 us + bytes at 50% of bandwidth) and batch norms (5 us + bytes at 20%).
    rows = [op_row("a", "elementwise", n, 8 * n, 2e-6 + 8 * n / (100e9 * 0.5)) for n in (1e3, 1e5, 1e7)]
    rows += [op_row("a", "norm", 5 * n, 8 * n, 5e-6 + 8 * n / (100e9 * 0.2), name="aten.native_batch_norm.default")
             for n in (1e3, 1e5, 1e7)]
    eff = fit(rows, HW, "synthetic").efficiency(HW)
    ops = [Op("aten.bernoulli_.float", "elementwise", 1e6, 8 * 10**6, 0, "fp32", "forward", "d"),  # rng: no data
           Op("aten.native_layer_norm.default", "norm", 5e6, 8 * 10**6, 0, "fp32", "forward", "n"),  # layer: no data
           Op("aten.sum.default", "reduction", 1e6, 4 * 10**6, 0, "fp32", "forward", "s")]  # no reduction at all

    def seconds(op):
        return step_time(OpArrays.from_profile(Profile("t", "infer", 1, None, "fp32", [op], 0, 0, 0, 0)), HW,
                         eff).total_s

    assert seconds(ops[0]) == pytest.approx(2e-6 + 8e6 / 50e9)  # the elementwise kind's fit
    assert seconds(ops[1]) == pytest.approx(5e-6 + 8e6 / 20e9)  # the norm kind's fit
    # No reduction data: the roofline with published memory efficiency and the CPU's per-kernel overhead.
    assert seconds(ops[2]) == pytest.approx(4e6 / (100e9 * 0.85) + HW_OVERHEAD)


def depthwise_bench(channels, size, seconds, backward=False, kernel=3, stride=1):
    """A depthwise micro-benchmark at batch 8, as microbench.bench_conv2d records it (fp32, same padding)."""
    b, x = 8, channels * size * size
    y = channels * ((size + stride - 1) // stride) ** 2  # same padding: ceil(size / stride) a side
    w = channels * kernel * kernel
    # Forward: 2 FLOPs per weight per output; reads x, w, writes y. Backward: twice (dx and dw); reads dy, x, w,
    # writes dx, dw.
    flops, elements = (4.0 * b * y * kernel**2, 2 * b * x + b * y + 2 * w) if backward else (
        2.0 * b * y * kernel**2, b * x + b * y + w)
    return Measurement(kind="conv2d_depthwise" + ("_backward" if backward else ""), device="local-cpu",
                       precision="fp32", shape={"batch": b, "channels_in": channels, "channels_out": channels,
                                                "height": size, "width": size, "kernel": kernel, "groups": channels,
                                                "stride": stride},
                       flops=flops, bytes=4.0 * elements, median_s=seconds, min_s=seconds, max_s=seconds,
                       repetitions=5)


def memory_bound(row, overhead_s, bandwidth):
    """`row` timed at `overhead_s` a call plus its bytes at `bandwidth`."""
    return replace(row, median_s=overhead_s + row.bytes / bandwidth)


def test_depthwise_micro_benchmarks_fit_each_kernel_window_and_the_low_intensity_family():
    # 3x3 stride 1 bound by bytes at 10% of bandwidth plus 30 us a call; 5x5 stride 2 at 2% plus 60 us.
    k3 = [memory_bound(depthwise_bench(c, n, 0), 30e-6, 10e9) for c, n in DEPTHWISE_SHAPES]
    k5 = [memory_bound(depthwise_bench(c, n, 0, kernel=5, stride=2), 60e-6, 2e9) for c, n in DEPTHWISE_SHAPES]
    fits = {f.family: f for f in fit(k3 + k5 + synthetic(0.75, 0.0), HW, "synthetic").op_fits}
    for family, overhead, e_memory in (("k3s1", 30e-6, 0.1), ("k5s2", 60e-6, 0.02)):
        f = fits[f"conv/forward/low_intensity/{family}"]
        assert f.models == ("micro-benchmarks",) and f.overhead_s == pytest.approx(overhead)
        assert f.e_memory == pytest.approx(e_memory) and f.e_compute is None
    # Both windows price the windows no benchmark measured (a 7x7, a 1x1 on a thin map) ...
    assert fits["conv/forward/low_intensity"].calls == 8
    # ... but never a parent, which would price dense convolutions like depthwise ones.
    assert "conv/forward" not in fits and "conv" not in fits
    # Fewer than three sizes of a family measured by micro-benchmarks alone: no fit, the curves price it.
    assert "conv/forward/low_intensity/k3s1" not in {f.family for f in fit(k3[:2] + synthetic(0.75, 0.0), HW).op_fits}


def test_calibration_with_families_of_an_older_version_says_to_recalibrate():
    cal = fit(conv_rows("a", 20e-6, 0.6, 0.3), HW, "synthetic").to_dict()
    cal["op_fits"][0]["family"] = "conv_low_intensity"
    with pytest.raises(ChipfitError, match=r"written by another chipfit version; run `chipfit bench` and `chipfit calibrate`"):
        Calibration.from_dict(cal)


def test_step_overhead_per_phase_is_recovered():
    def step(n_fwd, n_bwd, ops_s):
        t = ops_s + n_fwd * 4e-6 + n_bwd * 9e-6
        return Measurement(kind="train_step", device="local-cpu", precision="fp32", shape={}, flops=1, bytes=1,
                           median_s=t, min_s=t, max_s=t, repetitions=3, label="m",
                           extra={"op_profile": {"ops_by_phase": {"forward": n_fwd, "backward": n_bwd},
                                                 "matched_ops_s": ops_s}})
    from chipfit.calibrate import fit_step_overhead

    got = fit_step_overhead([step(100, 150, 0.01), step(300, 200, 0.05), step(50, 400, 0.002)])
    assert got == {"forward": pytest.approx(4e-6), "backward": pytest.approx(9e-6)}


def test_fitted_families_price_their_ops_and_others_keep_the_roofline():
    cal = fit(conv_rows("a", 20e-6, 0.6, 0.3) + synthetic(0.75, 0.0), HW, "synthetic")
    cal = Calibration.from_dict(cal.to_dict())  # what the store gives back
    ops = [Op("aten.convolution.default", "conv", 2e9, 10**7, 0, "fp32", "forward", "c"),
           Op("aten.mm.default", "matmul", 1e9, 10**6, 0, "fp32", "forward", "m"),
           Op("aten.add.Tensor", "elementwise", 1e6, 10**7, 0, "fp32", "forward", "a")]
    prof = Profile("t", "infer", 1, None, "fp32", ops, 0, 0, 0, 0)
    t = step_time(OpArrays.from_profile(prof), HW, cal.efficiency(HW))
    conv_s = 20e-6 + 2e9 / (1e12 * 0.6) + 1e7 / (100e9 * 0.3)
    # matmul: six micro-benchmark sizes at 75% of peak and no overhead make a fit of their own
    mm_s = 1e9 / (1e12 * 0.75)
    add_s = 1e7 / (100e9 * 0.85) + HW_OVERHEAD  # no data: the roofline, published memory efficiency and overhead
    assert t.total_s == pytest.approx(conv_s + mm_s + add_s, rel=1e-6)


def test_leave_one_model_out_never_sees_the_held_out_model(monkeypatch):
    """Each case is predicted from the other models' rows only: poisoning a model's own rows changes
    every prediction but its own."""
    import chipfit.measure.opprofile as opprofile
    import chipfit.measure.steps as steps
    import chipfit.workload as workload
    from chipfit import validate
    from chipfit.measure.opprofile import OpTimes

    cases = (("a", "infer", 1, None), ("b", "infer", 1, None), ("c", "infer", 1, None))
    conv = Op("aten.convolution.default", "conv", 1e9, 10**7, 0, "fp32", "forward", "c")
    sizes = [(1e6, 4e5), (1e7, 1e6), (1e8, 8e6), (3e9, 9e7)]

    def run(slow_model):
        def fake_trace(model, **kw):
            ops = [Op("aten.convolution.default", "conv", f, int(b), 0, "fp32", "forward", "c") for f, b in sizes]
            return Profile(model, "infer", 1, None, "fp32", ops + [conv], 0, 0, 0, 0)

        def op_seconds(model, f, b):
            e = 0.1 if model == slow_model else 0.5  # the poisoned model's convs run 5x slower
            return 1e-5 + f / (1e12 * e) + b / (100e9 * 0.3)

        def fake_step(model, device, **kw):
            p = fake_trace(model)
            t = sum(op_seconds(model, o.flops, o.bytes) for o in p.ops)
            return Measurement(kind="infer_step", device="local-cpu", precision=kw.get("precision", "fp32"),
                               shape={}, flops=1, bytes=1, median_s=t, min_s=t, max_s=t, repetitions=1, label=model,
                               extra={"mean_s": t})

        def fake_ops(model, device, prof, **kw):
            return OpTimes(prof, [[op_seconds(model, o.flops, o.bytes) for o in prof.ops]], [1.0])

        monkeypatch.setattr(workload, "profile", fake_trace)
        monkeypatch.setattr(steps, "measure_step", fake_step)
        monkeypatch.setattr(opprofile, "profile_ops", fake_ops)
        v = validate.run_validation(HW, CPU_DEVICE, synthetic(0.75, 2e7), [], cases=cases, repetitions=1)
        return {c.model: c for c in v.cases}, v

    clean, v = run(None)
    poisoned, _ = run("a")
    assert "leave-one-model-out" in v.calibration
    # a's own measurements changed (5x slower convs), its prediction did not: it never saw them.
    assert poisoned["a"].measured_s > 2 * clean["a"].measured_s
    assert poisoned["a"].predicted_after_s == pytest.approx(clean["a"].predicted_after_s)
    # b and c did see a's rows, and their predictions moved.
    assert poisoned["b"].predicted_after_s > 1.05 * clean["b"].predicted_after_s
    # With every model alike, the held-out fit predicts each exactly (no framework gap in these steps).
    assert clean["a"].predicted_after_s == pytest.approx(clean["a"].measured_s, rel=1e-6)
    assert clean["a"].predicted_before_s != pytest.approx(clean["a"].measured_s, rel=0.05)



def test_fresh_bytes_count_only_large_out_of_place_outputs():
    from chipfit.predict.efficiency import FRESH_OUTPUT_MIN_BYTES, fresh_bytes

    big = 4 * FRESH_OUTPUT_MIN_BYTES
    assert fresh_bytes("aten.div.Tensor", big) == big
    assert fresh_bytes("aten.mul_.Tensor", big) == 0.0  # in place: the pages already exist
    assert fresh_bytes("aten.div.Tensor", FRESH_OUTPUT_MIN_BYTES - 1) == 0.0  # reused from the heap


def test_fresh_output_rate_is_recovered_and_a_family_without_data_uses_its_parent():
    from chipfit.predict.efficiency import op_family

    rows = []
    for n, k, in_place in ((4e3, 1, False), (4e5, 2, True), (4e7, 1, False), (4e6, 3, True), (8e6, 1, False)):
        fresh = 0.0 if in_place or n < 128 * 1024 else n
        r = op_row("a", "elementwise", n * k, 3 * n, 2e-6 + 3 * n / (100e9 * 0.5) + fresh / 4e9,
                   name="aten.add_.Tensor" if in_place else "aten.add.Tensor")
        rows.append(Measurement(**{**r.__dict__, "extra": {**r.extra, "fresh_bytes": fresh}}))
    rows += conv_rows("a", 20e-6, 0.6, 0.3)
    cal = fit(rows, HW, "synthetic")
    ew = next(f for f in cal.op_fits if f.family == "elementwise")  # in place and not, pooled
    assert (ew.overhead_s, ew.e_memory, ew.fresh_bytes_per_s) == (pytest.approx(2e-6), pytest.approx(0.5),
                                                                  pytest.approx(4e9))
    # A depthwise-like convolution (few FLOPs per byte) has no fit of its own: the forward conv fit prices it.
    dw = Op("aten.convolution.default", "conv", 1e7, 10**7, 0, "fp32", "forward", "c")
    assert op_family(dw.kind, dw.name, dw.flops, dw.bytes) == "conv/forward/low_intensity"
    t = step_time(OpArrays.from_profile(Profile("t", "infer", 1, None, "fp32", [dw], 0, 0, 0, 0)), HW,
                  cal.efficiency(HW))
    assert t.total_s == pytest.approx(20e-6 + 1e7 / (1e12 * 0.6) + 1e7 / (100e9 * 0.3))


def test_ops_no_real_step_ran_are_learned_and_priced_at_zero():
    def step(model, unmatched):
        return Measurement(kind="train_step", device="local-cpu", precision="fp32", shape={}, flops=1, bytes=1,
                           median_s=1.0, min_s=1.0, max_s=1.0, repetitions=3, label=model,
                           extra={"model": model, "op_profile": {"ops_by_phase": {"optimizer": 4},
                                                                 "matched_ops_s": 1.0, "unmatched": unmatched}})
    rows = conv_rows("a", 20e-6, 0.6, 0.3) + [
        step("a", {"optimizer:aten.zeros_like.default": 4, "backward:aten.add.Tensor": 1}),
        step("b", {"optimizer:aten.zeros_like.default": 6}),
        op_row("b", "elementwise", 10, 80, 1e-6, phase="backward")]  # b's backward add ran (label below)
    rows[-1] = Measurement(**{**rows[-1].__dict__, "label": "aten.add.Tensor"})
    cal = fit(rows, HW, "synthetic")
    assert cal.absent_ops == ("optimizer:aten.zeros_like.default",)
    state = Op("aten.zeros_like.default", "memory", 0, 0, 4 * 10**8, "fp32", "optimizer", "w")
    prof = Profile("t", "train", 1, None, "fp32", [state], 0, 0, 0, 0)
    assert step_time(OpArrays.from_profile(prof), HW, cal.efficiency(HW)).total_s == 0.0
    assert step_time(OpArrays.from_profile(prof), HW, fit(synthetic(0.75, 0.0), HW).efficiency(HW)).total_s > 0


def test_validation_interleaves_rounds_and_reports_their_spread(monkeypatch):
    """Steps are timed round by round over all cases, each followed by a profiled step; a case's time is the
    median of its rounds' mean steps, its spread their median absolute deviation over that median, its operator
    rows the rounds' profiled steps; a stored run predicted again gives the same predictions."""
    import chipfit.measure.opprofile as opprofile
    import chipfit.measure.steps as steps
    import chipfit.workload as workload
    from chipfit import validate
    from chipfit.measure.opprofile import OpTimes

    sizes = [(1e6, 5e4), (1e8, 8e6), (3e9, 9e7)]
    round_s = {"a": [0.10, 0.30, 0.20], "b": [0.50, 0.40, 0.45]}  # each round's mean step time (its median: +0.05)
    calls = []

    def fake_trace(model, **kw):
        ops = [Op(CONV, "conv", f, int(b), 0, "fp32", "forward", "c") for f, b in sizes]
        return Profile(model, "infer", 1, None, "fp32", ops, 0, 0, 0, 0)

    def fake_step(model, device, **kw):
        if kw.get("precision", "fp32") != "fp32":
            t = 0.05
        else:
            calls.append(model)
            t = round_s[model][calls.count(model) - 1]
        return Measurement(kind="infer_step", device="local-cpu", precision=kw.get("precision", "fp32"),
                           shape={"batch": 1, "seq_len": 0}, flops=1, bytes=1, median_s=t + 0.05, min_s=t - 0.01,
                           max_s=t + 0.06, repetitions=kw["repetitions"], label=model, extra={"mean_s": t})

    profiled = []

    def fake_ops(model, device, prof, **kw):
        profiled.append(model)
        k = profiled.count(model)  # the profiled step of round k ran k times slower
        assert kw["repetitions"] == 1
        return OpTimes(prof, [[k * (1e-5 + f / (1e12 * 0.5) + b / (100e9 * 0.3)) for f, b in sizes]], [k * 1.0])

    monkeypatch.setattr(workload, "profile", fake_trace)
    monkeypatch.setattr(steps, "measure_step", fake_step)
    monkeypatch.setattr(opprofile, "profile_ops", fake_ops)
    records = []
    v = validate.run_validation(HW, CPU_DEVICE, synthetic(0.75, 2e7), [], cases=(("a", "infer", 1, None),
                                ("b", "infer", 1, None)), repetitions=2, rounds=3, record=records.append)
    assert calls == profiled == ["a", "b"] * 3
    # Three profiled steps (1x, 2x, 3x; walls 1, 2, 3 s), scaled by the clean step over the median wall (2 s).
    conv_a = [m for m in records if m.kind == "op" and m.extra["model"] == "a"]
    assert {m.repetitions for m in conv_a} == {3}
    t1 = 1e-5 + 3e9 / (1e12 * 0.5) + 9e7 / (100e9 * 0.3)
    big = next(m for m in conv_a if m.flops == 3e9)
    assert (big.extra["mean_s"], big.median_s) == (pytest.approx(2 * t1 * 0.20 / 2), pytest.approx(2 * t1 * 0.20 / 2))
    a, b = v.cases
    # spread: median of |round mean - 0.20| = median(0.10, 0.10, 0) = 0.10, over 0.20
    assert (a.measured_s, a.spread) == (pytest.approx(0.20), pytest.approx(0.10 / 0.20))
    assert (b.measured_s, b.spread) == (pytest.approx(0.45), pytest.approx(0.05 / 0.45))
    assert v.summary()["median_spread"] == pytest.approx((0.5 + 0.05 / 0.45) / 2)
    step_a = next(m for m in records if m.kind == "infer_step" and m.label == "a")
    assert (step_a.repetitions, step_a.min_s, step_a.max_s) == (6, pytest.approx(0.09), pytest.approx(0.36))
    assert step_a.extra["round_means_s"] == pytest.approx([0.10, 0.30, 0.20])
    assert step_a.extra["mean_s"] == pytest.approx(0.20)  # over all rounds, not the first round's
    assert v.bf16_speedup_measured == pytest.approx(0.20 / 0.05)
    again = validate.revalidate(HW, [m for m in records if m.kind == "infer_step"], synthetic(0.75, 2e7) + records, [])
    assert [c.predicted_after_s for c in again.cases] == pytest.approx([c.predicted_after_s for c in v.cases])
    assert [c.spread for c in again.cases] == pytest.approx([a.spread, b.spread])
    assert again.bf16_speedup_measured == pytest.approx(0.20 / 0.05)


def test_rows_of_one_shape_are_explained_by_the_work_not_a_constant():
    """Two models' attention calls of one shape: any one term fits them; the FLOP term is kept, so a call with
    half the work is priced at half the time."""
    rows = [op_row(m, "attention", 2e8, 6e6, 2e-3, calls=12, name="aten._scaled_dot_product_flash_attention.default")
            for m in ("a", "b")]
    f = next(f for f in fit(rows, HW).op_fits if f.family == "attention/forward")
    assert (f.overhead_s, f.e_memory) == (0.0, None) and f.e_compute == pytest.approx(2e8 / 1e12 / 2e-3)
    rows = [op_row(m, "norm", 1e6, 8e6, 1e-3, name="aten.native_layer_norm.default") for m in ("a", "b")]
    f = next(f for f in fit(rows, HW).op_fits if f.family == "norm/layer/forward")
    assert (f.overhead_s, f.e_compute) == (0.0, None) and f.e_memory == pytest.approx(8e6 / 100e9 / 1e-3)


def test_depthwise_backward_micro_benchmarks_fit_the_backward_low_intensity_family():
    # Bound by bytes at 5% of bandwidth, plus 50 us a call.
    rows = [memory_bound(depthwise_bench(c, n, 0, backward=True, kernel=5), 50e-6, 5e9) for c, n in DEPTHWISE_SHAPES]
    fits = {f.family: f for f in fit(rows + synthetic(0.75, 0.0), HW, "synthetic").op_fits}
    low = fits["conv/backward/low_intensity/k5s1"]
    assert low.models == ("micro-benchmarks",) and low.overhead_s == pytest.approx(50e-6)
    assert low.e_memory == pytest.approx(0.05) and "conv/forward/low_intensity" not in fits


def test_cuda_fp32_convolutions_are_fitted_against_the_tf32_peak():
    """cuDNN runs fp32 convolutions at TF32 on an H100 (as_run.tf32_convolutions), so a bench conv at fp32 that
    reaches 300 TFLOP/s is 300 / 494.7 of the TF32 peak, not 4.4x the 67 TFLOP/s fp32 peak; on a CPU it stays fp32."""
    h100 = load_catalog().get("nvidia-h100-sxm5-80gb")
    n = 2 * 64 * 256 * 56 * 56 * 256 * 9

    def conv(device: str, seconds: float) -> Measurement:
        return Measurement(kind="conv2d", device=device, precision="fp32", shape={"n": 64}, flops=n, bytes=1e8,
                           median_s=seconds, min_s=seconds, max_s=seconds, repetitions=5)

    cal = fit([conv("cuda:0", n / 300e12), conv("cuda:0", n / 290e12)], h100)
    (curve,) = cal.curves
    assert (curve.family, curve.precision) == ("conv", "tf32")
    assert curve.e_max == pytest.approx(300e12 / h100.peak("tf32"), rel=0.02)
    cpu = fit([conv("local-cpu", n / 1e12)], h100)
    assert [(c.family, c.precision) for c in cpu.curves] == [("conv", "fp32")]
