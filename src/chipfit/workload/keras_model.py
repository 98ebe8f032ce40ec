"""Keras 3 `.keras` files as model sources, traced on Keras' torch backend.

On that backend a Keras model is a torch.nn.Module whose weights are torch Parameters, so it
is traced like any module once its variables are swapped for fake tensors. Models whose
whole trace fails are profiled layer by layer from the shapes recorded in the file.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from ..errors import ChipfitError, check_file
from ..limits import check_nesting
from .profile import Op, Profile
from .source import surrogate_loss
from .trace import _notes, dtype_name, trace_module

MAX_KERAS_BYTES = 8 * 2**30  # unpacked size of every member of the archive
MAX_CONFIG_BYTES = 64 * 2**20
CONFIG_MEMBER = "config.json"
# Keras configs nest a level per layer wrapper (functional models inside models): deeper than JSON files.
MAX_KERAS_NESTING = 256
HDF5_SUFFIXES = (".h5", ".hdf5")


def _import_keras():
    """Keras on its torch backend; KERAS_BACKEND must be set before keras is first imported."""
    os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError:
        raise ChipfitError("Profiling Keras files needs keras 3: pip install 'chipfit[keras]'.") from None
    backend = keras.backend.backend()
    if backend != "torch":
        raise ChipfitError(
            f"Keras was already imported with the {backend} backend; set KERAS_BACKEND=torch before importing keras."
        )
    return keras


def _check_archive(path: Path) -> dict:
    """The archive's config.json, after checking size, member names and that it is a zip at all."""
    check_file(path, "Keras file", "give the path of a .keras file")
    if not zipfile.is_zipfile(path):
        raise ChipfitError(f"Keras file {path} is not a .keras archive (a zip file); save it with model.save('x.keras').")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            total = sum(m.file_size for m in members)
            if total > MAX_KERAS_BYTES:
                raise ChipfitError(
                    f"Keras file {path} unpacks to {total} bytes, more than the {MAX_KERAS_BYTES} chipfit reads; "
                    "profile its ONNX export instead."
                )
            bad = [m.filename for m in members if PurePosixPath(m.filename).is_absolute() or ".." in m.filename.split("/")]
            if bad:
                raise ChipfitError(f"Keras file {path} holds members outside the archive ({bad[0]}); it is refused.")
            config = next((m for m in members if m.filename == CONFIG_MEMBER), None)
            if config is None or config.file_size > MAX_CONFIG_BYTES:
                raise ChipfitError(f"Keras file {path} has no readable config.json; save it again with model.save().")
            with archive.open(config) as member:  # read no more than the limit, whatever the header claims
                raw = member.read(MAX_CONFIG_BYTES + 1)
            if len(raw) > MAX_CONFIG_BYTES:
                raise ChipfitError(f"Keras file {path} has a config.json that unpacks beyond {MAX_CONFIG_BYTES} bytes "
                                   "although its header says less; the archive is refused.")
            document = json.loads(raw)
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise ChipfitError(f"Keras file {path} is truncated or corrupt ({exc}); save it again with model.save().") from None
    except RecursionError:
        raise ChipfitError(f"Keras file {path} has a config.json nested deeper than Python can parse; "
                           "it is refused.") from None
    check_nesting(document, f"Keras file {path} config.json", MAX_KERAS_NESTING)
    return document


def _hdf5_config(path: Path) -> dict:
    """The architecture a Keras 2 HDF5 file (.h5, written by Keras 2 on TensorFlow, Theano or CNTK) keeps in
    its model_config attribute; its weights are never read."""
    check_file(path, "Keras HDF5 file", "give the path of a .h5 file saved by model.save()")
    try:
        import h5py
    except ImportError:
        raise ChipfitError(f"Keras HDF5 file {path} needs h5py to be read: pip install h5py, or save the model "
                           "as .keras.") from None
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise ChipfitError(f"Keras HDF5 file {path} is not an HDF5 file or is corrupt ({exc}); give a .h5 file saved "
                           "by model.save().") from None
    if raw is None:
        raise ChipfitError(f"Keras HDF5 file {path} holds weights only (save_weights) and no architecture; save the "
                           "whole model with model.save().")
    raw = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ChipfitError(f"Keras HDF5 file {path} has a model_config over {MAX_CONFIG_BYTES} bytes; it is refused.")
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ChipfitError(f"Keras HDF5 file {path} has a model_config that is not valid JSON; save it again.") from None
    check_nesting(document, f"Keras HDF5 file {path} model_config", MAX_KERAS_NESTING)
    if not isinstance(document, dict):
        raise ChipfitError(f"Keras HDF5 file {path} has a model_config that is not a model; save it again.")
    return document


def _keras2_input_shapes(config):
    """Keras 2 wrote a Sequential model's input as batch_input_shape on its first layer, which Keras 3's
    legacy loader reads as one more axis; give that layer input_shape (the shape without the batch) instead."""
    if isinstance(config, list):
        return [_keras2_input_shapes(c) for c in config]
    if not isinstance(config, dict):
        return config
    out = {k: _keras2_input_shapes(v) for k, v in config.items()}
    inner = out.get("config")
    if out.get("class_name") != "InputLayer" and isinstance(inner, dict) \
            and isinstance(inner.get("batch_input_shape"), list):
        inner = dict(inner)
        inner["input_shape"] = inner.pop("batch_input_shape")[1:]
        out["config"] = inner
    return out


def _unregistered_classes(keras, config: Any) -> list[str]:
    """Classes a saved config names by a registered name (custom objects) that are not registered now."""
    found: list[str] = []
    if isinstance(config, dict):
        module, registered = config.get("module"), config.get("registered_name")
        custom = isinstance(registered, str) and not (isinstance(module, str) and module.startswith("keras"))
        if custom and keras.saving.get_registered_object(registered) is None:
            found.append(str(config.get("class_name", registered)))
        children = list(config.values())
    else:
        children = config if isinstance(config, list) else []
    for child in children:
        found += [n for n in _unregistered_classes(keras, child) if n not in found]
    return found


def load_keras(path: str | Path):
    """A Keras model from a .keras file: safe mode (no lambdas or pickled code), no optimizer."""
    keras = _import_keras()
    path = Path(path)
    legacy = path.suffix.lower() in HDF5_SUFFIXES
    config = _hdf5_config(path) if legacy else _check_archive(path)
    unknown = _unregistered_classes(keras, config)
    if unknown:
        raise ChipfitError(
            f"Keras file {path} uses custom layer class {', '.join(unknown)}, which is not registered; import the "
            "module that defines it (decorated with @keras.saving.register_keras_serializable()) first."
        )
    try:
        # The architecture alone: a profile needs no weights, so the weights file, the bulk of the archive
        # (and a decompression bomb's payload), is never unpacked.
        if legacy:
            from keras.src.legacy.saving import saving_utils
            from keras.src.saving import serialization_lib

            with serialization_lib.SafeModeScope(True):
                return saving_utils.model_from_config(_keras2_input_shapes(config))
        return keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as exc:  # keras raises ValueError/TypeError/OSError for what it cannot rebuild
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ChipfitError(f"Keras file {path} cannot be loaded ({type(exc).__name__}: {detail}); save it again.") from None


def _layers(model) -> list:
    """Every layer of a model, nested ones included, each once."""
    return list(model._flatten_layers(include_self=False, recursive=True))


class _KerasStep(nn.Module):
    """The Keras model called with positional inputs and the torch training flag; its layers are
    registered as submodules so the tracer names each operator's layer."""

    def __init__(self, model) -> None:
        super().__init__()
        self.__dict__["keras_model"] = model  # not a submodule: its layers are
        for layer in model.layers:
            self.add_module(layer.name.replace(".", "_"), layer)
        for layer in _layers(model):
            for sub in getattr(layer, "layers", []):
                layer._modules.setdefault(sub.name.replace(".", "_"), sub)

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.keras_model(inputs[0] if len(inputs) == 1 else list(inputs), training=self.training)


@contextmanager
def _fake_variables(model, fake: FakeTensorMode) -> Iterator[None]:
    """Swap every Keras variable's torch Parameter for a fake copy; each layer's torch parameters
    become its weights only (no random-seed state, which Keras does not count). Restored after."""
    originals = [(v, v._value) for v in model.variables if v._value is not None]
    try:
        for variable, value in originals:
            variable._value = nn.Parameter(fake.from_tensor(value.detach()), value.requires_grad)
        for layer in [model, *_layers(model)]:
            own = layer._trainable_variables + layer._non_trainable_variables
            layer._torch_params = nn.ParameterDict({v.path: v.value for v in own})
        yield
    finally:
        for variable, value in originals:
            variable._value = value
        for layer in [model, *_layers(model)]:
            layer._track_variables()


def _shape(tensor, batch: int, seq_len: int | None, name: str) -> tuple[int, ...]:
    dims = list(tensor.shape)
    if dims and dims[0] is None:
        dims[0] = batch
    if None in dims:
        if seq_len is None:
            raise ChipfitError(
                f"Keras model {name!r} has an input of shape {tuple(tensor.shape)} with an open dimension; "
                "give a sequence length (--seq) for it."
            )
        dims = [seq_len if d is None else d for d in dims]
    return tuple(dims)


def _tensor(keras_tensor, batch: int, seq_len: int | None, name: str, grad: bool) -> torch.Tensor:
    dtype = getattr(torch, str(keras_tensor.dtype))
    shape = _shape(keras_tensor, batch, seq_len, name)
    if dtype.is_floating_point:
        return torch.randn(shape, dtype=dtype, requires_grad=grad)
    return torch.zeros(shape, dtype=dtype)


def profile_keras(
    model,
    *,
    name: str | None = None,
    mode: str = "train",
    batch: int = 1,
    seq_len: int | None = None,
    precision: str = "fp32",
    optimizer: str = "adamw",
) -> Profile:
    """Profile one step of a Keras model (a .keras path or a loaded model) on fake tensors.

    When the whole model does not trace, each layer is traced alone on inputs of its recorded
    shapes; layers that do not trace alone either are listed with 0 FLOPs and their bytes.
    """
    if isinstance(model, (str, Path)):
        name = name or Path(model).stem
        model = load_keras(model)
    else:
        _import_keras()
    name = name or model.name
    if mode == "infer" and precision not in ("fp32", "tf32"):
        raise ChipfitError(
            f"Keras model {name!r} keeps its layers' float32 dtype policy, so inference is profiled in fp32 or tf32 "
            "only; give --precision fp32, or profile its ONNX export."
        )
    options = dict(name=name, mode=mode, batch=batch, seq_len=seq_len, precision=precision, optimizer=optimizer)
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with _fake_variables(model, fake):
        step = _KerasStep(model)

        def make_batch(b: int, s: int | None) -> tuple[tuple, None]:
            return tuple(_tensor(t, b, s, name, False) for t in model.inputs), None

        try:
            return trace_module(lambda: step, make_batch, surrogate_loss, fake_mode=fake, **options)
        except ChipfitError as exc:
            return _layer_by_layer(model, fake, str(exc), **options)


class _LayerCall(nn.Module):
    """One call of one layer, as the functional graph recorded it (node), with positional inputs."""

    def __init__(self, layer, node) -> None:
        super().__init__()
        self.add_module(layer.name.replace(".", "_"), layer)
        self.__dict__["layer"], self.__dict__["node"] = layer, node

    def forward(self, *inputs: torch.Tensor) -> Any:
        tensors = {id(t): x for t, x in zip(self.node.input_tensors, inputs)}
        args, kwargs = self.node.arguments.fill_in(tensors)
        if "training" in self.layer._call_signature.parameters:
            kwargs["training"] = self.training
        return self.layer(*args, **kwargs)


def _layer_by_layer(model, fake: FakeTensorMode, reason: str, *, name: str, mode: str, batch: int,
                    seq_len: int | None, precision: str, optimizer: str) -> Profile:
    ops: list[Op] = []
    saved = peak = 0
    fell_back: list[str] = []
    train = mode == "train"
    traced: set[int] = set()
    for layer in model.layers:
        for node in layer._inbound_nodes:
            if not node.input_tensors:  # an InputLayer
                continue
            call = _LayerCall(layer, node)

            def make_batch(b: int, s: int | None, node=node) -> tuple[tuple, None]:
                return tuple(_tensor(t, b, s, name, train) for t in node.input_tensors), None

            try:
                part = trace_module(lambda call=call: call, make_batch, surrogate_loss, name=f"{name}.{layer.name}",
                                    mode=mode, batch=batch, seq_len=seq_len, precision=precision,
                                    optimizer=optimizer, fake_mode=fake)
            except ChipfitError:
                fell_back.append(f"{layer.name} ({type(layer).__name__})")
                size = {t: 4 * math.prod(_shape(t, batch, seq_len, name)) for t in node.input_tensors + node.output_tensors}
                ops.append(Op(name=f"keras.{type(layer).__name__}", kind="other", flops=0.0,
                              bytes_read=sum(size[t] for t in node.input_tensors),
                              bytes_written=sum(size[t] for t in node.output_tensors), dtype="fp32", phase="forward",
                              module=layer.name, counted=False))
                continue
            # A shared layer's weights are updated once per step.
            ops += [op for op in part.ops if op.phase != "optimizer" or id(layer) not in traced]
            traced.add(id(layer))
            saved += part.activation_bytes
            peak = max(peak, part.peak_activation_bytes)
    weights = model.weights
    notes = _notes(ops, mode, precision, optimizer)
    notes.append(
        f"The whole model did not trace ({reason}); each layer was traced alone on inputs of its recorded shapes. "
        "In training each layer's backward starts from the sum of its outputs; activation_bytes add up the layers' "
        "saved tensors and peak_activation_bytes is the largest single layer's."
    )
    if fell_back:
        notes.append(
            f"Layers that did not trace alone either, counted as 0 FLOPs with their input and output bytes: "
            f"{', '.join(fell_back)}."
        )
    compute = next((op.dtype for op in ops if op.counted), dtype_name(torch.float32))
    return Profile(
        model=name, mode=mode, batch=batch, seq_len=seq_len, dtype=compute, ops=ops,
        params=sum(math.prod(w.shape) for w in weights),
        trainable_params=sum(math.prod(w.shape) for w in model.trainable_weights),
        param_bytes=sum(math.prod(w.shape) * w.value.element_size() for w in weights),
        activation_bytes=saved if train else 0, peak_activation_bytes=peak, notes=notes,
    )


class KerasFile:
    """A .keras file as a model source: `profile` traces it; `build` gives a real torch module to run."""

    task = None
    default_seq_len = None

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self._model = None

    def build(self) -> nn.Module:
        self._model = load_keras(self.path)
        return _KerasStep(self._model)

    def make_batch(self, batch: int, seq_len: int | None) -> tuple[tuple, None]:
        if self._model is None:
            raise ChipfitError(f"Keras model {self.name!r} must be built before its inputs are made; call build() first.")
        return tuple(_tensor(t, batch, seq_len, self.name, False) for t in self._model.inputs), None

    def loss(self, output: Any, targets: Any) -> torch.Tensor:
        return surrogate_loss(output, targets)

    def profile(self, **options: Any) -> Profile:
        return profile_keras(self.path, name=self.name, **options)

