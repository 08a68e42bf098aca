"""Code-execution containers: a directory per container id that outlives one request.

A request without `container` gets a new one; its `{id, expires_at}` goes back to the client,
which may send the id again to find its files. Each use pushes the expiry `ttl_s` further;
expired containers are deleted. A container belongs to the client key that created it: any
other key is told it does not exist.

Layout: `<base>/<id>/meta.json` (owner, expiry) beside `<base>/<id>/files`, the directory
mounted in the sandbox, so sandboxed code cannot touch its own metadata. The state is on
disk so every worker process of one gateway shares it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import string
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .sandbox import SANDBOX_GID, SANDBOX_UID

_ID = re.compile(r"container_[A-Za-z0-9]{24}\Z")
_ALPHABET = string.ascii_letters + string.digits


class ContainerNotFound(LookupError):
    """The id is malformed, unknown, expired or another key's."""


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    files: Path
    expires_at: float

    def info(self) -> dict[str, str]:
        """The response's `container` object."""
        stamp = datetime.fromtimestamp(self.expires_at, UTC)
        return {"id": self.id, "expires_at": stamp.isoformat().replace("+00:00", "Z")}


class ContainerStore:
    def __init__(self, base_dir: str | Path | None = None, *, ttl_s: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.base = Path(base_dir) if base_dir else \
            Path(tempfile.gettempdir()) / f"openrouter-anthropic-containers-{os.geteuid()}"
        self.ttl_s = ttl_s
        self.clock = clock
        self._ready = False

    def resolve(self, container_id: str | None, owner: str) -> Container:
        """The container to use: the one named (refreshed), or a new one."""
        return self.create(owner) if container_id is None else self.get(container_id, owner)

    def create(self, owner: str) -> Container:
        self._ensure_base()
        self.sweep()
        container_id = "container_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
        home = self.base / container_id
        home.mkdir(mode=0o711)
        files = home / "files"
        files.mkdir(mode=0o700)
        if os.geteuid() == 0:
            # The sandbox runs as 65534 on the host when the gateway is root (see sandbox.py).
            os.chown(files, SANDBOX_UID, SANDBOX_GID)
        return self._write_meta(container_id, owner)

    def get(self, container_id: str, owner: str) -> Container:
        meta = self._read_meta(container_id)
        if meta is None or meta.get("owner") != owner:
            raise ContainerNotFound(f"container {container_id!r} was not found or has expired")
        if _expiry(meta) <= self.clock():
            self._remove(container_id)
            raise ContainerNotFound(f"container {container_id!r} was not found or has expired")
        return self._write_meta(container_id, owner)

    def sweep(self) -> int:
        """Delete expired containers; returns how many went."""
        if not self.base.is_dir():
            return 0
        removed = 0
        now = self.clock()
        for entry in os.scandir(self.base):
            if not _ID.match(entry.name):
                continue
            meta = self._read_meta(entry.name)
            if meta is None or _expiry(meta) <= now:
                self._remove(entry.name)
                removed += 1
        return removed

    def _write_meta(self, container_id: str, owner: str) -> Container:
        expires_at = self.clock() + self.ttl_s
        home = self.base / container_id
        tmp = home / f"meta.json.{secrets.token_hex(4)}"
        tmp.write_text(json.dumps({"owner": owner, "expires_at": expires_at}))
        tmp.replace(home / "meta.json")
        return Container(id=container_id, files=home / "files", expires_at=expires_at)

    def _read_meta(self, container_id: str) -> dict[str, Any] | None:
        if not _ID.match(container_id):
            return None
        try:
            meta = json.loads((self.base / container_id / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def _remove(self, container_id: str) -> None:
        shutil.rmtree(self.base / container_id, ignore_errors=True)

    def _ensure_base(self) -> None:
        if self._ready:
            return
        with contextlib.suppress(FileExistsError):
            self.base.mkdir(mode=0o711, parents=True)
        info = self.base.lstat()
        # A directory someone else planted (in /tmp, say) must not hold our containers.
        if not self.base.is_dir() or self.base.is_symlink() or info.st_uid != os.geteuid():
            raise OSError(f"container directory {self.base} is not a directory owned by "
                          "this process's user")
        self._ready = True


def _expiry(meta: dict[str, Any]) -> float:
    value = meta.get("expires_at")
    return float(value) if isinstance(value, int | float) else 0.0
