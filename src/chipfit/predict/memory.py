"""Memory per device: weights, gradients, optimizer state, activations, workspace."""

from __future__ import annotations

from ..workload.profile import Profile
from ..workload.workload import Workload
from .plan import Plan

GIB = 2**30

# Bytes per parameter in mixed-precision training with Adam (Rajbhandari et al. 2020, ZeRO,
# Sec. 3.1): 2 (half weights) + 2 (half gradients) + 12 (fp32 master, momentum, variance).
# In fp32: 4 + 4 + 8. SGD with momentum keeps one state instead of two.
_TRAIN_BYTES = {
    # precision class: (weights, gradients, {optimizer: state})
    "full": (4, 4, {"adamw": 8, "sgd": 4}),
    "mixed": (2, 2, {"adamw": 12, "sgd": 8}),
}
_INFER_WEIGHT_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}

# The caching allocator holds more than the live tensors; PyTorch's reserved-minus-allocated
# gap is typically near 10% of allocated memory in training (torch.cuda.memory_stats docs).
ALLOCATOR_OVERHEAD_FRACTION = 0.10
# CUDA context plus cuBLAS/cuDNN workspaces on an accelerator, before any tensor.
RUNTIME_RESERVE_BYTES = {"accelerator": 0.5 * GIB, "cpu": 0.0}


def memory_per_device(profile: Profile, workload: Workload, plan: Plan, hw_class: str) -> dict[str, float]:
    """Bytes each device holds at peak, by part; `profile` is traced at the per-device batch."""
    dp = plan.data_parallel
    shard = plan.tensor_parallel * plan.pipeline_parallel
    params = profile.params / shard
    trainable = profile.trainable_params / shard
    if workload.training:
        kind = "full" if workload.precision in ("fp32", "tf32") else "mixed"
        w_b, g_b, opt = _TRAIN_BYTES[kind]
        weights = params * w_b
        grads = trainable * g_b
        optimizer = trainable * opt[workload.optimizer]
        if plan.zero_stage >= 1:
            optimizer /= dp
        if plan.zero_stage >= 2:
            grads /= dp
        if plan.zero_stage >= 3:
            weights /= dp
        activations = profile.activation_bytes
    else:
        weights = params * _INFER_WEIGHT_BYTES[workload.precision]
        grads = optimizer = 0.0
        activations = profile.peak_activation_bytes or max((op.bytes for op in profile.ops), default=0)
    tensors = weights + grads + optimizer + activations
    reserve = RUNTIME_RESERVE_BYTES["cpu" if hw_class == "cpu" else "accelerator"]
    parts = {
        "weights": weights,
        "gradients": grads,
        "optimizer": optimizer,
        "activations": float(activations),
        "workspace": tensors * ALLOCATOR_OVERHEAD_FRACTION + reserve,
    }
    parts["total"] = sum(parts.values())
    return parts
