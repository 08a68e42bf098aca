"""Claude Code itself, driven through the gateway against the fake OpenRouter.

Needs the Claude Code CLI (`npm install --prefix /tmp/cc @anthropic-ai/claude-code`; CLAUDE_BIN
names another path). Where it is missing these tests are skipped, unless
REQUIRE_CLAUDE_CODE=1 (CI sets it): then a missing CLI fails them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "claude_code_e2e.py"
_spec = importlib.util.spec_from_file_location("claude_code_e2e", _SCRIPT)
assert _spec is not None and _spec.loader is not None
e2e: Any = importlib.util.module_from_spec(_spec)
sys.modules["claude_code_e2e"] = e2e
_spec.loader.exec_module(e2e)

CLAUDE = os.environ.get("CLAUDE_BIN", "/tmp/cc/node_modules/.bin/claude")


@pytest.fixture(scope="module")
def harness() -> Iterator[Any]:
    if not Path(CLAUDE).exists():
        if os.environ.get("REQUIRE_CLAUDE_CODE") == "1":
            pytest.fail(f"Claude Code CLI not found at {CLAUDE} (REQUIRE_CLAUDE_CODE=1)")
        pytest.skip(f"Claude Code CLI not installed at {CLAUDE}")
    with e2e.Harness(CLAUDE) as running:
        yield running


@pytest.mark.parametrize("name", list(e2e.SCENARIOS))
def test_claude_code_session(harness: Any, name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="cc-e2e-") as workdir:
        problem = e2e.SCENARIOS[name](harness, Path(workdir))
    assert problem is None, problem
