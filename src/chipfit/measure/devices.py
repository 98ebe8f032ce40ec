"""What hardware is here: the CPU (model, cores, ISA, memory), CUDA GPUs, Apple MPS.

The local CPU is rarely in the catalog, so `local_cpu_hardware()` builds a Hardware entry
for it: peak FLOP/s derived from cores x clock x FLOP/cycle of its vector units (the
derivation is written into each Figure), bandwidth measured with a short triad.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from ..catalog.loader import Catalog
from ..catalog.schema import Figure, Hardware

# ISA features worth reporting: x86 flags from /proc/cpuinfo, ARM "Features" (asimd = NEON).
ISA_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "neon", "sve", "sve2", "bf16", "i8mm", "asimdhp",
)
_PROC = Path("/proc")
_CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")

_INTEL_OPT = "Intel 64 and IA-32 Architectures Optimization Reference Manual"
_AMX_SRC = "Intel Architecture Day 2021, Sapphire Rapids AMX: 1024 BF16/FP16 and 2048 INT8 ops/cycle/core"
# ARM cores by /proc/cpuinfo "CPU part": (name, 128-bit FMA pipes, source).
_ARM_CORES = {
    "0xd0c": ("Neoverse N1", 2, "Arm Neoverse N1 Software Optimization Guide"),
    "0xd49": ("Neoverse N2", 2, "Arm Neoverse N2 Software Optimization Guide"),
    "0xd40": ("Neoverse V1", 4, "Arm Neoverse V1 Software Optimization Guide"),
    "0xd4f": ("Neoverse V2", 4, "Arm Neoverse V2 Software Optimization Guide"),
}


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo (or the platform module) says about the CPU."""

    model_name: str
    vendor: str  # "GenuineIntel", "AuthenticAMD", "ARM", ...
    family: int | None
    model: int | None
    cpu_part: str  # ARM "CPU part", e.g. "0xd0c"
    cores: int  # physical
    threads: int  # logical
    mhz: float | None  # as reported (current clock; a VM reports its nominal clock)
    flags: frozenset[str]

    @property
    def isa(self) -> tuple[str, ...]:
        return tuple(f for f in ISA_FLAGS if f in self.flags)


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse the text of /proc/cpuinfo (x86 or ARM)."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    procs = []
    for block in blocks:
        entry = {}
        for line in block.splitlines():
            if ":" in line:
                key, _, value = line.partition(":")
                entry[key.strip().lower()] = value.strip()
        if "processor" in entry:
            procs.append(entry)
    if not procs:
        raise ValueError("no 'processor' entries in cpuinfo text")
    first = procs[0]
    flags = set((first.get("flags") or first.get("features") or "").split())
    if "asimd" in flags:  # AArch64 Advanced SIMD is NEON
        flags.add("neon")
    pairs = {(p.get("physical id", "0"), p.get("core id")) for p in procs if "core id" in p}
    if pairs:
        cores = len(pairs)
    elif "cpu cores" in first:
        cores = int(first["cpu cores"]) * len({p.get("physical id", "0") for p in procs})
    else:
        cores = len(procs)  # ARM lists one entry per core, no SMT
    vendor = first.get("vendor_id") or ("ARM" if "cpu implementer" in first else "")
    name = first.get("model name") or first.get("hardware") or ""
    part = first.get("cpu part", "")
    if not name and part in _ARM_CORES:
        name = _ARM_CORES[part][0]
    mhz = first.get("cpu mhz")
    return CpuInfo(
        model_name=name or platform.processor() or "unknown CPU",
        vendor=vendor,
        family=_int(first.get("cpu family")),
        model=_int(first.get("model")),
        cpu_part=part,
        cores=cores,
        threads=len(procs),
        mhz=float(mhz) if mhz else None,
        flags=frozenset(flags),
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text, 0) if text is not None else None
    except ValueError:
        return None


def parse_meminfo_total_bytes(text: str) -> int | None:
    """MemTotal from /proc/meminfo text (given in KiB) in bytes."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def read_cpuinfo(proc: Path = _PROC) -> CpuInfo:
    """This machine's CpuInfo: /proc/cpuinfo where it exists, else the platform module."""
    try:
        return parse_cpuinfo((proc / "cpuinfo").read_text())
    except (OSError, ValueError):
        n = os.cpu_count() or 1
        return CpuInfo(platform.processor() or platform.machine() or "unknown CPU", "", None, None, "",
                       n, n, None, frozenset())


def max_clock_hz(info: CpuInfo, cpufreq: Path = _CPUFREQ) -> tuple[float | None, str]:
    """Highest clock of cpu0 and where it came from (cpufreq's max, else cpuinfo's MHz)."""
    try:
        return int(cpufreq.read_text().strip()) * 1e3, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    if info.mhz:
        return info.mhz * 1e6, "/proc/cpuinfo cpu MHz (the current or, in a VM, nominal clock; boost may be higher)"
    return None, ""


def flop_per_cycle(info: CpuInfo) -> dict[str, tuple[float, str]]:
    """Dense FLOP (or int8 op) per cycle per core by precision, each with how it was derived.

    x86: 2 FMA pipes of the datapath width (AVX-512 runs on 256-bit halves on AMD Zen 4 and
    earlier, whose flag says avx512f all the same); dot-product instructions (bf16, VNNI) do
    2x and 4x the FP32 work per lane; AMX per Intel. ARM: the core's 128-bit FMA pipes.
    Precisions with no derivation are left out.
    """
    f = info.flags
    out: dict[str, tuple[float, str]] = {}
    if info.vendor in ("GenuineIntel", "AuthenticAMD"):
        bits = 512 if "avx512f" in f else 256 if "avx2" in f else 128
        src = f"{_INTEL_OPT}: 2 FMA units"
        if info.vendor == "AuthenticAMD" and info.family is not None:
            if info.family == 0x17:
                bits = 128 if (info.model or 0) < 0x30 else 256
                src = "AMD Software Optimization Guide, Family 17h: 2 FMA pipes"
            elif info.family == 0x19:
                bits = 256
                src = "AMD Software Optimization Guide, Family 19h: 2 FMA pipes, 256-bit datapath"
            elif info.family >= 0x1A:
                bits = min(bits, 512)
                src = "AMD Software Optimization Guide, Family 1Ah (Zen 5): 2 FMA pipes, 512-bit datapath"
        if "fma" not in f and bits < 512:
            return out  # no FMA: no derivation we can stand behind
        fp32 = 2 * 2 * bits / 32
        out["fp32"] = (fp32, f"{src} x {bits}-bit x 2 FLOP per FMA = {fp32:g} FP32 FLOP/cycle")
        out["fp64"] = (fp32 / 2, f"half the FP32 rate ({fp32 / 2:g} FP64 FLOP/cycle)")
        if "amx_bf16" in f:
            out["bf16"] = (1024.0, _AMX_SRC)
        elif "avx512_bf16" in f:
            out["bf16"] = (2 * fp32, f"avx512_bf16 dot products: 2x FP32 = {2 * fp32:g} FLOP/cycle")
        if "amx_fp16" in f:
            out["fp16"] = (1024.0, _AMX_SRC)
        elif "avx512_fp16" in f:
            out["fp16"] = (2 * fp32, f"avx512_fp16: 2x FP32 lanes = {2 * fp32:g} FLOP/cycle")
        if "amx_int8" in f:
            out["int8"] = (2048.0, _AMX_SRC)
        elif "avx512_vnni" in f or "avx_vnni" in f:
            out["int8"] = (4 * fp32, f"VNNI dot products: 4x FP32 = {4 * fp32:g} int8 ops/cycle")
    elif info.cpu_part in _ARM_CORES:
        name, pipes, src = _ARM_CORES[info.cpu_part]
        fp32 = pipes * 4 * 2
        out["fp32"] = (float(fp32), f"{src}: {name} {pipes} x 128-bit FMA pipes = {fp32} FP32 FLOP/cycle")
        out["fp64"] = (fp32 / 2, f"half the FP32 rate ({fp32 // 2} FP64 FLOP/cycle)")
    return out


def cpu_peak_flops(info: CpuInfo, clock_hz: float | None, clock_source: str) -> dict[str, Figure]:
    """Peak FLOP/s per precision: physical cores x clock x FLOP/cycle, derivation in the source."""
    if not clock_hz:
        return {}
    out = {}
    for precision, (per_cycle, how) in flop_per_cycle(info).items():
        out[precision] = Figure(
            value=info.cores * clock_hz * per_cycle,
            source=f"derived: {info.cores} cores x {clock_hz / 1e9:.2f} GHz x {per_cycle:g} FLOP/cycle; "
                   f"clock from {clock_source}, ISA from /proc/cpuinfo flags",
            dense=True,
            note=how,
        )
    return out


@dataclass(frozen=True)
class LocalDevice:
    """One device present on this machine, as torch sees it."""

    id: str  # "local-cpu", "cuda:0", "mps"
    kind: str  # "cpu", "cuda", "mps"
    name: str
    vendor: str
    torch_device: str  # what torch.device() takes
    precisions: tuple[str, ...]  # what the micro-benchmarks run
    memory_bytes: int | None = None
    cores: int | None = None  # CPU: physical cores; CUDA: streaming multiprocessors
    threads: int | None = None
    isa: tuple[str, ...] = ()
    max_clock_hz: float | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _cpu_device(info: CpuInfo, memory_bytes: int | None, clock: tuple[float | None, str]) -> LocalDevice:
    import torch

    precisions = ("fp32", "bf16", "fp16") + (("int8",) if hasattr(torch, "_int_mm") else ())
    return LocalDevice(
        id="local-cpu", kind="cpu", name=info.model_name, vendor=info.vendor, torch_device="cpu",
        precisions=precisions, memory_bytes=memory_bytes, cores=info.cores, threads=info.threads,
        isa=info.isa, max_clock_hz=clock[0],
        details={"family": info.family, "model": info.model, "cpu_part": info.cpu_part,
                 "clock_source": clock[1], "torch_threads": torch.get_num_threads(),
                 "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()},
    )


def _read_meminfo_bytes(proc: Path = _PROC) -> int | None:
    try:
        return parse_meminfo_total_bytes((proc / "meminfo").read_text())
    except OSError:
        return None


def _nvml_details(index: int, uuid: str | None = None) -> dict:
    """Driver, power limit and clocks from NVML when nvidia-ml-py is installed; else {}."""
    from .power import nvml_handle

    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
        handle = nvml_handle(pynvml, index, uuid)
        details = {
            "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
            "power_limit_watts": pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1e3,
            "max_sm_clock_hz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM) * 1e6,
            "max_mem_clock_hz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM) * 1e6,
        }
    except pynvml.NVMLError:
        return {}
    return details


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cuda_devices() -> list[LocalDevice]:
    """CUDA GPUs torch can see (with NVML details where pynvml is installed)."""
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        cc = (props.major, props.minor)
        precisions = ["fp32"]
        if cc >= (8, 0):
            precisions += ["tf32", "bf16"]
        precisions.append("fp16")
        if cc >= (7, 5) and hasattr(torch, "_int_mm"):
            precisions.append("int8")
        uuid = str(props.uuid) if getattr(props, "uuid", None) else None
        nvml = _nvml_details(i, uuid)
        out.append(LocalDevice(
            id=f"cuda:{i}", kind="cuda", name=props.name, vendor="NVIDIA", torch_device=f"cuda:{i}",
            precisions=tuple(precisions), memory_bytes=int(props.total_memory),
            cores=props.multi_processor_count, max_clock_hz=nvml.get("max_sm_clock_hz"),
            details={"compute_capability": f"{cc[0]}.{cc[1]}", "cuda": torch.version.cuda}
            | ({"uuid": uuid} if uuid else {}) | nvml,
        ))
    return out


def mps_device() -> list[LocalDevice]:
    import torch

    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        return []
    return [LocalDevice(id="mps", kind="mps", name=f"Apple {platform.machine()} GPU (MPS)", vendor="Apple",
                        torch_device="mps", precisions=("fp32", "fp16"))]


def local_devices() -> list[LocalDevice]:
    """Every device here: the CPU first, then CUDA GPUs, then Apple MPS."""
    info = read_cpuinfo()
    return [_cpu_device(info, _read_meminfo_bytes(), max_clock_hz(info)), *cuda_devices(), *mps_device()]


def local_device(device_id: str) -> LocalDevice:
    """The device here with id `device_id` ("local-cpu", "cuda:0", "mps"); a ChipfitError naming what is here
    when there is none (a GPU asked for on a machine without one, a CUDA index past the last)."""
    from ..errors import ChipfitError

    found = {d.id: d for d in local_devices()}
    if device_id not in found:
        raise ChipfitError(f"No device {device_id!r} on this machine (it has {', '.join(found)}); give --device one "
                           "of those (`chipfit devices` lists them) or run on a machine that has it.")
    return found[device_id]


def local_cpu_hardware(
    measure_bandwidth: bool = True, info: CpuInfo | None = None, memory_bytes: int | None = None
) -> Hardware:
    """A Hardware entry "local-cpu" for this CPU: derived peaks, measured triad bandwidth.

    The triad takes a few hundred milliseconds; measure_bandwidth=False leaves it empty.
    """
    info = info or read_cpuinfo()
    memory_bytes = memory_bytes if memory_bytes is not None else _read_meminfo_bytes()
    clock, clock_source = max_clock_hz(info)
    bandwidth = None
    if measure_bandwidth:
        from .microbench import bench_bandwidth

        triad = bench_bandwidth(_cpu_device(info, memory_bytes, (clock, clock_source)), "triad", quick=True)
        bandwidth = Figure(value=triad.achieved_bytes_per_s, source="measured on this machine, STREAM-like triad",
                           note=f"median of {triad.repetitions} triads over {triad.shape['elements']} fp32 elements")
    isa = ", ".join(info.isa) or "none detected"
    return Hardware(
        id="local-cpu",
        name=info.model_name,
        vendor=info.vendor,
        hw_class="cpu",
        peak_flops=cpu_peak_flops(info, clock, clock_source),
        memory_bytes=Figure(float(memory_bytes), "/proc/meminfo MemTotal") if memory_bytes else None,
        memory_type="system RAM",
        mem_bw_bytes_per_s=bandwidth,
        frameworks=("pytorch",),
        notes=f"{info.cores} cores, {info.threads} threads; ISA: {isa}",
        origin="measured on this machine",
    )


def match_catalog(device: LocalDevice, catalog: Catalog | Iterable[Hardware],
                  measure_bandwidth: bool = True) -> Hardware:
    """The catalog entry the device's name resolves to, else one built from this machine.

    The name goes through the catalog's resolver, as nvidia-smi and torch print it ("NVIDIA A100-SXM4-80GB",
    "Tesla V100-PCIE-32GB", "AMD EPYC 7763 64-Core Processor"): aliases, memory size, form factor and variant
    words ("RTX 4080 SUPER" is not the RTX 4080) apply as for any hardware text. An entry of the wrong class
    (a GPU for the CPU) does not count. The built entry is local_cpu_hardware() for a CPU, and memory size only
    for a GPU.
    """
    from ..catalog.resolve import resolve_hardware
    from ..errors import ChipfitError

    if not isinstance(catalog, Catalog):
        entries = catalog.values() if hasattr(catalog, "values") else catalog
        catalog = Catalog(hardware={hw.id: hw for hw in entries}, instances=[])
    try:
        hw = catalog.hardware[resolve_hardware(device.name, catalog).hw_id]
    except ChipfitError:
        hw = None
    if hw is not None and (hw.hw_class == "cpu") == (device.kind == "cpu"):
        return hw
    if device.kind == "cpu":
        return local_cpu_hardware(measure_bandwidth=measure_bandwidth)
    return Hardware(
        id=f"local-{device.id.replace(':', '')}",
        name=device.name,
        vendor=device.vendor,
        hw_class="gpu",
        memory_bytes=Figure(float(device.memory_bytes), "torch.cuda.get_device_properties") if device.memory_bytes else None,
        frameworks=("pytorch",),
        notes="built from this machine; no catalog entry matched its name",
        origin="measured on this machine",
    )
