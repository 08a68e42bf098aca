"""OpenRouter `reasoning_details` <-> Anthropic thinking blocks.

Anthropic-format details map one to one: `reasoning.text` -> `thinking` (its signature kept),
`reasoning.encrypted` -> `redacted_thinking`. Details of other model families (OpenAI,
Gemini, xAI...) are grouped into one `thinking` block whose signature seals the original
details, so the next turn hands them back to the upstream unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .common import is_anthropic_format, seal_reasoning

# Plain `reasoning` text with no details (some providers) is kept under this format so a
# replay can tell it carries no provider state.
TEXT_ONLY_FORMAT = "unknown"
_TEXT_KEYS = ("text", "summary", "data")


def detail_text(detail: Mapping[str, Any]) -> str:
    kind = detail.get("type")
    if kind == "reasoning.summary":
        return str(detail.get("summary") or "")
    if kind == "reasoning.text":
        return str(detail.get("text") or "")
    return ""


def merge_fragment(details: list[dict[str, Any]], fragment: Mapping[str, Any]) -> None:
    """Append a streamed detail fragment, concatenating it onto its detail if continued."""
    if details:
        last = details[-1]
        if last.get("type") == fragment.get("type") and last.get("index") == fragment.get(
            "index"
        ):
            for key, value in fragment.items():
                if key in _TEXT_KEYS and isinstance(value, str):
                    last[key] = str(last.get(key) or "") + value
                elif value is not None and value != "":
                    last[key] = value
            return
    details.append(dict(fragment))


def blocks_from_details(
    details: list[Mapping[str, Any]], plain_text: str | None, omit_text: bool
) -> list[dict[str, Any]]:
    """Complete reasoning details of one answer -> Anthropic blocks (non-streaming)."""
    if not details and plain_text:
        details = [{"type": "reasoning.text", "text": plain_text, "format": TEXT_ONLY_FORMAT}]
    blocks: list[dict[str, Any]] = []
    foreign: list[dict[str, Any]] = []

    def close_foreign() -> None:
        if foreign:
            blocks.append(foreign_block(foreign, omit_text))
            foreign.clear()

    for detail in details:
        if not is_anthropic_format(detail):
            foreign.append(dict(detail))
            continue
        close_foreign()
        if detail.get("type") == "reasoning.encrypted":
            blocks.append({"type": "redacted_thinking", "data": str(detail.get("data") or "")})
        else:
            blocks.append({
                "type": "thinking",
                "thinking": "" if omit_text else detail_text(detail),
                "signature": str(detail.get("signature") or ""),
            })
    close_foreign()
    return blocks


def foreign_block(details: list[dict[str, Any]], omit_text: bool) -> dict[str, Any]:
    text = "" if omit_text else "".join(detail_text(d) for d in details)
    return {"type": "thinking", "thinking": text, "signature": seal_reasoning(details)}
