"""Offline token counting (openrouter_anthropic.tokens)."""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest

from openrouter_anthropic import tokens

PROSE = """\
The harbour town woke slowly that morning. Fog lay over the water like a wet blanket, and the
fishing boats, which normally left before dawn, were still tied to the quay with their engines
cold. Mara walked down the hill from the bakery with a paper bag of warm rolls under her arm,
counting the masts out of habit. Eleven. Yesterday there had been twelve.

She stopped at the harbour master's office, a narrow building painted the colour of old
mustard, and knocked twice before opening the door. Tomas was at his desk, reading glasses
pushed up on his forehead, a radio crackling beside a cup of coffee that had long gone cold.

"The Selene didn't come back," she said. It was not a question.

"She called in at ten last night," he replied, without looking up. "Engine trouble near the
northern rocks. They said they would anchor in the lee of the island and wait for light. The
coast guard knows. There is nothing anyone can do in this fog except wait."

Mara set the bag of rolls on the desk and sat down on the only other chair, which wobbled on
an uneven leg. Through the window she could see the shapes of gulls standing on the bollards,
patient and grey. Waiting, she thought, was the one skill the town had perfected over three
hundred years. Waiting for the boats, for the weather, for the prices at the market in the
city to rise, for the young people who left to come home again. Most of them never did.

By noon the fog had thinned enough to show the outline of the island, and a little after one
o'clock a small shape appeared against the pale water, moving slowly, trailing a thin line of
smoke. Someone on the quay shouted, and people came out of the shops and houses to watch. The
Selene limped into the harbour on one engine, her crew waving from the deck, tired but
unharmed. Tomas finally took off his glasses, rubbed his eyes, and reached for a roll.

Later, people would argue about what had gone wrong: a clogged fuel filter, a cracked hose,
bad luck, or the old captain's refusal to replace anything that still more or less worked.
The insurance company sent a young man in a clean jacket who asked careful questions and wrote
down every answer in a notebook. He left on the evening bus, and the town went back to its
ordinary rhythm of nets, engines, weather reports and gossip, as if nothing had happened.
"""

CODE = '''\
from __future__ import annotations

import dataclasses
import heapq
from collections import defaultdict
from typing import Iterable


@dataclasses.dataclass(frozen=True, order=True)
class Edge:
    """A directed, weighted edge between two named nodes."""

    weight: float
    source: str
    target: str


class Graph:
    def __init__(self, edges: Iterable[Edge] = ()) -> None:
        self._adjacency: dict[str, list[Edge]] = defaultdict(list)
        for edge in edges:
            self.add(edge)

    def add(self, edge: Edge) -> None:
        if edge.weight < 0:
            raise ValueError(f"negative weight on {edge.source}->{edge.target}: {edge.weight}")
        self._adjacency[edge.source].append(edge)
        self._adjacency.setdefault(edge.target, [])

    def neighbours(self, node: str) -> list[Edge]:
        return list(self._adjacency.get(node, ()))

    def shortest_path(self, start: str, goal: str) -> tuple[float, list[str]] | None:
        """Dijkstra's algorithm; returns (distance, path) or None if unreachable."""
        queue: list[tuple[float, str]] = [(0.0, start)]
        best: dict[str, float] = {start: 0.0}
        previous: dict[str, str] = {}
        while queue:
            distance, node = heapq.heappop(queue)
            if node == goal:
                path = [node]
                while node in previous:
                    node = previous[node]
                    path.append(node)
                return distance, path[::-1]
            if distance > best.get(node, float("inf")):
                continue
            for edge in self._adjacency.get(node, ()):
                candidate = distance + edge.weight
                if candidate < best.get(edge.target, float("inf")):
                    best[edge.target] = candidate
                    previous[edge.target] = node
                    heapq.heappush(queue, (candidate, edge.target))
        return None


def parse_edges(lines: Iterable[str]) -> list[Edge]:
    edges = []
    for number, line in enumerate(lines, start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            source, target, weight = line.split()
            edges.append(Edge(float(weight), source, target))
        except ValueError as exc:
            raise ValueError(f"line {number}: expected 'source target weight'") from exc
    return edges


if __name__ == "__main__":
    import sys

    graph = Graph(parse_edges(sys.stdin))
    result = graph.shortest_path(sys.argv[1], sys.argv[2])
    print("unreachable" if result is None else f"{result[0]:.2f}: {' -> '.join(result[1])}")
'''

# Reference counts, computed once with tiktoken and OpenAI's own o200k_base / cl100k_base files
# (SHA-256 checked against tiktoken_ext/openai_public.py). o200k_base is GPT-4o/4.1/5's encoding.
PROSE_CL100K, PROSE_O200K = 532, 528
CODE_CL100K, CODE_O200K = 598, 608

SYSTEM = (
    "You are a careful coding assistant working in the user's repository. Read files before "
    "changing them, keep edits small and focused, run the tests after every change, and explain "
    "what you did in two or three sentences. Never invent file contents; use the tools."
)

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a text file from the repository and return its contents.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Path relative to the repo root"},
                    "max_lines": {
                        "type": "integer",
                        "description": "Stop after this many lines (default: whole file)",
                    },
                },
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_tests",
            "description": "Run the test suite, or the tests matching a pattern, and report.",
            "parameters": {
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "A pytest -k expression"},
                    "verbose": {"type": "boolean"},
                },
            },
        },
    },
]


def typical_request(model: str = "openai/gpt-4o") -> dict[str, Any]:
    """A small coding-agent turn: system, prose, a tool call and its result (code), tools."""
    return {
        "model": model,
        "max_tokens": 1024,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here is the story my tool has to summarise:"},
                    {"type": "text", "text": PROSE},
                ],
            },
            {"role": "assistant", "content": "Let me look at the summariser's graph code first."},
            {"role": "user", "content": "Sure, it is in graph.py."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": '{"path": "graph.py"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": CODE},
        ],
        "tools": TOOLS,
    }


# The typical request rendered as OpenAI renders a chat prompt -- <|im_start|>role\n...<|im_end|>
# per message, tool definitions as a "namespace functions { type read_file = (_: {...}) => any }"
# block in the system message, the tool call as "assistant to=functions.read_file" with its
# arguments -- and counted with o200k_base (GPT-4o): 1,368 tokens (cl100k_base: also 1,368).
# Without the tools block it is 1,265. Our count renders tools as JSON, as Claude sees them,
# so it lands a few percent above (1,429 at the time of writing).
TYPICAL_REFERENCE_O200K = 1368


def png(width: int, height: int, *, pixels: bool = True) -> bytes:
    """A real, valid grey RGB PNG of the given size; only its signature and IHDR if not pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    head = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    )
    if not pixels:
        return head
    raw = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    return head + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_message(url: str) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    }


# --- the tokenizer ------------------------------------------------------------------------------


def test_real_tokenizer_is_used() -> None:
    assert tokens.preload() == "cl100k_base"
    assert tokens.tokenizer_name() == "cl100k_base"
    assert tokens.count_text_tokens(PROSE) == PROSE_CL100K
    assert tokens.count_text_tokens(CODE) == CODE_CL100K
    assert tokens.count_text_tokens("") == 0
    # Special-token text in user content is plain text, not an error.
    assert tokens.count_text_tokens("<|endoftext|>") > 1


@pytest.mark.parametrize(
    ("text", "o200k"), [(PROSE, PROSE_O200K), (CODE, CODE_O200K)], ids=["prose", "code"]
)
def test_text_within_10_percent_of_o200k(text: str, o200k: int) -> None:
    assert abs(tokens.count_text_tokens(text) - o200k) / o200k < 0.10


def test_typical_request_within_10_percent_of_reference() -> None:
    count = tokens.count_chat_tokens(typical_request())
    assert abs(count - TYPICAL_REFERENCE_O200K) / TYPICAL_REFERENCE_O200K < 0.10


def test_claude_models_scale_text_and_add_tool_prompt() -> None:
    openai = tokens.count_chat_tokens(typical_request("openai/gpt-4o"))
    claude = tokens.count_chat_tokens(typical_request("anthropic/claude-sonnet-4"))
    assert tokens.model_text_scale("anthropic/claude-sonnet-4") == tokens.CLAUDE_TEXT_SCALE
    assert tokens.model_text_scale("claude-3-5-haiku-latest") == tokens.CLAUDE_TEXT_SCALE
    assert tokens.model_text_scale("google/gemini-2.5-pro") == 1.0
    assert 1.15 * openai < claude < 1.5 * openai
    unscaled = tokens.count_chat_tokens(typical_request("anthropic/claude-sonnet-4"), scale=1.0)
    assert unscaled == openai - tokens.TOOLS_OVERHEAD + tokens.CLAUDE_TOOLS_OVERHEAD


# --- request structure -------------------------------------------------------------------------


def test_counts_system_messages_and_tools() -> None:
    full = typical_request()
    count = tokens.count_chat_tokens
    total = count(full)

    no_system = {**full, "messages": full["messages"][1:]}
    system_cost = tokens.count_text_tokens(SYSTEM) + tokens.count_text_tokens("system") + 3
    assert total - count(no_system) == system_cost

    no_tools = {k: v for k, v in full.items() if k != "tools"}
    tools_cost = total - count(no_tools)
    schema_tokens = sum(tokens.count_text_tokens(json.dumps(t["function"])) for t in TOOLS)
    assert schema_tokens < tools_cost <= schema_tokens + 30

    no_call = json.loads(json.dumps(full))
    del no_call["messages"][4]["tool_calls"]
    assert count(no_call) < total

    assert count({"messages": []}) == tokens.REPLY_PRIMING
    assert count({"messages": [{"role": "user", "content": "hi"}]}) < 10
    named = {"messages": [{"role": "user", "name": "mara", "content": "hi"}]}
    assert count(named) > count({"messages": [{"role": "user", "content": "hi"}]})


def test_count_grows_with_content() -> None:
    def request(text: str) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": text}]}

    counts = [tokens.count_chat_tokens(request(PROSE * n)) for n in (1, 2, 4)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[2] == pytest.approx(4 * counts[0], rel=0.03)
    assert tokens.count_chat_tokens(request(PROSE + CODE)) > tokens.count_chat_tokens(
        request(PROSE)
    )


def test_malformed_parts_do_not_raise() -> None:
    request: dict[str, Any] = {
        "messages": [
            "not a message",
            {"role": "user", "content": None},
            {"role": "user", "content": [None, "bare string", {"type": "mystery", "text": "x"}]},
            {"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}]},
            {"role": "assistant", "tool_calls": [None, {"function": {"arguments": {"a": 1}}}]},
            {"role": "user", "content": [{"type": "file", "file": {"file_data": "@@@"}}]},
        ],
        "tools": ["odd", {"type": "openrouter:web_search"}],
    }
    assert tokens.count_chat_tokens(request) > tokens.IMAGE_TOKENS_MAX
    assert tokens.count_chat_tokens({}) == 0


# --- images -------------------------------------------------------------------------------------


def test_png_size_from_header() -> None:
    image = png(200, 120)
    assert tokens.image_dimensions(base64.b64encode(image).decode()) == (200, 120)
    url = data_url("image/png", image)
    assert tokens.image_tokens(url) == math.ceil(200 * 120 / 750) == 32

    with_image = tokens.count_chat_tokens(image_message(url))
    text_only = tokens.count_chat_tokens(
        {"messages": [{"role": "user", "content": "What is in this picture?"}]}
    )
    assert 32 <= with_image - text_only <= 32 + 10


def test_large_and_unknown_images_are_capped() -> None:
    assert tokens.image_tokens_for_size(1000, 1000) == 1334  # Anthropic's table: ~1334
    assert tokens.image_tokens_for_size(4000, 3000) == tokens.IMAGE_TOKENS_MAX
    assert tokens.image_tokens_for_size(3136, 200) == math.ceil(1568 * 100 / 750)
    assert tokens.image_tokens("https://example.com/cat.png") == tokens.IMAGE_TOKENS_MAX
    assert tokens.image_tokens("data:image/png;base64,AAAA") == tokens.IMAGE_TOKENS_MAX
    assert tokens.image_tokens("data:image/svg+xml,<svg/>") == tokens.IMAGE_TOKENS_MAX


def test_only_the_header_is_decoded() -> None:
    # A huge (8000 x 6000) image whose pixel data is not valid base64 at all: the size still
    # comes from the first bytes, so the payload is never decoded as a whole.
    header = base64.b64encode(png(8000, 6000, pixels=False)).decode()[:40]
    assert tokens.image_dimensions(header + "!" * 1_000_000) == (8000, 6000)
    # Line-wrapped base64 (MIME style) works too.
    wrapped = "\n".join(textwrap.wrap(base64.b64encode(png(64, 48)).decode(), 76))
    assert tokens.image_dimensions(wrapped) == (64, 48)


def test_jpeg_gif_webp_headers() -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 30_000) + b"E" * 30_000
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 480, 640, 1) + b"\x01\x11\x00"
    jpeg = b"\xff\xd8" + app0 + exif + b"\xff\xdb\x00\x04\x00\x00" + sof0 + b"\xff\xda"
    assert tokens.image_dimensions(b64(jpeg)) == (640, 480)
    assert tokens.image_dimensions(b64(b"\xff\xd8" + app0 + b"\xff\xda")) is None

    assert tokens.image_dimensions(b64(b"GIF89a" + struct.pack("<HH", 320, 200))) == (320, 200)

    vp8x = b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x0a\x00\x00\x00" + b"\x00" * 4
    vp8x += (1023).to_bytes(3, "little") + (767).to_bytes(3, "little")
    assert tokens.image_dimensions(b64(vp8x)) == (1024, 768)
    bits = (300 - 1) | ((150 - 1) << 14)
    vp8l = b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f" + struct.pack("<I", bits)
    assert tokens.image_dimensions(b64(vp8l)) == (300, 150)
    vp8 = b"RIFF\x00\x00\x00\x00WEBPVP8 \x00\x00\x00\x00" + b"\x00\x00\x00\x9d\x01\x2a"
    vp8 += struct.pack("<HH", 640, 360)
    assert tokens.image_dimensions(b64(vp8)) == (640, 360)

    assert tokens.image_dimensions(b64(b"BM not supported")) is None
    assert tokens.image_dimensions("") is None


# --- files --------------------------------------------------------------------------------------


def make_pdf(pages: int, compressed: bool = False) -> bytes:
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = [
        b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
        f"2 0 obj << /Type /Pages /Kids [{kids}] /Count {pages} >> endobj".encode(),
    ]
    page_objs = [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>" for _ in range(pages)]
    if compressed:  # PDF 1.5 object stream: page objects are only visible after inflating
        body = zlib.compress(b"\n".join(page_objs))
        objects.append(
            b"9 0 obj << /Type /ObjStm /N %d /First 0 /Filter /FlateDecode /Length %d >>\nstream\n"
            % (pages, len(body))
            + body
            + b"\nendstream endobj"
        )
    else:
        objects += [f"{3 + i} 0 obj ".encode() + p + b" endobj" for i, p in enumerate(page_objs)]
    return b"%PDF-1.7\n" + b"\n".join(objects) + b"\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "object-stream"])
def test_pdf_pages(compressed: bool) -> None:
    pdf = make_pdf(3, compressed)
    assert tokens.pdf_page_count(pdf) == 3
    request = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {
                            "filename": "report.pdf",
                            "file_data": data_url("application/pdf", pdf),
                        },
                    }
                ],
            }
        ]
    }
    count = tokens.count_chat_tokens(request)
    assert 3 * tokens.PDF_TOKENS_PER_PAGE < count < 3 * tokens.PDF_TOKENS_PER_PAGE + 20


def test_text_file_is_counted_as_text() -> None:
    part = {
        "type": "file",
        "file": {"filename": "graph.py", "file_data": data_url("text/x-python", CODE.encode())},
    }
    count = tokens.count_chat_tokens({"messages": [{"role": "user", "content": [part]}]})
    assert CODE_CL100K < count < CODE_CL100K + 20


# --- offline, lazy, fallback --------------------------------------------------------------------

_OFFLINE_SCRIPT = """
import socket, sys, time

def refuse(*args, **kwargs):
    raise OSError("network access attempted during offline token counting")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

started = time.perf_counter()
from openrouter_anthropic import tokens
imported = time.perf_counter()
assert "tiktoken" not in sys.modules, "the tokenizer must load lazily"
count = tokens.count_chat_tokens({"messages": [{"role": "user", "content": sys.argv[1]}]})
print(tokens.tokenizer_name(), count, round(imported - started, 3))
"""


def test_counts_offline_in_a_fresh_process(tmp_path: Path) -> None:
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(cache),
        "DATA_GYM_CACHE_DIR": str(cache),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "TMPDIR": str(tmp_path),
        # The package under test, whether or not it is installed.
        "PYTHONPATH": os.pathsep.join(
            [str(Path(tokens.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    result = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT, PROSE],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    name, count, _ = result.stdout.split()
    assert name == "cl100k_base"
    assert int(count) == PROSE_CL100K + 2 * tokens.TOKENS_PER_MESSAGE + 1  # + "user" token
    assert list(cache.iterdir()) == []  # nothing fetched or cached


def test_fallback_heuristic_when_tokenizer_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Any:
        raise ImportError("No module named 'tiktoken'")

    monkeypatch.setattr(tokens, "_load_tiktoken", broken)
    monkeypatch.setattr(tokens, "_counter", None)
    with caplog.at_level(logging.WARNING, logger=tokens.__name__):
        assert tokens.tokenizer_name() == "heuristic"
    assert "heuristic" in caplog.text and "tiktoken" in caplog.text
    for text, exact in ((PROSE, PROSE_CL100K), (CODE, CODE_CL100K)):
        assert abs(tokens.count_text_tokens(text) - exact) / exact < 0.15
    assert tokens.count_chat_tokens(typical_request()) == pytest.approx(
        TYPICAL_REFERENCE_O200K, rel=0.15
    )
