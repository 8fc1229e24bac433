"""Hypothesis strategies for fsm_agents state, events and reachable snapshots.

Compose them in your own property tests:

    from fsm_agents.testing import strategies as fst

    @given(fst.snapshots(my_agent))
    def test_something(snapshot): ...

Valid tool arguments are generated from each tool's pydantic input model (`st.builds`).
Snapshots are only ever built by driving `machine.step` from `machine.start`, never by
constructing states a run could not reach.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from hypothesis import strategies as st

from fsm_agents.errors import InvalidTransition
from fsm_agents.events import (
    AgentOutcome,
    AgentsFinished,
    EffectUncertain,
    Event,
    ModelFailed,
    ModelReplied,
    RunAgents,
    ToolsFinished,
)
from fsm_agents.machine import Machine
from fsm_agents.runtime import as_machine
from fsm_agents.state import (
    AssistantMessage,
    Failure,
    Message,
    Phase,
    Snapshot,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolResult,
    ToolSpec,
    Usage,
    UserMessage,
)
from fsm_agents.tools import Tool

__all__ = [
    "EVENT_STRATEGIES",
    "agent_outcomes",
    "assistant_replies",
    "events",
    "messages",
    "model_failures",
    "register_event_strategy",
    "snapshots",
    "tool_calls",
    "tool_results",
    "usages",
]

_text = st.text(max_size=40)
_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=8)


def usages() -> st.SearchStrategy[Usage]:
    return st.builds(
        Usage,
        input_tokens=st.integers(0, 10_000),
        output_tokens=st.integers(0, 10_000),
        requests=st.just(1),
    )


def messages() -> st.SearchStrategy[Message]:
    """Any single message (system, user, assistant with or without tool calls, tool)."""
    call = st.builds(ToolCall, id=_ids, name=_ids, arguments=st.just("{}"))
    return st.one_of(
        st.builds(SystemMessage, content=_text),
        st.builds(UserMessage, content=_text),
        st.builds(AssistantMessage, content=st.none() | _text, tool_calls=st.lists(call, max_size=2).map(tuple)),
        st.builds(ToolMessage, tool_call_id=_ids, name=_ids, content=_text, is_error=st.booleans()),
    )


ToolLike = Tool | ToolSpec


@lru_cache(maxsize=512)
def _arguments(t: ToolLike) -> st.SearchStrategy[str]:
    if isinstance(t, Tool):
        model = t.input_model
        return st.builds(model).map(lambda args: args.model_dump_json())
    return st.just("{}")  # a bare spec (e.g. a handoff tool): no model to build arguments from


def _specs(tools: Sequence[ToolLike]) -> tuple[ToolSpec, ...]:
    return tuple(t if isinstance(t, ToolSpec) else t.spec for t in tools)


def tool_calls(tools: Sequence[ToolLike], *, valid: bool | None = True) -> st.SearchStrategy[ToolCall]:
    """A tool call to one of `tools`. `valid=True`: arguments validate against the `Tool`'s
    input model (a bare `ToolSpec` gets `{}`); `False`: malformed JSON, an unknown tool or wrong
    argument types; `None`: either."""
    specs = _specs(tools)
    good: st.SearchStrategy[ToolCall] = st.nothing()
    if tools:
        good = st.sampled_from(tuple(tools)).flatmap(
            lambda t: st.builds(ToolCall, id=_ids, name=st.just(t.name), arguments=_arguments(t))
        )
    bad_json = st.builds(
        ToolCall,
        id=_ids,
        name=st.sampled_from([s.name for s in specs]) if specs else _ids,
        arguments=st.sampled_from(["{", '{"a": }', "not json", "[1, 2", '{"unterminated": "x']),
    )
    unknown = st.builds(ToolCall, id=_ids, name=_ids.map(lambda n: f"no_such_tool_{n}"), arguments=st.just("{}"))
    wrong_types = st.builds(
        ToolCall,
        id=_ids,
        name=st.sampled_from([s.name for s in specs]) if specs else _ids,
        arguments=st.dictionaries(_ids, st.lists(st.none(), max_size=1), min_size=1, max_size=2).map(json.dumps),
    )
    bad = st.one_of(bad_json, unknown, wrong_types)
    if valid is True:
        return good if specs else st.nothing()
    if valid is False:
        return bad
    return st.one_of(good, bad) if specs else bad


def assistant_replies(
    tools: Sequence[ToolLike] = (), *, valid: bool | None = None, final_text: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[AssistantMessage]:
    """A model reply: a text answer, or 1–3 tool calls (ids possibly duplicated), or (when
    `valid` is not True) an empty reply. Tool calls follow `tool_calls(tools, valid=valid)`."""
    text = final_text if final_text is not None else st.text(min_size=1, max_size=40).filter(str.strip)
    answer = st.builds(AssistantMessage, content=text)
    parts: list[st.SearchStrategy[AssistantMessage]] = []
    if _specs(tools) or valid is not True:
        calls = st.lists(tool_calls(tools, valid=valid), min_size=1, max_size=3).map(tuple)
        with_calls = st.builds(AssistantMessage, content=st.none() | _text, tool_calls=calls)
        # tool turns are what make runs long: favour them, and put them first (hypothesis leans
        # towards the first choice, so deep runs stay likely whatever else it has generated)
        parts += [with_calls] * 3
    parts.append(answer)
    if valid is not True:
        parts.append(st.builds(AssistantMessage, content=st.sampled_from([None, "", "  "])))
    return st.sampled_from(range(len(parts))).flatmap(lambda i: parts[i])


def model_failures() -> st.SearchStrategy[ModelFailed]:
    return st.builds(
        ModelFailed,
        error=_text,
        kind=st.sampled_from(["timeout", "http", "rate_limited", "malformed", "exhausted", "error"]),
    )


def tool_results(
    calls: Sequence[ToolCall], *, failures: bool = True, lossy: bool = True
) -> st.SearchStrategy[tuple[ToolResult, ...]]:
    """One result per call (ok, or an error when `failures`); with `lossy`, results may also be
    dropped, duplicated or reordered — the machine must still answer every call exactly once."""

    def result(call: ToolCall) -> st.SearchStrategy[ToolResult]:
        ok = st.builds(ToolResult, call_id=st.just(call.id), name=st.just(call.name), ok=st.just(True), content=_text)
        if not failures:
            return ok
        err = st.builds(ToolResult, call_id=st.just(call.id), name=st.just(call.name), ok=st.just(False), error=_text)
        return ok | err

    exact = st.tuples(*(result(c) for c in calls)) if calls else st.just(())
    if not lossy:
        return exact
    return exact.flatmap(
        lambda rs: st.one_of(
            st.just(rs),
            st.permutations(rs).map(tuple) if rs else st.just(rs),
            st.lists(st.sampled_from(rs), max_size=len(rs) + 1).map(tuple) if rs else st.just(rs),
        )
    )


def agent_outcomes(effect: RunAgents) -> st.SearchStrategy[AgentsFinished]:
    """Outcomes for every task of a `RunAgents` effect: DONE with a text output, or FAILED."""

    def outcome(task_id: str, machine: str) -> st.SearchStrategy[AgentOutcome]:
        done = st.builds(
            AgentOutcome, task_id=st.just(task_id), machine=st.just(machine), phase=st.just(Phase.DONE), output=_text
        )
        failed = st.builds(
            AgentOutcome,
            task_id=st.just(task_id),
            machine=st.just(machine),
            phase=st.just(Phase.FAILED),
            failure=st.builds(Failure, kind=st.just("model_error"), message=_text),
        )
        return done | failed

    return st.tuples(*(outcome(t.task_id, t.machine) for t in effect.tasks)).map(lambda os: AgentsFinished(outcomes=os))


EventStrategy = Callable[[Machine, Snapshot[Any], tuple[Any, ...]], st.SearchStrategy[Event]]


@lru_cache(maxsize=256)
def _replies_for(machine: Machine, agent: str) -> st.SearchStrategy[Event]:
    tools = machine.tools_for(agent)
    offered: list[ToolLike] = [tools.get(s.name, s) for s in machine.tool_specs(agent)]
    replies = st.builds(ModelReplied, message=assistant_replies(offered, valid=None), usage=usages())
    # a machine may name final answers worth drawing (route labels, structured outputs) through
    # an `example_replies(agent) -> Sequence[str]` method: half the replies are drawn from them
    hint = getattr(machine, "example_replies", None)
    texts = tuple(hint(agent)) if callable(hint) else ()
    if texts:
        named = st.sampled_from(texts).map(lambda t: AssistantMessage(content=t))
        replies = st.one_of(st.builds(ModelReplied, message=named, usage=usages()), replies)
    return replies


def _model_replied(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    return _replies_for(machine, snapshot.agent or "")


_FAILURES = model_failures()


def _model_failed(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    return _FAILURES


@lru_cache(maxsize=1024)
def _results_for(pending: tuple[ToolCall, ...]) -> st.SearchStrategy[Event]:
    return tool_results(pending).map(lambda rs: ToolsFinished(results=rs))


def _tools_finished(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    return _results_for(snapshot.pending)


def _agents_finished(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    runs = [e for e in effects if isinstance(e, RunAgents)]
    if not runs:
        return st.just(AgentsFinished(outcomes=()))
    return agent_outcomes(runs[0])


def _effect_uncertain(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    key = f"{snapshot.conversation.id}/pending"  # resume names the real key; the machine only reports it
    names = ", ".join(c.name for c in snapshot.pending)
    return st.builds(EffectUncertain, effect_key=st.just(key), detail=st.just(names) | _text)


EVENT_STRATEGIES: dict[str, EventStrategy] = {
    "model_replied": _model_replied,
    "model_failed": _model_failed,
    "tools_finished": _tools_finished,
    "agents_finished": _agents_finished,
    "effect_uncertain": _effect_uncertain,
}


_RARE = frozenset({"model_failed", "effect_uncertain"})


def register_event_strategy(event_name: str, strategy: EventStrategy) -> None:
    """Teach `events()` how to build `event_name` events for your own machines:
    `strategy(machine, snapshot, pending_effects) -> SearchStrategy[Event]`."""
    EVENT_STRATEGIES[event_name] = strategy


def events(
    machine: Any, snapshot: Snapshot[Any], effects: tuple[Any, ...] = (), *, rejected: bool = False
) -> st.SearchStrategy[Event]:
    """Events `snapshot.phase` accepts (or, with `rejected=True`, events it does not accept).
    `effects` are the effects pending at `snapshot` (used to answer `RunAgents`)."""
    m = as_machine(machine)
    # strategies depend on the phase, the active agent, the pending calls and the tasks being run:
    # building and validating them costs more than drawing from them, so reuse them
    tasks = tuple((t.task_id, t.machine) for e in effects if isinstance(e, RunAgents) for t in e.tasks)
    key = (m, snapshot.phase, snapshot.agent, snapshot.pending, tasks, rejected)
    cached = _EVENTS_CACHE.get(key)
    if cached is None:
        if len(_EVENTS_CACHE) > 4096:
            _EVENTS_CACHE.clear()
        cached = _EVENTS_CACHE[key] = _build_events(m, snapshot, effects, rejected)
    return cached


_EVENTS_CACHE: dict[tuple[Any, ...], st.SearchStrategy[Event]] = {}


def _build_events(m: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...], rejected: bool) -> st.SearchStrategy[Event]:
    accepted = m.table.accepts(snapshot.phase)
    names = [e for e in m.table.events if e not in m.table.internal]
    chosen = [n for n in names if (n in accepted) is not rejected and n in EVENT_STRATEGIES]
    if not chosen:
        return st.nothing()
    # failures end a run at once: draw them a third as often as the other events
    if len(chosen) == 1:
        return EVENT_STRATEGIES[chosen[0]](m, snapshot, effects)
    weighted = [EVENT_STRATEGIES[n](m, snapshot, effects) for n in chosen for _ in range(2 if n in _RARE else 6)]
    return st.sampled_from(range(len(weighted))).flatmap(lambda i: weighted[i])


def inputs(machine: Any = None) -> st.SearchStrategy[Any]:
    """Start inputs: the machine's `example_inputs()` when it has some, else short strings."""
    examples = as_machine(machine).example_inputs() if machine is not None else ()
    if examples:
        return st.sampled_from(examples)
    return st.text(min_size=1, max_size=30)


@st.composite
def snapshots(
    draw: st.DrawFn, machine: Any, *, max_events: int = 20, input: st.SearchStrategy[Any] | None = None
) -> Snapshot[Any]:
    """A snapshot reachable from `machine.start` by up to `max_events` accepted events."""
    m = as_machine(machine)
    step = m.start(draw(input if input is not None else inputs(m)), run_id="strategy")
    for _ in range(draw(st.integers(0, max_events))):
        if step.snapshot.is_final:
            break
        event = draw(events(m, step.snapshot, step.effects))
        try:
            step = m.step(step.snapshot, event)
        except InvalidTransition:  # no guard held: not reachable with this event
            break
    return step.snapshot
