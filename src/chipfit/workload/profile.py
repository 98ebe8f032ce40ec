"""Profile: what one step of a workload does, operator by operator. Pure data, no torch."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

PHASES = ("forward", "backward", "optimizer")
# Operator kinds: matmul/conv/attention run on matrix units; the rest on vector units.
KINDS = ("matmul", "conv", "attention", "elementwise", "reduction", "norm", "memory", "other")


@dataclass(frozen=True)
class Op:
    """One traced operator call.

    flops: floating-point operations (a multiply-add is 2). bytes_*: tensor bytes the
    kernel reads and writes. counted: False when no formula exists (flops is then 0 and
    the op is listed in Profile.uncounted, never silently zero).
    """

    name: str  # aten op, e.g. "aten.mm.default"
    kind: str
    flops: float
    bytes_read: int
    bytes_written: int
    dtype: str  # "fp32", "bf16", ...
    phase: str
    module: str  # dotted module path, "" at top level
    counted: bool = True
    causal: bool | None = None  # attention only: whether a causal mask was applied
    window: str | None = None  # convolution only: kernel size and stride, conv_window() ("k5s2")
    group: int | None = None  # index into Profile.attention of the scaled_dot_product_attention call it is part of

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


def conv_window(kernel: tuple[int, ...], stride: tuple[int, ...]) -> str:
    """A convolution's kernel size and stride as one tag: (5, 5), (2, 2) -> "k5s2"; (1, 7), (1, 1) -> "k1x7s1".
    Depthwise kernels of one size and stride share a code path and a speed that another size's do not."""
    def dims(xs: tuple[int, ...]) -> str:
        return str(xs[0]) if len(set(xs)) == 1 else "x".join(map(str, xs))
    return f"k{dims(tuple(kernel))}s{dims(tuple(stride))}"


@dataclass(frozen=True)
class AttentionCall:
    """One scaled_dot_product_attention call as the model made it, whatever kernel the trace's device chose.

    q is (batch, heads, q_len, head_dim), k (.., kv_len, head_dim), v (.., kv_len, v_dim); `element_bytes`
    of q/k/v; `mask_bytes` of an explicit attn_mask (0 when none); `saved_inside_bytes`: tensors the
    traced kernel created and saved for backward (the S x S probabilities and dropout mask of the math
    path; the output and logsumexp of a fused kernel); `peak_inside_bytes`: how far the live set rose
    inside the call above its output (the scores the math path materialises)."""

    batch: int
    heads: int
    q_len: int
    kv_len: int
    head_dim: int
    v_dim: int
    element_bytes: int
    causal: bool
    mask_bytes: int = 0
    dropout: bool = False
    saved_inside_bytes: int = 0
    peak_inside_bytes: int = 0


@dataclass
class Profile:
    """The traced step: operators, parameters and the memory that tracing saw."""

    model: str
    mode: str  # "train" or "infer"
    batch: int
    seq_len: int | None
    dtype: str  # dtype the model was traced in
    ops: list[Op]
    params: int
    trainable_params: int
    param_bytes: int
    activation_bytes: int  # tensors saved for backward (0 for inference)
    peak_activation_bytes: int = 0  # largest live set of non-parameter tensors seen in the step
    notes: list[str] = field(default_factory=list)
    backward_peak_bytes: int = 0  # training: largest live set of non-parameter tensors in backward, gradients apart
    attention: list[AttentionCall] = field(default_factory=list)  # scaled_dot_product_attention calls (Op.group)
    dispatches: dict[str, int] = field(default_factory=dict)  # phase -> aten calls the host dispatches, views too
    frozen_param_bytes: int = 0  # bytes of the weights no step trains (LoRA's base), stored as they are

    # --- totals -------------------------------------------------------------------------
    def flops(self, phase: str | None = None) -> float:
        return sum(op.flops for op in self.ops if phase is None or op.phase == phase)

    def bytes(self, phase: str | None = None) -> int:
        return sum(op.bytes for op in self.ops if phase is None or op.phase == phase)

    @property
    def uncounted(self) -> dict[str, int]:
        """Operators with no FLOP formula, with how often each ran."""
        out: dict[str, int] = defaultdict(int)
        for op in self.ops:
            if not op.counted:
                out[op.name] += 1
        return dict(out)

    def by_kind(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for op in self.ops:
            row = out.setdefault(op.kind, {"ops": 0, "flops": 0.0, "bytes": 0})
            row["ops"] += 1
            row["flops"] += op.flops
            row["bytes"] += op.bytes
        return out

    def by_layer(self, depth: int = 2) -> dict[str, dict[str, float]]:
        """FLOPs and bytes per module path cut to `depth` components, in trace order."""
        out: dict[str, dict[str, float]] = {}
        for op in self.ops:
            # Optimizer ops carry their parameter's name; count them with its module.
            path = op.module.rsplit(".", 1)[0] if op.phase == "optimizer" and "." in op.module else op.module
            key = ".".join(path.split(".")[:depth]) if path else "(top)"
            row = out.setdefault(key, {"flops": 0.0, "bytes": 0, "forward_flops": 0.0})
            row["flops"] += op.flops
            row["bytes"] += op.bytes
            if op.phase == "forward":
                row["forward_flops"] += op.flops
        return out

    def to_dict(self, ops: bool = False) -> dict:
        d = {
            "model": self.model,
            "mode": self.mode,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "dtype": self.dtype,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "param_bytes": self.param_bytes,
            "activation_bytes": self.activation_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "flops": {p: self.flops(p) for p in PHASES} | {"total": self.flops()},
            "bytes": {p: self.bytes(p) for p in PHASES} | {"total": self.bytes()},
            "by_kind": self.by_kind(),
            "uncounted": self.uncounted,
            "notes": list(self.notes),
        }
        if ops:
            d["ops"] = [asdict(op) for op in self.ops]
        return d
