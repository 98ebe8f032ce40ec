"""Micro-benchmarks: work formulas, the CUDA event path (faked), energy per call, the plan."""

from __future__ import annotations

import pytest
import torch

from chipfit.measure import microbench
from chipfit.measure.devices import LocalDevice
from chipfit.measure.microbench import (
    Bench, bench_bandwidth, bench_conv2d, bench_matmul, bench_overhead, plan, run_microbenchmarks, time_calls,
)
from chipfit.measure.power import EnergyMeter, EnergyReading
from chipfit.measurement import Measurement

CPU = LocalDevice(id="local-cpu", kind="cpu", name="test", vendor="", torch_device="cpu",
                  precisions=("fp32", "bf16", "fp16", "int8"))
# A "GPU" whose tensors live on the CPU, so the CUDA timing path runs with faked events.
FAKE_GPU = LocalDevice(id="cuda:0", kind="cuda", name="fake", vendor="NVIDIA", torch_device="cpu",
                       precisions=("fp32", "tf32"))


@pytest.fixture(autouse=True)
def small_budget(monkeypatch):
    monkeypatch.setattr(microbench, "BUDGET_S", 0.01)
    monkeypatch.setattr(microbench, "TARGET_REP_S", 0.001)


class FakeCuda:
    """torch.cuda.Event/synchronize stand-ins: each record() reads a clock that ticks 4 ms."""

    def __init__(self):
        self.now_ms = 0.0
        self.syncs = 0
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.t = None

            def record(self):
                fake.now_ms += 4.0
                self.t = fake.now_ms

            def elapsed_time(self, end):
                assert fake.syncs > 0, "elapsed_time read before synchronize"
                return end.t - self.t

        self.Event = Event

    def synchronize(self, device=None):
        self.syncs += 1


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = FakeCuda()
    monkeypatch.setattr(torch.cuda, "Event", fake.Event)
    monkeypatch.setattr(torch.cuda, "synchronize", fake.synchronize)
    return fake


def test_cuda_event_timing(fake_cuda):
    calls = []
    times = time_calls(lambda: calls.append(1), FAKE_GPU, inner=8, reps=3)
    # each rep spans one 4 ms tick between its start and end events, over 8 calls
    assert times == [0.0005, 0.0005, 0.0005]
    assert len(calls) == 24
    assert fake_cuda.syncs == 1


def test_matmul_on_the_cuda_path(fake_cuda):
    before = torch.backends.cuda.matmul.allow_tf32
    m = bench_matmul(FAKE_GPU, "tf32", 64)
    assert torch.backends.cuda.matmul.allow_tf32 == before  # restored after the benchmark
    assert m.extra["timer"] == "cuda events"
    assert m.median_s == pytest.approx(0.004 / m.extra["calls_per_rep"])
    assert m.min_s == m.max_s == m.median_s
    assert (m.device, m.kind, m.precision, m.shape) == ("cuda:0", "matmul", "tf32", {"m": 64, "n": 64, "k": 64})
    assert m.flops == 2 * 64**3
    assert m.bytes == 3 * 64 * 64 * 4
    assert fake_cuda.syncs > 0


def test_matmul_work_per_precision_on_cpu():
    fp32 = bench_matmul(CPU, "fp32", 32)
    assert (fp32.flops, fp32.bytes) == (2 * 32**3, 3 * 32 * 32 * 4)
    bf16 = bench_matmul(CPU, "bf16", 32)
    assert bf16.bytes == 3 * 32 * 32 * 2
    int8 = bench_matmul(CPU, "int8", 32)
    assert int8.bytes == 2 * 32 * 32 + 32 * 32 * 4  # int8 operands, int32 result
    for m in (fp32, bf16, int8):
        assert 0 < m.min_s <= m.median_s <= m.max_s
        assert m.repetitions >= 3  # MIN_REPS, or 3 when one warm call outlasts the budget (a loaded machine)
        assert m.extra["timer"] == "perf_counter" and m.extra["threads"] == torch.get_num_threads()
        assert m.achieved_flops_per_s == pytest.approx(m.flops / m.median_s)


def test_bandwidth_conv_overhead_work():
    triad = bench_bandwidth(CPU, "triad", elements=1000)
    assert (triad.flops, triad.bytes, triad.shape) == (2000.0, 12000.0, {"elements": 1000})
    copy = bench_bandwidth(CPU, "copy", elements=1000)
    assert (copy.flops, copy.bytes, copy.achieved_flops_per_s) == (0.0, 8000.0, None)
    conv = bench_conv2d(CPU, "fp32", batch=1, channels=4, size=8, kernel=3)
    # 2 x N x Cout x H x W x Cin x k x k; bytes = input + output + weights, fp32
    assert conv.flops == 2 * 1 * 4 * 8 * 8 * 4 * 9 == 18432
    assert conv.bytes == 4 * (2 * 4 * 8 * 8 + 4 * 4 * 9) == 2624
    # Depthwise 5x5, stride 2: 8x8 -> 4x4 outputs, each 25 multiply-adds; backward reads dy, x, w, writes dx, dw.
    dw = bench_conv2d(CPU, "fp32", batch=1, channels=4, size=8, kernel=5, depthwise=True, stride=2)
    assert (dw.flops, dw.bytes) == (2 * 4 * 4 * 4 * 25, 4 * (4 * 8 * 8 + 4 * 4 * 4 + 4 * 25))
    assert (dw.kind, dw.shape["stride"], dw.shape["kernel"]) == ("conv2d_depthwise", 2, 5)
    back = bench_conv2d(CPU, "fp32", batch=1, channels=4, size=8, kernel=5, depthwise=True, stride=2, backward=True)
    assert (back.flops, back.bytes) == (2 * dw.flops, 4 * (2 * 4 * 8 * 8 + 4 * 4 * 4 + 2 * 4 * 25))
    tiny = bench_overhead(CPU)
    assert (tiny.kind, tiny.label, tiny.shape) == ("overhead", "add", {"elements": 1})
    with pytest.raises(ValueError):
        bench_bandwidth(CPU, "scale", elements=10)


class FixedMeter(EnergyMeter):
    """Reports 3 J over 0.5 s, measured."""

    def stop(self) -> EnergyReading:
        return EnergyReading(3.0, 0.5, "test counter", False)


def test_energy_is_per_call():
    m = bench_matmul(CPU, "fp32", 16, meter=FixedMeter())
    calls = m.repetitions * m.extra["calls_per_rep"]
    assert m.energy_j == pytest.approx(3.0 / calls)
    assert (m.power_watts, m.power_method, m.energy_estimated) == (6.0, "test counter", False)


def test_plan_covers_every_precision_and_kind():
    benches = plan(CPU, quick=True)
    assert [b.label for b in benches[:3]] == ["overhead fp32", "copy fp32", "triad fp32"]
    assert [(b.precision, b.size) for b in benches if b.kind == "matmul"] == [
        (p, n) for p in ("fp32", "bf16", "fp16", "int8") for n in (256, 1024)]
    assert [b.precision for b in benches if b.kind == "conv2d"] == ["fp32", "bf16", "fp16"]
    assert [b.size for b in plan(FAKE_GPU) if b.kind == "matmul"][:4] == [1024, 2048, 4096, 8192]


def test_slow_precisions_skip_sizes_and_progress_counts_all(monkeypatch):
    rates = {"fp32": 1e11, "bf16": 2e11, "fp16": 1e9, "int8": 4e11}  # FLOP/s

    def fake_run(bench: Bench, device, meter=None, budget_s=None) -> Measurement:
        flops = 2.0 * bench.size**3 if bench.kind == "matmul" else 1.0
        t = flops / rates[bench.precision] if bench.kind == "matmul" else 1e-3
        return Measurement(bench.kind, device.id, bench.precision, {}, flops, 0.0, t, t, t, 5)

    monkeypatch.setattr(microbench, "run_bench", fake_run)
    seen = []
    out = run_microbenchmarks(CPU, quick=True, progress=lambda done, total, label: seen.append((done, label)))
    total = len(plan(CPU, quick=True))
    assert seen[0] == (0, "overhead fp32") and seen[-1] == (total, "done")
    assert len(seen) == total + 1
    # fp16 at 1 GFLOP/s: 1024^3 x 2 / 1e9 = 2.1 s per call > MAX_CALL_S, so skipped
    assert [(m.precision, m.shape) for m in out if m.kind == "matmul" and m.precision == "fp16"] == [("fp16", {})]
    assert len([m for m in out if m.kind == "matmul"]) == 7
