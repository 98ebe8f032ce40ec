"""The hardware catalog: built-in data, unit conversion, queries and errors for people."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from chipfit.catalog import Catalog, Figure, Hardware, Instance, load_catalog
from chipfit.catalog.schema import CLASSES, FRAMEWORKS, PRECISIONS
from chipfit.errors import ChipfitError


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _figures(hw: Hardware) -> list[Figure]:
    figs = [hw.memory_bytes, hw.mem_bw_bytes_per_s, hw.interconnect_bw_bytes_per_s,
            hw.tdp_watts, hw.price_usd, *hw.peak_flops.values()]
    return [f for f in figs if f is not None]


def test_catalog_size_and_classes(catalog):
    assert len(catalog.hardware) >= 45
    assert {hw.hw_class for hw in catalog.hardware.values()} == set(CLASSES)


def test_every_figure_is_sourced_and_valid(catalog):
    for hw in catalog.hardware.values():
        assert hw.id == hw.id.lower() and " " not in hw.id
        assert set(hw.peak_flops) <= set(PRECISIONS), hw.id
        assert set(hw.frameworks) <= set(FRAMEWORKS), hw.id
        for fig in _figures(hw):
            assert fig.source.strip() and "http" in fig.source, hw.id
            assert fig.value > 0, hw.id
        for fig in hw.peak_flops.values():
            assert fig.dense in (True, False), hw.id
        if not hw.trainable:
            assert hw.excluded_reason.strip(), hw.id


def test_spot_values_in_base_units(catalog):
    h100 = catalog.get("nvidia-h100-sxm5-80gb")
    assert h100.peak("bf16") == pytest.approx(989.4e12)
    assert h100.peak_flops["bf16"].dense is True
    assert h100.memory_bytes.value == 80 * 2**30
    assert h100.mem_bw_bytes_per_s.value == pytest.approx(3.35e12)
    assert h100.interconnect_bw_bytes_per_s.value == pytest.approx(900e9)
    assert h100.tdp_watts.value == 700
    # TFLOP/s scale to whole FLOP/s: 66.9 * 1e12 in floats is 66900000000000.01
    assert h100.peak_flops["fp32"].value == 66_900_000_000_000
    assert "H100" in h100.memory_bytes.source
    v5e = catalog.get("google-tpu-v5e")
    assert v5e.peak("bf16") == pytest.approx(197e12)
    assert v5e.mem_bw_bytes_per_s.value == pytest.approx(819e9)
    # a figure not known to be dense is kept but never used as a dense peak
    wse3 = catalog.get("cerebras-wse-3")
    assert wse3.peak_flops["fp16"].dense is False and wse3.peak("fp16") is None
    # a sparse-only vendor figure halved as the vendor's footnote says: Jetson AGX Orin 275 sparse TOPS
    assert catalog.get("nvidia-jetson-agx-orin-64gb").peak("int8") == pytest.approx(137.5e12)


def test_required_entries_present(catalog):
    for hw_id in ("intel-xeon-platinum-8480plus", "amd-epyc-9654", "nvidia-v100-sxm2-16gb",
                  "nvidia-t4", "nvidia-a10g", "nvidia-l4", "nvidia-l40s", "nvidia-b200-sxm-180gb",
                  "amd-instinct-mi300x", "google-tpu-v6e", "aws-trainium", "aws-inferentia2",
                  "intel-gaudi-3", "cerebras-wse-3", "groq-lpu", "amd-alveo-u250",
                  "intel-loihi-2", "ibm-heron-r2", "google-edge-tpu", "apple-neural-engine-m4"):
        catalog.get(hw_id)


def test_inference_only_and_non_dnn_entries_are_excluded_from_training(catalog):
    for hw_id in ("aws-inferentia2", "google-edge-tpu", "groq-lpu", "intel-loihi-2", "ibm-heron-r2"):
        assert catalog.get(hw_id).trainable is False
    assert "spiking" in catalog.get("intel-loihi-2").excluded_reason


def test_instances_refer_to_hardware_and_are_dated(catalog):
    # only prices with a dated source ship (see docs/catalog.md)
    assert {i.id for i in catalog.instances} >= {"aws-g5.xlarge", "aws-p5.48xlarge"}
    assert {i.provider for i in catalog.instances} == {"aws", "gcp", "azure"}
    for inst in catalog.instances:
        assert inst.hardware in catalog.hardware
        dt.date.fromisoformat(inst.price_date)
        assert inst.count >= 1 and inst.price_usd_per_hour.value > 0
        assert "http" in inst.price_usd_per_hour.source
        assert inst.pricing in ("on-demand", "spot", "capacity-block", "committed-1y", "committed-3y")
        # a reserved or committed price says so in its id, so it is never read as on-demand
        assert (inst.pricing == "on-demand") == (not inst.id.endswith(("-capacity-block", "-1y", "-3y")))


def test_builtin_prices_by_kind(catalog):
    # H100 SXM: p5.48xlarge 55.04 / 8 = 6.88 beats GCP a3-highgpu-8g 88.49 / 8 and Azure 98.32 / 8
    assert catalog.cheapest_instance("nvidia-h100-sxm5-80gb").id == "aws-p5.48xlarge"
    block = catalog.cheapest_instance("nvidia-h100-sxm5-80gb", pricing="capacity-block")
    assert block.id == "aws-p5.48xlarge-capacity-block"
    assert block.price_per_device_hour == pytest.approx(39.33 / 8)
    # GCP a3-highgpu-8g 3-year commitment: 28370.99821392 USD a month / 730 h / 8 GPUs
    anything = catalog.cheapest_instance("nvidia-h100-sxm5-80gb", pricing=None)
    assert anything.id == "gcp-a3-highgpu-8g-3y"
    assert anything.price_per_device_hour == pytest.approx(28370.99821392 / 730 / 8)
    # Trainium: the Capacity Block (15.49 / 16) is cheaper than on-demand trn1.32xlarge (21.5 / 16),
    # but only pricing=None or "capacity-block" may show it
    assert catalog.cheapest_instance("aws-trainium").id == "aws-trn1.32xlarge"
    assert catalog.cheapest_instance("aws-trainium", pricing=None).price_per_device_hour == pytest.approx(15.49 / 16)
    # TPU v4-8 is 4 chips at 3.22 per chip-hour
    assert catalog.cheapest_instance("google-tpu-v4").price_per_device_hour == pytest.approx(3.22)


def test_queries(catalog):
    tpus = catalog.select(hw_class="tpu")
    assert tpus and all(hw.hw_class == "tpu" for hw in tpus)
    coreml = catalog.select(framework="coreml")
    assert {hw.id for hw in coreml} == {"apple-m1-cpu", "apple-m2-cpu", "apple-m2-ultra-cpu", "apple-m3-cpu", "apple-m4-cpu",
                                        "apple-neural-engine-m1", "apple-neural-engine-m2", "apple-neural-engine-m3",
                                        "apple-neural-engine-m4"}
    p5 = [i for i in catalog.instances_for("nvidia-h100-sxm5-80gb") if i.name == "p5.48xlarge"][0]
    assert p5.count == 8 and p5.price_per_device_hour == pytest.approx(55.04 / 8)
    best = catalog.cheapest_instance("nvidia-a10g")
    assert best is not None and best.name == "g5.xlarge" and best.price_per_device_hour == 1.006
    assert catalog.cheapest_instance("intel-loihi-2") is None
    with pytest.raises(ChipfitError, match="Unknown hardware class 'tpuu'. Did you mean tpu"):
        catalog.select(hw_class="tpuu")


def test_get_suggests_the_right_id(catalog):
    with pytest.raises(ChipfitError) as err:
        catalog.get("nvidia-h100-sxm5-80g")
    assert str(err.value) == (
        "Unknown hardware 'nvidia-h100-sxm5-80g'. Did you mean nvidia-h100-sxm5-80gb, "
        "nvidia-h800-sxm5-80gb, nvidia-a100-sxm4-80gb? Run `chipfit hardware list` to see the catalog."
    )
    with pytest.raises(ChipfitError, match=r"^Unknown hardware 'mi300x'. Did you mean amd-instinct-mi300x\? Run"):
        catalog.get("mi300x")
    assert catalog.get("NVIDIA-T4").id == "nvidia-t4"


def test_to_dict_gives_units_and_sources(catalog):
    d = catalog.to_dict(catalog.get("nvidia-h100-sxm5-80gb"))
    bf16 = d["peak_flops"]["bf16"]
    assert (bf16["value"], bf16["unit"], bf16["dense"], bf16["note"]) == (
        989.4e12, "FLOP/s", True, "FP32 accumulate")
    assert "gtc22-whitepaper-hopper" in bf16["source"]
    assert d["memory_bytes"]["unit"] == "bytes" and d["memory_bytes"]["value"] == 80 * 2**30
    assert any(i["name"] == "p5.48xlarge" for i in d["instances"])
    inst = catalog.to_dict(catalog.instances_for("nvidia-h100-sxm5-80gb")[0])
    assert inst["price_usd_per_hour"]["unit"] == "USD/h"


# ---- user files: overrides and errors ------------------------------------------------

GOOD = """\
[sources]
mine = "My lab's measurement notes (2025), https://example.org/notes"

[[hardware]]
id = "nvidia-t4"
name = "NVIDIA T4 (lab card)"
vendor = "NVIDIA"
class = "gpu"
peak_tflops.fp16 = { value = 50, dense = true, source = "mine" }
memory_gib = { value = 15, source = "mine" }

[[hardware]]
id = "lab-chip-1"
name = "Lab chip"
vendor = "Lab"
class = "asic"
mem_bw_gb_per_s = { value = 100, source = "mine" }

[[instance]]
id = "lab-t4"
provider = "aws"
name = "lab.t4"
hardware = "lab-chip-1"
count = 2
price_date = "2025-01-02"
price_usd_per_hour = { value = 1.5, source = "mine" }
"""


def _write(tmp_path: Path, text: str, name: str = "lab.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_user_dir_overrides_and_adds(tmp_path, catalog):
    _write(tmp_path, GOOD)
    cat = load_catalog([tmp_path])
    t4 = cat.get("nvidia-t4")
    assert t4.name == "NVIDIA T4 (lab card)" and t4.peak("fp16") == 50e12
    assert t4.memory_bytes.value == 15 * 2**30 and t4.origin == str(tmp_path / "lab.toml")
    assert cat.get("lab-chip-1").mem_bw_bytes_per_s.value == 100e9
    assert cat.cheapest_instance("lab-chip-1").price_per_device_hour == 0.75
    assert len(cat.hardware) == len(catalog.hardware) + 1
    assert catalog.get("nvidia-t4").name == "NVIDIA T4 16GB"  # the built-in load is untouched


def test_cheapest_instance_is_on_demand_unless_asked(tmp_path):
    block = GOOD + textwrap.dedent("""
        [[instance]]
        id = "lab-block"
        provider = "aws"
        name = "lab.block"
        hardware = "lab-chip-1"
        count = 4
        pricing = "capacity-block"
        price_date = "2025-01-02"
        price_usd_per_hour = { value = 2.0, source = "mine" }
    """)
    cat = load_catalog([_write(tmp_path, block)])
    by_id = {i.id: i for i in cat.instances_for("lab-chip-1")}
    assert (by_id["lab-t4"].pricing, by_id["lab-block"].pricing) == ("on-demand", "capacity-block")
    # the block is cheaper per device (2.0 / 4 = 0.5 < 1.5 / 2 = 0.75) but never shown as on-demand
    assert cat.cheapest_instance("lab-chip-1").id == "lab-t4"
    assert cat.cheapest_instance("lab-chip-1", pricing=None).price_per_device_hour == 0.5
    assert cat.cheapest_instance("lab-chip-1", pricing="capacity-block").id == "lab-block"
    assert cat.cheapest_instance("lab-chip-1", pricing="spot") is None
    assert cat.to_dict(by_id["lab-block"])["pricing"] == "capacity-block"
    with pytest.raises(ChipfitError, match="Unknown pricing 'ondemand'. Did you mean on-demand"):
        cat.cheapest_instance("lab-chip-1", pricing="ondemand")


def test_env_var_dirs(tmp_path, monkeypatch):
    _write(tmp_path, GOOD)
    monkeypatch.setenv("CHIPFIT_CATALOG", str(tmp_path))
    assert "lab-chip-1" in load_catalog().hardware


def test_missing_dir(tmp_path):
    with pytest.raises(ChipfitError, match="Catalog directory .*nope' does not exist"):
        load_catalog([tmp_path / "nope"])


def _error(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(ChipfitError) as err:
        load_catalog([tmp_path])
    return str(err.value).replace(str(path), "lab.toml")


def test_syntax_error_names_file_and_line(tmp_path):
    msg = _error(tmp_path, GOOD.replace('vendor = "Lab"', 'vendor = "Lab'))
    assert msg == "Catalog file lab.toml line 15: Illegal character '\\n'; fix the TOML syntax."


def test_wrong_type_names_line_and_field(tmp_path):
    msg = _error(tmp_path, GOOD.replace("value = 100,", 'value = "100",'))
    assert msg == (
        "Catalog file lab.toml line 17: hardware 'lab-chip-1' field 'mem_bw_gb_per_s' must be "
        "{value = <number>, source = <key>}; got {'value': '100', 'source': 'mine'}."
    )


def test_unknown_source_key(tmp_path):
    msg = _error(tmp_path, GOOD.replace('value = 50, dense = true, source = "mine"',
                                        'value = 50, dense = true, source = "mien"'))
    assert msg == (
        "Catalog file lab.toml line 9: hardware 'nvidia-t4' field 'peak_tflops.fp16' names "
        "unknown source 'mien'. Did you mean mine?"
    )


def test_unknown_class(tmp_path):
    msg = _error(tmp_path, GOOD.replace('class = "asic"', 'class = "npu"'))
    assert msg == (
        "Catalog file lab.toml line 16: hardware 'lab-chip-1' field 'class' is 'npu', not a known "
        "class. Did you mean tpu, gpu, cpu? Use one of: cpu, gpu, tpu, asic, fpga, edge, neuromorphic, quantum."
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('peak_tflops.fp16', 'peak_tflops.fp12',
         "line 9: hardware 'nvidia-t4' field 'peak_tflops.fp12' is not a known precision. Did you mean fp32, fp16, fp8?"),
        ('memory_gib = { value = 15,', 'memory_gib = { value = -15,',
         "line 10: hardware 'nvidia-t4' field 'memory_gib' must be a positive number; got -15."),
        ('class = "gpu"', 'class = "gpu"\nframeworks = ["pytorch", "tensorflw"]',
         "line 9: hardware 'nvidia-t4' field 'frameworks' has unknown framework 'tensorflw'. Did you mean tensorflow"),
        ('id = "lab-chip-1"', 'id = "nvidia-t4"',
         "line 13: hardware 'nvidia-t4' field 'id' repeats the id 'nvidia-t4'"),
        ('hardware = "lab-chip-1"', 'hardware = "lab-chip-2"',
         "line 23: instance 'lab-t4' field 'hardware' is 'lab-chip-2', which is not in the catalog. Did you mean lab-chip-1"),
        ('price_date = "2025-01-02"\n', '',
         "line 19: instance 'lab-t4' field 'price_date' is missing"),
        ('count = 2', 'count = 0',
         "line 24: instance 'lab-t4' field 'count' must be a whole number of devices, at least 1; got 0."),
        ('vendor = "Lab"', 'vendor = "Lab"\nspeed = 3',
         "line 16: hardware 'lab-chip-1' field 'speed' is not a known field."),
        ('count = 2', 'count = 2\npricing = "reserved"',
         "line 25: instance 'lab-t4' field 'pricing' is 'reserved', not a known kind of price. "
         "Use one of: on-demand, spot, capacity-block, committed-1y, committed-3y."),
        ('count = 2', 'count = 2\npricing = "capacity-blok"',
         "line 25: instance 'lab-t4' field 'pricing' is 'capacity-blok', not a known kind of price. "
         "Did you mean capacity-block"),
        ('mem_bw_gb_per_s = { value = 100, source = "mine" }',
         'overlay_efficiency = { value = 1.35, source = "mine" }',
         "line 17: hardware 'lab-chip-1' field 'overlay_efficiency' is a share of the overlay's peak, so at most 1; "
         "got 1.35."),
    ],
)
def test_field_errors(tmp_path, old, new, expected):
    assert old in GOOD
    msg = _error(tmp_path, GOOD.replace(old, new, 1))
    assert msg.startswith(f"Catalog file lab.toml {expected}"), msg


def test_builtin_load_is_cached():
    assert load_catalog() is load_catalog()
