"""measure: the devices that are here, micro-benchmarks, real steps, power."""

from .devices import LocalDevice, local_cpu_hardware, local_devices, match_catalog
from .microbench import plan, run_microbenchmarks
from .power import EnergyReading, energy_meter
from .steps import measure_step

__all__ = [
    "EnergyReading", "LocalDevice", "energy_meter", "local_cpu_hardware", "local_devices", "match_catalog",
    "measure_step", "plan", "run_microbenchmarks",
]
