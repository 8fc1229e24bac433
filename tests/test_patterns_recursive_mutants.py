"""Behaviour of `Recursive` that mutation testing (`make mutation`, docs/mutation.md) checks,
driven through the pure `start`/`step`: its definition errors, the request to the decomposer,
the three ways a decomposition goes (execute, subtasks one level deeper, depth exhausted), how
child results are folded and joined, the synthesizer, and the failures, which name the child
that failed and where."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from fsm_agents import Agent, InvalidDefinition, ModelReplied, Phase, Step
from fsm_agents.events import AgentOutcome, AgentsFinished, AgentTask, CallModel, RunAgents
from fsm_agents.models import reply
from fsm_agents.patterns import Recursive
from fsm_agents.patterns.recursive import Decomposition, RecursiveTask
from fsm_agents.state import AssistantMessage, Conversation, EmptyContext, Failure, Message, UserMessage

EXECUTE = '{"action": "EXECUTE"}'


def decompose(*subtasks: str) -> str:
    return json.dumps({"action": "DECOMPOSE", "subtasks": list(subtasks)})


def rec(max_depth: int = 1, **options: Any) -> Recursive:
    return Recursive("rec", Agent("dec", "Split tasks."), Agent("exe"), max_depth, **options)


def replied(r: Recursive, step: Step, text: str) -> Step:
    return r.step(step.snapshot, ModelReplied(message=reply(text)))


def finished(r: Recursive, step: Step, *outcomes: AgentOutcome) -> Step:
    return r.step(step.snapshot, AgentsFinished(outcomes=outcomes))


def done(task_id: str, output: Any, *conversation: Message) -> AgentOutcome:
    machine = task_id.rsplit(".", 1)[1]
    conv = Conversation.of(*conversation, id=f"run/{task_id}") if conversation else None
    return AgentOutcome(task_id=task_id, machine=machine, phase=Phase.DONE, output=output, conversation=conv)


def failed(task_id: str, kind: str, message: str, detail: str | None = None) -> AgentOutcome:
    failure = Failure(kind=kind, message=message, detail=detail)
    return AgentOutcome(task_id=task_id, machine=task_id.rsplit(".", 1)[1], phase=Phase.FAILED, failure=failure)


def said(content: str, agent: str) -> AssistantMessage:
    """The message a validated constructor makes: the pattern's own must equal it, field for field."""
    return AssistantMessage(role="assistant", content=content, tool_calls=(), agent=agent)


def assert_made_whole(messages: Any) -> None:
    for m in messages:
        assert m.model_fields_set == set(type(m).model_fields) and isinstance(m.tool_calls, tuple)


# -- definition ------------------------------------------------------------------------------------
def test_definition_errors_name_the_pattern_and_the_problem() -> None:
    with pytest.raises(InvalidDefinition, match=r"^recursive:rec: the decomposer must be an Agent$"):
        Recursive("rec", "dec", Agent("exe"), 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidDefinition, match=r"^recursive:rec: max_depth must be >= 0, got -1$"):
        Recursive("rec", Agent("dec"), Agent("exe"), -1)
    with pytest.raises(InvalidDefinition, match=r"^recursive:rec: on_depth_exhausted must be 'fail' or 'execute'$"):
        Recursive("rec", Agent("dec"), Agent("exe"), 1, on_depth_exhausted="retry")  # type: ignore[arg-type]


def test_max_depth_zero_is_a_pattern_that_never_decomposes() -> None:
    r = Recursive("rec", Agent("dec"), Agent("exe"), 0, on_depth_exhausted="execute")
    assert (r.name, r.max_depth, r.on_depth_exhausted, r.has_synthesizer) == ("recursive:rec", 0, "execute", False)
    assert list(r.children()) == ["executor", "subtask"] and r.children()["subtask"] is r
    step = replied(r, r.start("goal"), decompose("a", "b"))  # at depth 0 = max_depth: the executor runs instead
    (effect,) = step.effects
    assert isinstance(effect, RunAgents) and [t.machine for t in effect.tasks] == ["executor"]
    assert Recursive("rec", Agent("dec"), Agent("exe"), 0).on_depth_exhausted == "fail"


# -- the decomposer's request ----------------------------------------------------------------------
def test_the_decomposer_is_asked_for_a_decomposition_without_tools_and_told_the_depth() -> None:
    r = rec(max_depth=2)
    first = r.start("goal")
    s = first.snapshot
    assert (s.phase, s.agent, s.conversation.id, s.context) == (Phase.PLANNING, "dec", "run", EmptyContext())
    (effect,) = first.effects
    assert isinstance(effect, CallModel) and effect.agent == "dec"
    request = effect.request
    assert request.tool_choice == "none"  # the agent's own default would be "auto"
    assert json.loads(request.output_schema_json or "null") == Decomposition.model_json_schema()
    assert request.instructions == (
        "Split tasks.\n\nThis task is at depth 0; tasks at depth 2 must not be decomposed further."
    )
    assert list(request.messages) == [UserMessage(content="goal")]


class Ctx(BaseModel):
    user: str


def test_a_subtask_run_starts_at_its_depth_under_its_run_id_with_its_context() -> None:
    r = Recursive("rec", Agent("dec"), Agent("exe"), 3)
    ctx = Ctx(user="ann")
    first = r.start(RecursiveTask(task="part", depth=2), ctx, run_id="r7")
    s = first.snapshot
    assert (s.conversation.id, s.context, s.agent, s.data.depth) == ("r7", ctx, "dec", 2)
    assert list(s.conversation.messages) == [UserMessage(content="part")]
    (effect,) = first.effects
    assert isinstance(effect, CallModel)
    assert effect.request.instructions == "This task is at depth 2; tasks at depth 3 must not be decomposed further."
    assert effect.key == "r7/0/0"


def test_the_longest_run_decompose_then_synthesize_takes_max_transitions() -> None:
    """`max_transitions` bounds every run, and the longest one (subtasks, then the synthesizer)
    reaches it: PLANNING → EXECUTING → OBSERVING → EXECUTING → DONE."""
    for synthesizer in (None, Agent("syn")):
        r = rec(synthesizer=synthesizer)
        step = replied(r, r.start("goal"), decompose("a"))
        step = finished(r, step, done("1.0.subtask", "A"))
        if synthesizer is not None:
            step = finished(r, step, done("3.0.synthesizer", "S"))
        assert step.snapshot.phase is Phase.DONE
        assert step.snapshot.step <= r.max_transitions()
    assert step.snapshot.step == r.max_transitions()


# -- the decomposition -----------------------------------------------------------------------------
def test_a_decomposition_is_kept_and_each_subtask_runs_one_level_deeper_under_its_own_id() -> None:
    r = rec(max_depth=2)
    step = replied(r, r.start(RecursiveTask(task="goal", depth=1)), decompose("a", "b", "c"))
    s = step.snapshot
    assert (s.phase, s.agent) == (Phase.EXECUTING, None)
    assert list(s.conversation.messages) == [UserMessage(content="goal"), said(decompose("a", "b", "c"), "dec")]
    assert_made_whole(s.conversation.messages[1:])
    (effect,) = step.effects
    assert isinstance(effect, RunAgents)
    assert list(effect.tasks) == [
        AgentTask(task_id=f"1.{i}.subtask", machine="subtask", input=RecursiveTask(task=t, depth=2))
        for i, t in enumerate("abc")
    ]


def test_execute_runs_the_executor_on_the_input_and_folds_only_its_new_messages() -> None:
    r = rec()
    step = replied(r, r.start("goal"), EXECUTE)
    assert (step.snapshot.phase, step.snapshot.agent) == (Phase.EXECUTING, None)
    assert list(step.snapshot.conversation.messages)[1:] == [said(EXECUTE, "dec")]
    (effect,) = step.effects
    assert isinstance(effect, RunAgents) and [(t.task_id, t.machine) for t in effect.tasks] == [("1.0.executor", "executor")]
    assert list(effect.tasks[0].input) == [UserMessage(content="goal")]  # the task, not the decomposer's note
    # the executor reports its conversation: the input it was given, then its answer
    answer = AssistantMessage(content="result", agent="exe")
    end = finished(r, step, done("1.0.executor", "result", UserMessage(content="goal"), answer))
    assert (end.snapshot.phase, end.snapshot.output, end.effects) == (Phase.DONE, "result", ())
    assert list(end.snapshot.conversation.messages) == [UserMessage(content="goal"), said(EXECUTE, "dec"), answer]
    # one that reports no conversation: its output, attributed to the executor
    end = finished(r, step, done("1.0.executor", "result"))
    assert list(end.snapshot.conversation.messages)[2:] == [said("result", "executor")]
    assert_made_whole(end.snapshot.conversation.messages[2:])


def test_at_max_depth_a_decomposition_fails_or_runs_the_executor_by_policy() -> None:
    r = rec(max_depth=1)
    step = replied(r, r.start(RecursiveTask(task="t", depth=1)), decompose("a", "b"))
    s = step.snapshot
    assert (s.phase, s.agent, step.effects) == (Phase.FAILED, None, ())
    assert s.failure == Failure(
        kind="budget_exhausted",
        message="recursive:rec: the decomposer split a task at depth 1 into 2 subtasks, but max_depth is 1",
        detail="1",
    )
    assert list(s.conversation.messages)[1:] == [said(decompose("a", "b"), "dec")]
    r = rec(max_depth=1, on_depth_exhausted="execute")
    step = replied(r, r.start(RecursiveTask(task="t", depth=1)), decompose("a", "b"))
    (effect,) = step.effects
    assert isinstance(effect, RunAgents) and [(t.machine, list(t.input)) for t in effect.tasks] == [
        ("executor", [UserMessage(content="t")])
    ]
    end = finished(r, step, done("1.0.executor", "did t"))
    assert (end.snapshot.phase, end.snapshot.output) == (Phase.DONE, "did t")


def test_an_invalid_decomposition_fails_saying_why() -> None:
    r = rec()
    step = replied(r, r.start("goal"), decompose())
    s = step.snapshot
    assert (s.phase, s.agent) == (Phase.FAILED, None) and s.failure is not None
    assert s.failure.kind == "invalid_output"
    assert s.failure.message.startswith("recursive:rec: decomposer dec: the final answer does not match Decomposition")
    assert s.failure.message.endswith("DECOMPOSE needs at least one subtask")
    assert list(s.conversation.messages)[1:] == [said(decompose(), "dec")]


# -- subtask results -------------------------------------------------------------------------------
def test_subtask_results_are_noted_in_order_and_joined_as_the_output() -> None:
    r = rec()
    step = replied(r, r.start("goal"), decompose("a", "b"))
    end = finished(r, step, done("1.0.subtask", "A"), done("1.1.subtask", {"n": 2}))
    s = end.snapshot
    assert (s.phase, end.effects) == (Phase.DONE, ())
    assert s.output == '1. a\nA\n\n2. b\n{"n": 2}'
    assert list(s.conversation.messages)[2:] == [
        said("[subtask 1: a] A", "subtask"),
        said('[subtask 2: b] {"n": 2}', "subtask"),
    ]
    assert_made_whole(s.conversation.messages[2:])


def test_fewer_outcomes_than_subtasks_are_folded_as_far_as_they_go() -> None:
    """The step never raises on a short `AgentsFinished`: the results it has are folded."""
    r = rec()
    step = replied(r, r.start("goal"), decompose("a", "b"))
    end = finished(r, step, done("1.0.subtask", "A"))
    assert (end.snapshot.phase, end.snapshot.output) == (Phase.DONE, "1. a\nA")
    assert list(end.snapshot.conversation.messages)[2:] == [said("[subtask 1: a] A", "subtask")]


def test_the_synthesizer_gets_the_whole_conversation_and_only_its_answer_is_kept() -> None:
    r = rec(synthesizer=Agent("syn"))
    step = replied(r, r.start("goal"), decompose("a", "b"))
    step = finished(r, step, done("1.0.subtask", "A"), done("1.1.subtask", "B"))
    s = step.snapshot
    assert (s.phase, s.output) == (Phase.EXECUTING, None)  # no joined text while the synthesizer runs
    given = [UserMessage(content="goal"), said(decompose("a", "b"), "dec"), said("[subtask 1: a] A", "subtask"),
             said("[subtask 2: b] B", "subtask")]  # fmt: skip
    assert list(s.conversation.messages) == given
    (effect,) = step.effects
    assert isinstance(effect, RunAgents) and [(t.task_id, t.machine) for t in effect.tasks] == [
        ("3.0.synthesizer", "synthesizer")
    ]
    assert list(effect.tasks[0].input) == given
    answer = AssistantMessage(content="both done", agent="syn")
    end = finished(r, step, done("3.0.synthesizer", "both done", *given, answer))
    assert (end.snapshot.phase, end.snapshot.output) == (Phase.DONE, "both done")
    assert list(end.snapshot.conversation.messages) == [*given, answer]
    end = finished(r, step, done("3.0.synthesizer", "both done"))  # no conversation reported
    assert list(end.snapshot.conversation.messages) == [*given, said("both done", "synthesizer")]
    assert_made_whole(end.snapshot.conversation.messages[-1:])


# -- failed children -------------------------------------------------------------------------------
def test_a_failed_executor_or_synthesizer_is_named_and_leaves_no_output() -> None:
    r = rec(synthesizer=Agent("syn"))
    step = replied(r, r.start(RecursiveTask(task="t", depth=1)), EXECUTE)
    end = finished(r, step, failed("1.0.executor", "model_error", "boom"))
    assert (end.snapshot.phase, end.snapshot.output) == (Phase.FAILED, None)
    assert end.snapshot.failure == Failure(
        kind="child_failed",
        message="recursive:rec: the executor failed at depth 1: executor 1.0.executor (model_error: boom)",
    )
    step = replied(r, r.start("goal"), decompose("a"))
    step = finished(r, step, done("1.0.subtask", "A"))
    end = finished(r, step, failed("3.0.synthesizer", "model_error", "down"))
    assert (end.snapshot.phase, end.snapshot.output) == (Phase.FAILED, None)
    assert end.snapshot.failure == Failure(
        kind="child_failed",
        message="recursive:rec: the synthesizer failed at depth 0: synthesizer 3.0.synthesizer (model_error: down)",
    )


def test_failed_subtasks_are_each_named_and_those_that_succeeded_are_not() -> None:
    r = rec(max_depth=3)
    step = replied(r, r.start(RecursiveTask(task="t", depth=2)), decompose("a", "b", "c"))
    end = finished(
        r,
        step,
        failed("1.0.subtask", "budget_exhausted", "too deep", detail="3"),
        done("1.1.subtask", "B"),
        failed("1.2.subtask", "invalid_output", "nonsense"),
    )
    assert end.snapshot.phase is Phase.FAILED and end.snapshot.output is None
    assert end.snapshot.failure == Failure(
        kind="child_failed",
        message="recursive:rec: a subtask failed at depth 2: "
        "subtask 1.0.subtask (budget_exhausted: too deep); subtask 1.2.subtask (invalid_output: nonsense)",
    )


def test_no_outcome_at_all_is_a_failure_that_says_so() -> None:
    r = rec()
    step = replied(r, r.start("goal"), EXECUTE)
    end = finished(r, step)
    assert end.snapshot.failure == Failure(
        kind="child_failed", message="recursive:rec: the executor failed at depth 0: no outcome was reported"
    )


def test_a_subtask_stopped_by_a_usage_limit_stops_the_whole_tree_with_that_limit() -> None:
    r = rec()
    step = replied(r, r.start("goal"), decompose("a", "b"))
    end = finished(r, step, done("1.0.subtask", "A"), failed("1.1.subtask", "usage_limit", "over", detail="total_tokens"))
    failure = end.snapshot.failure
    assert failure is not None and (failure.kind, failure.detail) == ("usage_limit", "total_tokens")
    assert failure.message == "recursive:rec: a subtask failed at depth 0: subtask 1.1.subtask (usage_limit: over)"


# -- what check_machine explores -------------------------------------------------------------------
def test_example_inputs_start_a_run_at_every_depth_and_example_replies_reach_every_branch() -> None:
    """`example_inputs`: a plain task, then a subtask at each depth 0..max_depth (so depth
    exhaustion is reachable from `start`); `example_replies`: one reply that executes, one that
    decomposes, and one that `Decomposition` itself rejects (not a JSON syntax error)."""
    r = rec(max_depth=2)
    top, *subtasks = r.example_inputs()
    assert isinstance(top, str) and top
    assert [(type(t), t.depth) for t in subtasks] == [(RecursiveTask, d) for d in range(3)]
    assert all(t.task for t in subtasks)
    outcomes: dict[str, set[Any]] = {}
    for start_input in r.example_inputs():
        first = r.start(start_input)
        assert first.snapshot.phase is Phase.PLANNING and first.snapshot.conversation.messages[0].content
        for text in r.example_replies("dec"):
            s = replied(r, first, text).snapshot
            outcomes.setdefault(text, set()).add(s.failure.kind if s.failure else s.data.mode)
    execute, decomposition, invalid = r.example_replies("dec")
    assert outcomes == {execute: {"execute"}, decomposition: {"subtasks", "budget_exhausted"}, invalid: {"invalid_output"}}
    bad = replied(r, r.start(top), invalid).snapshot.failure
    assert bad is not None and bad.message.endswith("DECOMPOSE needs at least one subtask")
