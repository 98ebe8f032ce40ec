"""Plan: how a job is laid on hardware."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ChipfitError


@dataclass(frozen=True)
class Plan:
    """Device count and how the work is split over the devices.

    devices = data_parallel x tensor_parallel x pipeline_parallel. zero_stage follows
    DeepSpeed ZeRO (0 none, 1 optimizer state, 2 + gradients, 3 + weights, i.e. FSDP).
    """

    devices: int = 1
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    zero_stage: int = 0
    micro_batches: int = 1
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ChipfitError(f"--devices {self.devices} is not a device count; give 1 or more.")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ChipfitError(f"ZeRO stage {self.zero_stage} does not exist; use 0, 1, 2 or 3.")
        if self.tensor_parallel < 1 or self.pipeline_parallel < 1 or self.micro_batches < 1:
            raise ChipfitError("Tensor, pipeline parallelism and micro-batches must each be 1 or more.")
        if self.devices % (self.tensor_parallel * self.pipeline_parallel):
            raise ChipfitError(
                f"{self.devices} devices cannot be split into tensor {self.tensor_parallel} x pipeline "
                f"{self.pipeline_parallel} groups; make the device count a multiple of their product."
            )

    @property
    def data_parallel(self) -> int:
        return self.devices // (self.tensor_parallel * self.pipeline_parallel)

    def to_dict(self) -> dict:
        return asdict(self) | {"data_parallel": self.data_parallel}
