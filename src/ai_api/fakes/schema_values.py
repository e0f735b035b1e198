"""Deterministic example values for JSON Schemas: what the fakes answer for structured output.

`example(schema)` returns one instance of a schema as OpenAI's structured outputs and tool
parameters use them (and as pydantic writes them: `$ref` into `$defs`, `anyOf` for unions and
`Optional`, `type` lists for nullable fields). The same schema always gives the same value.
Not covered: `pattern` (strings are not made to match one), `not`, `if`/`then`, and
`uniqueItems` with several items alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Past this depth of nesting, optional properties and optional array items are left out, so a
# recursive schema (a tree of `$ref`s) still ends.
MAX_DEPTH = 6

_FORMATS: Mapping[str, str] = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_TYPE_ORDER = ("object", "array", "string", "number", "integer", "boolean")


def example(schema: Any) -> Any:
    """One value that `schema` accepts (a JSON-compatible Python value)."""
    return _Walk(schema if isinstance(schema, dict) else {}).value(schema, 0)


def example_object(schema: Any) -> dict[str, Any]:
    """An example object for `schema` ({} when the schema describes something else)."""
    value = example(schema)
    return value if isinstance(value, dict) else {}


class _Walk:
    """One walk over a schema; keeps the root so `$ref`s can be resolved."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node

    def value(self, schema: Any, depth: int) -> Any:
        if schema is True or not isinstance(schema, dict):
            return "example"
        if isinstance(schema.get("$ref"), str):
            if depth > MAX_DEPTH * 2:
                return None
            merged = {**self.resolve(schema["$ref"]), **_without(schema, "$ref")}
            return self.value(merged, depth + 1)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        return self._combined(schema, depth)

    def _combined(self, schema: dict[str, Any], depth: int) -> Any:
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self.value({**_without(schema, key), **_first(options)}, depth)
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts:
            return self._all_of(schema, parts, depth)
        return self._typed(schema, _kind(schema), depth)

    def _all_of(self, schema: dict[str, Any], parts: list[Any], depth: int) -> Any:
        rest = _without(schema, "allOf")
        values = [self.value(p, depth) for p in parts]
        if rest:
            values.append(self.value(rest, depth))
        if all(isinstance(v, dict) for v in values):
            merged: dict[str, Any] = {}
            for v in values:
                merged.update(v)
            return merged
        return values[0]

    def _typed(self, schema: dict[str, Any], kind: str, depth: int) -> Any:
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            return _string(schema)
        if kind in ("number", "integer"):
            return _number(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        return None

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        names = list(properties) if depth < MAX_DEPTH else [n for n in properties if n in required]
        names += [r for r in required if r not in names]
        extra = schema.get("additionalProperties")
        return {
            name: self.value(
                properties.get(name, extra if isinstance(extra, dict) else {}), depth + 1
            )
            for name in names
        }

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items", {})
        if isinstance(items, list):  # the draft-4 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        low = _int(schema.get("minItems"), 0)
        high = _int(schema.get("maxItems"), max(low, 1, len(prefix)))
        wanted = max(len(prefix), 1 if depth < MAX_DEPTH else 0)
        count = max(low, min(wanted, high))
        return [
            self.value(prefix[i] if i < len(prefix) else items, depth + 1) for i in range(count)
        ]


def _without(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _first(options: list[Any]) -> dict[str, Any]:
    """The first option; a `null` option only when it is the only one (so `Optional[X]` is X)."""
    usable = [o for o in options if isinstance(o, dict)]
    chosen = next((o for o in usable if o.get("type") != "null"), usable[0] if usable else {})
    return dict(chosen)


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        named = [k for k in kind if isinstance(k, str)]
        kind = next((k for k in _TYPE_ORDER if k in named), "null" if named else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "additionalProperties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        return "number"
    return "string"


def _int(value: Any, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )


def _string(schema: dict[str, Any]) -> str:
    form = schema.get("format")
    text = _FORMATS.get(form, "example") if isinstance(form, str) else "example"
    low = _int(schema.get("minLength"), 0)
    high = _int(schema.get("maxLength"), max(low, len(text)))
    if len(text) < low:
        text += "x" * (low - len(text))
    return text[:high]


def _bound(schema: dict[str, Any], name: str) -> float | None:
    value = schema.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    low_open, high_open = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
    if integer:
        lows = [math.ceil(low)] if low is not None else []
        lows += [math.floor(low_open) + 1] if low_open is not None else []
        highs = [math.floor(high)] if high is not None else []
        highs += [math.ceil(high_open) - 1] if high_open is not None else []
        if lows:
            return max(lows)
        return 1 if not highs or min(highs) >= 1 else min(highs)
    if low is not None and (low_open is None or low > low_open):
        low_open = None
    elif low_open is not None:
        low = low_open
    if high is not None and (high_open is None or high < high_open):
        high_open = None
    elif high_open is not None:
        high = high_open
    if low is None and high is None:
        return 1
    if low is None:
        assert high is not None
        fits = high > 1 or (high == 1 and high_open is None)
        return 1 if fits else _tidy(high - 1 if high_open is not None else high)
    if high is None:
        return _tidy(low + 1 if low_open is not None else low)
    return _tidy((low + high) / 2 if low_open is not None else low)


def _tidy(value: float) -> int | float:
    return int(value) if value.is_integer() else value
