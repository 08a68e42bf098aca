"""Fidelity: structured outputs (`output_config.format`) through the real app and the SDK.

Models with native support get `response_format: json_schema`; the others get the schema as
an instruction, and the gateway validates the answer and re-asks with the errors found.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from conftest import chat_requests, last_chat, user
from openrouter_anthropic.fake_upstream import FakeOpenRouter, Reply

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
VALID = {"name": "Ada", "age": 36}
FORMAT = {"format": {"type": "json_schema", "schema": SCHEMA}}


def ask(client: anthropic.Anthropic, model: str, **extra: Any) -> Any:
    return client.messages.create(model=model, max_tokens=512,
                                  messages=user("Who wrote the first program?"),
                                  output_config=FORMAT, **extra)  # type: ignore[arg-type]


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def system_texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])
            for m in body["messages"] if m["role"] == "system"]


def test_native_model_gets_response_format(client: anthropic.Anthropic,
                                           fake: FakeOpenRouter) -> None:
    fake.script(Reply(text=json.dumps(VALID)))
    message = ask(client, "openai/gpt-4o")
    assert json.loads(text_of(message)) == VALID
    body = last_chat(fake)
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"] == SCHEMA
    assert not any("JSON Schema" in t for t in system_texts(body))
    assert len(chat_requests(fake)) == 1


def test_other_model_gets_an_instruction_and_no_response_format(
    client: anthropic.Anthropic, fake: FakeOpenRouter
) -> None:
    fake.script(Reply(text=json.dumps(VALID)))
    message = ask(client, "deepseek/deepseek-chat", system="You are terse.")
    assert json.loads(text_of(message)) == VALID
    body = last_chat(fake)
    assert "response_format" not in body
    instructions = [t for t in system_texts(body) if "JSON Schema" in t]
    assert len(instructions) == 1
    assert '"required":["name","age"]' in instructions[0].replace(" ", "")
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert body["messages"][-1]["role"] == "user"


@pytest.mark.parametrize("first", ["I think it was Ada Lovelace.",
                                   json.dumps({"name": "Ada"}),
                                   json.dumps({"name": "Ada", "age": "thirty-six"})],
                         ids=["not-json", "missing-field", "wrong-type"])
def test_off_schema_answer_is_re_asked_with_the_errors(client: anthropic.Anthropic,
                                                       fake: FakeOpenRouter,
                                                       first: str) -> None:
    fake.script(Reply(text=first, usage={"prompt_tokens": 100, "completion_tokens": 10}),
                Reply(text=json.dumps(VALID), usage={"prompt_tokens": 150,
                                                     "completion_tokens": 12}))
    message = ask(client, "deepseek/deepseek-chat")
    assert json.loads(text_of(message)) == VALID
    assert message.stop_reason == "end_turn"
    # Usage covers both upstream calls: the client pays for both.
    assert message.usage.input_tokens == 250
    assert message.usage.output_tokens == 22
    bodies = chat_requests(fake)
    assert len(bodies) == 2
    second = bodies[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": first}
    feedback = second[-1]
    assert feedback["role"] == "user"
    text = feedback["content"] if isinstance(feedback["content"], str) else json.dumps(
        feedback["content"])
    assert "JSON Schema" in text
    if first.startswith("{"):
        assert ("age" in text), text  # the validation error names the bad field
    else:
        assert "JSON" in text
    assert "response_format" not in bodies[1]


def test_fenced_json_answer_is_accepted_and_returned_bare(client: anthropic.Anthropic,
                                                          fake: FakeOpenRouter) -> None:
    fake.script(Reply(text="```json\n" + json.dumps(VALID, indent=2) + "\n```"))
    message = ask(client, "deepseek/deepseek-chat")
    assert json.loads(text_of(message)) == VALID
    assert not text_of(message).startswith("```")
    assert len(chat_requests(fake)) == 1


def test_giving_up_after_the_retries_is_an_api_error(
    make_gateway: Callable[..., str], make_client: Callable[..., anthropic.Anthropic],
    fake: FakeOpenRouter,
) -> None:
    url = make_gateway(structured_output_retries=1)
    fake.script(Reply(text="no JSON here"), Reply(text=json.dumps({"name": 7})),
                Reply(text=json.dumps(VALID)))
    with make_client(base_url=url) as sdk, pytest.raises(anthropic.APIStatusError) as info:
        ask(sdk, "deepseek/deepseek-chat")
    err = info.value
    assert err.status_code == 500
    body = err.response.json()
    assert body["error"]["type"] == "api_error"
    assert "output_config.format" in body["error"]["message"]
    assert err.response.headers.get("x-should-retry") == "false"
    assert len(chat_requests(fake)) == 2  # structured_output_retries + 1


def test_streaming_structured_output_is_a_valid_event_stream(
    client: anthropic.Anthropic, fake: FakeOpenRouter
) -> None:
    fake.script(Reply(text="Sure! Here it is: {name: Ada}"), Reply(text=json.dumps(VALID)))
    with client.messages.stream(model="deepseek/deepseek-chat", max_tokens=512,
                                messages=user("Who wrote the first program?"),
                                output_config=FORMAT) as stream:  # type: ignore[arg-type]
        events = list(stream)
        final = stream.get_final_message()
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    streamed = "".join(e.delta.text for e in events
                       if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert json.loads(streamed) == VALID
    assert json.loads(text_of(final)) == VALID
    assert final.stop_reason == "end_turn"
    bodies = chat_requests(fake)
    assert len(bodies) == 2
    assert all(not b.get("stream") for b in bodies)  # validated whole before replaying


def test_streaming_native_structured_output(client: anthropic.Anthropic,
                                            fake: FakeOpenRouter) -> None:
    fake.script(Reply(text=json.dumps(VALID)))
    with client.messages.stream(model="openai/gpt-4o", max_tokens=512,
                                messages=user("Who?"),
                                output_config=FORMAT) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert json.loads(text_of(final)) == VALID
    assert last_chat(fake)["response_format"]["json_schema"]["schema"] == SCHEMA
