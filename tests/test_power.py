"""Energy meters: RAPL from a fake powercap tree, NVML from a fake pynvml, labelled estimates."""

from __future__ import annotations

import sys
import types

import pytest

from chipfit.measure import power
from chipfit.measure.power import (
    EnergyMeter, EstimatedCpuMeter, EstimatedGpuMeter, NvmlMeter, RaplMeter, energy_meter,
)


def _zone(root, name: str, label: str, energy_uj: int, max_uj: int = 1000) -> None:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")


def test_rapl_sums_packages_and_handles_wrap(tmp_path):
    _zone(tmp_path, "intel-rapl:0", "package-0", 900)
    _zone(tmp_path, "intel-rapl:1", "package-1", 100)
    _zone(tmp_path, "intel-rapl:0:0", "core", 50)  # sub-zone: already inside package-0
    _zone(tmp_path, "intel-rapl:2", "psys", 10)  # platform total, not a package
    meter = energy_meter("cpu", powercap_root=tmp_path)
    assert isinstance(meter, RaplMeter)
    assert [d.name for d in meter.domains] == ["intel-rapl:0", "intel-rapl:1"]
    meter.start()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("200\n")  # wrapped past 1000: +301 uJ
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("600\n")  # +500 uJ
    reading = meter.stop()
    assert reading.joules == pytest.approx(801e-6)
    assert reading.estimated is False
    assert reading.method.startswith("RAPL energy counter")


def test_unreadable_rapl_falls_back_to_labelled_estimate(tmp_path, monkeypatch):
    _zone(tmp_path, "intel-rapl:0", "package-0", 5)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("not a number")  # stands in for a root-only file
    assert RaplMeter.find(tmp_path) is None
    meter = energy_meter("cpu", tdp_watts=100.0, tdp_source="datasheet", powercap_root=tmp_path)
    assert isinstance(meter, EstimatedCpuMeter)
    times = iter([(10.0, 2.0), (10.5, 2.5)])  # user, system CPU seconds at start and stop
    monkeypatch.setattr(power.os, "times", lambda: types.SimpleNamespace(**dict(zip(("user", "system"), next(times)))))
    clock = iter([0.0, 2.0])
    monkeypatch.setattr(power.time, "perf_counter", lambda: next(clock))
    meter.logical_cpus = 2
    meter.start()
    reading = meter.stop()
    # 1 CPU second over 2 s on 2 CPUs = 25% utilisation; 100 W x 0.25 x 2 s = 50 J
    assert reading.joules == pytest.approx(50.0)
    assert reading.watts == pytest.approx(25.0)
    assert reading.estimated is True
    assert reading.method.startswith("estimated: TDP 100 W (datasheet)")


def test_no_counter_and_no_tdp_reports_no_number(tmp_path):
    meter = energy_meter("cpu", powercap_root=tmp_path / "absent")
    assert type(meter) is EnergyMeter
    meter.start()
    reading = meter.stop()
    assert reading.joules is None and reading.watts is None
    assert reading.estimated is True and reading.method.startswith("unavailable")


class FakeNvml(types.ModuleType):
    """pynvml with an energy counter in mJ (or none) and a fixed power draw."""

    class NVMLError(Exception):
        pass

    NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2

    def __init__(self, counter: bool):
        super().__init__("pynvml")
        self.counter = counter
        self.energy_mj = 1_000_000

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("handle", index)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.counter:
            raise self.NVMLError("Not Supported")
        self.energy_mj += 2500  # each read: 2.5 J more
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle):
        return 300_000  # mW


def test_nvml_energy_counter(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(counter=True))
    meter = energy_meter("cuda", index=0)
    assert isinstance(meter, NvmlMeter) and meter.counter
    meter.start()
    reading = meter.stop()
    assert reading.joules == pytest.approx(2.5)
    assert (reading.method, reading.estimated) == ("NVML total energy counter", False)


def test_nvml_power_sampling_without_counter(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(counter=False))
    meter = energy_meter("cuda", index=0)
    assert isinstance(meter, NvmlMeter) and not meter.counter
    meter.sample_interval_s = 0.001
    meter.start()
    while len(meter._samples) < 3:
        pass
    reading = meter.stop()
    samples = meter._samples
    # constant 300 W integrated over the sampled span
    assert reading.joules == pytest.approx(300.0 * (samples[-1][0] - samples[0][0]))
    assert reading.method.startswith("NVML power samples")


def test_gpu_without_nvml_is_estimated_from_tdp(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    meter = energy_meter("cuda", tdp_watts=700.0, tdp_source="NVIDIA H100 datasheet")
    assert isinstance(meter, EstimatedGpuMeter)
    clock = iter([1.0, 3.0])
    monkeypatch.setattr(power.time, "perf_counter", lambda: next(clock))
    meter.start()
    reading = meter.stop()
    assert (reading.joules, reading.estimated) == (1400.0, True)
    assert "assumed 100%" in reading.method
    assert type(energy_meter("cuda")) is EnergyMeter
