"""Catalog nouns: a sourced figure, a hardware entry, a cloud instance.

Values are in base units (FLOP/s, bytes, bytes/s, watts, US dollars); the TOML files
use readable units (TFLOP/s, GiB, GB/s) and the loader converts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")
CLASSES = ("cpu", "gpu", "tpu", "asic", "fpga", "edge", "neuromorphic", "quantum")
# Classes whose entries run no standard DNN step at all, training or inference; each entry says why.
NO_DNN_CLASSES = ("neuromorphic", "quantum")
FRAMEWORKS = (
    "pytorch", "tensorflow", "jax", "keras", "onnxruntime", "tensorrt", "openvino",
    "coreml", "tflite", "caffe", "vendor-sdk",
)


@dataclass(frozen=True)
class Figure:
    """One number from one source. `dense` is set for throughput figures (False = sparse)."""

    value: float
    source: str
    dense: bool | None = None
    note: str = ""


@dataclass(frozen=True)
class Hardware:
    """One device of the catalog; every figure optional, every present figure sourced."""

    id: str
    name: str
    vendor: str
    hw_class: str
    launch_year: int | None = None
    peak_flops: dict[str, Figure] = field(default_factory=dict)  # precision -> FLOP/s, dense
    memory_bytes: Figure | None = None
    memory_type: str = ""
    mem_bw_bytes_per_s: Figure | None = None
    interconnect: str = ""
    interconnect_bw_bytes_per_s: Figure | None = None  # per device, both directions, as vendors quote
    tdp_watts: Figure | None = None
    l2_cache_bytes: Figure | None = None  # last on-chip cache before device memory
    onchip_memory_bytes: Figure | None = None  # SRAM holding a model on a device without memory of its own
    host_link_bw_bytes_per_s: Figure | None = None  # link to the host, streaming what the SRAM cannot hold
    tensorcores_per_chip: Figure | None = None  # TPUs: a slice name ("v4-1024") counts TensorCores
    matmul_max_flops: Figure | None = None  # best bf16 matmul rate measured (maximum achievable matmul FLOPS)
    overlay_efficiency: Figure | None = None  # share of its int8 peak an FPGA overlay sustains, from a vendor's fps
    price_usd: Figure | None = None  # purchase price; its source carries the date
    frameworks: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # other names users write ("H100", "Gaudi2"); see catalog.resolve
    trainable: bool = True
    excluded_reason: str = ""  # one sentence, for entries that cannot run a standard step
    notes: str = ""
    origin: str = ""  # file it came from

    def excluded_for(self, training: bool) -> str:
        """Why this entry cannot run the job, in one sentence, or '' when it can."""
        if self.hw_class in NO_DNN_CLASSES or (training and not self.trainable):
            return self.excluded_reason or f"{self.name} is not built to run a training step."
        return ""

    def streams_parameters(self) -> bool:
        """True for a device with no memory of its own (no bandwidth figure) that holds parameters in on-chip
        SRAM and streams the rest over its host link at every inference (the Coral Edge TPU)."""
        return not self.mem_bw_bytes_per_s and bool(self.onchip_memory_bytes and self.host_link_bw_bytes_per_s)

    def matmul_ceiling(self) -> float | None:
        """The share of its bf16 peak this device's best measured matmul reaches, if measured."""
        peak = self.peak("bf16")
        return self.matmul_max_flops.value / peak if self.matmul_max_flops and peak else None

    def peak(self, precision: str) -> float | None:
        """Dense peak FLOP/s at `precision`, or None when the catalog has no sourced figure."""
        fig = self.peak_flops.get(precision)
        return fig.value if fig is not None and fig.dense is not False else None


@dataclass(frozen=True)
class Instance:
    """A cloud offering: `count` devices of `hardware` for a dated price.

    `pricing` says which kind of price `price_usd_per_hour` is: on-demand, spot,
    capacity-block (reserved in advance for a fixed span), committed-1y or committed-3y.
    """

    id: str
    provider: str  # aws, gcp, azure
    name: str
    hardware: str
    count: int
    price_usd_per_hour: Figure
    price_date: str  # ISO date of the price's source
    region: str = ""
    spot_usd_per_hour: Figure | None = None
    origin: str = ""
    pricing: str = "on-demand"

    @property
    def price_per_device_hour(self) -> float:
        return self.price_usd_per_hour.value / self.count
