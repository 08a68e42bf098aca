"""Structured output for models that cannot enforce a JSON Schema themselves.

The gateway asks for the schema in words, then checks the answer here; the errors found
become the next request's feedback. (Instructor does this loop for OpenAI-client code; the
gateway has its own upstream client and raw JSON Schemas, so a small validator fits better.)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import orjson

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_MAX_ERRORS = 5


def extract_json(text: str) -> Any:
    """The JSON document in a model's answer (bare, fenced, or surrounded by prose)."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    try:
        return orjson.loads(stripped)
    except orjson.JSONDecodeError:
        pass
    start = min((i for i in (stripped.find("{"), stripped.find("[")) if i >= 0), default=-1)
    end = max(stripped.rfind("}"), stripped.rfind("]"))
    if start < 0 or end <= start:
        raise ValueError("the answer holds no JSON document")
    try:
        return orjson.loads(stripped[start:end + 1])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the answer is not valid JSON ({exc})") from exc


@functools.lru_cache(maxsize=64)
def _validator(schema_json: bytes) -> Any:
    import jsonschema  # imported on first use: only this path needs it

    schema = orjson.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def validation_errors(value: Any, schema: Mapping[str, Any]) -> list[str]:
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    errors = []
    for error in validator.iter_errors(value):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        errors.append(f"at ${where}: {error.message}")
        if len(errors) == _MAX_ERRORS:
            break
    return errors


def feedback(errors: list[str]) -> str:
    listed = "\n".join(f"- {e}" for e in errors)
    return (
        "Your answer does not validate against the required JSON Schema:\n"
        f"{listed}\nAnswer again with only the corrected JSON document."
    )
