"""A small reader of protobuf text format (Caffe .prototxt), with no schema and no protobuf import.

A message becomes a `Message`: field name -> list of values in file order, where a value is
a str (quoted string or enum identifier), int, float, bool or a nested `Message`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ChipfitError

MAX_DEPTH = 64  # nesting deeper than this is not a network description

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?[fF]?(?![\w.])|[-+]?0[xX][0-9a-fA-F]+)
  | (?P<ident>[-+]?[A-Za-z_][\w.]*)
  | (?P<punct>[{}<>:\[\],;])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}


@dataclass
class Message:
    """One message: each field name maps to its values in file order (repeated fields have many)."""

    fields: dict[str, list] = field(default_factory=dict)

    def all(self, name: str) -> list:
        return self.fields.get(name, [])

    def get(self, name: str, default=None):
        """The last value of a field (protobuf keeps the last one for a non-repeated field)."""
        values = self.fields.get(name)
        return values[-1] if values else default

    def has(self, name: str) -> bool:
        return name in self.fields


def parse(text: str, source: str) -> Message:
    """Parse protobuf text format; `source` names the input in error messages."""
    tokens = _tokenize(text, source)
    root = Message()
    stack: list[tuple[Message, str]] = []  # open messages with the bracket that closes them
    current = root
    i = 0
    while i < len(tokens):
        kind, value, line = tokens[i]
        if kind == "punct" and value in "}>":
            if not stack or stack[-1][1] != value:
                raise ChipfitError(f"{source} line {line}: unexpected '{value}'; check the braces of the message above it.")
            current, _ = stack.pop()
            i += 1
            continue
        if kind == "punct" and value in ",;":  # optional separators between fields
            i += 1
            continue
        if kind != "ident":
            raise ChipfitError(f"{source} line {line}: expected a field name, found {value!r}; fix the syntax there.")
        name = value
        i += 1
        colon = i < len(tokens) and tokens[i][1] == ":" and tokens[i][0] == "punct"
        if colon:
            i += 1
        if i >= len(tokens):
            raise ChipfitError(f"{source} line {line}: field {name!r} has no value; the file may be cut short.")
        kind, value, line = tokens[i]
        if kind == "punct" and value in "{<":
            if len(stack) >= MAX_DEPTH:
                raise ChipfitError(f"{source} line {line}: messages nest deeper than {MAX_DEPTH} levels; this is not a network description.")
            child = Message()
            current.fields.setdefault(name, []).append(child)
            stack.append((current, "}" if value == "{" else ">"))
            current = child
            i += 1
        elif kind == "punct" and value == "[" and colon:
            i += 1
            while i < len(tokens) and tokens[i][1] != "]":
                if tokens[i][1] != ",":
                    current.fields.setdefault(name, []).append(_scalar(tokens[i], source))
                i += 1
            if i >= len(tokens):
                raise ChipfitError(f"{source} line {line}: list of {name!r} has no closing ']'; the file may be cut short.")
            i += 1
        elif colon:
            current.fields.setdefault(name, []).append(_scalar(tokens[i], source))
            i += 1
        else:
            raise ChipfitError(f"{source} line {line}: expected ':' or '{{' after {name!r}; fix the syntax there.")
    if stack:
        raise ChipfitError(f"{source}: {len(stack)} message(s) are not closed with '}}'; the file may be cut short.")
    return root


def _tokenize(text: str, source: str) -> list[tuple[str, str, int]]:
    tokens = []
    pos, line = 0, 1
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ChipfitError(f"{source} line {line}: cannot read {text[pos:pos + 20]!r}; fix the syntax there.")
        kind = match.lastgroup
        if kind != "space":
            tokens.append((kind, match.group(), line))
        line += match.group().count("\n")
        pos = match.end()
    return tokens


def _scalar(token: tuple[str, str, int], source: str):
    kind, value, line = token
    if kind == "string":
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), value[1:-1])
    if kind == "number":
        if value.lower().lstrip("+-").startswith("0x"):
            return int(value, 16)
        body = value.rstrip("fF")
        return float(body) if any(c in body for c in ".eE") else int(body)
    if kind == "ident":
        if value in ("true", "True"):
            return True
        if value in ("false", "False"):
            return False
        if value.lstrip("+-").lower() in ("inf", "infinity", "nan"):
            return float(value)
        return value
    raise ChipfitError(f"{source} line {line}: expected a value, found {value!r}; fix the syntax there.")
