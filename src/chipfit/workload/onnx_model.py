"""ONNX file -> Profile: shapes from onnx's shape inference, FLOPs per node from one table.

FLOPs follow chipfit.workload.formulas (the tracer's conventions), so every source agrees: a
multiply-add is 2 and a fused bias add 1 per output element; elementwise ops one FLOP per output
element per operation, transcendental functions included; norms 5 per element plus 1 per affine
tensor; softmax 5 per element; reductions 1 per input element; pooling 1 per window element.
Operators with no formula are listed in Profile.uncounted, never silently zero. Only inference
is profiled.

Safety: the file is parsed with protobuf only (no pickle), up to a size limit; external data is
read only from the model's own folder, and only the small integer tensors that shape inference
needs (weights' sizes come from their declared dims).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ChipfitError, check_file, closest
from ..limits import MAX_OPERATORS, check_count, check_shape
from .graph_memory import peak_live_bytes
from .profile import Op, Profile, conv_window

# protobuf cannot parse a message over 2 GiB; larger models keep their weights in external data.
MAX_ONNX_BYTES = 2**31 - 1
MAX_EXTERNAL_SHAPE_BYTES = 2**20  # external integer tensors read for shape inference (Reshape targets)
MICROSOFT = "com.microsoft"
NORM_FLOPS_PER_ELEMENT = 5  # as chipfit.workload.formulas: mean, variance, normalise

_BITS = {
    "FLOAT": 32, "UINT8": 8, "INT8": 8, "UINT16": 16, "INT16": 16, "INT32": 32, "INT64": 64, "BOOL": 8,
    "FLOAT16": 16, "DOUBLE": 64, "UINT32": 32, "UINT64": 64, "COMPLEX64": 64, "COMPLEX128": 128,
    "BFLOAT16": 16, "FLOAT8E4M3FN": 8, "FLOAT8E4M3FNUZ": 8, "FLOAT8E5M2": 8, "FLOAT8E5M2FNUZ": 8,
    "FLOAT8E8M0": 8, "UINT4": 4, "INT4": 4, "FLOAT4E2M1": 4, "UINT2": 2, "INT2": 2, "FLOAT6E2M3": 6, "FLOAT6E3M2": 6,
}  # STRING has no fixed size and counts 0
_DTYPE_NAMES = {"FLOAT": "fp32", "FLOAT16": "fp16", "BFLOAT16": "bf16", "DOUBLE": "fp64", "FLOAT4E2M1": "fp4"}
_INDEX_TYPES = ("INT32", "INT64")  # initializers of these types hold shapes and indices, not weights

Shape = tuple[int, ...]


def profile_onnx(
    path: str | Path,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch: int | None = None,
    mode: str = "infer",
    max_bytes: int = MAX_ONNX_BYTES,
) -> Profile:
    """Profile one inference run of an ONNX model.

    input_shapes fixes the shape of named graph inputs; batch sets the first dim of every other
    input. Symbolic dims left unresolved raise ChipfitError naming them.
    """
    path = Path(path)
    if mode != "infer":
        raise ChipfitError(
            f"ONNX file {path} can be profiled for inference only (mode 'infer'); profile training from a PyTorch source."
        )
    if batch is not None and batch < 1:
        raise ChipfitError(f"Batch {batch} is not a positive number of samples; give --batch 1 or more.")
    onnx = _import_onnx()
    model = _load(onnx, path, max_bytes)
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    notes = ["Parsed from an ONNX file: inference only; FLOPs follow the tracer's conventions (a multiply-add is 2)."]
    notes += _fix_inputs(graph, path, init_names, input_shapes or {}, batch)
    tensors = _infer(onnx, model, path, bool(input_shapes) or batch is not None, notes)
    for name, tensor in tensors.items():
        if tensor.shape:
            check_shape([max(d, 1) for d in tensor.shape], f"ONNX file {path} tensor {name!r}")  # 0: an empty tensor

    ops = [_op(onnx, node, index, tensors) for index, node in enumerate(graph.node)]
    subgraphs = sorted({n.op_type for n in graph.node if any(a.g.node or a.graphs for a in n.attribute)})
    if subgraphs:
        notes.append(f"Subgraphs of {', '.join(subgraphs)} are not profiled; those nodes are listed as uncounted.")
    unknown = sorted({op.name for op in ops if not op.counted})
    if unknown:
        notes.append(f"No FLOP formula or no shape for: {', '.join(unknown)}; their FLOPs are left out.")

    params, stats, param_bytes = _count_params(onnx, graph)
    if stats:
        notes.append(f"params leaves out {stats} BatchNormalization running statistics (they are in param_bytes).")
    real_inputs = [i.name for i in graph.input if i.name not in init_names]
    sizes = {name: t.nbytes for name, t in tensors.items() if t.shape is not None and name not in init_names}
    steps = [(list(n.input), list(n.output)) for n in graph.node]
    first = tensors.get(real_inputs[0]) if real_inputs else None
    return Profile(
        model=path.stem,
        mode="infer",
        batch=batch or (first.shape[0] if first and first.shape else 1),
        seq_len=None,
        dtype=_model_dtype(onnx, graph, tensors, real_inputs),
        ops=ops,
        params=params,
        trainable_params=params,
        param_bytes=param_bytes,
        activation_bytes=0,
        peak_activation_bytes=peak_live_bytes(steps, sizes, keep=[o.name for o in graph.output], initial=real_inputs),
        notes=notes,
    )


# --- loading ------------------------------------------------------------------------------------
def _import_onnx():
    try:
        import onnx
        import onnx.shape_inference  # noqa: F401
    except ImportError:
        raise ChipfitError("Profiling ONNX files needs the onnx package: pip install 'chipfit[onnx]'.") from None
    return onnx


def _load(onnx, path: Path, max_bytes: int):
    check_file(path, "ONNX file", "give the path of a .onnx model", max_bytes,
               f"over the {max_bytes}-byte limit; keep the weights in external data beside it")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except Exception:  # protobuf's DecodeError, or a RuntimeWarning-as-error on odd bytes
        _corrupt(path, "its protobuf data ends early or is malformed")
    if not model.HasField("graph") or not model.graph.node:
        _corrupt(path, "it holds no graph of nodes")
    if not model.opset_import:
        _corrupt(path, "it names no operator set")
    check_count(len(model.graph.node), "operators", f"ONNX file {path}", MAX_OPERATORS)
    _check_order(model.graph, path)
    _read_external_data(onnx, model, path)
    return model


def _check_order(graph, path: Path) -> None:
    """Refuse a graph whose nodes read a tensor no input, initializer or earlier node makes: a cycle, or
    nodes out of the topological order ONNX requires (either would profile as 0 FLOPs)."""
    known = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    known |= {i.name for i in graph.input} | {""}
    for node in graph.node:
        missing = next((i for i in node.input if i not in known), None)
        if missing is not None:
            raise ChipfitError(
                f"ONNX file {path} node {node.name or node.op_type!r} reads {missing!r} before any node makes it: "
                "the graph has a cycle or is not in topological order; re-export it, or sort it with "
                "onnx.utils / onnxruntime's optimizer."
            )
        known.update(node.output)


def _corrupt(path: Path, why: str):
    raise ChipfitError(f"ONNX file {path} is truncated or not an ONNX model: {why}.")


def _read_external_data(onnx, model, path: Path) -> None:
    """Check every external-data path stays in the model's folder; read small integer tensors."""
    folder = path.resolve().parent
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ChipfitError(
                f"ONNX file {path} refers to external data {location!r} outside its own folder {folder};"
                " chipfit reads external data only from the model's folder."
            )
        dtype = onnx.TensorProto.DataType.Name(tensor.data_type)
        nbytes = math.prod(tensor.dims) * _BITS.get(dtype, 0) // 8
        if dtype not in _INDEX_TYPES or nbytes > MAX_EXTERNAL_SHAPE_BYTES:
            continue  # weights: their dims are all a profile needs
        if not target.is_file():
            raise ChipfitError(f"ONNX file {path} needs external data {location!r}, which is not in {folder}; copy it there.")
        offset, length = (_external_field(info, key, path, location, default) for key, default in
                          (("offset", 0), ("length", nbytes)))
        if length != nbytes:
            raise ChipfitError(f"ONNX file {path}: external data {location!r} gives length {length} for tensor "
                               f"{tensor.name!r}, which holds {nbytes} bytes; export the model again.")
        with target.open("rb") as f:
            f.seek(offset)
            raw = f.read(length)
        if len(raw) != nbytes:
            raise ChipfitError(f"ONNX file {path}: external data {location!r} ends early for tensor {tensor.name!r}; copy it again.")
        tensor.raw_data = raw
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]


def _external_field(info: dict, key: str, path: Path, location: str, default: int) -> int:
    """An external-data entry's offset or length: a whole number of bytes, 0 or more."""
    raw = info.get(key, str(default))
    if not raw.isdigit():
        raise ChipfitError(f"ONNX file {path}: external data {location!r} has {key} {raw!r}, not a whole number of "
                           "bytes from 0; export the model again.")
    return int(raw)


def _all_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


# --- shapes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tensor:
    shape: Shape | None  # None when shape inference could not tell
    dtype: str  # TensorProto type name, e.g. "FLOAT"

    @property
    def nbytes(self) -> int:
        return math.ceil(math.prod(self.shape or ()) * _BITS.get(self.dtype, 0) / 8) if self.shape is not None else 0


def _dims(type_proto) -> list[int | str] | None:
    """Dims of a tensor type: ints where known, the symbol (or '?') where not; None if rank unknown."""
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in type_proto.tensor_type.shape.dim]


def _fix_inputs(graph, path: Path, init_names: set[str], given: dict, batch: int | None) -> list[str]:
    """Write the user's shapes and batch into the graph inputs; error on symbols left open."""
    notes = []
    inputs = [i for i in graph.input if i.name not in init_names]
    names = [i.name for i in inputs]
    for name in given:
        if name not in names:
            raise ChipfitError(
                f"ONNX file {path} has no input {name!r}; its inputs are {', '.join(names)}.{closest(name, names)}"
            )
    open_dims = []
    for value in inputs:
        dims = _dims(value.type)
        if value.name in given:
            shape = [int(d) for d in given[value.name]]
            if dims is not None and len(shape) != len(dims):
                raise ChipfitError(
                    f"ONNX file {path} input {value.name!r} has {len(dims)} dims {_show(dims)}; give {len(dims)} values, not {len(shape)}."
                )
            for axis, (old, new) in enumerate(zip(dims or [], shape)):
                if isinstance(old, int) and old != new and axis > 0:  # axis 0, the batch, may change
                    raise ChipfitError(
                        f"ONNX file {path} input {value.name!r} has fixed size {old} on axis {axis}; give {old} there, not {new}."
                    )
            dims = shape
        elif batch is not None and dims:
            if isinstance(dims[0], int) and dims[0] != batch:
                notes.append(f"Input {value.name!r} was exported with batch {dims[0]}; profiled with batch {batch}.")
            dims = [batch, *dims[1:]]
        if dims is None or any(not isinstance(d, int) or d < 1 for d in dims):
            open_dims.append(f"{value.name} {_show(dims) if dims is not None else '(shape unknown)'}")
            continue
        check_shape(dims, f"ONNX file {path} input {value.name!r}")
        tensor_shape = value.type.tensor_type.shape
        tensor_shape.ClearField("dim")
        for d in dims:
            tensor_shape.dim.add().dim_value = d
    if open_dims:
        raise ChipfitError(
            f"ONNX file {path} has inputs with unresolved dimensions: {', '.join(open_dims)};"
            " give their shapes with input_shapes (on the command line: --input NAME=1x3x224x224)."
        )
    return notes


def _show(dims) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def _infer(onnx, model, path: Path, user_shapes: bool, notes: list[str]) -> dict[str, _Tensor]:
    """Run shape inference, resolving com.microsoft ops (which onnx has no schema for) as it goes."""
    graph = model.graph
    resolved: set[str] = set()
    while True:
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except onnx.shape_inference.InferenceError as exc:
            if user_shapes:
                raise ChipfitError(
                    f"ONNX file {path} does not accept the input shapes given: {str(exc).strip()}; check input_shapes and batch."
                ) from None
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
            notes.append(f"Shape inference found an inconsistency, so some shapes may be missing: {str(exc).strip()}")
        tensors = _tensor_table(onnx, inferred.graph)
        added = False
        for node in graph.node:
            rule = _MS_SHAPES.get(node.op_type) if node.domain == MICROSOFT else None
            if rule is None or node.output[0] in resolved or node.input[0] not in tensors:
                continue
            ins = [tensors[i].shape if i in tensors else None for i in node.input]
            shape = rule(ins, _attrs(onnx, node)) if ins[0] is not None else None
            if shape is not None:
                elem = onnx.TensorProto.DataType.Value(tensors[node.input[0]].dtype)
                graph.value_info.append(onnx.helper.make_tensor_value_info(node.output[0], elem, shape))
                resolved.add(node.output[0])
                added = True
        if not added:  # each round resolves at least one more node, so this ends
            return tensors


def _tensor_table(onnx, graph) -> dict[str, _Tensor]:
    """Every tensor whose element type is known, with its static shape (None if any dim is open)."""
    out: dict[str, _Tensor] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        elem = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else 0
        if not elem:
            continue
        dims = _dims(value.type)
        shape = tuple(dims) if dims is not None and all(isinstance(d, int) for d in dims) else None
        if value.name not in out or out[value.name].shape is None:
            out[value.name] = _Tensor(shape, onnx.TensorProto.DataType.Name(elem))
    for t in graph.initializer:
        out[t.name] = _Tensor(tuple(t.dims), onnx.TensorProto.DataType.Name(t.data_type))
    return out


def _attrs(onnx, node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _broadcast(a: Shape, b: Shape) -> Shape:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    return tuple(y if x == 1 else x for x, y in zip(a, b))


# --- output shapes of com.microsoft ops (inputs: shapes, None where absent or unknown) ----------
def _ms_attention_shape(ins, attrs):
    """Attention: input (B, S, D) x weights (D, q + k + v hidden) -> (B, S, v hidden)."""
    x, w = ins[0], ins[1] if len(ins) > 1 else None
    if w is None or len(x) != 3:
        return None
    sizes = attrs.get("qkv_hidden_sizes")
    return (x[0], x[1], sizes[2] if sizes else w[1] // 3)


def _ms_mha_shape(ins, attrs):
    """MultiHeadAttention: query (B, S, D), or packed QKV (B, S, N, 3, H) -> (B, S, v hidden)."""
    q = ins[0]
    if len(q) == 5:
        return (q[0], q[1], q[2] * q[4])
    v = ins[2] if len(ins) > 2 else None
    if v is None:
        return None
    return (q[0], q[1], v[2] if len(v) == 3 else v[1] * v[3])


def _ms_fused_matmul_shape(ins, attrs):
    a, b = ins[0], ins[1] if len(ins) > 1 else None
    if b is None or len(a) < 2 or len(b) < 2:
        return None
    m = a[-1] if attrs.get("transA") else a[-2]
    n = b[-2] if attrs.get("transB") else b[-1]
    return (*_broadcast(a[:-2], b[:-2]), m, n)


def _same_as_input(ins, attrs):
    return ins[0]


_MS_SHAPES: dict[str, Callable] = {
    "Attention": _ms_attention_shape,
    "MultiHeadAttention": _ms_mha_shape,
    "FusedMatMul": _ms_fused_matmul_shape,
    "Gelu": _same_as_input,
    "FastGelu": _same_as_input,
    "BiasGelu": _same_as_input,
    "QuickGelu": _same_as_input,
    "SkipLayerNormalization": _same_as_input,
    "SkipSimplifiedLayerNormalization": _same_as_input,
    "SimplifiedLayerNormalization": _same_as_input,
}


# --- FLOPs per node -----------------------------------------------------------------------------
class _NoShape(Exception):
    """A shape the formula needs is unknown, or the node uses a variant it has no count for."""


@dataclass(frozen=True)
class _Node:
    op_type: str
    ins: list[Shape | None]  # None where the input is absent or its shape unknown
    outs: list[Shape | None]
    attrs: dict

    def i(self, k: int) -> Shape:
        if k >= len(self.ins) or self.ins[k] is None:
            raise _NoShape
        return self.ins[k]

    def o(self, k: int = 0) -> Shape:
        if k >= len(self.outs) or self.outs[k] is None:
            raise _NoShape
        return self.outs[k]

    def has(self, k: int) -> bool:
        return k < len(self.ins) and self.ins[k] is not None


def _bias_adds(n: _Node, bias: int) -> int:
    return math.prod(n.o()) if n.has(bias) else 0


def _conv(weight: int, bias: int | None) -> Callable[[_Node], tuple[str, float]]:
    """Conv: every output value is (C/group) x kernel multiply-adds: 2 x |Y| x |W[1:]|, + bias."""
    return lambda n: (
        "conv",
        2.0 * math.prod(n.o()) * math.prod(n.i(weight)[1:]) + (_bias_adds(n, bias) if bias is not None else 0),
    )


def _conv_transpose(n: _Node):
    """ConvTranspose: every input value meets (M/group) x kernel weights: 2 x |X| x |W[1:]|, + bias."""
    return "conv", 2.0 * math.prod(n.i(0)) * math.prod(n.i(1)[1:]) + _bias_adds(n, 2)


def _gemm(n: _Node):
    a = n.i(0)
    return "matmul", 2.0 * math.prod(n.o()) * (a[0] if n.attrs.get("transA") else a[1]) + _bias_adds(n, 2)


def _matmul(n: _Node):
    """MatMul with numpy broadcasting: 2 x |Y| x K, K the inner dim of A."""
    a = n.i(0)
    k = a[-2] if n.attrs.get("transA") and len(a) > 1 else a[-1]
    return "matmul", 2.0 * math.prod(n.o()) * k


def _einsum(n: _Node):
    """Einsum without '...': 2 x product of all index sizes when operands multiply, else |inputs|."""
    equation = n.attrs["equation"].decode() if isinstance(n.attrs["equation"], bytes) else n.attrs["equation"]
    terms = equation.replace(" ", "").split("->")[0].split(",")
    if "." in equation or len(terms) != len(n.ins):
        raise _NoShape
    sizes: dict[str, int] = {}
    for k, term in enumerate(terms):
        sizes.update(zip(term, n.i(k)))
    if len(terms) == 1:
        return "reduction", float(math.prod(n.i(0)))
    return "matmul", 2.0 * math.prod(sizes.values()) * (len(terms) - 1)


def _attention_flops(q_values: int, out_values: int, kv_len: int) -> float:
    """Q.K^T then weights.V: 2 x |Q| x L + 2 x |Y| x L (per head sums over head dims)."""
    return 2.0 * q_values * kv_len + 2.0 * out_values * kv_len


def _onnx_attention(n: _Node):
    """ai.onnx Attention (opset 23): Q, K, V as (B, H, S, D) or (B, S, H x D); past_key at input 4."""
    q, k = n.i(0), n.i(1)
    kv_len = k[2] if len(k) == 4 else k[1]
    if n.has(4):
        kv_len += n.i(4)[2]
    return "attention", _attention_flops(math.prod(q), math.prod(n.o()), kv_len)


def _ms_attention(n: _Node):
    """com.microsoft Attention: the QKV projection (input x weights) and the attention proper."""
    x, w = n.i(0), n.i(1)
    sizes = n.attrs.get("qkv_hidden_sizes") or [w[1] // 3] * 3
    batch, seq = x[0], x[1]
    kv_len = seq + (n.i(4)[3] if n.has(4) else 0)  # past: (2, B, N, P, H)
    projection = 2.0 * batch * seq * x[2] * w[1]
    return "attention", projection + _attention_flops(batch * seq * sizes[0], math.prod(n.o()), kv_len)


def _ms_multi_head_attention(n: _Node):
    """com.microsoft MultiHeadAttention: key (B, L, D) or (B, N, L, H), packed QKV, past_key at input 6."""
    q = n.i(0)
    if len(q) == 5:  # packed (B, S, N, 3, H)
        q_values, kv_len = q[0] * q[1] * q[2] * q[4], q[1]
    else:
        key = n.i(1)
        q_values, kv_len = math.prod(q), key[1] if len(key) == 3 else key[2]
        if n.has(6) and len(key) == 3:
            kv_len += n.i(6)[2]
    return "attention", _attention_flops(q_values, math.prod(n.o()), kv_len)


def _per_element(kind: str, flops: float, of: str = "out") -> Callable[[_Node], tuple[str, float]]:
    """A fixed count per element of the first output (or the first input)."""
    return lambda n: (kind, flops * math.prod(n.o() if of == "out" else n.i(0)))


def _norm(*affine: int) -> Callable[[_Node], tuple[str, float]]:
    """Mean, variance, normalise: NORM_FLOPS_PER_ELEMENT, plus 1 per affine input present."""
    return lambda n: ("norm", (NORM_FLOPS_PER_ELEMENT + sum(n.has(k) for k in affine)) * math.prod(n.i(0)))


def _skip_layer_norm(n: _Node):
    """The skip add (and bias add), then a norm with its scale (and beta)."""
    bias, beta = (4, 3) if n.op_type == "SkipLayerNormalization" else (3, None)
    per = 1 + n.has(bias) + NORM_FLOPS_PER_ELEMENT + n.has(2) + (n.has(beta) if beta else 0)
    return "norm", float(per * math.prod(n.i(0)))


def _variadic(n: _Node):
    """Add, Mul, Sum, ...: one operation per output element for each input after the first."""
    return "elementwise", float(max(1, len(n.ins) - 1) * math.prod(n.o()))


def _pool(n: _Node):
    """One compare or add per window element per output value."""
    return "reduction", float(math.prod(n.o()) * math.prod(n.attrs["kernel_shape"]))


def _lrn(n: _Node):
    return "norm", float((2 * n.attrs["size"] + 3) * math.prod(n.i(0)))


def _resize(n: _Node):
    """Nearest copies; linear blends 2^r neighbours (3 FLOPs a blend); cubic weighs 4^r (2 each)."""
    mode = n.attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    x, y = n.i(0), n.o()
    resized = sum(a != b for a, b in zip(x, y))
    per = {"nearest": 0, "linear": 3 * (2**resized - 1), "cubic": 2 * 4**resized}.get(mode)
    if per is None:
        raise _NoShape
    return ("memory" if per == 0 else "elementwise"), float(per * math.prod(y))


def _memory(n: _Node):
    return "memory", 0.0


_UNARY = (
    "Abs Acos Acosh Asin Asinh Atan Atanh BitwiseNot Ceil Celu Clip Cos Cosh Elu Erf Exp Floor Gelu HardSigmoid"
    " HardSwish IsInf IsNaN LeakyRelu Log Mish Neg Not PRelu Reciprocal Relu Round Selu Shrink Sigmoid Sign Sin Sinh"
    " Softplus Softsign Sqrt Swish Tan Tanh ThresholdedRelu"
).split()
_BINARY = "Add And BitShift BitwiseAnd BitwiseOr BitwiseXor Div Equal Greater GreaterOrEqual Less LessOrEqual Max Mean Min Mod Mul Or Pow Sub Sum Where Xor".split()
_MEMORY = (
    "Cast CastLike Compress Concat Constant ConstantOfShape DepthToSpace Dropout Expand EyeLike Flatten Gather"
    " GatherElements GatherND Identity OneHot Pad Range Reshape ReverseSequence Scatter ScatterElements ScatterND"
    " Shape Size Slice SpaceToDepth Split SplitToSequence Squeeze Tile Transpose Trilu Unsqueeze"
).split()
_REDUCE = "ArgMax ArgMin ReduceL1 ReduceLogSum ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum CumSum TopK".split()

# (domain, op_type) -> formula giving (kind, FLOPs). Domain "" is ai.onnx.
FORMULAS: dict[tuple[str, str], Callable[[_Node], tuple[str, float]]] = {
    ("", "Conv"): _conv(1, bias=2),
    ("", "ConvInteger"): _conv(1, bias=None),
    ("", "QLinearConv"): _conv(3, bias=8),
    ("", "ConvTranspose"): _conv_transpose,
    ("", "Gemm"): _gemm,
    ("", "MatMul"): _matmul,
    ("", "MatMulInteger"): _matmul,
    ("", "QLinearMatMul"): _matmul,
    (MICROSOFT, "FusedMatMul"): _matmul,
    ("", "Einsum"): _einsum,
    ("", "Attention"): _onnx_attention,
    (MICROSOFT, "Attention"): _ms_attention,
    (MICROSOFT, "MultiHeadAttention"): _ms_multi_head_attention,
    ("", "LayerNormalization"): _norm(1, 2),
    ("", "BatchNormalization"): _norm(1, 2),
    ("", "InstanceNormalization"): _norm(1, 2),
    ("", "GroupNormalization"): _norm(1, 2),
    ("", "RMSNormalization"): _norm(1),
    ("", "SimplifiedLayerNormalization"): _norm(1),
    (MICROSOFT, "SimplifiedLayerNormalization"): _norm(1),
    (MICROSOFT, "SkipLayerNormalization"): _skip_layer_norm,
    (MICROSOFT, "SkipSimplifiedLayerNormalization"): _skip_layer_norm,
    ("", "LRN"): _lrn,
    ("", "MaxPool"): _pool,
    ("", "AveragePool"): _pool,
    ("", "LpPool"): _pool,
    ("", "GlobalMaxPool"): _per_element("reduction", 1.0, of="in"),
    ("", "GlobalAveragePool"): _per_element("reduction", 1.0, of="in"),
    ("", "Softmax"): _per_element("reduction", 5.0),  # max, subtract, exp, sum, divide
    ("", "LogSoftmax"): _per_element("reduction", 5.0),
    ("", "ReduceSumSquare"): _per_element("reduction", 2.0, of="in"),
    ("", "ReduceL2"): _per_element("reduction", 2.0, of="in"),
    ("", "ReduceLogSumExp"): _per_element("reduction", 2.0, of="in"),
    ("", "QuantizeLinear"): _per_element("elementwise", 2.0),  # scale and shift
    ("", "DequantizeLinear"): _per_element("elementwise", 2.0),
    ("", "Resize"): _resize,
    ("", "Upsample"): _resize,
    (MICROSOFT, "Gelu"): _per_element("elementwise", 1.0),
    (MICROSOFT, "FastGelu"): _per_element("elementwise", 1.0),
    (MICROSOFT, "QuickGelu"): _per_element("elementwise", 1.0),
    (MICROSOFT, "BiasGelu"): _per_element("elementwise", 2.0),  # bias add, then gelu
    **{("", op): _per_element("elementwise", 1.0) for op in _UNARY},
    **{("", op): _variadic for op in _BINARY},
    **{("", op): _memory for op in _MEMORY},
    **{("", op): _per_element("reduction", 1.0, of="in") for op in _REDUCE},
}
_READS_METADATA_ONLY = {"Shape", "Size"}


def _op(onnx, node, index: int, tensors: dict[str, _Tensor]) -> Op:
    """One Op per node: FLOPs from FORMULAS, bytes from the shapes of its inputs and outputs."""
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    name = f"onnx.{node.op_type}" if not domain else f"{domain}.{node.op_type}"
    ins = [tensors[i].shape if i in tensors else None for i in node.input]
    outs = [tensors[o].shape if o in tensors else None for o in node.output]
    formula = FORMULAS.get((domain, node.op_type))
    kind, flops, counted = "other", 0.0, False
    attrs = _attrs(onnx, node)
    if formula is not None:
        try:
            kind, flops = formula(_Node(node.op_type, ins, outs, attrs))
            counted = True
        except _NoShape:
            pass
    read = 0 if node.op_type in _READS_METADATA_ONLY else sum(tensors[i].nbytes for i in node.input if i in tensors)
    first = next((tensors[t] for t in (*node.output, *node.input) if t in tensors), None)
    return Op(
        name=name,
        kind=kind,
        flops=float(flops),
        bytes_read=read,
        bytes_written=sum(tensors[o].nbytes for o in node.output if o in tensors),
        dtype=_dtype_name(first.dtype) if first else "unknown",
        phase="forward",
        module=node.name or f"{node.op_type}_{index}",
        counted=counted,
        causal=bool(attrs.get("is_causal") or attrs.get("unidirectional")) if kind == "attention" else None,
        window=_conv_window(node.op_type, ins, attrs) if kind == "conv" else None,
    )


def _conv_window(op_type: str, ins: list[Shape | None], attrs: dict) -> str | None:
    """A convolution node's kernel size (its attribute, else its weight's shape) and stride (default 1)."""
    weight = ins[3 if op_type == "QLinearConv" else 1] if len(ins) > 1 else None
    kernel = tuple(attrs.get("kernel_shape") or (weight[2:] if weight else ()))
    return conv_window(kernel, tuple(attrs.get("strides") or (1,) * len(kernel))) if kernel else None


def _dtype_name(onnx_type: str) -> str:
    if onnx_type.startswith("FLOAT8"):
        return "fp8"
    return _DTYPE_NAMES.get(onnx_type, onnx_type.lower())


# --- parameters ---------------------------------------------------------------------------------
def _count_params(onnx, graph) -> tuple[int, int, int]:
    """(params, BatchNorm statistics, bytes of all initializers).

    params are initializer elements, less integer tensors (shapes, indices) and the running mean
    and variance BatchNormalization reads, which PyTorch and Caffe do not count as parameters.
    An Identity of an initializer counts again: exporters merge parameters that hold equal values
    (an untrained model's BatchNorm weights) into one initializer and an Identity per copy.
    """
    stats_names = {n.input[k] for n in graph.node if n.op_type == "BatchNormalization" for k in (3, 4) if len(n.input) > k}
    inits = {t.name: t for t in graph.initializer}
    copies = [(n.output[0], inits[n.input[0]]) for n in graph.node if n.op_type == "Identity" and n.input[0] in inits]
    params = stats = 0
    for name, t in [*inits.items(), *copies]:
        count = math.prod(t.dims)
        if name in stats_names:
            stats += count
        elif onnx.TensorProto.DataType.Name(t.data_type) not in _INDEX_TYPES:
            params += count
    nbytes = sum(_Tensor(tuple(t.dims), onnx.TensorProto.DataType.Name(t.data_type)).nbytes for t in inits.values())
    return params, stats, nbytes


def _model_dtype(onnx, graph, tensors: dict[str, _Tensor], inputs: list[str]) -> str:
    """The element type holding most parameters, else the first input's."""
    totals: dict[str, int] = {}
    for t in graph.initializer:
        dtype = onnx.TensorProto.DataType.Name(t.data_type)
        if dtype not in _INDEX_TYPES:
            totals[dtype] = totals.get(dtype, 0) + math.prod(t.dims)
    if totals:
        return _dtype_name(max(totals, key=totals.get))
    return _dtype_name(tensors[inputs[0]].dtype) if inputs and inputs[0] in tensors else "unknown"
