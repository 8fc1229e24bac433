"""`OpenAIChat`: the OpenAI chat-completions API and the servers that speak it.

Wire format: https://platform.openai.com/docs/api-reference/chat/create (request, response) and
https://platform.openai.com/docs/api-reference/chat-streaming (stream chunks).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

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
    ToolSpec,
    Usage,
    UserMessage,
)

__all__ = ["OpenAIChat", "Provider"]

log = logging.getLogger("fsm_agents.models.openai")

Provider = Literal["openai", "mistral", "ollama", "vllm", "llamacpp", "openrouter", "generic"]

_KEY_ENV: Mapping[str, str] = {"openai": "OPENAI_API_KEY", "mistral": "MISTRAL_API_KEY", "openrouter": "OPENROUTER_API_KEY"}
_PARALLEL_TOOL_CALLS = frozenset({"openai", "mistral", "vllm", "openrouter"})  # providers that accept `parallel_tool_calls`


def guess_provider(base_url: str) -> Provider:
    """The provider a base URL most likely belongs to (by host; Ollama also by port 11434)."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if host == "api.openai.com":
        return "openai"
    if host.endswith("mistral.ai"):
        return "mistral"
    if host.endswith("openrouter.ai"):
        return "openrouter"
    if "ollama" in host or parts.port == 11434:
        return "ollama"
    return "generic"


class OpenAIChat(HTTPModel):
    """An OpenAI-compatible chat-completions model (`POST {base_url}/chat/completions`).

    Arguments:
    - `model`: the provider's model id (`"gpt-4o-mini"`, `"mistral-large-latest"`, ...);
    - `base_url`: the API root, e.g. `https://api.openai.com/v1`, `https://api.mistral.ai/v1`,
      `http://localhost:11434/v1` (Ollama), `http://localhost:8000/v1` (vLLM),
      `http://127.0.0.1:8080/v1` (llama.cpp server);
    - `api_key`: sent as `Authorization: Bearer …`. When `None` it is read from the environment
      **only for the provider's own host**: `OPENAI_API_KEY` for api.openai.com,
      `MISTRAL_API_KEY` for *.mistral.ai, `OPENROUTER_API_KEY` for openrouter.ai (so a key is
      never sent to a local or third-party server by accident). OpenAI, Mistral and OpenRouter
      need a key (`MissingAPIKey` at the first request otherwise); local servers do not;
    - `timeout`: seconds per HTTP request; `max_retries`: extra attempts on 429/5xx/timeouts/
      connection errors (backoff with jitter, `Retry-After` honoured);
    - `headers`: extra HTTP headers; `transport`: an httpx transport (tests: `httpx.MockTransport`);
    - `provider`: one of `Provider`, to pick the dialect; guessed from `base_url` when `None`
      (`"generic"` when unknown).

    `complete(request)` → `ModelResponse`; `stream(request)` → `StreamDelta`s;
    `stream_complete(request, on_delta)` → the assembled `ModelResponse` of a stream. Errors:
    `ModelHTTPError`, `RateLimited`, `ModelTimeout`, `ModelConnectionError`,
    `MalformedResponse`, `MissingAPIKey` (all `ModelError`). Usage is reported as
    `Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens, requests=1)`.

    Translation: `request.instructions` becomes a first `system` message; an assistant message
    with tool calls is sent with `content: ""` (never `null`); a `ToolMessage` becomes
    `{"role": "tool", "tool_call_id", "content"}`; tools become
    `{"type": "function", "function": {name, description, parameters}}`; `tool_choice` is sent
    only with tools, a tool name as `{"type": "function", "function": {"name": …}}`;
    `request.parallel_tool_calls` (when set, and only with tools) is sent as the body's
    `parallel_tool_calls` to OpenAI (https://platform.openai.com/docs/api-reference/chat/create),
    Mistral (https://docs.mistral.ai/api/), vLLM and OpenRouter; not to llama.cpp, Ollama or a
    generic server, which do not document it (the agent still runs the calls in order).

    Known provider differences (handled here):
    - **OpenAI**: `max_tokens` is deprecated and rejected by reasoning models, so
      `ModelSettings.max_tokens` is sent as `max_completion_tokens`; `output_schema_json` is
      sent as `response_format: {"type": "json_schema", …}` (see below); streams carry usage
      only with `stream_options.include_usage` (sent), in a last chunk with `choices: []`.
    - **Mistral** (https://docs.mistral.ai/api/): tool-call ids are 9 characters, tool calls
      carry an `index` and no `type`; the seed is called `random_seed`; `stream_options` is not
      sent (the last chunk carries usage anyway); streamed `content` may be a list of chunks
      (`{"type": "thinking"}` chunks are dropped, `{"type": "text"}` kept);
      `response_format: json_schema` is supported.
    - **Ollama** (https://github.com/ollama/ollama/blob/main/docs/openai.md): replies may carry a
      `reasoning` field (dropped: not part of the conversation); a named `tool_choice` is
      ignored by the server; `json_schema` response formats are supported.
    - **vLLM** (https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html): tool calls
      need the server started with `--enable-auto-tool-choice --tool-call-parser …`; replies may
      carry `reasoning_content` (dropped); `json_schema` response formats are supported.
    - **llama.cpp server** (llama-cpp-python, `--chat_format chatml-function-calling`): rejects
      `content: null` on an assistant message with tool calls (HTTP 500), hence `""`;
      `tool_choice: "required"` crashes it, so it is sent as the named tool when there is exactly
      one tool and as `"auto"` otherwise; without `tool_choice` it hides the tools, so `"auto"` is
      always sent with tools; replies also carry a legacy `function_call` whose name may end in
      `:` — ignored when `tool_calls` is present, used (name stripped) otherwise; structured
      output is sent as `{"type": "json_object", "schema": …}` and only for requests without
      tools (its grammar would fight the function-calling one); streams carry no usage;
      validation errors come back as HTTP 500 (retried, then `ModelHTTPError(500)`).
    - **OpenRouter**: errors use OpenAI's shape; 429s are common on free models.
    - **generic**: plain OpenAI dialect without `response_format` (not every server has it):
      `output_schema_json` is stated in the system prompt instead.

    Structured output (`output_schema_json`, an object schema: `fsm_agents.output` wraps other
    types in `{"response": …}`) is sent as `response_format: {"type": "json_schema",
    "json_schema": {"name": <schema title>, "schema": …, "strict": …}}` (strict only when the
    schema meets strict mode's rules, `strict_ready`), https://platform.openai.com/docs/guides/structured-outputs.
    """

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        provider: Provider | None = None,
    ) -> None:
        self.provider: Provider = provider or guess_provider(base_url)
        env = _KEY_ENV.get(guess_provider(base_url))
        if api_key is None and env:
            api_key = os.environ.get(env) or None
        self._key_env = env
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            headers=headers,
            transport=transport,
        )
        self.model = model

    def __repr__(self) -> str:
        return f"OpenAIChat(model={self.model!r}, base_url={self.base_url!r}, provider={self.provider!r})"

    def _auth_headers(self) -> dict[str, str]:
        if self._api_key:
            return {"authorization": f"Bearer {self._api_key}"}
        if self.provider in ("openai", "mistral", "openrouter"):
            raise MissingAPIKey(
                f"OpenAIChat({self.model!r}) at {self.base_url} needs an API key: pass api_key=... or set "
                f"{self._key_env or 'OPENAI_API_KEY'}"
            )
        return {}

    # -- request translation ---------------------------------------------------------------------
    def _tool_choice(self, request: ModelRequest) -> Any:
        choice = request.tool_choice
        names = [t.name for t in request.tools]
        if choice in ("auto", "none"):
            return choice
        if choice == "required":
            if self.provider == "llamacpp":
                if len(names) == 1:
                    return {"type": "function", "function": {"name": names[0]}}
                log.debug("llama.cpp does not support tool_choice='required' with several tools; sending 'auto'")
                return "auto"
            return "required"
        return {"type": "function", "function": {"name": choice}}

    def payload(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body for `request` (public for tests and debugging; contains no secret)."""
        body: dict[str, Any] = {"model": self.model, "messages": to_wire_messages(request)}
        if request.tools:
            body["tools"] = [tool_to_wire(t) for t in request.tools]
            body["tool_choice"] = self._tool_choice(request)
            if request.parallel_tool_calls is not None and self.provider in _PARALLEL_TOOL_CALLS:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        s = request.settings
        if s.temperature is not None:
            body["temperature"] = s.temperature
        if s.top_p is not None:
            body["top_p"] = s.top_p
        if s.max_tokens is not None:
            body["max_completion_tokens" if self.provider == "openai" else "max_tokens"] = s.max_tokens
        if s.seed is not None:
            body["random_seed" if self.provider == "mistral" else "seed"] = s.seed
        if request.output_schema_json is not None:
            schema = json.loads(request.output_schema_json)
            if self.provider in ("openai", "mistral", "ollama", "vllm", "openrouter"):
                body["response_format"] = response_format(schema)
            elif self.provider == "llamacpp":
                if not request.tools or request.tool_choice == "none":
                    body["response_format"] = {"type": "json_object", "schema": schema}
            else:  # a server that may not know response_format: the schema goes in the prompt
                body["messages"] = with_instructions(body["messages"], prompt_instructions(request.output_schema_json))
        if stream:
            body["stream"] = True
            if self.provider != "mistral":
                body["stream_options"] = {"include_usage": True}
        return body

    # -- calls -----------------------------------------------------------------------------------
    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One chat completion. Raises the `ModelError`s listed in the class docstring."""
        data = await self.post_json("/chat/completions", self.payload(request))
        return parse_completion(data)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta]:
        """The reply as it is generated: text deltas and tool-call fragments (`tool_index`
        identifies the call; its `arguments` fragments concatenate to the JSON text)."""
        async for delta in self._stream(request, _Assembler()):
            yield delta

    async def stream_complete(
        self,
        request: ModelRequest,
        on_delta: Callable[[StreamDelta], Awaitable[None] | None] | None = None,
    ) -> ModelResponse:
        """Stream the reply, call `on_delta` (sync or async) for each delta, and return the
        assembled `ModelResponse` (tool-call arguments joined per index, usage when sent).
        Raises `MalformedResponse` when the stream ends before a `[DONE]` or a finish reason."""
        assembler = _Assembler()
        return await collect_stream(self._stream(request, assembler), assembler.response, on_delta)

    async def _stream(self, request: ModelRequest, assembler: _Assembler) -> AsyncIterator[StreamDelta]:
        async with self.post_sse("/chat/completions", self.payload(request, stream=True)) as events:
            async for sse in events:
                if sse.data.strip() == "[DONE]":
                    assembler.done = True
                    break
                if not sse.data:
                    continue
                for delta in assembler.feed(loads_event(sse, "OpenAIChat")):
                    yield delta
        assembler.check_complete()


# -- wire format helpers (pure) -------------------------------------------------------------------
def to_wire_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Our messages as chat-completions messages, instructions first as a system message."""
    out: list[dict[str, Any]] = []
    if request.instructions:
        out.append({"role": "system", "content": request.instructions})
    for m in request.messages:
        if isinstance(m, (SystemMessage, UserMessage)):
            out.append({"role": m.role, "content": m.content})
        elif isinstance(m, AssistantMessage):
            wire: dict[str, Any] = {"role": "assistant", "content": m.content or ""}
            if m.tool_calls:
                wire["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in m.tool_calls
                ]
            out.append(wire)
        elif isinstance(m, ToolMessage):
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
    return out


_NAME = re.compile(r"[^A-Za-z0-9_-]")


def strict_ready(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts `schema` as it is: every object lists all its
    properties as required and sets `additionalProperties: false`
    (https://platform.openai.com/docs/guides/structured-outputs#supported-schemas). Pydantic
    writes that for a model with `extra="forbid"` and no defaults."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            props = schema.get("properties") or {}
            if schema.get("additionalProperties") is not False or set(schema.get("required") or ()) != set(props):
                return False
        return all(strict_ready(v) for k, v in schema.items() if k not in ("enum", "const", "default", "examples"))
    if isinstance(schema, list):
        return all(strict_ready(v) for v in schema)
    return True


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions `response_format` for a JSON schema (an object at the root:
    `fsm_agents.output` wraps other types): `{"type": "json_schema", "json_schema": {name,
    schema, strict}}`, named after the schema's title (`^[A-Za-z0-9_-]{1,64}$`), strict when
    the schema already meets strict mode's rules (`strict_ready`).
    https://platform.openai.com/docs/api-reference/chat/create#chat-create-response_format"""
    name = _NAME.sub("_", str(schema.get("title") or "output"))[:64] or "output"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict_ready(schema)}}


def with_instructions(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """`messages` with `text` appended to the leading system message (or one added first)."""
    if messages and messages[0].get("role") == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def tool_to_wire(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": spec.parameters},
    }


def _clean_name(name: Any) -> str:
    # llama.cpp's legacy function_call names end with ':' (its grammar's separator); tool names
    # cannot contain ':' (OpenAI: ^[a-zA-Z0-9_-]+$), so stripping it is always safe
    return str(name).strip().rstrip(":").strip()


def _arguments(value: Any) -> str:
    if value is None or value == "":
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value)  # some servers send an object instead of JSON text


def _text(content: Any) -> str:
    """Message content as text: a string, or (Mistral) a list of chunks of which only the
    `text` ones count (`thinking` chunks are dropped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage(requests=1)
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        requests=1,
    )


def _status_in(value: Any) -> int | None:
    """An HTTP error status (400-599) given as an int or a string of digits, else `None`."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    return None


def _error_object(data: dict[str, Any]) -> ModelHTTPError:
    """An `{"error": …}` object sent with HTTP 200 (OpenRouter) or as a stream event (Groq sends
    `{"error": {...}, "status_code": 400}` mid-stream) → the HTTP error it stands for. The status
    is the provider's own when it gives one — `status_code` or `status` beside or inside
    `error`, or a numeric `error.code` — and 502 (a bad gateway answer, retried) only when it
    gives none: a 400 must not be retried as if it were a server fault."""
    error = data.get("error")
    inner = error if isinstance(error, dict) else {}
    for value in (
        data.get("status_code"),
        data.get("status"),
        inner.get("status_code"),
        inner.get("status"),
        inner.get("code"),
    ):
        status = _status_in(value)
        if status is not None:
            return ModelHTTPError(status, json.dumps(data)[:4000])
    return ModelHTTPError(502, json.dumps(data)[:4000])


def parse_completion(data: Any) -> ModelResponse:
    """A chat-completion JSON object → `ModelResponse`. Raises `MalformedResponse` when
    `choices[0].message` is missing, `ModelHTTPError` for an `{"error": …}` body."""
    if not isinstance(data, dict):
        raise MalformedResponse("chat completion: the answer is not a JSON object", str(data)[:2000])
    choices = data.get("choices")
    if not choices:
        if "error" in data:
            raise _error_object(data)
        raise MalformedResponse("chat completion: no choices in the answer", json.dumps(data)[:2000])
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise MalformedResponse("chat completion: choices[0].message is missing", json.dumps(data)[:2000])
    calls: list[ToolCall] = []
    try:
        for i, tc in enumerate(message.get("tool_calls") or ()):
            fn = tc["function"]
            calls.append(
                ToolCall(
                    id=str(tc.get("id") or f"call_{i}"),
                    name=_clean_name(fn["name"]),
                    arguments=_arguments(fn.get("arguments")),
                )
            )
        legacy = message.get("function_call")
        if not calls and isinstance(legacy, dict) and legacy.get("name"):
            calls.append(
                ToolCall(id="call_0", name=_clean_name(legacy["name"]), arguments=_arguments(legacy.get("arguments")))
            )
    except (KeyError, TypeError, AttributeError) as exc:
        raise MalformedResponse(f"chat completion: a tool call lacks {exc}", json.dumps(message)[:2000]) from None
    text = _text(message.get("content"))
    return ModelResponse(
        message=AssistantMessage(content=text or None, tool_calls=tuple(calls)),
        usage=_usage(data.get("usage")),
        model=data.get("model"),
        finish_reason=choice.get("finish_reason"),
    )


class _PartialCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class _Assembler:
    """Folds chat-completion chunks into deltas and, at the end, one `ModelResponse`."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, _PartialCall] = {}
        self.legacy: _PartialCall | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, chunk: Any) -> list[StreamDelta]:
        if not isinstance(chunk, dict):
            raise MalformedResponse("chat completion stream: a chunk is not a JSON object", str(chunk)[:2000])
        if "error" in chunk and not chunk.get("choices"):
            raise _error_object(chunk)
        if chunk.get("model"):
            self.model = chunk["model"]
        if chunk.get("usage"):
            self.usage = _usage(chunk["usage"])
        out: list[StreamDelta] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            text = _text(delta.get("content"))
            if text:
                self.text.append(text)
                out.append(StreamDelta(text=text))
            tool_calls = delta.get("tool_calls")
            if tool_calls:
                for position, tc in enumerate(tool_calls):
                    out.append(self._tool_fragment(tc, position))
            elif isinstance(delta.get("function_call"), dict) and not self.calls:
                fc = delta["function_call"]
                self.legacy = self.legacy or _PartialCall()
                if fc.get("name") and not self.legacy.name:
                    self.legacy.name = _clean_name(fc["name"])
                if fc.get("arguments"):
                    self.legacy.arguments.append(str(fc["arguments"]))
        return out

    def _tool_fragment(self, tc: Any, position: int) -> StreamDelta:
        if not isinstance(tc, dict):
            raise MalformedResponse("chat completion stream: a tool-call delta is not an object", str(tc)[:2000])
        index = tc.get("index", position)
        call = self.calls.setdefault(index, _PartialCall())
        fn = tc.get("function") or {}
        new_id = tc.get("id") or None
        if new_id and not call.id:
            call.id = str(new_id)
        name = fn.get("name")
        new_name = None
        # OpenAI sends the name once; llama.cpp repeats it in every chunk: keep the first
        if name and not call.name:
            call.name = new_name = _clean_name(name)
        args = fn.get("arguments") or ""
        if not isinstance(args, str):
            args = json.dumps(args)
        if args:
            call.arguments.append(args)
        return StreamDelta(tool_index=index, tool_call_id=new_id, tool_name=new_name, arguments=args)

    def check_complete(self) -> None:
        if not self.done and self.finish_reason is None:
            raise MalformedResponse("chat completion stream: it ended before [DONE] or a finish reason (truncated)")

    def response(self) -> ModelResponse:
        self.check_complete()
        calls = [
            ToolCall(id=c.id or f"call_{i}", name=c.name, arguments="".join(c.arguments) or "{}")
            for i, c in sorted(self.calls.items())
        ]
        if not calls and self.legacy is not None and self.legacy.name:
            calls.append(ToolCall(id="call_0", name=self.legacy.name, arguments="".join(self.legacy.arguments) or "{}"))
        for c in calls:
            if not c.name:
                raise MalformedResponse(f"chat completion stream: tool call {c.id} has no name")
        text = "".join(self.text)
        return ModelResponse(
            message=AssistantMessage(content=text or None, tool_calls=tuple(calls)),
            usage=self.usage or Usage(requests=1),
            model=self.model,
            finish_reason=self.finish_reason,
        )
