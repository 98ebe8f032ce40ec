"""The hardware resolver: free text as vendors, clouds and MLPerf submissions write it -> catalog id and devices."""

import re
import sys
from pathlib import Path

import pytest

import chipfit.catalog
from chipfit.catalog import load_catalog, resolve_hardware
from chipfit.errors import ChipfitError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SPELLINGS = [
    ("H100 80GB HBM3 SXM5", "nvidia-h100-sxm5-80gb", None),
    ("NVIDIA H100-SXM5-80GB", "nvidia-h100-sxm5-80gb", None),
    ("NVIDIA H100-80GB", "nvidia-h100-sxm5-80gb", None),
    ("NVIDIA H100-SXM-80GB (DGX H100)", "nvidia-h100-sxm5-80gb", None),
    ("8x H100", "nvidia-h100-sxm5-80gb", 8),
    ("H100 x 8", "nvidia-h100-sxm5-80gb", 8),
    ("NVIDIA H100 PCIe 80GB", "nvidia-h100-pcie-80gb", None),
    ("H100 80GB PCIe", "nvidia-h100-pcie-80gb", None),
    ("HGX A100 8-GPU", "nvidia-a100-sxm4-80gb", 8),
    ("A100-SXM4-40GB", "nvidia-a100-sxm4-40gb", None),
    ("NVIDIA A100-SXM4-80GB (Selene)", "nvidia-a100-sxm4-80gb", None),
    ("NVIDIA A100-80GB (1600 Gbps RoCE)", "nvidia-a100-sxm4-80gb", None),
    ("A100 PCIe 80GB", "nvidia-a100-pcie-80gb", None),
    ("NVIDIA V100-SXM2-16GB (DGX-1)", "nvidia-v100-sxm2-16gb", None),
    ("Tesla V100 32GB", "nvidia-v100-sxm2-32gb", None),
    ("H200", "nvidia-h200-sxm-141gb", None),
    ("NVIDIA H200-SXM-141GB", "nvidia-h200-sxm-141gb", None),
    ("B200-SXM-180GB", "nvidia-b200-sxm-180gb", None),
    ("NVIDIA T4", "nvidia-t4", None),
    ("L40S", "nvidia-l40s", None),
    ("GeForce RTX 4090", "nvidia-rtx-4090", None),
    ("TPU v4-1024 slice", "google-tpu-v4", 512),
    ("Google TPU v4 (v4-128 slice)", "google-tpu-v4", 64),
    ("TPU v3-8", "google-tpu-v3", 4),
    ("TPU-v5e", "google-tpu-v5e", None),
    ("v5e-256", "google-tpu-v5e", 256),
    ("v5litepod-16", "google-tpu-v5e", 16),
    ("TPU v5p-128", "google-tpu-v5p", 64),
    ("TPU v6e-8", "google-tpu-v6e", 8),
    ("Trillium", "google-tpu-v6e", None),
    ("Gaudi2", "intel-gaudi-2", None),
    ("Intel Gaudi 2", "intel-gaudi-2", None),
    ("Intel-Gaudi-3", "intel-gaudi-3", None),
    ("MI300X", "amd-instinct-mi300x", None),
    ("AMD Instinct MI300X 192GB", "amd-instinct-mi300x", None),
    ("AMD Instinct MI250X GCD (Frontier)", "amd-instinct-mi250x", None),
    ("Xeon Platinum 8480+", "intel-xeon-platinum-8480plus", None),
    ("2 sockets Xeon 8480+", "intel-xeon-platinum-8480plus", 2),
    ("Trainium2", "aws-trainium2", None),
    ("Coral USB Accelerator", "google-edge-tpu", None),
    ("Alveo U280", "amd-alveo-u280", None),
    ("ND96isr H100 v5", "nvidia-h100-sxm5-80gb", 8),
    ("Standard_ND96isr_H100_v5", "nvidia-h100-sxm5-80gb", 8),
    ("p5.48xlarge", "nvidia-h100-sxm5-80gb", 8),
    ("2x p5.48xlarge", "nvidia-h100-sxm5-80gb", 16),
    ("p4d.24xlarge", "nvidia-a100-sxm4-40gb", 8),
    ("a3-highgpu-8g", "nvidia-h100-sxm5-80gb", 8),
    ("a2-ultragpu-8g", "nvidia-a100-sxm4-80gb", 8),
    ("nvidia-l4", "nvidia-l4", None),
    ("GH200", "nvidia-gh200-144gb", None),
    ("GB200 NVL72", "nvidia-gb200-186gb", 72),
    ("2x Xeon Platinum 8592+", "intel-xeon-platinum-8592plus", 2),
    ("Intel Xeon Platinum 8380H CPU @ 2.90GHz", "intel-xeon-platinum-8380h", None),
    ("AMD Instinct MI325X", "amd-instinct-mi325x", None),
    ("Habana Gaudi", "intel-gaudi-1", None),
    ("Graphcore Bow-2000", "graphcore-bow", None),
    ("Cerebras CS-2", "cerebras-wse-2", None),
    ("Apple M2 Ultra", "apple-m2-ultra-cpu", None),
    ("Jetson Orin Nano", "nvidia-jetson-orin-nano-8gb", None),
    ("NVIDIA H800", "nvidia-h800-sxm5-80gb", None),
]


@pytest.mark.parametrize("text, hw_id, devices", SPELLINGS)
def test_spellings_resolve_to_their_entry_and_device_count(text, hw_id, devices):
    got = resolve_hardware(text, load_catalog())
    assert (got.hw_id, got.devices) == (hw_id, devices)


def test_an_unknown_name_names_the_closest_entries():
    with pytest.raises(ChipfitError) as err:
        resolve_hardware("H20", load_catalog())
    assert str(err.value) == (
        "Unknown hardware 'H20': no catalog entry matches it. Closest entries: nvidia-h200-nvl-141gb, "
        "nvidia-h100-nvl-94gb, nvidia-h100-pcie-80gb. Run `chipfit hardware list` to see the catalog.")


_LIST = " Run `chipfit hardware list` to see the catalog."


@pytest.mark.parametrize("text, message", [
    ("A100 16GB", "Unknown hardware 'A100 16GB': no catalog entry matches it. Its name matches nvidia-a100-sxm4-80gb, "
                  "but it states 16 GB and the entry has 80 GiB of device memory. Closest entries: "
                  "nvidia-a100-pcie-40gb, nvidia-a100-pcie-80gb, nvidia-a100-sxm4-40gb." + _LIST),
    ("H100 OAM", "Unknown hardware 'H100 OAM': no catalog entry matches it. Its name matches nvidia-h100-sxm5-80gb, "
                 "but it states OAM and the entry is SXM. Closest entries: "
                 "nvidia-h100-nvl-94gb, nvidia-h100-pcie-80gb, nvidia-h100-sxm5-80gb." + _LIST),
    # the size of a superchip or system (GPU memory plus the CPU's) is not the device's: said, never guessed
    ("GH200 480GB", "Unknown hardware 'GH200 480GB': no catalog entry matches it. Its name matches nvidia-gh200-144gb, "
                    "but it states 480 GB and the entry has 144 GiB of device memory: a larger size may add a "
                    "superchip's or a system's host memory, which is not the device's. "
                    "Closest entries: nvidia-gh200-144gb, nvidia-h200-nvl-141gb, nvidia-h200-sxm-141gb." + _LIST),
])
def test_a_stated_memory_or_form_factor_the_entry_lacks_is_refused_and_says_why(text, message):
    with pytest.raises(ChipfitError) as err:
        resolve_hardware(text, load_catalog())
    assert str(err.value) == message


def test_a_slice_that_is_not_whole_chips_is_refused():
    with pytest.raises(ChipfitError, match=r"TPU slice 'TPU v4-7' names 7 TensorCores, not a whole number"):
        resolve_hardware("TPU v4-7", load_catalog())


# --- the memory unit rule ---------------------------------------------------------------------

_QUOTED = re.compile(r"^quoted as ([\d.]+) ?(TB|GB|MB|GiB|MiB)\b")
_BINARY = {"TB": 2**40, "GB": 2**30, "MB": 2**20, "GiB": 2**30, "MiB": 2**20}
_DECIMAL = {"TB": 1e12, "GB": 1e9, "MB": 1e6}


def _memory_figures():
    data = Path(chipfit.catalog.__file__).parent / "data"
    for path in sorted(data.glob("*.toml")):
        for raw in tomllib.loads(path.read_text()).get("hardware", []):
            for field in ("memory_gib", "memory_gb"):
                if field in raw:
                    yield raw["id"], field, raw[field]


@pytest.mark.parametrize("hw_id, field, figure", list(_memory_figures()))
def test_every_memory_figure_quotes_its_source_and_converts_by_the_unit_rule(hw_id, field, figure):
    """memory_gib reads the source's GB as 2^30 bytes (JEDEC, as DRAM/HBM vendors mean it); memory_gb
    reads it as 1e9 bytes; the note quotes the source, and the bytes follow from the quote."""
    m = _QUOTED.match(figure.get("note", ""))
    assert m, f"{hw_id}: the {field} note must start 'quoted as <number> <unit>'"
    number, unit = float(m.group(1)), m.group(2)
    per_unit = (_BINARY if field == "memory_gib" else _DECIMAL)[unit]
    stored = load_catalog().hardware[hw_id].memory_bytes.value
    assert stored == pytest.approx(number * per_unit, rel=1e-9)


def test_both_memory_units_at_once_are_refused(tmp_path):
    (tmp_path / "lab.toml").write_text(
        '[sources]\nmine = "my lab"\n\n[[hardware]]\nid = "lab-chip"\nname = "Lab chip"\nvendor = "Lab"\n'
        'class = "gpu"\nmemory_gib = { value = 8, source = "mine" }\nmemory_gb = { value = 8, source = "mine" }\n')
    with pytest.raises(ChipfitError, match="field 'memory_gb' repeats the memory size; give memory_gib"):
        load_catalog([tmp_path])
