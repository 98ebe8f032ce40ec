"""Energy over a timed window: NVML counters, RAPL counters, or a labelled estimate.

Every reading says how it was had (`method`) and whether it is an estimate; a number that
was not read from a counter is never shown as measured. A meter whose counter updates too seldom for a short
window says so (`min_window_s`); `fill_window` then keeps the work running until the window is that long.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
# NVML's energy counter and power readings are refreshed by the board's sensor, not per kernel: on the shared
# H200 (../shared/gpu, run 1) an 8 ms window read 0 J while windows of 0.3 s and more read 300-700 W; and the
# sensor of A100/H100 samples only part of each period (Yang et al., "Part-time Power Measurements", SC'24,
# arXiv 2312.02741), so a reading needs many periods. Half a second of work per reading.
NVML_MIN_WINDOW_S = 0.5


@dataclass(frozen=True)
class EnergyReading:
    """Energy used over `seconds`; joules is None when nothing could be measured or estimated."""

    joules: float | None
    seconds: float
    method: str
    estimated: bool

    @property
    def watts(self) -> float | None:
        return self.joules / self.seconds if self.joules is not None and self.seconds > 0 else None


class EnergyMeter:
    """start() then stop() -> EnergyReading for the window between them."""

    method = "unavailable: no energy counter is readable and no TDP is known"
    estimated = True
    min_window_s = 0.0  # the shortest window this meter reads faithfully

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since start()."""
        return time.perf_counter() - self._t0

    def stop(self) -> EnergyReading:
        return EnergyReading(None, time.perf_counter() - self._t0, self.method, self.estimated)


class RaplMeter(EnergyMeter):
    """Package energy from Linux powercap (intel-rapl, also used for AMD), wrap-around handled."""

    estimated = False

    def __init__(self, domains: list[Path]):
        self.domains = domains
        self.method = "RAPL energy counter (" + ", ".join(str(d) for d in domains) + ")"

    @classmethod
    def find(cls, root: Path = POWERCAP) -> RaplMeter | None:
        """The readable package domains under `root` (intel-rapl:N, not its sub-zones), or None."""
        domains = []
        for zone in sorted(root.glob("intel-rapl:*")):
            if zone.name.count(":") != 1:
                continue
            try:
                if (zone / "name").read_text().strip().startswith("package"):
                    int((zone / "energy_uj").read_text())
                    domains.append(zone)
            except (OSError, ValueError):  # energy_uj is root-only on many systems
                continue
        return cls(domains) if domains else None

    def _read(self) -> list[int]:
        return [int((d / "energy_uj").read_text()) for d in self.domains]

    def start(self) -> None:
        self._e0 = self._read()
        super().start()

    def stop(self) -> EnergyReading:
        seconds = time.perf_counter() - self._t0
        total_uj = 0
        for zone, before, after in zip(self.domains, self._e0, self._read()):
            if after < before:  # the counter wrapped once at max_energy_range_uj
                after += int((zone / "max_energy_range_uj").read_text()) + 1
            total_uj += after - before
        return EnergyReading(total_uj / 1e6, seconds, self.method, False)


class NvmlMeter(EnergyMeter):
    """GPU energy from NVML: the total-energy counter (Volta and newer), else sampled power. The GPU is found
    by its UUID where given (CUDA's numbering follows CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, NVML's does
    not), else by NVML index."""

    estimated = False
    min_window_s = NVML_MIN_WINDOW_S

    def __init__(self, index: int, sample_interval_s: float = 0.02, uuid: str | None = None):
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handle = nvml_handle(pynvml, index, uuid)
        self.sample_interval_s = sample_interval_s
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self.counter = True
            self.method = "NVML total energy counter"
        except pynvml.NVMLError:
            self.counter = False
            self.method = f"NVML power samples every {sample_interval_s * 1e3:g} ms, integrated"

    def start(self) -> None:
        if self.counter:
            self._mj0 = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        else:
            self._samples: list[tuple[float, float]] = []
            self._done = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        super().start()

    def _sample(self) -> None:
        while True:
            self._samples.append((time.perf_counter(), self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3))
            if self._done.wait(self.sample_interval_s):
                return

    def stop(self) -> EnergyReading:
        seconds = time.perf_counter() - self._t0
        if self.counter:
            joules = (self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._mj0) / 1e3
        else:
            self._done.set()
            self._thread.join()
            joules = _integrate(self._samples)
        return EnergyReading(joules, seconds, self.method, False)


def nvml_handle(pynvml, index: int, uuid: str | None = None):
    """NVML's handle of a GPU: by its UUID where known (torch gives it without NVML's "GPU-" prefix), else by
    NVML index. Call nvmlInit() first."""
    if uuid:
        return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def _integrate(samples: list[tuple[float, float]]) -> float:
    """Trapezoid integral of (time s, power W) samples, in joules."""
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(samples, samples[1:]))


class EstimatedCpuMeter(EnergyMeter):
    """TDP x this process's CPU utilisation (CPU seconds / (wall seconds x logical CPUs))."""

    estimated = True

    def __init__(self, tdp_watts: float, tdp_source: str, logical_cpus: int | None = None):
        self.tdp_watts = tdp_watts
        self.logical_cpus = logical_cpus or os.cpu_count() or 1
        self.method = f"estimated: TDP {tdp_watts:g} W ({tdp_source}) x CPU utilisation of this process"

    def start(self) -> None:
        t = os.times()
        self._cpu0 = t.user + t.system
        super().start()

    def stop(self) -> EnergyReading:
        seconds = time.perf_counter() - self._t0
        t = os.times()
        utilisation = min(1.0, (t.user + t.system - self._cpu0) / (seconds * self.logical_cpus)) if seconds > 0 else 0.0
        return EnergyReading(self.tdp_watts * utilisation * seconds, seconds, self.method, True)


class EstimatedGpuMeter(EnergyMeter):
    """TDP x an assumed full utilisation while a GPU kernel loop runs (no NVML to ask)."""

    estimated = True

    def __init__(self, tdp_watts: float, tdp_source: str):
        self.tdp_watts = tdp_watts
        self.method = f"estimated: TDP {tdp_watts:g} W ({tdp_source}) x utilisation assumed 100%"

    def stop(self) -> EnergyReading:
        seconds = time.perf_counter() - self._t0
        return EnergyReading(self.tdp_watts * seconds, seconds, self.method, True)


def energy_meter(
    kind: str,
    index: int = 0,
    tdp_watts: float | None = None,
    tdp_source: str = "",
    powercap_root: Path = POWERCAP,
    uuid: str | None = None,
) -> EnergyMeter:
    """The best meter for a device of `kind` ("cpu", "cuda", "mps"): a counter where one is
    readable, else an estimate from `tdp_watts`, else one that reports no energy."""
    if kind == "cuda":
        try:
            import pynvml
        except ImportError:
            pynvml = None
        if pynvml is not None:
            try:
                return NvmlMeter(index, uuid=uuid)
            except pynvml.NVMLError:  # no driver, or NVML refusing: fall back, labelled
                pass
        if tdp_watts:
            return EstimatedGpuMeter(tdp_watts, tdp_source)
    elif kind == "cpu":
        rapl = RaplMeter.find(powercap_root)
        if rapl is not None:
            return rapl
        if tdp_watts:
            return EstimatedCpuMeter(tdp_watts, tdp_source)
    return EnergyMeter()


def device_meter(device, hardware=None) -> EnergyMeter:
    """energy_meter for a LocalDevice (its CUDA index and UUID), with the TDP of its catalog entry `hardware`
    (a Hardware, or None) for the labelled estimate where no counter is readable."""
    tdp = hardware.tdp_watts if hardware is not None else None
    index = int(device.torch_device.partition(":")[2] or 0) if device.kind == "cuda" else 0
    return energy_meter(device.kind, index, tdp.value if tdp else None, tdp.source if tdp else "",
                        uuid=device.details.get("uuid"))


def fill_window(meter: EnergyMeter, call, sync, calls_per_check: int = 1) -> int:
    """Run `call` (in groups of `calls_per_check`, then `sync()`) until `meter`'s window since start() lasts its
    min_window_s; return the calls made. Energy over the window is then per (timed + these) calls."""
    made = 0
    while meter.elapsed() < meter.min_window_s:
        for _ in range(calls_per_check):
            call()
        sync()
        made += calls_per_check
    return made
