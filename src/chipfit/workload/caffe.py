"""Caffe deploy prototxt -> Profile: layers parsed, shapes propagated from the input dims.

Caffe blobs are fp32 NCHW. FLOPs follow chipfit.workload.formulas (the tracer's conventions): a
multiply-add is 2, a bias add 1 per output element, norms 5 per element plus 1 per affine
tensor, softmax 5 per element, pooling 1 per window element. Layers that only relabel
memory in Caffe (Flatten, Reshape, Split, Dropout at inference) run no kernel and give no Op.
Only inference is profiled: Caffe files carry no optimizer, and training needs a PyTorch source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ChipfitError, check_file, closest
from ..limits import MAX_DIM, MAX_OPERATORS, check_count, check_shape
from .graph_memory import peak_live_bytes
from .profile import Op, Profile, conv_window
from .protobuf_text import Message, parse

DTYPE = "fp32"
BYTES_PER_VALUE = 4  # Caffe's Blob<float>
MAX_PROTOTXT_BYTES = 64 * 2**20  # a deploy prototxt is kilobytes; refuse to parse huge files
NORM_FLOPS_PER_ELEMENT = 5.0  # as chipfit.workload.formulas: mean, variance, normalise

Shape = tuple[int, ...]


@dataclass(frozen=True)
class CaffeLayer:
    """One layer after shape propagation.

    params: learned weights and biases. stats: stored values that are not learned (BatchNorm's
    mean, variance and moving-average factor). kind is None for layers that run no kernel.
    """

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    output_shapes: tuple[Shape, ...]
    params: int
    stats: int
    kind: str | None
    flops: float
    window: str | None = None  # convolutions: kernel size and stride (profile.conv_window)


@dataclass
class CaffeNet:
    """A parsed deploy network: its inputs and its layers in order."""

    name: str
    inputs: dict[str, Shape]
    layers: list[CaffeLayer] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def stats(self) -> int:
        return sum(layer.stats for layer in self.layers)


@dataclass(frozen=True)
class _Out:
    shapes: tuple[Shape, ...]
    kind: str | None = None
    flops: float = 0.0
    params: int = 0
    stats: int = 0
    window: str | None = None


def profile_prototxt(path: str | Path, batch: int | None = None, mode: str = "infer") -> Profile:
    """Profile one inference step of a Caffe deploy prototxt; `batch` replaces the input's first dim."""
    if mode != "infer":
        raise ChipfitError(
            f"Caffe file {path} can be profiled for inference only (mode 'infer'); profile training from a PyTorch source."
        )
    net = parse_net(path, batch)
    ops: list[Op] = []
    sizes: dict[str, int] = {name: math.prod(shape) * BYTES_PER_VALUE for name, shape in net.inputs.items()}
    shapes: dict[str, Shape] = dict(net.inputs)
    for layer in net.layers:
        read = sum(math.prod(shapes[b]) for b in layer.bottoms) + layer.params + layer.stats
        for top, shape in zip(layer.tops, layer.output_shapes):
            shapes[top] = shape
            sizes[top] = math.prod(shape) * BYTES_PER_VALUE
        if layer.kind is None:
            continue
        written = sum(math.prod(s) for s in layer.output_shapes)
        ops.append(
            Op(
                name=f"caffe.{layer.type}",
                kind=layer.kind,
                flops=float(layer.flops),
                bytes_read=read * BYTES_PER_VALUE,
                bytes_written=written * BYTES_PER_VALUE,
                dtype=DTYPE,
                phase="forward",
                module=layer.name,
                window=layer.window,
            )
        )
    consumed = {b for layer in net.layers for b in layer.bottoms}
    produced = [t for layer in net.layers for t in layer.tops]
    outputs = [t for t in dict.fromkeys(produced) if t not in consumed or _in_place_last(net, t)]
    steps = [(layer.bottoms, layer.tops) for layer in net.layers]
    notes = [
        "Parsed from a Caffe prototxt: inference only, fp32; FLOPs follow the tracer's conventions (a multiply-add is 2).",
        "params counts learned weights and biases, as published parameter counts do;"
        f" the {net.stats} BatchNorm statistics Caffe stores beside them are in param_bytes only.",
    ]
    return Profile(
        model=net.name,
        mode="infer",
        batch=next(iter(net.inputs.values()))[0],
        seq_len=None,
        dtype=DTYPE,
        ops=ops,
        params=net.params,
        trainable_params=net.params,
        param_bytes=(net.params + net.stats) * BYTES_PER_VALUE,
        activation_bytes=0,
        peak_activation_bytes=peak_live_bytes(steps, sizes, keep=outputs, initial=list(net.inputs)),
        notes=notes,
    )


def _in_place_last(net: CaffeNet, blob: str) -> bool:
    """Whether the last layer touching `blob` writes it (so nothing reads its final value)."""
    for layer in reversed(net.layers):
        if blob in layer.tops:
            return True
        if blob in layer.bottoms:
            return False
    return False


def parse_net(path: str | Path, batch: int | None = None, max_bytes: int = MAX_PROTOTXT_BYTES) -> CaffeNet:
    """Read a deploy prototxt and propagate blob shapes from its input dims."""
    path = Path(path)
    check_file(path, "Caffe file", "give the path of a deploy .prototxt", max_bytes,
               f"over the {max_bytes}-byte limit for a prototxt; give the deploy prototxt, not weights")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ChipfitError(f"Caffe file {path} is not text; give the deploy .prototxt, not the .caffemodel weights.") from None
    root = parse(text, f"Caffe file {path}")
    if root.has("layers"):
        raise ChipfitError(
            f"Caffe file {path} uses the old V1 'layers' format; convert it with Caffe's upgrade_net_proto_text tool."
        )
    if batch is not None and batch < 1:
        raise ChipfitError(f"Batch {batch} is not a positive number of samples; give --batch 1 or more.")
    try:
        inputs = _header_inputs(root, path)
    except ValueError as exc:
        raise ChipfitError(f"Caffe file {path} has an input dim that is {exc}; fix the prototxt.") from None
    net = CaffeNet(name=str(root.get("name") or path.stem), inputs=inputs)
    if not net.inputs and not any(layer.get("type") == "Input" for layer in root.all("layer")):
        raise ChipfitError(f"Caffe file {path} declares no input dims; add an Input layer or input/input_shape lines.")
    check_count(len(root.all("layer")), "layers", f"Caffe file {path}", MAX_OPERATORS)
    shapes: dict[str, Shape] = {}
    for name, shape in net.inputs.items():
        check_shape(shape, f"Caffe file {path} input {name!r}")
        net.inputs[name] = shapes[name] = _with_batch(shape, batch)
    for index, layer in enumerate(root.all("layer")):
        name = str(layer.get("name") or f"layer{index}")
        ltype = str(layer.get("type") or "")
        if not _in_test_phase(layer):
            continue
        bottoms = tuple(str(b) for b in layer.all("bottom"))
        tops = tuple(str(t) for t in layer.all("top"))
        where = f"Caffe file {path} layer {name!r}"
        handler = _LAYERS.get(ltype)
        if handler is None:
            raise ChipfitError(
                f"{where} has unknown type {ltype!r}; use one of the supported types"
                f" ({', '.join(sorted(_LAYERS))}).{closest(ltype, _LAYERS)}"
            )
        missing = [b for b in bottoms if b not in shapes]
        if missing:
            raise ChipfitError(
                f"{where} reads blob {missing[0]!r} that no input or earlier layer produces; declare it with an Input layer or input_shape."
            )
        try:
            out = handler(layer, [shapes[b] for b in bottoms], where)
            for shape in out.shapes:
                check_shape(shape, where)
        except (ValueError, TypeError) as exc:  # a field of the wrong kind: a word, a fraction
            raise ChipfitError(f"{where} has a field that is {exc}; fix the prototxt.") from None
        if ltype == "Input":
            out = _Out(tuple(_with_batch(s, batch) for s in out.shapes))
            net.inputs.update(zip(tops, out.shapes))
        if len(out.shapes) < len(tops):
            raise ChipfitError(f"{where} has {len(tops)} tops but makes {len(out.shapes)} outputs; fix its top lines.")
        shapes.update(zip(tops, out.shapes))
        net.layers.append(
            CaffeLayer(name, ltype, bottoms, tops, out.shapes[: len(tops)], out.params, out.stats, out.kind, out.flops,
                       out.window)
        )
    return net


def _header_inputs(root: Message, path: Path) -> dict[str, Shape]:
    """Inputs declared the old way: `input:` names with `input_shape {dim}` or 4 `input_dim` each."""
    names = [str(n) for n in root.all("input")]
    if not names:
        return {}
    if root.has("input_shape"):
        shapes = [tuple(_int(d) for d in s.all("dim")) for s in root.all("input_shape")]
    else:
        dims = [_int(d) for d in root.all("input_dim")]
        if len(dims) != 4 * len(names):
            raise ChipfitError(
                f"Caffe file {path} gives {len(dims)} input_dim values for {len(names)} input(s); give 4 (N, C, H, W) per input."
            )
        shapes = [tuple(dims[4 * i : 4 * i + 4]) for i in range(len(names))]
    if len(shapes) != len(names):
        raise ChipfitError(f"Caffe file {path} names {len(names)} inputs but gives {len(shapes)} input_shape blocks; give one each.")
    return dict(zip(names, shapes))


def _int(value) -> int:
    """A prototxt field that must be a whole number (3.5, 1e30 or a word is refused, not truncated)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ValueError(f"{value!r}, not a whole number")
    if abs(value) > MAX_DIM:
        raise ValueError(f"{value!r}, beyond the {MAX_DIM} any size can be")
    return int(value)


def _with_batch(shape: Shape, batch: int | None) -> Shape:
    return (batch, *shape[1:]) if batch is not None and shape else shape


def _in_test_phase(layer: Message) -> bool:
    """Deploy nets run in the TEST phase; layers included only in TRAIN are left out."""
    includes = [r.get("phase") for r in layer.all("include") if r.has("phase")]
    excludes = [r.get("phase") for r in layer.all("exclude") if r.has("phase")]
    return (not includes or "TEST" in includes) and "TEST" not in excludes


# --- parameters ---------------------------------------------------------------------------------
def _param(layer: Message, name: str) -> Message:
    return layer.get(name) or Message()


def _per_axis(p: Message, name: str, n: int, default: int, where: str) -> list[int]:
    """kernel_size/stride/pad/dilation: one value for all spatial axes, one per axis, or _h/_w."""
    if p.has(f"{name}_h") or p.has(f"{name}_w"):
        if n != 2:
            raise ChipfitError(f"{where} gives {name}_h/{name}_w for a {n}-D input; give {name} per axis.")
        values = [_int(p.get(f"{name}_h", default)), _int(p.get(f"{name}_w", default))]
        least = 1 if name == "stride" else 0
        if min(values) < least:
            raise ChipfitError(f"{where} gives {name}_h/{name}_w {min(values)}; give {least} or more.")
        return values
    values = [_int(v) for v in p.all(name)]
    if not values:
        return [default] * n
    least = 1 if name.startswith(("stride", "dilation")) else 0
    if min(values) < least:
        raise ChipfitError(f"{where} gives {name} {min(values)}; give {least} or more.")
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ChipfitError(f"{where} gives {len(values)} {name} values for {n} spatial axes; give 1 or {n}.")
    return values


def _axis(value: int, rank: int, where: str) -> int:
    if not -rank <= value < rank:
        raise ChipfitError(f"{where} uses axis {value} on a blob of {rank} axes; fix its axis.")
    return value % rank


def _only_bottom(shapes: list[Shape], where: str) -> Shape:
    if len(shapes) < 1:
        raise ChipfitError(f"{where} has no bottom; give the blob it reads.")
    return shapes[0]


def _positive(dims: list[int], where: str) -> list[int]:
    if any(d < 1 for d in dims):
        raise ChipfitError(f"{where} makes an empty output {tuple(dims)}; check its kernel, stride and the input size.")
    return dims


# --- layers: output shapes, FLOPs (a multiply-add is 2), params --------------------------------
def _convolution(layer: Message, shapes: list[Shape], where: str, transposed: bool = False) -> _Out:
    x = _only_bottom(shapes, where)
    p = _param(layer, "convolution_param")
    axis = _axis(_int(p.get("axis", 1)), len(x), where)
    n = len(x) - axis - 1
    k = _per_axis(p, "kernel", n, 0, where) if p.has("kernel_h") else _per_axis(p, "kernel_size", n, 0, where)
    if not all(k):
        raise ChipfitError(f"{where} gives no kernel_size; set it in convolution_param.")
    s = _per_axis(p, "stride", n, 1, where)
    pad = _per_axis(p, "pad", n, 0, where)
    d = _per_axis(p, "dilation", n, 1, where)
    group = _int(p.get("group", 1))
    c_in, c_out = x[axis], _int(p.get("num_output", 0))
    if c_out < 1 or c_in % group or c_out % group:
        raise ChipfitError(f"{where} has num_output {c_out} and group {group} for {c_in} input channels; channels must split evenly into groups.")
    spatial_in = x[axis + 1 :]
    if transposed:
        spatial = [st * (i - 1) + di * (kk - 1) + 1 - 2 * pp for i, kk, st, pp, di in zip(spatial_in, k, s, pad, d)]
    else:
        spatial = [(i + 2 * pp - (di * (kk - 1) + 1)) // st + 1 for i, kk, st, pp, di in zip(spatial_in, k, s, pad, d)]
    out = (*x[: axis], c_out, *_positive(spatial, where))
    weights = c_out * (c_in // group) * math.prod(k)
    bias = c_out if p.get("bias_term", True) else 0
    outer = math.prod(x[:axis])
    # Each output (conv) or input (deconv) position does (channels/group) x kernel multiply-adds per channel.
    positions = math.prod(spatial_in) * c_in if transposed else math.prod(spatial) * c_out
    per_position = (c_out // group if transposed else c_in // group) * math.prod(k)
    bias_adds = math.prod(out) if bias else 0
    return _Out((out,), "conv", 2.0 * outer * positions * per_position + bias_adds, weights + bias,
                window=conv_window(tuple(k), tuple(s)))


def _deconvolution(layer: Message, shapes: list[Shape], where: str) -> _Out:
    return _convolution(layer, shapes, where, transposed=True)


def _pooling(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    if len(x) != 4:
        raise ChipfitError(f"{where} pools a blob of shape {x}; Caffe pooling takes N x C x H x W.")
    p = _param(layer, "pooling_param")
    if p.get("global_pooling", False):
        k, s, pad = list(x[2:]), [1, 1], [0, 0]
    else:
        k = _per_axis(p, "kernel", 2, 0, where) if p.has("kernel_h") else _per_axis(p, "kernel_size", 2, 0, where)
        if not all(k):
            raise ChipfitError(f"{where} gives no kernel_size; set it in pooling_param or use global_pooling.")
        s = _per_axis(p, "stride", 2, 1, where)
        pad = _per_axis(p, "pad", 2, 0, where)
    ceil = str(p.get("round_mode", "CEIL")) != "FLOOR"
    spatial = []
    for size, kk, st, pp in zip(x[2:], k, s, pad):
        span = size + 2 * pp - kk
        out = (-(-span // st) if ceil else span // st) + 1
        if pp and (out - 1) * st >= size + pp:  # Caffe: the last window must start inside the image
            out -= 1
        spatial.append(out)
    out_shape = (x[0], x[1], *_positive(spatial, where))
    # One compare (MAX) or add (AVE) per window element.
    return _Out((out_shape,), "reduction", float(math.prod(out_shape) * math.prod(k)))


def _inner_product(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    p = _param(layer, "inner_product_param")
    axis = _axis(_int(p.get("axis", 1)), len(x), where)
    n_out = _int(p.get("num_output", 0))
    if n_out < 1:
        raise ChipfitError(f"{where} gives no num_output; set it in inner_product_param.")
    rows, k = math.prod(x[:axis]), math.prod(x[axis:])
    bias = bool(p.get("bias_term", True))
    params = k * n_out + (n_out if bias else 0)
    return _Out(((*x[:axis], n_out),), "matmul", 2.0 * rows * k * n_out + (rows * n_out if bias else 0), params)


def _elementwise(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    return _Out((x,), "elementwise", float(math.prod(x)))


def _prelu(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    shared = _param(layer, "prelu_param").get("channel_shared", False)
    return _Out((x,), "elementwise", 2.0 * math.prod(x), 1 if shared else x[1])  # compare, multiply


def _lrn(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    p = _param(layer, "lrn_param")
    size = _int(p.get("local_size", 5))
    window = size * size if str(p.get("norm_region", "ACROSS_CHANNELS")) == "WITHIN_CHANNEL" else size
    # Square and add over the window, then scale, power and divide.
    return _Out((x,), "norm", float(math.prod(x) * (2 * window + 3)))


def _batch_norm(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    channels = x[1] if len(x) > 1 else 1
    # Blobs: mean (C), variance (C), moving-average factor (1); no affine part (that is a Scale layer).
    return _Out((x,), "norm", NORM_FLOPS_PER_ELEMENT * math.prod(x), stats=2 * channels + 1)


def _scale(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    p = _param(layer, "scale_param")
    bias = bool(p.get("bias_term", False))
    flops = math.prod(x) * (2.0 if bias else 1.0)
    if len(shapes) > 1:  # the scale comes from the second bottom, not a learned blob
        return _Out((x,), "elementwise", flops, math.prod(shapes[1]) if bias else 0)
    axis = _axis(_int(p.get("axis", 1)), len(x), where)
    num_axes = _int(p.get("num_axes", 1))
    end = len(x) if num_axes == -1 else axis + num_axes
    per = math.prod(x[axis:end])
    return _Out((x,), "elementwise", flops, per * (2 if bias else 1))


def _eltwise(layer: Message, shapes: list[Shape], where: str) -> _Out:
    if len(shapes) < 2:
        raise ChipfitError(f"{where} combines {len(shapes)} bottom(s); Eltwise needs two or more.")
    if any(s != shapes[0] for s in shapes):
        raise ChipfitError(f"{where} combines blobs of different shapes {shapes}; Eltwise needs equal shapes.")
    p = _param(layer, "eltwise_param")
    n = math.prod(shapes[0])
    coeffs = [float(c) for c in p.all("coeff")]
    scaled = n * len(shapes) if any(c != 1.0 for c in coeffs) else 0
    return _Out((shapes[0],), "elementwise", float(n * (len(shapes) - 1) + scaled))


def _concat(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    p = _param(layer, "concat_param")
    axis = _axis(_int(p.get("axis", p.get("concat_dim", 1))), len(x), where)
    for s in shapes:
        if len(s) != len(x) or s[:axis] + s[axis + 1 :] != x[:axis] + x[axis + 1 :]:
            raise ChipfitError(f"{where} joins blobs {shapes} that differ outside axis {axis}; check the bottoms.")
    out = (*x[:axis], sum(s[axis] for s in shapes), *x[axis + 1 :])
    return _Out((out,), "memory")


def _softmax(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    _axis(_int(_param(layer, "softmax_param").get("axis", 1)), len(x), where)
    return _Out((x,), "reduction", 5.0 * math.prod(x))  # max, subtract, exp, sum, divide


def _view(layer: Message, shapes: list[Shape], where: str) -> _Out:
    """Dropout at inference and Split: the tops share the bottom's memory."""
    x = _only_bottom(shapes, where)
    return _Out((x,) * max(1, len(layer.all("top"))))


def _flatten(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    p = _param(layer, "flatten_param")
    start = _axis(_int(p.get("axis", 1)), len(x), where)
    end = _axis(_int(p.get("end_axis", -1)), len(x), where)
    return _Out(((*x[:start], math.prod(x[start : end + 1]), *x[end + 1 :]),))


def _reshape(layer: Message, shapes: list[Shape], where: str) -> _Out:
    x = _only_bottom(shapes, where)
    p = _param(layer, "reshape_param")
    dims = [_int(d) for d in _param(p, "shape").all("dim")]
    start = _axis(_int(p.get("axis", 0)), len(x) + 1, where)
    num_axes = _int(p.get("num_axes", -1))
    end = len(x) if num_axes == -1 else start + num_axes
    middle = [x[start + i] if d == 0 else d for i, d in enumerate(dims)]
    out = [*x[:start], *middle, *x[end:]]
    if out.count(-1) > 1:
        raise ChipfitError(f"{where} infers more than one dim (-1); give at most one.")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(x) // known if known else 0
    if math.prod(out) != math.prod(x):
        raise ChipfitError(f"{where} reshapes {x} into {tuple(out)}, which holds a different number of values; fix reshape_param.")
    return _Out((tuple(out),))


def _input(layer: Message, shapes: list[Shape], where: str) -> _Out:
    blocks = _param(layer, "input_param").all("shape")
    tops = layer.all("top")
    if not blocks:
        raise ChipfitError(f"{where} gives no shape; add input_param {{ shape {{ dim: ... }} }}.")
    dims = [tuple(_int(d) for d in b.all("dim")) for b in blocks]
    return _Out(tuple(dims if len(dims) == len(tops) else dims[:1] * len(tops)))


_LAYERS: dict[str, Callable[[Message, list[Shape], str], _Out]] = {
    "Convolution": _convolution,
    "Deconvolution": _deconvolution,
    "Pooling": _pooling,
    "InnerProduct": _inner_product,
    "ReLU": _elementwise,
    "Sigmoid": _elementwise,
    "TanH": _elementwise,
    "PReLU": _prelu,
    "LRN": _lrn,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "Eltwise": _eltwise,
    "Concat": _concat,
    "Softmax": _softmax,
    "Dropout": _view,
    "Split": _view,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Input": _input,
}
