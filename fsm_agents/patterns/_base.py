"""Shared pieces of the orchestration patterns: the `Pattern` base, child resolution, folding.

Every pattern is a `Machine` with its own flat chart over the six phases. Child machines (agents or
other patterns) run through `RunAgents`; their outcomes come back as `AgentsFinished` and are
folded into the pattern's conversation. A child's conversation starts with the messages of its
task input, so a parent that sent `n` messages folds `outcome.conversation.messages[n:]`.

The kit every pattern module uses (one way to write each piece):

- `chart_class(name, attrs, internal=(Observed, ...))` builds a chart, declaring its internal
  events once, and adds `limit_exceeded → FAILED` (`Pattern.fail_limit`) from every phase a run
  rests in; `compile_chart(chart, owner=self)` resolves each guard and action name to the
  pattern's method of that name (`fsm_agents.machine`);
- `Pattern.child_failed`: the guard "a child run did not end DONE"; `Pattern._fail_child`: the
  failure for it (FAILED(`usage_limit`) when a child ended so: the run tree shares its limits);
- `Pattern._fold_child(s, e, sent, agent)`: fold the single child's new messages;
- `Pattern._call_lead(s)` / `Pattern.fail_model`: call the model of the agent the pattern itself
  drives (`lead`: Router's classifier, ManagerWorker's manager, Recursive's decomposer), from a
  request template built by `fsm_agents.agent.model_request`, and fail on its model error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, cast

from pydantic import BaseModel
from statemachine import State

from fsm_agents.agent import _limit_failure
from fsm_agents.errors import InvalidDefinition
from fsm_agents.events import (
    AgentOutcome,
    AgentsFinished,
    AgentTask,
    CallModel,
    Event,
    LimitExceeded,
    ModelFailed,
    RunAgents,
    Step,
    effect_key,
)
from fsm_agents.machine import ChartClass, Machine, as_machine
from fsm_agents.machine import chart_class as _chart_class
from fsm_agents.state import (
    AssistantMessage,
    Conversation,
    EmptyContext,
    Failure,
    Message,
    ModelRequest,
    Phase,
    Snapshot,
    ToolMessage,
    is_valid_name,
)

__all__ = ["ChartClass", "Pattern", "Planned", "chart_class", "child_name", "output_text", "resolve_child"]


def chart_class(name: str, attrs: Mapping[str, Any], internal: Iterable[type[Event]] = ()) -> ChartClass:
    """`fsm_agents.machine.chart_class`, plus `limit_exceeded → FAILED` (action `fail_limit`)
    from every phase a run rests in: each non-final state that is not left by an internal event
    (the runtime feeds `LimitExceeded` only between effects). Every pattern chart is built with
    it, so a usage limit of `Limits` ends any pattern FAILED(`usage_limit`). A chart without a
    FAILED state, or that declares `limit_exceeded` itself, is left as is."""
    internal = tuple(internal)
    states = [v for v in attrs.values() if isinstance(v, State)]
    failed = next((st for st in states if st.name == "FAILED"), None)
    if failed is not None and "limit_exceeded" not in attrs:
        transient = {id(t.source) for ev in internal if ev.name in attrs for t in attrs[ev.name].transitions}
        limit: Any = None
        for st in states:
            if st.final or id(st) in transient:
                continue
            t = st.to(failed, on="fail_limit")
            limit = t if limit is None else limit | t
        if limit is not None:
            attrs = {**attrs, "limit_exceeded": limit}
    return _chart_class(name, attrs, internal)


class Planned(Event):
    """Internal: raised by `step` itself after a pattern's PLANNING decided the next stage."""

    name: ClassVar[str] = "planned"


def pattern_name(kind: str, name: str) -> str:
    """`"<kind>:<name>"`, the machine name of a pattern. `name` follows the rule for agent names
    (1-64 letters, digits, '_' or '-': it becomes part of child conversation ids and diagram
    file names). Raises `InvalidDefinition`."""
    if not is_valid_name(name):
        raise InvalidDefinition(f"{kind} name {name!r} must be 1-64 letters, digits, '_' or '-'")
    return f"{kind}:{name}"


def resolve_child(obj: Any) -> Machine:
    """The machine of `obj` (a `Machine`, an `Agent` or a pattern). Raises `InvalidDefinition`."""
    try:
        return as_machine(obj)
    except TypeError as exc:
        raise InvalidDefinition(str(exc)) from None


def child_name(obj: Any) -> str:
    """The short name of a child: an agent's or a pattern's `name` (`"agent:x"` → `"x"`)."""
    name = getattr(obj, "name", None)
    if not isinstance(name, str):
        name = resolve_child(obj).name
    return name.split(":", 1)[1] if ":" in name else name


def children_by_name(pattern: str, items: Iterable[Any], role: str) -> dict[str, Machine]:
    """`{short name: machine}` for `items`, in order. Raises `InvalidDefinition` when two different
    machines share a name or there are none."""
    out: dict[str, Machine] = {}
    for obj in items:
        name, machine = child_name(obj), resolve_child(obj)
        if name in out and out[name] is not machine:
            roles = role + ("es" if role.endswith(("ch", "sh", "s", "x")) else "s")
            raise InvalidDefinition(f"{pattern}: two different {roles} are named {name!r}; give them distinct names")
        out[name] = machine
    if not out:
        raise InvalidDefinition(f"{pattern}: at least one {role} is required")
    return out


def output_text(value: Any) -> str:
    """A child's output as text for the next model: a string as is, a pydantic model as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):  # a circular value: json.dumps raises ValueError
        return str(value)


def failure_text(outcome: AgentOutcome) -> str:
    f = outcome.failure
    if isinstance(f, Failure):
        return f"{f.kind}: {f.message}"
    return str(f) if f is not None else f"ended in {outcome.phase}"


def new_messages(outcome: AgentOutcome, sent: int, agent: str) -> tuple[Message, ...]:
    """What a child added to the conversation it was given (`sent` messages): its reported
    conversation's suffix, or — when none is reported — its output as one assistant message."""
    conv = outcome.conversation
    if conv is not None and len(conv.messages) >= sent:
        return conv.messages[sent:]
    if outcome.phase is Phase.DONE:
        return (
            AssistantMessage.model_construct(
                role="assistant", content=output_text(outcome.output), tool_calls=(), agent=agent
            ),
        )
    return ()


def outcome_message(outcome: AgentOutcome, agent: str, label: str = "") -> AssistantMessage:
    """One child's result as an attributed assistant message (for fan-in)."""
    text = output_text(outcome.output) if outcome.phase is Phase.DONE else f"(failed: {failure_text(outcome)})"
    content = f"[{label or agent}] {text}"
    return AssistantMessage.model_construct(role="assistant", content=content, tool_calls=(), agent=agent)


def outcomes_of(event: Event) -> tuple[AgentOutcome, ...]:
    return event.outcomes if isinstance(event, AgentsFinished) else ()


class Pattern(Machine):
    """Base of the orchestration patterns: a `Machine` that is its own `.machine`.

    Subclasses set `name`, `_children`, `table` (`compile_chart(chart, owner=self)`), and
    implement `start`. A pattern that calls a model itself sets `lead` (the `Agent`), `lead_role`
    (how messages name it) and `_request` (its `model_request` template).
    """

    _children: Mapping[str, Machine] = MappingProxyType({})
    lead: Any = None  # the Agent whose model the pattern calls itself, if any
    lead_role: ClassVar[str] = "agent"
    _request: ModelRequest

    @property
    def machine(self) -> Machine:
        """This pattern (so `run(pattern, ...)`, `check_machine(pattern)` accept it directly)."""
        return self

    def children(self) -> Mapping[str, Machine]:
        """Child machines run through `RunAgents`, by short name."""
        return self._children

    def dynamic_instructions(self) -> Mapping[str, Any]:
        """The lead's instruction function, when its instructions are one (the runtime puts its
        text before what the pattern adds to the request's instructions)."""
        lead = self.lead
        if lead is None or isinstance(lead.instructions, str):
            return MappingProxyType({})
        return MappingProxyType({lead.name: lead.instructions})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, children={list(self._children)})"

    def _snapshot(
        self, phase: Phase, conversation: Conversation, data: Any, context: Any, agent: str | None = None
    ) -> Snapshot[Any]:
        return Snapshot[Any].model_construct(
            machine=self.name,
            phase=phase,
            conversation=conversation,
            agent=agent,
            step=0,
            pending=(),
            results=(),
            output=None,
            failure=None,
            context=context if context is not None else EmptyContext(),
            data=data,
        )

    @staticmethod
    def _run(s: Snapshot[Any], tasks: Iterable[AgentTask], max_concurrency: int | None = None) -> RunAgents:
        return RunAgents.model_construct(key=effect_key(s), tasks=tuple(tasks), max_concurrency=max_concurrency)

    @staticmethod
    def _task(s: Snapshot[Any], child: str, input: Any, index: int = 0) -> AgentTask:
        return AgentTask.model_construct(task_id=f"{s.step}.{index}.{child}", machine=child, input=input)

    @staticmethod
    def _fail(s: Snapshot[Any], kind: str, message: str, detail: str | None = None, **changes: Any) -> Step:
        return Step(s.evolve(failure=Failure(kind=kind, message=message, detail=detail), **changes))

    @classmethod
    def _fail_child(cls, s: Snapshot[Any], e: Event, message: str, detail: str | None = None, **changes: Any) -> Step:
        """FAILED(`child_failed`) with `message` for the children of `e`; FAILED(`usage_limit`)
        (detail: the limit) when one of them ended so — the run tree shares one budget, so the
        limit stopped the pattern too."""
        for o in outcomes_of(e):
            f = o.failure
            if o.phase is not Phase.DONE and isinstance(f, Failure) and f.kind == "usage_limit":
                return cls._fail(s, "usage_limit", message, detail=f.detail, **changes)
        return cls._fail(s, "child_failed", message, detail, **changes)

    def fail_limit(self, s: Snapshot[Any], e: Event) -> Step:
        """Action: a usage limit was exceeded → FAILED(`usage_limit`, detail = the limit); pending
        tool calls (a manager's delegations) get error results so the history stays well formed."""
        ev = cast(LimitExceeded, e)  # the charts send only LimitExceeded as `limit_exceeded`
        note = f"not executed: the run's {ev.limit} limit was exceeded"
        answers = [ToolMessage(tool_call_id=c.id, name=c.name, content=note, is_error=True) for c in s.pending]
        conversation = s.conversation.append(*answers) if answers else s.conversation
        failure = _limit_failure(self.name, ev)
        return Step(s.evolve(conversation=conversation, pending=(), results=(), output=None, failure=failure))

    # -- the lead agent's model (Router, ManagerWorker, Recursive) ------------------------------
    def models(self) -> Mapping[str, Any]:
        """The lead agent's configured model, by its name (empty without a lead)."""
        return {self.lead.name: self.lead.model} if self.lead is not None else {}

    def _call_lead(self, s: Snapshot[Any], **changes: Any) -> CallModel:
        """A `CallModel` for the lead agent with the conversation so far (`changes` update the
        request template, e.g. `instructions=`)."""
        request = self._request.model_copy(update={"messages": s.conversation.messages, **changes})
        return CallModel.model_construct(key=effect_key(s), agent=self.lead.name, request=request)

    def fail_model(self, s: Snapshot[Any], e: Event) -> Step:
        """Action: the lead's model failed → FAILED(`model_error`)."""
        ev = cast(ModelFailed, e)  # the charts send only ModelFailed as `model_failed`
        return self._fail(s, "model_error", f"{self.name}: {self.lead_role} {self.lead.name}: {ev.error}", detail=ev.kind)

    # -- child runs ----------------------------------------------------------------------------
    def child_failed(self, s: Snapshot[Any], e: Event) -> bool:
        """Guard: a child run did not end DONE (or no outcome was reported)."""
        outcomes = outcomes_of(e)
        return not outcomes or any(o.phase is not Phase.DONE for o in outcomes)

    @staticmethod
    def _fold_child(s: Snapshot[Any], e: Event, sent: int, agent: str) -> tuple[Snapshot[Any], AgentOutcome | None]:
        """The single child's new messages (it was given `sent`) appended to the conversation,
        attributed to `agent`; and its outcome (None when none was reported)."""
        outcomes = outcomes_of(e)
        if not outcomes:
            return s, None
        return s.evolve(conversation=s.conversation.append(*new_messages(outcomes[0], sent, agent))), outcomes[0]

    @staticmethod
    def _why(e: Event) -> str:
        """Why the single child failed, as text."""
        outcomes = outcomes_of(e)
        return failure_text(outcomes[0]) if outcomes else "no outcome was reported"
