"""The `Model` protocol, its response type and the typed model errors."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fsm_agents.errors import FsmAgentsError
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


class ModelError(FsmAgentsError):
    """A model call failed. `kind` is the short name the runtime records in `ModelFailed`."""

    kind = "error"


class ModelHTTPError(ModelError):
    """The provider answered with an HTTP error status. `status` and `body` (text) are kept."""

    kind = "http"

    def __init__(self, status: int, body: str, message: str | None = None) -> None:
        self.status, self.body = status, body
        super().__init__(message or f"HTTP {status}: {body[:500]}")


class RateLimited(ModelHTTPError):
    """HTTP 429. `retry_after` is the server's `Retry-After` in seconds, when it sent one."""

    kind = "rate_limited"

    def __init__(self, status: int, body: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        hint = f"; retry after {retry_after} s" if retry_after is not None else ""
        super().__init__(status, body, f"rate limited (HTTP {status}){hint}: {body[:300]}")


class ModelTimeout(ModelError):
    """The request (or the whole call) took longer than its timeout."""

    kind = "timeout"


class MalformedResponse(ModelError):
    """The provider's answer could not be understood (invalid JSON, missing fields, a broken
    stream). `body` keeps the raw text for the log."""

    kind = "malformed"

    def __init__(self, message: str, body: str = "") -> None:
        self.body = body
        super().__init__(message)


class ScriptExhausted(ModelError):
    """A `ScriptedModel` was asked for more replies than it was given."""

    kind = "exhausted"
