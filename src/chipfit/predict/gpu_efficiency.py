"""How close each operator family comes to a GPU's peaks in eager PyTorch, from the operator's size and the
device's own figures (peak, bandwidth), in the spirit of NeuSight (Lee et al., ASPLOS 2025: per family,
utilisation from the kernel's tiles against the GPU's figures, bounded by the roofline). Applied to every GPU of
the catalog with published defaults; a calibration's fits replace them for the families it measured.

- Matrix products (matmul, fused attention): a tile's loads are hidden behind its math only when the product
  does many FLOPs per byte against the device's machine balance (peak / bandwidth, FLOP per byte): efficiency
  e_max * I / (I + balance), I the operator's FLOPs per byte. A large, deep product (I >> balance) reaches the
  device's best matmul; a thin one (short K or N, I near the balance) about half of it.
- Fused attention (FlashAttention-2, PyTorch's flash backend, or the memory-efficient kernel): 35% of the dense
  peak, forward and backward. FlashAttention-2 reaches 50-73% of A100's peak (Dao 2023, abstract) but "only 35%
  utilization on the H100 GPU" (Shah et al. 2024, FlashAttention-3, abstract), lacking Hopper's wgmma and TMA;
  chipfit takes the newer generations' figure, which understates A100 and older.
- Convolutions in channels-last (NHWC) memory format are implicit GEMMs on tensor cores without layout
  conversions (NVIDIA Deep Learning Performance guide, "Convolutional layers": NHWC is the tensor cores' native
  layout): priced as matrix products. PyTorch's channels-last batch norm reduces over a 2-D grid
  (batch_norm_collect_statistics_channels_last_kernel), not one block per channel.
- Convolutions through cuDNN in eager PyTorch (NCHW, its default memory format): a fifth of the tensor-core peak at best. Implicit-GEMM
  kernels behind NCHW-to-NHWC transposes and heuristic algorithm choice (cudnn.benchmark off by default);
  NVIDIA's tuned channels-last ResNet-50 reaches about a quarter of A100's peak (DeepLearningExamples, ResNet-50
  v1.5 for PyTorch, ~2,600 img/s at 24.6 GFLOP/img against 312 TFLOP/s); eager NCHW on one H200 measured
  124-243 TFLOP/s (13-25% of 989) for ResNet-50's convolutions (../shared/gpu, runs 2-3). In 16 bits the layout
  conversions read and write the input and output once more (NVIDIA Deep Learning Performance guide,
  "Convolutional layers: tensor layouts").
- Depthwise and other low-intensity convolutions: cuDNN's grouped kernels stream at about a tenth of the memory
  bandwidth (PyTorch issue 18631, "depthwise convolution is slow on cuDNN"; H200: 505-530 GB/s of 4,800 for
  MobileNetV2's depthwise layers, run 9).
- Batch norm in training on bf16 inputs (autocast): PyTorch leaves cuDNN for fp32 and fp16 inputs only
  (Normalization.cpp, _select_batch_norm_backend); its own NCHW forward computes the batch statistics with one
  thread block per channel (Normalization.cuh: batch_norm_collect_statistics_kernel, blocks(input.size(1)),
  Welford's running mean and variance per element), then normalises on a full grid. The statistics pass
  streams at a few percent of the bandwidth: 3% (H200: ResNet-50's and MobileNetV2's training batch norms ran
  at 218-330 GB/s over their traced bytes, runs 2 and 9, with the normalising pass at the default efficiency).
"""

from __future__ import annotations

import numpy as np

from ..catalog.schema import Hardware
from .efficiency import MATMUL_EFFICIENCY, MEMORY_EFFICIENCY, Efficiency

ATTENTION_GPU_EFFICIENCY = 0.35  # share of the dense peak, fused attention kernels
CONV_GPU_EFFICIENCY = 0.20  # share of the tensor-core (or TF32) peak, eager NCHW cuDNN convolutions
LOW_INTENSITY_CONV_MEMORY_EFFICIENCY = 0.10  # share of bandwidth, depthwise/grouped cuDNN kernels
BATCH_NORM_STATISTICS_MEMORY_EFFICIENCY = 0.03  # share of bandwidth, bf16 NCHW batch statistics pass
NCHW_CONVERSION_PASSES = 2.0  # extra reads+writes of a 16-bit convolution's input and output (NCHW <-> NHWC)


def machine_balance(peak_flops: float, bw_bytes_per_s: float) -> float:
    """FLOPs per byte at which a kernel's math and its memory traffic take equal time."""
    return peak_flops / bw_bytes_per_s


def matrix_efficiency(e_max: float, flops: np.ndarray, nbytes: np.ndarray, balance: np.ndarray) -> np.ndarray:
    """e_max * I / (I + balance), I = flops / bytes: tile utilisation of a matrix product on a GPU."""
    intensity = np.divide(flops, nbytes, out=np.full(len(flops), np.inf), where=nbytes > 0)
    return np.where(np.isinf(intensity), e_max, e_max * intensity / (intensity + balance))


def family_factors(family: np.ndarray, kind: np.ndarray, precision: np.ndarray, flops: np.ndarray,
                   nbytes: np.ndarray, peak: np.ndarray, bw: float, e_matmul: float, e_memory: float,
                   channels_last: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per operator on a GPU: (compute efficiency, memory efficiency, second-pass memory efficiency, extra bytes);
    NaN where the caller's default stands (vector ops' compute, most ops' memory). `e_matmul` and `e_memory` are the efficiencies in
    force (published defaults or a bound's); the family figures scale with them. Extra bytes: layout conversions."""
    n = len(flops)
    compute = np.full(n, np.nan)
    memory = np.full(n, np.nan)
    second = np.full(n, np.nan)
    extra = np.zeros(n)
    scale_c, scale_m = e_matmul / MATMUL_EFFICIENCY, e_memory / MEMORY_EFFICIENCY
    fam = family.astype(str)
    conv = kind == "conv"
    products = (kind == "matmul") | (conv if channels_last else False)
    balance = peak / bw
    compute[products] = matrix_efficiency(e_matmul, flops[products], nbytes[products], balance[products])
    compute[kind == "attention"] = min(1.0, ATTENTION_GPU_EFFICIENCY * scale_c)
    if not channels_last:
        compute[conv] = min(1.0, CONV_GPU_EFFICIENCY * scale_c)
    low = np.char.find(fam, "/low_intensity") >= 0
    memory[low] = min(1.0, LOW_INTENSITY_CONV_MEMORY_EFFICIENCY * scale_m)
    if channels_last:
        return compute, memory, second, extra
    sixteen = np.isin(precision, ("bf16", "fp16"))
    extra[conv & sixteen] = NCHW_CONVERSION_PASSES * nbytes[conv & sixteen]
    statistics = (fam == "norm/batch/forward/train") & (precision == "bf16")
    second[statistics] = min(1.0, BATCH_NORM_STATISTICS_MEMORY_EFFICIENCY * scale_m)
    return compute, memory, second, extra


def describe_families(hw: Hardware, eff: Efficiency, channels_last: bool) -> str:
    """One line for the assumptions: the family efficiencies in force on `hw`."""
    peak, bw = hw.peak("bf16") or hw.peak("fp16"), hw.mem_bw_bytes_per_s.value if hw.mem_bw_bytes_per_s else None
    balance = f"{machine_balance(peak, bw):.0f} FLOP/B" if peak and bw else "peak / bandwidth"
    conv = ("convolutions in channels-last as matmuls" if channels_last else
            f"NCHW convolutions {CONV_GPU_EFFICIENCY:.0%} of peak plus 16-bit layout conversions, bf16 training "
            f"batch-norm statistics at {BATCH_NORM_STATISTICS_MEMORY_EFFICIENCY:.0%} of bandwidth")
    return (f"GPU operator families (eager PyTorch): matmul {eff.matmul:.0%} x I / (I + {balance}) by intensity I, "
            f"fused attention {ATTENTION_GPU_EFFICIENCY:.0%} of peak, {conv}, depthwise convolutions "
            f"{LOW_INTENSITY_CONV_MEMORY_EFFICIENCY:.0%} of bandwidth (NeuSight-style; FlashAttention-3; cuDNN)")
