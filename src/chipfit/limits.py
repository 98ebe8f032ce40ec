"""Bounds on what chipfit reads, so a hostile or broken input is refused before it costs time or memory.

Each limit is far above any published model (docs/limits.md lists them with the reason) and is
checked where the input is read, before anything is built or traced. Pure: no I/O.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ChipfitError

# Layers of one transformer stack (HF config, --spec): published models have at most 126 (Llama 3.1 405B).
MAX_LAYERS = 1_000
# One tensor dimension, and the elements of one tensor: int64 arithmetic stays exact far below both.
MAX_DIM = 2**31 - 1
MAX_TENSOR_ELEMENTS = 2**48
# Axes of one tensor; ONNX and Caffe models use at most 6.
MAX_RANK = 16
# Nesting of JSON and TOML documents (config.json, catalog files, Keras configs): published ones nest under 10.
MAX_NESTING = 64
# Operators in one graph or trace: GPT-3 175B traced at one step holds about 40,000.
MAX_OPERATORS = 1_000_000


def check_shape(shape, where: str) -> tuple[int, ...]:
    """`shape` as a tuple of whole numbers, each 1..MAX_DIM, at most MAX_RANK axes and MAX_TENSOR_ELEMENTS
    elements; otherwise one sentence naming `where`."""
    shape = tuple(shape)
    if len(shape) > MAX_RANK:
        raise ChipfitError(f"{where} has a tensor of {len(shape)} axes, more than the {MAX_RANK} chipfit reads; "
                           "check the model's shapes.")
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_DIM:
            raise ChipfitError(f"{where} has dimension {d!r} in shape {_show(shape)}; every dimension must be a whole "
                               f"number from 1 to {MAX_DIM}.")
    if math.prod(shape) > MAX_TENSOR_ELEMENTS:
        raise ChipfitError(f"{where} has a tensor of shape {_show(shape)}, more than the {MAX_TENSOR_ELEMENTS:.3g} "
                           "elements chipfit profiles; check the model's sizes.")
    return shape


def check_whole(value: Any, where: str, least: int = 1, most: int = MAX_DIM) -> int:
    """`value` as an int in [least, most] (a float that is whole counts), else one sentence naming `where`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and float(value).is_integer() and least <= value <= most
    if not ok:
        raise ChipfitError(f"{where} is {value!r}; give a whole number from {least} to {most}.")
    return int(value)


def check_nesting(document: Any, where: str, limit: int = MAX_NESTING) -> None:
    """Refuse a parsed JSON/TOML document nested deeper than `limit`, and any NaN or infinite number in it."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ChipfitError(f"{where} holds the number {value!r}; give finite numbers only.")
        if isinstance(value, (dict, list)):
            if depth > limit:
                raise ChipfitError(f"{where} nests deeper than {limit} levels; no model or catalog file needs that "
                                   "many, so it is refused.")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


def check_count(count: int, what: str, where: str, limit: int) -> None:
    """Refuse `count` items of `what` beyond `limit`."""
    if count > limit:
        raise ChipfitError(f"{where} has {count} {what}, more than the {limit} chipfit reads; "
                           "see docs/limits.md.")


def _show(shape: tuple) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
