"""Behaviour of `EventDriven` and `Parallel`/`Competitive` that mutation testing (`make mutation`,
docs/mutation.md) found untested, driven through the pure `start`/`step` with `AgentsFinished`
events: the emitted event's message and data encoding, unknown event types, a failed handler's
reason and messages, the fan-out's tasks and concurrency, the fan-in's attribution, the
synthesizer's input and output, and each pattern's transition bound."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from fsm_agents import Agent, InvalidDefinition, Phase, Step
from fsm_agents.events import AgentOutcome, AgentsFinished, AgentTask, RunAgents
from fsm_agents.patterns import Competitive, EventDriven, EventDrivenMachine, EventInput, Parallel, UnknownEventType
from fsm_agents.state import AssistantMessage, Conversation, Failure, UserMessage, messages_from


def only_task(step: Step) -> AgentTask:
    (effect,) = step.effects
    assert isinstance(effect, RunAgents) and len(effect.tasks) == 1
    return effect.tasks[0]


def done(task: AgentTask, output: Any, *said: str, agent: str = "h") -> AgentOutcome:
    """`task` ended DONE with `output`, its conversation the input plus `said` (by `agent`)."""
    conv = Conversation.of(*messages_from(task.input), *(AssistantMessage(content=t, agent=agent) for t in said))
    return AgentOutcome(task_id=task.task_id, machine=task.machine, phase=Phase.DONE, output=output, conversation=conv)


def failed(task: AgentTask, failure: Failure, *said: str, agent: str = "h") -> AgentOutcome:
    """`task` ended FAILED with `failure`, its conversation the input plus `said` (by `agent`)."""
    conv = Conversation.of(*messages_from(task.input), *(AssistantMessage(content=t, agent=agent) for t in said))
    return AgentOutcome(task_id=task.task_id, machine=task.machine, phase=Phase.FAILED, failure=failure, conversation=conv)


# -- EventDriven -----------------------------------------------------------------------------------
def bus_machine() -> EventDrivenMachine:
    return EventDriven("bus", {"ping": Agent("pinger"), "data.received": Agent("an")}).machine


def test_an_event_driven_pattern_is_named_and_needs_a_handler() -> None:
    m = bus_machine()
    assert m.name == "event_driven:bus" and EventDrivenMachine("bus", {"e": Agent("h")}).name == "event_driven:bus"
    with pytest.raises(InvalidDefinition, match=r"^event_driven:bus: at least one handler is required$"):
        EventDrivenMachine("bus", {})


def test_an_event_type_as_a_string_starts_its_handler_with_no_data_under_the_default_run_id() -> None:
    m = bus_machine()
    step = m.start("ping")
    task = only_task(step)
    assert task.machine == "ping"
    assert [m.content for m in task.input] == ["Event ping: null"]
    s = step.snapshot
    assert (s.phase, s.data.event_type, s.data.sent, s.conversation.id) == (Phase.EXECUTING, "ping", 1, "run")
    assert m.start(EventInput.of("ping"), run_id="bus/7").snapshot.conversation.id == "bus/7"


def test_the_context_given_to_start_is_the_runs_context() -> None:
    ctx = {"user": "u1"}
    assert bus_machine().start("ping", ctx).snapshot.context is ctx


def test_an_unknown_event_type_is_refused_naming_the_pattern_and_the_known_types() -> None:
    with pytest.raises(UnknownEventType) as info:
        bus_machine().start(EventInput.of("disk.full", {"free": 0}))
    err = info.value
    assert (err.event_type, err.known) == ("disk.full", ("ping", "data.received"))
    assert str(err) == (
        "event_driven:bus: no handler for event type 'disk.full'; register one in handlers= (known: ping, data.received)"
    )


def test_event_data_is_json_with_sorted_keys_and_non_json_values_as_text() -> None:
    """The handler reads the data as JSON whose keys are sorted (two equal dicts give the same
    message, whatever their insertion order) and whose non-JSON values are their `str`."""
    when = datetime.date(2026, 11, 30)
    event = EventInput.of("data.received", {"z": 1, "a": when})
    assert event.data_json == '{"a": "2026-11-30", "z": 1}'
    task = only_task(bus_machine().start(event))
    assert task.input[-1].content == 'Event data.received: {"a": "2026-11-30", "z": 1}'
    assert EventInput.of("ping", {"b": 2, "a": 1}).data_json == EventInput.of("ping", {"a": 1, "b": 2}).data_json


def test_the_handler_gets_the_history_then_the_event_and_its_answer_is_folded() -> None:
    m = bus_machine()
    history = (UserMessage(content="earlier"), AssistantMessage(content="noted", agent="an"))
    step = m.start(EventInput.of("ping", "now", history))
    task = only_task(step)
    assert [x.content for x in task.input] == ["earlier", "noted", "Event ping: now"]
    step = m.step(step.snapshot, AgentsFinished(outcomes=(done(task, "pong", "pong", agent="pinger"),)))
    s = step.snapshot
    assert (s.phase, s.output) == (Phase.DONE, "pong")
    assert [(x.role, x.content) for x in s.conversation.messages[-2:]] == [
        ("user", "Event ping: now"),
        ("assistant", "pong"),
    ]
    assert s.conversation.messages[-1].agent == "pinger"


def test_a_handler_that_reports_no_conversation_is_folded_as_its_output_attributed_to_the_event_type() -> None:
    m = bus_machine()
    step = m.start("ping")
    task = only_task(step)
    outcome = AgentOutcome(task_id=task.task_id, machine=task.machine, phase=Phase.DONE, output={"n": 1})
    s = m.step(step.snapshot, AgentsFinished(outcomes=(outcome,))).snapshot
    last = s.conversation.messages[-1]
    assert (s.output, last.role, last.content, last.agent) == ({"n": 1}, "assistant", '{"n": 1}', "ping")


def test_a_failed_handler_fails_the_run_with_its_reason_keeping_what_it_said() -> None:
    m = bus_machine()
    step = m.start("ping")
    task = only_task(step)
    why = Failure(kind="model_error", message="pinger: HTTP 500")
    s = m.step(step.snapshot, AgentsFinished(outcomes=(failed(task, why, "half an answer"),))).snapshot
    assert (s.phase, s.output) == (Phase.FAILED, None)
    assert s.failure == Failure(
        kind="child_failed",
        message="event_driven:bus: the handler of 'ping' failed: model_error: pinger: HTTP 500",
        detail="ping",
    )
    assert [x.content for x in s.conversation.messages] == ["Event ping: null", "half an answer"]


def test_a_handler_with_no_outcome_fails_the_run_saying_so() -> None:
    m = bus_machine()
    s = m.step(m.start("ping").snapshot, AgentsFinished(outcomes=())).snapshot
    assert s.phase is Phase.FAILED and s.failure is not None
    assert s.failure.message == "event_driven:bus: the handler of 'ping' failed: no outcome was reported"
    assert len(s.conversation) == 1


def test_a_handler_stopped_by_a_usage_limit_stops_the_run_on_that_limit() -> None:
    m = bus_machine()
    step = m.start("ping")
    limit = Failure(kind="usage_limit", message="agent:pinger: the tokens limit was exceeded", detail="tokens")
    s = m.step(step.snapshot, AgentsFinished(outcomes=(failed(only_task(step), limit),))).snapshot
    assert s.failure is not None and (s.failure.kind, s.failure.detail) == ("usage_limit", "tokens")


def test_the_example_inputs_start_every_handler_with_and_without_data() -> None:
    m = bus_machine()
    examples = m.example_inputs()
    assert all(isinstance(e, EventInput) for e in examples)
    assert sorted((e.event_type, e.data is None) for e in examples) == [
        ("data.received", False),
        ("data.received", True),
        ("ping", False),
        ("ping", True),
    ]
    assert {only_task(m.start(e)).machine for e in examples} == {"ping", "data.received"}


def test_the_event_driven_transition_bound_is_reached_by_a_handled_event() -> None:
    """`max_transitions()` is a tight bound: the longest run (a handled event) takes exactly it."""
    m = bus_machine()
    step = m.start("ping")
    step = m.step(step.snapshot, AgentsFinished(outcomes=(done(only_task(step), "ok", "ok"),)))
    assert step.snapshot.phase is Phase.DONE and step.snapshot.step == m.max_transitions()


# -- Parallel / Competitive ------------------------------------------------------------------------
def fan_out(step: Step) -> RunAgents:
    (effect,) = step.effects
    assert isinstance(effect, RunAgents)
    return effect


def test_parallel_definition_errors_name_the_pattern_and_the_problem() -> None:
    with pytest.raises(InvalidDefinition, match=r"^parallel:team: on_failure must be 'fail' or 'report', got 'skip'$"):
        Parallel("team", [Agent("a")], on_failure="skip")  # type: ignore[arg-type]
    with pytest.raises(InvalidDefinition, match=r"^parallel:team: max_concurrency must be >= 1$"):
        Parallel("team", [Agent("a")], max_concurrency=0)
    with pytest.raises(InvalidDefinition, match=r"^parallel:team: two different branches are named 'a'"):
        Parallel("team", [Agent("a"), Agent("a")])
    with pytest.raises(InvalidDefinition, match=r"^parallel:team: a branch is named 'synthesizer'; rename it$"):
        Parallel("team", [Agent("synthesizer")], synthesizer=Agent("s"))
    with pytest.raises(InvalidDefinition, match=r"^competitive:duel: a candidate is named 'evaluator'; rename it$"):
        Competitive("duel", [Agent("evaluator")], Agent("judge"))
    with pytest.raises(InvalidDefinition, match=r"^competitive:duel: an evaluator is required$"):
        Competitive("duel", [Agent("a")], None)


def test_one_branch_at_a_time_is_a_valid_concurrency_and_reaches_the_fan_out() -> None:
    p = Parallel("team", [Agent("a"), Agent("b")], max_concurrency=1)
    assert p.max_concurrency == 1 and fan_out(p.start("q")).max_concurrency == 1
    duel = Competitive("duel", [Agent("a"), Agent("b")], Agent("judge"), max_concurrency=1)
    assert fan_out(duel.start("q")).max_concurrency == 1
    assert fan_out(Parallel("team", [Agent("a")]).start("q")).max_concurrency is None  # the run's limit applies


def test_the_fan_out_gives_each_branch_its_own_task_under_the_run_id_and_context() -> None:
    a = Agent("a")
    p = Parallel("team", [a, Agent("b"), a])  # a branch may repeat: each run is its own task
    ctx = {"user": "u1"}
    step = p.start("q", ctx, run_id="r5")
    s = step.snapshot
    assert (s.phase, s.conversation.id, s.data.sent, s.data.synthesizing) == (Phase.EXECUTING, "r5", 1, False)
    assert s.context is ctx and p.start("q").snapshot.conversation.id == "run"
    tasks = fan_out(step).tasks
    assert [(t.task_id, t.machine) for t in tasks] == [("0.0.a", "a"), ("0.1.b", "b"), ("0.2.a", "a")]
    assert all([m.content for m in t.input] == ["q"] for t in tasks)


def test_a_failed_branch_reports_no_output_even_a_partial_one() -> None:
    p = Parallel("team", [Agent("a"), Agent("b")], on_failure="report")
    a, b = fan_out(p.start("q")).tasks
    partial = AgentOutcome(
        task_id=b.task_id,
        machine="b",
        phase=Phase.FAILED,
        output="half",
        failure=Failure(kind="model_error", message="cut off"),
    )
    s = p.step(p.start("q").snapshot, AgentsFinished(outcomes=(done(a, "A", "A", agent="a"), partial))).snapshot
    assert (s.phase, s.output) == (Phase.DONE, ("A", None))
    assert [m.content for m in s.conversation.messages] == ["q", "[a] A", "[b] (failed: model_error: cut off)"]


def test_fan_in_names_results_by_branch_and_extra_outcomes_by_their_machine() -> None:
    """Results are named by the branch at their position (what the runtime reports as `machine`
    does not matter); an outcome past the last branch (a hand-made event) by its `machine`."""
    p = Parallel("team", [Agent("a"), Agent("b")])
    a, b = fan_out(p.start("q")).tasks
    outcomes = (
        AgentOutcome(task_id=a.task_id, machine="agent:a", phase=Phase.DONE, output="A"),
        AgentOutcome(task_id=b.task_id, machine="agent:b", phase=Phase.DONE, output="B"),
        AgentOutcome(task_id="0.2.c", machine="c", phase=Phase.DONE, output="C"),
    )
    s = p.step(p.start("q").snapshot, AgentsFinished(outcomes=outcomes)).snapshot
    assert s.output == ("A", "B", "C")
    assert [(m.content, m.agent) for m in s.conversation.messages[1:]] == [("[a] A", "a"), ("[b] B", "b"), ("[c] C", "c")]


@pytest.mark.parametrize("on_failure", ["fail", "report"])
def test_a_fan_out_with_no_outcome_fails_saying_so(on_failure: Any) -> None:
    p = Parallel("team", [Agent("a")], on_failure=on_failure)
    s = p.step(p.start("q").snapshot, AgentsFinished(outcomes=())).snapshot
    assert s.phase is Phase.FAILED and s.failure is not None
    which = "every" if on_failure == "report" else "0 of 0"
    assert s.failure.message == f"parallel:team: {which} branch(es) failed: no outcome was reported"


def test_a_branch_stopped_by_a_usage_limit_stops_the_fan_out_on_that_limit() -> None:
    p = Parallel("team", [Agent("a"), Agent("b")])
    a, b = fan_out(p.start("q")).tasks
    limit = Failure(kind="usage_limit", message="agent:b: the requests limit was exceeded", detail="requests")
    s = p.step(p.start("q").snapshot, AgentsFinished(outcomes=(done(a, "A"), failed(b, limit)))).snapshot
    assert s.failure is not None and (s.failure.kind, s.failure.detail) == ("usage_limit", "requests")


def synthesizing(p: Parallel) -> Step:
    """`p` after every branch answered `<BRANCH>` (uppercased name): the synthesizer's fan-out."""
    step = p.start("q")
    outcomes = tuple(done(t, t.machine.upper(), t.machine.upper(), agent=t.machine) for t in fan_out(step).tasks)
    observed = p.step(step.snapshot, AgentsFinished(outcomes=outcomes))
    assert observed.snapshot.phase is Phase.EXECUTING
    return observed


def test_the_synthesizer_gets_the_input_and_the_branch_results_and_its_answer_is_the_output() -> None:
    p = Parallel("team", [Agent("a"), Agent("b")], synthesizer=Agent("s"))
    step = synthesizing(p)
    s = step.snapshot
    assert (s.output, s.data.synthesizing, s.data.sent) == (None, True, 3)  # no fan-in output while it runs
    task = only_task(step)
    assert (task.task_id, task.machine) == ("2.0.synthesizer", "synthesizer")
    assert [m.content for m in task.input] == ["q", "[a] A", "[b] B"]
    outcome = done(task, "A+B", "thinking", "A+B", agent="s")
    s = p.step(s, AgentsFinished(outcomes=(outcome,))).snapshot
    assert (s.phase, s.output, s.step) == (Phase.DONE, "A+B", p.max_transitions())
    assert [m.content for m in s.conversation.messages] == ["q", "[a] A", "[b] B", "thinking", "A+B"]


def test_a_synthesizer_that_reports_no_conversation_is_folded_as_its_output_attributed_to_its_role() -> None:
    c = Competitive("duel", [Agent("a"), Agent("b")], Agent("judge"))
    task = only_task(step := synthesizing(c))
    outcome = AgentOutcome(task_id=task.task_id, machine=task.machine, phase=Phase.DONE, output="b wins")
    s = c.step(step.snapshot, AgentsFinished(outcomes=(outcome,))).snapshot
    last = s.conversation.messages[-1]
    assert (s.phase, s.output, last.content, last.agent) == (Phase.DONE, "b wins", "b wins", "evaluator")
    assert len(s.conversation) == 4


def test_a_failed_synthesizer_keeps_what_it_said_and_leaves_no_output() -> None:
    p = Parallel("team", [Agent("a"), Agent("b")], synthesizer=Agent("s"))
    task = only_task(step := synthesizing(p))
    why = Failure(kind="model_error", message="s: HTTP 500")
    s = p.step(step.snapshot, AgentsFinished(outcomes=(failed(task, why, "half a summary", agent="s"),))).snapshot
    assert (s.phase, s.output) == (Phase.FAILED, None)
    assert s.failure == Failure(
        kind="child_failed", message="parallel:team: the synthesizer failed: model_error: s: HTTP 500", detail="synthesizer"
    )
    assert [m.content for m in s.conversation.messages] == ["q", "[a] A", "[b] B", "half a summary"]
    limit = Failure(kind="usage_limit", message="agent:s: the tokens limit was exceeded", detail="tokens")
    stopped = p.step(step.snapshot, AgentsFinished(outcomes=(failed(task, limit),))).snapshot.failure
    assert stopped is not None and (stopped.kind, stopped.detail) == ("usage_limit", "tokens")


def test_a_synthesizer_run_with_a_failed_extra_outcome_keeps_the_synthesizers_answer_attributed_to_it() -> None:
    """A hand-made event may report more than the synthesizer's outcome: any failed one fails the
    pattern, and what the synthesizer said is still kept, attributed to its role."""
    p = Parallel("team", [Agent("a")], synthesizer=Agent("s"))
    task = only_task(step := synthesizing(p))
    answered = AgentOutcome(task_id=task.task_id, machine=task.machine, phase=Phase.DONE, output="sum")
    extra = AgentOutcome(task_id="x", machine="x", phase=Phase.FAILED, failure=Failure(kind="model_error", message="m"))
    s = p.step(step.snapshot, AgentsFinished(outcomes=(answered, extra))).snapshot
    last = s.conversation.messages[-1]
    assert (s.phase, last.content, last.agent) == (Phase.FAILED, "sum", "synthesizer")


@pytest.mark.parametrize("synthesizer", [False, True])
def test_the_parallel_transition_bound_is_reached_by_a_successful_run(synthesizer: bool) -> None:
    """`max_transitions()` is a tight bound: a run that succeeds takes exactly it (fan-in, and
    with a synthesizer its run and answer)."""
    p = Parallel("team", [Agent("a"), Agent("b")], synthesizer=Agent("s") if synthesizer else None)
    if synthesizer:
        step = synthesizing(p)
        step = p.step(step.snapshot, AgentsFinished(outcomes=(done(only_task(step), "AB", "AB"),)))
    else:
        step = p.start("q")
        step = p.step(step.snapshot, AgentsFinished(outcomes=tuple(done(t, "x", "x") for t in fan_out(step).tasks)))
    assert step.snapshot.phase is Phase.DONE and step.snapshot.step == p.max_transitions()
