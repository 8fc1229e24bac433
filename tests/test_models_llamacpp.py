"""OpenAIChat against our recordings of a real llama.cpp server (SmolLM2-135M, chatml-function-calling)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
import stamina
from cassette import Replay, replay

from fsm_agents.models import ModelHTTPError, OpenAIChat, StreamDelta
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

URL = "http://127.0.0.1:8080/v1"
WEATHER = ToolSpec(
    name="get_weather",
    description="Get current weather for a city",
    parameters_json=json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
)
ADD = ToolSpec(
    name="add",
    description="Add two integers",
    parameters_json=json.dumps(
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}
    ),
)


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=2, cap=True):
        yield


def model_for(rec: Replay) -> OpenAIChat:
    return OpenAIChat("smol", URL, transport=rec.transport(), provider="llamacpp")


def assert_same_request(rec: Replay, ignore: tuple[str, ...] = ()) -> None:
    """What we sent equals the recorded request, key by key (the recordings were made with plain
    dicts, so this checks our whole translation)."""
    sent, recorded = rec.sent_json[0], dict(rec.interactions[0].request_json)
    assert rec.sent[0].url.path == rec.interactions[0].path == "/v1/chat/completions"
    for key in ignore:
        sent.pop(key, None)
        recorded.pop(key, None)
    assert sent == recorded


def settings(max_tokens: int) -> ModelSettings:
    return ModelSettings(temperature=0, max_tokens=max_tokens)


SYSTEM = "You are a helpful assistant with tools."
TOKYO = UserMessage(content="What is the weather in Tokyo?")


async def test_tool_call_auto_ignores_legacy_function_call() -> None:
    rec = replay("llamacpp/tool_call_auto.json")
    response = await model_for(rec).complete(
        ModelRequest(agent="a", instructions=SYSTEM, messages=(TOKYO,), tools=(WEATHER,), settings=settings(128))
    )
    # tool_calls wins; the legacy function_call ("get_weather:") is not a second call
    assert response.message.tool_calls == (
        ToolCall(
            id="call__0_get_weather_cmpl-4e0226df-4bfc-4410-a6b4-5d661408b956",
            name="get_weather",
            arguments='{ "city": "Tokyo" }',
        ),
    )
    assert response.message.tool_calls[0].parsed() == {"city": "Tokyo"}
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.requests) == (209, 9, 1)
    assert_same_request(rec)


async def test_legacy_function_call_alone_is_used_with_its_colon_stripped() -> None:
    rec = replay("llamacpp/tool_call_auto.json")
    body = rec.interactions[0].response_json
    del body["choices"][0]["message"]["tool_calls"]
    rec.interactions = [replace(rec.interactions[0], body=json.dumps(body).encode())]
    response = await model_for(rec).complete(ModelRequest(agent="a", messages=(TOKYO,), tools=(WEATHER,)))
    assert [(c.name, c.parsed()) for c in response.message.tool_calls] == [("get_weather", {"city": "Tokyo"})]


async def test_tool_call_forced_by_name() -> None:
    rec = replay("llamacpp/tool_call_forced.json")
    response = await model_for(rec).complete(
        ModelRequest(
            agent="a",
            messages=(UserMessage(content="Add 2 and 40."),),
            tools=(ADD,),
            tool_choice="add",
            settings=settings(64),
        )
    )
    assert [(c.name, c.parsed()) for c in response.message.tool_calls] == [("add", {"a": 1, "b": 2})]  # a 135M model
    assert response.finish_reason == "tool_calls"
    assert_same_request(rec)


async def test_required_with_one_tool_is_sent_as_the_named_tool() -> None:
    rec = replay("llamacpp/tool_call_forced.json")
    await model_for(rec).complete(
        ModelRequest(
            agent="a",
            messages=(UserMessage(content="Add 2 and 40."),),
            tools=(ADD,),
            tool_choice="required",
            settings=settings(64),
        )
    )
    assert_same_request(rec)  # llama.cpp crashes on "required": we send {"type": "function", ...}


async def test_tool_result_turn_sends_empty_content_and_parses_the_next_call() -> None:
    rec = replay("llamacpp/tool_result_turn.json")
    response = await model_for(rec).complete(
        ModelRequest(
            agent="a",
            instructions=SYSTEM,
            messages=(
                TOKYO,
                AssistantMessage(tool_calls=(ToolCall(id="call_1", name="get_weather", arguments='{"city": "Tokyo"}'),)),
                ToolMessage(tool_call_id="call_1", name="get_weather", content="22C, sunny"),
            ),
            tools=(WEATHER,),
            settings=settings(128),
        )
    )
    assert [(c.name, c.parsed()) for c in response.message.tool_calls] == [("get_weather", {"city": "./tokyo"})]
    assert_same_request(rec)  # including "content": "" on the assistant turn


async def test_null_content_500_is_a_typed_error_and_we_never_send_null() -> None:
    rec = replay("llamacpp/error_null_content_with_tool_calls.json")
    rec.interactions = list(rec.interactions) * 2  # a 500 is retried (attempts=2 in this module)
    request = ModelRequest(
        agent="a",
        messages=(
            TOKYO,
            AssistantMessage(
                content=None, tool_calls=(ToolCall(id="call_1", name="get_weather", arguments='{"city": "Tokyo"}'),)
            ),
            ToolMessage(tool_call_id="call_1", name="get_weather", content="22C, sunny"),
        ),
        tools=(WEATHER,),
        tool_choice="auto",
        settings=settings(64),
    )
    with pytest.raises(ModelHTTPError) as info:
        await model_for(rec).complete(request)
    assert info.value.status == 500 and "Input should be a valid string" in info.value.body
    assert len(rec.sent) == 2
    sent = rec.sent_json[0]
    recorded = rec.interactions[0].request_json
    assert recorded["messages"][1]["content"] is None  # what the real server rejected
    assert sent["messages"][1]["content"] == ""  # what we send instead
    assert {k: v for k, v in sent.items() if k != "tool_choice"} == {
        **recorded,
        "messages": [recorded["messages"][0], {**recorded["messages"][1], "content": ""}, recorded["messages"][2]],
    }


def test_the_real_llamacpp_request_model_accepts_what_we_send() -> None:
    types = pytest.importorskip("llama_cpp.server.types")
    model = OpenAIChat("smol", URL, provider="llamacpp")
    recorded = replay("llamacpp/error_null_content_with_tool_calls.json").interactions[0].request_json
    with pytest.raises(ValueError, match="valid string"):  # the server's own validation of the recorded request
        types.CreateChatCompletionRequest.model_validate(recorded)
    ours = model.payload(
        ModelRequest(
            agent="a",
            messages=(
                TOKYO,
                AssistantMessage(tool_calls=(ToolCall(id="call_1", name="get_weather", arguments='{"city": "Tokyo"}'),)),
                ToolMessage(tool_call_id="call_1", name="get_weather", content="22C, sunny"),
            ),
            tools=(WEATHER,),
            tool_choice="required",
            settings=settings(64),
        )
    )
    types.CreateChatCompletionRequest.model_validate(ours)  # raises if the real server would reject it


async def test_bad_request_500_is_typed() -> None:
    rec = replay("llamacpp/error_bad_request.json")
    rec.interactions = list(rec.interactions) * 2
    model = model_for(rec)
    # our message types cannot express role "wizard": send the recorded body verbatim through the HTTP layer
    with pytest.raises(ModelHTTPError) as info:
        await model.post_json("/chat/completions", rec.interactions[0].request_json)
    assert info.value.status == 500 and "literal_error" in info.value.body
    assert_same_request(rec)


async def test_text_answer() -> None:
    rec = replay("llamacpp/text_answer.json")
    response = await model_for(rec).complete(
        ModelRequest(agent="a", messages=(UserMessage(content="Say hello in French."),), settings=settings(30))
    )
    assert response.message == AssistantMessage(content="Je suis le mieux en franç.")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (14, 11)
    assert_same_request(rec)


async def test_text_answer_stream_without_usage() -> None:
    rec = replay("llamacpp/text_answer_stream.json")
    texts: list[str] = []
    response = await model_for(rec).stream_complete(
        ModelRequest(agent="a", messages=(UserMessage(content="Say hello in French."),), settings=settings(30)),
        lambda d: texts.append(d.text),
    )
    assert response.message.content == "".join(texts) == "Je suis le mieux en franç."
    assert response.usage.requests == 1 and response.usage.output_tokens == 0  # llama.cpp streams send no usage
    assert_same_request(rec, ignore=("stream_options",))


async def test_tool_call_stream_with_repeated_id_and_name() -> None:
    rec = replay("llamacpp/tool_call_stream.json")
    deltas: list[StreamDelta] = []
    response = await model_for(rec).stream_complete(
        ModelRequest(
            agent="a",
            messages=(UserMessage(content="What is the weather in Paris?"),),
            tools=(WEATHER,),
            tool_choice="get_weather",
            settings=settings(64),
        ),
        deltas.append,
    )
    (call,) = response.message.tool_calls
    assert call.name == "get_weather" and call.id == "call__0_get_weather_cmpl-102b908e-904c-491e-817c-aca43f3ea973"
    assert call.parsed() == {"city": "Paris"}
    assert sum(1 for d in deltas if d.tool_name) == 1  # the name is reported once, not once per chunk
    assert len([d for d in deltas if d.arguments]) > 3
    assert_same_request(rec, ignore=("stream_options",))
