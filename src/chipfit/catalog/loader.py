"""Read the hardware catalog from TOML files into `Hardware` and `Instance` entries.

The built-in files ship as package data (`chipfit/catalog/data/*.toml`); users add or
replace entries with their own directories (`load_catalog(extra_dirs)` or the
`CHIPFIT_CATALOG` environment variable). TOML units are readable (TFLOP/s, GiB, GB/s);
the loader converts them to base units and checks every field, with errors that name
the file, the line and the field.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from chipfit.catalog.schema import CLASSES, FRAMEWORKS, PRECISIONS, Figure, Hardware, Instance
from chipfit.errors import ChipfitError, check_file, closest
from chipfit.limits import check_nesting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_VAR = "CHIPFIT_CATALOG"
PROVIDERS = ("aws", "gcp", "azure")
PRICINGS = ("on-demand", "spot", "capacity-block", "committed-1y", "committed-3y")

# TOML figure field -> (Hardware attribute, factor to base units, unit of the base value)
_FIGURES = {
    "memory_gib": ("memory_bytes", 2**30, "bytes"),  # the source's "GB" of DRAM/HBM is 2^30 bytes (JEDEC)
    "memory_gb": ("memory_bytes", 1e9, "bytes"),  # a source that states decimal bytes
    "mem_bw_gb_per_s": ("mem_bw_bytes_per_s", 1e9, "bytes/s"),
    "interconnect_gb_per_s": ("interconnect_bw_bytes_per_s", 1e9, "bytes/s"),
    "tdp_watts": ("tdp_watts", 1.0, "W"),
    "l2_cache_mib": ("l2_cache_bytes", 2**20, "bytes"),
    "onchip_memory_mib": ("onchip_memory_bytes", 2**20, "bytes"),
    "host_link_gb_per_s": ("host_link_bw_bytes_per_s", 1e9, "bytes/s"),
    "overlay_efficiency": ("overlay_efficiency", 1.0, "fraction of the int8 peak"),
    "tensorcores_per_chip": ("tensorcores_per_chip", 1.0, "TensorCores"),
    "matmul_max_tflops": ("matmul_max_flops", 1e12, "FLOP/s"),
    "price_usd": ("price_usd", 1.0, "USD"),
}
TFLOPS_TO_FLOPS = 1e12
_HW_TEXT = ("memory_type", "interconnect", "excluded_reason", "notes")
_HW_KEYS = {"id", "name", "vendor", "class", "launch_year", "frameworks", "aliases", "trainable",
            "peak_tflops", *_HW_TEXT, *_FIGURES}
_INST_KEYS = {"id", "provider", "name", "hardware", "count", "region", "price_date",
              "price_usd_per_hour", "spot_usd_per_hour", "pricing"}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_FIGURE_FORM = "{value = <number>, source = <key>}"


@dataclass
class Catalog:
    """Every hardware entry by id and every cloud instance, in base units.

    `load_catalog` caches and shares one Catalog per set of files: treat it as read-only.
    """

    hardware: dict[str, Hardware]
    instances: list[Instance]

    def get(self, hw_id: str) -> Hardware:
        """The entry with id `hw_id` (case-insensitive); a ChipfitError suggests near ids."""
        hw = self.hardware.get(hw_id) or self.hardware.get(hw_id.strip().lower())
        if hw is None:
            raise ChipfitError(
                f"Unknown hardware '{hw_id}'.{closest(hw_id, self.hardware)} "
                "Run `chipfit hardware list` to see the catalog."
            )
        return hw

    def select(self, hw_class: str | None = None, framework: str | None = None) -> list[Hardware]:
        """Entries of class `hw_class` that run `framework` (either filter may be None)."""
        if hw_class is not None and hw_class not in CLASSES:
            raise ChipfitError(
                f"Unknown hardware class '{hw_class}'.{closest(hw_class, CLASSES)} "
                f"Use one of: {', '.join(CLASSES)}."
            )
        if framework is not None and framework not in FRAMEWORKS:
            raise ChipfitError(
                f"Unknown framework '{framework}'.{closest(framework, FRAMEWORKS)} "
                f"Use one of: {', '.join(FRAMEWORKS)}."
            )
        return [
            hw for hw in self.hardware.values()
            if (hw_class is None or hw.hw_class == hw_class)
            and (framework is None or framework in hw.frameworks)
        ]

    def instances_for(self, hw_id: str) -> list[Instance]:
        """Cloud instances built from `hw_id` (an unknown id raises ChipfitError)."""
        hw = self.get(hw_id)
        return [inst for inst in self.instances if inst.hardware == hw.id]

    def cheapest_instance(self, hw_id: str, pricing: str | None = "on-demand") -> Instance | None:
        """The instance of `hw_id` with the lowest price per device-hour of kind `pricing`.

        `pricing` is one of PRICINGS, or None for any kind; None is returned when no
        instance of that kind is listed.
        """
        if pricing is not None and pricing not in PRICINGS:
            raise ChipfitError(
                f"Unknown pricing '{pricing}'.{closest(pricing, PRICINGS)} "
                f"Use one of: {', '.join(PRICINGS)} (or None for any)."
            )
        offers = [i for i in self.instances_for(hw_id) if pricing is None or i.pricing == pricing]
        return min(offers, key=lambda i: i.price_per_device_hour, default=None)

    def to_dict(self, item: Hardware | Instance) -> dict[str, Any]:
        """Plain data for JSON and `hardware show`: every figure with its unit and source.

        A hardware entry also lists its cloud instances.
        """
        if isinstance(item, Instance):
            out = {k: getattr(item, k) for k in
                   ("id", "provider", "name", "hardware", "count", "region", "price_date", "pricing",
                    "origin")}
            out["price_usd_per_hour"] = _figure_dict(item.price_usd_per_hour, "USD/h")
            out["spot_usd_per_hour"] = _figure_dict(item.spot_usd_per_hour, "USD/h")
            out["price_usd_per_device_hour"] = item.price_per_device_hour
            return out
        out = {
            "id": item.id, "name": item.name, "vendor": item.vendor, "class": item.hw_class,
            "launch_year": item.launch_year, "memory_type": item.memory_type,
            "interconnect": item.interconnect, "frameworks": list(item.frameworks), "aliases": list(item.aliases),
            "trainable": item.trainable, "excluded_reason": item.excluded_reason,
            "notes": item.notes, "origin": item.origin,
            "peak_flops": {p: _figure_dict(f, "FLOP/s") for p, f in item.peak_flops.items()},
        }
        for attr, _, unit in _FIGURES.values():
            out[attr] = _figure_dict(getattr(item, attr), unit)
        out["instances"] = [self.to_dict(i) for i in self.instances if i.hardware == item.id]
        return out


def _figure_dict(fig: Figure | None, unit: str) -> dict[str, Any] | None:
    if fig is None:
        return None
    out = {"value": fig.value, "unit": unit, "source": fig.source, "note": fig.note}
    if fig.dense is not None:
        out["dense"] = fig.dense
    return out


def load_catalog(extra_dirs: Sequence[str | Path] = ()) -> Catalog:
    """The built-in catalog, then every `*.toml` in `extra_dirs`, then the dirs in $CHIPFIT_CATALOG.

    A later entry (hardware or instance) with the same id replaces an earlier one. Results
    are cached per set of files and their modification times.
    """
    env = [d for d in os.environ.get(ENV_VAR, "").split(os.pathsep) if d.strip()]
    layers = [_builtin_files()] + [_user_files(d) for d in [*extra_dirs, *env]]
    key = tuple(tuple((str(p), p.stat().st_mtime_ns) for p in files) for files in layers)
    return _load(key)


def _builtin_files() -> list[Path]:
    data = resources.files("chipfit.catalog") / "data"
    return sorted(Path(str(p)) for p in data.iterdir() if p.name.endswith(".toml"))


def _user_files(path: str | Path) -> list[Path]:
    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".toml":
        return [path]
    if not path.is_dir():
        raise ChipfitError(
            f"Catalog directory '{path}' does not exist; pass a directory of *.toml files "
            f"(or fix ${ENV_VAR})."
        )
    return sorted(path.glob("*.toml"))


@functools.lru_cache(maxsize=16)
def _load(layers: tuple[tuple[tuple[str, int], ...], ...]) -> Catalog:
    hardware: dict[str, Hardware] = {}
    instances: dict[str, tuple[Instance, _Located]] = {}
    for layer in layers:
        seen: dict[str, str] = {}  # id -> file, to catch duplicates within one layer
        for file_name, _ in layer:
            hws, insts = _parse_file(Path(file_name))
            for hw, loc in hws:
                _no_duplicate(seen, "hardware", hw.id, loc)
                hardware[hw.id] = hw
            for inst, loc in insts:
                _no_duplicate(seen, "instance", inst.id, loc)
                instances[inst.id] = (inst, loc)
    for inst, loc in instances.values():
        if inst.hardware not in hardware:
            raise loc.error(
                "hardware",
                f"is '{inst.hardware}', which is not in the catalog."
                f"{closest(inst.hardware, hardware) or ' Add that hardware entry or fix the id.'}",
            )
    return Catalog(hardware=hardware, instances=[inst for inst, _ in instances.values()])


def _no_duplicate(seen: dict[str, str], kind: str, item_id: str, loc: _Located) -> None:
    key = f"{kind}:{item_id}"
    if key in seen:
        raise loc.error("id", f"repeats {kind} id '{item_id}' (also in {seen[key]}); keep one entry.")
    seen[key] = str(loc.path)


class _Located:
    """One [[hardware]] or [[instance]] block of a file: finds the line of a key for errors."""

    def __init__(self, path: Path, lines: list[str], kind: str, start: int, end: int, item_id: str):
        self.path, self.lines, self.kind = path, lines, kind
        self.start, self.end, self.item_id = start, end, item_id

    def line_of(self, field: str) -> int:
        """1-based line of `field` (dotted for nested keys) inside this block."""
        parts = field.split(".")
        quoted = [rf"[\"']?{re.escape(p)}[\"']?" for p in parts]
        dot = r"\s*\.\s*"
        patterns = [rf"^\s*{dot.join(quoted[:n])}\s*[.=]" for n in range(len(parts), 0, -1)]
        patterns += [rf"[{{,]\s*{quoted[-1]}\s*=", rf"^\s*\[\s*{self.kind}\s*\.\s*{quoted[0]}\s*\]"]
        for pattern in patterns:
            for i in range(self.start, self.end):
                if re.search(pattern, self.lines[i]):
                    return i + 1
        return self.start + 1

    def error(self, field: str, problem: str) -> ChipfitError:
        return ChipfitError(
            f"Catalog file {self.path} line {self.line_of(field)}: {self.kind} "
            f"'{self.item_id}' field '{field}' {problem}"
        )


def _parse_file(path: Path) -> tuple[list[tuple[Hardware, _Located]], list[tuple[Instance, _Located]]]:
    check_file(path, "Catalog file", "give a readable .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChipfitError(f"Catalog file {path} cannot be read ({exc}); check it is UTF-8 text.") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\s*\(at line (\d+), column \d+\)", msg)
        line = int(m.group(1)) if m else text.count("\n") + 1
        what = msg[: m.start()] if m else re.sub(r"\s*\(at end of document\)", "", msg)
        raise ChipfitError(f"Catalog file {path} line {line}: {what}; fix the TOML syntax.") from exc
    except RecursionError:
        raise ChipfitError(f"Catalog file {path} nests deeper than Python can parse; a catalog file needs "
                           "two levels, so it is refused.") from None
    check_nesting(doc, f"Catalog file {path}")

    lines = text.splitlines()
    for key in doc:
        if key not in ("sources", "hardware", "instance"):
            raise ChipfitError(
                f"Catalog file {path} line {_top_line(lines, key)}: unknown table '{key}'; "
                "use [sources], [[hardware]] and [[instance]] only."
            )
    sources = doc.get("sources", {})
    for key, citation in sources.items():
        if not isinstance(citation, str) or not citation.strip():
            raise ChipfitError(
                f"Catalog file {path} line {_top_line(lines, key)}: source '{key}' must be a "
                "citation string (title, publisher, URL, date)."
            )
    hardware = [(_hardware(raw, loc, sources), loc)
                for raw, loc in _blocks(path, lines, doc, "hardware")]
    instances = [(_instance(raw, loc, sources), loc)
                 for raw, loc in _blocks(path, lines, doc, "instance")]
    return hardware, instances


def _top_line(lines: list[str], key: str) -> int:
    for i, line in enumerate(lines):
        if re.match(rf"^\s*\[*\s*[\"']?{re.escape(key)}[\"']?\s*[=\]]", line):
            return i + 1
    return 1


def _blocks(path: Path, lines: list[str], doc: dict, kind: str) -> Iterable[tuple[dict, _Located]]:
    raws = doc.get(kind, [])
    if not isinstance(raws, list) or not all(isinstance(r, dict) for r in raws):
        raise ChipfitError(
            f"Catalog file {path} line {_top_line(lines, kind)}: '{kind}' must be written as "
            f"[[{kind}]] tables."
        )
    starts = [i for i, line in enumerate(lines) if re.match(rf"^\s*\[\[\s*{kind}\s*\]\]", line)]
    headers = [i for i, line in enumerate(lines) if re.match(r"^\s*\[\[", line)] + [len(lines)]
    seen: set[str] = set()
    for n, raw in enumerate(raws):
        start = starts[n] if n < len(starts) else 0
        end = next(h for h in headers if h > start) if n < len(starts) else len(lines)
        item_id = raw.get("id")
        loc = _Located(path, lines, kind, start, end, item_id if isinstance(item_id, str) else f"#{n + 1}")
        if not isinstance(item_id, str) or not _ID_RE.match(item_id):
            raise loc.error("id", "must be a lowercase string of letters, digits, dots and dashes, "
                                  "like \"nvidia-h100-sxm5-80gb\".")
        if item_id in seen:
            raise loc.error("id", f"repeats the id '{item_id}' of an earlier {kind} in this file; "
                                  "keep one entry.")
        seen.add(item_id)
        yield raw, loc


def _check_keys(raw: dict, allowed: set[str], required: Iterable[str], loc: _Located) -> None:
    for key in raw:
        if key not in allowed:
            raise loc.error(key, f"is not a known field.{closest(key, allowed)} "
                                 f"Allowed fields: {', '.join(sorted(allowed))}.")
    for key in required:
        if key not in raw:
            raise loc.error(key, f"is missing; add {key} = ... to this {loc.kind}.")


def _text(raw: dict, key: str, loc: _Located, default: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise loc.error(key, f"must be a string in quotes; got {value!r}.")
    return value


def _figure(raw: Any, field: str, loc: _Located, sources: dict, factor: float,
            dense_default: bool | None = None) -> Figure:
    allowed = {"value", "source", "note"} | ({"dense"} if dense_default is not None else set())
    form = _FIGURE_FORM if dense_default is None else \
        "{value = <number>, dense = <true|false>, source = <key>}"
    value = raw.get("value") if isinstance(raw, dict) else None
    if (not isinstance(raw, dict) or set(raw) - allowed or "source" not in raw
            or not isinstance(value, (int, float)) or isinstance(value, bool)
            or not isinstance(raw.get("note", ""), str)
            or not isinstance(raw.get("dense", True), bool)):
        raise loc.error(field, f"must be {form}; got {raw!r}.")
    if value <= 0:
        raise loc.error(field, f"must be a positive number; got {value}.")
    key = raw["source"]
    if not isinstance(key, str) or key not in sources:
        hint = closest(str(key), sources) or " Add it to the [sources] table of this file."
        raise loc.error(field, f"names unknown source '{key}'.{hint}")
    # Scaled figures are whole FLOP/s, bytes or bytes/s: rounding drops float error
    # (66.9 * 1e12 is 66900000000000.01); unscaled watts and USD keep their decimals.
    base = float(value) * factor if factor == 1.0 else float(round(value * factor))
    return Figure(value=base, source=sources[key],
                  dense=raw.get("dense", dense_default), note=raw.get("note", ""))


def _hardware(raw: dict, loc: _Located, sources: dict) -> Hardware:
    _check_keys(raw, _HW_KEYS, ("id", "name", "vendor", "class"), loc)
    hw_class = _text(raw, "class", loc)
    if hw_class not in CLASSES:
        raise loc.error("class", f"is '{hw_class}', not a known class.{closest(hw_class, CLASSES)} "
                                 f"Use one of: {', '.join(CLASSES)}.")
    frameworks = raw.get("frameworks", [])
    if not isinstance(frameworks, list) or not all(isinstance(f, str) for f in frameworks):
        raise loc.error("frameworks", "must be a list of strings, like [\"pytorch\", \"jax\"].")
    for fw in frameworks:
        if fw not in FRAMEWORKS:
            raise loc.error("frameworks", f"has unknown framework '{fw}'.{closest(fw, FRAMEWORKS)} "
                                          f"Use any of: {', '.join(FRAMEWORKS)}.")
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise loc.error("aliases", "must be a list of names in quotes, like [\"H100\", \"H100 SXM\"].")
    year = raw.get("launch_year")
    if year is not None and (not isinstance(year, int) or isinstance(year, bool) or year < 1940):
        raise loc.error("launch_year", f"must be a year like 2022; got {year!r}.")
    trainable = raw.get("trainable", True)
    if not isinstance(trainable, bool):
        raise loc.error("trainable", f"must be true or false; got {trainable!r}.")
    texts = {k: _text(raw, k, loc) for k in _HW_TEXT}
    if not trainable and not texts["excluded_reason"].strip():
        raise loc.error("excluded_reason", "must say in one sentence why this entry cannot train "
                                           "(trainable = false).")
    peaks = raw.get("peak_tflops", {})
    if not isinstance(peaks, dict):
        raise loc.error("peak_tflops", "must be a table of precision = {value = <number>, "
                                       "dense = <true|false>, source = <key>}.")
    peak_flops = {}
    for prec, fig in peaks.items():
        if prec not in PRECISIONS:
            raise loc.error(f"peak_tflops.{prec}", f"is not a known precision.{closest(prec, PRECISIONS)} "
                                                   f"Use one of: {', '.join(PRECISIONS)}.")
        peak_flops[prec] = _figure(fig, f"peak_tflops.{prec}", loc, sources, TFLOPS_TO_FLOPS, True)
    if "memory_gib" in raw and "memory_gb" in raw:
        raise loc.error("memory_gb", "repeats the memory size; give memory_gib (binary, as vendors mean \"80GB\" "
                                     "of HBM) or memory_gb (decimal bytes), not both.")
    figures = {attr: _figure(raw[key], key, loc, sources, factor)
               for key, (attr, factor, _) in _FIGURES.items() if key in raw}
    if figures.get("overlay_efficiency") and figures["overlay_efficiency"].value > 1:
        raise loc.error("overlay_efficiency", "is a share of the overlay's peak, so at most 1; got "
                                              f"{figures['overlay_efficiency'].value:g}.")
    return Hardware(
        id=raw["id"], name=_text(raw, "name", loc), vendor=_text(raw, "vendor", loc),
        hw_class=hw_class, launch_year=year, peak_flops=peak_flops,
        frameworks=tuple(frameworks), aliases=tuple(aliases), trainable=trainable, origin=str(loc.path),
        **texts, **figures,
    )


def _instance(raw: dict, loc: _Located, sources: dict) -> Instance:
    _check_keys(raw, _INST_KEYS,
                ("id", "provider", "name", "hardware", "count", "price_date", "price_usd_per_hour"), loc)
    provider = _text(raw, "provider", loc)
    if provider not in PROVIDERS:
        raise loc.error("provider", f"is '{provider}', not a known provider.{closest(provider, PROVIDERS)} "
                                    f"Use one of: {', '.join(PROVIDERS)}.")
    count = raw["count"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise loc.error("count", f"must be a whole number of devices, at least 1; got {count!r}.")
    price_date = raw["price_date"]
    if isinstance(price_date, str):
        try:
            price_date = _dt.date.fromisoformat(price_date)
        except ValueError:
            pass
    if not isinstance(price_date, _dt.date) or isinstance(price_date, _dt.datetime):
        raise loc.error("price_date", f"must be an ISO date like \"2024-06-01\"; got {raw['price_date']!r}.")
    pricing = _text(raw, "pricing", loc, "on-demand")
    if pricing not in PRICINGS:
        raise loc.error("pricing", f"is '{pricing}', not a known kind of price.{closest(pricing, PRICINGS)} "
                                   f"Use one of: {', '.join(PRICINGS)}.")
    spot = raw.get("spot_usd_per_hour")
    return Instance(
        id=raw["id"], provider=provider, name=_text(raw, "name", loc),
        hardware=_text(raw, "hardware", loc), count=count,
        price_usd_per_hour=_figure(raw["price_usd_per_hour"], "price_usd_per_hour", loc, sources, 1.0),
        price_date=price_date.isoformat(), region=_text(raw, "region", loc),
        spot_usd_per_hour=None if spot is None else _figure(spot, "spot_usd_per_hour", loc, sources, 1.0),
        origin=str(loc.path), pricing=pricing,
    )
