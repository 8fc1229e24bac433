"""Hypothesis strategies for fsm_agents state, events and reachable snapshots.

Compose them in your own property tests:

    from fsm_agents.testing import strategies as fst

    @given(fst.snapshots(my_agent))
    def test_something(snapshot): ...

Valid tool arguments are generated from each tool's pydantic input model (`st.builds`).
Snapshots are only ever built by driving `machine.step` from `machine.start`, never by
constructing states a run could not reach.

Choices between alternatives are one integer draw over a weighted table (no `flatmap`: building
and validating a strategy per draw cost more than the draw), and the first alternative is the
one that ends a run soonest (a final answer before tool calls), so hypothesis shrinks failing
runs towards short ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from hypothesis import strategies as st

from fsm_agents.errors import InvalidTransition
from fsm_agents.events import (
    AgentOutcome,
    AgentsFinished,
    Answer,
    Approved,
    AwaitInput,
    CallModel,
    CheckOutput,
    Denied,
    EffectUncertain,
    Event,
    GuardrailTripped,
    InputReceived,
    LimitExceeded,
    ModelFailed,
    ModelReplied,
    OutputChecked,
    RunAgents,
    ToolsFinished,
)
from fsm_agents.machine import Machine
from fsm_agents.output import OUTPUT_TOOL, output_spec
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

T = TypeVar("T")

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

# Event payloads no machine branches on (tool output, error and failure text, child outputs,
# tool-call ids) come from small fixed pools: one integer draw instead of a string draw, and
# equal tool-call ids (duplicates) come up often rather than almost never.
_NOTES = ("", "ok", "42", "Paris, 2024", "  ", "ünïcødé ✓ 🙂", "line one\nline two", '{"a": [1, 2]}', "null", "x" * 40)
_notes = st.sampled_from(_NOTES)
_CALL_IDS = ("call_0", "call_1", "call_2", "call_3", "a", "b", "0", "x_9")
_call_ids = st.sampled_from(_CALL_IDS)
_BAD_JSON = ("{", '{"a": }', "not json", "[1, 2", '{"unterminated": "x')
_MAYBE = st.booleans()
_TOKENS = st.integers(0, 10_000)


@lru_cache(maxsize=64)
def _index(n: int) -> st.SearchStrategy[int]:
    return st.integers(0, n - 1)


def _one(draw: st.DrawFn, items: Sequence[T]) -> T:
    """One of `items` by a single integer draw (none when there is only one)."""
    return items[draw(_index(len(items)))] if len(items) > 1 else items[0]


@st.composite
def _pick(draw: st.DrawFn, table: tuple[st.SearchStrategy[Any], ...]) -> Any:
    return draw(_one(draw, table))


def _weighted(*choices: tuple[st.SearchStrategy[T], int]) -> st.SearchStrategy[T]:
    """One of `choices` (strategy, weight ≥ 1), picked with probability ∝ weight by a single
    integer draw; it shrinks towards the first choice."""
    table = tuple(s for s, weight in choices for _ in range(weight))
    if not table:
        return st.nothing()
    return table[0] if len(set(table)) == 1 else _pick(table)


@st.composite
def _usage(draw: st.DrawFn) -> Usage:
    return Usage(input_tokens=draw(_TOKENS), output_tokens=draw(_TOKENS), requests=1)


_USAGES = _usage()
# what generated model replies report: token counts drive no machine, one draw is enough
_USAGE_POOL = (
    Usage(requests=1),
    Usage(input_tokens=12, output_tokens=3, requests=1),
    Usage(input_tokens=10_000, output_tokens=10_000, requests=1),
)


def usages() -> st.SearchStrategy[Usage]:
    """Token counts of one request: 0–10,000 input and output tokens."""
    return _USAGES


def messages() -> st.SearchStrategy[Message]:
    """Any single message (system, user, assistant with or without tool calls, tool)."""
    call = st.builds(ToolCall, id=_ids, name=_ids, arguments=st.just("{}"))
    return st.one_of(
        st.builds(SystemMessage, content=_text),
        st.builds(UserMessage, content=_text),
        st.builds(AssistantMessage, content=st.none() | _text, tool_calls=st.lists(call, max_size=2).map(tuple)),
        st.builds(ToolMessage, tool_call_id=_ids, name=_ids, content=_text, is_error=st.booleans()),
    )


@dataclass(frozen=True)
class _OutputTool:
    """An agent's output tool (`final_result`, `output_mode="tool"`): its valid arguments are a
    value of the output type, drawn by `st.from_type` (wrapped as `{"response": ...}` when the
    type is sent wrapped)."""

    spec: ToolSpec
    output_type: Any

    @property
    def name(self) -> str:
        return self.spec.name


ToolLike = Tool | ToolSpec | _OutputTool


@lru_cache(maxsize=512)
def _arguments(t: ToolLike) -> st.SearchStrategy[str]:
    if isinstance(t, Tool):
        model = t.input_model
        return st.builds(model).map(lambda args: args.model_dump_json())
    if isinstance(t, _OutputTool):
        spec = output_spec(t.output_type)

        def encode(value: Any) -> str:
            data = spec.adapter.dump_python(value, mode="json")
            return json.dumps({"response": data} if spec.wrapped else data)

        return st.from_type(t.output_type).map(encode)
    return st.just("{}")  # a bare spec (e.g. a handoff tool): no model to build arguments from


def _specs(tools: Sequence[ToolLike]) -> tuple[ToolSpec, ...]:
    return tuple(t if isinstance(t, ToolSpec) else t.spec for t in tools)


def _wrong_types(spec: ToolSpec) -> tuple[str, ...]:
    """Arguments of the wrong type: each declared parameter (or made-up ones) set to a list."""
    names = list(spec.parameters.get("properties", {})) or ["a"]
    return (json.dumps({n: [None] for n in names}), json.dumps({names[0]: [], "zz_unexpected": [None]}))


@st.composite
def _tool_call(draw: st.DrawFn, tools: tuple[ToolLike, ...], specs: tuple[ToolSpec, ...], valid: bool | None) -> ToolCall:
    call_id = draw(_call_ids)
    if valid is True or (valid is None and tools and not draw(_MAYBE)):  # valid first
        tool = _one(draw, tools)
        return ToolCall(id=call_id, name=tool.name, arguments=draw(_arguments(tool)))
    how = draw(_index(3))  # malformed JSON, unknown tool, wrong argument types
    if how == 1 or not specs:  # an unknown tool (the only kind of bad call when no tool is offered)
        arguments = _one(draw, _BAD_JSON) if how == 0 else "{}"
        return ToolCall(id=call_id, name=f"no_such_tool_{draw(_call_ids)}", arguments=arguments)
    spec = _one(draw, specs)
    arguments = _one(draw, _BAD_JSON) if how == 0 else _one(draw, _wrong_types(spec))
    return ToolCall(id=call_id, name=spec.name, arguments=arguments)


def tool_calls(tools: Sequence[ToolLike], *, valid: bool | None = True) -> st.SearchStrategy[ToolCall]:
    """A tool call to one of `tools`. `valid=True`: arguments validate against the `Tool`'s
    input model (a bare `ToolSpec` gets `{}`); `False`: malformed JSON, an unknown tool or wrong
    argument types; `None`: either (valid first). Ids come from a small pool, so calls of one
    reply may share an id."""
    specs = _specs(tools)
    if valid is True and not specs:
        return st.nothing()
    return _tool_call(tuple(tools), specs, valid)


_CALL_COUNT = st.integers(1, 3)
_EMPTY = (None, "", "  ")


@st.composite
def _reply(
    draw: st.DrawFn, kinds: tuple[str, ...], answer: st.SearchStrategy[str], call: st.SearchStrategy[ToolCall]
) -> AssistantMessage:
    kind = _one(draw, kinds)
    if kind == "answer":
        return AssistantMessage(content=draw(answer))
    if kind == "calls":
        content = draw(_notes) if draw(_MAYBE) else None
        return AssistantMessage(content=content, tool_calls=tuple(draw(call) for _ in range(draw(_CALL_COUNT))))
    return AssistantMessage(content=_one(draw, _EMPTY))


_ANSWERS = st.text(min_size=1, max_size=40).filter(str.strip)


def assistant_replies(
    tools: Sequence[ToolLike] = (), *, valid: bool | None = None, final_text: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[AssistantMessage]:
    """A model reply: a text answer, or 1–3 tool calls (ids possibly duplicated), or (when
    `valid` is not True) an empty reply. Tool calls follow `tool_calls(tools, valid=valid)`.
    Tool-call replies are drawn four times as often as answers (they make runs long); an
    answer is the first choice, so failing runs shrink towards ending early."""
    kinds = ["answer"]
    if _specs(tools) or valid is not True:
        kinds += ["calls"] * 4
    if valid is not True:
        kinds.append("empty")
    return _reply(tuple(kinds), final_text if final_text is not None else _ANSWERS, tool_calls(tools, valid=valid))


_FAILURE_KINDS = ("timeout", "http", "rate_limited", "malformed", "exhausted", "error")


@st.composite
def _model_failure(draw: st.DrawFn) -> ModelFailed:
    return ModelFailed(kind=_one(draw, _FAILURE_KINDS), error=draw(_notes))


_MODEL_FAILURES = _model_failure()


def model_failures() -> st.SearchStrategy[ModelFailed]:
    """A failed model call: any `ModelFailed.kind`, a short error text."""
    return _MODEL_FAILURES


def tool_results(
    calls: Sequence[ToolCall], *, failures: bool = True, lossy: bool = True
) -> st.SearchStrategy[tuple[ToolResult, ...]]:
    """One result per call (ok, or an error when `failures`); with `lossy`, results may also be
    dropped, duplicated or reordered — the machine must still answer every call exactly once."""
    return _tool_results(tuple(calls), failures, lossy, None)


_LOSS = st.integers(0, 2)  # 0: every result once, in order; 1: reordered; 2: dropped / duplicated


@lru_cache(maxsize=16)
def _permutation(n: int) -> st.SearchStrategy[list[int]]:
    return st.permutations(range(n))


@lru_cache(maxsize=16)
def _picks(n: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, n - 1), max_size=n + 1)


@lru_cache(maxsize=64)
def _returned(output_type: Any) -> st.SearchStrategy[str]:
    """What an output function returning `output_type` reports: a drawn value as the executor
    writes it (JSON), or (one in three) a note that need not validate."""
    adapter = output_spec(output_type).adapter
    values = st.from_type(output_type).map(lambda v: adapter.dump_json(v).decode())
    return _weighted((values, 2), (_notes, 1))


@st.composite
def _tool_results(
    draw: st.DrawFn, calls: tuple[ToolCall, ...], failures: bool, lossy: bool, output: tuple[str, Any] | None
) -> tuple[ToolResult, ...]:
    results = []
    for call in calls:
        if failures and draw(_MAYBE):
            results.append(ToolResult(call_id=call.id, name=call.name, ok=False, error=draw(_notes)))
        else:
            returned = _returned(output[1]) if output is not None and call.name == output[0] else _notes
            results.append(ToolResult(call_id=call.id, name=call.name, ok=True, content=draw(returned)))
    if not lossy or not results:
        return tuple(results)
    loss = draw(_LOSS)
    if loss == 0:
        return tuple(results)
    order = draw(_permutation(len(results)) if loss == 1 else _picks(len(results)))
    return tuple(results[i] for i in order)


_OUTCOME = st.integers(0, 3)  # 0-2: DONE, 3: FAILED: children mostly succeed, so runs go deeper


@st.composite
def _outcomes(draw: st.DrawFn, tasks: tuple[tuple[str, str], ...]) -> AgentsFinished:
    outcomes = []
    for task_id, machine in tasks:
        if draw(_OUTCOME) < 3:
            outcomes.append(AgentOutcome(task_id=task_id, machine=machine, phase=Phase.DONE, output=draw(_notes)))
        else:
            failure = Failure(kind="model_error", message=draw(_notes))
            outcomes.append(AgentOutcome(task_id=task_id, machine=machine, phase=Phase.FAILED, failure=failure))
    return AgentsFinished(outcomes=tuple(outcomes))


def agent_outcomes(effect: RunAgents) -> st.SearchStrategy[AgentsFinished]:
    """Outcomes for every task of a `RunAgents` effect: DONE with a text output (3 in 4), or FAILED."""
    return _outcomes(tuple((t.task_id, t.machine) for t in effect.tasks))


EventStrategy = Callable[[Machine, Snapshot[Any], tuple[Any, ...]], st.SearchStrategy[Event]]


@st.composite
def _model_replied_event(
    draw: st.DrawFn, replies: st.SearchStrategy[AssistantMessage], named: tuple[str, ...]
) -> ModelReplied:
    # half the replies are named answers (drawn first)
    named_answer = bool(named) and not draw(_MAYBE)
    message = AssistantMessage(content=_one(draw, named)) if named_answer else draw(replies)
    return ModelReplied(message=message, usage=_one(draw, _USAGE_POOL))


class _ByIdentity:
    """A cache key for a machine: hashed and compared by identity (a user's machine may define
    `__eq__` and be unhashable, e.g. a dataclass); it holds the machine, so its id stays unique."""

    __slots__ = ("machine",)

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def __hash__(self) -> int:
        return id(self.machine)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.machine is self.machine


@lru_cache(maxsize=256)
def _replies_for(key: _ByIdentity, agent: str) -> st.SearchStrategy[Event]:
    machine = key.machine
    tools = machine.tools_for(agent)
    offered: list[ToolLike] = [tools.get(s.name, s) for s in machine.tool_specs(agent)]
    # an agent's output tool (`AgentMachine.output_tool_type`): valid calls carry a drawn output
    output_type = getattr(machine, "output_tool_type", lambda agent: None)(agent)
    if output_type is not None:
        offered = [_OutputTool(t, output_type) if isinstance(t, ToolSpec) and t.name == OUTPUT_TOOL else t for t in offered]
    # a machine may name final answers worth drawing (route labels, structured outputs) through
    # an `example_replies(agent) -> Sequence[str]` method: half the replies are drawn from them
    hint = getattr(machine, "example_replies", None)
    texts = tuple(hint(agent)) if callable(hint) else ()
    return _model_replied_event(assistant_replies(offered, valid=None), texts)


def _model_replied(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    return _replies_for(_ByIdentity(machine), snapshot.agent or "")


_FAILURES = model_failures()


def _model_failed(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    return _FAILURES


@lru_cache(maxsize=1024)
def _results_for(pending: tuple[ToolCall, ...], output: tuple[str, Any] | None = None) -> st.SearchStrategy[Event]:
    return _tool_results(pending, True, True, output).map(lambda rs: ToolsFinished(results=rs))


def _tools_finished(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    # an agent's output function (`AgentMachine.output_function_of`): its results are drawn as
    # values of its return type, so the run can end on one
    hint = getattr(machine, "output_function_of", None)
    output = hint(snapshot.agent) if callable(hint) and snapshot.agent is not None else None
    return _results_for(snapshot.pending, output)


def _agents_finished(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    runs = [e for e in effects if isinstance(e, RunAgents)]
    if not runs:
        return st.just(AgentsFinished(outcomes=()))
    return agent_outcomes(runs[0])


def _effect_uncertain(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    key = f"{snapshot.conversation.id}/pending"  # resume names the real key; the machine only reports it
    names = ", ".join(c.name for c in snapshot.pending)
    return st.builds(EffectUncertain, effect_key=st.just(key), detail=st.just(names) | _notes)


def _input_received(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    """Decisions for every request of the pending `AwaitInput`: approve or deny an approval,
    answer a question (and, rarely, a wrong kind or a missing decision: the machine must cope)."""
    awaiting = [e for e in effects if isinstance(e, AwaitInput)]
    if not awaiting:
        return st.just(InputReceived(decisions=()))
    requests = awaiting[0].requests

    def decision(kind: str) -> st.SearchStrategy[Any]:
        if kind == "question":
            return _weighted((st.builds(Answer, text=st.text(max_size=20)), 6), (st.builds(Denied), 1))
        return _weighted(
            (st.just(Approved()), 3),
            (st.builds(Denied, reason=st.text(max_size=20)), 3),
            (st.just(Answer(text="?")), 1),
        )

    pairs = st.tuples(*(st.tuples(st.just(r.call_id), decision(r.kind)) for r in requests))
    return pairs.map(lambda ds: InputReceived(decisions=ds))


_LIMITS = st.builds(
    LimitExceeded,
    limit=st.sampled_from(("input_tokens", "output_tokens", "total_tokens", "requests", "wall_time")),
    used=st.integers(2, 10_000).map(float),
    maximum=st.integers(1, 10_000).map(float),
)


def _limit_exceeded(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    """A usage limit, whatever the phase: the runtime feeds it before any effect."""
    return _LIMITS


def _guardrail_tripped(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    """A trip of a guardrail the pending effect names (an input guardrail of a first model call,
    an output guardrail of a `CheckOutput`)."""
    names: tuple[str, ...] = ()
    stage = "input"
    for e in effects:
        if isinstance(e, (CallModel, CheckOutput)) and e.guardrails:
            names, stage = e.guardrails, "input" if isinstance(e, CallModel) else "output"
    return st.builds(
        GuardrailTripped, guardrail=st.sampled_from(names or ("guardrail",)), stage=st.just(stage), reason=_notes
    )


def _output_checked(machine: Machine, snapshot: Snapshot[Any], effects: tuple[Any, ...]) -> st.SearchStrategy[Event]:
    return st.just(OutputChecked())


EVENT_STRATEGIES: dict[str, EventStrategy] = {
    "model_replied": _model_replied,
    "model_failed": _model_failed,
    "tools_finished": _tools_finished,
    "agents_finished": _agents_finished,
    "effect_uncertain": _effect_uncertain,
    "input_received": _input_received,
    "limit_exceeded": _limit_exceeded,
    "guardrail_tripped": _guardrail_tripped,
    "output_checked": _output_checked,
}


_RARE = frozenset({"model_failed", "effect_uncertain", "limit_exceeded", "guardrail_tripped"})
# what answers a `CheckOutput` (the only events the runtime sends while one is pending)
_CHECK_ANSWERS = frozenset({"output_checked", "guardrail_tripped", "limit_exceeded"})


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
    awaited = tuple(r for e in effects if isinstance(e, AwaitInput) for r in e.requests)
    key = (_ByIdentity(m), snapshot.phase, snapshot.agent, snapshot.pending, tasks, awaited, rejected)
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
    if not rejected:  # a waiting run gets decisions, a running one its tools' results
        waiting = any(isinstance(e, AwaitInput) for e in effects)
        unlikely = "tools_finished" if waiting else "input_received"
        chosen = [n for n in chosen if n != unlikely] or chosen
        # an output check is answered by its verdict; a trip answers only an effect naming guardrails
        if any(isinstance(e, CheckOutput) for e in effects):
            chosen = [n for n in chosen if n in _CHECK_ANSWERS] or chosen
        else:
            screened = any(isinstance(e, CallModel) and e.guardrails for e in effects)
            chosen = [n for n in chosen if n != "output_checked" and (screened or n != "guardrail_tripped")] or chosen
    if not chosen:
        return st.nothing()
    # failures end a run at once: draw them a sixth as often as the other events
    if len(chosen) == 1:
        return EVENT_STRATEGIES[chosen[0]](m, snapshot, effects)
    return _weighted(*((EVENT_STRATEGIES[n](m, snapshot, effects), 1 if n in _RARE else 6) for n in chosen))


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
