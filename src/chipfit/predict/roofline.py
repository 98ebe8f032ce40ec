"""Per-operator roofline: each op takes max(compute, memory) time plus a kernel overhead.

    t_op = max(flops / (peak[precision] * eff), bytes / (bandwidth * eff_mem)) + overhead

The profile is turned into arrays once (`OpArrays`), so a sweep over the whole catalog is
a few numpy expressions per device, not a loop over operators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..catalog.schema import Hardware
from ..workload.profile import PHASES, Profile
from .efficiency import Efficiency

MATRIX_KINDS = ("matmul", "conv", "attention")

# Where a device has no figure for the precision asked, the next one it would run at.
_FALLBACK = {
    "fp32": ("fp32", "tf32", "bf16", "fp16", "fp8", "int8"),
    "tf32": ("tf32", "fp32", "bf16", "fp16"),
    "bf16": ("bf16", "fp16", "fp32", "fp8", "int8"),
    "fp16": ("fp16", "bf16", "fp32", "fp8", "int8"),
    "fp8": ("fp8", "int8", "bf16", "fp16", "fp32"),
    "int8": ("int8", "fp8", "fp16", "bf16", "fp32"),
}
_DTYPE_PRECISION = {"fp64": "fp32", "int64": "fp32", "int32": "fp32", "bool": "fp32", "uint8": "int8"}


@dataclass(frozen=True)
class OpArrays:
    """A profile's operators as parallel arrays, grouped by (precision, matrix?, phase)."""

    flops: np.ndarray
    bytes: np.ndarray
    kind: np.ndarray  # object array of Op.kind
    matrix: np.ndarray  # bool: runs on matrix units
    precision: np.ndarray  # object array of precision names
    phase: np.ndarray  # int index into PHASES
    n_ops: int

    @classmethod
    def from_profile(cls, profile: Profile, matmul_precision: str | None = None) -> "OpArrays":
        """matmul_precision: run matrix ops at this precision (tf32, fp8, int8) instead of their dtype."""
        ops = profile.ops
        kind = np.array([op.kind for op in ops], dtype=object)
        matrix = np.isin(kind, MATRIX_KINDS)
        precision = np.array([_DTYPE_PRECISION.get(op.dtype, op.dtype) for op in ops], dtype=object)
        if matmul_precision:
            base = {"tf32": "fp32", "fp8": "bf16", "int8": "bf16"}.get(matmul_precision)
            switch = matrix & (precision == base) if base else np.zeros_like(matrix)
            precision[switch] = matmul_precision
        return cls(
            flops=np.array([op.flops for op in ops], dtype=float),
            bytes=np.array([op.bytes for op in ops], dtype=float),
            kind=kind,
            matrix=matrix,
            precision=precision,
            phase=np.array([PHASES.index(op.phase) for op in ops], dtype=int),
            n_ops=len(ops),
        )


@dataclass(frozen=True)
class StepTime:
    """One device's time for one step, split the way the report shows it."""

    total_s: float
    compute_s: float
    memory_s: float
    overhead_s: float
    phase_s: dict[str, float]
    notes: tuple[str, ...]


def peak_for(hw: Hardware, precision: str) -> tuple[float | None, str]:
    """The dense peak a `precision` op runs at on `hw`, and the precision it really used."""
    for p in _FALLBACK.get(precision, (precision,)):
        value = hw.peak(p)
        if value:
            return value, p
    return None, precision


def step_time(arrays: OpArrays, hw: Hardware, eff: Efficiency) -> StepTime | None:
    """Roofline time of one step of `arrays` on one `hw` device; None without peak or bandwidth."""
    bw = hw.mem_bw_bytes_per_s.value if hw.mem_bw_bytes_per_s else None
    if not bw:
        return None
    rate = np.zeros(arrays.n_ops)
    notes: list[str] = []
    for prec in set(arrays.precision.tolist()):
        sel = arrays.precision == prec
        for is_matrix in (True, False):
            group = sel & (arrays.matrix == is_matrix)
            if not group.any():
                continue
            # Vector ops run on the vector units at the fp32 rate (or the op's own, if higher).
            want = prec if is_matrix else ("fp32" if hw.peak("fp32") else prec)
            peak, used = peak_for(hw, want)
            if peak is None:
                return None
            if is_matrix and used != want:
                notes.append(f"no {want} figure for {hw.id}: {want} matrix ops priced at its {used} rate")
            if is_matrix:
                rate[group] = peak * eff.matrix(used, arrays.kind[group], arrays.flops[group])
            else:
                rate[group] = peak * eff.vector
    t_compute = np.divide(arrays.flops, rate, out=np.zeros(arrays.n_ops), where=rate > 0)
    t_memory = arrays.bytes / (bw * eff.memory)
    compute_bound = t_compute >= t_memory
    t_op = np.maximum(t_compute, t_memory) + eff.kernel_overhead_s
    phase_s = {p: float(t_op[arrays.phase == i].sum()) for i, p in enumerate(PHASES)}
    return StepTime(
        total_s=float(t_op.sum()),
        compute_s=float(t_compute[compute_bound].sum()),
        memory_s=float(t_memory[~compute_bound].sum()),
        overhead_s=eff.kernel_overhead_s * arrays.n_ops,
        phase_s=phase_s,
        notes=tuple(notes),
    )
