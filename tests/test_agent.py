"""The agent machine, driven through its pure `start`/`step` (no runtime, no I/O)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from fsm_agents import (
    Agent,
    AssistantMessage,
    InvalidDefinition,
    InvalidTransition,
    ModelFailed,
    ModelReplied,
    Phase,
    RunTools,
    Step,
    ToolCall,
    ToolMessage,
    ToolResult,
    ToolsFinished,
    tool,
)
from fsm_agents.events import CallModel
from fsm_agents.models import call, reply
from fsm_agents.testing import history_problems


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True)
    value: int


def replied(message: AssistantMessage | str) -> ModelReplied:
    return ModelReplied(message=AssistantMessage(content=message) if isinstance(message, str) else message)


def ok(call_: ToolCall, content: str = "5") -> ToolResult:
    return ToolResult(call_id=call_.id, name=call_.name, ok=True, content=content)


def phases(step: Step) -> list[tuple[str, str, str]]:
    return [(t.source, t.event, t.target) for t in step.transitions]


def test_tool_loop_goes_through_the_five_phases() -> None:
    m = Agent("calc", "add", tools=[add], max_steps=3).machine
    s0 = m.start("2+3?", run_id="r")
    assert s0.snapshot.phase is Phase.PLANNING
    (effect,) = s0.effects
    assert isinstance(effect, CallModel) and effect.key == "r/0/0"
    assert [t.name for t in effect.request.tools] == ["add"] and effect.request.instructions == "add"
    c = call("add", a=2, b=3)
    s1 = m.step(s0.snapshot, replied(reply(None, c)))
    assert phases(s1) == [("PLANNING", "model_replied", "EXECUTING")]
    assert s1.effects == (RunTools(key="r/1/0", agent="calc", calls=(c,)),)
    s2 = m.step(s1.snapshot, ToolsFinished(results=(ok(c),)))
    assert phases(s2) == [("EXECUTING", "tools_finished", "OBSERVING"), ("OBSERVING", "observed", "PLANNING")]
    assert s2.snapshot.conversation.messages[-1] == ToolMessage(tool_call_id=c.id, name="add", content="5")
    assert isinstance(s2.effects[0], CallModel) and s2.snapshot.data.turns == 2
    s3 = m.step(s2.snapshot, replied("5"))
    assert s3.snapshot.phase is Phase.DONE and s3.snapshot.output == "5" and s3.effects == ()
    assert [m_.role for m_ in s3.snapshot.conversation.messages] == ["user", "assistant", "tool", "assistant"]
    assert s3.snapshot.conversation.messages[-1].agent == "calc"  # type: ignore[union-attr]


def test_budget_exhausted_is_a_transition_and_keeps_the_history_well_formed() -> None:
    m = Agent("calc", tools=[add], max_steps=2).machine
    step = m.start("loop")
    for i in range(2):
        c = call("add", f"c{i}", a=i, b=i)
        step = m.step(step.snapshot, replied(reply(None, c)))
        if step.snapshot.phase is Phase.EXECUTING:
            step = m.step(step.snapshot, ToolsFinished(results=(ok(c),)))
    snap = step.snapshot
    assert snap.phase is Phase.FAILED and snap.failure is not None
    assert snap.failure.kind == "budget_exhausted" and "max_steps=2" in snap.failure.message
    assert history_problems(snap.conversation) == []
    last = snap.conversation.messages[-1]
    assert isinstance(last, ToolMessage) and last.is_error and "budget" in last.content
    with pytest.raises(InvalidTransition, match="final"):
        m.step(snap, replied("late"))


def test_model_failure_fails_with_model_error() -> None:
    m = Agent("a").machine
    step = m.step(m.start("hi").snapshot, ModelFailed(error="HTTP 500", kind="http"))
    assert step.snapshot.phase is Phase.FAILED
    assert step.snapshot.failure is not None and step.snapshot.failure.kind == "model_error"
    assert step.snapshot.failure.detail == "http" and "HTTP 500" in step.snapshot.failure.message


def test_event_not_accepted_raises_invalid_transition_naming_what_is_accepted() -> None:
    m = Agent("a").machine
    snap = m.start("hi").snapshot
    with pytest.raises(InvalidTransition, match="accepts only model_replied, model_failed") as info:
        m.step(snap, ToolsFinished(results=()))
    assert info.value.phase == "PLANNING" and info.value.event == "tools_finished"


def test_step_on_the_wrong_kind_of_value_or_another_machines_snapshot_says_so() -> None:
    """`step` given something that is not a snapshot or not an event raises a TypeError saying
    what it takes (it used to be an AttributeError from inside); given a snapshot of another
    machine whose phase does not accept the event, the InvalidTransition says whose it is."""
    m = Agent("a").machine
    snap = m.start("hi").snapshot
    with pytest.raises(TypeError, match=r"step takes an Event .*, not str"):
        m.step(snap, "model_replied")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"step takes a Snapshot .*, not dict"):
        m.step({"phase": "PLANNING"}, replied("x"))  # type: ignore[arg-type]
    other = Agent("b", tools=[add]).machine
    asks = AssistantMessage(tool_calls=(ToolCall(id="1", name="add", arguments="{}"),))
    executing = other.step(other.start("hi").snapshot, replied(asks)).snapshot
    with pytest.raises(InvalidTransition, match="the snapshot is not one of agent:a's"):
        m.step(executing, replied("x"))


def test_output_type_valid_answer_is_parsed() -> None:
    m = Agent("a", output_type=Answer).machine
    step = m.step(m.start("q").snapshot, replied('```json\n{"value": 4}\n```'))
    assert step.snapshot.phase is Phase.DONE and step.snapshot.output == Answer(value=4)
    request = m.start("q").effects[0].request  # type: ignore[attr-defined]
    assert '"value"' in request.output_schema_json


def test_invalid_output_is_fed_back_once_then_fails() -> None:
    m = Agent("a", output_type=Answer).machine
    s1 = m.step(m.start("q").snapshot, replied('{"value": "four"}'))
    assert phases(s1) == [("PLANNING", "model_replied", "PLANNING")]
    feedback = s1.snapshot.conversation.messages[-1]
    assert feedback.role == "user" and "Answer" in feedback.content and "value" in feedback.content
    assert isinstance(s1.effects[0], CallModel)
    s2 = m.step(s1.snapshot, replied("still not json"))
    assert s2.snapshot.phase is Phase.FAILED
    assert s2.snapshot.failure is not None and s2.snapshot.failure.kind == "invalid_output"
    assert s2.snapshot.failure.detail == "still not json"


def test_empty_reply_is_fed_back_then_fails() -> None:
    m = Agent("a").machine
    s1 = m.step(m.start("q").snapshot, replied(AssistantMessage(content="  ")))
    assert s1.snapshot.phase is Phase.PLANNING and "empty" in s1.snapshot.conversation.messages[-1].content
    s2 = m.step(s1.snapshot, replied(AssistantMessage(content=None)))
    assert s2.snapshot.failure is not None and s2.snapshot.failure.kind == "invalid_output"
    assert len(s2.snapshot.conversation) == 4  # nothing lost: both empty replies are in the history


def test_missing_and_unknown_results_still_answer_every_call_exactly_once() -> None:
    m = Agent("a", tools=[add]).machine
    c1, c2 = call("add", "x", a=1, b=1), call("add", "y", a=2, b=2)
    s1 = m.step(m.start("q").snapshot, replied(reply(None, c1, c2)))
    stray = ToolResult(call_id="zzz", name="add", ok=True, content="?")
    s2 = m.step(s1.snapshot, ToolsFinished(results=(ok(c2, "4"), stray, ok(c2, "dup"))))
    msgs = s2.snapshot.conversation.messages
    answers = [m_ for m_ in msgs if isinstance(m_, ToolMessage)]
    assert [(a.tool_call_id, a.is_error) for a in answers] == [("x", True), ("y", False)]
    assert "no result was reported" in answers[0].content
    assert history_problems(s2.snapshot.conversation) == []


def test_duplicate_or_empty_tool_call_ids_get_deterministic_ids() -> None:
    m = Agent("a", tools=[add]).machine
    dup = ToolCall(id="", name="add", arguments="{}")
    s1 = m.step(m.start("q").snapshot, replied(AssistantMessage(tool_calls=(dup, dup))))
    ids = [c.id for c in s1.snapshot.pending]
    assert ids == ["call_1_0", "call_1_1"]
    assert s1.snapshot.conversation.messages[-1].tool_calls == s1.snapshot.pending  # type: ignore[union-attr]


def test_the_machine_keeps_the_tool_output_the_executor_cut() -> None:
    """One output cap, applied once by the executor (tests/test_tool_contract.py): the pure core
    folds a result in as reported, even past the agent's `max_tool_output_chars`."""
    m = Agent("a", tools=[add], max_tool_output_chars=10).machine
    c = call("add", a=1, b=1)
    s1 = m.step(m.start("q").snapshot, replied(reply(None, c)))
    s2 = m.step(s1.snapshot, ToolsFinished(results=(ok(c, "x" * 100),)))
    assert s2.snapshot.conversation.messages[-1].content == "x" * 100


def test_handoff_moves_control_with_the_whole_conversation() -> None:
    billing = Agent("billing", "You handle invoices.", description="Invoices and refunds")
    triage = Agent("triage", "Route the customer.", handoffs=[billing], tools=[add])
    m = triage.machine
    assert "transfer_to_billing" in [t.name for t in m.tool_specs("triage")]
    s0 = m.start("refund please")
    transfer = ToolCall(id="t1", name="transfer_to_billing", arguments="{}")
    other = call("add", "t2", a=1, b=2)
    s1 = m.step(s0.snapshot, replied(AssistantMessage(tool_calls=(transfer, other))))
    assert phases(s1) == [("PLANNING", "model_replied", "HANDOFF"), ("HANDOFF", "handed_off", "PLANNING")]
    assert s1.snapshot.agent == "billing" and s1.snapshot.data.handoffs == 1
    (effect,) = s1.effects
    assert isinstance(effect, CallModel) and effect.agent == "billing"
    assert effect.request.instructions == "You handle invoices."
    assert [m_.role for m_ in effect.request.messages] == ["user", "assistant", "tool", "tool"]
    assert history_problems(s1.snapshot.conversation) == []
    s2 = m.step(s1.snapshot, replied("Refund issued."))
    assert s2.snapshot.phase is Phase.DONE
    assert s2.snapshot.conversation.messages[-1].agent == "billing"  # type: ignore[union-attr]


def test_handoff_cycles_by_name_resolve() -> None:
    a = Agent("a", handoffs=["b"])
    b = Agent("b", handoffs=[a])
    a.handoffs = (b,)
    m = a.machine
    assert set(m.agents) == {"a", "b"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "must be 1-64"),
        ({"name": "a", "max_steps": 0}, "max_steps"),
        ({"name": "a", "output_type": threading.Thread}, "output_type .*pydantic cannot validate it"),
        ({"name": "a", "output_type": int, "output_mode": "json"}, "output_mode must be one of"),
        ({"name": "a", "handoffs": ["ghost"]}, "not reachable"),
        ({"name": 5}, "must be 1-64"),
        ({"name": "a", "max_steps": "3"}, "max_steps must be an int >= 1, got '3'"),
        ({"name": "a", "max_steps": True}, "max_steps must be an int"),
        ({"name": "a", "output_retries": -1}, "output_retries must be an int >= 0"),
        ({"name": "a", "max_tool_output_chars": 0}, "max_tool_output_chars must be an int >= 1"),
        ({"name": "a", "instructions": 5}, "instructions must be a str or a function .* got int"),
        ({"name": "a", "description": None}, "description must be a str"),
        ({"name": "a", "model": "gpt-4o"}, "model must be a fsm_agents.models.Model"),
        ({"name": "a", "settings": {"temperature": 0}}, "settings must be a ModelSettings"),
        ({"name": "a", "tool_choice": 3}, "tool_choice must be a str or a function"),
        ({"name": "a", "tools": add}, "tools must be a list of tools or functions, got a single Tool"),
        ({"name": "a", "tools": len}, "got a single builtin_function_or_method"),
        ({"name": "a", "tools": 7}, "tools must be a list of tools or functions, got int"),
        ({"name": "a", "tools": [add, "search"]}, "tools must be tools or functions, got str"),
    ],
)
def test_bad_agent_definitions_are_typed_errors(kwargs: dict[str, Any], message: str) -> None:
    """Each bad argument is an `InvalidDefinition` (`ToolDefinitionError` for tools) naming the
    argument, raised when the agent is made, not a TypeError from deep inside a later run."""
    with pytest.raises(InvalidDefinition, match=message):
        _ = Agent(**kwargs).machine


def test_non_frozen_output_type_is_rejected() -> None:
    class Loose(BaseModel):
        x: int

    with pytest.raises(InvalidDefinition, match="frozen"):
        Agent("a", output_type=Loose)


def test_guided_tool_choice_forces_its_tool_then_asks_for_text() -> None:
    from fsm_agents.agent import guided_tool_choice

    m = Agent("a", tools=[add], tool_choice=guided_tool_choice("add")).machine
    s0 = m.start("q")
    assert s0.effects[0].request.tool_choice == "add"  # type: ignore[attr-defined]
    c = call("add", a=1, b=2)
    s1 = m.step(s0.snapshot, replied(reply(None, c)))
    s2 = m.step(s1.snapshot, ToolsFinished(results=(ok(c),)))
    assert s2.effects[0].request.tool_choice == "none"  # type: ignore[attr-defined]
    failed = ToolResult(call_id=c.id, name="add", ok=False, error="bad")
    s2_err = m.step(s1.snapshot, ToolsFinished(results=(failed,)))
    assert s2_err.effects[0].request.tool_choice == "auto"  # type: ignore[attr-defined]
    other = ToolMessage(tool_call_id="x", name="lookup", content="from an earlier agent")
    assert guided_tool_choice("add")([other]) == "add"  # another tool's result does not count


def test_snapshots_share_equal_agent_data_and_stay_correct() -> None:
    m = Agent("calc", "add", tools=[add], max_steps=3).machine
    first, second = m.start("a").snapshot, m.start("b").snapshot
    assert first.data is second.data and first.data.turns == 1
    c = call("add", a=1, b=2)
    s = m.step(first, replied(reply(None, c))).snapshot
    s = m.step(s, ToolsFinished(results=(ok(c),))).snapshot
    assert (s.data.turns, s.data.output_retries, s.data.handoffs) == (2, 0, 0) and first.data.turns == 1
