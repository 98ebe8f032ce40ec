"""Devices people commonly own or rent: each entry holds exactly its sourced figures, resolves from the names
vendors, nvidia-smi and torch print, and predicts a CNN and an LLM (or says which figure it lacks)."""

import json

import pytest

from chipfit.api import Job, compare
from chipfit.catalog import Resolved, load_catalog, resolve_hardware
from chipfit.cli import main
from chipfit.errors import ChipfitError

# id -> the dense peaks in TFLOP/s (TOPS for int), memory in GiB, bandwidth in GB/s, TDP in W, price in USD,
# as the sources cited in the catalog state them (None: the source gives none). Every precision not listed
# must be absent: a figure no source gives stays empty.
FIGURES = {
    "nvidia-rtx-a6000": ({"fp32": 38.7, "bf16": 154.8, "fp16": 154.8, "int8": 309.7, "int4": 619.3},
                         48, 768, 300, 4649),
    "nvidia-rtx-6000-ada": ({"fp32": 91.1}, 48, 960, 300, None),
    "nvidia-l40": ({"fp32": 90.5, "tf32": 90.5, "bf16": 181.05, "fp16": 181.05, "fp8": 362, "int8": 362,
                    "int4": 724}, 48, 864, 300, None),
    "nvidia-v100-pcie-16gb": ({"fp64": 7, "fp32": 14, "fp16": 112}, 16, 900, 250, None),
    "nvidia-v100-pcie-32gb": ({"fp64": 7, "fp32": 14, "fp16": 112}, 32, 900, 250, None),
    "nvidia-a100-pcie-40gb": ({"fp64": 9.7, "fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312, "int8": 624},
                              40, 1555, 250, None),
    "nvidia-h100-nvl-94gb": ({}, 94, 3900, 400, None),
    "nvidia-h200-nvl-141gb": ({}, 141, 4800, 600, None),
    "nvidia-rtx-4080": ({"fp32": 48.7, "bf16": 97.5, "fp16": 97.5, "fp8": 195}, 16, 716.8, 320, 1199),
    "nvidia-p100-pcie-16gb": ({"fp64": 4.7, "fp32": 9.3, "fp16": 18.7}, 16, 720, 250, None),
    "amd-instinct-mi210": ({"fp64": 22.6, "fp32": 22.6, "fp16": 181, "int8": 181}, 64, 1600, 300, None),
    "amd-instinct-mi100": ({"fp64": 11.5, "fp32": 23.1, "bf16": 92.3, "fp16": 184.6, "int8": 184.6, "int4": 184.6},
                           32, 1228.8, 300, None),
    "amd-radeon-rx-7900-xtx": ({"fp32": 61}, 24, 960, 355, 999),
    "amd-epyc-7763": ({"fp64": 2.5088, "fp32": 5.0176}, None, 204.8, 280, 7890),
    "sambanova-sn40l": ({"bf16": 638}, 64, 1600, None, None),
}

# Two or three real spellings each, the nvidia-smi / torch.cuda.get_device_name / /proc/cpuinfo name first.
SPELLINGS = [
    ("NVIDIA RTX A6000", "nvidia-rtx-a6000", None), ("RTX A6000", "nvidia-rtx-a6000", None),
    ("4x RTX A6000", "nvidia-rtx-a6000", 4),
    ("NVIDIA RTX 6000 Ada Generation", "nvidia-rtx-6000-ada", None), ("RTX 6000 Ada", "nvidia-rtx-6000-ada", None),
    ("NVIDIA L40", "nvidia-l40", None), ("8x L40 48GB", "nvidia-l40", 8),
    ("Tesla V100-PCIE-16GB", "nvidia-v100-pcie-16gb", None), ("V100 PCIe 16GB", "nvidia-v100-pcie-16gb", None),
    ("Tesla V100-PCIE-32GB", "nvidia-v100-pcie-32gb", None), ("V100 PCIe 32GB", "nvidia-v100-pcie-32gb", None),
    ("NVIDIA A100-PCIE-40GB", "nvidia-a100-pcie-40gb", None), ("A100 40GB PCIe", "nvidia-a100-pcie-40gb", None),
    ("NVIDIA H100 NVL", "nvidia-h100-nvl-94gb", None), ("2x H100 NVL 94GB", "nvidia-h100-nvl-94gb", 2),
    ("NVIDIA H200 NVL", "nvidia-h200-nvl-141gb", None), ("H200 NVL 141GB", "nvidia-h200-nvl-141gb", None),
    ("NVIDIA GeForce RTX 4080", "nvidia-rtx-4080", None), ("RTX 4080 16GB", "nvidia-rtx-4080", None),
    ("Tesla P100-PCIE-16GB", "nvidia-p100-pcie-16gb", None), ("Tesla P100", "nvidia-p100-pcie-16gb", None),
    ("AMD Instinct MI210", "amd-instinct-mi210", None), ("8xMI210", "amd-instinct-mi210", 8),
    ("AMD Instinct MI100", "amd-instinct-mi100", None), ("MI100 32GB", "amd-instinct-mi100", None),
    ("AMD Radeon RX 7900 XTX", "amd-radeon-rx-7900-xtx", None), ("2x RX 7900 XTX", "amd-radeon-rx-7900-xtx", 2),
    ("7900XTX", "amd-radeon-rx-7900-xtx", None),
    ("AMD EPYC 7763 64-Core Processor", "amd-epyc-7763", None), ("2x EPYC 7763", "amd-epyc-7763", 2),
    ("SambaNova SN40L", "sambanova-sn40l", None), ("16x SN40L", "sambanova-sn40l", 16),
]


@pytest.mark.parametrize("hw_id, figures", FIGURES.items())
def test_each_entry_holds_exactly_its_sourced_figures(hw_id, figures):
    peaks, memory_gib, bw, tdp, price = figures
    hw = load_catalog().hardware[hw_id]
    assert {p: f.value for p, f in hw.peak_flops.items()} == {p: round(v * 1e12) for p, v in peaks.items()}
    assert all(f.dense is not False and f.source for f in hw.peak_flops.values())
    assert (hw.memory_bytes.value if hw.memory_bytes else None) == (memory_gib and memory_gib * 2**30)
    assert hw.mem_bw_bytes_per_s.value == round(bw * 1e9)
    assert (hw.tdp_watts.value if hw.tdp_watts else None) == tdp
    assert (hw.price_usd.value if hw.price_usd else None) == price


@pytest.mark.parametrize("text, hw_id, devices", SPELLINGS)
def test_real_spellings_resolve_to_the_entry(text, hw_id, devices):
    assert resolve_hardware(text, load_catalog()) == Resolved(hw_id, devices)


@pytest.mark.parametrize("text, variant, bases", [
    ("Apple M2 Max", "max", "apple-m2-cpu"),
    ("M3 Ultra", "ultra", "apple-m3-cpu"),
    ("NVIDIA GeForce RTX 4080 SUPER", "super", "nvidia-rtx-4080"),
    ("Tesla V100S-PCIE-32GB", "s", "nvidia-v100-pcie-16gb, nvidia-v100-pcie-32gb, nvidia-v100-sxm2-32gb"),
    ("RTX 4090 Laptop GPU", "laptop", "nvidia-rtx-4090"),
])
def test_a_variant_word_the_entry_lacks_is_another_product(text, variant, bases):
    with pytest.raises(ChipfitError) as err:
        resolve_hardware(text, load_catalog())
    assert str(err.value).startswith(
        f"Unknown hardware '{text}': no catalog entry matches it. Its name matches {bases}, but the variant "
        f"'{variant}' it names is another product than the base part. Closest entries: ")


def test_variant_words_the_entry_carries_still_match():
    cat = load_catalog()
    assert resolve_hardware("Apple M2 Ultra", cat).hw_id == "apple-m2-ultra-cpu"
    assert resolve_hardware("Jetson Orin Nano", cat).hw_id == "nvidia-jetson-orin-nano-8gb"
    assert resolve_hardware("NVIDIA's L40S", cat).hw_id == "nvidia-l40s"  # a possessive is no 'S' suffix


def test_a_count_glued_to_the_name_is_read_and_a_name_is_not_a_count():
    cat = load_catalog()
    assert resolve_hardware("4xA100", cat) == Resolved("nvidia-a100-sxm4-80gb", 4)
    assert resolve_hardware("8x H100", cat) == Resolved("nvidia-h100-sxm5-80gb", 8)
    # "7900 X..." inside the name is no count; "NVL72" inside a name still is
    assert resolve_hardware("AMD Radeon RX 7900 XTX", cat).devices is None
    assert resolve_hardware("GB200 NVL72", cat).devices == 72


PREDICTING = [hw_id for hw_id, (peaks, *_) in FIGURES.items() if peaks]


def test_every_entry_with_a_peak_predicts_resnet50():
    got = compare(Job(model="resnet50", batch=32, mode="infer", hardware=tuple(PREDICTING)), load_catalog())
    steps = {e.hardware: e for e in got.estimates if e.hardware != "local-cpu"}
    assert set(steps) == set(PREDICTING)
    assert all(not e.excluded_reason and e.step_time_s > 0 for e in steps.values())
    # sourced peaks and bandwidths order the GPUs as their generations do
    assert steps["nvidia-a100-pcie-40gb"].step_time_s < steps["nvidia-v100-pcie-16gb"].step_time_s
    assert steps["nvidia-v100-pcie-16gb"].step_time_s < steps["nvidia-p100-pcie-16gb"].step_time_s


def test_llm_decode_runs_at_each_entry_s_sourced_bandwidth():
    """Decoding Llama-2-7B one token at a time streams its weights (6.7e9 x 2 bytes) and cache: step x bandwidth
    is about one constant on every device, above the weights' bytes (kernel overheads add a few percent)."""
    gpus = [h for h in PREDICTING if load_catalog().hardware[h].hw_class != "cpu"]
    got = compare(Job(model="llama-2-7b", batch=1, mode="infer", prompt=512, generate=128, hardware=tuple(gpus)),
                  load_catalog())
    est = {e.hardware: e for e in got.estimates}
    assert all(est[h].fits is True for h in gpus)
    bytes_moved = {h: est[h].step_time_s * load_catalog().hardware[h].mem_bw_bytes_per_s.value for h in gpus}
    assert min(bytes_moved.values()) > 6.7e9 * 2
    assert max(bytes_moved.values()) / min(bytes_moved.values()) < 1.05


@pytest.mark.parametrize("hw_id, name", [("nvidia-h100-nvl-94gb", "NVIDIA H100 NVL 94GB"),
                                         ("nvidia-h200-nvl-141gb", "NVIDIA H200 NVL 141GB")])
def test_an_entry_without_a_sourced_peak_says_so(hw_id, name):
    got = compare(Job(model="resnet50", batch=32, mode="infer", hardware=(hw_id,)), load_catalog())
    est = next(e for e in got.estimates if e.hardware == hw_id)
    assert est.excluded_reason == (f"The catalog has no sourced bf16 throughput figure for {name}, so its step time "
                                   "cannot be predicted.")


def test_cli_compares_resnet50_on_a_new_entry_by_its_smi_name(capsys):
    code = main(["compare", "resnet50", "--hardware", "NVIDIA RTX A6000", "--hardware", "Tesla V100-PCIE-32GB",
                 "--json"])
    rows = {e["hardware"]: e for e in json.loads(capsys.readouterr().out)["estimates"]}
    assert code == 0 and {"nvidia-rtx-a6000", "nvidia-v100-pcie-32gb"} <= set(rows)
    assert rows["nvidia-rtx-a6000"]["step_time_s"] > 0 and rows["nvidia-v100-pcie-32gb"]["step_time_s"] > 0
