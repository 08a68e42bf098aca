"""What `POST /v1/messages/batches` checks: the envelope only, as Anthropic does.

`params` are validated one by one when the request is processed (`work.py`): a bad one
ends `errored`, it does not refuse the batch. Anything refused here stores nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InvalidRequest

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class NewRequest:
    custom_id: str
    params: bytes  # the params object as JSON, stored as sent


def parse_requests(body: dict[str, Any], max_requests: int) -> list[NewRequest]:
    requests = body.get("requests")
    if requests is None:
        raise InvalidRequest("requests: Field required")
    if not isinstance(requests, list):
        raise InvalidRequest("requests: Input should be a valid list")
    if not requests:
        raise InvalidRequest("requests: List should have at least 1 item after validation, "
                             "not 0")
    if len(requests) > max_requests:
        raise InvalidRequest(f"requests: List should have at most {max_requests} items "
                             f"after validation, not {len(requests)}")
    seen: set[str] = set()
    out: list[NewRequest] = []
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            raise InvalidRequest(f"requests.{i}: Input should be a valid dictionary")
        custom_id = item.get("custom_id")
        if custom_id is None:
            raise InvalidRequest(f"requests.{i}.custom_id: Field required")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            raise InvalidRequest(f"requests.{i}.custom_id: String should match pattern "
                                 f"'{_CUSTOM_ID.pattern}'")
        if custom_id in seen:
            raise InvalidRequest(f"requests.{i}.custom_id: duplicate custom_id {custom_id!r}; "
                                 "each request in a batch needs its own")
        seen.add(custom_id)
        params = item.get("params")
        if params is None:
            raise InvalidRequest(f"requests.{i}.params: Field required")
        if not isinstance(params, dict):
            raise InvalidRequest(f"requests.{i}.params: Input should be a valid dictionary")
        # orjson's bytes keep a 4 KB buffer: an exact copy makes 100,000 of them ~40 MB
        # instead of ~400 MB while the batch is stored.
        out.append(NewRequest(custom_id, bytes(memoryview(orjson.dumps(params)))))
    return out
