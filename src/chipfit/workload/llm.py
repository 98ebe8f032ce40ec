"""Transformers given by their sizes, profiled analytically into the tracer's Profile (no torch).

A decoder-only transformer is described by a `TransformerSpec` (layers, hidden, heads, KV
heads, MLP width, vocabulary, optional mixture of experts). `profile_spec` writes one Op per
layer and operator family with the tracer's conventions (chipfit.workload.formulas), so
predict and compare take it unchanged:

- a multiply-add is 2 FLOPs; a matrix of `in x out` weights costs 2*rows*in*out (+rows*out
  for its bias); the LM head runs at every position (as the zoo models do);
- attention counts QK^T and PV as full S x S products, 4*B*S*S*heads*head_dim, flagged
  causal; GQA changes only the K/V projections, not this count;
- backward is 2x the forward for matmuls, attention, norms and elementwise ops;
- pointwise ops 1 FLOP per output element; RMSNorm 4 per element, LayerNorm 7;
  log-softmax 5 per logit (backward 4), NLL 1 per token;
- optimizer steps as torch's non-foreach kernels: AdamW 8 FLOPs and 80 bytes per parameter,
  SGD with momentum 3 FLOPs and 32 bytes (steady state: no state allocation counted).

Bytes: each op reads its inputs and weights once and writes its outputs once (a fused
kernel per family). Activations are in the compute dtype (2 bytes in bf16/fp16/fp8/int8,
4 in fp32/tf32); training keeps fp32 weights and, in 16-bit precisions, casts the matmul
weights to 16 bits in forward and their gradients back in backward (AMP), as traced.

Saved activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in
Large Transformer Models", Sec. 4.1), generalised to GQA and gated MLPs, without dropout
(see `activation_bytes_per_layer`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import ChipfitError, closest
from ..limits import MAX_DIM, MAX_LAYERS, check_whole
from .lora import LoRA
from .profile import Op, Profile
from .workload import Workload

NORMS = ("rms", "layer")
# Element bytes of activations and of the dtype the tracer records, per precision
# (fp8/int8 are traced as bf16; the predictor maps their matmuls to fp8/int8 peaks).
ACTIVATION_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 2, "int8": 2}
COMPUTE_DTYPE = {"fp32": "fp32", "tf32": "fp32", "bf16": "bf16", "fp16": "fp16", "fp8": "bf16", "int8": "bf16"}
MASTER_WEIGHT_BYTES = 4  # training keeps fp32 weights (AMP master copy), as the tracer does
TOKEN_ID_BYTES = 8  # int64 token ids
LOGSUMEXP_BYTES = 4  # flash attention saves one fp32 log-sum-exp per row and head
FP32_BYTES = 4  # the loss and the router softmax run in fp32 (autocast upcasts log_softmax)

NORM_FLOPS_PER_ELEMENT = {"rms": 4, "layer": 7}  # rms: square, mean, scale, weight; layer: 5 + weight + bias
ROTARY_FLOPS_PER_ELEMENT = 3.5  # x*cos + rotate_half(x)*sin: mul, neg (half the elements), mul, add
LOG_SOFTMAX_FLOPS_PER_ELEMENT = 5
LOG_SOFTMAX_BACKWARD_FLOPS_PER_ELEMENT = 4
BACKWARD_FACTOR = 2
# (FLOPs, bytes read, bytes written) per parameter of one optimizer step: torch's non-foreach
# kernels in fp32, one FLOP per output element each. AdamW: mul (decay), lerp, mul, addcmul,
# sqrt, div, add, addcdiv; SGD with momentum: mul, add, add.
OPTIMIZER_COST = {"adamw": (8, 48, 32), "sgd": (3, 20, 12)}


@dataclass(frozen=True)
class Layer:
    """What one layer holds: its stack ("layers", or "encoder" of an encoder-decoder), a routed
    MoE MLP or a dense one, its attention window in tokens (0: every earlier token) and whether it
    cross-attends to the encoder's output."""

    stack: str
    moe: bool
    window: int
    cross: bool


@dataclass(frozen=True)
class TransformerSpec:
    """A transformer by its sizes: decoder-only by default, encoder-only (causal=False) or
    encoder-decoder (encoder_layers > 0: `layers` decoder layers cross-attend to the encoder's).

    ffn is the MLP width (of each expert for MoE). gated_mlp: SwiGLU/GeGLU with gate, up and down
    matrices; False: a 2-matrix GELU/ReLU MLP. max_positions set: learned position embeddings of
    that many rows; None: rotary or relative (no parameters). bias: biases on every linear layer
    (GPT-2); qkv_bias: on the Q, K and V projections only (Qwen2). norm "layer" has a weight and a
    bias; "rms" a weight only.

    Mixture of experts: `experts` routed experts per MoE layer, `top_k` of them per token, plus
    `shared_experts` that every token runs (DeepSeek, Llama 4), each ffn wide. The first
    `dense_layers` layers, and all but every `moe_every`-th after them, have a dense MLP `dense_ffn`
    wide (0: ffn).

    Multi-head latent attention (DeepSeek-V2/V3) when kv_lora_rank > 0: queries through a rank
    q_lora_rank bottleneck (0: a full projection), keys and values from one kv_lora_rank latent
    plus a rope_head_dim rotary key shared by the heads; head_dim is the query/key head width
    (rotary part included), v_head_dim the value head width. The KV cache holds the latent and the
    rotary key: kv_lora_rank + rope_head_dim elements per token and layer.

    sliding_window > 0: layers attend to at most that many earlier tokens; with global_every n,
    every n-th layer attends to all of them (Gemma 2: 2, Gemma 3: 6; Mistral 7B: 0, all local).

    Encoder extras: encoder_seq fixes the encoder's length (Whisper: 1500 audio frames; 0: the
    input's), encoder_positions its learned position rows, mel_bins its audio stem (two
    convolutions of width 3, the second of stride 2). token_types and pooler: BERT's segment
    embeddings and pooler.

    xl_relative: Transformer-XL relative positions (Dai et al. 2019; Gopher, Chinchilla): each layer
    projects the sinusoidal relative positions through a hidden x q_dim matrix (one row per position,
    shared by the batch), learns two q_dim biases (u, v) and adds a query-position score product to QK^T.
    """

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    experts: int = 0
    top_k: int = 0
    tied_embeddings: bool = False
    gated_mlp: bool = True
    norm: str = "rms"
    max_positions: int | None = None
    bias: bool = False
    head_dim: int = 0
    name: str = "transformer"
    qkv_bias: bool = False
    causal: bool = True
    shared_experts: int = 0
    dense_layers: int = 0
    moe_every: int = 1
    dense_ffn: int = 0
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    rope_head_dim: int = 0
    v_head_dim: int = 0
    sliding_window: int = 0
    global_every: int = 0
    encoder_layers: int = 0
    encoder_seq: int = 0
    encoder_positions: int = 0
    mel_bins: int = 0
    token_types: int = 0
    pooler: bool = False
    xl_relative: bool = False

    def __post_init__(self) -> None:
        for key in (*_SIZE_KEYS, *_COUNT_KEYS):
            value, least = getattr(self, key), 1 if key in _SIZE_KEYS else 0
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ChipfitError(f"Spec {key}={value!r} is not a positive whole number; give {key}=<n> with n >= 1."
                                   if least else f"Spec {key}={value!r} is not a whole number of 0 or more; give "
                                   f"{key}=<n> or leave it out.")
            check_whole(value, f"Spec {key}", least, MAX_LAYERS if key == "layers" else MAX_DIM)  # the upper bound
        if not self.head_dim:
            if self.hidden % self.heads:
                raise ChipfitError(
                    f"Spec heads={self.heads} does not divide hidden={self.hidden}; give a head count that divides it, "
                    "or head_dim=<n> for models whose heads are not hidden / heads wide."
                )
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if self.heads % self.kv_heads:
            raise ChipfitError(
                f"Spec kv_heads={self.kv_heads} does not divide heads={self.heads}; each KV head must serve a whole "
                "group of query heads."
            )
        if self.experts and not 1 <= self.top_k <= self.experts:
            raise ChipfitError(
                f"Spec top_k={self.top_k} must be between 1 and experts={self.experts}; give the experts each token uses."
            )
        for key in ("top_k", "shared_experts"):
            if not self.experts and getattr(self, key):
                raise ChipfitError(f"Spec {key}={getattr(self, key)} needs experts; "
                                   f"give experts=<n> or leave {key} out.")
        if self.moe_every < 1:
            raise ChipfitError(f"Spec moe_every={self.moe_every} is not positive; give 1 for MoE in every layer.")
        if self.kv_lora_rank and not 0 < self.rope_head_dim < self.head_dim:
            raise ChipfitError(f"Spec rope_head_dim={self.rope_head_dim} must be above 0 and below head_dim="
                               f"{self.head_dim} for multi-head latent attention; give the rotary part of a head.")
        if self.norm not in NORMS:
            raise ChipfitError(f"Spec norm={self.norm!r} is not known; use rms or layer.")
        if self.max_positions is not None and self.max_positions < 1:
            raise ChipfitError(f"Spec max_positions={self.max_positions} is not positive; give 1 or more, or leave it out.")

    # --- shapes -------------------------------------------------------------------------
    @property
    def mla(self) -> bool:
        """Multi-head latent attention (DeepSeek-V2/V3)."""
        return self.kv_lora_rank > 0

    @property
    def value_head_dim(self) -> int:
        return self.v_head_dim or self.head_dim

    @property
    def score_head_dim(self) -> int:
        """Width of the products that make one attention score: the query/key head, twice with XL relative
        positions (content and position scores)."""
        return self.head_dim * (2 if self.xl_relative else 1)

    @property
    def q_dim(self) -> int:
        """Width of the queries: heads * head_dim."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the keys the attention reads: kv_heads * head_dim (every head's, decompressed, for MLA)."""
        return (self.heads if self.mla else self.kv_heads) * self.head_dim

    @property
    def v_dim(self) -> int:
        """Width of the values the attention reads."""
        return (self.heads if self.mla else self.kv_heads) * self.value_head_dim

    @property
    def out_dim(self) -> int:
        """Width of the attention output, the output projection's input: heads * value head width."""
        return self.heads * self.value_head_dim

    @property
    def moe(self) -> bool:
        return self.experts > 0

    @property
    def encoder_decoder(self) -> bool:
        return self.encoder_layers > 0

    def layer_kinds(self) -> tuple[Layer, ...]:
        """Every layer in order: the encoder's (if any), then the decoder's (or the only stack's)."""
        encoder = (Layer("encoder", False, 0, False),) * self.encoder_layers
        return encoder + tuple(
            Layer("layers", self._is_moe(i), self._window(i), self.encoder_decoder) for i in range(self.layers))

    def _is_moe(self, i: int) -> bool:
        return self.moe and i >= self.dense_layers and (i - self.dense_layers + 1) % self.moe_every == 0

    def _window(self, i: int) -> int:
        if not self.sliding_window or (self.global_every and (i + 1) % self.global_every == 0):
            return 0
        return self.sliding_window

    @property
    def moe_layers(self) -> int:
        return sum(self._is_moe(i) for i in range(self.layers))

    def attention_matrices(self) -> tuple[tuple[str, int, int], ...]:
        """(name, in, out) of the self-attention's projections (MLA: its down- and up-projections)."""
        h, q = self.hidden, self.q_dim
        if not self.mla:
            position = (("pos_proj", h, q),) if self.xl_relative else ()
            kv = self.kv_dim
            return (("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h)) + position
        queries = ((("q_a_proj", h, self.q_lora_rank), ("q_b_proj", self.q_lora_rank, q)) if self.q_lora_rank
                   else (("q_proj", h, q),))
        nope = self.head_dim - self.rope_head_dim
        return queries + (("kv_a_proj", h, self.kv_lora_rank + self.rope_head_dim),
                          ("kv_b_proj", self.kv_lora_rank, self.heads * (nope + self.value_head_dim)),
                          ("o_proj", self.out_dim, h))

    def cross_matrices(self) -> tuple[tuple[str, int, int], ...]:
        """(name, in, out) of a decoder layer's cross-attention over the encoder output."""
        h, q, kv = self.hidden, self.q_dim, self.kv_heads * self.head_dim
        return (("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h))

    def mlp_matrices(self, width: int) -> tuple[tuple[str, int, int], ...]:
        """(name, in, out) of one MLP `width` wide."""
        h = self.hidden
        if self.gated_mlp:
            return (("gate_proj", h, width), ("up_proj", h, width), ("down_proj", width, h))
        return (("fc", h, width), ("proj", width, h))

    def expert_matrices(self) -> tuple[tuple[str, int, int], ...]:
        """(name, in, out) of one MLP (one expert for MoE)."""
        return self.mlp_matrices(self.ffn)

    @property
    def dense_width(self) -> int:
        """Width of the dense MLP layers (of an MoE model's dense layers: dense_ffn)."""
        return self.dense_ffn or self.ffn

    # --- parameters ---------------------------------------------------------------------
    def linear_params(self, matrices: tuple[tuple[str, int, int], ...]) -> int:
        """Weights and biases of (name, in, out) matrices."""
        return sum(i * o + (o if self._biased(name) else 0) for name, i, o in matrices)

    def _biased(self, name: str) -> bool:
        return self.bias or (self.qkv_bias and name in ("q_proj", "k_proj", "v_proj"))

    @property
    def norm_params(self) -> int:
        return self.hidden * (2 if self.norm == "layer" else 1)

    def mlp_params(self, layer: Layer, active: bool = False) -> int:
        """MLP parameters of a layer: routed experts (top_k of them when active), shared experts and
        router for MoE layers; the dense MLP otherwise."""
        if not layer.moe:
            return self.linear_params(self.mlp_matrices(self.dense_width))
        expert = self.linear_params(self.expert_matrices())
        routed = self.top_k if active else self.experts
        return expert * (routed + self.shared_experts) + self.hidden * self.experts

    def attention_params(self, layer: Layer) -> int:
        """Self-attention (MLA: with its latent norms; XL: with its u and v biases) and cross-attention with its norm."""
        norms = (self.q_lora_rank + self.kv_lora_rank) * (2 if self.norm == "layer" else 1)
        position_biases = 2 * self.q_dim if self.xl_relative else 0
        return (self.layer_matmul_params(layer, mlp=False) + norms + position_biases
                + (self.norm_params if layer.cross else 0))

    def layer_matmul_params(self, layer: Layer, active: bool = False, mlp: bool = True) -> int:
        """Weights (and biases) of a layer's matrices: attention, cross-attention and, with `mlp`, the MLP (the
        experts a token uses when active)."""
        attn = self.linear_params(self.attention_matrices())
        attn += self.linear_params(self.cross_matrices()) if layer.cross else 0
        return attn + (self.mlp_params(layer, active) if mlp else 0)

    def layer_params(self, layer: Layer | None = None, active: bool = False) -> int:
        """Parameters of one layer (default: the last one); active=True counts the top_k experts a token uses."""
        layer = layer or self.layer_kinds()[-1]
        return self.attention_params(layer) + self.mlp_params(layer, active) + 2 * self.norm_params

    def embedding_params(self) -> int:
        """Token embedding, learned positions and segment embeddings, and an audio stem (if any)."""
        h = self.hidden
        rows = self.vocab + (self.max_positions or 0) + self.token_types + self.encoder_positions
        stem = (self.mel_bins * h * 3 + h + h * h * 3 + h) if self.mel_bins else 0
        return rows * h + stem

    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def head_params(self) -> int:
        """Final norms (one per stack), a pooler, and the LM head (0 extra when tied to the embedding)."""
        pooler = self.hidden * self.hidden + self.hidden if self.pooler else 0
        return self.norm_params * (1 + self.encoder_decoder) + pooler + self.lm_head_params()

    def params(self) -> int:
        """Total parameters (every expert counted)."""
        return self.embedding_params() + sum(self.layer_params(k) for k in self.layer_kinds()) + self.head_params()

    def active_params(self) -> int:
        """Parameters one token uses: top_k routed (and the shared) experts per MoE layer; all for dense models."""
        layers = sum(self.layer_params(k, active=True) for k in self.layer_kinds())
        return self.embedding_params() + layers + self.head_params()

    def expert_params(self) -> int:
        """Parameters inside the routed experts, all of them (what expert parallelism splits)."""
        return self.moe_layers * self.experts * self.linear_params(self.expert_matrices())

    def matmul_params(self, active: bool = False, stack: str | None = None) -> int:
        """Weights of the matrices a token runs through (layers of `stack`, or all, and the LM head)."""
        kinds = [k for k in self.layer_kinds() if stack in (None, k.stack)]
        return sum(self.layer_matmul_params(k, active) for k in kinds) + self.vocab * self.hidden

    def kv_cache_bytes(self, tokens, bytes_per_element: float):
        """Bytes of the self-attention K and V caches of `tokens` positions (a number or an array of them)
        of one sequence, over the decoder's layers: 2 * kv_dim per token and layer, the latent and rotary
        key for MLA, at most the window for sliding-window layers."""
        per_token = self.kv_cache_elements()
        total = 0.0
        for layer in self.layer_kinds():
            if layer.stack == "layers":
                total = total + per_token * (np.minimum(tokens, layer.window) if layer.window else tokens)
        return total * bytes_per_element

    def kv_cache_elements(self) -> int:
        """Elements one token adds to one layer's self-attention cache."""
        return self.kv_lora_rank + self.rope_head_dim if self.mla else 2 * self.kv_heads * self.head_dim

    def cross_kv_bytes(self, encoder_tokens: int, bytes_per_element: float) -> float:
        """Bytes of the cross-attention K and V of one sequence's encoder output, over the decoder's layers."""
        if not self.encoder_decoder:
            return 0.0
        return 2 * self.layers * self.kv_heads * self.head_dim * encoder_tokens * bytes_per_element

    def encoder_tokens(self, seq_len: int) -> int:
        """Encoder length for an input of `seq_len` tokens: fixed (encoder_seq) or the input's."""
        return self.encoder_seq or seq_len

    def to_dict(self) -> dict:
        return asdict(self) | {"params": self.params(), "active_params": self.active_params()}


_SIZE_KEYS = ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab")  # every transformer has each, 1 or more
_COUNT_KEYS = ("experts", "top_k", "head_dim", "shared_experts", "dense_layers", "dense_ffn", "q_lora_rank",
               "kv_lora_rank", "rope_head_dim", "v_head_dim", "sliding_window", "global_every", "encoder_layers",
               "encoder_seq", "encoder_positions", "mel_bins", "token_types")


# --- the spec string ----------------------------------------------------------------------
_SPEC_KEYS = tuple(f.name for f in fields(TransformerSpec) if f.name != "name")
_REQUIRED = ("layers", "hidden", "heads", "ffn", "vocab")
_BOOL_KEYS = tuple(f.name for f in fields(TransformerSpec) if f.type == "bool")
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _whole(key: str, text: str) -> int:
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise ChipfitError(f"Spec value {key}={text!r} is not a whole number; give {key}=<n>, e.g. {key}=8.")
    return int(value)


def parse_spec(text: str) -> TransformerSpec:
    """A TransformerSpec from 'layers=80,hidden=8192,heads=64,kv_heads=8,ffn=28672,vocab=128256'.

    Required: layers, hidden, heads, ffn, vocab. kv_heads defaults to heads (multi-head
    attention). Booleans take true/false; norm takes rms/layer; max_positions sets learned
    position embeddings.
    """
    values: dict[str, object] = {}
    for item in (part.strip() for part in text.split(",")):
        key, eq, raw = (s.strip() for s in item.partition("="))
        if not eq or not key or not raw:
            raise ChipfitError(f"Spec item {item!r} is not key=value; write the spec as 'layers=80,hidden=8192,...'.")
        key = key.lower()
        if key not in _SPEC_KEYS:
            raise ChipfitError(f"Spec key {key!r} is not known.{closest(key, _SPEC_KEYS)} Known: {', '.join(_SPEC_KEYS)}.")
        if key in values:
            raise ChipfitError(f"Spec key {key!r} is given twice; give each key once.")
        if key in _BOOL_KEYS:
            if raw.lower() not in _BOOL_WORDS:
                raise ChipfitError(f"Spec value {key}={raw!r} is not true or false; give {key}=true or {key}=false.")
            values[key] = _BOOL_WORDS[raw.lower()]
        elif key == "norm":
            values[key] = raw.lower()
        else:
            values[key] = _whole(key, raw)
    missing = [k for k in _REQUIRED if k not in values]
    if missing:
        raise ChipfitError(f"Spec {text!r} lacks {', '.join(missing)}; give each as key=<n>.")
    values.setdefault("kv_heads", values["heads"])
    return TransformerSpec(**values, name=text.replace(" ", ""))


# --- activation memory ----------------------------------------------------------------------
def activation_bytes_per_layer(spec: TransformerSpec, batch: int, seq_len: int, act_bytes: int,
                               flash_attention: bool = True, layer: Layer | None = None,
                               encoder_len: int | None = None, lora: LoRA | None = None) -> float:
    """Bytes one layer (default: the last) saves for backward (Korthikanti et al. 2022, Sec. 4.1, no dropout).

    With s*b tokens and e bytes per element: norms 2*e*sbh (each norm's input); attention
    e*sb*(h [QKV input] + q + k [Q, K] + v [V] + o [output-projection input]; q = heads*head_dim,
    k and v the key and value widths, o = heads * value head width) plus the flash log-sum-exp
    4*b*a*s (MLA adds its latents, e*sb*(q_lora_rank + kv_lora_rank + rope_head_dim); XL relative positions
    their projection, e*s*q); MLP
    e*sb*(h + 4f) gated (gate, up, silu and product) or e*sb*(h + 2f) for GELU; MoE: the routed
    copies e*sb*k*h, k times the expert tensors, the expert outputs e*sb*k*h and the fp32 router
    probabilities 4*sb*E, plus the shared experts' tensors. Cross-attention adds a norm, its queries,
    output and the keys and values over the encoder's tokens. For GPT (kv = h, f = 4h, e = 2) this is
    32*sbh: the paper's 34*sbh less its two sbh dropout masks. Without flash attention add the
    softmax output e*a*s*s'*b (the paper's 5*as^2*b adds dropout's 3), s' the keys attended.

    Under `lora` a frozen matrix's input is saved only where an adapter on a matrix reading it needs it
    (autograd saves a matmul's input for its weight gradient alone): the QKV input h and the MLP's input h
    and down-projection input f drop out unless adapted (the attention output stays: flash attention saves it).
    """
    layer = layer or spec.layer_kinds()[-1]
    enc = spec.encoder_tokens(encoder_len or seq_len)
    s = enc if layer.stack == "encoder" else seq_len
    keys = min(s, layer.window) if layer.window else s
    t, h, e = batch * s, spec.hidden, act_bytes

    def saved(names) -> int:
        """1 when the input these matrices read is saved: always, or under LoRA when one of them is adapted."""
        return int(lora is None or any(lora.adapts(n) for n in names))

    qkv_in = saved(n for n, i, _ in spec.attention_matrices() if i == h and n != "o_proj")
    mlp = spec.mlp_matrices(spec.dense_width)
    mlp_in, mlp_mid = saved(n for n, *_ in mlp[:-1]), saved(n for n, *_ in mlp[-1:])
    norms = 2 * e * t * h
    attn = (e * t * (qkv_in * h + spec.q_dim + spec.kv_dim + spec.v_dim + spec.out_dim)
            + LOGSUMEXP_BYTES * batch * spec.heads * s)
    if spec.mla:
        attn += e * t * (spec.q_lora_rank + spec.kv_lora_rank + spec.rope_head_dim)
    if spec.xl_relative:
        attn += e * s * spec.q_dim  # the projected relative positions, one row per position
    if not flash_attention:
        attn += e * spec.heads * s * keys * batch
    if layer.cross:
        kv = spec.kv_heads * spec.head_dim
        attn += e * t * (2 * h + 2 * spec.q_dim) + e * batch * enc * 2 * kv + LOGSUMEXP_BYTES * batch * spec.heads * s
        if not flash_attention:
            attn += e * spec.heads * s * enc * batch
    widths = (3 if spec.gated_mlp else 1) + mlp_mid  # MLP tensors saved per unit of its width
    if layer.moe:
        k, per_expert = spec.top_k, widths * spec.ffn
        mlp_bytes = (e * t * (h + k * ((1 + mlp_in) * h + per_expert) + spec.shared_experts * per_expert)
                     + FP32_BYTES * t * spec.experts)
    else:
        mlp_bytes = e * t * (mlp_in * h + widths * spec.dense_width)
    return norms + attn + mlp_bytes


# --- the profile ----------------------------------------------------------------------------
@dataclass
class _Ops:
    """Collects forward ops and mirrors each into the backward (2x FLOPs). Under `lora` the matrices are frozen
    and adapted ones gain adapters (counted in `adapter_params`); `dequant_bytes` > 0: frozen weights are
    stored at that many bytes each and dequantised for every GEMM."""

    forward: list[Op]
    backward: list[Op]
    dtype: str
    train: bool
    lora: LoRA | None = None
    dequant_bytes: float = 0.0
    adapter_params: int = 0
    adapter_saved: float = 0.0  # bytes of x A the adapters save for backward

    def add(self, name: str, kind: str, module: str, flops: float, read: float, written: float,
            bwd: tuple[float, float, float] | None = None, causal: bool | None = None) -> None:
        """bwd: (FLOPs, read, written) of the backward; default 2x FLOPs and 2x reads, same writes."""
        dtype = self.dtype
        self.forward.append(Op(name, kind, float(flops), int(read), int(written), dtype, "forward", module, True, causal))
        if self.train:
            b_flops, b_read, b_written = bwd or (BACKWARD_FACTOR * flops, BACKWARD_FACTOR * read, written)
            self.backward.append(Op(name + "_backward", kind, float(b_flops), int(b_read), int(b_written), dtype,
                                    "backward", module, True, causal))


def _matmuls(ops: _Ops, spec: TransformerSpec, module: str, name: str,
             matrices: list[tuple[str, int, int, int, int]], act: int, wbytes: int, layer: bool = True) -> None:
    """One matmul op for a group of (name, in, out, rows, copies) matrices: copies of in x out weights
    that together see `rows` rows. Backward: grad input and grad weight, each one forward product. Under LoRA
    a frozen matrix computes only the grad input, a `layer` matrix stored quantised is first dequantised
    (forward and backward), and adapted matrices add their adapters (_adapters)."""
    flops = sum(2 * r * i * o + (r * o if spec.bias else 0) for _, i, o, r, _ in matrices)
    params = sum(c * i * o for _, i, o, _, c in matrices)
    weights = params * wbytes
    x_in = sum(r * i for _, i, _, r, _ in matrices) * act
    y_out = sum(r * o for _, _, o, r, _ in matrices) * act
    bwd = (BACKWARD_FACTOR * flops, 2 * y_out + x_in + weights, x_in + weights)
    if ops.lora is None:
        ops.add(name, "matmul", module, flops, x_in + weights, y_out, bwd)
        return
    if ops.dequant_bytes and layer:
        stored = params * ops.dequant_bytes
        ops.add("dequantize", "elementwise", module, params, stored, weights, (params, stored, weights))
    ops.add(name, "matmul", module, flops, x_in + weights, y_out,
            (sum(2 * r * i * o for _, i, o, r, _ in matrices), y_out + weights, x_in))
    if layer:
        _adapters(ops, module, name, [m for m in matrices if ops.lora.adapts(m[0])], act)


def _adapters(ops: _Ops, module: str, name: str, matrices: list[tuple[str, int, int, int, int]], act: int) -> None:
    """The LoRA adapters of `matrices`: x A (in x r) then B (r x out) added to the frozen output,
    2 rows r (in + out) FLOPs each; backward the grad input and grad weight of both, 2x."""
    if not matrices:
        return
    r = ops.lora.rank
    params = sum(c * r * (i + o) for _, i, o, _, c in matrices)
    flops = sum(2 * rows * r * (i + o) for _, i, o, rows, _ in matrices)
    x_in = sum(rows * i for _, i, _, rows, _ in matrices) * act
    y_out = sum(rows * o for _, _, o, rows, _ in matrices) * act
    mid = sum(rows * r for *_, rows, _ in matrices) * act  # x A, r wide, saved for B's weight gradient
    ops.adapter_params += params
    ops.adapter_saved += mid
    weights = params * act
    ops.add(f"{name}.lora", "matmul", module, flops, x_in + mid + y_out + weights, mid + y_out,
            (BACKWARD_FACTOR * flops, y_out + x_in + 2 * mid + weights, x_in + mid + weights))


def _casts(ops: _Ops, module: str, params: int) -> None:
    """AMP: fp32 weights cast to 16 bits in forward; 16-bit weight gradients cast to fp32 in backward."""
    ops.add("amp.weight_cast", "memory", module, 0, 4 * params, 2 * params, (0, 2 * params, 4 * params))


def _attention(ops: _Ops, spec: TransformerSpec, module: str, name: str, batch: int, queries: int, keys: int,
               head_widths: tuple[int, int, int, int], act: int, causal: bool) -> None:
    """Scaled dot-product attention of `queries` over `keys` positions per sequence: QK^T and PV as full
    products, 2*b*Sq*Sk*heads*(qk head + v head) FLOPs; head_widths: widths of Q, K, V and the output."""
    q, k, v, out = head_widths
    flops = 2 * batch * queries * keys * spec.heads * (spec.score_head_dim + spec.value_head_dim)
    read = batch * (queries * q + keys * (k + v)) * act
    output, lse = batch * queries * out * act, LOGSUMEXP_BYTES * batch * spec.heads * queries
    ops.add(name, "attention", module, flops, read, output + lse,
            (BACKWARD_FACTOR * flops, read + 2 * output + lse, read), causal=causal)


def _layer_ops(ops: _Ops, spec: TransformerSpec, layer: Layer, p: str, batch: int, s: int, enc: int,
               act: int, amp: bool) -> None:
    """The ops of one layer over `s` positions per sequence (`enc` encoder positions for cross-attention)."""
    t, h = batch * s, spec.hidden
    norm_flops = NORM_FLOPS_PER_ELEMENT[spec.norm]
    ops.add("norm", "norm", f"{p}.norm", 2 * norm_flops * t * h, 2 * t * h * act, 2 * t * h * act)
    positions = {"pos_proj": s}  # XL: one projected row per relative position, shared by the batch
    attention = [(n, i_, o, positions.get(n, t), 1) for n, i_, o in spec.attention_matrices()]
    _matmuls(ops, spec, f"{p}.attn", "qkvo_proj", attention, act, act)
    keys = min(s, layer.window) if layer.window else s
    causal = spec.causal and layer.stack == "layers"
    _attention(ops, spec, f"{p}.attn", "sdpa", batch, s, keys, (spec.q_dim, spec.kv_dim, spec.v_dim, spec.out_dim),
               act, causal)
    rope = 0 if spec.max_positions or spec.encoder_decoder or spec.xl_relative else (spec.q_dim + spec.kv_dim)
    rot_bytes = t * rope * act
    ops.add("rotary_residual", "elementwise", f"{p}.attn", ROTARY_FLOPS_PER_ELEMENT * t * rope + t * h,
            rot_bytes + 2 * t * h * act, rot_bytes + t * h * act)
    if layer.cross:
        kv = spec.kv_heads * spec.head_dim
        ops.add("norm", "norm", f"{p}.cross", norm_flops * t * h, t * h * act, t * h * act)
        rows = {"k_proj": batch * enc, "v_proj": batch * enc}
        _matmuls(ops, spec, f"{p}.cross", "cross_proj",
                 [(n, i_, o, rows.get(n, t), 1) for n, i_, o in spec.cross_matrices()], act, act)
        _attention(ops, spec, f"{p}.cross", "cross_sdpa", batch, s, enc, (spec.q_dim, kv, kv, spec.q_dim), act, False)
    if layer.moe:
        k, e, shared = spec.top_k, spec.experts, spec.shared_experts
        ops.add("router_softmax_topk", "reduction", f"{p}.mlp", (LOG_SOFTMAX_FLOPS_PER_ELEMENT + 1) * t * e,
                t * e * act, t * e * FP32_BYTES + t * k * (FP32_BYTES + TOKEN_ID_BYTES))
        ops.add("dispatch", "memory", f"{p}.mlp", 0, t * h * act, t * k * h * act)
        groups = [("router", h, e, t, 1)] + [(n, i_, o, t * k, e) for n, i_, o in spec.expert_matrices()]
        groups += [(n, i_, o, t * shared, shared) for n, i_, o in spec.expert_matrices()] if shared else []
        act_elems = t * (k + shared) * spec.ffn
        combine = 2 * t * k * h  # weight each expert output, sum the top_k
    else:
        groups = [(n, i_, o, t, 1) for n, i_, o in spec.mlp_matrices(spec.dense_width)]
        act_elems, combine = t * spec.dense_width, 0
    _matmuls(ops, spec, f"{p}.mlp", "mlp_proj", groups, act, act)
    gated = spec.gated_mlp
    mlp_read = (2 if gated else 1) * act_elems * act + combine * act + 2 * t * h * act
    ops.add("activation_residual", "elementwise", f"{p}.mlp", (2 if gated else 1) * act_elems + combine + t * h,
            mlp_read, act_elems * act + t * h * act)
    if amp and ops.lora is None:
        _casts(ops, p, spec.layer_matmul_params(layer))


def profile_spec(
    spec: TransformerSpec,
    *,
    mode: str = "train",
    batch: int = 1,
    seq_len: int,
    precision: str = "fp32",
    optimizer: str = "adamw",
    flash_attention: bool = True,
    encoder_len: int | None = None,
    lora: LoRA | None = None,
) -> Profile:
    """One step of `spec` as a Profile: the forward (inference) or forward, loss, backward and
    optimizer step (training) of `batch` sequences of `seq_len` tokens, with the tracer's conventions.

    `spec` is a TransformerSpec or anything with one as `.spec` (a library entry). An encoder-decoder
    runs its decoder over `seq_len` positions and its encoder over `encoder_len` (default
    spec.encoder_tokens(seq_len): the model's fixed encoder length, else seq_len).
    Ops are grouped per layer and family (module paths 'layers.3.attn', 'encoder.0.mlp', ...).
    flash_attention=False adds the S x S attention probabilities to the saved activations.

    `lora` fine-tunes adapters on a frozen base (workload.lora): the frozen matrices compute only their input
    gradients, save no inputs they alone would need, keep no gradients, optimizer state or fp32 master copy
    (stored at `lora.base_bytes`, dequantised per GEMM when quantised); only the adapters train.
    """
    spec = as_spec(spec)
    Workload(model=spec.name, mode=mode, batch=batch, seq_len=seq_len, precision=precision, optimizer=optimizer)
    if lora is not None:
        if mode != "train":
            raise ChipfitError("LoRA adapters are trained; give --train with --lora, or leave --lora out.")
        lora.check(spec)
    if spec.max_positions is not None and seq_len > spec.max_positions:
        raise ChipfitError(
            f"Sequence length {seq_len} exceeds the {spec.max_positions} positions of {spec.name!r}; "
            f"give {spec.max_positions} or fewer."
        )
    train = mode == "train"
    act = ACTIVATION_BYTES[precision]
    amp = train and act == 2
    ops = _Ops([], [], COMPUTE_DTYPE[precision], train, lora,
               lora.base_bytes(precision) if lora is not None and lora.dequantised(precision) else 0.0)
    b, s, h, v = batch, seq_len, spec.hidden, spec.vocab
    t = b * s
    enc = spec.encoder_tokens(encoder_len or s)

    # Embedding lookup (and learned positions): gathers, 0 FLOPs; backward writes the whole gradient table
    # (none for a frozen one).
    table_grad = spec.embedding_params() * (MASTER_WEIGHT_BYTES if train else act)
    looked_up = t + (b * enc if spec.encoder_decoder and not spec.mel_bins else 0)
    gathered = looked_up * h * act * (2 if spec.max_positions else 1)
    ops.add("embedding", "memory", "embed", 0, looked_up * TOKEN_ID_BYTES + gathered, gathered,
            (0, gathered, table_grad) if lora is None else (0, 0, 0))
    if spec.max_positions:
        ops.add("add_positions", "elementwise", "embed", t * h, 2 * t * h * act, t * h * act)
    if spec.mel_bins:  # two convolutions of width 3 over 2*enc mel frames, the second of stride 2
        frames = 2 * enc
        stem = [("conv1", 3 * spec.mel_bins, h, b * frames, 1), ("conv2", 3 * h, h, b * enc, 1)]
        _matmuls(ops, spec, "encoder.stem", "conv_stem", stem, act, act, layer=False)

    stack_index: dict[str, int] = {}
    for layer in spec.layer_kinds():
        i = stack_index[layer.stack] = stack_index.get(layer.stack, -1) + 1
        _layer_ops(ops, spec, layer, f"{layer.stack}.{i}", b, enc if layer.stack == "encoder" else s, enc, act, amp)

    norm_flops = NORM_FLOPS_PER_ELEMENT[spec.norm]
    ops.add("norm", "norm", "final_norm", norm_flops * t * h, t * h * act, t * h * act)
    if amp and lora is None:
        _casts(ops, "lm_head", v * h)
    elif amp:
        _casts(ops, "lora", ops.adapter_params)  # PEFT keeps the adapters in fp32 (autocast_adapter_dtype)
    _matmuls(ops, spec, "lm_head", "lm_head", [("lm_head", h, v, t, 1)], act, act, layer=False)
    if train:
        ops.add("cross_entropy", "reduction", "loss", LOG_SOFTMAX_FLOPS_PER_ELEMENT * t * v + t,
                t * v * act, t * v * FP32_BYTES + FP32_BYTES,
                (LOG_SOFTMAX_BACKWARD_FLOPS_PER_ELEMENT * t * v + t, 2 * t * v * FP32_BYTES, t * v * act))

    all_ops = ops.forward + ops.backward[::-1]
    if train:
        flops_per, read_per, written_per = OPTIMIZER_COST[optimizer]
        owners = [("embed", spec.embedding_params())]
        owners += [(f"{k.stack}.{i}", spec.layer_params(k)) for i, k in enumerate(spec.layer_kinds())]
        owners += [("final_norm", spec.head_params() - spec.lm_head_params())]
        if spec.lm_head_params():
            owners += [("lm_head", spec.lm_head_params())]
        if lora is not None:
            owners = [("lora", ops.adapter_params)]
        for module, n in owners:
            all_ops.append(Op(f"{optimizer}.step", "elementwise", float(flops_per * n), read_per * n,
                              written_per * n, "fp32", "optimizer", module))

    params = spec.params()
    saved = 0.0
    if train:
        saved = sum(activation_bytes_per_layer(spec, b, s, act, flash_attention, k, enc, lora)
                    for k in spec.layer_kinds())
        # ids, final norm and head inputs (a frozen head needs none), log-probs; adapters' x A
        saved += t * TOKEN_ID_BYTES + (2 if lora is None else 1) * t * h * act + t * v * FP32_BYTES + ops.adapter_saved
    peak = saved + _transient_bytes(spec, max(t, b * enc), act, train)
    notes = _notes(spec, train, precision, optimizer, flash_attention)
    if lora is None:
        return Profile(model=spec.name, mode=mode, batch=b, seq_len=s, dtype=COMPUTE_DTYPE[precision], ops=all_ops,
                       params=params, trainable_params=params,
                       param_bytes=params * (MASTER_WEIGHT_BYTES if train else act),
                       activation_bytes=int(saved), peak_activation_bytes=int(peak), notes=notes)
    layer_matrices = sum(spec.layer_matmul_params(k) for k in spec.layer_kinds())
    frozen = layer_matrices * lora.base_bytes(precision) + (params - layer_matrices) * act
    adapters = ops.adapter_params
    notes = [n for n in notes if not n.startswith("AMP")] + _lora_notes(lora, adapters, params, precision)
    return Profile(model=spec.name, mode=mode, batch=b, seq_len=s, dtype=COMPUTE_DTYPE[precision], ops=all_ops,
                   params=params + adapters, trainable_params=adapters,
                   param_bytes=round(frozen) + adapters * MASTER_WEIGHT_BYTES, frozen_param_bytes=round(frozen),
                   activation_bytes=int(saved), peak_activation_bytes=int(peak), notes=notes)


def _lora_notes(lora: LoRA, adapters: int, base: int, precision: str) -> list[str]:
    stored = lora.base or precision
    notes = [f"{lora.describe()}: {adapters:,} trained adapter parameters on {base:,} frozen ones (Hu et al. 2021).",
             "Frozen base: its matrices compute input gradients only (no weight gradients), save no inputs only "
             "their weight gradients would need, and hold no gradients, optimizer state or fp32 master copy; "
             f"layer matrices stored in {stored} ({lora.base_bytes(precision):.3g} bytes each), the embedding, "
             "norms and output head at the activations' width.",
             "Adapters: fp32 weights (PEFT's autocast_adapter_dtype), the only parameters the optimizer steps and "
             "data parallelism all-reduces; adapter dropout not counted."]
    if lora.dequantised(precision):
        notes.append(f"Each GEMM dequantises its {lora.base} weights to {COMPUTE_DTYPE[precision]} first, forward "
                     "and backward (QLoRA, Dettmers et al. 2023).")
    return notes


def as_spec(model) -> TransformerSpec:
    """`model` if it is a TransformerSpec, else its `.spec` (a library entry); a ChipfitError otherwise."""
    spec = model if isinstance(model, TransformerSpec) else getattr(model, "spec", None)
    if not isinstance(spec, TransformerSpec):
        name = getattr(model, "name", model)
        raise ChipfitError(f"Model {name!r} is not a transformer given by its sizes, so it has no analytic profile; "
                           "profile it by name (`chipfit profile NAME`), which traces it.")
    return spec


def _transient_bytes(spec: TransformerSpec, tokens: int, act: int, train: bool) -> float:
    """Largest set of temporaries live at once: the residual stream, a layer input and the MLP
    intermediates (3 or 2 of width k*f), or the logits (and in training their fp32 log-probs and gradient)."""
    inner = max(spec.ffn * (spec.top_k + spec.shared_experts) if spec.moe else 0, spec.dense_width)
    width = inner * (3 if spec.gated_mlp else 2)
    layer = tokens * (2 * spec.hidden + width) * act
    logits = tokens * spec.vocab * (act + (2 * FP32_BYTES if train else 0)) + tokens * spec.hidden * act
    return max(layer, logits)


def _notes(spec: TransformerSpec, train: bool, precision: str, optimizer: str, flash: bool) -> list[str]:
    notes = [
        f"Analytic profile of {spec.name!r} ({spec.params():,} parameters, {spec.active_params():,} active per token).",
        "FLOPs count a multiply-add as 2; ops are grouped per layer and family (one kernel launch each).",
        "Attention is counted as the full Sq x Sk product even when causal (kernels that skip masked "
        "blocks do about half the attention FLOPs); its backward as 2x the forward.",
        "Bytes: each group reads its inputs and weights once and writes its outputs once (fused kernels).",
    ]
    if spec.moe:
        shared = f" plus {spec.shared_experts} shared" if spec.shared_experts else ""
        notes.append(f"MoE: balanced routing, each token costs {spec.top_k} of {spec.experts} experts{shared} in "
                     f"{spec.moe_layers} of {spec.layers} layers; every expert's weights are read once per step.")
    if spec.mla:
        notes.append(f"Multi-head latent attention: keys and values from a {spec.kv_lora_rank}-wide latent, "
                     "decompressed per head in training and prefill.")
    if spec.sliding_window:
        which = f"all but every {spec.global_every}-th layer" if spec.global_every else "every layer"
        notes.append(f"Sliding-window attention over {spec.sliding_window} tokens in {which}.")
    if spec.encoder_decoder:
        fixed = f" (fixed at {spec.encoder_seq})" if spec.encoder_seq else ""
        notes.append(f"Encoder-decoder: {spec.encoder_layers} encoder layers over the input's positions{fixed}, "
                     f"{spec.layers} decoder layers with cross-attention over the sequence length.")
    if precision in ("fp8", "int8"):
        notes.append(f"Profiled as bf16; the predictor maps matmuls to {precision} peaks.")
    if train:
        notes.append(
            "activation_bytes: Korthikanti et al. 2022 per-layer formula without dropout, "
            + ("with flash attention (no S x S term)." if flash else "without flash attention (S x S probabilities kept).")
        )
        notes.append(
            "Optimizer: AdamW (non-foreach, steady state)." if optimizer == "adamw"
            else "Optimizer: SGD with momentum 0.9 (non-foreach, steady state)."
        )
        if ACTIVATION_BYTES[precision] == 2:
            notes.append(f"AMP: fp32 master weights, matmul weights cast to {COMPUTE_DTYPE[precision]} each step.")
    return notes
