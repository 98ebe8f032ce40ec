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
    kv_dim: int | None = None  # width of the keys (= of the values) per token; default hidden (no GQA)

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "seq_len"):
            if getattr(self, name) < 1:
                raise ChipfitError(f"Model {name} {getattr(self, name)} is not positive; give 1 or more.")

    @property
    def kv_width(self) -> int:
        return self.kv_dim or self.hidden

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
    context_parallel splits each sequence into that many parts (its own ranks, between tensor and pipeline:
    devices = dp x tp x cp x pp). virtual_stages: chunks of layers each pipeline rank holds (Megatron's
    interleaved 1F1B schedule; 1 is plain 1F1B).
    """

    devices: int = 1
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    zero_stage: int = 0
    micro_batches: int = 1
    activation_checkpointing: bool = False
    expert_parallel: int = 1
    sequence_parallel: bool = False
    context_parallel: int = 1
    virtual_stages: int = 1

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ChipfitError(f"--devices {self.devices} is not a device count; give 1 or more.")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ChipfitError(f"ZeRO stage {self.zero_stage} does not exist; use 0, 1, 2 or 3.")
        if min(self.tensor_parallel, self.pipeline_parallel, self.micro_batches, self.expert_parallel,
               self.context_parallel, self.virtual_stages) < 1:
            raise ChipfitError("Tensor, pipeline, expert, context parallelism, virtual stages and micro-batches must "
                               "each be 1 or more.")
        if self.devices % self.model_parallel:
            cp = f" x context {self.context_parallel}" if self.context_parallel > 1 else ""
            raise ChipfitError(
                f"{self.devices} devices cannot be split into tensor {self.tensor_parallel}{cp} x pipeline "
                f"{self.pipeline_parallel} groups; make the device count a multiple of their product."
            )
        if self.data_parallel % self.expert_parallel:
            raise ChipfitError(
                f"Expert parallelism {self.expert_parallel} does not divide the data-parallel degree "
                f"{self.data_parallel}; use an expert-parallel degree that divides it."
            )

    @property
    def model_parallel(self) -> int:
        """Devices that hold one replica: tensor x context x pipeline."""
        return self.tensor_parallel * self.context_parallel * self.pipeline_parallel

    @property
    def data_parallel(self) -> int:
        return self.devices // self.model_parallel

    @property
    def shard_group(self) -> int:
        """Ranks that hold the same weights and reduce their gradients together: data x context parallel
        (context-parallel ranks see other tokens of the same sequences; Megatron and FSDP shard over both)."""
        return self.data_parallel * self.context_parallel

    def check(self, shape: ModelShape) -> None:
        """Raise ChipfitError when the plan cannot split this model (heads, layers, experts)."""
        t, p, e = self.tensor_parallel, self.pipeline_parallel, self.expert_parallel
        if shape.heads % t:
            divs = ", ".join(str(d) for d in shape.divisors_of_heads() if d <= 64)
            raise ChipfitError(
                f"Tensor parallelism {t} does not divide the model's {shape.heads} attention heads; "
                f"use a tensor-parallel degree that divides {shape.heads} ({divs})."
            )
        if p * self.virtual_stages > shape.layers:
            raise ChipfitError(
                f"{p * self.virtual_stages} pipeline stages are more than the model's {shape.layers} layers; "
                f"use at most {shape.layers} stages."
            )
        if shape.seq_len % (2 * self.context_parallel) and self.context_parallel > 1:
            raise ChipfitError(
                f"Context parallelism {self.context_parallel} does not split the sequence of {shape.seq_len} tokens "
                f"into {2 * self.context_parallel} equal chunks; use a degree whose double divides it."
            )
        if e > 1 and (not shape.experts or shape.experts % e):
            have = f"{shape.experts} experts" if shape.experts else "no experts"
            raise ChipfitError(
                f"Expert parallelism {e} does not divide the model's {have}; "
                "use an expert-parallel degree that divides the expert count (1 for a dense model)."
            )

    def describe(self) -> str:
        """Short human label, e.g. 'dp 64 x tp 8 x pp 4, ZeRO stage 1, 16 micro-batches, recompute'."""
        sp = " (SP)" if self.sequence_parallel and self.tensor_parallel > 1 else ""
        cp = f" x cp {self.context_parallel}" if self.context_parallel > 1 else ""
        virtual = f" (interleaved {self.virtual_stages})" if self.virtual_stages > 1 else ""
        parts = [f"dp {self.data_parallel} x tp {self.tensor_parallel}{sp}{cp} x pp {self.pipeline_parallel}{virtual}"]
        if self.expert_parallel > 1:
            parts.append(f"ep {self.expert_parallel}")
        parts.append(f"ZeRO stage {self.zero_stage}")
        parts.append(f"{self.micro_batches} micro-batch{'es' if self.micro_batches > 1 else ''}")
        if self.activation_checkpointing:
            parts.append("recompute")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self) | {"data_parallel": self.data_parallel}
