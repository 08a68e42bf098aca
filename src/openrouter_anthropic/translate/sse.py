"""Incremental Server-Sent Events decoding (bytes in, events out) and encoding.

The decoder works on bytes and decodes only complete lines: a line break (0x0A/0x0D) never
occurs inside a multi-byte UTF-8 sequence, so chunks split anywhere, even inside a
character, decode correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str | None = None


@dataclass(frozen=True, slots=True)
class SSEComment:
    text: str


SSEItem = SSEEvent | SSEComment


class SSEDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEItem]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            # A trailing CR may be the first half of CRLF: keep it for the next chunk.
            held = buffer.endswith(b"\r")
            if held:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buffer += b"\r"
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        out: list[SSEItem] = []
        for raw in lines:
            self._line(raw.decode("utf-8", errors="replace"), out)
        return out

    def flush(self) -> list[SSEItem]:
        """End of input: dispatch whatever the last, unterminated event held."""
        out: list[SSEItem] = []
        if self._buffer:
            self._line(self._buffer.rstrip(b"\r").decode("utf-8", errors="replace"), out)
            self._buffer = b""
        self._line("", out)
        return out

    def _line(self, line: str, out: list[SSEItem]) -> None:
        if not line:
            if self._data:
                out.append(SSEEvent("\n".join(self._data), self._event))
            self._data = []
            self._event = None
            return
        if line[0] == ":":
            out.append(SSEComment(line[1:].strip()))
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value


def encode_event(name: str, data: Any) -> bytes:
    """One Anthropic SSE event: the `event:` line is required by the Python SDK."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PING = encode_event("ping", {"type": "ping"})
