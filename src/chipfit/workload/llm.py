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

from ..errors import ChipfitError, closest
from ..limits import MAX_DIM, MAX_LAYERS, check_whole
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
class TransformerSpec:
    """A decoder-only transformer by its sizes.

    ffn is the MLP width (of each expert for MoE). gated_mlp: SwiGLU with gate, up and down
    matrices; False: a 2-matrix GELU MLP. max_positions set: learned position embeddings of
    that many rows; None: rotary (no parameters). bias: biases on every linear layer (GPT-2).
    norm "layer" has a weight and a bias; "rms" a weight only.
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

    def __post_init__(self) -> None:
        for key in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ChipfitError(f"Spec {key}={value!r} is not a positive whole number; give {key}=<n> with n >= 1.")
        if self.head_dim < 0 or isinstance(self.head_dim, bool) or not isinstance(self.head_dim, int):
            raise ChipfitError(f"Spec head_dim={self.head_dim!r} is not a positive whole number; give head_dim=<n> "
                               "or leave it out for hidden / heads.")
        check_whole(self.layers, "Spec layers", 1, MAX_LAYERS)
        for key in ("hidden", "heads", "kv_heads", "ffn", "vocab", "experts", "top_k", "head_dim"):
            check_whole(getattr(self, key), f"Spec {key}", 0, MAX_DIM)
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
        if self.experts < 0 or self.top_k < 0:
            raise ChipfitError("Spec experts and top_k cannot be negative; give 0 for a dense MLP.")
        if self.experts and not 1 <= self.top_k <= self.experts:
            raise ChipfitError(
                f"Spec top_k={self.top_k} must be between 1 and experts={self.experts}; give the experts each token uses."
            )
        if not self.experts and self.top_k:
            raise ChipfitError(f"Spec top_k={self.top_k} needs experts; give experts=<n> or leave top_k out.")
        if self.norm not in NORMS:
            raise ChipfitError(f"Spec norm={self.norm!r} is not known; use rms or layer.")
        if self.max_positions is not None and self.max_positions < 1:
            raise ChipfitError(f"Spec max_positions={self.max_positions} is not positive; give 1 or more, or leave it out.")

    # --- shapes -------------------------------------------------------------------------
    @property
    def q_dim(self) -> int:
        """Width of the Q projection and of the attention output: heads * head_dim."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the K (or V) projection: kv_heads * head_dim."""
        return self.kv_heads * self.head_dim

    @property
    def moe(self) -> bool:
        return self.experts > 0

    def attention_matrices(self) -> tuple[tuple[str, int, int], ...]:
        """(name, in, out) of the q, k, v and output projections."""
        h, q, kv = self.hidden, self.q_dim, self.kv_dim
        return (("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h))

    def expert_matrices(self) -> tuple[tuple[str, int, int], ...]:
        """(name, in, out) of one MLP (one expert for MoE)."""
        h, f = self.hidden, self.ffn
        if self.gated_mlp:
            return (("gate_proj", h, f), ("up_proj", h, f), ("down_proj", f, h))
        return (("fc", h, f), ("proj", f, h))

    # --- parameters ---------------------------------------------------------------------
    def linear_params(self, matrices: tuple[tuple[str, int, int], ...]) -> int:
        """Weights and biases of (name, in, out) matrices."""
        return sum(i * o + (o if self.bias else 0) for _, i, o in matrices)

    @property
    def norm_params(self) -> int:
        return self.hidden * (2 if self.norm == "layer" else 1)

    def layer_params(self, active: bool = False) -> int:
        """Parameters of one layer; active=True counts only the top_k experts a token uses."""
        attn = self.linear_params(self.attention_matrices())
        mlp = self.linear_params(self.expert_matrices())
        if self.moe:
            mlp = mlp * (self.top_k if active else self.experts) + self.hidden * self.experts  # + router
        return attn + mlp + 2 * self.norm_params

    def embedding_params(self) -> int:
        """Token embedding plus learned positions (if any)."""
        return self.vocab * self.hidden + (self.max_positions or 0) * self.hidden

    def head_params(self) -> int:
        """Final norm plus the LM head (0 extra when tied to the embedding)."""
        return self.norm_params + (0 if self.tied_embeddings else self.vocab * self.hidden)

    def params(self) -> int:
        """Total parameters (every expert counted)."""
        return self.embedding_params() + self.layers * self.layer_params() + self.head_params()

    def active_params(self) -> int:
        """Parameters one token uses: top_k experts per layer for MoE, all for a dense model."""
        return self.embedding_params() + self.layers * self.layer_params(active=True) + self.head_params()

    def matmul_params(self, active: bool = False) -> int:
        """Weights of the matrices a token runs through (layers and LM head; not the embedding lookup)."""
        per_layer = self.layer_params(active) - 2 * self.norm_params
        return self.layers * per_layer + self.vocab * self.hidden

    def kv_cache_bytes(self, tokens: int, bytes_per_element: float) -> float:
        """Bytes of the K and V caches of `tokens` positions (all sequences): 2*layers*kv_dim*tokens*bytes."""
        return 2 * self.layers * self.kv_dim * tokens * bytes_per_element

    def to_dict(self) -> dict:
        return asdict(self) | {"params": self.params(), "active_params": self.active_params()}


# --- the spec string ----------------------------------------------------------------------
_SPEC_KEYS = tuple(f.name for f in fields(TransformerSpec) if f.name != "name")
_REQUIRED = ("layers", "hidden", "heads", "ffn", "vocab")
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
        if key in ("tied_embeddings", "gated_mlp", "bias"):
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


def spec_for_zoo(name: str) -> TransformerSpec:
    """The TransformerSpec of a zoo decoder (gpt2, llama-*, mistral-*, mixtral-*), read from its config."""
    import inspect

    from . import zoo
    from . import zoo_transformers as tx

    entry = zoo.get(name)
    cfg = getattr(entry.build, "args", (None,))[0]
    if isinstance(cfg, tx.LlamaConfig):
        return TransformerSpec(
            layers=cfg.layers, hidden=cfg.dim, heads=cfg.heads, kv_heads=cfg.kv_heads, ffn=cfg.ffn_dim,
            vocab=cfg.vocab, experts=cfg.experts, top_k=cfg.top_k, name=entry.name,
        )
    if entry.build is tx.gpt2:
        d = {k: p.default for k, p in inspect.signature(tx.GPT2LM).parameters.items()}
        return TransformerSpec(
            layers=d["layers"], hidden=d["dim"], heads=d["heads"], kv_heads=d["heads"], ffn=4 * d["dim"],
            vocab=d["vocab"], tied_embeddings=True, gated_mlp=False, norm="layer", max_positions=d["max_positions"],
            bias=True, name=entry.name,
        )
    decoders = [n for n, e in zoo.ZOO.items() if e.task == "causal-lm"]
    raise ChipfitError(f"Zoo model {entry.name!r} is not a decoder-only transformer; use one of {', '.join(decoders)}.")


# --- activation memory ----------------------------------------------------------------------
def activation_bytes_per_layer(spec: TransformerSpec, batch: int, seq_len: int, act_bytes: int,
                               flash_attention: bool = True) -> float:
    """Bytes one layer saves for backward (Korthikanti et al. 2022, Sec. 4.1, no dropout).

    With s*b tokens and e bytes per element: norms 2*e*sbh (each norm's input); attention
    e*sb*(h [QKV input] + q + kv [Q, K] + kv [V] + q [output-projection input]; q = heads*head_dim,
    h unless head_dim says otherwise) plus the
    flash log-sum-exp 4*b*a*s; MLP e*sb*(h + 4f) gated (gate, up, silu and product) or
    e*sb*(h + 2f) for GELU; MoE: the routed copies e*sb*k*h, k times the expert tensors, the
    expert outputs e*sb*k*h and the fp32 router probabilities 4*sb*E. For GPT (kv = h,
    f = 4h, e = 2) this is 32*sbh: the paper's 34*sbh less its two sbh dropout masks. Without
    flash attention add the softmax output e*a*s*s*b (the paper's 5*as^2*b adds dropout's 3).
    """
    t, h, q, kv, f = batch * seq_len, spec.hidden, spec.q_dim, spec.kv_dim, spec.ffn
    norms = 2 * act_bytes * t * h
    attn = act_bytes * t * (h + 2 * q + 2 * kv) + LOGSUMEXP_BYTES * batch * spec.heads * seq_len
    if not flash_attention:
        attn += act_bytes * spec.heads * seq_len * seq_len * batch
    per_expert = (4 if spec.gated_mlp else 2) * f
    if spec.moe:
        k = spec.top_k
        mlp = act_bytes * t * (h + k * (2 * h + per_expert)) + FP32_BYTES * t * spec.experts
    else:
        mlp = act_bytes * t * (h + per_expert)
    return norms + attn + mlp


# --- the profile ----------------------------------------------------------------------------
@dataclass
class _Ops:
    """Collects forward ops and mirrors each into the backward (2x FLOPs)."""

    forward: list[Op]
    backward: list[Op]
    dtype: str
    train: bool

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
             matrices: list[tuple[int, int, int, int]], act: int, wbytes: int) -> None:
    """One matmul op for a group of (in, out, rows, copies) matrices: copies of in x out weights
    that together see `rows` rows. Backward: grad input and grad weight, each one forward product."""
    flops = sum(2 * r * i * o + (r * o if spec.bias else 0) for i, o, r, _ in matrices)
    weights = sum(c * i * o for i, o, _, c in matrices) * wbytes
    x_in = sum(r * i for i, _, r, _ in matrices) * act
    y_out = sum(r * o for _, o, r, _ in matrices) * act
    bwd = (BACKWARD_FACTOR * flops, 2 * y_out + x_in + weights, x_in + weights)
    ops.add(name, "matmul", module, flops, x_in + weights, y_out, bwd)


def _casts(ops: _Ops, module: str, params: int) -> None:
    """AMP: fp32 weights cast to 16 bits in forward; 16-bit weight gradients cast to fp32 in backward."""
    ops.add("amp.weight_cast", "memory", module, 0, 4 * params, 2 * params, (0, 2 * params, 4 * params))


def profile_spec(
    spec: TransformerSpec,
    *,
    mode: str = "train",
    batch: int = 1,
    seq_len: int,
    precision: str = "fp32",
    optimizer: str = "adamw",
    flash_attention: bool = True,
) -> Profile:
    """One step of `spec` as a Profile: the forward (inference) or forward, loss, backward and
    optimizer step (training) of `batch` sequences of `seq_len` tokens, with the tracer's conventions.

    Ops are grouped per layer and family (module paths 'layers.3.attn', 'layers.3.mlp', ...).
    flash_attention=False adds the S x S attention probabilities to the saved activations.
    """
    Workload(model=spec.name, mode=mode, batch=batch, seq_len=seq_len, precision=precision, optimizer=optimizer)
    if spec.max_positions is not None and seq_len > spec.max_positions:
        raise ChipfitError(
            f"Sequence length {seq_len} exceeds the {spec.max_positions} positions of {spec.name!r}; "
            f"give {spec.max_positions} or fewer."
        )
    train = mode == "train"
    act = ACTIVATION_BYTES[precision]
    amp = train and act == 2
    wbytes = act  # matmuls read weights in the compute dtype (AMP casts them first)
    ops = _Ops([], [], COMPUTE_DTYPE[precision], train)
    b, s, h, q, kv, v = batch, seq_len, spec.hidden, spec.q_dim, spec.kv_dim, spec.vocab
    t = b * s

    # Embedding lookup (and learned positions): gathers, 0 FLOPs; backward writes the whole gradient table.
    table_grad = spec.embedding_params() * (MASTER_WEIGHT_BYTES if train else act)
    gathered = t * h * act * (2 if spec.max_positions else 1)
    ops.add("embedding", "memory", "embed", 0, t * TOKEN_ID_BYTES + gathered, gathered, (0, gathered, table_grad))
    if spec.max_positions:
        ops.add("add_positions", "elementwise", "embed", t * h, 2 * t * h * act, t * h * act)

    norm_flops = NORM_FLOPS_PER_ELEMENT[spec.norm]
    for i in range(spec.layers):
        p = f"layers.{i}"
        ops.add("norm", "norm", f"{p}.norm", 2 * norm_flops * t * h, 2 * t * h * act, 2 * t * h * act)
        _matmuls(ops, spec, f"{p}.attn", "qkvo_proj", [(i_, o, t, 1) for _, i_, o in spec.attention_matrices()],
                 act, wbytes)
        qkv, out = t * (q + 2 * kv) * act, t * q * act
        lse = LOGSUMEXP_BYTES * b * spec.heads * s
        ops.add("sdpa", "attention", f"{p}.attn", 4 * b * s * s * q, qkv, out + lse,
                (BACKWARD_FACTOR * 4 * b * s * s * q, qkv + 2 * out + lse, qkv), causal=True)
        rotary = 0 if spec.max_positions else ROTARY_FLOPS_PER_ELEMENT * t * (q + kv)
        rot_bytes = 0 if spec.max_positions else t * (q + kv) * act
        ops.add("rotary_residual", "elementwise", f"{p}.attn", rotary + t * h, rot_bytes + 2 * t * h * act,
                rot_bytes + t * h * act)
        if spec.moe:
            k, e = spec.top_k, spec.experts
            ops.add("router_softmax_topk", "reduction", f"{p}.mlp", (LOG_SOFTMAX_FLOPS_PER_ELEMENT + 1) * t * e,
                    t * e * act, t * e * FP32_BYTES + t * k * (FP32_BYTES + TOKEN_ID_BYTES))
            ops.add("dispatch", "memory", f"{p}.mlp", 0, t * h * act, t * k * h * act)
            groups = [(h, e, t, 1)] + [(i_, o, t * k, e) for _, i_, o in spec.expert_matrices()]
            act_elems = t * k * spec.ffn
            combine = 2 * t * k * h  # weight each expert output, sum the top_k
        else:
            groups = [(i_, o, t, 1) for _, i_, o in spec.expert_matrices()]
            act_elems, combine = t * spec.ffn, 0
        _matmuls(ops, spec, f"{p}.mlp", "mlp_proj", groups, act, wbytes)
        gated = spec.gated_mlp
        mlp_read = (2 if gated else 1) * act_elems * act + combine * act + 2 * t * h * act
        mlp_written = act_elems * act + t * h * act
        ops.add("activation_residual", "elementwise", f"{p}.mlp", (2 if gated else 1) * act_elems + combine + t * h,
                mlp_read, mlp_written)
        if amp:
            _casts(ops, p, spec.layer_params() - 2 * spec.norm_params)

    ops.add("norm", "norm", "final_norm", norm_flops * t * h, t * h * act, t * h * act)
    if amp:
        _casts(ops, "lm_head", v * h)
    _matmuls(ops, spec, "lm_head", "lm_head", [(h, v, t, 1)], act, wbytes)
    if train:
        ops.add("cross_entropy", "reduction", "loss", LOG_SOFTMAX_FLOPS_PER_ELEMENT * t * v + t,
                t * v * act, t * v * FP32_BYTES + FP32_BYTES,
                (LOG_SOFTMAX_BACKWARD_FLOPS_PER_ELEMENT * t * v + t, 2 * t * v * FP32_BYTES, t * v * act))

    all_ops = ops.forward + ops.backward[::-1]
    if train:
        flops_per, read_per, written_per = OPTIMIZER_COST[optimizer]
        owners = [("embed", spec.embedding_params())]
        owners += [(f"layers.{i}", spec.layer_params()) for i in range(spec.layers)]
        owners += [("final_norm", spec.norm_params)]
        if not spec.tied_embeddings:
            owners += [("lm_head", v * h)]
        for module, n in owners:
            all_ops.append(Op(f"{optimizer}.step", "elementwise", float(flops_per * n), read_per * n,
                              written_per * n, "fp32", "optimizer", module))

    params = spec.params()
    saved = 0.0
    if train:
        per_layer = activation_bytes_per_layer(spec, b, s, act, flash_attention)
        head = t * TOKEN_ID_BYTES + 2 * t * h * act + t * v * FP32_BYTES  # ids, final norm and head inputs, log-probs
        saved = spec.layers * per_layer + head
    peak = saved + _transient_bytes(spec, t, act, train)
    return Profile(
        model=spec.name, mode=mode, batch=b, seq_len=s, dtype=COMPUTE_DTYPE[precision], ops=all_ops,
        params=params, trainable_params=params,
        param_bytes=params * (MASTER_WEIGHT_BYTES if train else act),
        activation_bytes=int(saved), peak_activation_bytes=int(peak),
        notes=_notes(spec, train, precision, optimizer, flash_attention),
    )


def _transient_bytes(spec: TransformerSpec, tokens: int, act: int, train: bool) -> float:
    """Largest set of temporaries live at once: the residual stream, a layer input and the MLP
    intermediates (3 or 2 of width k*f), or the logits (and in training their fp32 log-probs and gradient)."""
    width = spec.ffn * (spec.top_k if spec.moe else 1) * (3 if spec.gated_mlp else 2)
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
        notes.append(f"MoE: balanced routing, each token costs {spec.top_k} of {spec.experts} experts; "
                     "every expert's weights are read once per step.")
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
