"""Workload: a model and a job (train or infer, data size, batch, sequence, precision)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ChipfitError

PRECISION_CHOICES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")
OPTIMIZERS = ("adamw", "sgd")
# Bytes one tensor element takes at each precision (tf32 is stored as fp32; int4 packs two per byte).
BYTES_PER_ELEMENT = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


@dataclass(frozen=True)
class Workload:
    """What the user wants done. `batch` is the global batch (samples or sequences per step).

    Training size is given as `samples` x `epochs`, or as `tokens` for sequence models;
    inference as a number of requests (`samples`, default one batch).
    """

    model: str
    mode: str = "train"  # "train" or "infer"
    batch: int = 1
    seq_len: int | None = None  # sequence models only
    samples: float | None = None
    epochs: float = 1.0
    tokens: float | None = None
    precision: str = "fp32"
    optimizer: str = "adamw"
    prompt_tokens: int | None = None  # LLM serving: tokens per request in, and generated out
    generate_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("train", "infer"):
            raise ChipfitError(f"Mode {self.mode!r} is not known; use 'train' or 'infer'.")
        if self.batch is None or self.batch < 1:
            raise ChipfitError(f"Batch {self.batch} is not a positive number of samples; give --batch 1 or more.")
        if self.seq_len is not None and self.seq_len < 1:
            raise ChipfitError(f"Sequence length {self.seq_len} is not positive; give --seq 1 or more.")
        for name in ("samples", "tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ChipfitError(f"--{name} {value:g} leaves nothing to do; give a positive number of {name}.")
        for name in ("prompt_tokens", "generate_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                flag = "--prompt" if name == "prompt_tokens" else "--generate"
                raise ChipfitError(f"{flag} {value} is not a positive number of tokens; give 1 or more.")
        if self.epochs <= 0:
            raise ChipfitError(f"--epochs {self.epochs:g} leaves nothing to do; give a positive number of epochs.")
        if self.precision not in PRECISION_CHOICES:
            raise ChipfitError(
                f"Precision {self.precision!r} is not known; use one of {', '.join(PRECISION_CHOICES)}."
            )
        if self.optimizer not in OPTIMIZERS:
            raise ChipfitError(f"Optimizer {self.optimizer!r} is not known; use one of {', '.join(OPTIMIZERS)}.")

    @property
    def training(self) -> bool:
        return self.mode == "train"

    @property
    def tokens_per_sample(self) -> int:
        return self.seq_len or 1

    def total_samples(self) -> float:
        """Samples the whole job processes (tokens are turned into sequences of seq_len)."""
        if self.tokens is not None:
            return self.tokens / self.tokens_per_sample
        if self.samples is not None:
            return self.samples * self.epochs
        return float(self.batch)

    def steps(self) -> float:
        """Optimizer steps (training) or batches (inference) the job takes."""
        return self.total_samples() / self.batch

    def to_dict(self) -> dict:
        return asdict(self)
