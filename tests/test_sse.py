"""SSEDecoder (bytes in, events out) and encode_event."""

from __future__ import annotations

import orjson
import pytest

from openrouter_anthropic.translate.sse import (
    PING,
    SSEComment,
    SSEDecoder,
    SSEEvent,
    encode_event,
)

UNICODE = "héllo 🎉 — ∑ 日本"
CHUNK = {"choices": [{"index": 0, "delta": {"content": UNICODE}}]}

# A recorded-style OpenRouter stream: processing comments, JSON chunks, [DONE].
OPENROUTER = (
    b": OPENROUTER PROCESSING\n\n"
    b"data: " + orjson.dumps(CHUNK) + b"\n\n"
    b": OPENROUTER PROCESSING\n\n"
    b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n'
    b"data: [DONE]\n\n"
)
OPENROUTER_ITEMS = [
    SSEComment("OPENROUTER PROCESSING"),
    SSEEvent(orjson.dumps(CHUNK).decode()),
    SSEComment("OPENROUTER PROCESSING"),
    SSEEvent('{"choices":[],"usage":{"prompt_tokens":3}}'),
    SSEEvent("[DONE]"),
]


def decode(*parts: bytes) -> list[SSEEvent | SSEComment]:
    decoder = SSEDecoder()
    out: list[SSEEvent | SSEComment] = []
    for part in parts:
        out.extend(decoder.feed(part))
    out.extend(decoder.flush())
    return out


def test_whole_stream_in_one_chunk() -> None:
    assert decode(OPENROUTER) == OPENROUTER_ITEMS


def test_multibyte_text_survives_decoding() -> None:
    (event,) = [i for i in decode(OPENROUTER) if isinstance(i, SSEEvent)][:1]
    assert orjson.loads(event.data)["choices"][0]["delta"]["content"] == UNICODE


@pytest.mark.parametrize("offset", range(1, len(OPENROUTER)))
def test_split_at_every_byte_offset(offset: int) -> None:
    # Includes offsets inside the 2-, 3- and 4-byte UTF-8 sequences of UNICODE.
    assert decode(OPENROUTER[:offset], OPENROUTER[offset:]) == OPENROUTER_ITEMS


def test_split_points_cover_multibyte_characters() -> None:
    # Guard for the test above: the stream really has split points inside characters.
    emoji = "🎉".encode()
    start = OPENROUTER.index(emoji)
    assert all(0 < start + k < len(OPENROUTER) for k in range(1, len(emoji)))


def test_one_byte_at_a_time() -> None:
    parts = [OPENROUTER[i:i + 1] for i in range(len(OPENROUTER))]
    assert decode(*parts) == OPENROUTER_ITEMS


def test_feed_returns_events_as_soon_as_the_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: one\n") == []
    assert decoder.feed(b"\n") == [SSEEvent("one")]
    assert decoder.feed(b"data: two\n\n") == [SSEEvent("two")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(newline: bytes) -> None:
    stream = (
        b": OPENROUTER PROCESSING" + newline + newline
        + b"event: message" + newline
        + b"data: " + UNICODE.encode() + newline + newline
        + b"data: second" + newline + newline
    )
    expected = [SSEComment("OPENROUTER PROCESSING"), SSEEvent(UNICODE, "message"),
                SSEEvent("second")]
    assert decode(stream) == expected
    for offset in range(1, len(stream)):
        assert decode(stream[:offset], stream[offset:]) == expected, offset


def test_crlf_split_between_cr_and_lf_is_one_line_break() -> None:
    # "a\r" | "\nb": one line break, so a and b are two data lines of ONE event.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent("a\nb")]


def test_cr_at_chunk_end_followed_by_cr_is_blank_line() -> None:
    assert decode(b"data: a\r", b"\rdata: b\r\r") == [SSEEvent("a"), SSEEvent("b")]


def test_lone_cr_at_chunk_end_dispatches_on_next_chunk() -> None:
    # A trailing CR may be the first half of CRLF, so it may be held back, but by the
    # next chunk the blank line is certain.
    decoder = SSEDecoder()
    got = decoder.feed(b"data: a\r\r") + decoder.feed(b"data: b\r\r")
    assert got == [SSEEvent("a")]
    assert decoder.flush() == [SSEEvent("b")]


def test_mixed_line_endings() -> None:
    stream = b"data: a\r\ndata: b\rdata: c\n\r\n: note\r\rdata: d\n\n"
    assert decode(stream) == [SSEEvent("a\nb\nc"), SSEComment("note"), SSEEvent("d")]


def test_comment_lines() -> None:
    assert decode(b": OPENROUTER PROCESSING\n\n") == [SSEComment("OPENROUTER PROCESSING")]


def test_comment_between_data_lines_does_not_split_the_event() -> None:
    assert decode(b"data: a\n: keepalive\ndata: b\n\n") == [
        SSEComment("keepalive"), SSEEvent("a\nb")]


def test_multi_line_data_joined_with_newline() -> None:
    assert decode(b"data: {\ndata:   \"a\": 1\ndata: }\n\n") == [SSEEvent('{\n  "a": 1\n}')]


def test_field_without_space_after_colon() -> None:
    assert decode(b"event:x\ndata:y\n\n") == [SSEEvent("y", "x")]


def test_only_one_leading_space_is_stripped() -> None:
    assert decode(b"data:  two spaces\n\n") == [SSEEvent(" two spaces")]


def test_empty_data_line_dispatches_empty_event() -> None:
    assert decode(b"data:\n\n") == [SSEEvent("")]


def test_event_name_without_data_is_not_dispatched() -> None:
    assert decode(b"event: ping\n\ndata: x\n\n") == [SSEEvent("x")]


def test_event_name_does_not_leak_into_next_event() -> None:
    assert decode(b"event: a\ndata: 1\n\ndata: 2\n\n") == [SSEEvent("1", "a"), SSEEvent("2")]


def test_unknown_fields_are_ignored() -> None:
    assert decode(b"id: 7\nretry: 100\nfoo: bar\ndata: x\n\n") == [SSEEvent("x")]


def test_flush_dispatches_unterminated_final_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"last": true}') == []
    assert decoder.flush() == [SSEEvent('{"last": true}')]


def test_flush_dispatches_event_missing_only_the_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n") == []
    assert decoder.flush() == [SSEEvent("x")]


def test_flush_of_event_ending_in_lone_cr() -> None:
    assert decode(b"data: x\r") == [SSEEvent("x")]


def test_flush_with_nothing_pending_is_empty() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: x\n\n")
    assert decoder.flush() == []


def test_invalid_utf8_does_not_raise() -> None:
    (event,) = decode(b"data: \xff\xfe ok\n\n")
    assert isinstance(event, SSEEvent) and event.data.endswith(" ok")


# ------------------------------------------------------------------------ encode_event


def test_encode_event_has_event_line_and_json_data() -> None:
    raw = encode_event("message_start", {"type": "message_start", "text": UNICODE})
    lines = raw.split(b"\n")
    assert lines[0] == b"event: message_start"
    assert lines[1].startswith(b"data: ")
    assert orjson.loads(lines[1][6:]) == {"type": "message_start", "text": UNICODE}
    assert raw.endswith(b"\n\n") and raw.count(b"\n") == 3


def test_encode_event_round_trips_through_decoder() -> None:
    data = {"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "line1\nline2 " + UNICODE}}
    (event,) = decode(encode_event("content_block_delta", data))
    assert isinstance(event, SSEEvent)
    assert event.event == "content_block_delta"
    assert orjson.loads(event.data) == data


def test_ping_constant() -> None:
    (event,) = decode(PING)
    assert isinstance(event, SSEEvent)
    assert event.event == "ping" and orjson.loads(event.data) == {"type": "ping"}
