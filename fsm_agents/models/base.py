"""The `Model` protocol, its response type and the typed model errors."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fsm_agents.errors import (  # noqa: F401 - re-exported here
    FsmAgentsError,
    MalformedResponse,
    ModelError,
    ModelHTTPError,
    ModelTimeout,
    RateLimited,
    ScriptExhausted,
)
from fsm_agents.state import AssistantMessage, Frozen, ModelRequest, Usage

__all__ = [
    "MalformedResponse",
    "Model",
    "ModelError",
    "ModelHTTPError",
    "ModelResponse",
    "ModelTimeout",
    "RateLimited",
    "ScriptExhausted",
    "StreamDelta",
]


class ModelResponse(Frozen):
    """A completed model turn: the assistant message, token usage, the provider's model id and
    finish reason (`stop`, `tool_calls`, `length`, ... as the provider reports it)."""

    message: AssistantMessage
    usage: Usage = Usage()
    model: str | None = None
    finish_reason: str | None = None


class StreamDelta(Frozen):
    """One piece of a streamed reply: text, or a tool-call fragment (`index` identifies the call;
    `arguments` fragments concatenate to its JSON)."""

    text: str = ""
    tool_index: int | None = None
    tool_call_id: str | None = None
    tool_name: str | None = None
    arguments: str = ""


@runtime_checkable
class Model(Protocol):
    """What the runtime calls for a `CallModel` effect.

    `complete` returns a `ModelResponse` or raises a `ModelError`; any other exception is also
    turned into `ModelFailed` by the runtime.
    """

    async def complete(self, request: ModelRequest) -> ModelResponse: ...


