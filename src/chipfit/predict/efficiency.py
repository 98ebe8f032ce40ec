"""How close real kernels come to a device's peaks: named constants, each with its source.

A prediction multiplies datasheet peaks by these factors. Calibration (measured on a
device) replaces them for that device; everything else uses the published defaults.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np

from ..catalog.schema import Hardware

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

# An FPGA runs deep learning through an overlay (AMD Vitis AI DPU, Intel FPGA AI Suite) whose catalog
# peak is the overlay's. An entry's `overlay_efficiency` is the share of that peak the vendor's published
# throughput of one model reaches on that board (ResNet-18 in the Vitis AI model zoo, the derivation in its
# note); other models are checked against it (benchmarks/bench_fpga_edge.py: ResNet-50). An FPGA without
# one takes the class default: about a third, what ResNet-18 reaches on U280 DPUCAHX8H (1,658.3 fps x 3.65
# GOP = 6.05 TOPS of 17.2, 35%) and VCK190 DPUCVDX8G (2,955.8 fps = 10.8 TOPS of 32.8, 33%) in the Vitis AI
# 1.4 model zoo. It is a weak prior: the U50's six engines reach 73% (Vitis AI 1.3 model zoo, 1,484.2 fps
# x 3.65 GOP of 7.37 TOPS), so an overlay's share depends on its configuration and board.
CLASS_MATMUL_EFFICIENCY = {"fpga": 0.34}

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


# Convolutions doing fewer FLOPs per byte than this (depthwise, grouped, 1x1 on thin or tiny maps)
# run far from a dense convolution's efficiency; they form a family of their own.
CONV_LOW_INTENSITY_FLOP_PER_BYTE = 10.0


# Outputs at least this large are new pages on every step on Linux/glibc: an allocation above the
# largest dynamic mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX, 4 * 1024 * 1024 * sizeof(long) = 32 MiB on
# 64-bit: mallopt(3), M_MMAP_THRESHOLD) is always mmap'd and unmapped when freed, so the first touch of
# each page costs a fault and a zeroing; smaller blocks are reused from the heap, and in-place
# operators write into memory that already exists.
FRESH_OUTPUT_MIN_BYTES = 32 * 2**20


def fresh_bytes(name: str, bytes_written: float) -> float:
    """Bytes an operator writes into newly allocated memory: its output, unless it works in place
    (aten names ending in "_", e.g. "aten.add_.Tensor") or is small enough to reuse the heap."""
    in_place = name.split(".")[1].endswith("_") if name.count(".") >= 1 else False
    return 0.0 if in_place or bytes_written < FRESH_OUTPUT_MIN_BYTES else float(bytes_written)


def pages_fault_on_allocation(device: str) -> bool:
    """Whether new outputs on `device` ("cpu", "cuda:0") land in fresh pages (fresh_bytes): glibc's mmap threshold
    is a host-memory effect; CUDA and ROCm tensors come from PyTorch's caching allocator, which keeps freed device
    blocks and hands them out again without returning them to the driver (PyTorch docs, CUDA semantics, "Memory
    management")."""
    return not device.startswith(("cuda", "hip", "rocm", "xpu", "mps"))


def second_pass_bytes(family: str, bytes_written: float) -> float:
    """Bytes a training batch norm reads a second time in eager frameworks: its statistics need the
    whole batch before any output, so the forward reads its input once for the mean and variance
    and again to normalise, and the backward reads the output gradient and the input once to reduce
    and again for the input gradient (PyTorch's CUDA kernels: batch_norm_mean_var then
    batch_norm_elementwise, batch_norm_backward_reduce then batch_norm_backward_elemt; its CPU
    kernels likewise). The trace counts each tensor once; its output is the size of each re-read tensor."""
    if family == "norm/batch/forward/train":
        return float(bytes_written)
    if family == "norm/batch/backward":
        return 2.0 * bytes_written
    return 0.0


# Operator families: an operator kind split by what the hardware does differently, as a path from the kind
# ("elementwise/rng"). Calibration fits every path prefix on the operators below it, and an operator is
# priced by the longest prefix that has a fit (efficiency.Efficiency.op_fit): a family no other model has
# falls back to its parent kind's fit, then to the micro-benchmark figures.
_RNG = frozenset({"bernoulli", "bernoulli_", "native_dropout", "normal_", "uniform_", "rand_like", "randn_like",
                  "exponential_", "random_", "multinomial"})  # a random-number generator per element
# Elementwise functions that evaluate a polynomial or series per element (tens of instructions), not one
# vector instruction: erf/tanh-based GELU, exp, log, sigmoid, SiLU and their gradients.
_TRANSCENDENTAL = frozenset({"exp", "exp_", "log", "log_", "log1p", "expm1", "tanh", "tanh_", "tanh_backward", "erf",
                             "gelu", "gelu_", "gelu_backward", "silu", "silu_", "silu_backward", "sigmoid", "sigmoid_",
                             "sigmoid_backward", "softplus", "softplus_backward", "mish", "mish_", "mish_backward",
                             "elu", "elu_", "elu_backward", "pow", "pow_", "sin", "cos", "log_sigmoid_forward",
                             "log_sigmoid_backward"})
_BATCH_NORM = frozenset({"native_batch_norm", "native_batch_norm_backward", "batch_norm_backward",
                         "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                         "_native_batch_norm_legit_functional", "_batch_norm_with_update", "_batch_norm_no_update"})
_MAX_POOL = ("max_pool", "adaptive_max_pool")
_AVG_POOL = ("avg_pool", "_adaptive_avg_pool", "adaptive_avg_pool")
_SOFTMAX = ("_softmax", "_log_softmax", "_safe_softmax")
_LOSS = ("nll_loss",)
# Gathers and scatters: one indexed row at a time (embedding lookups and their scatter-add gradient).
_INDEXED = frozenset({"embedding", "embedding_dense_backward", "index_select", "index_select_backward", "gather",
                      "scatter", "scatter_add", "scatter_reduce", "index_add", "index_copy", "index", "index_put",
                      "index_put_", "_index_put_impl_", "_unsafe_index", "masked_scatter", "masked_select"})


def _packet(name: str) -> str:
    """"aten.add_.Tensor" -> "add_"."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


@functools.lru_cache(maxsize=2**16)  # a transformer repeats the same few hundred operators per layer
def op_family(kind: str, name: str, flops: float, nbytes: float, mode: str | None = None,
              window: str | None = None) -> str:
    """The family an operator's measured time is fitted in, a path from its kind:
    conv/{forward,backward}/{dense,low_intensity[/W]}; attention/{forward,backward}; elementwise/{rng,
    transcendental,inplace,out}; norm/{batch,layer}/D; reduction/{pool/max,pool/avg,softmax,loss,sum}/D;
    memory/{indexed,copy}/D, D forward or backward; matmul and other as they are. The gradient of a norm,
    reduction or memory operator is a kernel of its own (a max-pool's backward scatters to saved indices, its
    forward searches each window; an embedding's backward scatter-adds), hence the direction. A batch norm's
    forward in a training step (`mode` "train") computes the batch's statistics and updates the running ones
    (two more passes over its input), in inference it applies the stored ones: norm/batch/forward/{train,infer}.
    A low-intensity convolution's `window` W (profile.conv_window, "k5s2") picks its kernel: on a 2-core EPYC VM a
    5x5 depthwise backward ran at about a fifth of a 3x3's FLOP rate, and a stride-2 3x3 at half."""
    op = _packet(name)
    base = op.rstrip("_")
    backward = "backward" in op
    if kind == "conv":
        family = f"conv/{'backward' if backward else 'forward'}/"
        if flops >= CONV_LOW_INTENSITY_FLOP_PER_BYTE * nbytes:
            return family + "dense"
        return family + "low_intensity" + (f"/{window}" if window else "")
    if kind == "attention":
        return "attention/backward" if backward else "attention/forward"
    if kind == "elementwise":
        if op in _RNG:
            return "elementwise/rng"
        if op in _TRANSCENDENTAL:
            return "elementwise/transcendental"
        return "elementwise/inplace" if op.endswith("_") else "elementwise/out"
    if kind == "norm":
        family = "norm/batch" if op in _BATCH_NORM else "norm/layer"
    elif kind == "reduction":
        if base.startswith(_MAX_POOL):
            family = "reduction/pool/max"
        elif base.startswith(_AVG_POOL):
            family = "reduction/pool/avg"
        elif base.startswith(_SOFTMAX):
            family = "reduction/softmax"
        else:
            family = "reduction/loss" if base.startswith(_LOSS) else "reduction/sum"
    elif kind == "memory":
        family = "memory/indexed" if op in _INDEXED else "memory/copy"
    else:
        return kind
    if family == "norm/batch" and not backward and mode in ("train", "infer"):
        return f"norm/batch/forward/{mode}"
    return family + ("/backward" if backward else "/forward")


def family_chain(family: str) -> list[str]:
    """`family` and its ancestors, most specific first: "conv/forward/dense" -> [that, "conv/forward", "conv"]."""
    parts = family.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


@dataclass(frozen=True)
class OpFit:
    """Measured operator time of one family at one precision, fitted on a device:

        t = overhead_s + flops / (peak * e_compute) + bytes / (bandwidth * e_memory)
            + fresh_bytes / fresh_bytes_per_s

    peak is the op's matrix (matmul, conv, attention) or vector rate; fresh_bytes are those written
    into newly allocated memory (page faults; see fresh_bytes()). A term the fit found no use for
    is None. calls: operator calls fitted from; models: whose. roofline._op_terms prices with it.
    """

    family: str
    precision: str
    overhead_s: float
    e_compute: float | None
    e_memory: float | None
    fresh_bytes_per_s: float | None = None
    calls: int = 0
    models: tuple[str, ...] = ()
    error: float = 0.0  # time-weighted RMS relative error of the fit


@dataclass(frozen=True)
class Efficiency:
    """Fractions of peak a device reaches, per operator family, plus a per-kernel overhead.

    `curves` (from calibration) replace the flat matmul factor for their family and precision;
    `op_fits` (from operator measurements) replace the whole roofline time of their family's ops,
    `step_overhead_s` (per operator, per phase) adds the framework time measured between them, and
    `absent_ops` are priced at zero (first-step work a steady-state step does not do).
    """

    matmul: float = MATMUL_EFFICIENCY
    vector: float = VECTOR_EFFICIENCY
    memory: float = MEMORY_EFFICIENCY
    kernel_overhead_s: float = KERNEL_OVERHEAD_S["accelerator"]
    source: str = "published defaults (chipfit.predict.efficiency)"
    curves: tuple[Curve, ...] = field(default=())
    op_fits: tuple[OpFit, ...] = field(default=())
    step_overhead_s: dict[str, float] = field(default_factory=dict)  # phase -> seconds per operator
    absent_ops: tuple[str, ...] = ()  # "phase:aten name": traced, but measured steps never run them

    def op_fit(self, family: str, precision: str) -> OpFit | None:
        """The fit that prices `family` at `precision`: its own, else its nearest ancestor's (family_chain)."""
        fits = {(f.family, f.precision): f for f in self.op_fits}
        return next((fits[f, precision] for f in family_chain(family) if (f, precision) in fits), None)

    def describe(self) -> str:
        """One line for an estimate's assumptions."""
        if self.op_fits:
            fams = ", ".join(sorted({f"{f.family} {f.precision}" for f in self.op_fits}))
            framework = ", ".join(f"{p} {v * 1e6:.1f} us" for p, v in self.step_overhead_s.items())
            return (f"efficiency: measured operator times fitted per family ({fams})"
                    + (f", framework time per operator ({framework})" if framework else "")
                    + f"; other ops: memory {self.memory:.0%} of bandwidth ({self.source})")
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
            op_fits=tuple(replace(f, overhead_s=f.overhead_s * overhead_factor,
                                  e_compute=f.e_compute and f.e_compute * factor,
                                  e_memory=f.e_memory and f.e_memory * memory_factor,
                                  fresh_bytes_per_s=f.fresh_bytes_per_s and f.fresh_bytes_per_s * memory_factor)
                          for f in self.op_fits),
            step_overhead_s={p: v * overhead_factor for p, v in self.step_overhead_s.items()},
        )

    def bounds(self, hw_class: str) -> tuple["Efficiency", "Efficiency"]:
        """(optimistic, pessimistic) efficiencies for the low and high time bounds.

        Published defaults span the published ranges above; a calibrated device keeps its
        measured factors and is bounded by a tenth either way.
        """
        if self.curves or self.op_fits:
            return self.scaled(1.1, 1.1, 0.9), self.scaled(0.9, 0.9, 1.1)
        lo_m, hi_m = MATMUL_EFFICIENCY_RANGE
        lo_b, hi_b = MEMORY_EFFICIENCY_RANGE
        widen = 0.8 if hw_class in _WIDE else 1.0
        fast = self.scaled(hi_m / MATMUL_EFFICIENCY, hi_b / MEMORY_EFFICIENCY, KERNEL_OVERHEAD_RANGE[0])
        slow = self.scaled(lo_m / MATMUL_EFFICIENCY * widen, lo_b / MEMORY_EFFICIENCY * widen,
                           KERNEL_OVERHEAD_RANGE[1])
        return fast, slow


def default_efficiency(hw: Hardware) -> Efficiency:
    """Published defaults for `hw`'s class; matrix work never beyond the share of peak that the
    device's best measured matmul reaches (its maximum achievable matmul FLOPS), where measured."""
    eff = Efficiency(matmul=CLASS_MATMUL_EFFICIENCY.get(hw.hw_class, MATMUL_EFFICIENCY),
                     kernel_overhead_s=KERNEL_OVERHEAD_S["cpu" if hw.hw_class == "cpu" else "accelerator"])
    if hw.overlay_efficiency:
        eff = replace(eff, matmul=hw.overlay_efficiency.value,
                      source=f"{hw.name}'s overlay efficiency from the vendor's throughput of one model (catalog)")
    elif hw.hw_class in CLASS_MATMUL_EFFICIENCY:
        eff = replace(eff, source=f"published defaults, {hw.hw_class} overlay rule (chipfit.predict.efficiency)")
    ceiling = hw.matmul_ceiling()
    if ceiling is not None and ceiling < eff.matmul:
        eff = replace(eff, matmul=ceiling, source=f"published defaults, matmul capped at the {ceiling:.0%} of peak "
                                                  f"{hw.name}'s best measured matmul reaches")
    return eff
