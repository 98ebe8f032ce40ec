"""What a graph compiler or inference engine does to a traced step before it runs it.

Eager frameworks (PyTorch, TensorFlow, Keras) run the graph as traced: every operator reads its
inputs from memory and writes its output back. Compilers fuse:

- Inference engines (TensorRT, ONNX Runtime, OpenVINO, TensorFlow Lite, Core ML; TensorRT
  developer guide, "Layer fusion"; ONNX Runtime "Graph optimizations"): a batch norm right
  after a convolution or linear layer is folded into its weights, so it costs nothing at run
  time; elementwise operators that follow a convolution or matmul (bias, activation, residual
  add) run in its epilogue. With int8 or fp8 the engine also stores weights and activations in
  8 bits, half the bytes of the 16-bit trace.
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

from ..workload.profile import Op, Profile
from ..workload.workload import BYTES_PER_ELEMENT

FUSING_FRAMEWORKS = ("tensorrt", "onnxruntime", "openvino", "tflite", "coreml")
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
