"""FPGAs predict as the overlays they run (Vitis AI DPU); edge NPUs from their dense int8 figures."""

import pytest

from chipfit.catalog import load_catalog
from chipfit import compare
from chipfit.predict.efficiency import CLASS_MATMUL_EFFICIENCY, default_efficiency


@pytest.fixture(scope="module")
def resnet50_int8():
    cmp = compare("resnet50", mode="infer", batch=1, precision="int8", hw_class=None,
                  hardware=["amd-alveo-u280", "nvidia-jetson-agx-orin-64gb", "apple-neural-engine-m4",
                            "google-edge-tpu"], local=False)
    return cmp, {e.hardware: e for e in cmp.estimates}


def test_an_fpga_is_priced_as_its_overlay(resnet50_int8):
    cmp, est = resnet50_int8
    u280 = load_catalog().get("amd-alveo-u280")
    assert u280.peak("int8") == 17_203_000_000_000  # DPUCAHX8H, 3 cores / 14 engines at 300 MHz (PG367)
    assert default_efficiency(u280).matmul == CLASS_MATMUL_EFFICIENCY["fpga"] == 0.34
    flops = cmp.profile.to_dict()["flops"]["total"]
    assert est["amd-alveo-u280"].step_time_s >= flops / (u280.peak("int8") * 0.34)


def test_edge_npus_predict_from_dense_int8(resnet50_int8):
    _, est = resnet50_int8
    for hw_id in ("nvidia-jetson-agx-orin-64gb", "apple-neural-engine-m4"):
        assert est[hw_id].throughput_per_s > 0 and not est[hw_id].excluded_reason


def test_an_entry_without_a_figure_says_which(resnet50_int8):
    _, est = resnet50_int8
    assert est["google-edge-tpu"].excluded_reason == (
        "The catalog has no sourced memory bandwidth figure for Google Edge TPU (Coral USB Accelerator), "
        "so its step time cannot be predicted.")
