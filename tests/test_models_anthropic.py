"""AnthropicMessages against real recorded traffic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import stamina
from cassette import replay

from fsm_agents.models import AnthropicMessages, MissingAPIKey, ModelHTTPError, StreamDelta
from fsm_agents.state import AssistantMessage, ModelRequest, ToolCall, ToolMessage, ToolSpec, UserMessage

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3, cap=True):
        yield


def essentials(body: dict[str, Any]) -> dict[str, Any]:
    def blocks(m: dict[str, Any]) -> list[Any]:
        content = m["content"]
        if isinstance(content, str):
            return [("text", content)]
        return [
            (b["type"], b.get("text") or b.get("name") or b.get("tool_use_id"), b.get("input"), b.get("is_error", False))
            if b["type"] != "text"
            else ("text", b["text"])
            for b in content
        ]

    return {
        "model": body["model"],
        "messages": [(m["role"], blocks(m)) for m in body["messages"]],
        "tools": body.get("tools"),
        "stream": bool(body.get("stream")),
    }


WEATHER = ToolSpec(
    name="get_weather",
    description="Get the current weather for a city.",
    parameters_json=json.dumps(
        {
            "additionalProperties": False,
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "type": "object",
        }
    ),
)


async def test_tool_use_roundtrip() -> None:
    rec = replay("anthropic/messages_tool_use_roundtrip.yaml")
    question = UserMessage(content="What's the weather in Paris?")
    async with AnthropicMessages(
        "claude-sonnet-4-5", api_key="sk-ant-test", max_tokens=4096, transport=rec.transport()
    ) as model:
        first = await model.complete(ModelRequest(agent="a", messages=(question,), tools=(WEATHER,)))
        assert first.message == AssistantMessage(
            tool_calls=(ToolCall(id="toolu_01WN4AuToBnJyXNQXwQBBebj", name="get_weather", arguments='{"city": "Paris"}'),)
        )
        assert first.finish_reason == "tool_use"
        assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.requests) == (572, 53, 1)
        second = await model.complete(
            ModelRequest(
                agent="a",
                messages=(
                    question,
                    first.message,
                    ToolMessage(
                        tool_call_id="toolu_01WN4AuToBnJyXNQXwQBBebj", name="get_weather", content="Sunny, 22C in Paris"
                    ),
                ),
                tools=(WEATHER,),
            )
        )
    assert second.message.content is not None and second.message.content.startswith(
        "The weather in Paris is currently sunny"
    )
    assert second.finish_reason == "end_turn"
    for sent, recorded in zip(rec.sent_json, rec.interactions, strict=True):
        assert essentials(sent) == essentials(recorded.request_json)
        assert sent["tool_choice"] == recorded.request_json["tool_choice"] == {"type": "auto"}
        assert sent["max_tokens"] == 4096
    headers = rec.sent[0].headers
    assert headers["x-api-key"] == "sk-ant-test" and headers["anthropic-version"] == "2023-06-01"
    assert rec.sent[0].url.path == "/v1/messages"


async def test_streamed_tool_use_then_streamed_text() -> None:
    rec = replay("anthropic/messages_stream_tool_use_vanilla_vcr.yaml")
    temperature = ToolSpec(
        name="get_current_temperature",
        description="Get the current temperature in a city.",
        parameters_json=json.dumps(
            {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The name of the city to get the temperature for."}
                },
                "required": ["city"],
            }
        ),
    )
    question = UserMessage(content="What is the temperature in San Francisco?")
    model = AnthropicMessages("claude-3-5-haiku-latest", api_key="sk-ant-test", max_tokens=4096, transport=rec.transport())
    deltas: list[StreamDelta] = []

    async def collect(d: StreamDelta) -> None:  # async callbacks are awaited
        deltas.append(d)

    first = await model.stream_complete(ModelRequest(agent="a", messages=(question,), tools=(temperature,)), collect)
    assert first.message.content == (
        "I'll help you find out the current temperature in San Francisco. "
        "I'll use the get_current_temperature function to retrieve this information."
    )
    assert first.message.tool_calls == (
        ToolCall(id="toolu_01Lfr3kUnHMZApePPRWMv1uS", name="get_current_temperature", arguments='{"city": "San Francisco"}'),
    )
    assert first.finish_reason == "tool_use"
    assert (first.usage.input_tokens, first.usage.output_tokens) == (351, 85)
    fragments = [d.arguments for d in deltas if d.tool_index == 1 and d.arguments]
    assert "".join(fragments) == '{"city": "San Francisco"}' and len(fragments) == 4

    second = await model.stream_complete(
        ModelRequest(
            agent="a",
            messages=(
                question,
                first.message,
                ToolMessage(
                    tool_call_id="toolu_01Lfr3kUnHMZApePPRWMv1uS",
                    name="get_current_temperature",
                    content="The temperature in San Francisco is 72°F",
                ),
            ),
            tools=(temperature,),
        )
    )
    assert second.message.content is not None and second.message.content.startswith(
        "The current temperature in San Francisco is 72°F."
    )
    assert second.message.tool_calls == () and second.finish_reason == "end_turn"
    for sent, recorded in zip(rec.sent_json, rec.interactions, strict=True):
        # the recording has no tool_choice and is_error absent; ours says auto / false explicitly
        recorded_json = recorded.request_json
        assert essentials(sent) == essentials(recorded_json)


async def test_400_is_typed_and_not_retried() -> None:
    rec = replay("anthropic/error_400_invalid_request.yaml")
    model = AnthropicMessages("claude-opus-4-6", api_key="sk-ant-test", transport=rec.transport())
    with pytest.raises(ModelHTTPError) as info:
        await model.complete(ModelRequest(agent="a", messages=(UserMessage(content="What is 2+2?"),)))
    assert info.value.status == 400
    assert json.loads(info.value.body)["error"]["type"] == "invalid_request_error"
    assert len(rec.sent) == 1


async def test_consecutive_tool_results_merge_into_one_user_turn() -> None:
    model = AnthropicMessages("m", api_key="k")
    calls = (ToolCall(id="t1", name="a", arguments='{"x": 1}'), ToolCall(id="t2", name="b", arguments="not json"))
    system, messages = (
        (
            body := model.payload(
                ModelRequest(
                    agent="a",
                    instructions="Be brief.",
                    messages=(
                        UserMessage(content="go"),
                        AssistantMessage(content="calling", tool_calls=calls),
                        ToolMessage(tool_call_id="t1", name="a", content="one"),
                        ToolMessage(tool_call_id="t2", name="b", content="Error: bad", is_error=True),
                        UserMessage(content="and now?"),
                    ),
                    tool_choice="required",
                    tools=(WEATHER,),
                )
            )
        )["system"],
        body["messages"],
    )
    assert system == "Be brief."
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == [
        {"type": "text", "text": "calling"},
        {"type": "tool_use", "id": "t1", "name": "a", "input": {"x": 1}},
        {"type": "tool_use", "id": "t2", "name": "b", "input": {}},
    ]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "one", "is_error": False},
        {"type": "tool_result", "tool_use_id": "t2", "content": "Error: bad", "is_error": True},
        {"type": "text", "text": "and now?"},
    ]
    assert body["tool_choice"] == {"type": "any"}


async def test_missing_key_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    model = AnthropicMessages("m")
    with pytest.raises(MissingAPIKey, match="ANTHROPIC_API_KEY"):
        await model.complete(ModelRequest(agent="a", messages=(UserMessage(content="x"),)))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fromenv-0123456789abcdef")
    model = AnthropicMessages("m")
    assert "sk-ant" not in repr(model) and "sk-ant" not in str(vars(model).get("model"))


async def test_an_output_schema_is_stated_in_the_system_prompt() -> None:
    """The Messages API has no structured-output parameter: the schema goes into `system`."""
    model = AnthropicMessages("m", api_key="k")
    schema = json.dumps({"type": "object", "properties": {"city": {"type": "string"}}})
    request = ModelRequest(
        agent="a", instructions="Be brief.", messages=(UserMessage(content="go"),), output_schema_json=schema
    )
    system = model.payload(request)["system"]
    assert system.startswith("Be brief.\n\nReply with only a JSON object") and schema in system
    assert "output_schema_json" not in model.payload(request) and "response_format" not in model.payload(request)
    assert model.payload(request.model_copy(update={"output_schema_json": None}))["system"] == "Be brief."
