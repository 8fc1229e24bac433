"""Events (what happened) and effects (what to do next): plain frozen data.

A machine's `step(snapshot, event)` consumes one `Event` and returns a `Step`: the next
snapshot plus the `Effect`s the runtime must perform. Each event class names the chart event it
triggers in `Event.name`. Each effect carries a deterministic idempotency key
`"<run id>/<step>/<index>"` so a store can tell an effect that started from one that finished.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import Field, SerializerFunctionWrapHandler, field_serializer, model_serializer

from fsm_agents.log import PersistentLog
from fsm_agents.state import (
    AssistantMessage,
    Conversation,
    Failure,
    Frozen,
    ModelRequest,
    Phase,
    Snapshot,
    ToolCall,
    ToolResult,
    Usage,
)

__all__ = [
    "AgentOutcome",
    "AgentTask",
    "AgentsFinished",
    "Answer",
    "Approved",
    "AwaitInput",
    "CallModel",
    "CheckOutput",
    "Decision",
    "Denied",
    "Effect",
    "EffectUncertain",
    "Event",
    "GuardrailTripped",
    "HandedOff",
    "InputReceived",
    "InputRequest",
    "LimitExceeded",
    "ModelFailed",
    "ModelReplied",
    "Observed",
    "OutputChecked",
    "RunAgents",
    "RunTools",
    "Step",
    "Taken",
    "ToolsFinished",
    "effect_key",
]


class Event(Frozen):
    """Base of all events. `name` is the chart event this class triggers."""

    name: ClassVar[str] = ""


class ModelReplied(Event):
    """The model answered: its message and the tokens it used."""

    name: ClassVar[str] = "model_replied"
    message: AssistantMessage
    usage: Usage = Usage()


class ModelFailed(Event):
    """The model call failed after the client's retries. `kind`: `timeout`, `http`, `rate_limited`,
    `malformed`, `exhausted` (a scripted model ran out), `instructions` (the agent's dynamic
    instructions function raised or returned a non-str: the model was not called), or `error`."""

    name: ClassVar[str] = "model_failed"
    error: str
    kind: str = "error"


class ToolsFinished(Event):
    """Every tool call of a `RunTools` effect has a result (in call order)."""

    name: ClassVar[str] = "tools_finished"
    results: tuple[ToolResult, ...]


class EffectUncertain(Event):
    """Raised by `resume` when an effect was started but its event never reached the log (the
    process died while performing it) and the effect is not safe to perform again (a tool not
    marked `idempotent=True`). `effect_key` is the effect's idempotency key; `detail` names the
    tool(s). Machines that accept it go to FAILED(`uncertain_effect`)."""

    name: ClassVar[str] = "effect_uncertain"
    effect_key: str
    detail: str = ""


LimitName = Literal["input_tokens", "output_tokens", "total_tokens", "requests", "wall_time"]


class LimitExceeded(Event):
    """A limit of the run's `Limits` was exceeded (the runtime feeds it before the next effect, or
    instead of an effect the wall-time deadline cut): `limit` names it, `used` is what the run tree
    used (tokens, requests, or seconds for `wall_time`) and `maximum` the limit. Every machine
    goes to FAILED(`usage_limit`) on it. See docs/architecture.md, Limits."""

    name: ClassVar[str] = "limit_exceeded"
    limit: LimitName
    used: float
    maximum: float


class GuardrailTripped(Event):
    """A guardrail tripped (or raised, or returned something else than a `GuardrailResult`):
    `guardrail` is its name, `stage` `"input"` (checked with the first model call, which it
    cancelled) or `"output"` (checked the final answer), `reason` what it said. The agent goes to
    FAILED(`guardrail`). See docs/architecture.md, Guardrails."""

    name: ClassVar[str] = "guardrail_tripped"
    guardrail: str
    stage: Literal["input", "output"]
    reason: str = ""


class OutputChecked(Event):
    """Every output guardrail of a `CheckOutput` effect passed: the final answer stands."""

    name: ClassVar[str] = "output_checked"


class Observed(Event):
    """Internal: raised by `step` itself after OBSERVING folded its results."""

    name: ClassVar[str] = "observed"


class HandedOff(Event):
    """Internal: raised by `step` itself after HANDOFF moved control."""

    name: ClassVar[str] = "handed_off"


class AgentOutcome(Frozen):
    """How one child machine ended: its final phase, output and failure.

    `conversation` is the child's final conversation (`None` when not reported, e.g. in
    generated test events). A child's conversation starts with the messages of its task input,
    so a parent that sent `n` messages folds the child's new messages as
    `conversation.messages[n:]` (structural sharing: reporting it copies nothing).
    """

    task_id: str
    machine: str
    phase: Phase
    output: Any = None
    failure: Failure | None = None
    usage: Usage = Usage()
    conversation: Conversation | None = None


class AgentsFinished(Event):
    """Every child of a `RunAgents` effect ended (outcomes in task order)."""

    name: ClassVar[str] = "agents_finished"
    outcomes: tuple[AgentOutcome, ...]


class Approved(Frozen):
    """A human's decision: run the awaited tool call as the model asked."""

    kind: Literal["approved"] = "approved"


class Denied(Frozen):
    """A human's decision: do not run the awaited tool call; `reason` is fed back to the model as
    the call's error result."""

    kind: Literal["denied"] = "denied"
    reason: str = ""

    def __init__(self, reason: str | None = None, /, **data: Any) -> None:
        if reason is not None:
            data["reason"] = reason
        super().__init__(**data)


class Answer(Frozen):
    """A human's answer to a question a tool call asked (`ask_user`): `text` is the call's result."""

    kind: Literal["answer"] = "answer"
    text: str

    def __init__(self, text: str | None = None, /, **data: Any) -> None:
        if text is not None:
            data["text"] = text
        super().__init__(**data)


Decision = Annotated[Approved | Denied | Answer, Field(discriminator="kind")]


class InputReceived(Event):
    """The decisions for every awaited call of an `AwaitInput` effect, as `(call id, decision)`
    pairs in the order of the effect's requests (one event, however many calls)."""

    name: ClassVar[str] = "input_received"
    decisions: tuple[tuple[str, Decision], ...]

    def decision_for(self, call_id: str) -> Approved | Denied | Answer | None:
        for cid, decision in self.decisions:
            if cid == call_id:
                return decision
        return None


class Effect(Frozen):
    """Base of all effects; `key` is the idempotency key `<run id>/<step>/<index>`."""

    key: str


class CallModel(Effect):
    """Ask the model of `agent` to complete `request`; answered by `ModelReplied`/`ModelFailed`.

    `guardrails`: names of `agent`'s input guardrails the runtime runs concurrently with this
    call, on `request.messages` (the run's input: only the first call of a run names them); one
    that trips cancels the call and answers it with `GuardrailTripped` instead."""

    agent: str
    request: ModelRequest
    guardrails: tuple[str, ...] = ()

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> Any:
        # no guardrails named (every call but a guarded run's first): dumped as before the field
        # existed, so recorded cassettes and stored effects still match
        data = handler(self)
        if not self.guardrails and isinstance(data, dict):
            data.pop("guardrails", None)
        return data


class CheckOutput(Effect):
    """Run the output guardrails `guardrails` (names, in order) of `agent` on `output`, the
    validated final answer; answered by `OutputChecked` or `GuardrailTripped`."""

    agent: str
    output: Any = None
    guardrails: tuple[str, ...] = ()


class RunTools(Effect):
    """Run `calls` with the tools of `agent` (concurrently); answered by `ToolsFinished`."""

    agent: str
    calls: tuple[ToolCall, ...]


class InputRequest(Frozen):
    """One tool call that waits for a human: `kind` is `"approval"` (decide `Approved()` or
    `Denied(reason)`) or `"question"` (decide `Answer(text)`; `question` is what the model asked)."""

    call_id: str
    tool: str
    arguments: str
    kind: Literal["approval", "question"]
    question: str | None = None


class AwaitInput(Effect):
    """Wait for a human to decide `requests` (tool calls of `agent`'s reply): the runtime does not
    perform it, it suspends the run (`RunResult.status == "suspended"`); `resume(...,
    decisions=...)` answers it with one `InputReceived`."""

    agent: str
    requests: tuple[InputRequest, ...]


class AgentTask(Frozen):
    """One child run: the machine to run (by name, resolved by the parent's `children()`) and its
    input (for an agent: a string or messages, e.g. the parent's whole conversation)."""

    task_id: str
    machine: str
    input: Any

    @field_serializer("input", mode="wrap")
    def _dump_input(self, value: Any, handler: SerializerFunctionWrapHandler) -> Any:
        # messages shared with the parent's conversation (a PersistentLog) dump as a list of messages
        return handler(tuple(value) if isinstance(value, PersistentLog) else value)


class RunAgents(Effect):
    """Run child machines (several = parallel fan-out); answered by `AgentsFinished`."""

    tasks: tuple[AgentTask, ...]
    max_concurrency: int | None = None


def effect_key(snapshot: Snapshot[Any], index: int = 0) -> str:
    """The idempotency key of the `index`-th effect emitted when reaching `snapshot`."""
    return f"{snapshot.conversation.id}/{snapshot.step}/{index}"


class Taken(NamedTuple):
    """One transition taken: `step` is the snapshot step it led to; `index` is the transition's
    position in the machine's compiled table (`machine.table.transitions[index]`). A named tuple
    (immutable, cheap to build: the step function makes one per transition)."""

    source: Phase
    event: str
    target: Phase
    step: int
    index: int = 0  # type: ignore[assignment]  # shadows tuple.index: the field name predates the named tuple


class Step(NamedTuple):
    """The result of `start`/`step`: the next snapshot, the effects to perform, and the
    transitions taken to get there (one external event may take several).

    A named tuple (immutable, cheap to build): `snapshot, effects, transitions = step` works."""

    snapshot: Snapshot[Any]
    effects: tuple[Effect, ...] = ()
    transitions: tuple[Taken, ...] = ()
