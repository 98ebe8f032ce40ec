"""The model library: named architectures as data, one TOML file per family in this folder.

Each entry gives its architecture (`arch`, the fields of workload.llm.TransformerSpec, from the
released config.json or the paper's table) or the traced zoo model it is (`zoo`), its published
parameter count with the source of both, and its aliases (hub ids such as
meta-llama/Llama-3.1-70B). `resolve_model(name)` is the one resolver from a name, an alias or a
hub id (case-insensitive, spaces or underscores for hyphens) to an entry; nothing is downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

from ...errors import ChipfitError, closest
from ..llm import TransformerSpec

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

KINDS = ("decoder", "encoder", "encoder-decoder", "moe", "vision", "diffusion")
LIBRARY_DIR = Path(__file__).parent
# Sequence length an analytic profile takes when none is given: the model's context, at most this
# (Llama 2's pre-training context, Touvron et al. 2023); a 128k-context model is rarely run at 128k.
DEFAULT_SEQ_CAP = 4096
_ENTRY_KEYS = {"name", "kind", "zoo", "aliases", "source", "params", "params_source", "active_params",
               "active_params_source", "context", "rope_theta", "arch", "vision_params"}
_REQUIRED = ("name", "source", "params", "params_source")
_FILE_KEYS = {"family", "kind", "context", "defaults", "models"}
_SPEC_FIELDS = {f.name for f in fields(TransformerSpec)} - {"name"}
_HUB_PREFIXES = ("https://huggingface.co/", "huggingface.co/", "hf.co/", "hf://")


@dataclass(frozen=True)
class ModelEntry:
    """One named model: its architecture (`spec`) or traced zoo model (`zoo`), and its published counts."""

    name: str
    family: str
    kind: str
    source: str
    published_params: int
    params_source: str
    aliases: tuple[str, ...] = ()
    spec: TransformerSpec | None = None
    zoo: str | None = None
    published_active_params: int | None = None
    active_params_source: str = ""
    context: int | None = None
    rope_theta: float | None = None
    vision_params: int = 0
    file: str = field(default="", compare=False)

    @property
    def params(self) -> int:
        """Parameters of the architecture as chipfit counts them, with a multimodal model's vision encoder (the
        published figure for traced-only models)."""
        return self.spec.params() + self.vision_params if self.spec else self.published_params

    @property
    def active_params(self) -> int:
        """Parameters one token uses (all of them for dense models)."""
        return self.spec.active_params() if self.spec else self.published_params

    @property
    def default_seq_len(self) -> int | None:
        """Sequence length of a profile when none is given: the context, at most DEFAULT_SEQ_CAP; None for vision."""
        if self.spec is None:
            return None
        return min(self.context or DEFAULT_SEQ_CAP, DEFAULT_SEQ_CAP)

    def profile(self, *, mode: str = "train", batch: int = 1, seq_len: int | None = None, precision: str = "fp32",
                optimizer: str = "adamw"):
        """The analytic profile (workload.llm.profile_spec) of one step at `seq_len` (default_seq_len if None)."""
        from ..llm import profile_spec

        return profile_spec(self, mode=mode, batch=batch, seq_len=seq_len or self.default_seq_len,
                            precision=precision, optimizer=optimizer)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "family": self.family, "kind": self.kind, "aliases": list(self.aliases),
            "params": self.params, "active_params": self.active_params,
            "published_params": self.published_params, "params_source": self.params_source,
            "published_active_params": self.published_active_params, "active_params_source": self.active_params_source,
            "vision_params": self.vision_params, "context": self.context, "source": self.source, "zoo": self.zoo,
            "arch": self.spec.to_dict() if self.spec else None,
        }


def _fail(where: str, problem: str) -> ChipfitError:
    return ChipfitError(f"Model library {where} {problem}.")


def _entry(path: Path, family: str, raw: dict, top: dict) -> ModelEntry:
    where = f"file {path.name}, entry {raw.get('name', '(unnamed)')!r},"
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise _fail(where, f"has unknown field {sorted(unknown)[0]!r}; use only {', '.join(sorted(_ENTRY_KEYS))}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _fail(where, f"lacks {', '.join(missing)}; add {missing[0]} = ... with its source")
    kind = raw.get("kind", top.get("kind"))
    if kind not in KINDS:
        raise _fail(where, f"has kind {kind!r}; use one of {', '.join(KINDS)}")
    spec = None
    if "arch" in raw:
        arch = {**top.get("defaults", {}), **raw["arch"]}
        bad = set(arch) - _SPEC_FIELDS
        if bad:
            raise _fail(where, f"has unknown arch field {sorted(bad)[0]!r}{closest(sorted(bad)[0], _SPEC_FIELDS)}")
        try:
            spec = TransformerSpec(**arch, name=raw["name"])
        except TypeError as exc:  # a required size is missing
            raise _fail(where, f"has an incomplete arch ({exc}); give layers, hidden, heads, kv_heads, ffn, vocab")
        except ChipfitError as exc:
            raise _fail(where, f"has a bad arch: {exc}") from None
    elif "zoo" not in raw:
        raise _fail(where, "has neither arch nor zoo; give the architecture's sizes or the zoo model it is")
    if not isinstance(raw["params"], int) or raw["params"] < 1:
        raise _fail(where, f"has params = {raw['params']!r}; give the published count as a whole number")
    return ModelEntry(
        name=raw["name"], family=family, kind=kind, source=raw["source"], published_params=raw["params"],
        params_source=raw["params_source"], aliases=tuple(raw.get("aliases", ())), spec=spec, zoo=raw.get("zoo"),
        published_active_params=raw.get("active_params"), active_params_source=raw.get("active_params_source", ""),
        context=raw.get("context", top.get("context")), rope_theta=raw.get("rope_theta"),
        vision_params=raw.get("vision_params", 0), file=path.name,
    )


def load_file(path: Path) -> list[ModelEntry]:
    """The entries of one family file; a ChipfitError naming the file and entry for a bad one."""
    try:
        top = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise _fail(f"file {path.name}", f"is not valid TOML ({exc}); fix its syntax") from None
    unknown = set(top) - _FILE_KEYS
    if unknown or "family" not in top:
        raise _fail(f"file {path.name}", "needs family = \"...\" and [[models]] entries, and only family, kind, "
                    "context, defaults and models at the top")
    return [_entry(path, top["family"], raw, top) for raw in top.get("models", ())]


def key(name: str) -> str:
    """How names are compared: lower case, hub prefixes dropped, spaces and underscores as hyphens."""
    text = name.strip().lower()
    for prefix in _HUB_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
    return re.sub(r"[\s_]+", "-", text)


# Words a hub repository adds to a model's name for a variant of the same architecture and size: tuning
# (Instruct, Chat, it, SFT), the checkpoint (pt, hf, Base, and the number format of its weights: FP8,
# AWQ, GPTQ) and the release (v0.1, 2407).
_VARIANT = re.compile(r"-(?:instruct|chat|it|pt|hf|base|sft|dpo|fp8|bf16|fp16|awq|gptq|int4|int8|v\d+(?:\.\d+)*|\d{4})$")
# A hub id: organisation/repository, the repository's name starting with a letter (`vit-b/16` is not one).
_HUB_ID = re.compile(r"[^/]+/([a-z][^/]*)")
# A parameter count in a name (7b, 135m, 8x7b, a14b): stripping variant words must leave one.
_SIZE = re.compile(r"(?:^|[-/.x])a?\d+(?:\.\d+)?[kmbt](?:$|-)")
# Architectures that are not transformers given by their sizes, by a word in the model's name.
_NOT_MODELLED = {
    "mamba": "state-space (Mamba) layers", "jamba": "state-space (Mamba) layers", "zamba": "state-space (Mamba) layers",
    "hymba": "state-space (Mamba) heads", "falcon-h1": "state-space (Mamba) layers",
    "rwkv": "RWKV recurrent layers", "recurrentgemma": "Griffin recurrent layers",
    "griffin": "Griffin recurrent layers",
    "xlstm": "xLSTM recurrent layers", "retnet": "retention layers", "hyena": "Hyena long convolutions",
}


def repository(text: str) -> str | None:
    """The repository part of a hub id's `key` (`gemma-7b` of `google/gemma-7b`); None for other names."""
    m = _HUB_ID.fullmatch(text)
    return m.group(1) if m else None


def base_name(name: str) -> str:
    """`key(name)` less the variant words at its end (-Instruct, -Chat, -it, -pt, -hf, -Base, -v0.1, -2407), as
    long as what is left still names a size: `Qwen2-7B-Instruct` is `qwen2-7b`, `bert-base` stays itself."""
    text = key(name)
    while (m := _VARIANT.search(text)) and _SIZE.search(repository(text[:m.start()]) or text[:m.start()]):
        text = text[:m.start()]
    return text


@lru_cache(maxsize=1)
def _library() -> tuple[tuple[ModelEntry, ...], dict[str, ModelEntry], dict[str, ModelEntry]]:
    entries: list[ModelEntry] = []
    index: dict[str, ModelEntry] = {}
    for path in sorted(LIBRARY_DIR.glob("*.toml")):
        for entry in load_file(path):
            for name in (entry.name, *entry.aliases):
                other = index.setdefault(key(name), entry)
                if other is not entry:
                    raise _fail(f"file {path.name}, entry {entry.name!r},",
                                f"reuses the name {name!r} of {other.name!r} ({other.file}); give each name once")
            entries.append(entry)
    return tuple(entries), index, _base_index(index)


def _base_index(index: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
    """Base names (with and without the hub organisation) of every name and alias, to the one entry each
    stands for; a base name two entries share stands for neither."""
    found: dict[str, set[ModelEntry]] = {}
    for name, entry in index.items():
        for base in {base_name(name), base_name(repository(name) or name)}:
            found.setdefault(base, set()).add(entry)
    return {base: next(iter(es)) for base, es in found.items() if len(es) == 1}


def find_model(name: str) -> ModelEntry | None:
    """The entry `name` stands for, or None. In order: a name or alias; the repository part of a hub id
    (`someorg/gemma-7b`); then the base name (`base_name`) of either, when exactly one entry has it, so that
    `Qwen/Qwen2-7B-Instruct` is `Qwen/Qwen2-7B` and `google/gemma-3-27b-pt` is `gemma-3-27b`."""
    _, index, bases = _library()
    text = key(name)
    repo = repository(text) or text
    for candidate in (index.get(text), index.get(repo), bases.get(base_name(text)), bases.get(base_name(repo))):
        if candidate is not None:
            return candidate
    return None


def models() -> tuple[ModelEntry, ...]:
    """Every entry, in file and entry order."""
    return _library()[0]


def resolve_model(name: str) -> ModelEntry:
    """The entry `name` stands for (`find_model`): a library or zoo name, an alias or a hub id, case-insensitive.
    An unknown name is a ChipfitError with the closest names, or saying its architecture is not modelled."""
    found = find_model(name)
    if found is not None:
        return found
    kind = next((what for word, what in _NOT_MODELLED.items() if word in key(name)), None)
    if kind:
        raise ChipfitError(f"Model {name!r} has {kind}, which chipfit's analytic transformer does not model; profile "
                           "its PyTorch module instead (package.module:factory).")
    entries = models()
    names = {n: e.name for e in entries for n in (e.name, *e.aliases)}
    raise ChipfitError(
        f"Unknown model {name!r}.{closest(name, names, label=names.get)} `chipfit models` lists the "
        f"{len(entries)} known names; "
        "or give a config.json, an .onnx/.keras/.prototxt file, torchvision:NAME or package.module:factory."
    )


def generative(name: str) -> bool:
    """Whether `name` is a library model that generates text (decoder, MoE or encoder-decoder); False for
    other names, which are resolved (and refused) elsewhere."""
    found = find_model(name)
    return found is not None and found.kind in ("decoder", "moe", "encoder-decoder")


def transformer_spec(name: str) -> TransformerSpec:
    """The TransformerSpec of the library model `name`; a ChipfitError for models without one (vision)."""
    entry = resolve_model(name)
    if entry.spec is None:
        raise ChipfitError(f"Model {entry.name!r} is a {entry.kind} model, not a transformer given by its sizes; "
                           "`chipfit models --kind decoder` (or moe, encoder, encoder-decoder) lists the transformers.")
    return entry.spec


_SUFFIXES = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_count(text: str) -> float:
    """A parameter count as people write it: '7e9', '70B', '350M', '1.5t', '7_000_000'."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbt]?)\s*", text.lower().replace("_", ""))
    if not m:
        raise ChipfitError(f"Parameter count {text!r} is not understood; write it like 7e9, 70B or 350M.")
    return float(m.group(1)) * _SUFFIXES[m.group(2)]


def list_models(family: str | None = None, kind: str | None = None, min_params: float | None = None,
                max_params: float | None = None) -> list[ModelEntry]:
    """Entries of `family` and `kind` with min_params <= parameters <= max_params (every filter optional;
    an MoE model's total parameters count)."""
    entries = models()
    if family is not None:
        families = sorted({e.family for e in entries})
        if key(family) not in families:
            raise ChipfitError(f"No model family {family!r}.{closest(family, families)} "
                               f"Families: {', '.join(families)}.")
        entries = tuple(e for e in entries if e.family == key(family))
    if kind is not None and kind not in KINDS:
        raise ChipfitError(f"No model kind {kind!r}.{closest(kind, KINDS)} Kinds: {', '.join(KINDS)}.")
    return [e for e in entries if (kind is None or e.kind == kind)
            and (min_params is None or e.params >= min_params) and (max_params is None or e.params <= max_params)]
