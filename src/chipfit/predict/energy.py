"""Energy and CO2 of a job from device power, time and the data centre's overhead."""

from __future__ import annotations

# Board power taken at TDP while the job runs: the accounting convention of the BLOOM
# (Luccioni et al. 2022, 400 W per A100) and LLaMA (Touvron et al. 2023) carbon estimates.
# Measured averages run lower (T5 on TPU v3: 310 W, Patterson et al. 2021), hence the low bound.
POWER_FRACTION_OF_TDP = 1.0
POWER_FRACTION_RANGE = (0.6, 1.0)
# Power usage effectiveness: Google's fleet-wide trailing PUE of 1.10 (Google 2023
# Environmental Report); the Uptime Institute's 2023 survey average is 1.58.
DEFAULT_PUE = 1.10
# Grid carbon intensity, kg CO2 per kWh: the world average CodeCarbon uses (475 g/kWh, IEA 2019).
DEFAULT_GRID_KG_PER_KWH = 0.475


def energy_kwh(device_hours: float, tdp_watts: float, pue: float = DEFAULT_PUE,
               power_fraction: float = POWER_FRACTION_OF_TDP) -> float:
    """kWh drawn from the grid: device-hours x average power x PUE (host power not included)."""
    return device_hours * tdp_watts * power_fraction * pue / 1000.0


def co2_kg(kwh: float, grid_kg_per_kwh: float = DEFAULT_GRID_KG_PER_KWH) -> float:
    return kwh * grid_kg_per_kwh
