"""The I/O edge towards the model provider.

`Upstream` is the seam for other backends (any OpenAI-compatible base URL today; LiteLLM
later): it takes an OpenAI-format chat body and yields OpenAI-format chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class UpstreamStream(Protocol):
    """An open streaming answer: status already checked, chunks not yet read."""

    async def read(self) -> list[dict[str, Any] | None] | None:
        """The next decoded chunks (None items: keep-alive comments); None at the end.

        Safe to cancel at any await: nothing read is lost.
        """
        ...

    async def close(self) -> None: ...


class Upstream(Protocol):
    async def complete(
        self, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]: ...

    async def open_stream(
        self, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> UpstreamStream: ...

    async def list_models(self) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...
