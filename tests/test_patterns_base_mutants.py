"""Behaviour of the patterns' shared kit (`fsm_agents/patterns/_base.py`) that mutation testing
(`make mutation`, docs/mutation.md) checks, driven through the public API and the pure
`start`/`step`: a pattern's repr, the usage-limit transition every pattern chart gets and its
failure, child names and their errors, how a child's outcome is folded into the conversation
and named when it failed, the lead agent's model calls, and a pattern written with the kit."""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict
from statemachine import State

from fsm_agents import Agent, InvalidDefinition, ModelReplied, Phase, Step
from fsm_agents.events import (
    AgentOutcome,
    AgentsFinished,
    AgentTask,
    CallModel,
    Event,
    LimitExceeded,
    ModelFailed,
    Observed,
    RunAgents,
)
from fsm_agents.machine import Machine, compile_chart
from fsm_agents.models import call, reply
from fsm_agents.patterns import ManagerWorker, Parallel, Pattern, Router, Sequential, chart_class
from fsm_agents.state import (
    AssistantMessage,
    Conversation,
    EmptyContext,
    Failure,
    Snapshot,
    ToolMessage,
    ToolResult,
    UserMessage,
    messages_from,
)


def outcome(task: AgentTask, phase: Phase = Phase.DONE, **fields: Any) -> AgentsFinished:
    """The one child of `task` ended in `phase` (no conversation reported unless given)."""
    return AgentsFinished(outcomes=(AgentOutcome(task_id=task.task_id, machine=task.machine, phase=phase, **fields),))


def only_task(step: Step) -> AgentTask:
    (effect,) = step.effects
    assert isinstance(effect, RunAgents)
    (task,) = effect.tasks
    return task


def limit(name: str = "requests", used: float = 3, maximum: float = 2) -> LimitExceeded:
    return LimitExceeded(limit=name, used=used, maximum=maximum)


def test_a_patterns_repr_names_it_and_its_children() -> None:
    assert repr(Sequential("s", [Agent("a"), Agent("b")])) == "Sequential('sequential:s', children=['a', 'b'])"
    assert repr(Parallel("p", [Agent("x")])) == "Parallel('parallel:p', children=['x'])"


# -- child names ---------------------------------------------------------------------------------
def test_something_that_is_not_a_machine_is_a_definition_error_saying_what_it_got() -> None:
    with pytest.raises(InvalidDefinition, match=r"^expected a machine, an Agent or a pattern, got int$"):
        Sequential("s", [42])
    with pytest.raises(InvalidDefinition, match=r"^expected a machine, an Agent or a pattern, got str$"):
        Router("r", Agent("clf"), {"a": "not an agent"})


class Carrier:
    """Something that carries a machine (`.machine`), as `as_machine` accepts, with or without a
    name of its own."""

    def __init__(self, machine: Machine, name: Any = None) -> None:
        self.machine = machine
        if name is not None:
            self.name = name


class Custom(Machine):
    """A hand-written machine whose name has more than one ':' (nothing in `Machine` forbids it)."""

    name = "custom:team:alpha"


def test_a_child_is_known_by_its_short_name() -> None:
    """The short name drops the kind prefix only: an agent's name, a nested pattern's own name,
    everything after the first ':' of a machine's name; something carrying a machine is known by
    its own `name` when it has a string one, else by its machine's."""
    inner = Sequential("inner", [Agent("a")])
    outer = Sequential("outer", [Agent("a"), inner, Custom()])
    assert outer.stages == ("a", "inner", "team:alpha")
    assert list(outer.children()) == ["a", "inner", "team:alpha"] and outer.children()["inner"] is inner
    w = Agent("w").machine
    carried = Sequential("c", [Carrier(w), Carrier(inner, name="alias"), Carrier(w, name=7)])
    assert carried.stages == ("w", "alias", "w")
    assert carried.children() == {"w": w, "alias": inner}
    step = carried.start("hi")
    assert only_task(step).machine == "w"


# -- folding a child's outcome --------------------------------------------------------------------
class Report(BaseModel):
    model_config = ConfigDict(frozen=True)
    score: int


def circular() -> list[Any]:
    out: list[Any] = []
    out.append(out)
    return out


@pytest.mark.parametrize(
    ("output", "text"),
    [
        ("plain words", "plain words"),
        (None, ""),
        (Report(score=3), '{"score":3}'),
        ({"n": 1, "tags": ["x"]}, '{"n": 1, "tags": ["x"]}'),
        (datetime.date(2026, 1, 2), '"2026-01-02"'),  # JSON, with str() for what JSON lacks
        ({"at": datetime.date(2026, 1, 2)}, '{"at": "2026-01-02"}'),
        (circular(), "[[...]]"),  # not JSON at all: its str()
    ],
    ids=["str", "none", "model", "json", "date", "dict-with-date", "circular"],
)
def test_a_stage_output_reaches_the_next_stage_as_text(output: Any, text: str) -> None:
    """Without a shared conversation each stage gets the previous stage's output as text; a child
    that reports no conversation is folded as one assistant message holding that same text."""
    seq = Sequential("s", [Agent("a"), Agent("b")], shared_conversation=False)
    first = seq.start("hi")
    step = seq.step(first.snapshot, outcome(only_task(first), output=output))
    assert only_task(step).input == text
    assert step.snapshot.conversation.messages[1:] == (AssistantMessage(content=text, agent="a"),)


def test_a_child_that_reports_its_conversation_adds_only_what_it_appended() -> None:
    seq = Sequential("s", [Agent("a"), Agent("b")])
    first = seq.start("hi")
    given = only_task(first).input
    same = Conversation.of(*given, id="child")
    step = seq.step(first.snapshot, outcome(only_task(first), output="done", conversation=same))
    assert step.snapshot.conversation.messages == (UserMessage(content="hi"),)  # nothing new, nothing made up
    more = same.append(AssistantMessage(content="done", agent="a"))
    step = seq.step(first.snapshot, outcome(only_task(first), output="done", conversation=more))
    assert step.snapshot.conversation.messages == (UserMessage(content="hi"), AssistantMessage(content="done", agent="a"))


def test_a_fan_in_attributes_each_branch_result() -> None:
    par = Parallel("p", [Agent("a"), Agent("b")])
    first = par.start("hi")
    (effect,) = first.effects
    assert isinstance(effect, RunAgents)
    ta, tb = effect.tasks
    done = AgentsFinished(
        outcomes=(
            AgentOutcome(task_id=ta.task_id, machine="a", phase=Phase.DONE, output="yes"),
            AgentOutcome(task_id=tb.task_id, machine="b", phase=Phase.DONE, output=None),
        )
    )
    s = par.step(first.snapshot, done).snapshot
    assert s.phase is Phase.DONE
    assert s.conversation.messages[1:] == (
        AssistantMessage(content="[a] yes", agent="a"),
        AssistantMessage(content="[b] ", agent="b"),
    )


@pytest.mark.parametrize(
    ("phase", "failure", "why"),
    [
        (Phase.FAILED, Failure(kind="model_error", message="down"), "model_error: down"),
        (Phase.FAILED, None, "ended in FAILED"),
        (Phase.PLANNING, None, "ended in PLANNING"),
        # a hand-written child may set a failure that is not a `Failure` (evolve does not validate)
        (Phase.FAILED, "it broke", "it broke"),
    ],
    ids=["failure", "no-failure", "not-final", "not-a-Failure"],
)
def test_a_failed_stage_is_named_with_why_it_failed(phase: Phase, failure: Any, why: str) -> None:
    seq = Sequential("s", [Agent("a")])
    first = seq.start("hi")
    task = only_task(first)
    ended = AgentOutcome.model_construct(task_id=task.task_id, machine="a", phase=phase, failure=failure)
    s = seq.step(first.snapshot, AgentsFinished(outcomes=(ended,))).snapshot
    assert s.phase is Phase.FAILED
    assert s.failure == Failure(kind="child_failed", message=f"sequential:s: stage 1/1 'a' failed: {why}", detail="a")


def test_a_child_stopped_by_a_usage_limit_stops_its_parent_with_that_limit() -> None:
    """The run tree shares one budget: the parent fails with `usage_limit` (detail: the limit),
    whichever of its children the limit stopped."""
    stopped = Failure(kind="usage_limit", message="a: the total_tokens limit was exceeded", detail="total_tokens")
    seq = Sequential("s", [Agent("a")])
    first = seq.start("hi")
    s = seq.step(first.snapshot, outcome(only_task(first), Phase.FAILED, failure=stopped)).snapshot
    assert (s.phase, s.failure) == (
        Phase.FAILED,
        Failure(
            kind="usage_limit",
            message=f"sequential:s: stage 1/1 'a' failed: usage_limit: {stopped.message}",
            detail="total_tokens",
        ),
    )
    par = Parallel("p", [Agent("a"), Agent("b"), Agent("c")])
    first = par.start("hi")
    (effect,) = first.effects
    assert isinstance(effect, RunAgents)
    ta, tb, tc = effect.tasks
    ends = AgentsFinished(
        outcomes=(
            AgentOutcome(task_id=ta.task_id, machine="a", phase=Phase.DONE, output="x"),
            AgentOutcome(
                task_id=tb.task_id, machine="b", phase=Phase.FAILED, failure=Failure(kind="model_error", message="m")
            ),
            AgentOutcome(task_id=tc.task_id, machine="c", phase=Phase.FAILED, failure=stopped),
        )
    )
    f = par.step(first.snapshot, ends).snapshot.failure
    assert f is not None and (f.kind, f.detail) == ("usage_limit", "total_tokens")


# -- usage limits ---------------------------------------------------------------------------------
def test_a_usage_limit_fails_a_pattern_naming_the_limit() -> None:
    seq = Sequential("s", [Agent("a")])
    first = seq.start("hi")
    step = seq.step(first.snapshot, limit("requests", 3, 2))
    s = step.snapshot
    assert step.effects == () and s.phase is Phase.FAILED
    assert s.failure == Failure(
        kind="usage_limit",
        message="sequential:s: the requests limit was exceeded: used 3, at most 2 "
        "(raise it in Limits, or let the run do less)",
        detail="requests",
    )
    assert s.conversation == first.snapshot.conversation and (s.pending, s.results, s.output) == ((), (), None)


def test_a_usage_limit_clears_what_the_pattern_held() -> None:
    """Whatever the resting snapshot held (an output so far, results), the failed one holds none."""
    seq = Sequential("s", [Agent("a")])
    kept = (ToolResult(call_id="c1", name="lookup", ok=True, content="42"),)
    held = seq.start("hi").snapshot.evolve(output="draft", results=kept)
    s = seq.step(held, limit()).snapshot
    assert (s.phase, s.output, s.pending, s.results) == (Phase.FAILED, None, (), ())


def test_a_usage_limit_answers_the_managers_pending_delegations() -> None:
    mw = ManagerWorker("m", Agent("boss"), [Agent("w")])
    first = mw.start("hi")
    delegating = reply(None, call("delegate_to_w", "d1", task="one"), call("delegate_to_w", "d2", task="two"))
    waiting = mw.step(first.snapshot, ModelReplied(message=delegating))
    assert waiting.snapshot.phase is Phase.EXECUTING and len(waiting.snapshot.pending) == 2
    s = mw.step(waiting.snapshot, limit("wall_time", 12.5, 10)).snapshot
    note = "not executed: the run's wall_time limit was exceeded"
    assert s.conversation.messages[len(waiting.snapshot.conversation) :] == (
        ToolMessage(tool_call_id="d1", name="delegate_to_w", content=note, is_error=True),
        ToolMessage(tool_call_id="d2", name="delegate_to_w", content=note, is_error=True),
    )
    assert s.pending == () and s.failure is not None
    assert (s.failure.kind, s.failure.detail) == ("usage_limit", "wall_time")
    assert s.failure.message.startswith("manager_worker:m: the wall_time limit was exceeded: used 12.5 s, at most 10 s")


# -- the lead agent (Router's classifier, ManagerWorker's manager) ----------------------------------
class Ctx(BaseModel):
    model_config = ConfigDict(frozen=True)
    user: str


def test_a_pattern_with_a_lead_starts_with_its_model_call_keyed_by_run_and_step() -> None:
    r = Router("r", Agent("clf"), {"a": Agent("a")})
    first = r.start("hi", run_id="r7")
    s = first.snapshot
    (effect,) = first.effects
    assert isinstance(effect, CallModel)
    assert (effect.key, effect.agent) == ("r7/0/0", "clf")  # `<run id>/<step>/<index>`
    assert effect.request.messages == (UserMessage(content="hi"),)
    assert (s.machine, s.phase, s.agent, s.step, s.pending, s.results, s.output, s.failure) == (
        "router:r",
        Phase.PLANNING,
        "clf",
        0,
        (),
        (),
        None,
        None,
    )
    mw = ManagerWorker("m", Agent("boss"), [Agent("w")])
    again = mw.step(mw.start("hi", run_id="r8").snapshot, ModelReplied(message=reply(None, call("nope", "c1"))))
    (effect,) = again.effects
    assert isinstance(effect, CallModel) and effect.key == f"r8/{again.snapshot.step}/0"


def test_a_pattern_keeps_the_context_it_is_given() -> None:
    ctx = Ctx(user="ann")
    for pattern in (Router("r", Agent("clf"), {"a": Agent("a")}), Sequential("s", [Agent("a")])):
        assert pattern.start("hi", ctx).snapshot.context is ctx
        assert pattern.start("hi").snapshot.context == EmptyContext()
        assert pattern.start("hi", None).snapshot.context == EmptyContext()


def test_the_leads_instruction_function_is_the_patterns_dynamic_instructions() -> None:
    def instructions(ctx: Any) -> str:
        return "classify"

    assert dict(Router("r", Agent("clf", instructions), {"a": Agent("a")}).dynamic_instructions()) == {"clf": instructions}
    assert dict(Router("r", Agent("clf", "classify"), {"a": Agent("a")}).dynamic_instructions()) == {}
    assert dict(Sequential("s", [Agent("a", instructions)]).dynamic_instructions()) == {}


def test_a_failed_lead_model_call_fails_the_pattern_naming_the_lead_and_the_kind() -> None:
    r = Router("r", Agent("clf"), {"a": Agent("a")})
    s = r.step(r.start("hi").snapshot, ModelFailed(error="502 Bad Gateway", kind="http")).snapshot
    assert (s.phase, s.failure) == (
        Phase.FAILED,
        Failure(kind="model_error", message="router:r: classifier clf: 502 Bad Gateway", detail="http"),
    )


# -- a pattern written with the kit ---------------------------------------------------------------
class RelayData(BaseModel):
    model_config = ConfigDict(frozen=True)
    rounds: int = 0


def relay_chart(order: tuple[str, ...], own_limit: bool = False) -> Any:
    """Relay's chart with its states declared in `order` (the final ones, or the transient
    OBSERVING, may come before the phase a run rests in); `own_limit`: it declares
    `limit_exceeded` itself."""
    states = {
        "executing": State("EXECUTING", initial=True),
        "observing": State("OBSERVING"),
        "done": State("DONE", final=True),
        "failed": State("FAILED", final=True),
    }
    ex, ob, done, failed = (states[k] for k in ("executing", "observing", "done", "failed"))
    attrs: dict[str, Any] = {k: states[k] for k in order}
    attrs["agents_finished"] = ex.to(failed, cond="child_failed", on="fail_child") | ex.to(ob, on="fold")
    attrs["observed"] = ob.to(done, cond="enough", on="finish") | ob.to(ex, on="again")
    if own_limit:
        attrs["limit_exceeded"] = ex.to(failed, on="own_limit")
    return chart_class("RelayChart", attrs, internal=(Observed,))


class Relay(Pattern):
    """A custom pattern from the kit: runs `worker` twice, each time on the conversation so far;
    a failed round fails the relay with the rounds done in its data."""

    def __init__(self, worker: Any, chart: Any) -> None:
        self.name = "relay:r"
        self._children = {"worker": worker.machine}
        self.table = compile_chart(chart, owner=self)

    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        s = self._snapshot(Phase.EXECUTING, Conversation.of(*messages_from(input), id=run_id), RelayData(), context)
        return Step(s, (self._run(s, (self._task(s, "worker", s.conversation.messages),)),))

    def enough(self, s: Snapshot[Any], e: Event) -> bool:
        return bool(s.data.rounds >= 2)

    def fold(self, s: Snapshot[Any], e: Event) -> Step:
        folded, o = self._fold_child(s, e, len(s.conversation), "worker")
        return Step(folded.evolve(data=RelayData(rounds=s.data.rounds + 1), output=o.output if o else None))

    def again(self, s: Snapshot[Any], e: Event) -> Step:
        return Step(s, (self._run(s, (self._task(s, "worker", s.conversation.messages),)),))

    def finish(self, s: Snapshot[Any], e: Event) -> Step:
        return Step(s)

    def fail_child(self, s: Snapshot[Any], e: Event) -> Step:
        return self._fail_child(s, e, f"{self.name}: {self._why(e)}", detail="worker", data=RelayData(rounds=-1))

    def own_limit(self, s: Snapshot[Any], e: Event) -> Step:
        return self._fail(s, "over_budget", "relay stopped", data=RelayData(rounds=-2))


ORDERS = [
    ("executing", "observing", "done", "failed"),
    ("done", "failed", "observing", "executing"),  # a final state first
    ("observing", "executing", "done", "failed"),  # the transient state first
]


@pytest.mark.parametrize("order", ORDERS, ids=["resting-first", "final-first", "transient-first"])
def test_a_kit_chart_fails_on_a_usage_limit_from_every_phase_a_run_rests_in(order: tuple[str, ...]) -> None:
    """Wherever its states are declared, a chart built with the kit's `chart_class` gets
    `limit_exceeded → FAILED` from the phases a run rests in (here EXECUTING, not the transient
    OBSERVING), with the kit's usage-limit failure, also after a round kept an output."""
    relay = Relay(Agent("a"), relay_chart(order))
    assert {(t.source, t.target) for t in relay.table if t.event == "limit_exceeded"} == {(Phase.EXECUTING, Phase.FAILED)}
    first = relay.start("hi")
    second = relay.step(first.snapshot, outcome(only_task(first), output="one"))
    assert second.snapshot.phase is Phase.EXECUTING and second.snapshot.output == "one"
    s = relay.step(second.snapshot, limit("requests", 5, 4)).snapshot
    assert (s.phase, s.output, s.data) == (Phase.FAILED, None, RelayData(rounds=1))
    assert s.failure is not None and s.failure.message.startswith("relay:r: the requests limit was exceeded: used 5")


def test_a_kit_chart_that_declares_its_own_limit_transition_keeps_it() -> None:
    relay = Relay(Agent("a"), relay_chart(ORDERS[0], own_limit=True))
    s = relay.step(relay.start("hi").snapshot, limit()).snapshot
    assert (s.phase, s.failure, s.data) == (
        Phase.FAILED,
        Failure(kind="over_budget", message="relay stopped"),
        RelayData(rounds=-2),  # the changes given to `_fail`
    )


def test_a_kit_chart_without_a_failed_state_gets_no_limit_transition() -> None:
    working, done = State("EXECUTING", initial=True), State("DONE", final=True)
    chart = chart_class("Plain", {"working": working, "done": done, "agents_finished": working.to(done)})
    assert [(t.source, t.event, t.target) for t in compile_chart(chart)] == [
        (Phase.EXECUTING, "agents_finished", Phase.DONE)
    ]


def test_a_kit_patterns_failed_child_applies_the_changes_it_is_given() -> None:
    relay = Relay(Agent("a"), relay_chart(ORDERS[0]))
    first = relay.start("hi")
    for failure, kind in ((Failure(kind="model_error", message="m"), "child_failed"), (None, "child_failed")):
        s = relay.step(first.snapshot, outcome(only_task(first), Phase.FAILED, failure=failure)).snapshot
        assert s.failure is not None and (s.failure.kind, s.failure.detail, s.data) == (kind, "worker", RelayData(rounds=-1))
    stopped = Failure(kind="usage_limit", message="w: limit", detail="requests")
    s = relay.step(first.snapshot, outcome(only_task(first), Phase.FAILED, failure=stopped)).snapshot
    assert s.failure is not None and (s.failure.kind, s.failure.detail, s.data) == (
        "usage_limit",
        "requests",
        RelayData(rounds=-1),
    )


class Bare(Event):
    """An event under the name the runtime gives `AgentsFinished`, carrying no outcomes."""

    name: ClassVar[str] = "agents_finished"


def test_a_child_event_without_outcomes_fails_the_pattern_saying_so() -> None:
    """`step` dispatches on the event's name: one that reports no outcome at all (none listed, or
    not an `AgentsFinished`) fails the stage "no outcome was reported" instead of crashing."""
    seq = Sequential("s", [Agent("a")])
    start = seq.start("hi").snapshot
    for event in (AgentsFinished(outcomes=()), Bare()):
        s = seq.step(start, event).snapshot
        assert (s.phase, s.conversation) == (Phase.FAILED, start.conversation)
        assert s.failure == Failure(
            kind="child_failed", message="sequential:s: stage 1/1 'a' failed: no outcome was reported", detail="a"
        )
