"""Calibration recovers the efficiencies it was given from synthetic measurements, micro-benchmarks and
operator times alike; leave-one-model-out validation never sees the held-out model."""

import numpy as np
import pytest

from chipfit.calibrate import Calibration, fit, fit_curve
from chipfit.catalog.schema import Figure, Hardware
from chipfit.errors import ChipfitError
from chipfit.measure.devices import LocalDevice
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

def op_row(model, family, flops, nbytes, seconds, calls=1, kind=None, precision="fp32", phase="forward"):
    return Measurement(kind="op", device="local-cpu", precision=precision, shape={"calls": calls}, flops=flops,
                       bytes=nbytes, median_s=seconds, min_s=seconds, max_s=seconds, repetitions=3,
                       label="aten.x.default",
                       extra={"model": model, "phase": phase, "op_kind": kind or family, "family": family})


def conv_rows(model, overhead, e_compute, e_memory, peak=1e12, bw=100e9):
    """Synthetic conv ops timed exactly as t = overhead + F / (peak e_c) + B / (bw e_m)."""
    sizes = [(1e6, 4e5), (1e7, 1e6), (1e8, 8e6), (1e9, 2e7), (3e9, 9e7)]
    return [op_row(model, "conv", f, b, overhead + f / (peak * e_compute) + b / (bw * e_memory), calls=2)
            for f, b in sizes]


def test_fit_ops_recovers_a_family_from_synthetic_operator_times():
    rows = conv_rows("a", 20e-6, 0.6, 0.3)
    rows += [op_row("a", "elementwise", n * k, n * 3, 3e-6 + n * 3 / (100e9 * 0.4))
             for n, k in ((4e3, 1), (4e5, 5), (4e7, 2), (4e6, 1))]
    fits = {f.family: f for f in fit(rows, HW, "synthetic").op_fits}
    conv = fits["conv"]
    assert (conv.overhead_s, conv.e_compute, conv.e_memory) == (pytest.approx(20e-6), pytest.approx(0.6),
                                                                pytest.approx(0.3))
    assert conv.calls == 10 and conv.models == ("a",) and conv.error < 1e-9
    # These elementwise ops are timed by their bytes alone: the FLOP term is not needed and stays off.
    ew = fits["elementwise"]
    assert ew.overhead_s == pytest.approx(3e-6) and ew.e_memory == pytest.approx(0.4) and ew.e_compute is None


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


def test_fitted_family_prices_its_ops_and_others_keep_the_roofline():
    cal = fit(conv_rows("a", 20e-6, 0.6, 0.3) + synthetic(0.75, 0.0), HW, "synthetic")
    cal = Calibration.from_dict(cal.to_dict())  # what the store gives back
    ops = [Op("aten.convolution.default", "conv", 2e9, 10**7, 0, "fp32", "forward", "c"),
           Op("aten.mm.default", "matmul", 1e9, 10**6, 0, "fp32", "forward", "m")]
    prof = Profile("t", "infer", 1, None, "fp32", ops, 0, 0, 0, 0)
    t = step_time(OpArrays.from_profile(prof), HW, cal.efficiency(HW))
    conv_s = 20e-6 + 2e9 / (1e12 * 0.6) + 1e7 / (100e9 * 0.3)
    mm_s = 1e9 / (1e12 * 0.75)  # the micro-benchmark curve, flat (half_flops 0); no overhead benchmark
    assert t.total_s == pytest.approx(conv_s + mm_s + HW_OVERHEAD, rel=1e-6)


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
                               shape={}, flops=1, bytes=1, median_s=t, min_s=t, max_s=t, repetitions=1, label=model)

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
        r = op_row("a", "elementwise", n * k, 3 * n, 2e-6 + 3 * n / (100e9 * 0.5) + fresh / 4e9)
        rows.append(Measurement(**{**r.__dict__, "extra": {**r.extra, "fresh_bytes": fresh}}))
    rows += conv_rows("a", 20e-6, 0.6, 0.3)
    cal = fit(rows, HW, "synthetic")
    ew = next(f for f in cal.op_fits if f.family == "elementwise")
    assert (ew.overhead_s, ew.e_memory, ew.fresh_bytes_per_s) == (pytest.approx(2e-6), pytest.approx(0.5),
                                                                  pytest.approx(4e9))
    # A depthwise-like convolution (few FLOPs per byte) has no fit of its own: the conv fit prices it.
    dw = Op("aten.convolution.default", "conv", 1e7, 10**7, 0, "fp32", "forward", "c")
    assert op_family(dw.kind, dw.name, dw.flops, dw.bytes) == "conv_low_intensity"
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
