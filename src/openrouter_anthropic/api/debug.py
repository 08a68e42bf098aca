"""/debug/errors/recent, /debug/errors/stats, /debug/errors/{correlation_id} (admin key)."""

from __future__ import annotations

from ..errors import InvalidRequest, NotFound
from ..errorstore import ErrorStore
from ..http import Request, Response, json_response


def errors(path: str, request: Request, store: ErrorStore) -> Response:
    rest = path[len("/debug/errors"):].strip("/")
    if rest == "recent":
        raw = request.query.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 500:
            raise InvalidRequest("limit: Input should be a whole number from 1 to 500")
        return json_response({"data": store.recent(int(raw))})
    if rest == "stats":
        return json_response(store.stats())
    entry = store.get(rest) if rest else None
    if entry is None:
        raise NotFound(f"no error recorded for correlation id {rest!r}")
    return json_response(entry)
