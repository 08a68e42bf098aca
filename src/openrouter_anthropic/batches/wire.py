"""The Message Batches wire shapes: ids, timestamps, `message_batch`, result lines.

Pure: values in, values out. Anthropic's shapes as the SDK types them
(anthropic.types.messages.MessageBatch, MessageBatchIndividualResponse).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
FINAL_STATES = ("succeeded", "errored", "canceled", "expired")


def new_batch_id(now: float | None = None) -> str:
    """`msgbatch_` + a ULID: the time comes first, so ids sort by creation (list order)."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "msgbatch_" + "".join(reversed(chars))


def rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One row of the batches table, as the store reads it."""

    id: str
    owner: str
    status: str
    request_count: int
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int
    created_at: float
    expires_at: float
    ended_at: float | None
    cancel_initiated_at: float | None
    archived_at: float | None
    flow_run_id: str | None = None


def message_batch(row: BatchRow, base_url: str) -> dict[str, Any]:
    ended = row.status == "ended"
    return {
        "id": row.id,
        "type": "message_batch",
        "processing_status": row.status,
        "request_counts": {
            "processing": row.processing,
            "succeeded": row.succeeded,
            "errored": row.errored,
            "canceled": row.canceled,
            "expired": row.expired,
        },
        "ended_at": rfc3339(row.ended_at),
        "created_at": rfc3339(row.created_at),
        "expires_at": rfc3339(row.expires_at),
        "archived_at": rfc3339(row.archived_at),
        "cancel_initiated_at": rfc3339(row.cancel_initiated_at),
        "results_url": f"{base_url}/v1/messages/batches/{row.id}/results" if ended else None,
    }


def deleted(batch_id: str) -> dict[str, Any]:
    return {"id": batch_id, "type": "message_batch_deleted"}


def succeeded_result(message: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "succeeded", "message": message})


def errored_result(error_type: str, message: str) -> bytes:
    return orjson.dumps({"type": "errored", "error": {
        "type": "error", "error": {"type": error_type, "message": message}}})


_BARE_RESULTS = {state: orjson.dumps({"type": state}) for state in ("canceled", "expired")}


def result_line(custom_id: str, state: str, result: bytes | None) -> bytes:
    """One JSONL line; stored results are spliced in as bytes, never parsed again."""
    body = result if result is not None else _BARE_RESULTS[state]
    return b'{"custom_id":' + orjson.dumps(custom_id) + b',"result":' + body + b"}\n"
