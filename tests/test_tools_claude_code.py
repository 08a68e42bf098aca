"""Claude Code's WebSearch through the gateway (the real CLI, the fake OpenRouter playing the
model): its separate streamed web_search request must come back with links.

Skipped where the CLI is missing, unless REQUIRE_CLAUDE_CODE=1 (CI sets it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "claude_code_e2e.py"
CLAUDE = os.environ.get("CLAUDE_BIN", "/tmp/cc/node_modules/.bin/claude")


def _harness_module() -> Any:
    if "claude_code_e2e" in sys.modules:
        return sys.modules["claude_code_e2e"]
    spec = importlib.util.spec_from_file_location("claude_code_e2e", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["claude_code_e2e"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def harness() -> Iterator[Any]:
    if not Path(CLAUDE).exists():
        if os.environ.get("REQUIRE_CLAUDE_CODE") == "1":
            pytest.fail(f"Claude Code CLI not found at {CLAUDE} (REQUIRE_CLAUDE_CODE=1)")
        pytest.skip(f"Claude Code CLI not installed at {CLAUDE}")
    with _harness_module().Harness(CLAUDE) as running:
        yield running


def test_claude_code_websearch_gets_links(harness: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="cc-search-") as workdir:
        out = harness.run(Path(workdir), "search the web for gateway news", ["WebSearch"],
                          ["--output-format", "stream-json", "--verbose"])
    requests = harness.upstream_requests()
    kinds = [[t.get("type") if t.get("type") != "function" else t["function"]["name"]
              for t in r.get("tools", [])] for r in requests]
    # The WebSearch sub-request reached the model with web_search as a function, and the
    # gateway searched with OpenRouter's own tool.
    assert ["web_search"] in kinds, kinds
    assert ["openrouter:web_search"] in kinds, kinds
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    tool_results = [r for r in results if r.get("type") == "user"]
    assert tool_results, out[-2000:]
    search = tool_results[0]["tool_use_result"]
    links = search["results"][0]["content"]
    assert links[0] == {"title": "gateway news - result 1",
                        "url": "https://example.com/gateway-news/1"}
    assert search["searchCount"] == 1
    final = results[-1]
    assert final["type"] == "result" and not final["is_error"]
    assert final["modelUsage"][next(iter(final["modelUsage"]))]["webSearchRequests"] == 1
