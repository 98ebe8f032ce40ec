"""Per-operator cost formulas: one table from aten operator to (kind, FLOPs).

In the style of torch/utils/flop_counter.py: each formula is a few lines, registered
against the aten overload packets it covers, and looked up by the operator a trace saw.

Conventions (also written into every Profile's notes):
- A multiply-add is 2 FLOPs. matmul/conv count the bias add as 1 FLOP per output element.
- Attention kernels count QK^T and PV as full Sq x Sk products even when causal; the
  backward is 2x the forward (no recomputation of QK^T counted).
- Pointwise operators (tagged ``torch.Tag.pointwise``): 1 FLOP per output element,
  transcendentals (exp, tanh, ...) included.
- Reductions: 1 FLOP per input element; softmax 5 per element (max, subtract, exp,
  sum, divide), its backward 4 per element; nll_loss 1 per target element.
- Norms: NORM_FLOPS_PER_ELEMENT per element forward (mean, variance, normalise) plus 1
  per element for each affine tensor; the backward NORM_BACKWARD_FACTOR times that.
- Memory operators (copies, gathers, fills, factories) are 0 FLOPs but counted.
- Anything else is kind "other", not counted, and listed in Profile.uncounted.
"""

from __future__ import annotations

from math import prod
from typing import Any, Callable

import torch

from .profile import conv_window

aten = torch.ops.aten

FlopsFn = Callable[[tuple, dict, Any], float]

# kind + formula per aten overload packet; see register().
REGISTRY: dict[torch._ops.OpOverloadPacket, tuple[str, FlopsFn]] = {}

NORM_FLOPS_PER_ELEMENT = 5  # mean (1), variance (2: subtract, square-accumulate), normalise (2)
NORM_BACKWARD_FACTOR = 2
SOFTMAX_FLOPS_PER_ELEMENT = 5
SOFTMAX_BACKWARD_FLOPS_PER_ELEMENT = 4  # y * (g - sum(g * y)): multiply, sum, subtract, multiply

# Operators that read only the gathered rows of their source (bytes read = index + output).
GATHER_OPS = frozenset(
    p for p in (getattr(aten, n, None) for n in ("embedding", "index_select", "gather", "index")) if p is not None
)
# In-place operators that overwrite `self` without reading it.
WRITE_ONLY_SELF_OPS = frozenset(getattr(aten, n) for n in ("copy_", "fill_", "zero_"))


def register(kind: str, *names: str) -> Callable[[FlopsFn], FlopsFn]:
    """Register `fn(args, kwargs, out) -> FLOPs` for aten operators by packet name.

    Names missing from the installed torch (older or newer versions) are skipped.
    """

    def wrap(fn: FlopsFn) -> FlopsFn:
        for name in names:
            packet = getattr(aten, name, None)
            if packet is None:
                continue
            if packet in REGISTRY:
                raise RuntimeError(f"duplicate formula for aten.{name}")
            REGISTRY[packet] = (kind, fn)
        return fn

    return wrap


def named_args(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Arguments by their schema names, defaults filled in."""
    out: dict[str, Any] = {}
    for i, arg in enumerate(func._schema.arguments):
        if i < len(args) and not arg.kwarg_only:
            out[arg.name] = args[i]
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def _numel(x: Any) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 0


def _first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        for item in x:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


# --- matmul ------------------------------------------------------------------------------
@register("matmul", "mm")
def mm_flops(args, kwargs, out) -> float:
    (m, k), n = args[0].shape, args[1].shape[1]
    return 2 * m * n * k


@register("matmul", "addmm", "_addmm_activation")
def addmm_flops(args, kwargs, out) -> float:
    """mat1 @ mat2 plus the bias add (M*N)."""
    (m, k), n = args[1].shape, args[2].shape[1]
    return 2 * m * n * k + m * n


@register("matmul", "bmm")
def bmm_flops(args, kwargs, out) -> float:
    b, m, k = args[0].shape
    return 2 * b * m * args[1].shape[2] * k


@register("matmul", "baddbmm")
def baddbmm_flops(args, kwargs, out) -> float:
    """batch1 @ batch2 plus the add of `self` (B*M*N)."""
    b, m, k = args[1].shape
    n = args[2].shape[2]
    return 2 * b * m * n * k + b * m * n


@register("matmul", "mv")
def mv_flops(args, kwargs, out) -> float:
    m, k = args[0].shape
    return 2 * m * k


@register("matmul", "addmv")
def addmv_flops(args, kwargs, out) -> float:
    m, k = args[1].shape
    return 2 * m * k + m


@register("matmul", "dot", "vdot")
def dot_flops(args, kwargs, out) -> float:
    return 2 * args[0].numel()


# --- convolution -------------------------------------------------------------------------
def _conv_products(weight_shape, spatial, batch: int) -> int:
    """Multiply-adds of one convolution: each of batch*prod(spatial) positions meets every
    weight element. spatial is the output's (or, transposed, the input's) spatial size."""
    return batch * prod(weight_shape) * prod(spatial)


@register("conv", "convolution", "_convolution", "_slow_conv2d_forward", "convolution_overrideable")
def conv_flops(args, kwargs, out) -> float:
    """2 * out_elems * Cin/groups * prod(kernel), plus the bias add per output element."""
    x, w, bias = args[0], args[1], args[2]
    transposed = bool(args[6]) if len(args) > 6 else False
    spatial = x.shape[2:] if transposed else out.shape[2:]
    return 2 * _conv_products(w.shape, spatial, x.shape[0]) + (out.numel() if bias is not None else 0)


@register("conv", "convolution_backward")
def conv_backward_flops(args, kwargs, out) -> float:
    """grad input and grad weight each cost one forward product; grad bias sums grad_output."""
    grad_out, x, w = args[0], args[1], args[2]
    transposed, mask = bool(args[7]), args[10]
    spatial = x.shape[2:] if transposed else grad_out.shape[2:]
    one = 2 * _conv_products(w.shape, spatial, x.shape[0])
    return one * (int(bool(mask[0])) + int(bool(mask[1]))) + (grad_out.numel() if mask[2] else 0)


def conv_window_of(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> str | None:
    """The kernel size and stride (profile.conv_window) of a call op_cost counts as a convolution; None without
    a weight with spatial dimensions."""
    named = named_args(func, args, kwargs)
    weight = named.get("weight")
    spatial = tuple(weight.shape[2:]) if isinstance(weight, torch.Tensor) else ()
    if not spatial:
        return None
    stride = tuple(named.get("stride") or (1,))
    return conv_window(spatial, stride * len(spatial) if len(stride) == 1 else stride)


# --- attention ---------------------------------------------------------------------------
SDPA_FORWARD = (
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
)


def _sdpa_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> float:
    """QK^T (2*B*H*Sq*Sk*D) plus PV (2*B*H*Sq*Sk*Dv), q/k/v laid out (B, H, S, D)."""
    *bh, sq, d = q.shape
    sk, dv = k.shape[-2], v.shape[-1]
    return 2 * prod(bh) * sq * sk * (d + dv)


@register("attention", *SDPA_FORWARD)
def sdpa_flops(args, kwargs, out) -> float:
    return _sdpa_forward(args[0], args[1], args[2])


@register("attention", *(name + "_backward" for name in SDPA_FORWARD))
def sdpa_backward_flops(args, kwargs, out) -> float:
    """grad V, grad P, grad Q, grad K: two forward-sized products each way, 2x the forward."""
    return 2 * _sdpa_forward(args[1], args[2], args[3])


# --- norms -------------------------------------------------------------------------------
def _norm(x: torch.Tensor, *affine: Any) -> float:
    return x.numel() * (NORM_FLOPS_PER_ELEMENT + sum(t is not None for t in affine))


@register("norm", "native_layer_norm")
def layer_norm_flops(args, kwargs, out) -> float:
    return _norm(args[0], args[2] if len(args) > 2 else None, args[3] if len(args) > 3 else None)


@register(
    "norm",
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional",
    "_batch_norm_with_update",
    "_batch_norm_no_update",
    "native_group_norm",
)
def batch_group_norm_flops(args, kwargs, out) -> float:
    return _norm(args[0], args[1], args[2])


@register("norm", "_fused_rms_norm")
def rms_norm_flops(args, kwargs, out) -> float:
    return _norm(args[0], args[2])


@register("norm", "native_layer_norm_backward")
def layer_norm_backward_flops(args, kwargs, out) -> float:
    return NORM_BACKWARD_FACTOR * _norm(args[1], args[5], args[6])


@register("norm", "native_batch_norm_backward", "batch_norm_backward")
def batch_norm_backward_flops(args, kwargs, out) -> float:
    return NORM_BACKWARD_FACTOR * _norm(args[1], args[2])


@register("norm", "native_group_norm_backward")
def group_norm_backward_flops(args, kwargs, out) -> float:
    return NORM_BACKWARD_FACTOR * _norm(args[1], args[4])


@register("norm", "_fused_rms_norm_backward")
def rms_norm_backward_flops(args, kwargs, out) -> float:
    return NORM_BACKWARD_FACTOR * _norm(args[1], args[4])


# --- reductions --------------------------------------------------------------------------
@register(
    "reduction",
    "sum", "mean", "amax", "amin", "max", "min", "aminmax", "prod", "var", "std", "var_mean",
    "std_mean", "norm", "linalg_vector_norm", "argmax", "argmin", "logsumexp", "cumsum",
    "cumprod", "any", "all", "count_nonzero", "topk",
)  # fmt: skip
def reduction_flops(args, kwargs, out) -> float:
    """1 FLOP per input element (topk: one comparison per element for a small k, as in MoE routing)."""
    return _numel(args[0])


@register("reduction", "_softmax", "_log_softmax", "_safe_softmax")
def softmax_flops(args, kwargs, out) -> float:
    return SOFTMAX_FLOPS_PER_ELEMENT * _numel(args[0])


@register("reduction", "_softmax_backward_data", "_log_softmax_backward_data")
def softmax_backward_flops(args, kwargs, out) -> float:
    return SOFTMAX_BACKWARD_FLOPS_PER_ELEMENT * _numel(args[0])


@register("reduction", "nll_loss_forward", "nll_loss2d_forward")
def nll_loss_flops(args, kwargs, out) -> float:
    """Pick one log-probability per target and add them up."""
    return _numel(args[1])


@register("reduction", "nll_loss_backward", "nll_loss2d_backward")
def nll_loss_backward_flops(args, kwargs, out) -> float:
    return _numel(args[2])


# --- pooling -----------------------------------------------------------------------------
def _window(kernel: Any, spatial_dims: int) -> int:
    kernel = list(kernel)
    return prod(kernel * spatial_dims if len(kernel) == 1 else kernel)


@register("reduction", "max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d")  # fmt: skip
def pool_flops(args, kwargs, out) -> float:
    """1 FLOP per window element per output element."""
    y = _first_tensor(out)
    return y.numel() * _window(args[1], args[0].dim() - 2)


@register("reduction", "max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward", "avg_pool2d_backward", "avg_pool3d_backward")  # fmt: skip
def pool_backward_flops(args, kwargs, out) -> float:
    """Each grad_output element is spread over its window."""
    return args[0].numel() * _window(args[2], args[0].dim() - 2)


@register(
    "reduction",
    "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward", "adaptive_max_pool2d_backward",
    "adaptive_max_pool3d_backward",
)  # fmt: skip
def adaptive_pool_flops(args, kwargs, out) -> float:
    """1 FLOP per element of the larger side (input forward, grad input backward)."""
    return max(_numel(args[0]), _numel(args[1]), _numel(_first_tensor(out)))


# --- elementwise without the pointwise tag ------------------------------------------------
@register(
    "elementwise",
    "native_dropout", "native_dropout_backward", "bernoulli_", "bernoulli", "rand_like", "randn_like",
    "uniform_", "normal_", "hardswish", "hardswish_", "hardswish_backward", "hardsigmoid_backward",
    "hardtanh_backward", "leaky_relu_backward", "elu", "elu_", "elu_backward", "softplus", "softplus_backward",
    "mish", "mish_", "mish_backward", "gelu_", "log_sigmoid_forward", "log_sigmoid_backward", "prelu",
    "_prelu_kernel", "_prelu_kernel_backward", "masked_fill", "masked_fill_", "where",
)  # fmt: skip
def untagged_elementwise_flops(args, kwargs, out) -> float:
    """Pointwise operators that lack torch.Tag.pointwise, and random draws: 1 FLOP per output element."""
    return _numel(_first_tensor(out))


# --- memory ------------------------------------------------------------------------------
@register(
    "memory",
    "copy_", "_to_copy", "clone", "cat", "stack", "embedding", "embedding_dense_backward",
    "index_select", "gather", "scatter", "scatter_add", "scatter_reduce", "index_add", "index_copy",
    "index", "index_put", "index_put_", "_index_put_impl_", "masked_scatter", "masked_select",
    "zeros", "ones", "empty", "full", "fill_", "zero_", "zeros_like", "ones_like", "empty_like",
    "full_like", "new_empty", "new_zeros", "new_ones", "new_full", "empty_strided", "new_empty_strided",
    "scalar_tensor", "arange", "lift_fresh_copy", "constant_pad_nd", "repeat", "repeat_interleave",
    "roll", "flip", "tril", "triu", "slice_backward", "select_backward", "index_select_backward",
    "slice_scatter", "select_scatter", "as_strided_scatter", "diagonal_backward", "unfold_backward",
    "split_with_sizes_copy", "unbind_copy", "expand_copy", "permute_copy", "view_copy", "_unsafe_index",
    "randint", "randperm",
)  # fmt: skip
def memory_flops(args, kwargs, out) -> float:
    """Data movement only: 0 FLOPs, but the bytes count."""
    return 0.0


def op_cost(func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: Any) -> tuple[str, float, bool | None]:
    """(kind, FLOPs, causal) of one operator call; kind "other" means no formula (0 FLOPs, uncounted).

    causal is set for attention only: the operator's is_causal argument.
    """
    entry = REGISTRY.get(func.overloadpacket)
    if entry is not None:
        kind, fn = entry
        causal = bool(named_args(func, args, kwargs).get("is_causal", False)) if kind == "attention" else None
        return kind, float(fn(args, kwargs, out)), causal
    if torch.Tag.pointwise in func.tags:
        return "elementwise", float(_numel(_first_tensor(out))), None
    return "other", 0.0, None
