"""ResNet-50 int8 inference on every FPGA and edge entry: chipfit's prediction beside the vendor's figure.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_fpga_edge.py | tee benchmarks/results/fpga_edge.txt

Each published figure names its source and date and is only compared against, never fed into a
prediction: the FPGA overlay efficiency (chipfit.predict.efficiency.CLASS_MATMUL_EFFICIENCY) comes
from the vendors' ResNet-18 figures. Each entry is predicted under the framework the vendor measured with,
at its batch (the images its overlay or engine holds in flight) and its input resolution; an entry without
a published figure at batch 1, 224x224, under the first inference engine or vendor compiler its catalog
entry lists (how these devices are deployed). An entry chipfit cannot predict says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chipfit import compare
from chipfit.catalog import load_catalog
from chipfit.predict.fusion import FUSING_FRAMEWORKS
from chipfit.workload.zoo_vision import resnet50

WITHIN = 0.30  # the target: a prediction within 30% of the vendor's figure

VAI13 = ("Vitis AI 1.3 model zoo README (git tag v1.3), "
         "https://github.com/Xilinx/Vitis-AI/blob/v1.3/models/AI-Model-Zoo/README.md")
VAI14 = ("Vitis AI 1.4 model zoo README (git tag v1.4, 2021-07-26), "
         "https://github.com/Xilinx/Vitis-AI/blob/v1.4/models/AI-Model-Zoo/README.md")


@dataclass(frozen=True)
class Published:
    """One vendor figure: images per second of ResNet-50 int8 at `batch` images in flight."""

    fps: float
    batch: int
    framework: str
    what: str
    source: str
    resolution: int = 224


PUBLISHED = {
    "amd-alveo-u280": Published(800.1, 14, "vendor-sdk", "cf_resnet50 (7.7 GOP), multi-thread, 14 DPUCAHX8H "
                                "engines at 300 MHz", f"{VAI14}, Performance on U280"),
    "amd-alveo-u50": Published(647.1, 6, "vendor-sdk", "cf_resnet50 (7.7 GOP), multi-thread, 6 DPUCAHX8H (DPUv3E) "
                               "engines at 300 MHz", f"{VAI13}, Performance on U50"),
    "amd-alveo-u250": Published(2134.8, 16, "vendor-sdk", "cf_resnet50, multi-thread, 4 DPUCADF8H kernels of batch 4",
                                f"{VAI14}, Performance on U250"),
    "amd-versal-vc1902": Published(1381.7, 3, "vendor-sdk", "cf_resnet50, multi-thread, DPUCVDX8G with 3 batch "
                                   "handlers", f"{VAI14}, Performance on VCK190"),
    "google-edge-tpu": Published(1 / 0.049, 1, "tflite", "ResNet-50 V1 at 299x299 (chipfit traces it at 299x299), "
                                 "49 ms per inference over USB 3.0",
                                 "Coral, Edge TPU performance benchmarks, Table 1, "
                                 "https://coral.ai/docs/edgetpu/benchmarks/ (read 2026-12)", resolution=299),
    "nvidia-jetson-agx-orin-64gb": Published(
        1e9 / 640258, 1, "tensorrt", "ResNet-50 v1.5, SingleStream, 90th-percentile latency 640,258 ns, TensorRT 8.5.2",
        "MLPerf Inference v3.1 (2023-09-11), closed division, NVIDIA, Jetson AGX Orin Developer Kit 64G, "
        "https://github.com/mlcommons/inference_results_v3.1/blob/main/closed/NVIDIA/results/Orin_TRT/resnet50/"
        "SingleStream/performance/run_1/mlperf_log_summary.txt"),
}


class ResNet50At(torch.nn.Module):
    """The zoo's ResNet-50 fed `size` x `size` images (a vendor's figure at another resolution than 224)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.net, self.size = resnet50(), size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def example_inputs(self, batch: int, seq_len: int | None) -> torch.Tensor:
        return torch.randn(batch, 3, self.size, self.size)


def predicted_fps(hw_id: str, batch: int, framework: str, resolution: int) -> tuple[float | None, str]:
    """chipfit's images/s for ResNet-50 int8 inference at `batch` and `resolution`, or None and the reason."""
    model = "resnet50" if resolution == 224 else ResNet50At(resolution)
    cmp = compare(model, mode="infer", batch=batch, precision="int8", framework=framework, hardware=[hw_id],
                  local=False)
    est = cmp.estimates[0]
    return (est.throughput_per_s, "") if not est.excluded_reason else (None, est.excluded_reason)


def main() -> None:
    catalog = load_catalog()
    print("ResNet-50 int8 inference, images/s: chipfit's prediction vs the vendor's published figure")
    print(f"{'entry':30} {'framework':>11} {'batch':>5} {'input':>5} {'predicted':>10} {'published':>10} {'error':>7}")
    notes, summary = [], []
    for cls in ("fpga", "edge"):
        entries = catalog.select(hw_class=cls)
        predicted = checked = within = 0
        for hw in entries:
            pub = PUBLISHED.get(hw.id)
            batch, resolution = (pub.batch, pub.resolution) if pub else (1, 224)
            engine = next((f for f in hw.frameworks if f in FUSING_FRAMEWORKS), hw.frameworks[0])
            framework = pub.framework if pub else engine
            fps, why = predicted_fps(hw.id, batch, framework, resolution)
            err = fps / pub.fps - 1 if fps and pub else None
            predicted += fps is not None
            checked += err is not None
            within += err is not None and abs(err) <= WITHIN
            got = f"{fps:10.1f}" if fps else f"{'-':>10}"
            ref = f"{pub.fps:10.1f}" if pub else f"{'-':>10}"
            shown = f"{err:+7.1%}" if err is not None else f"{'-':>7}"
            print(f"{hw.id:30} {framework:>11} {batch:5d} {resolution:5d} {got} {ref} {shown}")
            if why:
                notes.append(f"  {hw.id}: not predicted: {why}")
            if pub:
                notes.append(f"  {hw.id}: published {pub.what}; {pub.source}")
        summary.append(f"  {cls}: {predicted} of {len(entries)} entries predict; {within} of {checked} with a "
                       f"published figure within {WITHIN:.0%} of it")
    print("\n".join(["", "Summary:", *summary, "", "Notes:", *notes]))


if __name__ == "__main__":
    main()
