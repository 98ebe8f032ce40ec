"""What an inference engine does to a traced forward pass before it runs it.

Inference compilers (TensorRT, ONNX Runtime, OpenVINO, TensorFlow Lite, Core ML) rewrite the
graph the same two ways (TensorRT developer guide, "Layer fusion"; ONNX Runtime "Graph
optimizations": Conv+BatchNorm folding, Conv/MatMul+Add+activation fusion):

- a batch norm right after a convolution or linear layer is folded into its weights and bias,
  so it costs nothing at run time;
- elementwise operators that follow a convolution or matmul (bias, activation, residual add)
  run in its epilogue: the intermediate tensor is never written and read back, so a fused
  operator only reads the operands the chain did not produce (the residual of an add).

With int8 or fp8 the engine also stores weights and activations in 8 bits (TensorRT int8
calibration / explicit quantization), half the bytes of the 16-bit trace.
Eager frameworks (PyTorch, TensorFlow, Keras, JAX without jit) run the graph as traced.
"""

from __future__ import annotations

from dataclasses import replace

from .profile import Op, Profile
from .workload import BYTES_PER_ELEMENT

FUSING_FRAMEWORKS = ("tensorrt", "onnxruntime", "openvino", "tflite", "coreml")
_PRODUCERS = ("conv", "matmul")
_EIGHT_BIT = ("int8", "fp8")


def _fused(op: Op, chained: bool) -> Op | None:
    """`op` as the engine runs it (None: folded away); `chained`: it follows a producer's epilogue."""
    if not chained:
        return op
    if op.kind == "norm" and "batch_norm" in op.name:
        return None
    if op.kind == "elementwise":
        # Reads only what the chain did not produce: nothing for an activation, the other
        # operand for a binary op; its output is the producer's output.
        return replace(op, bytes_read=max(0, op.bytes_read - op.bytes_written), bytes_written=0)
    return op


def fuse_for_engine(profile: Profile, precision: str) -> Profile:
    """The forward pass of an inference `profile` as a fusing engine runs it at `precision`."""
    if profile.mode != "infer":
        return profile
    ops: list[Op] = []
    chained = False
    for op in profile.ops:
        fused = _fused(op, chained)
        if op.kind in _PRODUCERS:
            chained = True
        elif op.kind not in ("elementwise", "norm") and op.bytes:  # views and allocations pass through
            chained = False
        elif op.kind == "norm" and fused is op:  # layer norm is not folded: it ends the chain
            chained = False
        if fused is not None:
            ops.append(fused)
    notes = [*profile.notes, "Inference engine: batch norms folded into the preceding conv or linear layer, "
             "activations and residual adds fused into its epilogue."]
    if precision in _EIGHT_BIT and profile.dtype in ("bf16", "fp16"):
        k = BYTES_PER_ELEMENT[precision] / BYTES_PER_ELEMENT[profile.dtype]
        ops = [replace(op, bytes_read=round(op.bytes_read * k), bytes_written=round(op.bytes_written * k)) for op in ops]
        notes.append(f"Weights and activations stored in {precision} (8 bits).")
    return replace(profile, ops=ops, notes=notes)
