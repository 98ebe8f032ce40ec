"""The graph a target runs, not the graph the CPU trace shows: one step from a traced Profile to what each
device executes, its kernels (OpArrays), its saved memory and its host stream. Each rule is named in the
estimate's assumptions (`rules`).

- XLA (TPUs, JAX anywhere): elementwise operators and casts fused into their producers (fusion.fuse_for_compiler).
- Eager PyTorch on a GPU (CUDA, ROCm), the default framework there:
  - fused attention: scaled_dot_product_attention as one flash or memory-efficient kernel (fusion.fuse_attention);
  - TF32 convolutions: torch.backends.cudnn.allow_tf32 is True by default, so fp32 convolutions run on TF32
    tensor cores where the device has them (Ampere and newer), while fp32 matmuls stay fp32
    (torch.backends.cuda.matmul.allow_tf32 is False by default since 1.12; PyTorch docs, "TensorFloat-32 (TF32)
    on Ampere (and later) devices"); a device with no TF32 figure (Volta, Turing) keeps its fp32 rate;
  - foreach optimizer: torch.optim's default multi-tensor kernels on CUDA, a few launches per operation for all
    parameters instead of one per parameter (host.foreach_launches);
  - autocast's weight casts: under AMP every step casts each fp32 weight to 16 bits again (the cast cache lives
    for one autocast region; torch.amp docs), as traced;
  - host stream: the step takes the longer of the host's per-operator dispatch and the device's kernels (host).
- Every other device and framework: each operator its own kernels, as traced.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..catalog.schema import Hardware
from ..workload.profile import PHASES, Profile
from .efficiency import Efficiency
from .fusion import attention_kernel, fuse_attention, fuse_for_compiler, runs_compiled
from .gpu_efficiency import describe_families
from .host import EAGER_FRAMEWORKS, foreach_launches, host_seconds
from .roofline import OpArrays

TORCH_GPU_VENDORS = ("nvidia", "amd")  # PyTorch's CUDA and ROCm builds
TF32_CONV_VENDORS = ("nvidia",)  # cuDNN's allow_tf32; MIOpen on ROCm has no such default


def runs_torch_gpu(hw: Hardware, framework: str | None) -> bool:
    """Whether `hw` runs the step as eager PyTorch on CUDA or ROCm (the default framework there)."""
    return (hw.hw_class == "gpu" and hw.vendor.lower() in TORCH_GPU_VENDORS
            and framework in (None, "pytorch"))


def tf32_convolutions(hw: Hardware, framework: str | None, precision: str | None) -> bool:
    """fp32 convolutions at TF32 (cudnn.allow_tf32, on by default) on a device with a TF32 rate."""
    return (runs_torch_gpu(hw, framework) and hw.vendor.lower() in TF32_CONV_VENDORS
            and precision in (None, "fp32") and bool(hw.peak("tf32")))


def as_run_key(hw: Hardware, framework: str | None, precision: str | None) -> tuple:
    """Devices with equal keys run the same graph: OpArrays built for one serve the others."""
    return (runs_compiled(hw.hw_class, framework), runs_torch_gpu(hw, framework),
            tf32_convolutions(hw, framework, precision), hw.hw_class != "cpu" and framework in EAGER_FRAMEWORKS,
            hw.hw_class == "cpu")


def profile_as_run(profile: Profile, hw: Hardware, framework: str | None) -> Profile:
    """`profile` with the operator and memory rewrites `hw` applies under `framework`: on a GPU under PyTorch,
    fused attention, and training's activations at their peak in backward (saved activations not yet released
    plus the activation gradients in flight, e.g. the logits' gradients in fp32), which is what the caching
    allocator must hold (torch.cuda.max_memory_allocated)."""
    if not runs_torch_gpu(hw, framework):
        return profile
    run = fuse_attention(profile)
    if run.mode == "train" and run.backward_peak_bytes > run.activation_bytes:
        run = replace(run, activation_bytes=run.backward_peak_bytes)
    return run


def arrays_as_run(profile: Profile, hw: Hardware, framework: str | None, precision: str | None,
                  channels_last: bool = False) -> OpArrays:
    """`profile` as `hw` runs it under `framework` (see the module's rules): XLA-fused where XLA compiles it;
    on a GPU under eager PyTorch with fused attention, TF32 convolutions, foreach optimizer launches and the
    host's stream, its convolutions in NCHW (PyTorch's default) unless `channels_last`; each operator its own
    kernels elsewhere."""
    if runs_compiled(hw.hw_class, framework):
        return OpArrays.from_profile(fuse_for_compiler(profile), precision, eager=False)
    run = profile_as_run(profile, hw, framework)
    arrays = OpArrays.from_profile(run, precision)
    if hw.hw_class == "cpu":
        return arrays
    arrays = replace(arrays, fresh=None)  # a device's caching allocator: no page faults (pages_fault_on_allocation)
    torch_gpu = runs_torch_gpu(hw, framework)
    arrays = replace(arrays, torch_gpu=torch_gpu, channels_last=channels_last)
    foreach = foreach_launches(run) if torch_gpu and run.mode == "train" else None
    if foreach is not None:
        opt = arrays.phase == PHASES.index("optimizer")
        launches = np.ones(arrays.n_ops)
        launches[opt] = [foreach.per_op.get(n, 1.0) for n in arrays.names[opt]]
        arrays = replace(arrays, launches=launches)
    if tf32_convolutions(hw, framework, precision):
        precision_ = arrays.precision.copy()
        precision_[(arrays.kind == "conv") & (precision_ == "fp32")] = "tf32"
        arrays = replace(arrays, precision=precision_)
    if torch_gpu or framework in EAGER_FRAMEWORKS:
        kernel = (arrays.bytes > 0) | (arrays.flops > 0)
        host = np.zeros(arrays.n_ops)
        host[kernel] = host_seconds(run, arrays.phase[kernel], framework, foreach)
        arrays = replace(arrays, host=host)
    return arrays


def rules(profile: Profile, hw: Hardware, framework: str | None, precision: str | None, eff: Efficiency,
          channels_last: bool = False) -> list[str]:
    """The as-run rules that applied to `hw`, one line each, for the estimate's assumptions."""
    out = []
    if runs_compiled(hw.hw_class, framework):
        out.append("XLA fuses elementwise operators and casts into the operator producing their input")
    if not runs_torch_gpu(hw, framework):
        return out
    kernels = sorted({attention_kernel(c) for c in profile.attention} - {"math"})
    if kernels:
        out.append(f"fused attention ({', '.join(kernels)}): scaled_dot_product_attention as one kernel, no S x S "
                   "scores written or saved (output and logsumexp saved), backward recomputes them (2.5x the forward "
                   "FLOPs), causal masks skip half the blocks (FlashAttention-2; PyTorch SDPBackend)")
    if tf32_convolutions(hw, framework, precision):
        out.append("TF32 convolutions: cuDNN runs fp32 convolutions at TF32 (torch.backends.cudnn.allow_tf32 "
                   "default); fp32 matmuls stay fp32 (torch.backends.cuda.matmul.allow_tf32 default False)")
    if profile.mode == "train":
        out.append("foreach optimizer: torch.optim's multi-tensor kernels on CUDA (default), a few launches per "
                   "operation for all parameters; AMP casts the fp32 weights to 16 bits every step (autocast); "
                   "activations at their peak in backward (activation gradients in flight)")
    if not eff.curves:
        out.append(describe_families(hw, eff, channels_last))
    return out
