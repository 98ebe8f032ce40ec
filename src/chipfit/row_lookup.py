"""A published row's model and hardware, through the model library and the hardware resolver.

Rows name models as papers do: 'ResNet-50 v1.5', 'Llama 2 70B LoRA fine-tune (MLPerf ...)'. The name
is tried whole, then without its parenthesised notes, then with trailing words dropped one at a
time ('Llama 2 70B LoRA fine-tune' -> 'Llama 2 70B'), so qualifiers after the model's own name do
not hide it; the first name the library knows wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .catalog import Catalog, resolve_hardware
from .errors import ChipfitError
from .published_run import RowUnreadable
from .workload.llm import TransformerSpec


@dataclass(frozen=True)
class RowModel:
    """What a row's model resolves to: a transformer's architecture (`spec`, the analytic paths), or a model the
    tracer builds (`traced`, with `sequence` True when it takes token sequences); its parameter counts."""

    name: str
    source: str
    params: float
    active_params: float
    spec: TransformerSpec | None = None
    traced: str | None = None
    sequence: bool = False

    @property
    def generative(self) -> bool:
        """A decoder that serves by prefill and token-by-token decode."""
        return self.spec is not None and self.spec.causal


def name_candidates(text: str) -> list[str]:
    """The names a row's model cell may mean, most specific first."""
    bare = re.sub(r"\([^)]*\)|\[[^]]*\]", " ", text).split()
    out = [text.strip()] + [" ".join(bare[:n]) for n in range(len(bare), 0, -1)]
    return list(dict.fromkeys(c for c in out if c))


def _lookup(name: str) -> RowModel:
    """One name through the model library; ChipfitError when it knows none such."""
    from .workload import zoo
    from .workload.library import resolve_model

    entry = resolve_model(name)
    if entry.spec is not None:
        return RowModel(entry.name, entry.source, entry.params, entry.active_params, spec=entry.spec, sequence=True)
    traced = zoo.get(entry.zoo)
    return RowModel(entry.name, entry.source, entry.params, entry.active_params, traced=traced.name,
                    sequence=traced.default_seq_len is not None)


def resolve_row_model(text: str) -> RowModel:
    """The library model a row's model cell names; RowUnreadable when no reading of it is known."""
    for name in name_candidates(text):
        try:
            return _lookup(name)
        except ChipfitError:
            continue
    raise RowUnreadable(f"no model in the library is called {text!r} (nor a shorter form of that name)")


def resolve_row_hardware(text: str, catalog: Catalog) -> tuple[str, int | None]:
    """The catalog id a row's hardware cell names, and the device count it gives (None: none). A note that
    states the network ('(3x 100 Gbps RoCE per chip)') is the network's, not the device's name."""
    resolved = resolve_hardware(re.sub(r"\([^)]*\bgb(?:ps|/s|it/s)\b[^)]*\)", " ", text, flags=re.I), catalog)
    return resolved.hw_id, resolved.devices
