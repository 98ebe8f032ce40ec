"""One resolver from free text to a catalog entry: "H100 80GB HBM3 SXM5", "HGX A100 8-GPU",
"TPU v4-1024 slice", "2x Xeon Platinum 8592+", "ND96isr H100 v5", "p5.48xlarge".

The text is cut into tokens (letters, digits and "+" apart, so "Gaudi2", "Gaudi 2" and "gaudi-2"
read the same). An entry matches when every word of one of its names is in the text: its id, its
`name`, the `aliases` of its catalog entry, or a cloud instance built from it. The most specific
match wins (most tokens); a memory size ("40GB") or form factor ("PCIe") the text states rules out
entries that differ, and a vendor it names breaks ties. A product-variant word the text names
("M3 Ultra", "RTX 4080 Super", "Orin NX") that none of an entry's names carry rules that entry out:
a variant is another product, with other memory, bandwidth and compute. When names match but these
rules leave nothing, the error says which rule refused which entry. The device count comes from the
text ("8x", "4xA100", "8-GPU", "NVL72", "64 chips"), from a matched instance (p5.48xlarge: 8), or from
a TPU slice name, whose suffix counts TensorCores ("v4-1024": 1024 / 2 per chip = 512 chips).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from chipfit.catalog.loader import Catalog
from chipfit.catalog.schema import Hardware, Instance
from chipfit.errors import ChipfitError

FORM_FACTORS = ("sxm", "pcie", "oam", "nvl", "usb")
# Words that name a variant of a product line, each a different device from the base part: Apple's
# Pro/Max/Ultra, NVIDIA's Ti/Super/NVL/Max-Q and laptop parts and its S suffix (V100S, L40S), Jetson's
# Nano/NX/AGX, AMD's XT/XTX.
VARIANT_WORDS = frozenset(("pro", "max", "ultra", "ti", "super", "nvl", "laptop", "mobile", "nano", "nx", "agx",
                           "xt", "xtx", "s"))
_TOKEN = re.compile(r"[a-z]+|\d+|\+")
_GLUED_COUNT = re.compile(r"(?i)(?<![\w.])(\d+)[x\u00d7](?=[a-z])")   # "4xA100" -> "4x A100"
_POSSESSIVE = re.compile(r"(?i)(?<=[a-z])['\u2019]s\b")                  # "NVIDIA's" -> "NVIDIA"
_COUNT = re.compile(
    r"(?<![\w.])(\d+)\s*[x\u00d7]\s*(?=[a-z])"                       # 8x H100, 2 x Xeon
    r"|(?<![\w.])[x\u00d7]\s*(\d+)\b"                                 # H100 x8
    r"|(?<![\w.])(\d+)[\s-]*(?:gpus?|chips?|devices?|cards?|accelerators?|sockets?|cpus?|npus?)\b"
    r"|\bnvl(\d+)\b"                                                  # GB200 NVL72
)
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*(gib|gb|tib|tb)\b")
_SLICE = re.compile(r"\bv\d+[a-z]*\s*-\s*(\d+)\b|\blitepod\s*-\s*(\d+)\b")
_INSTANCE_SUFFIX = re.compile(r"-(capacity-block|1y|3y)$")


@dataclass(frozen=True)
class Resolved:
    """The catalog id free text names and the device count it gives (None: it gives none)."""

    hw_id: str
    devices: int | None = None


@dataclass(frozen=True)
class _Key:
    """One name of an entry: words that must all appear, each a contiguous run of tokens."""

    hw_id: str
    words: tuple[tuple[str, ...], ...]
    instance: Instance | None = None

    @property
    def size(self) -> int:
        return sum(len(w) for w in self.words)


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """(token, start, end) of `text`, lowercase; "plus" reads as "+"."""
    return [("+" if m.group() == "plus" else m.group(), m.start(), m.end())
            for m in _TOKEN.finditer(text.lower())]


def _words(text: str, whole: bool = False) -> tuple[tuple[str, ...], ...]:
    parts = [text] if whole else text.split()
    return tuple(w for w in (tuple(t for t, _, _ in _tokens(p)) for p in parts) if w)


def _find(run: tuple[str, ...], toks: list[str]) -> int:
    """Index where `run` starts in `toks`, or -1."""
    n = len(run)
    return next((i for i in range(len(toks) - n + 1) if tuple(toks[i:i + n]) == run), -1)


def _keys(catalog: Catalog) -> list[_Key]:
    keys = []
    for hw in catalog.hardware.values():
        keys.append(_Key(hw.id, _words(hw.id, whole=True)))
        keys.extend(_Key(hw.id, _words(name)) for name in (hw.name, *hw.aliases))
    for inst in catalog.instances:
        names = (_INSTANCE_SUFFIX.sub("", inst.id.split("-", 1)[1]), re.sub(r"(?i)^standard_", "", inst.name))
        keys.extend(_Key(inst.hardware, _words(n, whole=True), inst) for n in names)
    return [k for k in keys if k.words]


def _memory_gib(text: str) -> float | None:
    m = _MEMORY.search(text.lower())
    if not m:
        return None
    return float(m.group(1)) * (1024 if m.group(2).startswith("t") else 1)


def _memory_agrees(hw: Hardware, stated: float | None) -> bool:
    """The stated size (GB or GiB, as vendors write either) is the entry's, within 3%."""
    if stated is None or hw.memory_bytes is None:
        return True
    size = hw.memory_bytes.value
    return any(abs(size / unit - stated) <= 0.03 * stated for unit in (2**30, 1e9))


def _form_factors(hw: Hardware) -> set[str]:
    return set(FORM_FACTORS) & {t for t, _, _ in _tokens(f"{hw.id} {hw.name}")}


def resolve_hardware(text: str, catalog: Catalog) -> Resolved:
    """The catalog entry and device count `text` names; a ChipfitError names the closest entries."""
    query = _POSSESSIVE.sub("", text.strip())
    if query.lower() in catalog.hardware:
        return Resolved(query.lower(), _count(query, None, None, (0, 0)))
    # "4xA100" reads as "4x A100" only when the text as written names nothing ("7900XTX" is a name).
    for candidate in dict.fromkeys((query, _GLUED_COUNT.sub(r"\1x ", query))):
        best, refused = _matches(candidate, catalog)
        if best:
            break
    if not best:
        by_reason: dict[str, list[str]] = {}
        for hw_id, why in sorted(refused.items()):
            by_reason.setdefault(why, []).append(hw_id)
        detail = "".join(f" Its name matches {', '.join(ids)}, but {why}." for why, ids in by_reason.items())
        raise ChipfitError(f"Unknown hardware '{query}': no catalog entry matches it.{detail}"
                           f"{_closest(query, catalog)} Run `chipfit hardware list` to see the catalog.")
    top = max(rank for rank, _, _ in best.values())
    winners = sorted(hw_id for hw_id, (rank, _, _) in best.items() if rank == top)
    if len(winners) > 1:
        raise ChipfitError(f"Hardware '{query}' matches {', '.join(winners)}; add the memory size or form factor "
                           "(like 80GB or SXM) to pick one.")
    _, key, span = best[winners[0]]
    return Resolved(winners[0], _count(candidate, catalog.hardware[winners[0]], key.instance, span))


def _matches(text: str, catalog: Catalog) -> tuple[dict[str, tuple[tuple, _Key, tuple[int, int]]], dict[str, str]]:
    """Entries whose names `text` contains: {id: (rank, key, character span of the name)}, and {id: why refused}
    for those a variant word, a stated memory size or a form factor rules out."""
    spans = _tokens(text)
    toks = [t for t, _, _ in spans]
    stated_gib = _memory_gib(text)
    query_ff = set(FORM_FACTORS) & set(toks)
    variants = VARIANT_WORDS & set(toks)
    keys = _keys(catalog)
    names: dict[str, set[str]] = {}  # every token of each entry's names: id, name, aliases, its instances
    for key in keys:
        names.setdefault(key.hw_id, set()).update(t for w in key.words for t in w)
    best: dict[str, tuple[tuple, _Key, tuple[int, int]]] = {}
    refused: dict[str, str] = {}
    for key in keys:
        starts = [_find(w, toks) for w in key.words]
        if min(starts) < 0:
            continue
        hw = catalog.hardware[key.hw_id]
        why = _refusal(hw, key, variants - names[hw.id], stated_gib, query_ff)
        if why:
            refused.setdefault(key.hw_id, why)
            continue
        vendor = bool({t for t, _, _ in _tokens(hw.vendor)} & set(toks))
        ff = _form_factors(hw)
        rank = (key.size, bool(query_ff & ff), stated_gib is not None and hw.memory_bytes is not None, vendor)
        span = (spans[min(starts)][1], max(spans[i + len(w) - 1][2] for i, w in zip(starts, key.words)))
        if key.hw_id not in best or rank > best[key.hw_id][0]:
            best[key.hw_id] = (rank, key, span)
    return best, refused


def _refusal(hw: Hardware, key: _Key, missing_variants: set[str], stated_gib: float | None,
             query_ff: set[str]) -> str:
    """Why a name match is not this entry ('' when it is): a variant word the entry lacks, or (for a device
    name, not an instance) a stated memory size or form factor that is not the entry's."""
    if missing_variants:
        words = " and ".join(repr(w) for w in sorted(missing_variants))
        return f"the variant {words} it names is another product than the base part"
    if key.instance is not None:
        return ""
    if not _memory_agrees(hw, stated_gib):
        own = hw.memory_bytes.value / 2**30
        more = (": a larger size may add a superchip's or a system's host memory, which is not the device's"
                if stated_gib > own else "")
        return f"it states {stated_gib:g} GB and the entry has {own:g} GiB of device memory{more}"
    ff = _form_factors(hw)
    if query_ff and ff and not query_ff & ff:
        return f"it states {'/'.join(sorted(query_ff)).upper()} and the entry is {'/'.join(sorted(ff)).upper()}"
    return ""


def _count(text: str, hw: Hardware | None, instance: Instance | None, name: tuple[int, int]) -> int | None:
    """Devices the text gives: an explicit count ("8x" outside the name: "7900 XTX" is no count; "NVL72"), times
    the instance's devices; or a TPU slice's chips."""
    lowered = text.lower()
    m = next((m for m in _COUNT.finditer(lowered)
              if m.group(1) is None or m.end() <= name[0] or m.start() >= name[1]), None)
    explicit = int(next(g for g in m.groups() if g)) if m else None
    if instance is not None:
        if explicit is None:
            return instance.count
        # "2x p5.48xlarge": a count right before the instance name counts instances, not devices.
        of_instances = m.group(1) is not None and not lowered[m.end():name[0]].strip()
        return explicit * instance.count if of_instances else explicit
    if explicit is not None:
        return explicit
    cores = hw.tensorcores_per_chip.value if hw is not None and hw.tensorcores_per_chip else None
    s = _SLICE.search(lowered)
    if cores and s:
        n = int(s.group(1) or s.group(2))
        if n % cores:
            raise ChipfitError(f"TPU slice '{text}' names {n} TensorCores, not a whole number of "
                               f"{hw.name} chips ({cores:g} TensorCores each); check the slice size.")
        return int(n // cores)
    return None


def _closest(query: str, catalog: Catalog, n: int = 3) -> str:
    """' Closest entries: a, b, c.' by shared tokens, then by spelling."""
    q = {t for t, _, _ in _tokens(query)}
    squashed = "".join(sorted(q))

    def score(hw: Hardware) -> tuple[float, float, str]:
        e = {t for t, _, _ in _tokens(" ".join((hw.id, hw.name, *hw.aliases)))}
        shared = len(q & e) / len(q | e) if q | e else 0.0
        return (-shared, -difflib.SequenceMatcher(None, squashed, "".join(sorted(e))).ratio(), hw.id)

    ranked = sorted(catalog.hardware.values(), key=score)[:n]
    return f" Closest entries: {', '.join(hw.id for hw in ranked)}." if ranked else ""


def hardware_named(text: str, catalog: Catalog) -> Hardware:
    """The entry free text names (`resolve_hardware`), for callers that need one device."""
    return catalog.hardware[resolve_hardware(text, catalog).hw_id]
