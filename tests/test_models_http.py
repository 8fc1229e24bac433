"""The HTTP layer: retries, typed errors, faults, key hygiene, client lifecycle, and an agent run
end to end through `OpenAIChat`. Error responses built here (401, 500, faults) are SYNTHETIC —
made up for the test with `httpx.MockTransport`, not recorded traffic."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
import stamina

from fsm_agents import Agent, Phase, ToolMessage, run
from fsm_agents.models import (
    AnthropicMessages,
    MalformedResponse,
    MissingAPIKey,
    ModelConnectionError,
    ModelHTTPError,
    ModelTimeout,
    OpenAIChat,
    RateLimited,
)
from fsm_agents.models._http import MAX_RETRY_AFTER, is_retryable, parse_retry_after, retry_wait
from fsm_agents.runtime import Limits
from fsm_agents.state import ModelRequest, UserMessage

pytestmark = pytest.mark.anyio

KEY = "sk-proj-SECRETsecretSECRET0123456789"
REQUEST = ModelRequest(agent="a", messages=(UserMessage(content="hi"),))


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3, cap=True):
        yield


def completion(content: str | None = "hello", tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "x",
        "model": "stub",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


class Script:
    """A MockTransport handler answering from a list of callables/responses, counting calls."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], Any] | BaseException) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        result = answer(request)
        if hasattr(result, "__await__"):
            result = await result
        return result  # type: ignore[no-any-return]

    def model(self, **kwargs: Any) -> OpenAIChat:
        return OpenAIChat("gpt-4o-mini", api_key=KEY, transport=httpx.MockTransport(self), **kwargs)


# -- retries and typed errors ---------------------------------------------------------------------
async def test_401_synthetic_not_retried_and_key_not_echoed() -> None:
    # SYNTHETIC: a server that echoes the Authorization header back in its error body
    script = Script(lambda r: httpx.Response(401, json={"error": {"message": f"bad key {r.headers['authorization']}"}}))
    with pytest.raises(ModelHTTPError) as info:
        await script.model().complete(REQUEST)
    assert info.value.status == 401 and len(script.requests) == 1
    assert KEY not in info.value.body and KEY not in str(info.value) and "[REDACTED]" in info.value.body


async def test_500_synthetic_is_retried_then_succeeds() -> None:
    script = Script(httpx.Response(500, text="upstream exploded"), httpx.Response(200, json=completion("recovered")))
    response = await script.model().complete(REQUEST)
    assert response.message.content == "recovered" and len(script.requests) == 2


async def test_500_synthetic_every_time_raises_after_all_attempts() -> None:
    script = Script(httpx.Response(500, text="upstream exploded"))
    with pytest.raises(ModelHTTPError) as info:
        await script.model().complete(REQUEST)
    assert info.value.status == 500 and info.value.body == "upstream exploded"
    assert len(script.requests) == 3


async def test_429_with_retry_after_then_success() -> None:
    script = Script(
        httpx.Response(429, headers={"retry-after": "2"}, json={"error": "slow down"}),
        httpx.Response(200, json=completion("ok")),
    )
    assert (await script.model().complete(REQUEST)).message.content == "ok"
    assert len(script.requests) == 2


async def test_max_retries_zero_tries_once() -> None:
    script = Script(httpx.Response(503, text="busy"))
    with pytest.raises(ModelHTTPError):
        await script.model(max_retries=0).complete(REQUEST)
    assert len(script.requests) == 1


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 99) == 0.0  # in the past
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None


def test_retry_policy_honours_retry_after() -> None:
    for _ in range(20):
        wait = retry_wait(RateLimited(429, "", retry_after=7.0))
        assert isinstance(wait, float) and 7.0 <= wait <= 8.0  # at least Retry-After, plus jitter
    assert retry_wait(RateLimited(429, "", retry_after=None)) is True  # exponential backoff
    assert retry_wait(RateLimited(429, "", retry_after=MAX_RETRY_AFTER + 1)) is False  # too long: give up now
    assert retry_wait(ModelHTTPError(400, "")) is False
    assert retry_wait(ModelHTTPError(404, "")) is False
    assert retry_wait(ModelHTTPError(503, "")) is True
    assert is_retryable(ModelTimeout("t")) and is_retryable(ModelConnectionError("c"))
    assert not is_retryable(MalformedResponse("m")) and not is_retryable(MissingAPIKey("k"))


# -- faults ---------------------------------------------------------------------------------------
async def test_connection_reset_and_refused_become_connection_errors() -> None:
    for exc in (httpx.ReadError("connection reset by peer"), httpx.ConnectError("connection refused")):
        script = Script(exc)
        with pytest.raises(ModelConnectionError, match="cannot reach"):
            await script.model().complete(REQUEST)
        assert len(script.requests) == 3  # retried


async def test_connection_reset_once_then_success() -> None:
    script = Script(httpx.ReadError("reset"), httpx.Response(200, json=completion("fine")))
    assert (await script.model().complete(REQUEST)).message.content == "fine"


async def test_slow_server_times_out(anyio_backend: str) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(5)
        return httpx.Response(200, json=completion())

    script = Script(slow)
    with anyio.fail_after(3), pytest.raises(ModelTimeout, match=r"no answer within 0\.05 s"):
        await script.model(timeout=0.05, max_retries=1).complete(REQUEST)
    assert len(script.requests) == 2


async def test_invalid_json_body() -> None:
    script = Script(httpx.Response(200, text='{"choices": [', headers={"content-type": "application/json"}))
    with pytest.raises(MalformedResponse, match="not JSON") as info:
        await script.model().complete(REQUEST)
    assert info.value.body == '{"choices": ['
    assert len(script.requests) == 1  # not retried


def sse(*events: str) -> bytes:
    return "".join(f"data: {e}\n\n" for e in events).encode()


CHUNK = json.dumps({"choices": [{"index": 0, "delta": {"content": "par"}, "finish_reason": None}]})


async def test_truncated_sse_stream() -> None:
    script = Script(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(CHUNK, CHUNK)))
    with pytest.raises(MalformedResponse, match="truncated"):
        await script.model().stream_complete(REQUEST)
    deltas = []
    with pytest.raises(MalformedResponse, match="truncated"):
        async for d in script.model().stream(REQUEST):
            deltas.append(d)
    assert [d.text for d in deltas] == ["par", "par"]  # what arrived was delivered before the error


async def test_sse_stream_cut_mid_event() -> None:
    body = sse(CHUNK) + b'data: {"choices": [{"index": 0, "delta": {"content": "x'
    script = Script(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body))
    with pytest.raises(MalformedResponse):
        await script.model().stream_complete(REQUEST)


async def test_sse_expected_but_json_received() -> None:
    script = Script(httpx.Response(200, json=completion()))
    with pytest.raises(MalformedResponse, match="not an event stream"):
        await script.model().stream_complete(REQUEST)


async def test_anthropic_truncated_stream_and_error_event() -> None:
    start = json.dumps({"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 1}}})
    block = json.dumps({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "hi"}})
    error = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    headers = {"content-type": "text/event-stream"}
    for content, expected, match in (
        (sse(start, block), MalformedResponse, "truncated"),
        (sse(start, error), ModelHTTPError, "Overloaded"),
    ):
        model = AnthropicMessages(
            "m",
            api_key=KEY,
            transport=httpx.MockTransport(lambda r, c=content: httpx.Response(200, headers=headers, content=c)),
        )
        with pytest.raises(expected, match=match) as info:
            await model.stream_complete(REQUEST)
    assert isinstance(info.value, ModelHTTPError) and info.value.status == 529


# -- keys and lifecycle ---------------------------------------------------------------------------
async def test_keys_from_env_only_for_their_own_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-secret-key-0123456789")
    seen: list[httpx.Request] = []

    def handler(r: httpx.Request) -> httpx.Response:
        seen.append(r)
        return httpx.Response(200, json=completion())

    for base_url, expected in (
        ("https://api.openai.com/v1", f"Bearer {KEY}"),
        ("https://api.mistral.ai/v1", "Bearer mistral-secret-key-0123456789"),
        ("http://127.0.0.1:8080/v1", None),  # never leak a cloud key to another server
    ):
        model = OpenAIChat("m", base_url, transport=httpx.MockTransport(handler))
        await model.complete(REQUEST)
        assert seen[-1].headers.get("authorization") == expected
        assert KEY not in repr(model) and "mistral-secret" not in repr(model)
        await model.aclose()


async def test_missing_openai_key_is_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="OPENAI_API_KEY"):
        await OpenAIChat("gpt-4o").complete(REQUEST)


async def test_one_pooled_client_closed_by_async_with() -> None:
    script = Script(httpx.Response(200, json=completion()))
    model = script.model()
    async with model:
        await model.complete(REQUEST)
        client = model._client
        await model.complete(REQUEST)
        assert model._client is client and client is not None  # reused
    assert model._client is None and client.is_closed
    await model.aclose()  # idempotent
    await model.complete(REQUEST)  # usable again: a new client
    assert model._client is not None and model._client is not client
    await model.aclose()


def test_a_model_survives_several_event_loops() -> None:
    script = Script(httpx.Response(200, json=completion("again")))
    model = script.model()
    for backend in ("asyncio", "trio", "asyncio"):
        response = anyio.run(model.complete, REQUEST, backend=backend)
        assert response.message.content == "again"
    assert len(script.requests) == 3


# -- end to end -----------------------------------------------------------------------------------
def capital(country: str) -> str:
    """The capital city of a country.

    Args:
        country: the country's English name.
    """
    return {"France": "Paris", "Japan": "Tokyo"}.get(country, "unknown")


async def test_agent_runs_to_done_through_openai_chat() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["messages"][-1]["role"] == "tool":
            return httpx.Response(200, json=completion(f"The capital is {body['messages'][-1]['content']}."))
        assert body["tools"][0]["function"]["name"] == "capital"
        call = {"id": "call_1", "type": "function", "function": {"name": "capital", "arguments": '{"country": "France"}'}}
        return httpx.Response(200, json=completion(None, [call]))

    script = Script(reply)
    async with script.model() as model:
        agent = Agent("geo", "Answer with the tools.", model=model, tools=[capital], max_steps=4)
        result = await run(agent, "What is the capital of France?", limits=Limits(model_timeout=10))
    assert result.phase is Phase.DONE, result.failure
    assert result.output == "The capital is Paris."
    tool_messages = [m for m in result.snapshot.conversation.messages if isinstance(m, ToolMessage)]
    assert [(m.tool_call_id, m.content, m.is_error) for m in tool_messages] == [("call_1", "Paris", False)]
    assert result.usage.requests == 2 and result.usage.input_tokens == 6
    sent = [json.loads(r.content) for r in script.requests]
    assert sent[1]["messages"][0] == {"role": "system", "content": "Answer with the tools."}
    assert sent[1]["messages"][2]["content"] == ""  # the assistant tool-call turn


async def test_model_failure_ends_the_run_in_failed() -> None:
    script = Script(httpx.Response(400, json={"error": {"message": "bad"}}))
    agent = Agent("geo", model=script.model(), tools=[capital])
    result = await run(agent, "hi")
    assert result.phase is Phase.FAILED and result.failure is not None
    assert result.failure.kind == "model_error" and result.failure.detail == "http"


# -- the provider's own status, and bodies cut short (issue 13, items 9 and 10) ------------------
# A Groq mid-stream error event, in the shape Groq sends it (an `error` object beside
# `"status_code": 400`); SYNTHETIC like the other answers of this file, the message abridged.
GROQ_STREAM_ERROR = json.dumps(
    {
        "error": {
            "message": "Failed to call a function. Please adjust your prompt. See 'failed_generation' for more details.",
            "type": "invalid_request_error",
            "code": "tool_use_failed",
            "failed_generation": '<function=get_weather{"city": "Paris"}</function>',
        },
        "status_code": 400,
    }
)


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (GROQ_STREAM_ERROR, 400),
        (json.dumps({"error": {"message": "bad", "status": "422"}}), 422),
        (json.dumps({"error": {"message": "bad", "code": 429}}), 429),
        (json.dumps({"error": {"message": "no status given", "code": "server_error"}}), 502),
    ],
    ids=["groq-status_code-400", "error.status-422", "error.code-429", "no-status-502"],
)
async def test_a_stream_error_event_keeps_the_providers_status(event: str, status: int) -> None:
    """The status of a mid-stream `error` event is the provider's (`status_code`, `status`, a
    numeric `code`); 502 only when it gives none. A 400 is not retried (before: 502, retried)."""
    script = Script(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(CHUNK, event)))
    with pytest.raises(ModelHTTPError) as info:
        await script.model().stream_complete(REQUEST)
    assert info.value.status == status
    assert is_retryable(info.value) is (status != 400 and status != 422)


class CuttingServer:
    """A raw HTTP server on 127.0.0.1 whose first `cuts` answers announce a 2,000-byte body,
    send 20 bytes of it and then close the connection — with a FIN (`how="fin"`: a normal close)
    or an RST (`how="rst"`: SO_LINGER 0) — and whose later answers are a complete completion."""

    def __init__(self, how: str, cuts: int) -> None:
        import socket
        import threading

        self.how, self.cuts, self.requests = how, cuts, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self) -> CuttingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()

    def serve(self) -> None:
        import socket
        import struct

        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                length = int(next((h.split(b":")[1] for h in lines if h.lower().startswith(b"content-length")), b"0"))
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                if self.requests <= self.cuts:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2000\r\n\r\n")
                    conn.sendall(b'{"id": "x", "choices": ')
                    if self.how == "rst":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    else:
                        conn.shutdown(socket.SHUT_WR)
                    continue
                payload = json.dumps(completion("fine")).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    + f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_a_body_cut_by_fin_or_rst_is_a_connection_error_and_retried(how: str) -> None:
    """A body cut short is a transport failure however the connection ended: retried, and
    `ModelConnectionError` once the attempts are spent (before: FIN → `MalformedResponse`, not
    retried; RST → retried)."""
    with CuttingServer(how, cuts=1) as server:
        model = OpenAIChat("m", base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY, timeout=5)
        assert (await model.complete(REQUEST)).message.content == "fine"
        await model.aclose()
    assert server.requests == 2
    with CuttingServer(how, cuts=99) as server:
        model = OpenAIChat("m", base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY, timeout=5)
        with pytest.raises(ModelConnectionError, match=r"broke mid-answer|cannot reach"):
            await model.complete(REQUEST)
        await model.aclose()
    assert server.requests == 3
