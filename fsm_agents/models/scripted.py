"""Models for tests and docs: `ScriptedModel` (fixed replies) and `FunctionModel` (a function)."""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fsm_agents.errors import InvalidDefinition
from fsm_agents.models.base import MalformedResponse, ModelResponse, ScriptExhausted
from fsm_agents.state import AssistantMessage, ModelRequest, ToolCall, Usage, _made, fields_set

__all__ = ["FunctionModel", "ScriptedModel", "call", "reply"]

Reply = ModelResponse | AssistantMessage | str | BaseException


def call(name: str, id: str | None = None, /, **arguments: Any) -> ToolCall:
    """A `ToolCall` to `name` with `arguments` encoded as JSON; `id` defaults to `call_<name>`."""
    return ToolCall(id=id or f"call_{name}", name=name, arguments=json.dumps(arguments))


def reply(content: str | None = None, *calls: ToolCall) -> AssistantMessage:
    """An assistant message with optional text and tool calls."""
    return AssistantMessage(content=content, tool_calls=calls)


def _as_response(item: Reply) -> ModelResponse:
    if isinstance(item, BaseException):
        raise item
    if isinstance(item, ModelResponse):
        return item
    if isinstance(item, str):
        item = AssistantMessage(content=item)
    elif not isinstance(item, AssistantMessage):
        raise MalformedResponse(
            f"a reply must be a str, an AssistantMessage or a ModelResponse, not {type(item).__name__}",
            body=repr(item)[:500],
        )
    return _made(ModelResponse, {"message": item, "usage": _NO_USAGE, "model": "scripted", "finish_reason": None}, _FIELDS)


_NO_USAGE = Usage()
_FIELDS = fields_set(ModelResponse)


class ScriptedModel:
    """Replies from a fixed script, in order, whatever the request.

    Items: a `ModelResponse`, an `AssistantMessage` (see `reply`/`call`), a string (a text
    answer), or an exception instance (raised, as a failing provider would). When the script is
    used up, `complete` raises `ScriptExhausted`. `requests` records every request received.
    Safe to share between concurrent runs (each call takes the next item). Raises
    `InvalidDefinition` for an item of another type.
    """

    def __init__(self, replies: Iterable[Reply]) -> None:
        self._responses: list[ModelResponse | BaseException] = []
        for i, r in enumerate(replies):
            try:
                self._responses.append(r if isinstance(r, BaseException) else _as_response(r))
            except MalformedResponse as exc:
                raise InvalidDefinition(f"ScriptedModel: reply {i}: {exc}") from None
        self._next = 0
        self._lock = threading.Lock()
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        with self._lock:
            i = self._next
            self._next += 1
        self.requests.append(request)
        if i >= len(self._responses):
            raise ScriptExhausted(f"scripted model has only {len(self._responses)} replies; call {i + 1} asked for more")
        return _as_response(self._responses[i])

    @property
    def remaining(self) -> int:
        return max(0, len(self._responses) - self._next)


class FunctionModel:
    """Replies by calling `fn(request)` (sync or async) → a `ModelResponse`, an
    `AssistantMessage` or a string. An exception from `fn` propagates as a model failure, and so
    does a value of another type (`MalformedResponse`: the run ends FAILED(`model_error`))."""

    def __init__(self, fn: Callable[[ModelRequest], Reply | Awaitable[Reply]]) -> None:
        self.fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        result = self.fn(request)
        if self._is_async or inspect.isawaitable(result):
            result = await result  # type: ignore[misc]
        return _as_response(result)
