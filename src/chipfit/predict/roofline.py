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
from .efficiency import Efficiency, fresh_bytes, op_family, second_pass_bytes
from .gpu_efficiency import family_factors
from .host import stream_end

MATRIX_KINDS = ("matmul", "conv", "attention")

# Where a device has no figure for the precision asked, the precision its matrix units would
# really run such an op at: a narrower format is never assumed for a wider one (an fp32 model
# does not run at the bf16 rate), except on TPUs, where XLA runs fp32 matrix products as
# single bf16 passes by default (jax.lax.Precision.DEFAULT).
_FALLBACK = {
    "fp32": ("fp32", "tf32"),
    "tf32": ("tf32", "fp32"),
    "bf16": ("bf16", "fp16", "fp32"),
    "fp16": ("fp16", "bf16", "fp32"),
    "fp8": ("fp8", "bf16", "fp16", "fp32"),
    "int8": ("int8", "bf16", "fp16", "fp32"),
}
_TPU_FALLBACK = {"fp32": ("fp32", "bf16"), "tf32": ("tf32", "bf16")}


class MissingFigure(Exception):
    """The catalog lacks a figure the roofline needs; the message says which, for people."""
_DTYPE_PRECISION = {"fp64": "fp32", "int64": "fp32", "int32": "fp32", "bool": "fp32", "uint8": "int8"}


def op_precision(dtype: str) -> str:
    """The precision an operator of `dtype` is priced at ("int64" -> "fp32")."""
    return _DTYPE_PRECISION.get(dtype, dtype)


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
    family: np.ndarray | None = None  # object array of op_family(): what calibrated operator fits key on
    fresh: np.ndarray | None = None  # bytes written into new memory (efficiency.fresh_bytes)
    names: np.ndarray | None = None  # object array of aten names, for calibrated absent_ops
    reread: np.ndarray | None = None  # bytes a multi-pass kernel reads again (efficiency.second_pass_bytes)
    launches: np.ndarray | None = None  # kernel launches per op (1 each unless grouped: host.foreach_launches)
    host: np.ndarray | None = None  # host seconds issuing each op (host.host_seconds); None where it never decides
    torch_gpu: bool = False  # eager PyTorch's CUDA/ROCm kernels: priced by gpu_efficiency's families
    channels_last: bool = False  # convolutions and batch norms in NHWC memory format (torch.channels_last)
    params: float = 0.0  # the model's parameters (one tensor-parallel rank's share): what a device holds or streams

    @classmethod
    def from_profile(cls, profile: Profile, matmul_precision: str | None = None, eager: bool = True) -> "OpArrays":
        """matmul_precision: run matrix ops at this precision (tf32, fp8, int8) instead of their dtype.
        eager: the framework runs each operator as its own kernels (a compiler's fused graph is not)."""
        ops = profile.ops
        kind = np.array([op.kind for op in ops], dtype=object)
        matrix = np.isin(kind, MATRIX_KINDS)
        precision = np.array([op_precision(op.dtype) for op in ops], dtype=object)
        if matmul_precision:
            base = {"tf32": "fp32", "fp8": "bf16", "int8": "bf16"}.get(matmul_precision)
            switch = matrix & (precision == base) if base else np.zeros_like(matrix)
            precision[switch] = matmul_precision
        family = np.array([op_family(op.kind, op.name, op.flops, op.bytes, profile.mode, op.window) for op in ops],
                          dtype=object)
        return cls(
            flops=np.array([op.flops for op in ops], dtype=float),
            bytes=np.array([op.bytes for op in ops], dtype=float),
            kind=kind,
            matrix=matrix,
            precision=precision,
            phase=np.array([PHASES.index(op.phase) for op in ops], dtype=int),
            n_ops=len(ops),
            family=family,
            fresh=np.array([fresh_bytes(op.name, op.bytes_written) for op in ops], dtype=float),
            names=np.array([op.name for op in ops], dtype=object),
            reread=np.array([second_pass_bytes(f, op.bytes_written) if eager else 0.0 for f, op in zip(family, ops)],
                            dtype=float),
            params=float(profile.params),
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
    device_s: float = 0.0  # the device's stream alone; total_s is max(device_s, host_s)
    host_s: float = 0.0


def peak_for(hw: Hardware, precision: str) -> tuple[float | None, str]:
    """The dense peak a `precision` matrix op runs at on `hw`, and the precision it really used."""
    chain = (_TPU_FALLBACK if hw.hw_class == "tpu" else {}).get(precision) or _FALLBACK.get(precision, (precision,))
    for p in chain:
        value = hw.peak(p)
        if value:
            return value, p
    return None, precision


def _vector_peak(hw: Hardware, precision: str) -> float | None:
    """Vector units: the fp32 rate, else the op's own, else the best figure the device has
    (vector ops are bound by memory almost always, so this rarely decides a time)."""
    dense = [f.value for f in hw.peak_flops.values() if f.dense is not False]
    return hw.peak("fp32") or hw.peak(precision) or (max(dense) if dense else None)


def op_peak(hw: Hardware, kind: str, precision: str) -> float | None:
    """The rate, before efficiency, that an op of `kind` at `precision` runs its FLOPs at on `hw`."""
    return peak_for(hw, precision)[0] if kind in MATRIX_KINDS else _vector_peak(hw, precision)


@dataclass(frozen=True)
class _OpTerms:
    """Per-operator time terms; `fitted` ops (calibrated fits) add their terms, the rest take the max."""

    compute: np.ndarray
    memory: np.ndarray
    overhead: np.ndarray
    fitted: np.ndarray
    notes: tuple[str, ...]

    @property
    def seconds(self) -> np.ndarray:
        both = np.where(self.fitted, self.compute + self.memory, np.maximum(self.compute, self.memory))
        return both + self.overhead


def _op_terms(arrays: OpArrays, hw: Hardware, eff: Efficiency) -> _OpTerms:
    """Each operator's compute, memory and overhead seconds on one `hw` device.

    Raises MissingFigure when the catalog has no bandwidth, or no throughput at a precision used.
    """
    bw = hw.mem_bw_bytes_per_s.value if hw.mem_bw_bytes_per_s else None
    on_chip = hw.streams_parameters()
    if not bw and not on_chip:
        raise MissingFigure(f"The catalog has no sourced memory bandwidth figure for {hw.name}, so its step time "
                            "cannot be predicted.")
    peak = np.zeros(arrays.n_ops)  # the rate each op's FLOPs run at, before efficiency
    rate = np.zeros(arrays.n_ops)
    notes: list[str] = []
    # Matrix groups first, precisions in order: a device missing figures is told the same one every run.
    for is_matrix in (True, False):
        for prec in sorted(set(arrays.precision.tolist())):
            group = (arrays.precision == prec) & (arrays.matrix == is_matrix)
            if not group.any():
                continue
            if not is_matrix:
                vector = _vector_peak(hw, prec)
                if vector is None:
                    raise MissingFigure(f"The catalog has no sourced throughput figure for {hw.name}, so its step "
                                        "time cannot be predicted.")
                peak[group] = vector
                rate[group] = vector * eff.vector
                continue
            matrix, used = peak_for(hw, prec)
            if matrix is None:
                have = ", ".join(p for p, f in hw.peak_flops.items() if f.dense is not False)
                hint = f"; it has figures for {have}: compare with --precision set to one of them" if have else ""
                raise MissingFigure(f"The catalog has no sourced {prec} throughput figure for {hw.name}, so its "
                                    f"step time cannot be predicted{hint}.")
            if used != prec:
                notes.append(f"no {prec} figure for {hw.id}: {prec} matrix ops priced at its {used} rate")
            peak[group] = matrix
            rate[group] = matrix * eff.matrix(used, arrays.kind[group], arrays.flops[group])
    mem_eff = np.full(arrays.n_ops, eff.memory)
    second_eff = mem_eff
    nbytes = arrays.bytes
    if arrays.torch_gpu and not eff.curves and arrays.family is not None:
        # Published per-family GPU efficiencies (gpu_efficiency); a calibration's curves or fits replace them.
        compute, memory, second, extra = family_factors(arrays.family, arrays.kind, arrays.precision, arrays.flops,
                                                arrays.bytes, peak, bw, eff.matmul, eff.memory,
                                                arrays.channels_last)
        sized = arrays.matrix & ~np.isnan(compute)
        rate[sized] = peak[sized] * compute[sized]
        mem_eff = np.where(np.isnan(memory), mem_eff, memory)
        second_eff = np.where(np.isnan(second), mem_eff, second)
        nbytes = nbytes + extra
    t_compute = np.divide(arrays.flops, rate, out=np.zeros(arrays.n_ops), where=rate > 0)
    if on_chip:
        # Operands live in on-chip SRAM, whose bandwidth no vendor publishes: the ops are priced by their compute,
        # and the parameters the SRAM cannot hold cross the host link once per step (streamed_parameter_bytes).
        notes.append(f"{hw.id} holds operands in on-chip SRAM: operators priced at compute only")
        return _OpTerms(t_compute, np.zeros(arrays.n_ops), _overheads(arrays, hw, eff), np.zeros(arrays.n_ops, bool),
                        tuple(notes))
    t_memory = nbytes / (bw * mem_eff)
    if arrays.reread is not None:
        # A second pass finds in the last on-chip cache what fits there; the rest comes from memory again.
        cache = hw.l2_cache_bytes.value if hw.l2_cache_bytes else 0.0
        t_memory += np.maximum(arrays.reread - cache, 0.0) / (bw * second_eff)
    t_overhead = _overheads(arrays, hw, eff)
    fitted = np.zeros(arrays.n_ops, dtype=bool)  # priced by a calibrated operator fit: terms add up
    if eff.op_fits and arrays.family is not None:
        for family, prec in {(f, p) for f, p in zip(arrays.family.tolist(), arrays.precision.tolist())}:
            f = eff.op_fit(family, prec)
            if f is None:
                continue
            sel = (arrays.family == family) & (arrays.precision == prec)
            t_compute[sel] = arrays.flops[sel] / (peak[sel] * f.e_compute) if f.e_compute else 0.0
            t_memory[sel] = arrays.bytes[sel] / (bw * f.e_memory) if f.e_memory else 0.0
            if f.fresh_bytes_per_s and arrays.fresh is not None:
                t_memory[sel] += arrays.fresh[sel] / f.fresh_bytes_per_s
            t_overhead[sel] = f.overhead_s
            fitted |= sel
        t_overhead += np.array([eff.step_overhead_s.get(p, 0.0) for p in PHASES])[arrays.phase]
        if eff.absent_ops and arrays.names is not None:
            keys = np.char.add(np.array(PHASES)[arrays.phase].astype(str), np.char.add(":", arrays.names.astype(str)))
            absent = np.isin(keys, list(eff.absent_ops))
            t_compute[absent] = t_memory[absent] = t_overhead[absent] = 0.0
    return _OpTerms(t_compute, t_memory, t_overhead, fitted, tuple(notes))


def _overheads(arrays: OpArrays, hw: Hardware, eff: Efficiency) -> np.ndarray:
    """Each operator's fixed launch cost."""
    t_overhead = np.full(arrays.n_ops, eff.kernel_overhead_s)
    if arrays.launches is not None:
        t_overhead *= arrays.launches
    if hw.hw_class != "cpu":
        # Views and allocations (no bytes, no FLOPs) launch no kernel on an accelerator; on a CPU
        # eager dispatch still costs each of them its few microseconds.
        t_overhead[(arrays.bytes == 0) & (arrays.flops == 0)] = 0.0
    return t_overhead


# Bytes per stored parameter at the precision a model's matrix operators run at.
WEIGHT_BYTES = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


def streamed_parameter_bytes(arrays: OpArrays, hw: Hardware) -> float:
    """Parameter bytes a device without memory of its own streams over its host link every step: those its on-chip
    SRAM cannot hold, the SRAM caching what fits (Coral, Edge TPU Compiler, "Parameter data caching").
    Parameters are stored at the precision of the matrix operators doing the most FLOPs."""
    if not hw.streams_parameters() or not arrays.matrix.any():
        return 0.0
    heaviest = arrays.precision[arrays.matrix][np.argmax(arrays.flops[arrays.matrix])]
    return max(0.0, arrays.params * WEIGHT_BYTES.get(heaviest, 2.0) - hw.onchip_memory_bytes.value)


def op_times(arrays: OpArrays, hw: Hardware, eff: Efficiency) -> np.ndarray:
    """Each operator's predicted seconds on one `hw` device (what step_time sums)."""
    return _op_terms(arrays, hw, eff).seconds


def step_time(arrays: OpArrays, hw: Hardware, eff: Efficiency) -> StepTime:
    """Roofline time of one step of `arrays` on one `hw` device.

    Raises MissingFigure when the catalog has no bandwidth, or no throughput at a precision used.
    """
    terms = _op_terms(arrays, hw, eff)
    t_compute, t_memory, t_overhead, fitted = terms.compute, terms.memory, terms.overhead, terms.fitted
    compute_bound = fitted | (t_compute >= t_memory)
    t_op = terms.seconds
    notes, link_s = terms.notes, 0.0
    streamed = streamed_parameter_bytes(arrays, hw)
    if streamed:
        # Assumed not overlapped: a layer's parameters arrive before it runs, so the link's time adds to the
        # compute; it is booked on the heaviest matrix operator's phase, as memory time.
        link_s = streamed / (hw.host_link_bw_bytes_per_s.value * eff.memory)
        t_op = t_op.copy()
        t_op[int(np.argmax(np.where(arrays.matrix, arrays.flops, -1.0)))] += link_s
        notes += (f"{streamed / 1e6:.1f} MB of parameters beyond {hw.id}'s on-chip SRAM cross its host link "
                  f"every step at {hw.host_link_bw_bytes_per_s.value * eff.memory / 1e6:.0f} MB/s, not overlapped",)
    memory_s = float(t_memory[~compute_bound].sum() + t_memory[fitted].sum()) + link_s
    device_s = float(t_op.sum())
    # Host and device streams overlap (asynchronous launches, host.stream_end); the device's idle wait for the
    # host shows as overhead, spread over the phases in proportion to their device time.
    host_s = float(arrays.host.sum()) if arrays.host is not None else 0.0
    total_s = stream_end(t_op, arrays.host) if arrays.host is not None else device_s
    stretch = total_s / device_s if device_s else 1.0
    phase_s = {p: float(t_op[arrays.phase == i].sum()) * stretch for i, p in enumerate(PHASES)}
    return StepTime(
        total_s=total_s,
        compute_s=float(t_compute[compute_bound].sum()),
        memory_s=memory_s,
        overhead_s=float(t_overhead.sum()) + total_s - device_s,
        phase_s=phase_s,
        notes=notes,
        device_s=device_s,
        host_s=host_s,
    )
