"""Collective communication over a device's interconnect (alpha-beta cost model).

Ring all-reduce of S bytes over N devices (Patarasuk and Yuan 2009; the NCCL ring):
    t = 2 (N - 1) / N * S / B  +  2 (N - 1) * alpha
B is the bandwidth one device can send in one direction; vendors quote the sum of both
directions, so B = quoted / 2.
"""

from __future__ import annotations

from ..catalog.schema import Hardware

# nccl-tests bus bandwidth reaches about 80% of the NVLink per-direction peak on 8-GPU
# NVSwitch systems (e.g. ~360-380 of 450 GB/s on DGX H100).
COLLECTIVE_EFFICIENCY = 0.80
# Per-step latency of a ring collective: a few microseconds per hop on NVLink or InfiniBand.
LINK_LATENCY_S = 5e-6


def link_bandwidth(hw: Hardware) -> float | None:
    """Bytes/s one device sends in one direction, at the efficiency collectives reach."""
    if hw.interconnect_bw_bytes_per_s is None:
        return None
    return hw.interconnect_bw_bytes_per_s.value / 2 * COLLECTIVE_EFFICIENCY


def ring_allreduce_s(size_bytes: float, devices: int, bandwidth_bytes_per_s: float,
                     latency_s: float = LINK_LATENCY_S) -> float:
    """Time of a ring all-reduce of `size_bytes` over `devices` devices."""
    if devices <= 1 or size_bytes <= 0:
        return 0.0
    steps = 2 * (devices - 1)
    return steps / devices * size_bytes / bandwidth_bytes_per_s + steps * latency_s
