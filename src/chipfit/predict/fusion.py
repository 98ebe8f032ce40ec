"""What a graph compiler or inference engine does to a traced step before it runs it.

Eager frameworks (PyTorch, TensorFlow, Keras) run the graph as traced: every operator reads its
inputs from memory and writes its output back. Compilers fuse:

- Inference engines (TensorRT, ONNX Runtime, OpenVINO, TensorFlow Lite, Core ML; TensorRT
  developer guide, "Layer fusion"; ONNX Runtime "Graph optimizations"): a batch norm right
  after a convolution or linear layer is folded into its weights, so it costs nothing at run
  time; elementwise operators that follow a convolution or matmul (bias, activation, residual
  add) run in its epilogue. With int8 or fp8 the engine also stores weights and activations in
  8 bits, half the bytes of the 16-bit trace. Accelerator vendors' SDKs ("vendor-sdk": the Vitis AI
  compiler for FPGA DPU overlays, the Edge TPU compiler, Qualcomm QNN) compile the graph the same
  way (Vitis AI User Guide UG1414, "Vitis AI Compiler": operator fusion of convolution, batch
  norm and activation).
- XLA (every program on a TPU, every JAX program; XLA "operation fusion": loop and output
  fusion): elementwise operators and dtype casts merge into the operator that produces their
  input, in the forward and the backward pass. The optimizer's per-parameter updates are left
  as traced (an upper bound: XLA fuses them too).

A fused operator is no kernel of its own: its work joins its producer's kernel, and its
intermediate tensor is never written and read back, so the kernel only also reads the operands the
chain did not produce (the residual of an add, the saved output a ReLU backward needs). Data
dependencies are taken from the trace order (each operator consumes the one
before it), which holds for the chains these rules fuse.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ..workload.profile import AttentionCall, Op, Profile
from ..workload.workload import BYTES_PER_ELEMENT

FUSING_FRAMEWORKS = ("tensorrt", "onnxruntime", "openvino", "tflite", "coreml", "vendor-sdk")
COMPILING_FRAMEWORKS = ("jax",)
_EIGHT_BIT = ("int8", "fp8")
_CAST = "aten._to_copy"


def runs_compiled(hw_class: str, framework: str | None = None) -> bool:
    """Whether XLA compiles the program: always on a TPU, and for JAX on any device."""
    return hw_class == "tpu" or framework in COMPILING_FRAMEWORKS


def _absorb(producer: Op, op: Op) -> Op:
    """`producer` with `op` run in its epilogue: one kernel, which also reads what the chain did not
    produce (a residual, a saved output) and still writes only the producer's output."""
    return replace(producer, flops=producer.flops + op.flops,
                   bytes_read=producer.bytes_read + max(0, op.bytes_read - op.bytes_written))


def _fuse_chains(profile: Profile, producer: Callable[[Op], bool], fusible: Callable[[Op], bool],
                 fold_batch_norm: bool) -> list[Op]:
    """Merge each `fusible` op that follows a `producer` (or an op already merged into one) into
    that producer's kernel, in the forward and backward passes; views and allocations (no bytes)
    pass through."""
    ops: list[Op] = []
    head: int | None = None  # index in `ops` of the kernel the chain runs in
    phase = None
    for op in profile.ops:
        if op.phase != phase:
            head, phase = None, op.phase
        if op.phase == "optimizer" or (op.kind == "memory" and not op.bytes):
            ops.append(op)
            continue
        if head is not None and fold_batch_norm and op.kind == "norm" and "batch_norm" in op.name:
            continue
        if head is not None and fusible(op):
            ops[head] = _absorb(ops[head], op)
            continue
        ops.append(op)
        head = len(ops) - 1 if producer(op) else None
    return ops


def fuse_for_engine(profile: Profile, precision: str) -> Profile:
    """The forward pass of an inference `profile` as a fusing engine runs it at `precision`."""
    if profile.mode != "infer":
        return profile
    ops = _fuse_chains(profile, producer=lambda op: op.kind in ("conv", "matmul"),
                       fusible=lambda op: op.kind == "elementwise", fold_batch_norm=True)
    notes = [*profile.notes, "Inference engine: batch norms folded into the preceding conv or linear layer, "
             "activations and residual adds fused into its epilogue."]
    if precision in _EIGHT_BIT and profile.dtype in ("bf16", "fp16"):
        k = BYTES_PER_ELEMENT[precision] / BYTES_PER_ELEMENT[profile.dtype]
        ops = [replace(op, bytes_read=round(op.bytes_read * k), bytes_written=round(op.bytes_written * k)) for op in ops]
        notes.append(f"Weights and activations stored in {precision} (8 bits).")
    return replace(profile, ops=ops, notes=notes)


def fuse_into_norms(profile: Profile) -> Profile:
    """`profile` as NVIDIA's MXNet ResNet-50 of its MLPerf training submissions runs it: the ReLU, and
    the residual add and ReLU, after a batch norm run inside the batch norm kernel (BatchNorm with
    act_type='relu' and BatchNormAddRelu in mlcommons/training_results_v1.0, NVIDIA/benchmarks/resnet/
    implementations/mxnet/symbols/resnet-v1b-fl.py, and alike in v4.0's resnet-v1b-mod-fl.py), in the
    forward and the backward pass."""
    ops = _fuse_chains(profile, producer=lambda op: op.kind == "norm", fusible=lambda op: op.kind == "elementwise",
                       fold_batch_norm=False)
    return replace(profile, ops=ops, notes=[*profile.notes, "NGC MXNet: ReLU and residual add fused into the "
                                            "batch norm before them."])


def fuse_for_compiler(profile: Profile) -> Profile:
    """`profile` as XLA runs it: elementwise operators and casts fused into their producers."""
    ops = _fuse_chains(profile, producer=lambda op: True,
                       fusible=lambda op: op.kind == "elementwise" or op.name.startswith(_CAST),
                       fold_batch_norm=False)
    return replace(profile, ops=ops, notes=[*profile.notes, "XLA: elementwise operators and casts fused into "
                                            "the operator that produces their input (optimizer updates as traced)."])


# --- fused attention on GPUs --------------------------------------------------------------------------------
# PyTorch's scaled_dot_product_attention on CUDA and ROCm picks a fused kernel (torch.nn.attention.SDPBackend;
# aten/src/ATen/native/transformers/cuda/sdp_utils.cpp): FlashAttention-2 for fp16/bf16 with head size up to 256
# and no explicit mask, else the memory-efficient kernel (xFormers/CUTLASS; fp32 and explicit masks too); the math
# path (the S x S scores as tensors) only where neither applies. Both fused kernels keep the scores on chip, save
# only the output and the row logsumexp (fp32) for backward, regenerate dropout from the RNG seed, and recompute the
# scores in backward: five S x S products against the forward's two, 2.5x its FLOPs (Dao 2023, FlashAttention-2,
# Sec. 3.1-3.2; Dao et al. 2022, FlashAttention, Alg. 2-4). With is_causal both skip the blocks above the diagonal,
# about half the products (FlashAttention-2 Sec. 3.1, "causal masking").
FLASH_MAX_HEAD_DIM = 256
FLASH_BACKWARD_FLOP_RATIO = 2.5
LOGSUMEXP_BYTES = 4  # per query row and head, fp32


def attention_kernel(call: AttentionCall) -> str:
    """The fused kernel PyTorch picks on a GPU for `call`: "flash", "efficient", or "math" where neither runs."""
    if call.head_dim > FLASH_MAX_HEAD_DIM or call.v_dim > FLASH_MAX_HEAD_DIM:
        return "math"
    return "flash" if call.element_bytes == 2 and not call.mask_bytes else "efficient"


def fused_attention_flops(call: AttentionCall) -> tuple[float, float]:
    """(forward, backward) FLOPs of the fused kernel: QK^T and PV (2*B*H*Sq*Sk*(D + Dv)), halved by causal block
    skipping; the backward 2.5x the forward."""
    forward = 2.0 * call.batch * call.heads * call.q_len * call.kv_len * (call.head_dim + call.v_dim)
    if call.causal:
        forward *= (call.kv_len + 1) / (2 * call.kv_len) if call.q_len == call.kv_len else 0.5
    return forward, FLASH_BACKWARD_FLOP_RATIO * forward


def fused_attention_saved_bytes(call: AttentionCall) -> int:
    """What the fused kernel saves for backward beyond its inputs: its output and the fp32 logsumexp."""
    rows = call.batch * call.heads * call.q_len
    return rows * call.v_dim * call.element_bytes + rows * LOGSUMEXP_BYTES


def _fused_ops(call: AttentionCall, kernel: str, dtype: str, module: str) -> dict[str, Op]:
    rows_q, rows_k = call.batch * call.heads * call.q_len, call.batch * call.heads * call.kv_len
    q, k, v = (rows_q * call.head_dim * call.element_bytes, rows_k * call.head_dim * call.element_bytes,
               rows_k * call.v_dim * call.element_bytes)
    out, lse = rows_q * call.v_dim * call.element_bytes, rows_q * LOGSUMEXP_BYTES
    fwd, bwd = fused_attention_flops(call)
    name = f"aten._scaled_dot_product_{kernel}_attention"
    common = dict(kind="attention", dtype=dtype, module=module, causal=call.causal)
    return {"forward": Op(name=name + ".default", flops=fwd, bytes_read=q + k + v + call.mask_bytes,
                          bytes_written=out + lse, phase="forward", **common),
            "backward": Op(name=name + "_backward.default", flops=bwd,
                           bytes_read=q + k + v + 2 * out + lse + call.mask_bytes, bytes_written=q + k + v,
                           phase="backward", **common)}


def fuse_attention(profile: Profile) -> Profile:
    """`profile` with each scaled_dot_product_attention call as a GPU runs it (attention_kernel): its traced
    operators, whichever path the trace's device took, replaced by one fused kernel forward and one backward,
    and its saved and transient S x S tensors by the kernel's output and logsumexp."""
    kernels = [attention_kernel(call) for call in profile.attention]
    if all(k == "math" for k in kernels):
        return profile
    ops: list[Op] = []
    emitted: set[tuple[int, str]] = set()
    for op in profile.ops:
        g = op.group
        if g is None or kernels[g] == "math":
            ops.append(op)
            continue
        if (g, op.phase) not in emitted:
            emitted.add((g, op.phase))
            call = profile.attention[g]
            dtype = profile.dtype if call.element_bytes == 2 and profile.dtype in ("bf16", "fp16") else \
                {2: "bf16", 4: "fp32"}.get(call.element_bytes, op.dtype)
            ops.append(_fused_ops(call, kernels[g], dtype, op.module)[op.phase])
    fused = [c for c, k in zip(profile.attention, kernels) if k != "math"]
    saved_change = sum(fused_attention_saved_bytes(c) - c.saved_inside_bytes for c in fused)
    saved = profile.activation_bytes + (saved_change if profile.mode == "train" else 0)
    backward_peak = max(0, profile.backward_peak_bytes + saved_change) if profile.backward_peak_bytes else 0
    peak = profile.peak_activation_bytes - max((c.peak_inside_bytes for c in fused), default=0)
    dispatches = dict(profile.dispatches)
    for phase in dispatches:  # the traced calls replaced, one fused call each instead
        removed = sum(1 for op in profile.ops if op.phase == phase and op.group is not None and kernels[op.group] != "math")
        dispatches[phase] = max(0, dispatches[phase] - removed + len(fused))
    return replace(profile, ops=ops, activation_bytes=max(0, saved), peak_activation_bytes=max(0, peak),
                   backward_peak_bytes=backward_peak, dispatches=dispatches)
