"""The gateway's own `encrypted_content`: a result's details, sealed with an HMAC.

Anthropic's `web_search_result.encrypted_content` is opaque to clients, which send it back
on later turns so the model sees the result again. Ours carries the snippet the model read
(compressed JSON) and a SHA-256 HMAC under `server_tools.secret`; a blob that fails the check
(tampered, or sealed under another key) is ignored and the model sees only the title and
URL the client sent. It is signed, not encrypted: it holds public search results only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib
from typing import Any

import orjson

_PREFIX = "ors1."
_MAC_BYTES = 16
_MAX_TOKEN = 64 * 1024


class Sealer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def seal(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(zlib.compress(orjson.dumps(payload))).rstrip(b"=")
        return _PREFIX + body.decode() + "." + self._mac(body)

    def unseal(self, token: Any) -> dict[str, Any] | None:
        """The payload, or None when the token is not one of ours, intact."""
        if not isinstance(token, str) or not token.startswith(_PREFIX) or len(token) > _MAX_TOKEN:
            return None
        body, _, mac = token[len(_PREFIX):].rpartition(".")
        if not body or not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            # Only after the MAC matched: what is decompressed is what we compressed.
            raw = zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            value = orjson.loads(raw)
        except (ValueError, zlib.error, orjson.JSONDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def _mac(self, body: bytes) -> str:
        digest = hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
