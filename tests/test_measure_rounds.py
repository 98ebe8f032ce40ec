"""Micro-benchmarks for calibration: the depthwise convolution's work, and rounds of the whole plan with the
median round kept."""

from __future__ import annotations

import pytest

from chipfit.measure import microbench
from chipfit.measure.devices import LocalDevice
from chipfit.measure.microbench import DEPTHWISE_SHAPES, Bench, bench_conv2d, plan, run_microbenchmarks
from chipfit.measurement import Measurement

CPU = LocalDevice(id="local-cpu", kind="cpu", name="test", vendor="", torch_device="cpu",
                  precisions=("fp32", "bf16"), memory_bytes=2**30)


def test_depthwise_conv_counts_one_filter_per_channel():
    m = bench_conv2d(CPU, "fp32", batch=1, channels=4, size=8, kernel=3, depthwise=True)
    # 2 x N x C x H x W x 9 (one 3x3 filter per channel); bytes = input + output + C x 9 weights, fp32
    assert (m.kind, m.flops, m.bytes) == ("conv2d_depthwise", 2 * 4 * 8 * 8 * 9, 4 * (2 * 4 * 8 * 8 + 4 * 9))
    assert m.shape["groups"] == 4 and m.median_s > 0
    depthwise = [b for b in plan(CPU, quick=True) if b.kind == "conv2d_depthwise"]
    # Every shape at each kernel window a MobileNet or EfficientNet uses: 3x3 and 5x5, stride 1 and 2.
    windows = [(k, s) for k, s in ((3, 1), (3, 2), (5, 1), (5, 2)) for _ in DEPTHWISE_SHAPES]
    assert [(b.params["channels"], b.params["size"]) for b in depthwise] == list(DEPTHWISE_SHAPES) * 4
    assert [(b.params["kernel"], b.params["stride"]) for b in depthwise] == windows
    assert depthwise[0].label == "conv2d_depthwise fp32 2 x32 k3s1"


def test_depthwise_backward_times_the_gradient_operator_a_training_step_runs():
    m = bench_conv2d(CPU, "fp32", batch=1, channels=4, size=8, kernel=3, depthwise=True, backward=True)
    # Input and weight gradients: two forward products; reads dy, x, w and writes dx, dw (fp32).
    assert (m.kind, m.flops, m.bytes) == ("conv2d_depthwise_backward", 2 * 2 * 4 * 8 * 8 * 9,
                                          4 * (3 * 4 * 8 * 8 + 2 * 4 * 9))
    backward = [b for b in plan(CPU, quick=True) if b.kind == "conv2d_depthwise_backward"]
    assert [(b.params["channels"], b.params["size"]) for b in backward] == list(DEPTHWISE_SHAPES) * 4


def test_rounds_run_the_whole_plan_each_time_and_keep_the_median_round(monkeypatch):
    seconds = {}  # label -> times handed out, round by round

    def fake_run(bench: Bench, device, meter=None, budget_s=None) -> Measurement:
        if bench.kind == "matmul":
            # fp32 at 1e11 FLOP/s; bf16 at 1e9 FLOP/s, so bf16 n=1024 (2.1 s a call) is skipped after n=256
            t = 2.0 * bench.size**3 / (1e11 if bench.precision == "fp32" else 1e9)
        else:
            t = 1e-3
        k = len(seconds.setdefault(bench.label, []))
        t *= (1.0, 3.0, 2.0)[k]  # round 2 is slow, round 3 in between
        seconds[bench.label].append(t)
        return Measurement(bench.kind, device.id, bench.precision, {}, 2.0 * bench.size**3, 0.0, t, t / 2, t * 2,
                           5, bench.label)

    monkeypatch.setattr(microbench, "run_bench", fake_run)
    labels = []
    out = run_microbenchmarks(CPU, quick=True, rounds=3, progress=lambda done, total, label: labels.append(label))
    n = len(plan(CPU, quick=True))
    assert labels[:n] == labels[n:2 * n] == labels[2 * n:3 * n] and labels[-1] == "done"
    assert "matmul bf16 1024" not in seconds  # skipped in the first round, and so in every round
    assert len(out) == n - 1 and all(len(ts) == 3 for ts in seconds.values())
    mm = next(m for m in out if m.label == "matmul fp32 1024")
    t = 2.0 * 1024**3 / 1e11
    # rounds took t, 3t, 2t: the median round (2t) is kept, with the fastest and slowest of all rounds
    assert (mm.median_s, mm.min_s, mm.max_s, mm.repetitions) == (pytest.approx(2 * t), pytest.approx(t / 2),
                                                                 pytest.approx(6 * t), 15)
    assert mm.extra["round_medians_s"] == pytest.approx([t, 3 * t, 2 * t])
