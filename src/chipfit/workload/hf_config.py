"""Hugging Face `config.json` files as model sources: the model is built with transformers on
fake tensors, from the local file alone (no hub access, no weights, no remote code)."""

from __future__ import annotations

import json
import os
import re
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ChipfitError, check_file
from ..limits import MAX_DIM, MAX_LAYERS, check_nesting, check_whole
from .source import surrogate_loss
from .zoo import checked_seq_len

MAX_CONFIG_BYTES = 2**20  # published config.json files are a few KiB
CONFIG_NAME = "config.json"

# model_type -> (class built when config.json names none, inputs it takes)
ARCHITECTURES = {
    "llama": ("LlamaForCausalLM", "text"),
    "mistral": ("MistralForCausalLM", "text"),
    "mixtral": ("MixtralForCausalLM", "text"),
    "qwen2": ("Qwen2ForCausalLM", "text"),
    "gemma": ("GemmaForCausalLM", "text"),
    "gpt2": ("GPT2LMHeadModel", "text"),
    "bert": ("BertForMaskedLM", "text"),
    "t5": ("T5ForConditionalGeneration", "seq2seq"),
    "vit": ("ViTForImageClassification", "image"),
}
# Heads whose labels are one token id per input position, and heads with one class per sample.
_TOKEN_LABEL_HEADS = ("ForCausalLM", "LMHeadModel", "ForMaskedLM", "ForConditionalGeneration")
_CLASS_LABEL_HEADS = ("ForSequenceClassification", "ForImageClassification")
# Learned position tables cap the sequence length; rotary and relative positions do not.
_LEARNED_POSITIONS = ("bert", "gpt2")
# Config fields where published configs give the context length.
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions")
_ZOO_FOR_MOE = {"mixtral": "mixtral-8x7b"}  # mixture-of-experts types -> zoo entry with balanced routing


def is_hf_config(model: str) -> bool:
    """True for a path ending in config.json, or a directory that holds one."""
    path = Path(model)
    return path.name == CONFIG_NAME or (path.is_dir() and (path / CONFIG_NAME).is_file())


def _import_transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read at import: never reach the hub
    try:
        import transformers
    except ImportError:
        raise ChipfitError("Profiling Hugging Face configs needs transformers: pip install 'chipfit[hf]'.") from None
    return transformers


def _config_file(model: str | Path) -> Path:
    path = Path(model)
    if path.is_dir() and (path.name != CONFIG_NAME or (path / CONFIG_NAME).exists()):
        path = path / CONFIG_NAME
    check_file(path, "Hugging Face config", "give the path of a config.json file", MAX_CONFIG_BYTES,
               f"more than the {MAX_CONFIG_BYTES} a config.json can be; give the model's config.json")
    return path


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChipfitError(f"Hugging Face config {path} is not valid JSON ({exc}); give the model's config.json.") from None
    except RecursionError:
        raise ChipfitError(f"Hugging Face config {path} nests deeper than Python can parse; give the model's "
                           "config.json.") from None
    _check_sizes(path, data)
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise ChipfitError(
            f"Hugging Face config {path} has no \"model_type\" field; give the config.json of a transformers model."
        )
    return data


_LAYER_KEY = re.compile(r"(^|_)(n_layers?|layers|num_layers)$")


def _check_sizes(path: Path, data) -> None:
    """Refuse deep nesting, NaN/infinity, layer counts over MAX_LAYERS and integers beyond MAX_DIM before
    transformers builds anything (a config of 1e9 layers would build for hours in tens of GB)."""
    check_nesting(data, f"Hugging Face config {path}")
    stack = [data]
    while stack:
        value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in items:
            if isinstance(child, (dict, list)):
                stack.append(child)
            elif isinstance(child, (int, float)) and not isinstance(child, bool):
                if isinstance(key, str) and _LAYER_KEY.search(key):
                    check_whole(child, f"Hugging Face config {path} field {key!r}", 0, MAX_LAYERS)
                elif abs(child) > MAX_DIM and float(child).is_integer():
                    raise ChipfitError(f"Hugging Face config {path} field {key!r} is {child!r}, beyond the "
                                       f"{MAX_DIM} any size in a model can be; fix the config.json.")


def _model_class(transformers, path: Path, data: dict) -> tuple[type, str]:
    model_type = data["model_type"]
    named = (data.get("architectures") or [None])[0]
    if model_type not in ARCHITECTURES:
        which = f"model type {model_type!r}" + (f" ({named})" if named else "")
        raise ChipfitError(
            f"Hugging Face config {path} is for {which}, which chipfit does not build; supported model types: "
            f"{', '.join(sorted(ARCHITECTURES))} (or use a zoo name or an ONNX export)."
        )
    default, inputs = ARCHITECTURES[model_type]
    name = named or default
    cls = getattr(transformers, name, None) if isinstance(name, str) and name.isidentifier() else None
    config_class = getattr(cls, "config_class", None)
    if cls is None or getattr(config_class, "model_type", None) != model_type:
        raise ChipfitError(
            f"Hugging Face config {path} names architecture {name!r}, which is not a {model_type} model class of "
            f"transformers {transformers.__version__}; use e.g. {default!r} in \"architectures\"."
        )
    return cls, inputs


class HFConfigModel:
    """A transformers model built from a local config.json; a model source for the tracer."""

    task = None

    def __init__(self, model: str | Path) -> None:
        path = _config_file(model)
        data = _read_json(path)  # checked before transformers is imported: a refusal costs no import
        transformers = _import_transformers()
        self.cls, self.inputs = _model_class(transformers, path, data)
        self.path = path
        self.name = path.parent.name or path.stem
        self.model_type = data["model_type"]
        try:
            self.config = transformers.AutoConfig.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=False
            )
        except Exception as exc:  # transformers raises ValueError/OSError/TypeError for bad fields
            detail = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ChipfitError(
                f"Hugging Face config {path} cannot be read by transformers ({type(exc).__name__}: {detail}); "
                "fix the config.json."
            ) from None
        if hasattr(self.config, "use_cache"):
            self.config.use_cache = False  # one step, no key/value cache kept
        context = next((getattr(self.config, f) for f in _CONTEXT_FIELDS if getattr(self.config, f, None)), None)
        self.max_seq_len = context if self.model_type in _LEARNED_POSITIONS else None
        self.default_seq_len = None if self.inputs == "image" else (context or 512)
        self._labels = self.cls.__name__.endswith(_TOKEN_LABEL_HEADS + _CLASS_LABEL_HEADS)
        self._model: torch.nn.Module | None = None

    def build(self) -> torch.nn.Module:
        """The model, float32, in whatever tensor mode is active; randomly initialised unless the
        tensors are fake (whose values nothing reads)."""
        from torch._guards import detect_fake_mode

        with _no_init_weights() if detect_fake_mode() is not None else nullcontext():
            model = self.cls(self.config)
            model.tie_weights()  # tying is part of the initialisation skipped above
        names = {"text": ("input_ids",), "seq2seq": ("input_ids", "decoder_input_ids"), "image": ("pixel_values",)}
        names = names[self.inputs] + (("labels",) if self._labels else ())
        model.forward = _keyword_forward(model.forward, names)
        self._model = model
        return model

    def make_batch(self, batch: int, seq_len: int | None) -> tuple[tuple, None]:
        """Random inputs in the active tensor mode, and labels when the model built last is in training
        mode and its head computes its own loss."""
        if batch < 1:
            raise ChipfitError(f"Batch {batch} for model {self.name!r} is not positive; give a batch of 1 or more.")
        cfg = self.config
        if self.inputs == "image":
            if seq_len is not None:
                raise ChipfitError(f"Model {self.name!r} takes images, not sequences; leave the sequence length out.")
            size = cfg.image_size
            inputs = (torch.randn(batch, cfg.num_channels, size, size),)
            labels = torch.randint(0, cfg.num_labels, (batch,))
        else:
            seq = checked_seq_len(self.name, self.default_seq_len if seq_len is None else seq_len, self.max_seq_len)
            ids = torch.randint(0, cfg.vocab_size, (batch, seq))
            inputs = (ids, ids) if self.inputs == "seq2seq" else (ids,)
            labels = torch.randint(0, cfg.num_labels, (batch,)) if self.cls.__name__.endswith(_CLASS_LABEL_HEADS) else ids
        train = self._labels and self._model is not None and self._model.training
        return (inputs + (labels,) if train else inputs), None

    def loss(self, output: Any, targets: Any) -> torch.Tensor:
        """The model's own loss when its head computes one from the labels, else surrogate_loss."""
        value = getattr(output, "loss", None)
        return value if isinstance(value, torch.Tensor) else surrogate_loss(output, targets)

    def moe_error(self, exc: ChipfitError) -> ChipfitError:
        """A trace failure explained for mixture-of-experts configs; `exc` unchanged for the others."""
        if self.model_type not in _ZOO_FOR_MOE:
            return exc
        return ChipfitError(
            f"Hugging Face config {self.path} is a mixture of experts whose routing depends on the data, which fake "
            f"tensors do not have, so it cannot be traced; profile the zoo entry {_ZOO_FOR_MOE[self.model_type]!r} "
            "(balanced routing) instead."
        )


def _no_init_weights():
    """transformers' context that skips weight initialisation (moved between 4.x and 5.x)."""
    try:
        from transformers.initialization import no_init_weights

        return no_init_weights()
    except ImportError:
        from transformers.modeling_utils import no_init_weights

        return no_init_weights()


def _keyword_forward(forward: Callable, names: tuple[str, ...]) -> Callable:
    """forward(*args) -> forward(name=arg, ...): the tracer passes inputs by position."""

    def call(*args: Any) -> Any:
        return forward(**dict(zip(names, args)))

    return call
