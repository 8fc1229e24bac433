"""The exception hierarchy: everything raised on purpose derives from `FsmAgentsError`."""

from __future__ import annotations

from collections.abc import Sequence

from statemachine.exceptions import InvalidDefinition as _SMInvalidDefinition

__all__ = [
    "CassetteDivergence",
    "CodeFailed",
    "CodeRejected",
    "ConcurrencyConflict",
    "DefinitionError",
    "EventLoopRunning",
    "FsmAgentsError",
    "InvalidDecision",
    "InvalidDefinition",
    "InvalidInput",
    "InvalidTransition",
    "MachineStalled",
    "NotAMachine",
    "NotSuspended",
    "SandboxUnavailable",
    "ToolDefinitionError",
    "UncertainEffect",
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


class CassetteDivergence(FsmAgentsError):
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
