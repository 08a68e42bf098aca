"""Helpers for the tests that run the real bubblewrap sandbox.

Those tests FAIL (never skip) when bubblewrap is missing: CI installs it (`.ci/run`), and a
gateway that silently loses its sandbox must not pass its tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from openrouter_anthropic.tools.sandbox import Sandbox

_checked: dict[str, str | None] = {}


def require_sandbox() -> None:
    """Fail the test with a clear message when bubblewrap cannot run here."""
    if "reason" not in _checked:
        _checked["reason"] = asyncio.run(Sandbox().check())
    reason = _checked["reason"]
    if reason:
        pytest.fail(f"the sandbox tests need bubblewrap: {reason} "
                    "(apt-get install -y bubblewrap; CI installs it)", pytrace=False)


@contextmanager
def shared_tmpdir(prefix: str) -> Iterator[Path]:
    """A temporary directory the sandbox user (65534) can traverse: pytest's tmp_path sits
    under a 0700 directory, which bubblewrap (dropped to 65534 under root) cannot enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sandbox_owned(path: Path) -> Path:
    """Make `path` writable by the sandbox user when the tests run as root."""
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    return path
