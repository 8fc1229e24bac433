"""Behaviour of the orchestration patterns that mutation testing (`make mutation`,
docs/mutation.md) checks, driven through the pure `start`/`step`: `Handoffs` (its definition
errors, default targets, step budget, the failure of a handoff loop) and `Sequential` (stage order,
shared or chained input, a failed stage named)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from fsm_agents import Agent, CallModel, GuardrailResult, InvalidDefinition, ModelReplied, Phase, Step, tool
from fsm_agents.events import AgentOutcome, AgentsFinished, AgentTask, AwaitInput, RunAgents
from fsm_agents.models import call, reply
from fsm_agents.patterns import Handoffs, Sequential
from fsm_agents.state import AssistantMessage, Conversation, Failure, ModelSettings, messages_from


def lookup(q: str) -> str:
    """Look up."""
    return q


def after(m: Any, step: Step, message: Any) -> Step:
    return m.step(step.snapshot, ModelReplied(message=message))


# -- Handoffs --------------------------------------------------------------------------------------
def test_handoffs_definition_errors_name_the_pattern_and_the_problem() -> None:
    with pytest.raises(InvalidDefinition, match=r"^handoffs:cs: max_handoffs must be >= 0$"):
        Handoffs("cs", Agent("a"), [Agent("b")], max_handoffs=-1)
    assert Handoffs("cs", Agent("a"), [Agent("b")], max_handoffs=0).max_handoffs == 0
    with pytest.raises(InvalidDefinition, match=r"^handoffs:cs: every member must be an Agent, got str$"):
        Handoffs("cs", Agent("a"), ["b"], max_handoffs=1)  # type: ignore[list-item]
    with pytest.raises(InvalidDefinition, match=r"^handoffs:cs: two different agents are named 'b'$"):
        Handoffs("cs", Agent("a"), [Agent("b"), Agent("b")], max_handoffs=1)
    with pytest.raises(InvalidDefinition, match=r"^handoffs:cs: 'a' hands off to 'nobody', which is not in the pattern$"):
        Handoffs("cs", Agent("a", handoffs=["nobody"]), [Agent("b")], max_handoffs=1)
    with pytest.raises(InvalidDefinition, match=r"^handoffs name 'c s' must be 1-64 letters"):
        Handoffs("c s", Agent("a"), [Agent("b")], max_handoffs=1)


def test_an_agent_listed_again_is_one_member_and_members_hand_off_to_all_others_by_default() -> None:
    a = Agent("a")
    h = Handoffs("cs", a, [a, Agent("b"), Agent("c", handoffs=["a"])], max_handoffs=1)
    assert h.members == ("a", "b", "c") and h.name == "handoffs:cs" and h.machine is h
    assert [s.name for s in h.tool_specs("a")] == ["transfer_to_b", "transfer_to_c"]
    assert [s.name for s in h.tool_specs("b")] == ["transfer_to_a", "transfer_to_c"]
    assert [s.name for s in h.tool_specs("c")] == ["transfer_to_a"]  # its own list, not everyone
    assert repr(h) == "Handoffs('handoffs:cs', agents=['a', 'b', 'c'], max_handoffs=1)"


def test_members_keep_their_configuration_and_the_pattern_may_set_the_step_budget() -> None:
    a = Agent("a", "triage", tools=[lookup], max_steps=4, description="front desk", tool_choice="required")
    h = Handoffs("cs", a, [Agent("b")], max_handoffs=1)
    assert h.max_steps == 4 and h.max_transitions() == 12
    (effect,) = h.start("hi").effects
    assert (effect.request.instructions, effect.request.tool_choice) == ("triage", "required")
    assert [s.name for s in effect.request.tools] == ["lookup", "transfer_to_b"]
    assert "front desk" in h.tool_specs("b")[0].description
    assert Handoffs("cs", a, [Agent("b")], max_handoffs=1, max_steps=7).max_steps == 7
    assert a.max_steps == 4  # the pattern works on copies


def test_a_transfer_past_the_budget_fails_answering_every_call_of_the_reply() -> None:
    h = Handoffs("loop", Agent("ping"), [Agent("pong")], max_handoffs=1)
    step = after(h, h.start("hi"), reply(None, call("transfer_to_pong", "t1")))
    assert step.snapshot.agent == "pong" and step.snapshot.phase is Phase.PLANNING
    step = after(h, step, reply(None, call("transfer_to_ping", "t2"), call("transfer_to_ping", "t3")))
    s = step.snapshot
    assert s.phase is Phase.FAILED and s.pending == () and s.agent == "pong"
    assert s.failure is not None and (s.failure.kind, s.failure.detail) == (
        "handoff_loop",
        "transfer_to_ping, transfer_to_ping",
    )
    assert s.failure.message == "handoffs:loop: pong asked to hand off again after 1 handoffs (max_handoffs=1)"
    answers = [(m.tool_call_id, m.content, m.is_error) for m in s.conversation.messages if m.role == "tool"][-2:]
    note = "not executed: the handoff budget of 1 transfers is exhausted"
    assert answers == [("t2", note, True), ("t3", note, True)]


def test_a_reply_without_a_transfer_is_not_a_handoff_loop_even_past_the_budget() -> None:
    h = Handoffs("loop", Agent("ping", tools=[lookup]), [Agent("pong")], max_handoffs=0)
    step = after(h, h.start("hi"), reply(None, call("lookup", "c1", q="x")))
    assert step.snapshot.phase is Phase.EXECUTING
    assert after(h, h.start("hi"), reply("bye")).snapshot.phase is Phase.DONE


def test_a_members_approval_policy_still_makes_its_calls_wait() -> None:
    h = Handoffs("desk", Agent("a", tools=[lookup], approval=lambda c: True), [Agent("b")], max_handoffs=1)
    step = after(h, h.start("hi"), reply(None, call("lookup", "c1", q="x")))
    assert isinstance(step.effects[0], AwaitInput)


def test_a_members_guardrails_and_call_order_are_kept() -> None:
    """Handoffs rebuilds its members: their guardrails and `parallel_tool_calls` (like every other
    option) must survive the copy, or a guarded member would run unguarded."""

    def screen(ctx: Any, messages: Any) -> GuardrailResult:
        return GuardrailResult(tripped=False)

    member = Agent("a", tools=[lookup], parallel_tool_calls=False, input_guardrails=[screen], output_guardrails=[screen])
    h = Handoffs("desk", member, [Agent("b")], max_handoffs=1)
    first = h.start("hi").effects[0]
    assert isinstance(first, CallModel) and first.guardrails == ("screen",)
    assert first.request.parallel_tool_calls is False
    assert h.tool_options("a")["parallel"] is False
    assert list(h.guardrails_for("a", "output")) == ["screen"]


def test_a_members_tool_that_needs_approval_makes_its_calls_wait() -> None:
    h = Handoffs("desk", Agent("a", tools=[tool(requires_approval=True)(lookup)]), [Agent("b")], max_handoffs=1)
    step = after(h, h.start("hi"), reply(None, call("lookup", "c1", q="x")))
    assert isinstance(step.effects[0], AwaitInput)


# -- Sequential ------------------------------------------------------------------------------------
def finished(
    task: AgentTask, output: Any = None, *, failure: Failure | None = None, said: str | None = None
) -> AgentsFinished:
    """The outcome of `task`: DONE with `output` (its conversation: the input plus `said`), or FAILED."""
    sent = list(messages_from(task.input))
    if failure is not None:
        outcome = AgentOutcome(task_id=task.task_id, machine=task.machine, phase=Phase.FAILED, failure=failure)
    else:
        added = [AssistantMessage(content=said if said is not None else str(output), agent=task.machine)]
        conv = Conversation.of(*sent, *added)
        outcome = AgentOutcome(
            task_id=task.task_id, machine=task.machine, phase=Phase.DONE, output=output, conversation=conv
        )
    return AgentsFinished(outcomes=(outcome,))


def only_task(step: Step) -> AgentTask:
    (effect,) = step.effects
    assert isinstance(effect, RunAgents) and len(effect.tasks) == 1
    return effect.tasks[0]


@pytest.mark.parametrize("shared", [True, False])
def test_a_pipeline_runs_its_stages_in_order_and_outputs_the_last(shared: bool) -> None:
    p = Sequential("pipe", [Agent("draft"), Agent("edit"), Agent("check")], shared_conversation=shared)
    assert p.stages == ("draft", "edit", "check") and p.max_transitions() == 9
    step = p.start("write a poem", run_id="r1")
    assert step.snapshot.phase is Phase.EXECUTING and step.snapshot.machine == "sequential:pipe"
    task = only_task(step)
    assert (task.machine, task.task_id) == ("draft", "0.0.draft")
    assert [m.content for m in task.input] == ["write a poem"]
    step = p.step(step.snapshot, finished(task, "v1"))
    task = only_task(step)
    assert task.machine == "edit"
    if shared:
        assert [m.content for m in task.input] == ["write a poem", "v1"]
    else:
        assert task.input == "v1"
    step = p.step(step.snapshot, finished(task, "v2"))
    task = only_task(step)
    assert task.machine == "check"
    step = p.step(step.snapshot, finished(task, "v3"))
    s = step.snapshot
    assert (s.phase, s.output, s.data.stage, step.effects) == (Phase.DONE, "v3", 2, ())
    assert [m.content for m in s.conversation.messages] == ["write a poem", "v1", "v2", "v3"]


def test_a_failed_stage_ends_the_pipeline_naming_it() -> None:
    p = Sequential("pipe", [Agent("draft"), Agent("edit")])
    step = p.start("go")
    step = p.step(step.snapshot, finished(only_task(step), "v1"))
    failure = Failure(kind="model_error", message="edit: rate limited")
    s = p.step(step.snapshot, finished(only_task(step), failure=failure)).snapshot
    assert s.phase is Phase.FAILED and s.failure is not None
    assert (s.failure.kind, s.failure.detail) == ("child_failed", "edit")
    assert s.failure.message == "sequential:pipe: stage 2/2 'edit' failed: model_error: edit: rate limited"
    empty = p.step(p.start("go").snapshot, AgentsFinished(outcomes=())).snapshot
    assert empty.failure is not None
    assert empty.failure.message == "sequential:pipe: stage 1/2 'draft' failed: no outcome was reported"


def test_a_stage_that_reports_no_conversation_is_folded_as_its_output() -> None:
    p = Sequential("pipe", [Agent("draft"), Agent("edit")], shared_conversation=False)
    step = p.start("go")
    task = only_task(step)
    outcome = AgentOutcome(task_id=task.task_id, machine="draft", phase=Phase.DONE, output={"n": 1})
    step = p.step(step.snapshot, AgentsFinished(outcomes=(outcome,)))
    assert only_task(step).input == '{"n": 1}'
    last = step.snapshot.conversation.messages[-1]
    assert (last.role, last.content, last.agent) == ("assistant", '{"n": 1}', "draft")


def test_a_pipeline_needs_distinct_stages() -> None:
    with pytest.raises(InvalidDefinition, match=r"^sequential:pipe: at least one stage is required$"):
        Sequential("pipe", [])
    with pytest.raises(
        InvalidDefinition, match=r"^sequential:pipe: two different stages are named 'a'; give them distinct names$"
    ):
        Sequential("pipe", [Agent("a"), Agent("a")])
    same = Agent("a")
    assert Sequential("pipe", [same, same]).stages == ("a", "a")  # one machine, run twice


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    ok: bool


def test_members_keep_their_output_type_settings_retries_and_output_cap() -> None:
    settings = ModelSettings(temperature=0.3)
    a = Agent("a", tools=[lookup], output_type=Verdict, settings=settings, output_retries=2, max_tool_output_chars=3)
    h = Handoffs("cs", a, [Agent("b")], max_handoffs=1)
    (effect,) = h.start("hi").effects
    assert effect.request.settings == settings and "ok" in (effect.request.output_schema_json or "")
    step = after(h, h.start("hi"), reply("not json"))
    step = after(h, step, reply("still not json"))
    assert step.snapshot.phase is Phase.PLANNING and step.snapshot.data.output_retries == 2  # retried twice
    assert h.agents["a"].max_tool_output_chars == 3 and h.agents["a"] is not a  # a copy, configured alike


def test_members_may_name_their_targets_as_agents() -> None:
    b = Agent("b")
    h = Handoffs("cs", Agent("a", handoffs=[b]), [b, Agent("c")], max_handoffs=1)
    assert [s.name for s in h.tool_specs("a")] == ["transfer_to_b"]


def test_a_pipeline_runs_under_its_run_id_and_keeps_what_a_failed_stage_said() -> None:
    p = Sequential("pipe", [Agent("draft"), Agent("edit")])
    step = p.start("go", run_id="r9")
    assert step.snapshot.conversation.id == "r9" and step.effects[0].key == "r9/0/0"
    assert p.start("go").snapshot.conversation.id == "run"
    task = only_task(step)
    said = Conversation.of(*messages_from(task.input), AssistantMessage(content="half a draft", agent="draft"))
    failure = Failure(kind="model_error", message="draft: timeout")
    outcome = AgentOutcome(task_id=task.task_id, machine="draft", phase=Phase.FAILED, failure=failure, conversation=said)
    s = p.step(step.snapshot, AgentsFinished(outcomes=(outcome,))).snapshot
    assert s.phase is Phase.FAILED and [m.content for m in s.conversation.messages] == ["go", "half a draft"]


def test_members_keep_their_output_mode() -> None:
    """A member answering through the `final_result` output tool still does inside the pattern."""
    h = Handoffs("cs", Agent("a", output_type=Verdict, output_mode="tool"), [Agent("b")], max_handoffs=1)
    assert h.agents["a"].output_mode == "tool"
    (effect,) = h.start("hi").effects
    assert "final_result" in [t.name for t in effect.request.tools]
    assert effect.request.output_schema_json is None  # the schema is the tool's, not a native format
