"""The host's stream: what the CPU spends issuing a step's kernels, per framework.

An eager framework runs Python, dispatch and a kernel launch for every operator on the host while the device
runs the kernels queued before it; the two overlap (CUDA launches are asynchronous): the device runs each kernel once the host
has issued it and the kernel before has ended (stream_end), so a step takes at least the longer of the two streams (Horace He, "Making Deep Learning Go Brrrr From First Principles", 2022, "overhead"; PyTorch
performance tuning guide, CUDA Graphs). Per aten call in eager PyTorch on CUDA: Python ~1 us, pybind11 ~1 us,
autograd ~1-3 us, the dispatcher ~1-2 us, then for a kernel the backend's setup ~1-5 us and cudaLaunchKernel
~1-3 us: about 5-25 us for an operator that launches a kernel, and the first four for a view or metadata call
(J. Lin, "From PyTorch op to kernel launch", GPU kernel serving lessons, 18, table of layers). chipfit takes the
middle of each: 10 us per kernel, 5 us per view. CUDA Graphs and torch.compile ("reduce-overhead") replay the
whole graph with one launch; XLA runs a compiled program; inference engines (TensorRT, ONNX Runtime) run their
own C++ graph executor. Those pay about a launch per kernel at most, below the device's own stream.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import ChipfitError
from ..workload.profile import PHASES, Profile

HOST_KERNEL_S = 10e-6  # eager PyTorch on CUDA: one aten call that launches a kernel (Python to cudaLaunchKernel)
HOST_VIEW_S = 5e-6  # one aten call that launches nothing (views, metadata): Python, pybind11, autograd, dispatcher
LAUNCH_S = 2e-6  # one more cudaLaunchKernel from C++ (a multi-tensor foreach call's later chunks)

# Frameworks whose host stream is eager (per operator); the others compile or replay their graph.
EAGER_FRAMEWORKS = ("pytorch", "tensorflow", "keras")

# PyTorch's multi_tensor_apply (aten/src/ATen/native/cuda/MultiTensorApply.cuh): one launch handles at most
# depth_to_max_tensors[depth - 1] tensors (110, 64, 48, 36, 30 for 1-5 tensor lists) and
# depth_to_max_blocks (320) blocks of kChunkSize (65536) elements. AdamW's foreach calls have 2-4 lists; 48 is depth 3.
FOREACH_MAX_TENSORS = 48
FOREACH_MAX_ELEMENTS = 320 * 65536
FP32_BYTES = 4


@dataclass(frozen=True)
class OptimizerLaunches:
    """An optimizer step as torch.optim runs it on CUDA by default (foreach=None picks the multi-tensor
    implementation when every tensor is on CUDA: torch.optim docs, "Algorithms", foreach and fused): one
    call per operation for all of a group's tensors, each call a few kernel launches."""

    calls: int  # foreach calls on the host
    launches: float  # kernel launches on the device
    per_op: dict[str, float]  # aten name -> launches per traced (per-tensor) op of that name


def foreach_launches(profile: Profile) -> OptimizerLaunches:
    """The traced per-parameter optimizer ops grouped as foreach calls: one call per aten name, launches by
    multi_tensor_apply's limits on tensors and elements per launch."""
    opt = [op for op in profile.ops if op.phase == "optimizer" and op.bytes]
    count = Counter(op.name for op in opt)
    elements = Counter()
    for op in opt:
        elements[op.name] += op.bytes_written / FP32_BYTES
    per_op, launches = {}, 0.0
    for name, n in count.items():
        k = max(math.ceil(n / FOREACH_MAX_TENSORS), math.ceil(elements[name] / FOREACH_MAX_ELEMENTS), 1)
        per_op[name] = k / n
        launches += k
    return OptimizerLaunches(calls=len(count), launches=launches, per_op=per_op)


def host_seconds(profile: Profile, kernel_phase: np.ndarray, framework: str | None,
                 foreach: OptimizerLaunches | None) -> np.ndarray:
    """Seconds the host spends issuing each kernel of one step (`kernel_phase`: the PHASES index of each kernel
    op, in trace order): eager frameworks pay per aten call (the trace's count of calls, views included, where it
    has one, spread evenly over the phase's kernels; else one per kernel), the optimizer as foreach calls where
    `foreach`; 0 for frameworks that compile or replay their graph (the device's stream then decides)."""
    host = np.zeros(len(kernel_phase))
    if framework is not None and framework not in EAGER_FRAMEWORKS:
        return host
    for i, phase in enumerate(PHASES):
        sel = kernel_phase == i
        n_kernels = int(sel.sum())
        if not n_kernels:
            continue
        if phase == "optimizer" and foreach is not None:
            total = foreach.calls * HOST_KERNEL_S + max(0.0, foreach.launches - foreach.calls) * LAUNCH_S
        else:
            n_views = max(0, profile.dispatches.get(phase, n_kernels) - n_kernels)
            total = n_kernels * HOST_KERNEL_S + n_views * HOST_VIEW_S
        host[sel] = total / n_kernels
    return host


def stream_end(device_s: np.ndarray, host_s: np.ndarray) -> float:
    """When the device finishes the last kernel when the host issues kernel i after host_s[:i + 1] and the device
    runs the kernels in order (one CUDA stream, asynchronous launches: CUDA C++ Programming Guide, "Asynchronous
    concurrent execution"), each starting once issued and once the one before ended:
    end = D_n + max(0, max_i(H_i - D_{i-1})), H and D the running sums of host and device time."""
    if not len(device_s):
        return 0.0
    issued = np.cumsum(host_s)
    done_before = np.cumsum(device_s) - device_s
    return float(device_s.sum() + max(0.0, float(np.max(issued - done_before))))


def describe(host_s: float, device_s: float, total_s: float, framework: str | None) -> str:
    """One line for the assumptions."""
    return (f"host stream ({framework or 'pytorch'} eager): {HOST_KERNEL_S * 1e6:.0f} us per kernel-launching aten "
            f"call, {HOST_VIEW_S * 1e6:.0f} us per view, optimizer as foreach calls; host {host_s * 1e3:.2f} ms, "
            f"device {device_s * 1e3:.2f} ms, the device waits {max(0.0, total_s - device_s) * 1e3:.2f} ms for "
            "the host (asynchronous launches on one stream)")


# --- LLM serving: which engine runs the decode loop -----------------------------------------------------------
# An eager Hugging Face generate() loop issues every operator of every layer from Python for each new token;
# chipfit's trace of its zoo Llama decoder (llama-2-7b, 32 layers) dispatches 1,610 kernels and 4,783 aten calls
# in all: about 50 kernels and 100 views per layer. Serving engines replay a captured CUDA graph per decode step
# and schedule the next step while the device runs this one: vLLM (CUDA graphs unless enforce_eager; docs,
# "Engine arguments"), SGLang (CUDA graphs and its overlap scheduler; docs, "Server arguments"), TensorRT-LLM
# (compiled engine and C++ runtime, CUDA graphs optional): the device's time decides, close to memory-bound.
EAGER_DECODE_FRAMEWORKS = ("pytorch",)
SERVING_ENGINES = {"vllm": "pytorch", "sglang": "pytorch", "tensorrt-llm": "tensorrt"}  # engine -> what it runs on
DECODER_LAYER_KERNELS = 50
DECODER_LAYER_VIEWS = 100


# Decode attention kernels that read the KV cache once per *query* head: TensorRT-LLM's masked multi-head attention
# kernel runs one thread block per query head (docs/source/gpt_attention.md, "Generation phase"), so under GQA or MQA
# every query head of a group reads its group's keys and values again. Its XQA kernel, which reads each KV head once
# for the whole group, arrived in v0.8 (docs/source/blogs/XQA-kernel.md: "will be included in the v0.8 releases";
# Llama-70B, 128 in / 2048 out on one H200: 1,227 -> 2,941 output tokens/s/GPU with it). Engine -> first version
# with a grouped decode kernel; a framework named without a version is taken as a current release.
GROUPED_DECODE_ATTENTION_SINCE = {"tensorrt-llm": (0, 8)}


def engine_version(framework: str) -> tuple[str, tuple[int, ...] | None]:
    """"tensorrt-llm==0.6.1" -> ("tensorrt-llm", (0, 6, 1)); a name without "==version" -> (name, None)."""
    name, _, version = framework.partition("==")
    if not version:
        return name, None
    try:
        return name, tuple(int(p) for p in version.split("."))
    except ValueError:
        raise ChipfitError(f"Framework version {version!r} in {framework!r} is not a release number; "
                           "give it as NAME==MAJOR.MINOR, e.g. tensorrt-llm==0.6.1.") from None


def serving_framework(framework: str | None) -> str:
    """The serving stack chipfit models for `framework` ("vllm" when none is named, an engine optionally with its
    release: "tensorrt-llm==0.6.1"); raises for one it does not."""
    if framework is None:
        return "vllm"
    name, _ = engine_version(framework)
    if framework in EAGER_DECODE_FRAMEWORKS or name in SERVING_ENGINES:
        return framework
    raise ChipfitError(f"LLM serving under {framework!r} is not modelled; give --framework pytorch (an eager "
                       f"Hugging Face decode loop) or a serving engine: {', '.join(SERVING_ENGINES)} "
                       "(optionally with its release, as tensorrt-llm==0.6.1).")


def kv_reads_per_query_head(framework: str) -> bool:
    """Whether `framework`'s decode attention reads each KV head once per query head
    (an engine release before GROUPED_DECODE_ATTENTION_SINCE)."""
    name, version = engine_version(framework)
    since = GROUPED_DECODE_ATTENTION_SINCE.get(name)
    return since is not None and version is not None and version < since


def decode_host_s(layers: int, framework: str) -> float:
    """Host seconds per decode step: an eager decode loop's per-layer aten calls; 0 for a serving engine."""
    if framework not in EAGER_DECODE_FRAMEWORKS:
        return 0.0
    return layers * (DECODER_LAYER_KERNELS * HOST_KERNEL_S + DECODER_LAYER_VIEWS * HOST_VIEW_S)


def describe_serving(framework: str, host_step_s: float) -> str:
    """One line for the assumptions."""
    if framework in EAGER_DECODE_FRAMEWORKS:
        return (f"serving: an eager Hugging Face decode loop (PyTorch): {DECODER_LAYER_KERNELS} kernels and "
                f"{DECODER_LAYER_VIEWS} views per layer from Python each token, {host_step_s * 1e3:.2f} ms of host "
                "time per decode step; a step takes the longer of host and device")
    return (f"serving: {framework} (CUDA graphs, the next step scheduled while the device runs this one): host time "
            "hidden, the device decides; --framework pytorch models an eager Hugging Face decode loop")
