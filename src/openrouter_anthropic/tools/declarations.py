"""Checks shared by server-tool declarations (`{"type": "web_fetch_20250910", ...}`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequest
from .registry import Declaration


def single(declarations: Sequence[Declaration], name: str) -> Declaration:
    if len(declarations) > 1:
        raise InvalidRequest(f"{declarations[1].path}: the {name} tool is declared twice")
    declaration = declarations[0]
    given = declaration.tool.get("name")
    if given is not None and given != name:
        raise InvalidRequest(f"{declaration.path}.name: Input should be {name!r}")
    return declaration


def max_uses(tool: Mapping[str, Any], path: str) -> int | None:
    value = tool.get("max_uses")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"{path}.max_uses: Input should be an integer of 1 or more")
    return value


def optional_int(tool: Mapping[str, Any], key: str, path: str) -> int | None:
    value = tool.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"{path}.{key}: Input should be an integer of 1 or more")
    return value
