"""Behaviour of `ManagerWorker` that mutation testing (`make mutation`, docs/mutation.md) checks,
driven through the pure `start`/`step`: its definition errors, the `delegate_to_<worker>` tools it
offers, the start snapshot, how a manager reply is attributed, the step budget, delegation and
the fold of the workers' outcomes, unknown tools, and the manager's final answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from fsm_agents import Agent, CallModel, InvalidDefinition, ModelReplied, Phase, Step
from fsm_agents.events import AgentOutcome, AgentsFinished, RunAgents
from fsm_agents.machine import Machine
from fsm_agents.models import call, reply
from fsm_agents.patterns import ManagerWorker, Sequential
from fsm_agents.patterns.manager import ManagerWorkerData
from fsm_agents.state import AssistantMessage, Failure, ToolCall


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True)
    x: int


class Wrapped:
    """A worker given as an object with a `.machine` (neither an `Agent` nor a `Machine`)."""

    def __init__(self, name: str, machine: Machine) -> None:
        self.name = name
        self.machine = machine


def team(*workers: Any, **manager: Any) -> ManagerWorker:
    return ManagerWorker("team", Agent("boss", **manager), workers or [Agent("a"), Agent("b")])


def after(m: ManagerWorker, step: Step, message: AssistantMessage) -> Step:
    return m.step(step.snapshot, ModelReplied(message=message))


def tool_answers(step: Step) -> list[tuple[str, str | None, str | None, bool]]:
    return [(m.tool_call_id, m.name, m.content, m.is_error) for m in step.snapshot.conversation.messages if m.role == "tool"]


def only_call_model(step: Step) -> CallModel:
    (effect,) = step.effects
    assert isinstance(effect, CallModel)
    return effect


# -- definition ------------------------------------------------------------------------------------
def test_definition_errors_name_the_pattern_and_the_problem() -> None:
    def lookup(q: str) -> str:
        """Look up."""
        return q

    assert team().name == "manager_worker:team"
    with pytest.raises(InvalidDefinition, match=r"^manager_worker name 't m' must be 1-64 letters"):
        ManagerWorker("t m", Agent("boss"), [Agent("a")])
    with pytest.raises(InvalidDefinition, match=r"^manager_worker:team: the manager must be an Agent$"):
        ManagerWorker("team", Agent("boss").machine, [Agent("a")])  # type: ignore[arg-type]
    has_tools = r"^manager_worker:team: the manager 'boss' has tools or handoffs; give tools to a worker instead$"
    with pytest.raises(InvalidDefinition, match=has_tools):
        ManagerWorker("team", Agent("boss", tools=[lookup]), [Agent("a")])
    with pytest.raises(InvalidDefinition, match=has_tools):
        ManagerWorker("team", Agent("boss", handoffs=[Agent("x")]), [Agent("a")])
    with pytest.raises(InvalidDefinition, match=r"^manager_worker:team: at least one worker is required$"):
        ManagerWorker("team", Agent("boss"), [])
    with pytest.raises(
        InvalidDefinition, match=r"^manager_worker:team: two different workers are named 'a'; give them distinct names$"
    ):
        ManagerWorker("team", Agent("boss"), [Agent("a"), Agent("a")])


def test_each_worker_is_a_delegate_tool_described_by_what_it_is() -> None:
    """A worker's tool says what the worker is: an agent's description, else the first 200
    characters of its instructions; a pattern's or a machine's name; nothing more for an agent
    with neither. A worker listed twice is one tool; only the manager is offered the tools."""
    long = "x" * 199 + "yz"
    found = Agent("found", "ignored when described", description="Finds things")
    workers = [
        found,
        Agent("brief", long),
        Agent("plain"),
        Sequential("pipe", [Agent("s")]),
        Agent("raw").machine,
        Wrapped("wrapped", Agent("inner").machine),
        found,
    ]
    mw = ManagerWorker("team", Agent("boss", max_steps=4), workers)
    specs = mw.tool_specs("boss")
    assert [(s.name, s.description) for s in specs] == [
        ("delegate_to_found", "Delegate a task to the found worker. Finds things"),
        ("delegate_to_brief", f"Delegate a task to the brief worker. {long[:200]}"),
        ("delegate_to_plain", "Delegate a task to the plain worker."),
        ("delegate_to_pipe", "Delegate a task to the pipe worker. (sequential:pipe)"),
        ("delegate_to_raw", "Delegate a task to the raw worker. (agent:raw)"),
        ("delegate_to_wrapped", "Delegate a task to the wrapped worker. (agent:inner)"),
    ]
    schema = {
        "type": "object",
        "properties": {"task": {"type": "string", "description": "What the worker must do, self-contained."}},
        "required": ["task"],
    }
    assert all(json.loads(s.parameters_json) == schema for s in specs)
    assert mw.tool_specs("found") == () and mw.tool_specs("team") == ()
    assert only_call_model(mw.start("go")).request.tools == specs
    assert mw.max_steps == 4 and mw.max_transitions() == 12


def test_start_asks_the_manager_under_the_run_id_with_the_context() -> None:
    mw = team()
    step = mw.start("go")
    s = step.snapshot
    assert (s.phase, s.machine, s.agent, s.step, s.conversation.id) == (
        Phase.PLANNING,
        "manager_worker:team",
        "boss",
        0,
        "run",
    )
    assert s.data == ManagerWorkerData() and s.pending == ()
    effect = only_call_model(step)
    assert effect.agent == "boss" and [m.content for m in effect.request.messages] == ["go"]
    context = Answer(x=7)
    s = mw.start("go", context, run_id="r1").snapshot
    assert s.conversation.id == "r1" and s.context is context and s.agent == "boss"


# -- a manager reply -------------------------------------------------------------------------------
def test_a_reply_is_attributed_to_the_manager_and_its_call_ids_made_unique() -> None:
    """Tool call ids that repeat (or are empty) are replaced by `call_<step>_<index>` so every
    tool result answers exactly one call; distinct ids are kept; the reply is the manager's."""
    mw = team()
    start = mw.start("go")
    step = after(mw, start, reply(None, call("delegate_to_a", "x", task="t1"), call("delegate_to_b", "x", task="t2")))
    message = step.snapshot.conversation.messages[-1]
    assert isinstance(message, AssistantMessage) and message.agent == "boss"
    assert [c.id for c in message.tool_calls] == ["call_1_0", "call_1_1"]
    assert [c.id for c in step.snapshot.pending] == ["call_1_0", "call_1_1"]

    step = after(mw, start, reply(None, ToolCall(id="", name="delegate_to_a")))
    assert [c.id for c in step.snapshot.conversation.messages[-1].tool_calls] == ["call_1_0"]

    kept = AssistantMessage(
        content=None, tool_calls=(call("delegate_to_a", "c1"), call("delegate_to_b", "c2")), agent="else"
    )
    step = after(mw, start, kept)
    message = step.snapshot.conversation.messages[-1]
    assert message.agent == "boss" and [c.id for c in message.tool_calls] == ["c1", "c2"]

    step = after(mw, start, reply("the answer"))
    assert step.snapshot.conversation.messages[-1] == AssistantMessage(content="the answer", agent="boss")


def test_tool_calls_past_the_step_budget_fail_answering_every_call() -> None:
    mw = team(max_steps=1)
    step = after(mw, mw.start("go"), reply(None, call("delegate_to_a", "x", task="t"), call("nope", "x")))
    s = step.snapshot
    assert s.phase is Phase.FAILED and step.effects == ()
    assert s.failure == Failure(
        kind="budget_exhausted",
        message="manager_worker:team: the manager made 1 model call (max_steps=1) and still asked for tools",
        detail="delegate_to_a, nope",
    )
    note = "not executed: the step budget of 1 model call is exhausted"
    assert tool_answers(step) == [("call_1_0", "delegate_to_a", note, True), ("call_1_1", "nope", note, True)]
    assert [c.id for c in s.conversation.messages[1].tool_calls] == ["call_1_0", "call_1_1"]
    assert s.conversation.messages[1].agent == "boss"


# -- delegation ------------------------------------------------------------------------------------
def test_delegations_run_the_workers_and_their_outcomes_become_tool_results() -> None:
    """Each `delegate_to_<w>` call runs worker `w` (task id `<step>.<call index>.<w>`) on the
    call's `task`, or on its raw arguments when they are not `{"task": "<text>"}`; every call of
    the reply is answered, in call order: the output, the failure, a missing outcome, an unknown
    tool. Then the manager is asked again with the results."""
    mw = team(Agent("a"), Agent("b"), Agent("c"), Agent("d"), Agent("e"))
    calls = (
        call("delegate_to_a", "x", task="t1"),
        call("nope", "x"),
        call("delegate_to_b", "x", job="x"),
        ToolCall(id="x", name="delegate_to_c", arguments="[1]"),
        call("delegate_to_d", "x", task=5),
        ToolCall(id="x", name="delegate_to_e", arguments="not json"),
    )
    step = after(mw, mw.start("go"), reply(None, *calls))
    s = step.snapshot
    assert s.phase is Phase.EXECUTING and s.agent is None
    assert [c.id for c in s.pending] == [f"call_1_{i}" for i in range(6)]
    assert s.data == ManagerWorkerData(turns=1, delegated=(0, 2, 3, 4, 5))
    (effect,) = step.effects
    assert isinstance(effect, RunAgents) and effect.key == "run/1/0"
    assert [(t.task_id, t.machine, t.input) for t in effect.tasks] == [
        ("1.0.a", "a", "t1"),
        ("1.2.b", "b", '{"job": "x"}'),
        ("1.3.c", "c", "[1]"),
        ("1.4.d", "d", '{"task": 5}'),
        ("1.5.e", "e", "not json"),
    ]
    a, b, c, d, _ = effect.tasks
    outcomes = (
        AgentOutcome(task_id=a.task_id, machine="a", phase=Phase.DONE, output="A out"),
        AgentOutcome(
            task_id=b.task_id, machine="b", phase=Phase.FAILED, failure=Failure(kind="model_error", message="boom")
        ),
        AgentOutcome(task_id=c.task_id, machine="c", phase=Phase.DONE, output={"n": 1}),
        AgentOutcome(task_id=d.task_id, machine="d", phase=Phase.DONE, output=None),
    )  # no outcome for e
    step = mw.step(s, AgentsFinished(outcomes=outcomes))
    s = step.snapshot
    assert tool_answers(step) == [
        ("call_1_0", "delegate_to_a", "A out", False),
        ("call_1_1", "nope", "Error: unknown tool; the tools are: " + ", ".join(f"delegate_to_{w}" for w in "abcde"), True),
        ("call_1_2", "delegate_to_b", "Error: the b worker failed: model_error: boom", True),
        ("call_1_3", "delegate_to_c", '{"n": 1}', False),
        ("call_1_4", "delegate_to_d", "", False),
        ("call_1_5", "delegate_to_e", "Error: no result was reported for this delegation", True),
    ]
    assert s.phase is Phase.PLANNING and s.agent == "boss" and s.pending == ()
    assert s.data == ManagerWorkerData(turns=2)
    effect = only_call_model(step)
    assert effect.agent == "boss" and effect.request.messages == s.conversation.messages

    step = after(mw, step, reply(None, call("delegate_to_a", "y", task="again")))
    assert step.snapshot.phase is Phase.EXECUTING and step.snapshot.data == ManagerWorkerData(turns=2, delegated=(0,))


def test_delegating_past_the_budget_counts_every_manager_call() -> None:
    mw = team(max_steps=2)
    step = after(mw, mw.start("go"), reply(None, call("delegate_to_a", "c1", task="t")))
    (effect,) = step.effects
    assert isinstance(effect, RunAgents)
    done = AgentOutcome(task_id=effect.tasks[0].task_id, machine="a", phase=Phase.DONE, output="ok")
    step = mw.step(step.snapshot, AgentsFinished(outcomes=(done,)))
    step = after(mw, step, reply(None, call("delegate_to_a", "c2", task="t")))
    s = step.snapshot
    assert s.phase is Phase.FAILED and s.failure is not None
    assert s.failure.message == "manager_worker:team: the manager made 2 model calls (max_steps=2) and still asked for tools"


# -- unknown tools ---------------------------------------------------------------------------------
def test_calls_to_unknown_tools_only_are_answered_and_the_manager_asked_again() -> None:
    mw = team(max_steps=3)
    step = after(mw, mw.start("go"), reply(None, call("nope", "x"), call("rm", "x")))
    s = step.snapshot
    assert s.phase is Phase.PLANNING and s.agent == "boss" and s.data == ManagerWorkerData(turns=2)
    error = "Error: unknown tool; the tools are: delegate_to_a, delegate_to_b"
    assert tool_answers(step) == [("call_1_0", "nope", error, True), ("call_1_1", "rm", error, True)]
    assert [m.role for m in s.conversation.messages] == ["user", "assistant", "tool", "tool"]
    assert s.conversation.messages[1].agent == "boss"
    assert [c.id for c in s.conversation.messages[1].tool_calls] == ["call_1_0", "call_1_1"]
    assert only_call_model(step).request.messages == s.conversation.messages

    step = after(mw, step, reply(None, call("nope", "y")))
    assert step.snapshot.phase is Phase.PLANNING and step.snapshot.data == ManagerWorkerData(turns=3)
    step = after(mw, step, reply(None, call("nope", "z")))
    assert step.snapshot.phase is Phase.FAILED and step.snapshot.failure is not None
    assert step.snapshot.failure.kind == "budget_exhausted" and "made 3 model calls" in step.snapshot.failure.message


# -- the final answer ------------------------------------------------------------------------------
def test_the_managers_final_answer_is_validated_as_its_output_type() -> None:
    mw = team(output_type=Answer)
    start = mw.start("go")
    step = after(mw, start, reply('{"x": 1}'))
    s = step.snapshot
    assert s.phase is Phase.DONE and s.output == Answer(x=1) and s.failure is None and step.effects == ()
    assert s.conversation.messages[-1] == AssistantMessage(content='{"x": 1}', agent="boss")

    for content, why in [
        ("not json", "the final answer does not match Answer: (root): Invalid JSON"),
        ('{"x": "y"}', "the final answer does not match Answer: x: Input should be a valid integer"),
        ("", "the reply was empty: answer the user, or call a tool"),
    ]:
        step = after(mw, start, reply(content))
        s = step.snapshot
        assert s.phase is Phase.FAILED and s.output is None and step.effects == ()
        assert s.failure is not None and (s.failure.kind, s.failure.detail) == ("invalid_output", content)
        assert s.failure.message.startswith(f"manager_worker:team: manager boss: {why}")
        assert [m.role for m in s.conversation.messages] == ["user", "assistant"]
        assert s.conversation.messages[-1] == AssistantMessage(content=content, agent="boss")

    step = after(team(), start, reply("   "))
    assert step.snapshot.phase is Phase.FAILED and step.snapshot.failure is not None
    assert step.snapshot.failure.kind == "invalid_output"
    step = after(team(), start, reply("plain text"))
    assert step.snapshot.phase is Phase.DONE and step.snapshot.output == "plain text"


def test_a_manager_reply_with_tool_calls_is_never_its_final_answer() -> None:
    mw = team(output_type=Answer)
    step = after(mw, mw.start("go"), reply('{"x": 1}', call("nope", "c1")))
    assert step.snapshot.phase is Phase.PLANNING and step.snapshot.output is None
