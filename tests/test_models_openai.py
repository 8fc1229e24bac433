"""OpenAIChat against real recorded traffic (OpenAI, Mistral, Ollama, OpenRouter)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import stamina
from cassette import replay

from fsm_agents.models import MalformedResponse, ModelHTTPError, OpenAIChat, RateLimited, StreamDelta
from fsm_agents.state import (
    AssistantMessage,
    ModelRequest,
    ModelSettings,
    ToolCall,
    ToolMessage,
    ToolSpec,
    UserMessage,
)

pytestmark = pytest.mark.anyio

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


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3, cap=True):
        yield


def essentials(body: dict[str, Any]) -> dict[str, Any]:
    """What must match between what we send and what the real client sent."""
    return {
        "model": body["model"],
        "roles": [m["role"] for m in body["messages"]],
        "tool_call_ids": [[c["id"] for c in m.get("tool_calls") or ()] or m.get("tool_call_id") for m in body["messages"]],
        "tools": [{k: t["function"].get(k) for k in ("name", "description", "parameters")} for t in body.get("tools") or ()],
        "tool_choice": body.get("tool_choice"),
        "stream": bool(body.get("stream")),
    }


def weather_request(*more: Any, tools: tuple[ToolSpec, ...] = (WEATHER,)) -> ModelRequest:
    return ModelRequest(
        agent="a", messages=(UserMessage(content="What's the weather in Paris?"), *more), tools=tools, tool_choice="auto"
    )


async def test_openai_tool_call_then_text() -> None:
    rec = replay("openai/chat_tool_call_roundtrip.yaml")
    async with OpenAIChat("gpt-5-mini", api_key="sk-test", transport=rec.transport()) as model:
        first = await model.complete(weather_request())
        assert first.message.content is None
        assert first.message.tool_calls == (
            ToolCall(id="call_aDdJTteHrpMdhdkEkyxjxEHH", name="get_weather", arguments='{"city":"Paris"}'),
        )
        assert first.finish_reason == "tool_calls"
        assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.requests) == (132, 23, 1)
        assert first.model == "gpt-5-mini-2025-08-07"

        second = await model.complete(
            weather_request(
                first.message,
                ToolMessage(tool_call_id=first.message.tool_calls[0].id, name="get_weather", content="Sunny, 22C in Paris"),
            )
        )
    assert second.message.tool_calls == ()
    assert second.message.content is not None and second.message.content.startswith("It's sunny in Paris right now")
    assert (second.usage.input_tokens, second.usage.output_tokens) == (167, 171)
    assert [r.url.path for r in rec.sent] == ["/v1/chat/completions"] * 2
    for sent, recorded in zip(rec.sent_json, rec.interactions, strict=True):
        assert essentials(sent) == essentials(recorded.request_json)
    # the assistant turn with tool calls goes out with "" (llama.cpp rejects null), tool turn without name
    assert rec.sent_json[1]["messages"][1]["content"] == ""
    assert rec.sent_json[1]["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_aDdJTteHrpMdhdkEkyxjxEHH",
        "content": "Sunny, 22C in Paris",
    }
    assert rec.sent[0].headers["authorization"] == "Bearer sk-test"


async def test_openai_streamed_tool_call_then_streamed_text() -> None:
    rec = replay("openai/chat_stream_tool_call_roundtrip.yaml")
    capital = ToolSpec(
        name="get_capital",
        description="",
        parameters_json=json.dumps(
            {
                "additionalProperties": False,
                "properties": {"country": {"type": "string"}},
                "required": ["country"],
                "type": "object",
            }
        ),
    )
    question = UserMessage(content="What is the capital of the UK? Use the tool, then answer.")
    model = OpenAIChat("gpt-4o-mini", api_key="sk-test", transport=rec.transport())
    deltas: list[StreamDelta] = []
    first = await model.stream_complete(
        ModelRequest(agent="a", messages=(question,), tools=(capital,)), on_delta=deltas.append
    )
    assert first.message.tool_calls == (
        ToolCall(id="call_ZR5UUuTt3pf61kjwAJIYdVMj", name="get_capital", arguments='{"country":"UK"}'),
    )
    assert first.finish_reason == "tool_calls"
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.requests) == (53, 15, 1)
    # the arguments arrived in fragments that concatenate, all for tool index 0
    assert [d.arguments for d in deltas if d.arguments] == ['{"', "country", '":"', "UK", '"}']
    assert {d.tool_index for d in deltas} == {0}
    assert deltas[0].tool_name == "get_capital" and deltas[0].tool_call_id == "call_ZR5UUuTt3pf61kjwAJIYdVMj"

    texts: list[str] = []
    async for delta in model.stream(
        ModelRequest(
            agent="a",
            messages=(
                question,
                first.message,
                ToolMessage(tool_call_id="call_ZR5UUuTt3pf61kjwAJIYdVMj", name="get_capital", content="London"),
            ),
            tools=(capital,),
        )
    ):
        assert delta.tool_index is None
        texts.append(delta.text)
    await model.aclose()
    assert "".join(texts) == "The capital of the UK is London."
    for sent, recorded in zip(rec.sent_json, rec.interactions, strict=True):
        assert essentials(sent) == essentials(recorded.request_json)
        assert sent["stream_options"] == {"include_usage": True}
    assert rec.sent[0].headers["accept"] == "text/event-stream"


async def test_openai_400_is_a_typed_error_not_retried() -> None:
    rec = replay("openai/error_400_unsupported_value.yaml")
    model = OpenAIChat("o1-mini", api_key="sk-test", transport=rec.transport())
    with pytest.raises(ModelHTTPError) as info:
        await model.complete(
            ModelRequest(agent="a", instructions="You are a helpful assistant.", messages=(UserMessage(content="Hello"),))
        )
    assert info.value.status == 400
    assert not isinstance(info.value, RateLimited)
    assert json.loads(info.value.body)["error"]["code"] == "unsupported_value"
    assert len(rec.sent) == 1  # a 4xx other than 429 is never retried
    assert essentials(rec.sent_json[0]) == essentials(rec.interactions[0].request_json)  # instructions → system first


async def test_mistral_tool_call_roundtrip() -> None:
    rec = replay("mistral/chat_tool_call_roundtrip.yaml")
    model = OpenAIChat(
        "mistral-large-latest", "https://api.mistral.ai/v1", api_key="mistral-test", transport=rec.transport()
    )
    assert model.provider == "mistral"
    first = await model.complete(weather_request())
    # Mistral: 9-char id, an "index" field and no "type"; content "" means no text
    assert first.message == AssistantMessage(
        content=None, tool_calls=(ToolCall(id="KikbB849t", name="get_weather", arguments='{"city": "Paris"}'),)
    )
    assert (first.usage.input_tokens, first.usage.output_tokens) == (77, 12)
    second = await model.complete(
        weather_request(
            first.message, ToolMessage(tool_call_id="KikbB849t", name="get_weather", content="Sunny, 22C in Paris")
        )
    )
    assert second.message.tool_calls == ()  # "tool_calls": null
    assert second.message.content is not None and "**sunny**" in second.message.content
    for sent, recorded in zip(rec.sent_json, rec.interactions, strict=True):
        assert essentials(sent) == essentials(recorded.request_json)


async def test_mistral_stream_text_drops_thinking_chunks() -> None:
    rec = replay("mistral/chat_stream_text.yaml")
    model = OpenAIChat(
        "magistral-medium-latest", "https://api.mistral.ai/v1", api_key="mistral-test", transport=rec.transport()
    )
    response = await model.stream_complete(
        ModelRequest(agent="a", messages=(UserMessage(content="How do I cross the street?"),))
    )
    text = response.message.content
    assert text is not None
    assert text.endswith("you can ensure a safe crossing.")
    assert "Okay, the user is asking" not in text  # that was a "thinking" chunk
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 232)
    assert response.finish_reason == "stop"
    sent = rec.sent_json[0]
    assert essentials(sent) == essentials(rec.interactions[0].request_json)
    assert "stream_options" not in sent  # not sent to Mistral


async def test_mistral_seed_and_max_tokens_use_mistral_names() -> None:
    model = OpenAIChat("m", "https://api.mistral.ai/v1", api_key="k")
    body = model.payload(
        ModelRequest(agent="a", messages=(UserMessage(content="x"),), settings=ModelSettings(seed=7, max_tokens=5))
    )
    assert body["random_seed"] == 7 and "seed" not in body and body["max_tokens"] == 5
    openai_body = OpenAIChat("m", api_key="k").payload(
        ModelRequest(agent="a", messages=(UserMessage(content="x"),), settings=ModelSettings(seed=7, max_tokens=5))
    )
    assert openai_body["seed"] == 7 and openai_body["max_completion_tokens"] == 5


async def test_ollama_reasoning_field_and_tool_call() -> None:
    rec = replay("openai_compatible/ollama_chat_tool_call.yaml")
    final = ToolSpec(
        name="final_result",
        description="The final response which ends this conversation",
        parameters_json=json.dumps(
            {
                "additionalProperties": False,
                "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                "required": ["city", "country"],
                "type": "object",
            }
        ),
    )
    model = OpenAIChat("gpt-oss:20b", "https://ollama.com/v1", transport=rec.transport())
    assert model.provider == "ollama"
    question = UserMessage(content="What is the capital of France?")
    first = await model.complete(ModelRequest(agent="a", messages=(question,), tools=(final,)))
    assert first.message == AssistantMessage(content="Paris.")  # the "reasoning" field is dropped
    feedback = rec.interactions[1].request_json["messages"][2]["content"]
    second = await model.complete(
        ModelRequest(agent="a", messages=(question, first.message, UserMessage(content=feedback)), tools=(final,))
    )
    assert second.message.content is None
    assert second.message.tool_calls == (
        ToolCall(id="call_o2vnpxrw", name="final_result", arguments='{"city":"Paris","country":"France"}'),
    )
    assert (second.usage.input_tokens, second.usage.output_tokens) == (206, 194)
    assert "authorization" not in rec.sent[0].headers  # no key is sent to a non-OpenAI host
    for sent, recorded in zip(rec.sent_json, rec.interactions, strict=True):
        assert essentials(sent) == essentials(recorded.request_json)


async def test_openrouter_429_raises_rate_limited_after_retries() -> None:
    rec = replay("openai_compatible/openrouter_429_rate_limited.yaml")
    model = OpenAIChat(
        "google/gemini-2.0-flash-exp:free", "https://openrouter.ai/api/v1", api_key="or-test", transport=rec.transport()
    )
    with pytest.raises(RateLimited) as info:
        await model.complete(
            ModelRequest(agent="a", instructions="Be helpful.", messages=(UserMessage(content="Tell me a joke."),))
        )
    assert len(rec.sent) == 3  # every recorded 429 was retried, then the last one raised
    assert info.value.status == 429 and info.value.retry_after is None
    assert "temporarily rate-limited upstream" in info.value.body
    assert rec.sent[0].url.path == "/api/v1/chat/completions"
    assert essentials(rec.sent_json[0]) == essentials(rec.interactions[0].request_json)


async def test_structured_output_natively_where_supported_else_in_the_prompt() -> None:
    """OpenAI-style servers get `response_format: json_schema` named after the schema's title
    (strict only when the schema meets strict mode's rules); llama.cpp its `json_object` +
    schema grammar when no tool is in play; a generic server the schema in the system prompt."""
    schema = json.dumps({"type": "object", "title": "My Answer", "properties": {"x": {"type": "integer"}}})
    question = (UserMessage(content="x"),)
    request = ModelRequest(agent="a", instructions="Be brief.", messages=question, output_schema_json=schema)
    openai = OpenAIChat("m", api_key="k").payload(request)
    assert openai["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "My_Answer", "schema": json.loads(schema), "strict": False},
    }
    strict = {**json.loads(schema), "required": ["x"], "additionalProperties": False}
    strict_request = request.model_copy(update={"output_schema_json": json.dumps(strict)})
    assert OpenAIChat("m", api_key="k").payload(strict_request)["response_format"]["json_schema"]["strict"] is True
    generic = OpenAIChat("m", "http://127.0.0.1:9/v1").payload(request)
    assert "response_format" not in generic
    assert generic["messages"][0]["content"].startswith("Be brief.\n\nReply with only a JSON object")
    assert '"x"' in generic["messages"][0]["content"] and generic["messages"][1] == {"role": "user", "content": "x"}
    llamacpp = OpenAIChat("m", "http://127.0.0.1:9/v1", provider="llamacpp")
    assert llamacpp.payload(request)["response_format"] == {"type": "json_object", "schema": json.loads(schema)}
    with_tools = request.model_copy(update={"tools": (WEATHER,)})
    assert "response_format" not in llamacpp.payload(with_tools)
    answering = with_tools.model_copy(update={"tool_choice": "none"})
    assert llamacpp.payload(answering)["response_format"]["schema"] == json.loads(schema)


def test_strict_ready_reads_every_object_of_the_schema() -> None:
    from fsm_agents.models.openai import strict_ready

    leaf = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    assert strict_ready(leaf)
    assert not strict_ready({**leaf, "required": []})
    assert not strict_ready({k: v for k, v in leaf.items() if k != "additionalProperties"})
    nested = {**leaf, "properties": {"a": {"type": "array", "items": {**leaf, "required": []}}}}
    assert not strict_ready(nested)
    assert not strict_ready({**leaf, "$defs": {"B": {"type": "object", "properties": {}}}})


async def test_tool_choice_forms() -> None:
    model = OpenAIChat("m", api_key="k")
    base = weather_request()
    assert model.payload(base)["tool_choice"] == "auto"
    assert model.payload(base.model_copy(update={"tool_choice": "required"}))["tool_choice"] == "required"
    named = model.payload(base.model_copy(update={"tool_choice": "get_weather"}))["tool_choice"]
    assert named == {"type": "function", "function": {"name": "get_weather"}}
    assert "tool_choice" not in model.payload(ModelRequest(agent="a", messages=(UserMessage(content="x"),)))


async def test_malformed_completion_without_choices() -> None:
    import httpx

    model = OpenAIChat(
        "m", "http://127.0.0.1:9/v1", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"id": "x"}))
    )
    with pytest.raises(MalformedResponse, match="no choices"):
        await model.complete(weather_request())
