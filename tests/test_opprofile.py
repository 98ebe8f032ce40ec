"""Per-operator times of real steps: profiler events matched to the traced ops, stored, read back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chipfit.calibrate import _op_rows, device_measurements, fit
from chipfit.measure.devices import LocalDevice
from chipfit.measure.opprofile import Event, OpTimes, charged_times, match_events, profile_ops, profiler_name
from chipfit.measurement import Environment
from chipfit.store import Store
from chipfit.workload import profile
from chipfit.workload.profile import Op, Profile
from tests.fixtures.user_models import TwoLayer

CPU = LocalDevice(id="local-cpu", kind="cpu", name="test CPU", vendor="", torch_device="cpu",
                  precisions=("fp32",), memory_bytes=2**30)


def op(name: str, phase: str = "forward", kind: str = "elementwise", flops: float = 10.0, nbytes: int = 80) -> Op:
    return Op(name, kind, flops, nbytes, 0, "fp32", phase, "")


def test_profiler_names():
    assert profiler_name("aten.mm.default") == "aten::mm"
    assert profiler_name("aten.add_.Tensor") == "aten::add_"


def test_match_in_end_order_skips_unknown_events_and_matches_in_place_forms():
    # The real run: linear{t, addmm}, then a profiler-only event, then autograd's add_ for a traced add.
    events = sorted([
        Event("aten::linear", 0, 10, 10e-6), Event("aten::t", 1, 2, 1e-6), Event("aten::addmm", 3, 9, 6e-6),
        Event("autograd::engine::evaluate_function: X", 11, 20, 9e-6), Event("aten::add_", 12, 14, 2e-6),
    ], key=lambda e: e.end_us)
    ops = [op("aten.addmm.default", kind="matmul"), op("aten.zeros_like.default"), op("aten.add.Tensor")]
    idx = match_events(ops, events)
    assert [events[k].name if k is not None else None for k in idx] == ["aten::addmm", None, "aten::add_"]


def test_a_traced_op_inside_another_is_not_charged_twice():
    # hardswish_ calls clone; the tracer records clone first (it returns first), then hardswish_.
    events = sorted([Event("aten::hardswish_", 0, 10, 10e-6), Event("aten::clone", 1, 7, 6e-6),
                     Event("aten::copy_", 2, 6, 4e-6)], key=lambda e: e.end_us)
    ops = [op("aten.clone.default"), op("aten.hardswish_.default")]
    idx = match_events(ops, events)
    assert [events[k].name for k in idx] == ["aten::clone", "aten::hardswish_"]
    assert charged_times(events, idx) == pytest.approx([6e-6, 4e-6])  # copy_ stays in clone


def test_real_train_step_matches_every_steady_state_op(capfd):
    model = TwoLayer()
    prof = profile(model, mode="train", batch=4)
    ot = profile_ops(model, CPU, prof, mode="train", batch=4, warmup=1, repetitions=2)
    assert "profiler_st" not in capfd.readouterr().err  # torch's start/stop lines are kept off the terminal
    # The tracer records a steady-state optimizer step, so every traced op is found in the real one.
    assert ot.unmatched == {}
    assert ot.matched == len(prof.ops)
    assert len(ot.times_s) == 2 and len(ot.step_s) == 2
    s = ot.summary()
    assert s["ops_by_phase"] == {p: sum(o.phase == p for o in prof.ops) for p in ("forward", "backward", "optimizer")}
    assert 0 < s["matched_ops_s"] < s["profiled_step_s"]
    rows = ot.measurements("local-cpu", "TwoLayer")
    assert sum(m.shape["calls"] for m in rows) == ot.matched
    fwd = [m for m in rows if m.extra["phase"] == "forward"]
    assert [m.label for m in fwd][:3] == ["aten.addmm.default", "aten.relu.default", "aten.addmm.default"]
    assert fwd[0].flops == 2 * 4 * 64 * 128 + 4 * 128 and fwd[0].extra["family"] == "matmul"
    assert fwd[1].extra["family"] == "elementwise/out"
    assert all(m.kind == "op" and m.median_s > 0 and m.extra["model"] == "TwoLayer" for m in rows)


def _times(prof: Profile, seconds: list[float]) -> OpTimes:
    return OpTimes(profile=prof, times_s=[seconds, [2 * t for t in seconds], [3 * t for t in seconds]],
                   step_s=[1.0, 1.0, 1.0])


def test_distinct_calls_are_grouped_with_the_median_per_call():
    ops = [op("aten.add.Tensor"), op("aten.add.Tensor"), op("aten.add.Tensor", nbytes=800)]
    prof = Profile("m", "infer", 1, None, "fp32", ops, 0, 0, 0, 0)
    rows = _times(prof, [1e-6, 3e-6, 5e-6]).measurements("local-cpu", "m")
    assert [(m.shape["calls"], m.bytes) for m in rows] == [(2, 80.0), (1, 800.0)]
    # per-call means per rep: 2, 4, 6 us -> median 4 us; min 2, max 6
    assert (rows[0].median_s, rows[0].min_s, rows[0].max_s) == pytest.approx((4e-6, 2e-6, 6e-6))


def test_an_operator_whose_time_jumps_between_steps_is_fitted_at_its_mean():
    prof = Profile("m", "infer", 1, None, "fp32", [op("aten.add.Tensor")], 0, 0, 0, 0)
    # Fast twice, then one step where its new pages fault: 20, 20, 140 ms.
    (row,) = OpTimes(prof, [[0.02], [0.02], [0.14]], [1.0, 1.0, 1.0]).measurements("local-cpu", "m")
    assert (row.median_s, row.extra["mean_s"]) == pytest.approx((0.02, 0.06))
    assert _op_rows([row])[0]["t"] == pytest.approx(0.06)
    assert OpTimes(prof, [[0.02], [0.02], [0.14]], [1.0, 1.0, 1.0]).summary()["matched_ops_s"] == pytest.approx(0.06)
    # Rows stored before the mean was kept are fitted at their median.
    old = replace(row, extra={k: v for k, v in row.extra.items() if k != "mean_s"})
    assert _op_rows([old])[0]["t"] == pytest.approx(0.02)


def test_op_rows_round_trip_through_the_store_and_feed_calibration(tmp_path):
    from chipfit.catalog.schema import Figure, Hardware
    from chipfit.measurement import Measurement

    hw = Hardware(id="local-cpu", name="CPU", vendor="v", hw_class="cpu",
                  peak_flops={"fp32": Figure(1e11, "s", True)}, mem_bw_bytes_per_s=Figure(1e10, "s"))
    ops = [op("aten.add.Tensor", nbytes=n) for n in (800, 8000, 80000)]
    prof = Profile("m", "infer", 1, None, "fp32", ops, 0, 0, 0, 0)
    # t = 2 us + bytes / (1e10 * 0.5): exactly the family fit's form
    seconds = [2e-6 + o.bytes / 5e9 for o in ops]
    rows = OpTimes(prof, [seconds], [1.0]).measurements("local-cpu", "m")
    step = Measurement(kind="infer_step", device="local-cpu", precision="fp32", shape={"batch": 1}, flops=30,
                       bytes=88800, median_s=sum(seconds) + 3 * 1e-6, min_s=1, max_s=1, repetitions=1, label="m",
                       extra={"model": "m", "op_profile": {"ops_by_phase": {"forward": 3},
                                                           "matched_ops_s": sum(seconds)}})
    env = Environment("local-cpu", "CPU", "local-cpu", 2, "h", "p", "3", "t", "c", "2026-01-01T00:00:00+00:00")
    with Store(tmp_path / "r.sqlite") as store:
        store.record_run("measure", "local-cpu", env, [step, *rows])
        back, source = device_measurements(store, require_bench=False)
    assert [m.label for m in back if m.kind == "op"] == ["aten.add.Tensor"] * 3
    assert "3 operator rows and 1 steps of 1 models (m)" in source
    cal = fit(back, hw, source)
    # The add's family and its parent kind, fitted on the same three rows.
    assert [f.family for f in cal.op_fits] == ["elementwise", "elementwise/out"]
    for f in cal.op_fits:
        assert (f.overhead_s, f.e_compute, f.e_memory) == (pytest.approx(2e-6), None, pytest.approx(0.5))
    assert cal.step_overhead_s == {"forward": pytest.approx(1e-6)}


def test_profiled_times_are_scaled_to_the_clean_step():
    ops = [op("aten.add.Tensor"), op("aten.mul.Tensor")]
    prof = Profile("m", "infer", 1, None, "fp32", ops, 0, 0, 0, 0)
    ot = OpTimes(prof, [[3e-3, 1e-3], [3e-3, 1e-3]], step_s=[5e-3, 5e-3])  # profiled step: 5 ms
    # The clean step took 4 ms: every profiled time is scaled by 4/5.
    assert [m.median_s for m in ot.measurements("local-cpu", "m", clean_step_s=4e-3)] == pytest.approx([2.4e-3, 0.8e-3])
    s = ot.summary(4e-3)
    assert (s["scale"], s["matched_ops_s"]) == (pytest.approx(0.8), pytest.approx(3.2e-3))
    assert ot.summary()["matched_ops_s"] == pytest.approx(4e-3)
    # A disturbed profiled step (10 ms, every operator twice as slow) is scaled by its own wall time.
    two = OpTimes(prof, [[3e-3, 1e-3], [6e-3, 2e-3]], step_s=[5e-3, 10e-3])
    assert [m.extra["mean_s"] for m in two.measurements("local-cpu", "m", 4e-3)] == pytest.approx([2.4e-3, 0.8e-3])
