"""Model sources: a zoo name, 'package.module:factory', a module instance, a Hugging Face config.json,
a .keras, .onnx or Caffe .prototxt file, or 'torchvision:NAME' / 'timm:NAME'."""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_leaves

from ..errors import ChipfitError
from . import zoo
from .profile import Profile
from .trace import trace_module


def surrogate_loss(output: Any, targets: Any = None) -> torch.Tensor:
    """Sum of every floating-point tensor in the output: a loss with the backward of a real one
    (the loss itself is a few FLOPs per output element)."""
    parts = [t.float().sum() for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not parts:
        raise ChipfitError("The model's output holds no floating-point tensor to train on; return the logits.")
    return torch.stack(parts).sum()


class UserModel:
    """A user's nn.Module made by `factory()`; inputs come from the module's
    `example_inputs(batch, seq_len)`; training uses `surrogate_loss`."""

    task = None
    default_seq_len = None

    def __init__(self, name: str, factory: Callable[[], nn.Module]) -> None:
        self.name = name
        self.factory = factory
        self._model: nn.Module | None = None

    def build(self) -> nn.Module:
        model = self.factory()
        if not isinstance(model, nn.Module):
            raise ChipfitError(f"{self.name} returned {type(model).__name__}, not a torch.nn.Module; return the model.")
        if not callable(getattr(model, "example_inputs", None)):
            raise ChipfitError(
                f"Model {self.name!r} has no example_inputs(batch, seq_len) method; add one that returns "
                "the forward's inputs (a tensor or a tuple of tensors)."
            )
        self._model = model
        return model

    def make_batch(self, batch: int, seq_len: int | None) -> tuple[tuple, None]:
        """Inputs from the model built last by build()."""
        if self._model is None:
            raise ChipfitError(f"Model {self.name!r} must be built before its inputs are made; call build() first.")
        inputs = self._model.example_inputs(batch, seq_len)
        return (inputs if isinstance(inputs, tuple) else (inputs,)), None

    def loss(self, output: Any, targets: Any) -> torch.Tensor:
        return surrogate_loss(output, targets)


class ParsedFile:
    """An ONNX or Caffe file: profiled by parsing it (inference only), never built as a module."""

    task = None
    default_seq_len = None

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = Path(path).stem

    def build(self) -> nn.Module:
        raise ChipfitError(
            f"Model file {self.path} is parsed, not built, so it cannot be run; measure a PyTorch, Hugging Face or "
            "Keras source of the same model."
        )

    def profile(self, mode: str, batch: int, precision: str, input_shapes: dict | None) -> Profile:
        if self.path.lower().endswith(".onnx"):
            from .onnx_model import profile_onnx

            result = profile_onnx(self.path, input_shapes=input_shapes, batch=batch, mode=mode)
        else:
            if input_shapes:
                raise ChipfitError(f"Caffe file {self.path} takes its input shape from its input layer; leave --input out.")
            from .caffe import profile_prototxt

            result = profile_prototxt(self.path, batch=batch, mode=mode)
        if precision != "fp32":
            result.notes.append(f"Precision {precision} was asked for; a parsed file is profiled in the dtype it stores.")
        return result


def resolve(name: str):
    """The model source `name` stands for: a model of the library (workload.library.resolve_model: its zoo
    entry when the zoo has it traced, else the entry, profiled analytically), a Hugging Face config.json (or
    its folder), a .keras/.onnx/.prototxt file, 'torchvision:NAME' or 'timm:NAME', or 'package.module:factory'."""
    from .hf_config import HFConfigModel, is_hf_config

    lowered = name.lower()
    if lowered.endswith((".onnx", ".prototxt")):
        return ParsedFile(name)
    if lowered.endswith((".keras", ".h5", ".hdf5")):
        from .keras_model import KerasFile

        return KerasFile(name)
    if is_hf_config(name):
        return HFConfigModel(name)
    if lowered.startswith(("torchvision:", "timm:")):
        from .hub_names import hub_model

        return hub_model(name)
    if ":" not in name:
        from .library import resolve_model

        if name.lower() in zoo.ZOO:  # a zoo model, also one registered at run time
            return zoo.get(name)
        entry = resolve_model(name)
        return zoo.get(entry.zoo) if entry.zoo else entry
    module_name, _, attr = name.partition(":")
    if not all(part.isidentifier() for part in module_name.split(".")) or not attr.isidentifier():
        raise ChipfitError(
            f"Model {name!r} is not a zoo name, a model file or 'package.module:factory' (an absolute module path of "
            "Python names, a colon, a function name); run `chipfit profile --list` for the zoo."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ChipfitError(
            f"Module {module_name!r} of model {name!r} cannot be imported ({exc}); check the name and that it is on "
            "PYTHONPATH."
        ) from exc
    except (Exception, SystemExit) as exc:  # the user's module failed while importing: a syntax error, a raise
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise ChipfitError(
            f"Module {module_name!r} of model {name!r} fails when imported{where}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}; fix the module, then run again."
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ChipfitError(
            f"Module {module_name!r} has no factory {attr!r}; give 'package.module:function' where function() "
            "returns a torch.nn.Module."
        )
    return UserModel(name, factory)


@contextmanager
def _fake_instance(model: nn.Module) -> Iterator[FakeTensorMode]:
    """Swap a real module's parameters and buffers for fake copies while tracing; restore them after."""
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    originals: list[tuple[dict, str, Any]] = []
    try:
        for module in model.modules():
            for store in (module._parameters, module._buffers):
                for key, value in store.items():
                    if value is None:
                        continue
                    originals.append((store, key, value))
                    copy = fake.from_tensor(value)
                    store[key] = nn.Parameter(copy, value.requires_grad) if isinstance(value, nn.Parameter) else copy
        yield fake
    finally:
        for store, key, value in originals:
            store[key] = value


def profile(
    model: str | nn.Module,
    *,
    mode: str = "train",
    batch: int = 1,
    seq_len: int | None = None,
    precision: str = "fp32",
    optimizer: str = "adamw",
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> Profile:
    """Profile one training step (or one inference batch) of a model on fake tensors.

    `model` is an nn.Module instance with an `example_inputs(batch, seq_len)` method (its weights
    stay untouched) or a string `resolve` knows. seq_len defaults to the source's default_seq_len
    for language models. input_shapes ({input name: shape}) fixes ONNX graph inputs.
    """
    from .hf_config import HFConfigModel
    from .keras_model import KerasFile
    from .library import ModelEntry

    options = dict(mode=mode, batch=batch, precision=precision, optimizer=optimizer)
    if isinstance(model, nn.Module):
        source = UserModel(type(model).__name__, lambda: model)
        with _fake_instance(model) as fake:
            return trace_module(
                source.build, source.make_batch, source.loss, name=source.name, seq_len=seq_len, fake_mode=fake,
                **options,
            )
    source = resolve(model)
    if isinstance(source, ParsedFile):
        return source.profile(mode, batch, precision, input_shapes)
    if isinstance(source, ModelEntry) and not input_shapes:
        return source.profile(seq_len=seq_len, **options)
    if input_shapes:
        raise ChipfitError(f"Input shapes are given for ONNX files only, not for model {model!r}; leave --input out.")
    if seq_len is None:
        seq_len = source.default_seq_len
    if isinstance(source, KerasFile):
        return source.profile(seq_len=seq_len, **options)
    try:
        return trace_module(source.build, source.make_batch, source.loss, name=source.name, seq_len=seq_len, **options)
    except ChipfitError as exc:
        if isinstance(source, HFConfigModel):
            raise source.moe_error(exc) from exc
        raise
