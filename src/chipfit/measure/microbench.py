"""Micro-benchmarks of one local device: matmul, conv2d (dense, and depthwise forward and backward),
copy/triad bandwidth, per-op overhead.

Each benchmark warms up, then times repetitions (each rep a loop of `inner` calls sized so
a rep is long enough for the timer) and returns a Measurement with median, min and max
seconds per call. CPU reps are timed with perf_counter; CUDA reps with CUDA events and a
synchronize. Threads are left as torch has them and recorded. Library code never prints:
progress goes to a callback.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from ..measurement import Measurement
from ..workload.profile import conv_window
from ..workload.workload import BYTES_PER_ELEMENT
from .devices import LocalDevice
from .power import EnergyMeter, fill_window

Progress = Callable[[int, int, str], None]  # (done, total, label of the benchmark now starting)

TARGET_REP_S = 0.01  # a rep loops calls until it lasts about this long
BUDGET_S = 0.4  # timed seconds per benchmark, spread over the reps
MIN_REPS, MAX_REPS = 5, 50
MAX_CALL_S = 0.5  # a matmul size expected to take longer per call is skipped
BENCH_ROUNDS = 3  # rounds of the whole plan `chipfit bench` runs (one with --quick)
# A GPU is warmed up for this long before it is timed: its clocks rise from idle and cuBLAS/cuDNN choose and
# load their kernels on a shape's first calls (Triton's do_bench warms up for 25 ms; this is 8 times that).
GPU_WARMUP_S = 0.2
# Square matmul sizes. A big GPU reaches its matmul peak only at n = 8192-16384 (the shared H200: bf16 682
# TFLOP/s at 4096, torch's best 794 at 8192-16384), so a GPU's quick set keeps those; a size whose three
# operands would take over MATMUL_MEMORY_SHARE of the device's memory is left out, and one that would run longer
# than MAX_CALL_S at the rate the previous size reached is skipped (run_microbenchmarks).
CPU_MATMUL_SIZES, CPU_QUICK_MATMUL_SIZES = (128, 256, 512, 1024, 2048), (256, 1024)
GPU_MATMUL_SIZES, GPU_QUICK_MATMUL_SIZES = (1024, 2048, 4096, 8192, 16384), (1024, 4096, 8192, 16384)
MATMUL_MEMORY_SHARE = 0.25


def _dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
            "fp16": torch.float16, "int8": torch.int8}[precision]


def _sync(device: LocalDevice) -> Callable[[], None]:
    import torch

    if device.kind == "cuda":
        return torch.cuda.synchronize
    if device.kind == "mps":
        return torch.mps.synchronize
    return lambda: None


def time_calls(fn: Callable[[], object], device: LocalDevice, inner: int, reps: int) -> list[float]:
    """Seconds per call of `fn` for each of `reps` reps of `inner` calls."""
    import torch

    sync = _sync(device)
    if device.kind == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:
            start.record()
            for _ in range(inner):
                fn()
            end.record()
        sync()
        return [start.elapsed_time(end) / 1e3 / inner for start, end in events]
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return times


@dataclass
class Timing:
    """Per-call seconds of the timed reps, the calls made, and the energy over them."""

    times_s: list[float]
    inner: int
    energy_j: float | None
    power_watts: float | None
    power_method: str
    energy_estimated: bool
    timer: str


def measure(fn: Callable[[], object], device: LocalDevice, meter: EnergyMeter | None = None,
            budget_s: float | None = None) -> Timing:
    """Warm up `fn`, size the reps to the timer and the budget (BUDGET_S), time them with energy."""
    budget_s = BUDGET_S if budget_s is None else budget_s
    sync = _sync(device)
    meter = meter or EnergyMeter()
    calls, t0 = 0, time.perf_counter()
    warmup_s = TARGET_REP_S if device.kind == "cpu" else max(TARGET_REP_S, GPU_WARMUP_S)
    while calls < 2 or (time.perf_counter() - t0 < warmup_s and calls < 1000):
        t_call = time.perf_counter()
        fn()
        sync()
        calls += 1
    per_call = max(time.perf_counter() - t_call, 1e-9)  # the last, warm call
    inner = max(1, round(TARGET_REP_S / per_call))
    reps = min(MAX_REPS, max(MIN_REPS if per_call < budget_s else 3, int(budget_s / (per_call * inner))))
    meter.start()
    times = time_calls(fn, device, inner, reps)
    n = inner * reps + fill_window(meter, fn, sync, inner)  # energy over the timed calls and any the meter needs
    reading = meter.stop()
    return Timing(
        times_s=times,
        inner=inner,
        energy_j=reading.joules / n if reading.joules is not None else None,
        power_watts=reading.watts,
        power_method=reading.method,
        energy_estimated=reading.estimated,
        timer="cuda events" if device.kind == "cuda" else "perf_counter",
    )


def _measurement(kind: str, device: LocalDevice, precision: str, shape: dict, flops: float, nbytes: float,
                 timing: Timing, label: str = "") -> Measurement:
    import torch

    t = timing.times_s
    return Measurement(
        kind=kind, device=device.id, precision=precision, shape=shape, flops=float(flops), bytes=float(nbytes),
        median_s=statistics.median(t), min_s=min(t), max_s=max(t), repetitions=len(t), label=label,
        energy_j=timing.energy_j, power_watts=timing.power_watts, power_method=timing.power_method,
        energy_estimated=timing.energy_estimated,
        extra={"threads": torch.get_num_threads(), "calls_per_rep": timing.inner, "timer": timing.timer},
    )


@contextlib.contextmanager
def _tf32(enabled: bool):
    import torch

    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def bench_matmul(device: LocalDevice, precision: str, n: int, meter: EnergyMeter | None = None,
                 budget_s: float | None = None) -> Measurement:
    """C = A @ B with square n x n operands (int8: torch._int_mm, int32 result)."""
    import torch

    dev = torch.device(device.torch_device)
    with torch.inference_mode(), _tf32(precision == "tf32" and device.kind == "cuda"):
        if precision == "int8":
            a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=dev)
            b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=dev)
            c = torch.empty((n, n), dtype=torch.int32, device=dev)
            timing = measure(lambda: torch._int_mm(a, b, out=c), device, meter, budget_s)
        else:
            a = torch.randn(n, n, dtype=_dtype(precision), device=dev)
            b = torch.randn(n, n, dtype=_dtype(precision), device=dev)
            c = torch.empty_like(a)
            timing = measure(lambda: torch.mm(a, b, out=c), device, meter, budget_s)
    return _measurement("matmul", device, precision, {"m": n, "n": n, "k": n}, 2.0 * n**3, matmul_bytes(precision, n),
                        timing, "mm")


def matmul_bytes(precision: str, n: int) -> int:
    """Bytes of the operands and result of an n x n matmul (int8: an int32 result)."""
    size = BYTES_PER_ELEMENT[precision]
    return 2 * n * n * size + n * n * (4 if precision == "int8" else size)


def matmul_sizes(device: LocalDevice, precision: str, quick: bool = False) -> list[int]:
    """The matmul sizes benchmarked on `device` in `precision`: CPU- or GPU-sized, within the device's memory."""
    if device.kind == "cpu":
        return list(CPU_QUICK_MATMUL_SIZES if quick else CPU_MATMUL_SIZES)
    sizes = GPU_QUICK_MATMUL_SIZES if quick else GPU_MATMUL_SIZES
    limit = MATMUL_MEMORY_SHARE * device.memory_bytes if device.memory_bytes else math.inf
    return [n for n in sizes if matmul_bytes(precision, n) <= limit]


def bench_bandwidth(device: LocalDevice, op: str, quick: bool = False, elements: int | None = None,
                    meter: EnergyMeter | None = None, budget_s: float | None = None) -> Measurement:
    """STREAM-like copy (a = b) or triad (a = b + s*c, one fused kernel) over fp32 arrays."""
    import torch

    elements = elements or _bandwidth_elements(device, quick)
    dev = torch.device(device.torch_device)
    with torch.inference_mode():
        a = torch.empty(elements, dtype=torch.float32, device=dev)
        b = torch.full((elements,), 1.5, dtype=torch.float32, device=dev)
        if op == "copy":
            timing = measure(lambda: a.copy_(b), device, meter, budget_s)
            flops, arrays = 0.0, 2
        elif op == "triad":
            c = torch.full((elements,), 0.5, dtype=torch.float32, device=dev)
            timing = measure(lambda: torch.add(b, c, alpha=3.0, out=a), device, meter, budget_s)
            flops, arrays = 2.0 * elements, 3
        else:
            raise ValueError(f"unknown bandwidth op {op!r}")
    return _measurement(op, device, "fp32", {"elements": elements}, flops, arrays * 4 * elements, timing, op)


def _bandwidth_elements(device: LocalDevice, quick: bool) -> int:
    """Arrays far larger than any cache: 64-128 MiB each on a CPU, 0.25-1 GiB on a GPU."""
    if device.kind == "cpu":
        return 2**24 if quick else 2**25
    return 2**26 if quick else 2**28


def bench_overhead(device: LocalDevice, meter: EnergyMeter | None = None, budget_s: float | None = None) -> Measurement:
    """Time of one tiny kernel (1-element add): the per-operator dispatch/launch overhead."""
    import torch

    dev = torch.device(device.torch_device)
    with torch.inference_mode():
        x = torch.ones(1, device=dev)
        y = torch.ones(1, device=dev)
        z = torch.empty(1, device=dev)
        timing = measure(lambda: torch.add(x, y, out=z), device, meter, (budget_s or BUDGET_S) / 4)
    return _measurement("overhead", device, "fp32", {"elements": 1}, 1.0, 12.0, timing, "add")


def bench_conv2d(device: LocalDevice, precision: str, batch: int, channels: int = 64, size: int = 56,
                 kernel: int = 3, meter: EnergyMeter | None = None, depthwise: bool = False,
                 backward: bool = False, stride: int = 1, budget_s: float | None = None) -> Measurement:
    """A ResNet-style 3x3 convolution, stride 1, same padding, channels in = out; or, `depthwise`, one filter
    per channel (groups = channels, MobileNet's depthwise layers, of any `kernel` size and `stride`), measured
    as kind "conv2d_depthwise". `backward`: the operator a training step runs for it instead
    (aten.convolution_backward: the input's and the weight's gradients, no bias), kind "<kind>_backward"."""
    import torch
    import torch.nn.functional as F

    dev = torch.device(device.torch_device)
    dtype = _dtype(precision)
    groups = channels if depthwise else 1
    pad = kernel // 2
    out_size = -(-size // stride)  # same padding
    with torch.inference_mode(), _tf32(precision == "tf32" and device.kind == "cuda"):
        x = torch.randn(batch, channels, size, size, dtype=dtype, device=dev)
        w = torch.randn(channels, channels // groups, kernel, kernel, dtype=dtype, device=dev)
        if backward:
            dy = torch.randn(batch, channels, out_size, out_size, dtype=dtype, device=dev)
            timing = measure(lambda: torch.ops.aten.convolution_backward(
                dy, x, w, None, [stride, stride], [pad, pad], [1, 1], False, [0, 0], groups, [True, True, False]),
                device, meter, budget_s)
        else:
            timing = measure(lambda: F.conv2d(x, w, stride=stride, padding=pad, groups=groups), device, meter, budget_s)
    activation = batch * channels * size * size
    output = batch * channels * out_size**2
    weights = channels * channels // groups * kernel**2
    products = 2.0 * output * (channels // groups) * kernel**2
    # Backward: one product each for the input's and the weight's gradient; reads dy, x, w, writes dx, dw.
    flops = 2 * products if backward else products
    elements = 2 * activation + output + 2 * weights if backward else activation + output + weights
    nbytes = BYTES_PER_ELEMENT[precision] * elements
    shape = {"batch": batch, "channels_in": channels, "channels_out": channels, "height": size, "width": size,
             "kernel": kernel} | ({"groups": groups, "stride": stride} if depthwise else {})
    kind = ("conv2d_depthwise" if depthwise else "conv2d") + ("_backward" if backward else "")
    return _measurement(kind, device, precision, shape, flops, nbytes, timing, kind)


# Depthwise layers as MobileNets stack them (channels double as the map halves), batch 8: a spread of sizes for
# calibration's fit of each low-intensity convolution window (kernel, stride) that MobileNets and EfficientNets use.
DEPTHWISE_SHAPES = ((32, 112), (64, 56), (128, 28), (256, 14))
DEPTHWISE_WINDOWS = ((3, 1), (3, 2), (5, 1), (5, 2))


@dataclass(frozen=True)
class Bench:
    """One planned benchmark: what `run_bench` is to run."""

    kind: str
    precision: str = "fp32"
    size: int = 0  # matmul n, conv2d batch
    params: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        size = f" {self.size}" if self.size else ""
        channels = f" x{self.params['channels']}" if "channels" in self.params else ""
        kernel, stride = self.params.get("kernel"), self.params.get("stride", 1)
        window = f" {conv_window((kernel, kernel), (stride, stride))}" if kernel else ""
        return f"{self.kind} {self.precision}{size}{channels}{window}"


def plan(device: LocalDevice, quick: bool = False) -> list[Bench]:
    """The benchmarks run_microbenchmarks runs on `device`, in order."""
    gpu = device.kind != "cpu"
    out = [Bench("overhead"), Bench("copy", params={"quick": quick}), Bench("triad", params={"quick": quick})]
    out += [Bench("matmul", p, n) for p in device.precisions for n in matmul_sizes(device, p, quick)]
    conv_batch = (16 if quick else 64) if gpu else (2 if quick else 8)
    out += [Bench("conv2d", p, conv_batch) for p in device.precisions if p not in ("int8",)]
    out += [Bench(kind, "fp32", conv_batch, {"channels": c, "size": n, "kernel": k, "stride": s})
            for kind in ("conv2d_depthwise", "conv2d_depthwise_backward") for k, s in DEPTHWISE_WINDOWS
            for c, n in DEPTHWISE_SHAPES]
    return out


def run_bench(bench: Bench, device: LocalDevice, meter: EnergyMeter | None = None,
              budget_s: float | None = None) -> Measurement:
    """Run one planned benchmark, timing about `budget_s` seconds of calls (default BUDGET_S)."""
    if bench.kind == "matmul":
        return bench_matmul(device, bench.precision, bench.size, meter, budget_s)
    if bench.kind == "conv2d":
        return bench_conv2d(device, bench.precision, bench.size, meter=meter, budget_s=budget_s)
    if bench.kind in ("conv2d_depthwise", "conv2d_depthwise_backward"):
        return bench_conv2d(device, bench.precision, bench.size, bench.params["channels"], bench.params["size"],
                            bench.params["kernel"], meter, depthwise=True, backward=bench.kind.endswith("_backward"),
                            stride=bench.params["stride"], budget_s=budget_s)
    if bench.kind in ("copy", "triad"):
        return bench_bandwidth(device, bench.kind, quick=bench.params.get("quick", False), meter=meter,
                               budget_s=budget_s)
    if bench.kind == "overhead":
        return bench_overhead(device, meter, budget_s)
    raise ValueError(f"unknown benchmark kind {bench.kind!r}")


def median_round(rounds: list[Measurement]) -> Measurement:
    """One benchmark measured in several rounds, as one Measurement: the round with the median time (the lower
    of the middle two for an even count), with the repetitions, fastest and slowest of all rounds."""
    if len(rounds) == 1:
        return rounds[0]
    mid = statistics.median_low(m.median_s for m in rounds)
    pick = next(m for m in rounds if m.median_s == mid)
    return replace(pick, min_s=min(m.min_s for m in rounds), max_s=max(m.max_s for m in rounds),
                   repetitions=sum(m.repetitions for m in rounds),
                   extra={**pick.extra, "round_medians_s": [m.median_s for m in rounds]})


def run_microbenchmarks(device: LocalDevice, quick: bool = False, progress: Progress | None = None,
                        meter: EnergyMeter | None = None, rounds: int = 1,
                        budget_s: float | None = None) -> list[Measurement]:
    """Run plan(device, quick) `rounds` times over, the whole plan per round (so a slow stretch of a shared
    machine is spread over every benchmark instead of landing on one), and return one Measurement per
    benchmark (median_round of its rounds), each timed for about `budget_s` (default BUDGET_S).

    A matmul size whose time per call, extrapolated from the last size of the same
    precision, exceeds MAX_CALL_S is skipped (fp16 on a CPU without fp16 units is ~100x
    slower than fp32); progress still counts it.
    """
    benches = plan(device, quick)
    total = len(benches) * rounds
    results: dict[int, list[Measurement]] = {}
    skipped: set[int] = set()
    rate: dict[str, float] = {}  # precision -> last achieved matmul FLOP/s (first round)
    for r in range(rounds):
        for i, bench in enumerate(benches):
            if progress:
                progress(r * len(benches) + i, total, bench.label)
            if i in skipped:
                continue
            if r == 0 and bench.kind == "matmul" and bench.precision in rate:
                if 2.0 * bench.size**3 / rate[bench.precision] > MAX_CALL_S:
                    skipped.add(i)
                    continue
            m = run_bench(bench, device, meter, budget_s)
            if r == 0 and bench.kind == "matmul":
                rate[bench.precision] = m.achieved_flops_per_s or math.inf
            results.setdefault(i, []).append(m)
    if progress:
        progress(total, total, "done")
    return [median_round(ms) for _, ms in sorted(results.items())]
