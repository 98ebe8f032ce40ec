"""How close real kernels come to a device's peaks: named constants, each with its source.

A prediction multiplies datasheet peaks by these factors. Calibration (measured on a
device) replaces them for that device; everything else uses the published defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# Large matrix multiplies reach 70-80% of datasheet peak on data-centre GPUs: AMD's own
# "max-achievable FLOPs" figures (ROCm blog, "Measuring Max-Achievable FLOPs, Part 2", 2025)
# and cuBLAS on H100 (about 750 of 989 TFLOP/s bf16). Whole-model training runs then land at
# a model-FLOPs utilisation of 40-55% (LLaMA-65B 0.48 on A100, MPT-7B 0.46 on H100,
# PaLM 0.46 on TPU v4: ../shared/validation/published.csv) once the memory-bound operators,
# communication and overheads this model adds separately are counted.
MATMUL_EFFICIENCY = 0.72
MATMUL_EFFICIENCY_RANGE = (0.55, 0.85)

# Sustained memory bandwidth is 85-92% of the datasheet figure: A100-80GB 1.80 of 2.04 TB/s
# (88%, NVIDIA developer forum thread 339083, citing GTC measurements of about 90%); H100
# SXM STREAM triad 3.08 of 3.35 TB/s (92%).
MEMORY_EFFICIENCY = 0.85
MEMORY_EFFICIENCY_RANGE = (0.70, 0.92)

# Vector (non-matrix) arithmetic: elementwise kernels are almost always memory bound, so this
# factor rarely decides a time; it takes the matmul figure for want of a better published one.
VECTOR_EFFICIENCY = MATMUL_EFFICIENCY

# Fixed cost per kernel: a CUDA kernel launch costs about 5 us of GPU-visible time and eager
# PyTorch adds dispatch on top (CUDA C Programming Guide; PyTorch performance tuning guide);
# CPU operators in eager PyTorch cost a few microseconds of dispatch each.
KERNEL_OVERHEAD_S = {"accelerator": 5e-6, "cpu": 3e-6}
KERNEL_OVERHEAD_RANGE = (0.5, 2.0)  # multipliers for the low and high bounds

# Device classes with little published efficiency data get a wider range.
_WIDE = {"fpga", "edge", "asic"}


@dataclass(frozen=True)
class Curve:
    """Efficiency that grows with problem size: e(F) = e_max * F / (F + half_flops).

    Fitted by calibration for one operator family ("matmul" or "conv") at one precision;
    half_flops is the work at which a kernel reaches half its best efficiency.
    """

    family: str
    precision: str
    e_max: float
    half_flops: float

    def at(self, flops: np.ndarray) -> np.ndarray:
        return self.e_max * flops / (flops + self.half_flops)


@dataclass(frozen=True)
class Efficiency:
    """Fractions of peak a device reaches, per operator family, plus a per-kernel overhead.

    `curves` (from calibration) replace the flat matmul factor for their family and precision.
    """

    matmul: float = MATMUL_EFFICIENCY
    vector: float = VECTOR_EFFICIENCY
    memory: float = MEMORY_EFFICIENCY
    kernel_overhead_s: float = KERNEL_OVERHEAD_S["accelerator"]
    source: str = "published defaults (chipfit.predict.efficiency)"
    curves: tuple[Curve, ...] = field(default=())

    def describe(self) -> str:
        """One line for an estimate's assumptions."""
        if self.curves:
            fitted = ", ".join(f"{c.family} {c.precision} up to {c.e_max:.0%}" for c in self.curves)
            matmul = f"fitted efficiency of peak ({fitted})"
        else:
            matmul = f"matmul {self.matmul:.0%} of peak"
        return (f"efficiency: {matmul}, memory {self.memory:.0%} of bandwidth, "
                f"{self.kernel_overhead_s * 1e6:.1f} us per kernel ({self.source})")

    def matrix(self, precision: str, kinds: np.ndarray, flops: np.ndarray) -> np.ndarray:
        """Per-op efficiency of matrix ops (kinds: matmul, conv, attention) at `precision`."""
        eff = np.full(len(flops), self.matmul)
        by_family = {c.family: c for c in self.curves if c.precision == precision}
        for family, members in (("matmul", ("matmul", "attention")), ("conv", ("conv",))):
            curve = by_family.get(family) or by_family.get("matmul")
            if curve is not None:
                sel = np.isin(kinds, members)
                eff[sel] = curve.at(flops[sel])
        return eff

    def scaled(self, factor: float, memory_factor: float, overhead_factor: float) -> "Efficiency":
        """Every factor times `factor` (capped at 1), memory and overhead by their own."""
        return replace(
            self,
            matmul=min(1.0, self.matmul * factor),
            vector=min(1.0, self.vector * factor),
            memory=min(1.0, self.memory * memory_factor),
            kernel_overhead_s=self.kernel_overhead_s * overhead_factor,
            curves=tuple(replace(c, e_max=min(1.0, c.e_max * factor)) for c in self.curves),
        )

    def bounds(self, hw_class: str) -> tuple["Efficiency", "Efficiency"]:
        """(optimistic, pessimistic) efficiencies for the low and high time bounds.

        Published defaults span the published ranges above; a calibrated device keeps its
        measured factors and is bounded by a tenth either way.
        """
        if self.curves:
            return self.scaled(1.1, 1.1, 0.9), self.scaled(0.9, 0.9, 1.1)
        lo_m, hi_m = MATMUL_EFFICIENCY_RANGE
        lo_b, hi_b = MEMORY_EFFICIENCY_RANGE
        widen = 0.8 if hw_class in _WIDE else 1.0
        fast = self.scaled(hi_m / MATMUL_EFFICIENCY, hi_b / MEMORY_EFFICIENCY, KERNEL_OVERHEAD_RANGE[0])
        slow = self.scaled(lo_m / MATMUL_EFFICIENCY * widen, lo_b / MEMORY_EFFICIENCY * widen,
                           KERNEL_OVERHEAD_RANGE[1])
        return fast, slow


def default_efficiency(hw_class: str) -> Efficiency:
    """Published defaults for a device class."""
    key = "cpu" if hw_class == "cpu" else "accelerator"
    return Efficiency(kernel_overhead_s=KERNEL_OVERHEAD_S[key])
