"""Energy over a timed window: NVML counters, RAPL counters, or a labelled estimate.

Every reading says how it was had (`method`) and whether it is an estimate; a number that
was not read from a counter is never shown as measured.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


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

    def start(self) -> None:
        self._t0 = time.perf_counter()

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
    """GPU energy from NVML: the total-energy counter (Volta and newer), else sampled power."""

    estimated = False

    def __init__(self, index: int, sample_interval_s: float = 0.02):
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
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
                return NvmlMeter(index)
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
