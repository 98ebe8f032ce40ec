"""Plan: how a job is laid on hardware; ModelShape: the model sizes a parallel plan depends on."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ChipfitError


@dataclass(frozen=True)
class ModelShape:
    """Transformer sizes that tensor, pipeline and expert parallelism and recomputation need.

    `seq_len` is the training sequence; `experts`/`top_k`/`expert_params` describe an MoE
    (expert_params: parameters inside the experts, all of them); `moe_layers` defaults to all layers.
    """

    layers: int
    hidden: int
    heads: int
    seq_len: int
    experts: int = 0
    top_k: int = 0
    expert_params: int = 0
    moe_layers: int | None = None

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "seq_len"):
            if getattr(self, name) < 1:
                raise ChipfitError(f"Model {name} {getattr(self, name)} is not positive; give 1 or more.")

    def divisors_of_heads(self) -> list[int]:
        return [d for d in range(1, self.heads + 1) if self.heads % d == 0]


@dataclass(frozen=True)
class Plan:
    """Device count and how the work is split over the devices.

    devices = data_parallel x tensor_parallel x pipeline_parallel. zero_stage follows
    DeepSpeed ZeRO (0 none, 1 optimizer state, 2 + gradients, 3 + weights, i.e. FSDP).
    micro_batches: micro-batches per optimizer step on each data-parallel rank (gradient
    accumulation; the pipeline's micro-batches). expert_parallel splits MoE experts over that
    many data-parallel ranks. sequence_parallel: Megatron's split of norms and dropout along the
    sequence, with all-gather/reduce-scatter in place of the tensor-parallel all-reduces.
    activation_checkpointing: recompute each layer's forward in backward from its saved input.
    """

    devices: int = 1
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    zero_stage: int = 0
    micro_batches: int = 1
    activation_checkpointing: bool = False
    expert_parallel: int = 1
    sequence_parallel: bool = False

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ChipfitError(f"--devices {self.devices} is not a device count; give 1 or more.")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ChipfitError(f"ZeRO stage {self.zero_stage} does not exist; use 0, 1, 2 or 3.")
        if min(self.tensor_parallel, self.pipeline_parallel, self.micro_batches, self.expert_parallel) < 1:
            raise ChipfitError("Tensor, pipeline, expert parallelism and micro-batches must each be 1 or more.")
        if self.devices % (self.tensor_parallel * self.pipeline_parallel):
            raise ChipfitError(
                f"{self.devices} devices cannot be split into tensor {self.tensor_parallel} x pipeline "
                f"{self.pipeline_parallel} groups; make the device count a multiple of their product."
            )
        if self.data_parallel % self.expert_parallel:
            raise ChipfitError(
                f"Expert parallelism {self.expert_parallel} does not divide the data-parallel degree "
                f"{self.data_parallel}; use an expert-parallel degree that divides it."
            )

    @property
    def data_parallel(self) -> int:
        return self.devices // (self.tensor_parallel * self.pipeline_parallel)

    def check(self, shape: ModelShape) -> None:
        """Raise ChipfitError when the plan cannot split this model (heads, layers, experts)."""
        t, p, e = self.tensor_parallel, self.pipeline_parallel, self.expert_parallel
        if shape.heads % t:
            divs = ", ".join(str(d) for d in shape.divisors_of_heads() if d <= 64)
            raise ChipfitError(
                f"Tensor parallelism {t} does not divide the model's {shape.heads} attention heads; "
                f"use a tensor-parallel degree that divides {shape.heads} ({divs})."
            )
        if p > shape.layers:
            raise ChipfitError(
                f"{p} pipeline stages are more than the model's {shape.layers} layers; "
                f"use at most {shape.layers} stages."
            )
        if e > 1 and (not shape.experts or shape.experts % e):
            have = f"{shape.experts} experts" if shape.experts else "no experts"
            raise ChipfitError(
                f"Expert parallelism {e} does not divide the model's {have}; "
                "use an expert-parallel degree that divides the expert count (1 for a dense model)."
            )

    def describe(self) -> str:
        """Short human label, e.g. 'dp 64 x tp 8 x pp 4, ZeRO stage 1, 16 micro-batches, recompute'."""
        parts = [f"dp {self.data_parallel} x tp {self.tensor_parallel}{' (SP)' if self.sequence_parallel and self.tensor_parallel > 1 else ''}"
                 f" x pp {self.pipeline_parallel}"]
        if self.expert_parallel > 1:
            parts.append(f"ep {self.expert_parallel}")
        parts.append(f"ZeRO stage {self.zero_stage}")
        parts.append(f"{self.micro_batches} micro-batch{'es' if self.micro_batches > 1 else ''}")
        if self.activation_checkpointing:
            parts.append("recompute")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self) | {"data_parallel": self.data_parallel}
