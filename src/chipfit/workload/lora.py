"""LoRA and QLoRA fine-tuning of an analytic transformer: which matrices carry adapters and how the frozen
base weights are stored. workload.llm.profile_spec prices the step; this module holds the choices and checks.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", Sec. 4.1): a frozen weight W of
d_in x d_out gains a trained product A B (A: d_in x r, B: r x d_out), so each adapted matrix adds
r (d_in + d_out) parameters. The default targets are the attention projections q, k, v and o, as MLPerf's
Llama 2 70B LoRA reference (mlcommons/training llama2_70b_lora: `--lora_target_modules "qkv_proj,o_proj"`,
rank 16) and NeMo's `target_modules: ['attention']` adapt them; PEFT's `all-linear` adapts every matrix of the
layers (attention, cross-attention, MLP and each expert; here never an MoE router, nor the output head).

QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", Sec. 3): the frozen layer
matrices are stored as 4-bit NormalFloat with double-quantised block constants, 4 + 0.127 bits per parameter,
and dequantised to the compute dtype for each GEMM, forward and backward; the embedding and the output head
stay in 16 bits (bitsandbytes leaves the head unquantised). int8 and fp8 storage likewise, 1 byte per weight.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ChipfitError, closest
from ..limits import MAX_DIM

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = "all-linear"
# Bytes per frozen weight for each storage a base may be quantised to (QLoRA Sec. 3: NF4 with double
# quantisation costs 0.127 bits of constants per parameter on top of its 4 bits).
BASE_BYTES = {"fp8": 1.0, "int8": 1.0, "nf4": (4 + 0.127) / 8}


@dataclass(frozen=True)
class LoRA:
    """Rank-`rank` adapters on the matrices named in `targets` (or ALL_LINEAR) of every layer, the rest frozen.

    `base`: how the frozen layer matrices are stored, one of BASE_BYTES (fp8, int8, nf4 for QLoRA); None keeps
    them at the precision their GEMMs run at (bf16 in bf16 training, fp8 in fp8 training as Transformer
    Engine's fp8 weights, 4 bytes in fp32).
    """

    rank: int
    targets: tuple[str, ...] = DEFAULT_TARGETS
    base: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 1 <= self.rank <= MAX_DIM:
            raise ChipfitError(f"LoRA rank {self.rank!r} is not a whole number of 1 or more; "
                               "give the adapters' rank, e.g. --lora 16.")
        if self.base is not None and self.base not in BASE_BYTES:
            raise ChipfitError(f"LoRA base storage {self.base!r} is not known.{closest(str(self.base), BASE_BYTES)} "
                               f"Use one of: {', '.join(BASE_BYTES)}, or leave it out to keep the compute precision.")
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ChipfitError("LoRA targets are empty; name matrices such as q_proj,v_proj, or all-linear.")

    def adapts(self, name: str) -> bool:
        """Whether the layer matrix `name` carries an adapter (an MoE router never does)."""
        return name in self.targets or (ALL_LINEAR in self.targets and name != "router")

    def check(self, spec) -> None:
        """Refuse targets `spec` (a workload.llm.TransformerSpec) has no matrix for, and a rank at or above the
        narrower side of an adapted matrix (the product would be no longer low-rank)."""
        matrices = {n: (i, o) for n, i, o in (*spec.attention_matrices(), *spec.mlp_matrices(spec.dense_width),
                                              *(spec.expert_matrices() if spec.moe else ()),
                                              *(spec.cross_matrices() if spec.encoder_decoder else ()))}
        unknown = [t for t in self.targets if t != ALL_LINEAR and t not in matrices]
        if unknown:
            raise ChipfitError(f"LoRA target {unknown[0]!r} is not a matrix of {spec.name!r}."
                               f"{closest(unknown[0], matrices)} Its matrices: {', '.join(matrices)}, or all-linear.")
        adapted = {n: min(shape) for n, shape in matrices.items() if self.adapts(n)}
        name = min(adapted, key=adapted.get)
        if self.rank >= adapted[name]:
            raise ChipfitError(f"LoRA rank {self.rank} is not below the {adapted[name]} columns of {name} in "
                               f"{spec.name!r}; give a lower rank, e.g. --lora 16.")

    def base_bytes(self, precision: str) -> float:
        """Bytes per frozen layer weight when the GEMMs run at `precision`."""
        from .workload import BYTES_PER_ELEMENT

        return BASE_BYTES[self.base] if self.base else BYTES_PER_ELEMENT[precision]

    def dequantised(self, precision: str) -> bool:
        """Whether the frozen weights are stored otherwise than the GEMMs at `precision` take them, so each
        GEMM first dequantises its weights."""
        return self.base is not None and self.base != precision

    def describe(self) -> str:
        targets = "every layer matrix" if ALL_LINEAR in self.targets else ", ".join(self.targets)
        base = f", base stored in {self.base}" if self.base else ""
        return f"LoRA rank {self.rank} on {targets}{base}"


def parse_targets(text: str | None) -> tuple[str, ...]:
    """'q_proj,v_proj' or 'all-linear' -> a targets tuple; None or '' -> DEFAULT_TARGETS."""
    if not text:
        return DEFAULT_TARGETS
    return tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip())) or DEFAULT_TARGETS
