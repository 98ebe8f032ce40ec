"""Memory per device: weights, gradients, optimizer state, activations, workspace.

Under a plan: weights, gradients and optimizer state are split over tensor x pipeline ranks
(MoE experts over expert-parallel x pipeline ranks) and ZeRO shards them over data-parallel
ranks (data x context-parallel ranks, Plan.shard_group). Activations follow Korthikanti et al. 2022
("Reducing Activation Recomputation in Large Transformer Models"): a pipeline stage holds ceil(L/p)
of the layers and, under 1F1B, min(p, m) micro-batches in flight on the first stage (more when
interleaved); tensor parallelism splits all activations with
sequence parallelism and 24 of every 34 bytes without it; full recomputation keeps only each
layer's input plus one layer's activations being recomputed.
"""

from __future__ import annotations

from ..workload.profile import Profile
from ..workload.workload import BYTES_PER_ELEMENT, Workload
from ..errors import ChipfitError
from .plan import ModelShape, Plan

GIB = 2**30

# Bytes per parameter in mixed-precision training with Adam (Rajbhandari et al. 2020, ZeRO,
# Sec. 3.1): 2 (half weights) + 2 (half gradients) + 12 (fp32 master, momentum, variance).
# In fp32: 4 + 4 + 8. SGD with momentum keeps one state instead of two.
_TRAIN_BYTES = {
    # precision class: (weights, gradients, {optimizer: state})
    "full": (4, 4, {"adamw": 8, "sgd": 4}),
    "mixed": (2, 2, {"adamw": 12, "sgd": 8}),
}

# The caching allocator holds more than the live tensors; PyTorch's reserved-minus-allocated
# gap is typically near 10% of allocated memory in training (torch.cuda.memory_stats docs).
ALLOCATOR_OVERHEAD_FRACTION = 0.10
# Korthikanti et al. 2022, Table 2: per layer 34 s b h bytes of activations (plus the attention
# scores); tensor parallelism without sequence parallelism splits 24 of the 34, the rest are replicated.
_TP_SPLIT_SHARE = 24 / 34
_ACT_BYTES = {"fp32": 4, "tf32": 4}  # bytes per activation element; 2 otherwise (bf16/fp16/fp8 training keeps 16-bit activations)

# CUDA context plus cuBLAS/cuDNN workspaces on an accelerator, before any tensor.
RUNTIME_RESERVE_BYTES = {"accelerator": 0.5 * GIB, "cpu": 0.0}


def activation_element_bytes(precision: str) -> int:
    return _ACT_BYTES.get(precision, 2)


def stage_layers(layers: int, pipeline_parallel: int) -> int:
    """Layers the busiest pipeline stage holds: ceil(L / p) (stages need not be equal; Llama 3 ran 126 layers
    on 16 stages, Dubey et al. 2024, Sec. 3.3.2)."""
    return -(-layers // pipeline_parallel)


def stage_share(plan: Plan, shape: ModelShape | None) -> float:
    """Share of the model's per-micro-batch work and activations on the busiest pipeline stage: ceil(L/p)/L
    (1/p without the model's shape)."""
    p = plan.pipeline_parallel
    return stage_layers(shape.layers, p) / shape.layers if shape is not None and p > 1 else 1 / p


def in_flight_micro_batches(plan: Plan) -> float:
    """Micro-batches whose activations the first stage holds at once: min(p, m) under 1F1B; the interleaved
    schedule with v chunks per rank holds (1 + (p - 1) / (p v)) times that (Korthikanti et al. 2022, Sec. 4.2.3)."""
    p, m, v = plan.pipeline_parallel, plan.micro_batches, plan.virtual_stages
    held = min(p, m)
    return held * (1 + (p - 1) / (p * v)) if v > 1 else held


def _activations(profile: Profile, workload: Workload, plan: Plan, shape: ModelShape | None) -> float:
    """Activation bytes the busiest (first) pipeline stage holds at the peak of a step. Context parallelism
    splits every saved tensor along the sequence."""
    t, p, c = plan.tensor_parallel, plan.pipeline_parallel, plan.context_parallel
    per_mb = float(profile.activation_bytes) * stage_share(plan, shape) / c
    if t > 1:
        per_mb *= 1 / t if plan.sequence_parallel else (1 - _TP_SPLIT_SHARE) + _TP_SPLIT_SHARE / t
    in_flight = in_flight_micro_batches(plan)
    if not plan.activation_checkpointing:
        return per_mb * in_flight
    if shape is None:
        raise ChipfitError("Activation recomputation needs the model's layers, hidden size and sequence length; "
                           "give the model's shape or turn recomputation off.")
    layers_here = stage_layers(shape.layers, p)
    layer_input = profile.batch * shape.seq_len * shape.hidden * activation_element_bytes(workload.precision) / c
    if plan.sequence_parallel:
        layer_input /= t
    return layer_input * layers_here * in_flight + per_mb / layers_here


def memory_per_device(profile: Profile, workload: Workload, plan: Plan, hw_class: str,
                      shape: ModelShape | None = None) -> dict[str, float]:
    """Bytes each device holds at peak, by part; `profile` is traced at the per-device micro-batch.

    `shape` is needed for activation recomputation and for MoE expert sharding.
    """
    dp, t, share = plan.shard_group, plan.tensor_parallel, stage_share(plan, shape)
    experts = shape.expert_params if shape is not None else 0
    params = ((profile.params - experts) / t + experts / plan.expert_parallel) * share
    owned = params / profile.params if profile.params else 0.0
    trainable = owned * profile.trainable_params
    if workload.training:
        kind = "full" if workload.precision in ("fp32", "tf32") else "mixed"
        w_b, g_b, opt = _TRAIN_BYTES[kind]
        # Frozen weights (LoRA's base) at the bytes they are stored in; trained ones as mixed precision keeps them.
        frozen = owned * profile.frozen_param_bytes if profile.frozen_param_bytes else (params - trainable) * w_b
        weights = trainable * w_b + frozen
        grads = trainable * g_b
        optimizer = trainable * opt[workload.optimizer]
        if plan.zero_stage >= 1:
            optimizer /= dp
        if plan.zero_stage >= 2:
            grads /= dp
        if plan.zero_stage >= 3:
            weights /= dp
        activations = _activations(profile, workload, plan, shape)
    else:
        weights = params * BYTES_PER_ELEMENT[workload.precision]
        grads = optimizer = 0.0
        activations = profile.peak_activation_bytes or max((op.bytes for op in profile.ops), default=0)
        activations /= t * plan.pipeline_parallel
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
