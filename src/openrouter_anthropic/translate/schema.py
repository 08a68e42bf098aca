"""Tool input schemas made acceptable to upstreams with a JSON-Schema subset.

Gemini (through OpenRouter) rejects keywords such as `$schema`, `exclusiveMinimum`,
`propertyNames`, `$ref`; Claude Code's schemas (JSON Schema 2020-12) use them. A keyword
the upstream cannot take is rewritten into one it can (`const` -> `enum`, local `$ref`s
inlined, `["string","null"]` -> `nullable`), or, where no equivalent exists, stated in the
`description` so the model is still asked for the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

# Keywords Gemini's function-declaration schema accepts (OpenAPI 3.0 subset).
_GEMINI_KEYWORDS = frozenset({
    "type", "format", "description", "nullable", "enum", "properties", "required",
    "items", "minItems", "maxItems", "minimum", "maximum", "minLength", "maxLength",
    "pattern", "anyOf", "title", "default", "propertyOrdering", "minProperties",
    "maxProperties",
})
# Dropped without a word: they say nothing about what the model must produce.
_SILENT = frozenset({"$schema", "$id", "$comment", "$defs", "definitions", "examples",
                     "additionalProperties", "readOnly", "writeOnly", "deprecated"})
_GEMINI_STRING_FORMATS = frozenset({"enum", "date-time"})
_MAX_REF_DEPTH = 8


def needs_sanitizing(family: str) -> bool:
    return family == "google"


def sanitize_for_gemini(schema: Mapping[str, Any]) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        value = schema.get(key)
        if isinstance(value, Mapping):
            defs.update({f"#/{key}/{name}": sub for name, sub in value.items()})
    return _clean(schema, defs, 0)


def _clean(node: Mapping[str, Any], defs: Mapping[str, Any], depth: int) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref)
        if isinstance(target, Mapping) and depth < _MAX_REF_DEPTH:
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _clean(merged, defs, depth + 1)
        return {"type": "object", "description": _join(node.get("description"),
                                                       f"(schema {ref})")}
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in node.items():
        if key in _SILENT:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "type" and isinstance(value, list):
            kinds = [k for k in value if k != "null"]
            if len(kinds) < len(value):
                out["nullable"] = True
            out["type"] = kinds[0] if len(kinds) == 1 else "string"
            if len(kinds) > 1:
                notes.append(f"one of the types {', '.join(map(str, kinds))}")
        elif key == "properties" and isinstance(value, Mapping):
            out["properties"] = {
                name: _clean(sub, defs, depth) if isinstance(sub, Mapping) else sub
                for name, sub in value.items()
            }
        elif key == "items" and isinstance(value, Mapping):
            out["items"] = _clean(value, defs, depth)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            out["anyOf"] = [_clean(v, defs, depth) for v in value if isinstance(v, Mapping)]
            if key == "oneOf":
                notes.append("exactly one of the alternatives")
        elif key == "allOf" and isinstance(value, list):
            for part in value:
                if isinstance(part, Mapping):
                    _merge(out, _clean(part, defs, depth))
        elif key == "format" and node.get("type") == "string" \
                and value not in _GEMINI_STRING_FORMATS:
            notes.append(f"format: {value}")
        elif key in _GEMINI_KEYWORDS:
            out[key] = value
        else:
            notes.append(f"{key}: {_compact(value)}")
    if notes:
        out["description"] = _join(out.get("description"), f"({'; '.join(notes)})")
    return out


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if key == "properties" and isinstance(target.get(key), dict):
            target[key] = {**target[key], **value}
        elif key == "required" and isinstance(target.get(key), list):
            target[key] = [*target[key], *(v for v in value if v not in target[key])]
        elif key == "description" and key in target:
            target[key] = _join(target[key], value)
        else:
            target.setdefault(key, value)


def _join(first: Any, second: str) -> str:
    return f"{first} {second}" if isinstance(first, str) and first else second


def _compact(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= 200 else text[:197] + "..."
