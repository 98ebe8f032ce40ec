"""Estimate: what one hardware entry does with one workload under one plan."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Estimate:
    """Every figure in base units; `low`/`high` bound total_time_s, energy_kwh and cost_usd.

    An entry that cannot run the job carries `excluded_reason` and no figures.
    """

    hardware: str
    hw_class: str
    name: str = ""
    devices: int = 1
    fits: bool | None = None
    memory_per_device_bytes: float | None = None
    memory_breakdown: dict[str, float] = field(default_factory=dict)
    step_time_s: float | None = None
    compute_s: float | None = None
    memory_s: float | None = None
    overhead_s: float | None = None
    communication_s: float | None = None
    bubble_s: float | None = None  # idle pipeline slots
    throughput_per_s: float | None = None  # samples/s (tokens/s in throughput_unit for LLMs)
    throughput_unit: str = "samples/s"
    latency_s: float | None = None  # inference: time for one batch
    total_time_s: float | None = None
    device_hours: float | None = None
    energy_kwh: float | None = None
    co2_kg: float | None = None
    cost_usd: float | None = None
    cost_source: str = ""
    speedup_vs_local_cpu: float | None = None
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    excluded_reason: str = ""
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware,
            "class": self.hw_class,
            "name": self.name,
            "devices": self.devices,
            "fits": self.fits,
            "memory_per_device_bytes": self.memory_per_device_bytes,
            "memory_breakdown": dict(self.memory_breakdown),
            "step_time_s": self.step_time_s,
            "step_breakdown_s": {
                "compute": self.compute_s,
                "memory": self.memory_s,
                "overhead": self.overhead_s,
                "communication": self.communication_s,
                "bubble": self.bubble_s,
            },
            "throughput_per_s": self.throughput_per_s,
            "throughput_unit": self.throughput_unit,
            "latency_s": self.latency_s,
            "total_time_s": self.total_time_s,
            "device_hours": self.device_hours,
            "energy_kwh": self.energy_kwh,
            "co2_kg": self.co2_kg,
            "cost_usd": self.cost_usd,
            "cost_source": self.cost_source,
            "speedup_vs_local_cpu": self.speedup_vs_local_cpu,
            "low": dict(self.low),
            "high": dict(self.high),
            "excluded_reason": self.excluded_reason,
            "assumptions": list(self.assumptions),
        }
