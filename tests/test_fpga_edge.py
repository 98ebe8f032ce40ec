"""FPGAs predict as the overlays they run (Vitis AI DPU); edge NPUs from their dense int8 figures; a device
without memory of its own (the Edge TPU) streams the parameters its SRAM cannot hold over its host link."""

import pytest
import torch

from chipfit import compare
from chipfit.catalog import load_catalog
from chipfit.predict import OpArrays
from chipfit.predict.efficiency import CLASS_MATMUL_EFFICIENCY, default_efficiency
from chipfit.predict.roofline import streamed_parameter_bytes
from chipfit.workload.zoo_vision import resnet50

RESNET50_PARAMS = 25_557_032  # torchvision ResNet-50: 25.6 M parameters


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def resnet50_int8():
    cmp = compare("resnet50", mode="infer", batch=1, precision="int8", hw_class=None,
                  hardware=["amd-alveo-u280", "nvidia-jetson-agx-orin-64gb", "apple-neural-engine-m4",
                            "google-edge-tpu", "apple-neural-engine-m1", "qualcomm-hexagon-8gen3", "amd-alveo-u250"],
                  local=False)
    return cmp, {e.hardware: e for e in cmp.estimates}


def test_an_fpga_is_priced_as_its_overlay(resnet50_int8, catalog):
    cmp, est = resnet50_int8
    u280 = catalog.get("amd-alveo-u280")
    assert u280.peak("int8") == 17_203_000_000_000  # DPUCAHX8H, 3 cores / 14 engines at 300 MHz (PG367)
    # Vitis AI 1.4 model zoo: cf_resnet18 (3.65 GOP) at 1,658.3 fps on those 14 engines
    assert default_efficiency(u280).matmul == 0.352 == round(1658.3 * 3.65e9 / u280.peak("int8"), 3)
    flops = cmp.profile.to_dict()["flops"]["total"]
    assert est["amd-alveo-u280"].step_time_s >= flops / (u280.peak("int8") * 0.352)


def test_the_u50_overlay_efficiency_is_its_resnet18_figure(catalog):
    u50 = catalog.get("amd-alveo-u50")
    # PG367: 6 engines of 4,096 ops per cycle at 300 MHz; Vitis AI 1.3 model zoo: cf_resnet18 at 1,484.2 fps
    assert u50.peak("int8") == pytest.approx(6 * 4096 * 300e6, rel=1e-4)
    assert default_efficiency(u50).matmul == 0.735 == round(1484.2 * 3.65e9 / u50.peak("int8"), 3)


def test_an_fpga_without_its_own_figure_takes_the_class_default(catalog):
    assert default_efficiency(catalog.get("amd-alveo-u250")).matmul == CLASS_MATMUL_EFFICIENCY["fpga"] == 0.34


def test_the_vck190_overlay_peak_and_board_bandwidth(catalog):
    vck190 = catalog.get("amd-versal-vc1902")
    # PG389: 256 ops per AI Engine per clock x 32 AI Engines per batch handler x 3 handlers x 1.333 GHz
    assert vck190.peak("int8") == pytest.approx(256 * 32 * 3 * 1.333e9, rel=1e-3)
    # Board files: a 64-bit DDR4-3200 DIMM and four 32-bit LPDDR4-4267 channels
    assert vck190.mem_bw_bytes_per_s.value == pytest.approx(8 * 3200e6 + 4 * 4 * 4267e6, rel=1e-4)


def test_edge_npus_predict_from_dense_int8(resnet50_int8):
    _, est = resnet50_int8
    for hw_id in ("nvidia-jetson-agx-orin-64gb", "apple-neural-engine-m4", "qualcomm-hexagon-8gen3",
                  "apple-neural-engine-m1"):
        assert est[hw_id].throughput_per_s > 0 and not est[hw_id].excluded_reason


def test_phone_and_laptop_bandwidths_are_their_buses(catalog):
    # Snapdragon 8 Gen 3: LPDDR5X at 4800 MHz = 9600 MT/s over a 64-bit bus
    assert catalog.get("qualcomm-hexagon-8gen3").mem_bw_bytes_per_s.value == 4800e6 * 2 * 64 / 8
    # M1: 8 x 16-bit LPDDR4X at 4266 MT/s, quoted as 68.25 GB/s
    assert catalog.get("apple-neural-engine-m1").mem_bw_bytes_per_s.value == pytest.approx(128 / 8 * 4266e6, rel=1e-3)


def test_an_entry_without_a_figure_says_which(resnet50_int8):
    _, est = resnet50_int8
    assert est["amd-alveo-u250"].excluded_reason == (
        "The catalog has no sourced int8 throughput figure for AMD Alveo U250, so its step time cannot be predicted.")


def test_the_edge_tpu_streams_what_its_sram_cannot_hold(resnet50_int8, catalog):
    cmp, est = resnet50_int8
    tpu = catalog.get("google-edge-tpu")
    assert tpu.streams_parameters() and not catalog.get("nvidia-jetson-agx-orin-64gb").streams_parameters()
    assert tpu.onchip_memory_bytes.value == 8 * 2**20 and tpu.host_link_bw_bytes_per_s.value == 500e6
    arrays = OpArrays.from_profile(cmp.profile, "int8")
    assert arrays.params == RESNET50_PARAMS
    streamed = streamed_parameter_bytes(arrays, tpu)  # one byte per int8 parameter, less the SRAM
    assert streamed == RESNET50_PARAMS - 8 * 2**20
    # The link alone, at the default 85% of its rate, bounds the step from below.
    assert est["google-edge-tpu"].step_time_s > streamed / (500e6 * 0.85)
    assert any("cross its host link" in a for a in est["google-edge-tpu"].assumptions)


def test_a_model_that_fits_the_sram_streams_nothing(catalog):
    cmp = compare("mobilenet_v2", mode="infer", batch=1, precision="int8", hardware=["google-edge-tpu"],
                  local=False)
    assert cmp.profile.params * 1 < 8 * 2**20  # 3.5 M int8 parameters fit
    assert streamed_parameter_bytes(OpArrays.from_profile(cmp.profile, "int8"), catalog.get("google-edge-tpu")) == 0


class _ResNet50At299(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = resnet50()

    def forward(self, x):
        return self.net(x)

    def example_inputs(self, batch, seq_len):
        return torch.randn(batch, 3, 299, 299)


def test_the_edge_tpu_within_30_percent_of_corals_resnet50():
    # Coral, Edge TPU performance benchmarks: ResNet-50 V1, 299x299, 49 ms per inference over USB 3.0.
    est = compare(_ResNet50At299(), mode="infer", batch=1, precision="int8", framework="tflite",
                  hardware=["google-edge-tpu"], local=False).estimates[0]
    assert est.latency_s == pytest.approx(0.049, rel=0.30)


@pytest.mark.parametrize(("hw_id", "engines", "fps"), [
    ("amd-alveo-u280", 14, 800.1),  # Vitis AI 1.4 model zoo, Performance on U280: cf_resnet50, multi-thread
    ("amd-alveo-u50", 6, 647.1),  # Vitis AI 1.3 model zoo, Performance on U50: cf_resnet50, multi-thread
    ("amd-versal-vc1902", 3, 1381.7),  # Vitis AI 1.4 model zoo, Performance on VCK190: 3 batch handlers
])
def test_dpu_boards_within_30_percent_of_the_vitis_ai_model_zoo(hw_id, engines, fps):
    # The overlay efficiency comes from ResNet-18 on the same board; ResNet-50 checks it.
    est = compare("resnet50", mode="infer", batch=engines, precision="int8", framework="vendor-sdk",
                  hardware=[hw_id], local=False).estimates[0]
    assert est.throughput_per_s == pytest.approx(fps, rel=0.30)
