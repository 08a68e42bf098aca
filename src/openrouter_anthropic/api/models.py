"""GET /v1/models and GET /v1/models/{id}: served from memory, never from the upstream.

Claude Code's gateway discovery allows 3 s and no redirects, and keeps only ids that
contain "claude"/"anthropic": every routable Claude name is listed with a display name
that says which model really answers.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidRequest, NotFound
from ..http import Request, Response, json_response, page_limit
from ..profiles import Profiles
from ..routing import Router

_CREATED_AT = "2025-01-01T00:00:00Z"
_DATE_SUFFIX = re.compile(r"-\d{8}$")


def display_name(model_id: str, target: str) -> str:
    if model_id.startswith("claude-"):
        words = _DATE_SUFFIX.sub("", model_id).split("-")[1:]
        names = [w.title() for w in words if not w.isdigit()]
        version = ".".join(w for w in words if w.isdigit())
        label = " ".join([*names, version]).strip()
    else:
        label = model_id
    return f"{label} -> {target} (OpenRouter)"


def model_info(model_id: str, router: Router, profiles: Profiles) -> dict[str, Any]:
    target = router.resolve(model_id).upstream
    profile = profiles.get(target)
    info: dict[str, Any] = {
        "type": "model",
        "id": model_id,
        "display_name": display_name(model_id, target),
        "created_at": _CREATED_AT,
        "lifecycle": "active",
        "max_input_tokens": profile.context_length,
    }
    if profile.max_output is not None:
        info["max_tokens"] = profile.max_output
    return info


def list_models(request: Request, router: Router, profiles: Profiles) -> Response:
    ids = router.listed_ids()
    limit = page_limit(request)
    after, before = request.query.get("after_id"), request.query.get("before_id")
    for name, cursor in (("after_id", after), ("before_id", before)):
        if cursor is not None and cursor not in ids:
            raise InvalidRequest(f"{name}: unknown model id {cursor!r}")
    if before is not None:
        end = ids.index(before)
        page = ids[max(end - limit, 0):end]
        has_more = end - limit > 0
    else:
        start = ids.index(after) + 1 if after is not None else 0
        page = ids[start:start + limit]
        has_more = start + limit < len(ids)
    data = [model_info(i, router, profiles) for i in page]
    return json_response({
        "data": data,
        "has_more": has_more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    })


def get_model(model_id: str, router: Router, profiles: Profiles) -> Response:
    try:
        return json_response(model_info(model_id, router, profiles))
    except NotFound:
        raise NotFound(f"model: {model_id!r} not found") from None
