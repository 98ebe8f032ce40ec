"""Trace a torch.nn.Module on fake tensors into a Profile, operator by operator.

The model, its inputs, gradients and optimizer state are FakeTensors: shapes and dtypes
without memory, so a 70B-parameter model traces on a laptop. A TorchDispatchMode above the
FakeTensorMode sees every aten operator autograd and the optimizer issue and prices it
with chipfit.workload.formulas.
"""

from __future__ import annotations

import bisect
import gc
import warnings
import weakref
from collections import Counter
from contextlib import ExitStack, contextmanager
from math import prod
from typing import Any, Callable

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
    UnsupportedOperatorException,
)
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..errors import ChipfitError
from ..limits import MAX_OPERATORS
from .formulas import GATHER_OPS, WRITE_ONLY_SELF_OPS, conv_window_of, op_cost
from .profile import AttentionCall, Op, Profile
from .workload import Workload

DTYPE_NAMES = {
    torch.float32: "fp32",
    torch.float64: "fp64",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float8_e4m3fn: "fp8_e4m3",
    torch.float8_e5m2: "fp8_e5m2",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.int16: "int16",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.bool: "bool",
}
# Compute dtype per precision; fp8/int8 are traced as bf16 (the predictor maps matmuls to their peaks).
COMPUTE_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp8": torch.bfloat16,
    "int8": torch.bfloat16,
}
# Operators that only relabel existing data without an alias annotation in their schema.
METADATA_OPS = frozenset(getattr(torch.ops.aten, n) for n in ("_unsafe_view", "lift_fresh"))
SKIPPED_NAMESPACES = ("prim", "profiler")

CONVENTIONS = (
    "FLOPs count a multiply-add as 2; matmul and conv include their bias add (1 FLOP per output element).",
    "Pointwise ops count 1 FLOP per output element (transcendentals too); reductions 1 per input element, "
    "softmax 5 and its backward 4; norms about 5 per element plus 1 per affine tensor (backward 2x).",
    "Copies, gathers, fills and factories are memory ops: 0 FLOPs, bytes counted.",
    "activation_bytes: tensors saved for backward, each storage once; peak_activation_bytes: the largest "
    "live set of inputs and op outputs during the forward (and loss); both exclude parameters and their "
    "low-precision autocast copies.",
)


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def _tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a kernel touches for `t`: broadcast (stride 0) dimensions count once."""
    if t.numel() == 0:
        return 0
    return t.element_size() * prod(s for s, st in zip(t.shape, t.stride()) if st != 0)


def _unique_tensors(tree: Any) -> list[torch.Tensor]:
    seen, out = set(), []
    for t in tree_leaves(tree):
        if isinstance(t, torch.Tensor):
            key = (_storage_key(t), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
            if key not in seen:
                seen.add(key)
                out.append(t)
    return out


def _is_skipped(func: torch._ops.OpOverload, out: Any) -> bool:
    """Views and metadata queries move no data: they are not operators of the profile."""
    if func.namespace in SKIPPED_NAMESPACES or func.overloadpacket in METADATA_OPS:
        return True
    if any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns):
        return True
    has_tensor_out = any(isinstance(t, torch.Tensor) for t in tree_leaves(out))
    return not has_tensor_out and not func._schema.is_mutable


class _ModulePaths:
    """Dotted path of the module each operator belongs to, in forward and in backward.

    Forward: a stack kept by pre/post hooks. Backward: when a module returns, every autograd
    node its forward created (reachable from its outputs, numbered after it started) is
    labelled with its path, innermost modules first; a backward operator takes the label of
    the node that runs it (torch._C._current_autograd_node). Nodes made outside any module,
    such as the loss, stay at the top level.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self._stack: list[tuple[str, int]] = []  # (path, first autograd sequence number)
        self._labels: dict[Any, str] = {}
        self._handles: list[Any] = []
        for path, module in model.named_modules():
            if path:
                self._handles.append(module.register_forward_pre_hook(self._pre(path)))
                self._handles.append(module.register_forward_hook(self._post(path)))

    @property
    def current(self) -> str:
        node = torch._C._current_autograd_node()
        if node is not None:
            return self._labels.get(node, "")
        return self._stack[-1][0] if self._stack else ""

    def _pre(self, path: str) -> Callable:
        def hook(module: torch.nn.Module, args: Any) -> None:
            self._stack.append((path, torch._C._autograd._get_sequence_nr()))

        return hook

    def _post(self, path: str) -> Callable:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            _, first = self._stack.pop()
            todo = [t.grad_fn for t in tree_leaves(output) if isinstance(t, torch.Tensor)]
            while todo:
                node = todo.pop()
                if node is None or node in self._labels or node._sequence_nr() < first:
                    continue
                self._labels[node] = path
                todo.extend(fn for fn, _ in node.next_functions)

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._labels.clear()


class _Recorder(TorchDispatchMode):
    """Records every aten operator (minus views) with its cost, phase and module."""

    def __init__(self, paths: _ModulePaths, param_keys: set[int]) -> None:
        super().__init__()
        self.paths = paths
        self.param_keys = param_keys  # storages of parameters and of their autocast copies
        self.phase = "forward"
        self.paused = False  # ops run while paused are not recorded
        self.rows: list[dict] = []
        self.dispatches: Counter = Counter()  # phase -> aten calls, views and metadata queries included
        self.group: int | None = None  # forward: the scaled_dot_product_attention call being run
        self.group_ranges: list[tuple[int, int, int]] = []  # (first, end) autograd sequence numbers, group
        self.failed: torch._ops.OpOverload | None = None
        self.live_bytes = 0  # forward phase: non-parameter storages alive now, and their peak
        self.peak_bytes = 0
        self._live: set[int] = set()
        self.backward_events: list[tuple[int, int]] = []  # (storage, +/- bytes) as backward allocates and frees

    def track(self, tensors: list[torch.Tensor]) -> None:
        """Count new non-parameter storages as live until they are freed."""
        for t in tensors:
            storage = t.untyped_storage()
            key = storage._cdata
            if key in self.param_keys or key in self._live:
                continue
            nbytes = storage.nbytes()
            self._live.add(key)
            self.live_bytes += nbytes
            if self.phase == "backward":
                self.backward_events.append((key, nbytes))
            weakref.finalize(storage, self._free, key, nbytes).atexit = False
        if self.phase == "forward":
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def _free(self, key: int, nbytes: int) -> None:
        self._live.discard(key)
        self.live_bytes -= nbytes
        if self.phase == "backward":
            self.backward_events.append((key, -nbytes))

    def backward_peak(self, start_bytes: int, gradients: set[int]) -> int:
        """The largest live set of non-parameter tensors during backward, the parameters' gradients left out
        (a profile's memory counts them apart): saved activations not yet released plus the gradients of
        activations in flight."""
        # A gradient is the last storage allocated at its address (a freed temporary may have held it before).
        last = {key: i for i, (key, delta) in enumerate(self.backward_events) if delta > 0 and key in gradients}
        kept = set(last.values())
        live = peak = start_bytes
        for i, (_, delta) in enumerate(self.backward_events):
            if i not in kept:
                live += delta
                peak = max(peak, live)
        return peak

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        try:
            out = func(*args, **kwargs)
        except Exception:
            self.failed = self.failed or func
            raise
        if self.paused:
            return out
        self.dispatches[self.phase] += 1
        if _is_skipped(func, out):
            return out
        if len(self.rows) >= MAX_OPERATORS:
            raise ChipfitError(f"The trace passed {MAX_OPERATORS} operators in one step, more than chipfit profiles "
                               "(docs/limits.md); check the model's layer count.")
        kind, flops, causal = op_cost(func, args, kwargs, out)
        inputs = _unique_tensors((args, kwargs))
        outputs = _unique_tensors(out)
        reads = inputs[1:] if func.overloadpacket in GATHER_OPS | WRITE_ONLY_SELF_OPS else inputs
        bytes_read = sum(map(_tensor_bytes, reads))
        if func.overloadpacket in GATHER_OPS:
            bytes_read += sum(map(_tensor_bytes, outputs))
        floating = [t for t in inputs if t.is_floating_point()]
        typed = floating or outputs or inputs
        if self.phase == "forward" and func.overloadpacket is torch.ops.aten._to_copy and inputs \
                and _storage_key(inputs[0]) in self.param_keys:
            self.param_keys.update(_storage_key(t) for t in outputs)
        if self.phase != "optimizer":
            self.track(outputs)
        self.rows.append(
            {
                "name": str(func),
                "kind": kind,
                "flops": flops,
                "bytes_read": bytes_read,
                "bytes_written": sum(map(_tensor_bytes, outputs)),
                "dtype": dtype_name(typed[0].dtype) if typed else "none",
                "phase": self.phase,
                "module": self.paths.current,
                "counted": kind != "other",
                "causal": causal,
                "window": conv_window_of(func, args, kwargs) if kind == "conv" else None,
                "group": self.group if self.phase == "forward" else self._backward_group(),
                "storages": [_storage_key(t) for t in inputs + outputs] if self.phase == "optimizer" else None,
            }
        )
        return out


    def _backward_group(self) -> int | None:
        """The attention call whose autograd nodes run the current backward operator, if any."""
        node = torch._C._current_autograd_node() if self.phase == "backward" else None
        if node is None or not self.group_ranges:
            return None
        seq = node._sequence_nr()
        i = bisect.bisect_right(self.group_ranges, (seq, float("inf"), 0)) - 1
        return self.group_ranges[i][2] if i >= 0 and seq < self.group_ranges[i][1] else None


class _AttentionCalls(TorchFunctionMode):
    """Marks the operators of each F.scaled_dot_product_attention call (forward, and backward through the
    autograd nodes it created), so that a target that runs a fused kernel can replace them
    (predict.fusion.fuse_attention): the trace's device may run its math path instead."""

    def __init__(self, recorder: _Recorder, saved: dict[int, int]) -> None:
        super().__init__()
        self.recorder, self.saved = recorder, saved
        self.calls: list[AttentionCall] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not torch.nn.functional.scaled_dot_product_attention or self.recorder.group is not None:
            return func(*args, **kwargs)
        rec = self.recorder
        named = dict(zip(("query", "key", "value", "attn_mask", "dropout_p", "is_causal"), args)) | kwargs
        q, k, v, mask = named["query"], named["key"], named["value"], named.get("attn_mask")
        first, saved_before, live_before = torch._C._autograd._get_sequence_nr(), set(self.saved), rec.live_bytes
        rec.group, peak_before = len(self.calls), rec.peak_bytes
        rec.peak_bytes = live_before
        try:
            out = func(*args, **kwargs)
        finally:
            rec.group = None
        inside_peak = rec.peak_bytes - live_before - _tensor_bytes(out)
        rec.peak_bytes = max(peak_before, rec.peak_bytes)
        rec.group_ranges.append((first, torch._C._autograd._get_sequence_nr(), len(self.calls)))
        inputs = {_storage_key(t) for t in (q, k, v, mask) if isinstance(t, torch.Tensor)}
        self.calls.append(AttentionCall(
            batch=prod(q.shape[:-3]) if q.dim() > 3 else 1, heads=q.shape[-3] if q.dim() > 2 else 1,
            q_len=q.shape[-2], kv_len=k.shape[-2], head_dim=q.shape[-1], v_dim=v.shape[-1],
            element_bytes=q.element_size(), causal=bool(named.get("is_causal", False)),
            mask_bytes=_tensor_bytes(mask) if isinstance(mask, torch.Tensor) else 0,
            dropout=bool(named.get("dropout_p", 0.0)) and torch.is_grad_enabled(),
            saved_inside_bytes=sum(n for key, n in self.saved.items() if key not in saved_before and key not in inputs),
            peak_inside_bytes=max(0, inside_peak)))
        return out


@contextmanager
def _refcount_frees_only():
    """Python's cyclic garbage collector paused: tensors are freed when their last reference goes, as autograd
    releases them, not whenever a collection happens to run (which made the backward's peak vary by trace)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _trace_error(name: str, exc: Exception, func: torch._ops.OpOverload | None) -> ChipfitError:
    fix = "remove data-dependent control flow or give the model as ONNX."
    func = getattr(exc, "func", None) or func
    if isinstance(exc, DynamicOutputShapeException):
        why = f"operator {func} has a data-dependent output shape"
    elif isinstance(exc, DataDependentOutputException):
        why = f"operator {func} reads tensor values (a data-dependent output such as .item())"
    elif isinstance(exc, UnsupportedOperatorException):
        why, fix = f"operator {func} has no fake-tensor implementation", "give the model as ONNX."
    else:
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        where = f"operator {func} failed" if func is not None else "the model code failed"
        why, fix = f"{where} ({type(exc).__name__}: {detail})", "fix the model code or give the model as ONNX."
    return ChipfitError(f"Model {name!r} cannot be traced on fake tensors: {why}; {fix}")


def _optimizer(name: str, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, foreach=False)
    return torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=False)


def _label_optimizer_rows(rows: list[dict], model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    """Give each optimizer op the name of the parameter whose tensors (weight, grad, state) it touches;
    temporaries inherit the name of the op before them."""
    owner: dict[int, str] = {}
    for pname, p in model.named_parameters():
        tensors = [p, p.grad, *opt.state.get(p, {}).values()]
        owner.update((_storage_key(t), pname) for t in tensors if isinstance(t, torch.Tensor))
    last = ""
    for row in rows:
        keys = row.pop("storages")
        if keys is not None:
            last = next((owner[k] for k in keys if k in owner), last)
            row["module"] = last


def _cast_module(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast floating parameters and buffers in place (Module.to cannot swap fake parameters)."""
    for module in model.modules():
        for key, p in module._parameters.items():
            if p is not None and p.is_floating_point():
                module._parameters[key] = torch.nn.Parameter(p.detach().to(dtype), p.requires_grad)
        for key, b in module._buffers.items():
            if b is not None and b.is_floating_point():
                module._buffers[key] = b.to(dtype)


def _cast_inputs(tree: Any, dtype: torch.dtype) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.to(dtype) if tree.is_floating_point() else tree
    if isinstance(tree, (tuple, list)):
        return type(tree)(_cast_inputs(t, dtype) for t in tree)
    if isinstance(tree, dict):
        return {k: _cast_inputs(v, dtype) for k, v in tree.items()}
    return tree


def trace_module(
    model_factory: Callable[[], torch.nn.Module],
    make_batch: Callable[[int, int | None], tuple[Any, Any]],
    loss: Callable[[Any, Any], torch.Tensor],
    *,
    name: str,
    mode: str = "train",
    batch: int = 1,
    seq_len: int | None = None,
    precision: str = "fp32",
    optimizer: str = "adamw",
    fake_mode: FakeTensorMode | None = None,
) -> Profile:
    """Trace one step of `model_factory()` on fake tensors: forward (inference), or forward, loss,
    backward and an optimizer step (training).

    make_batch(batch, seq_len) -> (inputs tuple, targets); loss(output, targets) -> scalar.
    Training in bf16/fp16 keeps fp32 master weights and runs the forward under autocast (AMP);
    inference casts the model to that dtype; fp8/int8 are traced as bf16. `fake_mode` is the
    FakeTensorMode to use when the factory returns a model already made of fake tensors.
    """
    Workload(model=name, mode=mode, batch=batch, seq_len=seq_len, precision=precision, optimizer=optimizer)
    train = mode == "train"
    compute = COMPUTE_DTYPES[precision]
    fake = fake_mode or FakeTensorMode(allow_non_fake_inputs=True)

    try:
        with fake:
            model = model_factory()
            if not train and compute != torch.float32:
                _cast_module(model, compute)
            model.train(train)
            inputs, targets = make_batch(batch, seq_len)
            if not isinstance(inputs, tuple):
                inputs = (inputs,)
            if not train and compute != torch.float32:
                inputs = _cast_inputs(inputs, compute)
            params = list({id(p): p for p in model.parameters()}.values())
            opt = _optimizer(optimizer, [p for p in params if p.requires_grad]) if train else None
    except ChipfitError:
        raise
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ChipfitError(
            f"Model {name!r} cannot be built on fake tensors ({type(exc).__name__}: {detail}); "
            "build it without loading weights or data from disk."
        ) from exc

    param_keys = {_storage_key(p) for p in params}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in param_keys:
            saved[key] = t.untyped_storage().nbytes()
        return t

    paths = _ModulePaths(model)
    recorder = _Recorder(paths, param_keys)
    attention = _AttentionCalls(recorder, saved)
    try:
        with fake, recorder, attention, ExitStack() as stack, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # kernel-choice chatter (e.g. unfused rms_norm)
            if train:
                stack.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t))
                if compute != torch.float32:
                    stack.enter_context(torch.autocast("cpu", dtype=compute))
            else:
                stack.enter_context(torch.no_grad())
            recorder.track(_unique_tensors(inputs))
            output = model(*inputs)
            if train:
                value = loss(output, targets)
                stack.close()  # backward and the step run outside autocast and the saved-tensor hooks
                output = None  # a training loop keeps only the loss; the graph keeps what backward needs
                gc.collect()  # the forward's cyclic garbage gone before backward starts, on every trace alike
                backward_start = recorder.live_bytes
                recorder.phase = "backward"
                with _refcount_frees_only():  # backward's live set the same on every trace
                    value.backward()
                recorder.phase = "optimizer"
                # The first step only creates the optimizer's state (AdamW's moments); record a
                # steady-state step, the one every later step repeats.
                recorder.paused = True
                opt.step()
                recorder.paused = False
                opt.step()
    except ChipfitError:
        raise
    except Exception as exc:
        raise _trace_error(name, exc, recorder.failed) from exc
    finally:
        paths.remove()

    backward_peak = 0
    if train:
        _label_optimizer_rows(recorder.rows, model, opt)
        grads = {_storage_key(p.grad) for p in params if p.grad is not None}
        backward_peak = recorder.backward_peak(backward_start, grads)
    ops = [Op(**{k: v for k, v in row.items() if k != "storages"}) for row in recorder.rows]
    return Profile(
        model=name,
        mode=mode,
        batch=batch,
        seq_len=seq_len,
        dtype=dtype_name(compute),
        ops=ops,
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        activation_bytes=sum(saved.values()),
        peak_activation_bytes=recorder.peak_bytes,
        notes=_notes(ops, mode, precision, optimizer),
        backward_peak_bytes=backward_peak,
        attention=attention.calls,
        dispatches=dict(recorder.dispatches),
    )


def _notes(ops: list[Op], mode: str, precision: str, optimizer: str) -> list[str]:
    notes = list(CONVENTIONS)
    if any(op.kind == "attention" for op in ops):
        notes.append(
            "Attention is counted as the full Sq x Sk product even when causal (kernels that skip masked "
            "blocks do about half the attention FLOPs); its backward as 2x the forward."
        )
    if precision == "tf32":
        notes.append("Traced in fp32; tf32 applies to matmuls and convolutions on hardware that has it.")
    elif precision in ("fp8", "int8"):
        notes.append(f"Traced as bf16; the predictor maps matmuls to {precision} peaks.")
    elif precision in ("bf16", "fp16"):
        notes.append(
            f"AMP: fp32 master weights, forward under autocast({precision})."
            if mode == "train"
            else f"Model cast to {precision}."
        )
    if mode == "train":
        notes.append(
            "Optimizer: AdamW (non-foreach)." if optimizer == "adamw" else "Optimizer: SGD with momentum 0.9."
        )
    uncounted = Counter(op.name for op in ops if not op.counted)
    if uncounted:
        listed = ", ".join(f"{n} ({c}x)" for n, c in uncounted.most_common())
        notes.append(f"No FLOP formula, counted as 0 FLOPs: {listed}.")
    return notes
