"""Local devices: cpuinfo parsing, derived CPU peaks, catalog matching, CUDA discovery (faked)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from chipfit.catalog import load_catalog
from chipfit.catalog.schema import Figure, Hardware
from chipfit.measure import devices
from chipfit.measure.devices import (
    LocalDevice, cpu_peak_flops, flop_per_cycle, local_cpu_hardware, match_catalog, max_clock_hz,
    parse_cpuinfo, parse_meminfo_total_bytes,
)

SPR_FLAGS = "fpu sse sse2 avx fma avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8"


def x86_cpuinfo(vendor: str, family: int, model: int, name: str, flags: str, cores: int, threads: int,
                mhz: str = "2000.000") -> str:
    """/proc/cpuinfo text for one socket with `cores` cores and `threads` logical CPUs."""
    blocks = []
    for i in range(threads):
        blocks.append(
            f"processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            f"model name\t: {name}\ncpu MHz\t\t: {mhz}\nphysical id\t: 0\nsiblings\t: {threads}\n"
            f"core id\t\t: {i % cores}\ncpu cores\t: {cores}\nflags\t\t: {flags}\n"
        )
    return "\n".join(blocks)


ARM_N1 = "\n".join(
    f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"
    f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n"
    for i in range(4)
)


def test_parse_intel_with_hyperthreads():
    info = parse_cpuinfo(x86_cpuinfo("GenuineIntel", 6, 143, "Intel(R) Xeon(R) Platinum 8480+", SPR_FLAGS, 4, 8))
    assert (info.model_name, info.vendor, info.family, info.model) == ("Intel(R) Xeon(R) Platinum 8480+",
                                                                      "GenuineIntel", 6, 143)
    assert (info.cores, info.threads, info.mhz) == (4, 8, 2000.0)
    assert info.isa == ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile",
                        "amx_bf16", "amx_int8")


def test_parse_arm_features_give_neon():
    info = parse_cpuinfo(ARM_N1)
    assert (info.model_name, info.vendor, info.cpu_part, info.cores, info.threads) == (
        "Neoverse N1", "ARM", "0xd0c", 4, 4)
    assert info.isa == ("neon",)
    assert info.mhz is None


def test_parse_rejects_text_without_processors():
    with pytest.raises(ValueError):
        parse_cpuinfo("nothing here: at all\n")


def test_meminfo():
    assert parse_meminfo_total_bytes("MemTotal:       24684092 kB\nMemFree: 1 kB\n") == 24684092 * 1024
    assert parse_meminfo_total_bytes("MemFree: 1 kB\n") is None


def test_max_clock_prefers_cpufreq(tmp_path):
    info = parse_cpuinfo(x86_cpuinfo("GenuineIntel", 6, 143, "x", SPR_FLAGS, 4, 8, mhz="2000.000"))
    freq = tmp_path / "cpuinfo_max_freq"
    freq.write_text("3800000\n")  # kHz
    assert max_clock_hz(info, freq) == (3.8e9, "cpufreq cpuinfo_max_freq")
    hz, source = max_clock_hz(info, tmp_path / "missing")
    assert hz == 2.0e9 and source.startswith("/proc/cpuinfo cpu MHz")


def test_peaks_sapphire_rapids_amx():
    info = parse_cpuinfo(x86_cpuinfo("GenuineIntel", 6, 143, "x", SPR_FLAGS, 4, 8))
    peaks = cpu_peak_flops(info, 3.8e9, "cpufreq cpuinfo_max_freq")
    # 4 physical cores (not 8 threads) x 3.8 GHz x FLOP/cycle: 2 x 512-bit FMA = 64 FP32;
    # AMX 1024 bf16 and 2048 int8; avx512_fp16 = 2 x 64.
    assert peaks["fp32"].value == pytest.approx(4 * 3.8e9 * 64)
    assert peaks["fp64"].value == pytest.approx(4 * 3.8e9 * 32)
    assert peaks["bf16"].value == pytest.approx(4 * 3.8e9 * 1024)
    assert peaks["int8"].value == pytest.approx(4 * 3.8e9 * 2048)
    assert peaks["fp16"].value == pytest.approx(4 * 3.8e9 * 128)
    assert peaks["fp32"].source.startswith("derived: 4 cores x 3.80 GHz x 64 FLOP/cycle")
    assert all(f.dense for f in peaks.values())


def test_peaks_amd_zen4_runs_avx512_at_256_bits():
    flags = "fma avx2 avx512f avx512_bf16 avx512_vnni"
    per_cycle = flop_per_cycle(parse_cpuinfo(x86_cpuinfo("AuthenticAMD", 0x19, 0x11, "EPYC 9654", flags, 2, 2)))
    assert {p: v for p, (v, _) in per_cycle.items()} == {"fp32": 32, "fp64": 16, "bf16": 64, "int8": 128}
    zen5 = flop_per_cycle(parse_cpuinfo(x86_cpuinfo("AuthenticAMD", 0x1A, 2, "EPYC", flags, 2, 2)))
    assert zen5["fp32"][0] == 64 and zen5["bf16"][0] == 128
    no_fma = flop_per_cycle(parse_cpuinfo(x86_cpuinfo("GenuineIntel", 6, 42, "old", "sse sse2 avx", 2, 2)))
    assert no_fma == {}


def test_peaks_arm_and_no_clock():
    info = parse_cpuinfo(ARM_N1)
    assert cpu_peak_flops(info, None, "") == {}
    peaks = cpu_peak_flops(info, 3.0e9, "test clock")
    assert set(peaks) == {"fp32", "fp64"}  # nothing derived for bf16/int8 is left empty, not guessed
    assert peaks["fp32"].value == pytest.approx(4 * 3.0e9 * 16)  # 2 x 128-bit FMA pipes


def test_local_cpu_hardware_from_given_info(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "_CPUFREQ", tmp_path / "missing")
    info = parse_cpuinfo(x86_cpuinfo("AuthenticAMD", 0x19, 0x11, "AMD EPYC 9654", "fma avx2 avx512f", 2, 4,
                                     mhz="2500.000"))
    hw = local_cpu_hardware(measure_bandwidth=False, info=info, memory_bytes=8 * 2**30)
    assert (hw.id, hw.hw_class, hw.name) == ("local-cpu", "cpu", "AMD EPYC 9654")
    assert hw.peak("fp32") == pytest.approx(2 * 2.5e9 * 32)
    assert hw.memory_bytes.value == 8 * 2**30
    assert hw.mem_bw_bytes_per_s is None
    assert "2 cores, 4 threads" in hw.notes


def test_local_cpu_hardware_measures_triad(monkeypatch):
    calls = []

    def fake_bandwidth(device, op, quick=False):
        calls.append((device.kind, op, quick))
        return SimpleNamespace(achieved_bytes_per_s=2.0e10, repetitions=5, shape={"elements": 8})

    monkeypatch.setattr("chipfit.measure.microbench.bench_bandwidth", fake_bandwidth)
    hw = local_cpu_hardware(info=parse_cpuinfo(ARM_N1), memory_bytes=2**30)
    assert calls == [("cpu", "triad", True)]
    assert hw.mem_bw_bytes_per_s.value == 2.0e10
    assert hw.mem_bw_bytes_per_s.source == "measured on this machine, STREAM-like triad"


def _gpu(id: str, name: str) -> Hardware:
    return Hardware(id=id, name=name, vendor="NVIDIA", hw_class="gpu",
                    memory_bytes=Figure(80e9, "datasheet"))


CATALOG = [
    _gpu("a100-sxm4-80gb", "NVIDIA A100 SXM4 80GB"),
    _gpu("a100-pcie-40gb", "NVIDIA A100 PCIe 40GB"),
    _gpu("h100-sxm", "NVIDIA H100 SXM5 80GB"),
    Hardware(id="epyc-9654", name="AMD EPYC 9654", vendor="AMD", hw_class="cpu"),
]


def _device(kind: str, name: str) -> LocalDevice:
    return LocalDevice(id="cuda:0" if kind == "cuda" else "local-cpu", kind=kind, name=name, vendor="",
                       torch_device="cpu", precisions=("fp32",), memory_bytes=40 * 2**30)


@pytest.mark.parametrize("kind, name, hw_id", [
    ("cuda", "NVIDIA A100-PCIE-40GB", "nvidia-a100-pcie-40gb"),
    ("cuda", "NVIDIA A100-SXM4-80GB", "nvidia-a100-sxm4-80gb"),
    ("cuda", "NVIDIA A100 80GB PCIe", "nvidia-a100-pcie-80gb"),
    ("cuda", "NVIDIA H100 80GB HBM3", "nvidia-h100-sxm5-80gb"),
    ("cuda", "NVIDIA H100 NVL", "nvidia-h100-nvl-94gb"),
    ("cuda", "NVIDIA H200", "nvidia-h200-sxm-141gb"),  # as torch and nvidia-smi printed it on an H200, 2026-12
    ("cuda", "Tesla V100-PCIE-32GB", "nvidia-v100-pcie-32gb"),
    ("cuda", "Tesla V100-SXM2-16GB", "nvidia-v100-sxm2-16gb"),
    ("cuda", "Tesla P100-PCIE-16GB", "nvidia-p100-pcie-16gb"),
    ("cuda", "NVIDIA RTX A6000", "nvidia-rtx-a6000"),
    ("cuda", "NVIDIA RTX 6000 Ada Generation", "nvidia-rtx-6000-ada"),
    ("cuda", "NVIDIA L40", "nvidia-l40"),
    ("cuda", "NVIDIA GeForce RTX 4080", "nvidia-rtx-4080"),
    ("cuda", "AMD Instinct MI210", "amd-instinct-mi210"),
    ("cuda", "AMD Radeon RX 7900 XTX", "amd-radeon-rx-7900-xtx"),
    ("cpu", "AMD EPYC 7763 64-Core Processor", "amd-epyc-7763"),
    ("cpu", "AMD EPYC 9654 96-Core Processor", "amd-epyc-9654"),
    ("cpu", "Intel(R) Xeon(R) Platinum 8480+", "intel-xeon-platinum-8480plus"),
])
def test_match_catalog_resolves_the_names_torch_and_nvidia_smi_print(kind, name, hw_id):
    assert match_catalog(_device(kind, name), load_catalog(), measure_bandwidth=False).id == hw_id


def test_match_catalog_takes_plain_entries_and_their_names():
    assert match_catalog(_device("cuda", "NVIDIA H100 SXM5 80GB"), CATALOG).id == "h100-sxm"
    assert match_catalog(_device("cpu", "AMD EPYC 9654 96-Core Processor"), CATALOG).id == "epyc-9654"


def test_match_catalog_never_takes_a_variant_or_another_class(monkeypatch):
    monkeypatch.setattr(devices, "local_cpu_hardware", lambda measure_bandwidth=True: "built-cpu")
    # an RTX 4080 SUPER is not an RTX 4080, an M2 Max is not an M2: built from this machine instead
    assert match_catalog(_device("cuda", "NVIDIA GeForce RTX 4080 SUPER"), load_catalog()).id == "local-cuda0"
    assert match_catalog(_device("cpu", "Apple M2 Max"), load_catalog()) == "built-cpu"
    # a virtual machine's CPU that names no model is no entry's
    assert match_catalog(_device("cpu", "Intel(R) Xeon(R) Processor"), load_catalog()) == "built-cpu"
    # a CPU whose name resolves to a GPU entry is no match
    assert match_catalog(_device("cpu", "NVIDIA L40"), load_catalog()) == "built-cpu"


def test_match_catalog_builds_an_entry_when_nothing_matches(monkeypatch):
    built = match_catalog(_device("cuda", "NVIDIA GeForce RTX 4090"), {h.id: h for h in CATALOG})
    assert (built.id, built.hw_class, built.name) == ("local-cuda0", "gpu", "NVIDIA GeForce RTX 4090")
    assert built.memory_bytes.value == 40 * 2**30
    assert built.peak_flops == {}
    monkeypatch.setattr(devices, "local_cpu_hardware", lambda measure_bandwidth=True: "built-cpu")
    # "AMD EPYC" names no model: sharing only the vendor words is no match
    assert match_catalog(_device("cpu", "AMD EPYC"), CATALOG) == "built-cpu"


def test_cuda_devices_from_fake_torch(monkeypatch):
    import torch

    props = SimpleNamespace(name="NVIDIA A100-SXM4-80GB", major=8, minor=0, total_memory=80 * 10**9,
                            multi_processor_count=108)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    nvml = {"power_limit_watts": 400.0, "max_sm_clock_hz": 1.41e9}
    monkeypatch.setattr(devices, "_nvml_details", lambda i, uuid: nvml)
    (gpu,) = devices.cuda_devices()
    assert (gpu.id, gpu.kind, gpu.torch_device, gpu.cores, gpu.memory_bytes) == (
        "cuda:0", "cuda", "cuda:0", 108, 80 * 10**9)
    assert gpu.precisions[:4] == ("fp32", "tf32", "bf16", "fp16")
    assert gpu.max_clock_hz == 1.41e9
    assert gpu.details["compute_capability"] == "8.0" and gpu.details["power_limit_watts"] == 400.0


def test_local_devices_lists_the_cpu_first():
    found = devices.local_devices()
    assert found[0].id == "local-cpu" and found[0].kind == "cpu"
    assert found[0].cores >= 1 and found[0].threads >= found[0].cores
    assert "fp32" in found[0].precisions
