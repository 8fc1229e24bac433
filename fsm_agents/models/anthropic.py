"""`AnthropicMessages`: the Anthropic Messages API.

Wire format: https://docs.anthropic.com/en/api/messages (request, response, `tool_use` /
`tool_result` blocks) and https://docs.anthropic.com/en/docs/build-with-claude/streaming (events).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx

from fsm_agents.models._http import HTTPModel, MissingAPIKey, collect_stream, loads_event
from fsm_agents.models.base import MalformedResponse, ModelHTTPError, ModelResponse, StreamDelta
from fsm_agents.output import prompt_instructions
from fsm_agents.state import (
    AssistantMessage,
    ModelRequest,
    SystemMessage,
    ToolCall,
    ToolMessage,
    Usage,
    UserMessage,
)

__all__ = ["AnthropicMessages"]

log = logging.getLogger("fsm_agents.models.anthropic")

API_VERSION = "2023-06-01"

# Anthropic error types → the HTTP status they come with (for errors sent inside a stream)
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicMessages(HTTPModel):
    """An Anthropic model through the Messages API (`POST {base_url}/v1/messages`).

    Arguments: `model` (e.g. `"claude-sonnet-4-5"`); `api_key` (sent as `x-api-key`; default
    from `ANTHROPIC_API_KEY`, `MissingAPIKey` at the first request when neither is set);
    `base_url`; `max_tokens` (the API requires one; `ModelSettings.max_tokens` overrides it);
    `timeout` (seconds per HTTP request); `max_retries` (extra attempts on 429/5xx/529/timeouts/
    connection errors); `headers`; `transport` (tests: `httpx.MockTransport`).

    Translation: `instructions` and the leading `SystemMessage`s become the top-level `system`;
    later system messages become user text. Assistant tool calls become `tool_use` blocks
    (`input` = the decoded arguments, `{}` when they are not a JSON object); `ToolMessage`s
    become `tool_result` blocks (`is_error` kept) in a user message — consecutive tool results
    (and a user message right after them) merge into one user turn, as the API requires
    alternating roles. `tool_choice`: `auto` → `{"type": "auto"}`, `required` → `{"type": "any"}`,
    `none` → `{"type": "none"}`, a name → `{"type": "tool", "name": …}`; a set
    `parallel_tool_calls` adds `disable_parallel_tool_use: not parallel_tool_calls` to it (except
    to `none`; https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use,
    "Parallel tool use"). `seed` is not sent; `output_schema_json` (no such parameter in the
    stable API) is stated in `system` (`fsm_agents.output.prompt_instructions`) and the agent
    validates the answer; for a tool the model must call, use the agent's `output_mode="tool"`.
    Usage: `input_tokens` (+ cache read/creation tokens) and
    `output_tokens`, `requests=1`. Text blocks are joined; `thinking` blocks are dropped.

    `complete`, `stream` (→ `StreamDelta`s, from `text_delta` and `input_json_delta` events) and
    `stream_complete(request, on_delta)` (→ the assembled `ModelResponse`). Errors: as
    `OpenAIChat`; an `error` event inside a stream becomes `ModelHTTPError` with the status of
    its type (`overloaded_error` → 529).
    """

    def __init__(
        self,
        model: str,
        api_key: str | None = None,
        *,
        base_url: str = "https://api.anthropic.com",
        max_tokens: int = 1024,
        timeout: float = 60.0,
        max_retries: int = 3,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if api_key is None:
            api_key = os.environ.get("ANTHROPIC_API_KEY") or None
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            headers=headers,
            transport=transport,
        )
        self.model = model
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"AnthropicMessages(model={self.model!r}, base_url={self.base_url!r})"

    def _auth_headers(self) -> dict[str, str]:
        if not self._api_key:
            raise MissingAPIKey(
                f"AnthropicMessages({self.model!r}) needs an API key: pass api_key=... or set ANTHROPIC_API_KEY"
            )
        return {"x-api-key": self._api_key, "anthropic-version": API_VERSION}

    def payload(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body for `request` (public for tests and debugging; contains no secret)."""
        system, messages = to_wire_messages(request)
        if request.output_schema_json is not None:  # no structured-output parameter: ask in the prompt
            system = f"{system}\n\n{prompt_instructions(request.output_schema_json)}".strip()
        s = request.settings
        body: dict[str, Any] = {"model": self.model, "max_tokens": s.max_tokens or self.max_tokens}
        if system:
            body["system"] = system
        body["messages"] = messages
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools
            ]
            choice = request.tool_choice
            body["tool_choice"] = (
                {"type": "any"}
                if choice == "required"
                else {"type": choice}
                if choice in ("auto", "none")
                else {"type": "tool", "name": choice}
            )
            if request.parallel_tool_calls is not None and choice != "none":
                body["tool_choice"]["disable_parallel_tool_use"] = not request.parallel_tool_calls
        if s.temperature is not None:
            body["temperature"] = s.temperature
        if s.top_p is not None:
            body["top_p"] = s.top_p
        if stream:
            body["stream"] = True
        return body

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One Messages API call. Raises the `ModelError`s listed in the class docstring."""
        data = await self.post_json("/v1/messages", self.payload(request))
        return parse_message(data)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta]:
        """The reply as it is generated: text deltas and tool-call fragments (`tool_index` is the
        content block index)."""
        async for delta in self._stream(request, _Assembler()):
            yield delta

    async def stream_complete(
        self,
        request: ModelRequest,
        on_delta: Callable[[StreamDelta], Awaitable[None] | None] | None = None,
    ) -> ModelResponse:
        """Stream the reply, call `on_delta` for each delta, return the assembled response.
        Raises `MalformedResponse` when the stream ends before `message_stop`."""
        assembler = _Assembler()
        return await collect_stream(self._stream(request, assembler), assembler.response, on_delta)

    async def _stream(self, request: ModelRequest, assembler: _Assembler) -> AsyncIterator[StreamDelta]:
        async with self.post_sse("/v1/messages", self.payload(request, stream=True)) as events:
            async for sse in events:
                if not sse.data or sse.event == "ping":
                    continue
                for delta in assembler.feed(loads_event(sse, "AnthropicMessages")):
                    yield delta
                if assembler.done:
                    break
        assembler.check_complete()


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def to_wire_messages(request: ModelRequest) -> tuple[str, list[dict[str, Any]]]:
    """(`system`, `messages`) for the Messages API: roles alternate, tool results are
    `tool_result` blocks in user turns."""
    system: list[str] = [request.instructions] if request.instructions else []
    out: list[dict[str, Any]] = []
    leading = True

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for m in request.messages:
        if isinstance(m, SystemMessage):
            if leading:
                system.append(m.content)
            else:
                add("user", [{"type": "text", "text": m.content}])
            continue
        leading = False
        if isinstance(m, UserMessage):
            add("user", [{"type": "text", "text": m.content}])
        elif isinstance(m, AssistantMessage):
            blocks: list[dict[str, Any]] = []
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            blocks.extend(
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _tool_input(c.arguments)} for c in m.tool_calls
            )
            if blocks:  # the API rejects empty assistant turns
                add("assistant", blocks)
        elif isinstance(m, ToolMessage):
            add(
                "user",
                [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content, "is_error": m.is_error}],
            )
    return "\n\n".join(system), out


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage(requests=1)
    inputs = sum(int(data.get(k) or 0) for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))
    return Usage(input_tokens=inputs, output_tokens=int(data.get("output_tokens") or 0), requests=1)


def _error(data: dict[str, Any]) -> ModelHTTPError:
    error = data.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    return ModelHTTPError(_ERROR_STATUS.get(str(kind), 502), json.dumps(data)[:4000])


def parse_message(data: Any) -> ModelResponse:
    """A Messages API response → `ModelResponse`. Raises `MalformedResponse` when `content`
    is missing or a `tool_use` block lacks its id/name."""
    if not isinstance(data, dict):
        raise MalformedResponse("messages: the answer is not a JSON object", str(data)[:2000])
    if data.get("type") == "error":
        raise _error(data)
    content = data.get("content")
    if not isinstance(content, list):
        raise MalformedResponse("messages: the answer has no content list", json.dumps(data)[:2000])
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            try:
                calls.append(
                    ToolCall(id=str(block["id"]), name=str(block["name"]), arguments=json.dumps(block.get("input") or {}))
                )
            except KeyError as exc:
                raise MalformedResponse(f"messages: a tool_use block lacks {exc}", json.dumps(block)) from None
    text = "".join(texts)
    return ModelResponse(
        message=AssistantMessage(content=text or None, tool_calls=tuple(calls)),
        usage=_usage(data.get("usage")),
        model=data.get("model"),
        finish_reason=data.get("stop_reason"),
    )


class _Block:
    __slots__ = ("id", "kind", "name", "parts")

    def __init__(self, kind: str, id: str = "", name: str = "") -> None:
        self.kind, self.id, self.name = kind, id, name
        self.parts: list[str] = []


class _Assembler:
    """Folds Messages stream events into deltas and, at the end, one `ModelResponse`."""

    def __init__(self) -> None:
        self.blocks: dict[int, _Block] = {}
        self.input_usage: dict[str, Any] = {}
        self.output_tokens = 0
        self.model: str | None = None
        self.stop_reason: str | None = None
        self.done = False

    def feed(self, event: Any) -> list[StreamDelta]:
        if not isinstance(event, dict):
            raise MalformedResponse("messages stream: an event is not a JSON object", str(event)[:2000])
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.model = message.get("model")
            self.input_usage = dict(message.get("usage") or {})
            self.output_tokens = int(self.input_usage.get("output_tokens") or 0)
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            index = int(event.get("index", len(self.blocks)))
            b = self.blocks[index] = _Block(str(block.get("type")), str(block.get("id") or ""), str(block.get("name") or ""))
            if b.kind == "text" and block.get("text"):
                b.parts.append(str(block["text"]))
                return [StreamDelta(text=str(block["text"]))]
            if b.kind == "tool_use":
                return [StreamDelta(tool_index=index, tool_call_id=b.id, tool_name=b.name)]
        elif kind == "content_block_delta":
            index = int(event.get("index", 0))
            delta = event.get("delta") or {}
            b = self.blocks.setdefault(index, _Block("text"))
            if delta.get("type") == "text_delta":
                text = str(delta.get("text") or "")
                b.parts.append(text)
                return [StreamDelta(text=text)] if text else []
            if delta.get("type") == "input_json_delta":
                part = str(delta.get("partial_json") or "")
                b.parts.append(part)
                return [StreamDelta(tool_index=index, arguments=part)] if part else []
        elif kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
            usage = event.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self.output_tokens = int(usage["output_tokens"])
            for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
                if usage.get(key) is not None:
                    self.input_usage[key] = usage[key]
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise _error(event)
        return []

    def check_complete(self) -> None:
        if not self.done:
            raise MalformedResponse("messages stream: it ended before message_stop (truncated)")

    def response(self) -> ModelResponse:
        self.check_complete()
        texts: list[str] = []
        calls: list[ToolCall] = []
        for _, b in sorted(self.blocks.items()):
            if b.kind == "text":
                texts.append("".join(b.parts))
            elif b.kind == "tool_use":
                if not b.id or not b.name:
                    raise MalformedResponse("messages stream: a tool_use block has no id or name")
                calls.append(ToolCall(id=b.id, name=b.name, arguments="".join(b.parts).strip() or "{}"))
        usage = _usage({**self.input_usage, "output_tokens": self.output_tokens})
        text = "".join(texts)
        return ModelResponse(
            message=AssistantMessage(content=text or None, tool_calls=tuple(calls)),
            usage=usage,
            model=self.model,
            finish_reason=self.stop_reason,
        )
