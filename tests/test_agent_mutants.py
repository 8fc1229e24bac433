"""Behaviour of the agent machine that mutation testing (`make mutation`, docs/mutation.md) found
untested: the agent's defaults and the messages of its definition errors, which calls of a reply
wait for a human and what they ask, the start snapshot and the request sent to the model, handoff
graphs (diamonds, cycles by name, the 64-character tool-name limit), the step bound, and objects
built on the hot path being indistinguishable from validated ones.

Every test drives the pure `start`/`step` (no runtime, no I/O).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from fsm_agents import (
    Agent,
    GuardrailResult,
    InvalidDefinition,
    ModelFailed,
    ModelReplied,
    Phase,
    Step,
    ToolResult,
    ToolsFinished,
    ask_user,
    tool,
)
from fsm_agents.agent import AgentMachine, agent_chart, guided_tool_choice, model_request
from fsm_agents.events import Answer, Approved, AwaitInput, CallModel, Denied, InputReceived, InputRequest, RunTools
from fsm_agents.machine import compile_chart
from fsm_agents.models import call, reply
from fsm_agents.patterns import Handoffs
from fsm_agents.state import EmptyContext, ModelSettings, Snapshot, ToolCall, UserMessage


def lookup(q: str) -> str:
    """Look up."""
    return q


def pay(amount: int) -> str:
    """Pay (needs a human's approval)."""
    return f"paid {amount}"


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    ok: bool


def after(m: Any, step: Step, message: Any) -> Step:
    return m.step(step.snapshot, ModelReplied(message=message))


def tools_loop(m: Any, start: Step, turns: int) -> Step:
    """`turns` replies that each call `lookup`, each answered: the snapshot back in PLANNING."""
    step = start
    for i in range(turns):
        step = after(m, step, reply(None, call("lookup", f"c{i}", q="x")))
        assert step.snapshot.phase is Phase.EXECUTING
        results = tuple(ToolResult(call_id=c.id, name=c.name, ok=True, content="r") for c in step.snapshot.pending)
        step = m.step(step.snapshot, ToolsFinished(results=results))
    return step


# -- Agent: defaults and definition errors ------------------------------------------------------
def test_a_default_agent_allows_ten_model_calls_and_lets_the_model_choose_tools() -> None:
    m = Agent("clerk", tools=[lookup]).machine
    first = m.start("hi")
    (effect,) = first.effects
    assert isinstance(effect, CallModel) and effect.request.tool_choice == "auto"
    step = tools_loop(m, first, 9)  # nine model calls answered with tools: the tenth is still allowed
    step = after(m, step, reply(None, call("lookup", "last", q="x")))
    assert step.snapshot.phase is Phase.FAILED and step.snapshot.failure is not None
    assert step.snapshot.failure.kind == "budget_exhausted"
    assert step.snapshot.failure.message == "agent:clerk made 10 model calls (max_steps=10) and still asked for tools"


@pytest.mark.parametrize(("max_steps", "calls"), [(1, "1 model call"), (2, "2 model calls")])
def test_the_budget_message_counts_model_calls_in_words(max_steps: int, calls: str) -> None:
    m = Agent("clerk", tools=[lookup], max_steps=max_steps).machine
    step = tools_loop(m, m.start("hi"), max_steps - 1)
    step = after(m, step, reply(None, call("lookup", "last", q="x")))
    assert step.snapshot.failure is not None
    assert step.snapshot.failure.message == f"agent:clerk made {calls} (max_steps={max_steps}) and still asked for tools"
    (answer,) = [msg for msg in step.snapshot.conversation.messages if msg.role == "tool" and msg.tool_call_id == "last"]
    assert answer.content == f"not executed: the step budget of {calls} is exhausted"


@pytest.mark.parametrize(("option", "least"), [("max_steps", 1), ("output_retries", 0), ("max_tool_output_chars", 1)])
def test_counts_accept_their_least_value_and_reject_one_below(option: str, least: int) -> None:
    assert getattr(Agent("a", **{option: least}), option) == least
    with pytest.raises(InvalidDefinition, match=rf"^agent 'a': {option} must be an int >= {least}, got {least - 1}$"):
        Agent("a", **{option: least - 1})


def test_arguments_of_the_wrong_type_are_named_with_their_type() -> None:
    with pytest.raises(InvalidDefinition, match=r"^agent 'a': model must be a fsm_agents\.models\.Model .*, got int$"):
        Agent("a", model=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidDefinition, match=r"^agent 'a': settings must be a ModelSettings, got dict$"):
        Agent("a", settings={"temperature": 0})  # type: ignore[arg-type]
    with pytest.raises(InvalidDefinition, match=r"^agent 'a': tool_choice must be a str or a function .*, got int$"):
        Agent("a", tool_choice=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidDefinition, match=r"^agent 'a': approval must be a function of the tool call, got str$"):
        Agent("a", approval="always")  # type: ignore[arg-type]
    policy = lambda c: True  # noqa: E731
    assert Agent("a", approval=policy).approval is policy


def test_a_mutable_output_type_is_refused_with_how_to_freeze_it() -> None:
    class Loose(BaseModel):
        ok: bool

    # the message names the type and how to freeze it (its wording around that may change)
    with pytest.raises(
        InvalidDefinition, match=r"^agent 'a': output_type Loose.* frozen \(model_config = ConfigDict\(frozen=True\)"
    ):
        Agent("a", output_type=Loose)


def test_reserved_tool_names_and_duplicate_agents_are_explained() -> None:
    @tool(name="transfer_to_x")
    def sneaky() -> str:
        """Looks like a handoff."""
        return ""

    with pytest.raises(InvalidDefinition, match=r"^agent 'a': tool names starting with 'transfer_to_' are reserved$"):
        Agent("a", tools=[sneaky])
    with pytest.raises(InvalidDefinition, match=r"^two different agents are named 'b'$"):
        _ = Agent("a", handoffs=[Agent("b"), Agent("b")]).machine


def test_the_machine_knows_each_agents_model_and_tools() -> None:
    class Stub:
        async def complete(self, request: Any) -> Any:  # pragma: no cover - never called
            raise AssertionError

    model = Stub()
    helper = Agent("helper", tools=[lookup])
    m = Agent("boss", model=model, handoffs=[helper]).machine  # type: ignore[arg-type]
    assert m.models() == {"boss": model, "helper": None}
    assert list(m.tools_for("helper")) == ["lookup"] and dict(m.tools_for("boss")) == {}
    assert [s.name for s in m.tool_specs("boss")] == ["transfer_to_helper"]


# -- handoff graphs ----------------------------------------------------------------------------
def test_an_agent_reached_twice_in_a_diamond_does_not_hide_the_others() -> None:
    """a → (c, b, x) and b → x: x is met twice while c still waits to be visited."""
    x = Agent("x")
    b = Agent("b", handoffs=[x])
    c = Agent("c")
    m = Agent("a", handoffs=[c, b, x]).machine
    assert sorted(m.agents) == ["a", "b", "c", "x"]
    assert [s.name for s in m.tool_specs("a")] == ["transfer_to_c", "transfer_to_b", "transfer_to_x"]


def test_a_handoff_back_by_name_closes_a_cycle() -> None:
    helper = Agent("helper", handoffs=["desk"])
    m = Agent("desk", handoffs=[helper]).machine
    assert [s.name for s in m.tool_specs("helper")] == ["transfer_to_desk"]
    step = after(m, m.start("hi"), reply(None, call("transfer_to_helper", "t1")))
    step = after(m, step, reply(None, call("transfer_to_desk", "t2")))
    assert step.snapshot.agent == "desk" and step.snapshot.data.handoffs == 2


def test_handoff_tool_names_may_be_64_characters_and_no_more() -> None:
    longest = "n" * 52  # "transfer_to_" + 52 characters = 64
    m = Agent("a", handoffs=[Agent(longest)]).machine
    assert [len(s.name) for s in m.tool_specs("a")] == [64]
    with pytest.raises(InvalidDefinition) as info:
        _ = Agent("a", handoffs=[Agent(longest + "n")]).machine
    assert str(info.value) == (
        f"agent 'a': the handoff tool 'transfer_to_{longest}n' would be longer than the 64 characters providers "
        f"accept: give '{longest}n' a name of at most 52 characters"
    )


def test_a_reply_calling_an_ordinary_tool_runs_it_even_when_the_agent_can_hand_off() -> None:
    m = Agent("desk", tools=[lookup], handoffs=[Agent("helper")]).machine
    step = after(m, m.start("hi"), reply(None, call("lookup", "c1", q="x")))
    assert step.snapshot.phase is Phase.EXECUTING and step.snapshot.agent == "desk"
    (effect,) = step.effects
    assert isinstance(effect, RunTools) and [c.id for c in effect.calls] == ["c1"]


# -- the start snapshot and the model request ---------------------------------------------------
def validated_twin(value: BaseModel) -> BaseModel:
    return type(value).model_validate(value.model_dump())


def test_start_snapshot_and_effects_equal_their_validated_twins() -> None:
    """What `start`/`step` build without validation (`_made`) is indistinguishable from the same
    data validated: same fields, same values, every field marked as set."""
    m = Agent("clerk", tools=[lookup]).machine
    first = m.start("hi")
    s = first.snapshot
    assert s.conversation.id == "run"  # the default run id
    (effect,) = first.effects
    for value in (s, s.data, effect):
        assert value.model_fields_set == set(type(value).model_fields)
    assert (s.pending, s.results, s.output, s.failure, s.context) == ((), (), None, None, EmptyContext())
    assert validated_twin(s.data) == s.data and validated_twin(effect) == effect
    twin = Snapshot[type(s.data)].model_validate(s.model_dump())  # type: ignore[misc]
    assert twin.model_dump() == s.model_dump()


def test_objects_built_on_the_hot_path_dump_with_exclude_unset() -> None:
    """`model_dump(exclude_unset=True)` of a snapshot, its data, its effect or a message built by
    `start` works (it raised TypeError: the fast paths kept a frozenset as the fields set) and
    gives each object's every field (all of them were set), as for a validated object; a nested
    model built from its defaults (`ModelSettings()`) keeps pydantic's meaning: nothing set."""
    first = Agent("clerk").machine.start("hi")
    s = first.snapshot
    for value in (s.conversation.messages[0], s.data, first.effects[0], s, first.effects[0].request):
        assert value.model_dump(exclude_unset=True).keys() == value.model_dump().keys()


def test_start_keeps_the_context_it_is_given() -> None:
    class Ctx(BaseModel):
        model_config = ConfigDict(frozen=True)
        user: str

    m = Agent("clerk").machine
    ctx = Ctx(user="ann")
    assert m.start("hi", ctx).snapshot.context is ctx
    assert m.start("hi", None).snapshot.context == EmptyContext()


def test_a_per_call_tool_choice_sees_the_conversation_and_sends_it() -> None:
    seen: list[int] = []

    def choose(messages: Any) -> str:
        seen.append(len(messages))
        return "required"

    m = Agent("clerk", tools=[lookup], tool_choice=choose).machine
    first = m.start("hi")
    (effect,) = first.effects
    assert isinstance(effect, CallModel)
    assert effect.request.tool_choice == "required" and seen == [1]
    assert list(effect.request.messages) == list(first.snapshot.conversation.messages)
    guided = Agent("g", tools=[lookup], tool_choice=guided_tool_choice("lookup")).machine
    step = tools_loop(guided, guided.start("hi"), 1)
    (effect,) = step.effects
    assert effect.request.tool_choice == "none" and len(effect.request.messages) == 3


def test_model_request_takes_each_override_and_otherwise_the_agents_own() -> None:
    settings = ModelSettings(temperature=0.2)
    agent = Agent("a", "be brief", tool_choice="required", output_type=Verdict, settings=settings)
    own = model_request(agent)
    assert (own.agent, own.instructions, own.tool_choice, own.settings) == ("a", "be brief", "required", settings)
    assert own.output_schema_json is not None and "ok" in own.output_schema_json
    spec = tool(lookup).spec
    other = model_request(agent, instructions="", tools=[spec], tool_choice="none", output_type=None)
    assert (other.instructions, other.tools, other.tool_choice) == ("", (spec,), "none")

    class Other(BaseModel):
        model_config = ConfigDict(frozen=True)
        score: int

    assert "score" in (model_request(agent, output_type=Other).output_schema_json or "")
    assert model_request(Agent("p", tool_choice=lambda ms: "none")).tool_choice == "auto"
    assert model_request(Agent("p")).output_schema_json is None


# -- replies: ids, retries at the last call, the step bound ---------------------------------------
def test_calls_sharing_one_id_get_distinct_ids() -> None:
    m = Agent("clerk", tools=[lookup]).machine
    step = after(m, m.start("hi"), reply(None, call("lookup", "same", q="a"), call("lookup", "same", q="b")))
    assert [c.id for c in step.snapshot.pending] == ["call_1_0", "call_1_1"]


def test_an_invalid_answer_at_the_last_allowed_call_fails_instead_of_retrying() -> None:
    m = Agent("judge", output_type=Verdict, max_steps=2, output_retries=5).machine
    step = after(m, m.start("judge"), reply("not json"))
    assert step.snapshot.phase is Phase.PLANNING and step.snapshot.data.turns == 2  # retried once
    step = after(m, step, reply("still not json"))
    assert step.snapshot.phase is Phase.FAILED and step.snapshot.failure is not None
    assert step.snapshot.failure.kind == "invalid_output"


@pytest.mark.parametrize("max_steps", [1, 2, 5])
def test_the_longest_run_ends_within_the_machines_bound_and_close_to_it(max_steps: int) -> None:
    """`max_transitions` bounds every run; the longest run (every reply asks for a tool) comes
    within two transitions of it, so the bound is not loose either."""
    m = Agent("clerk", tools=[lookup], max_steps=max_steps).machine
    step = tools_loop(m, m.start("hi"), max_steps - 1)
    step = after(m, step, reply(None, call("lookup", "last", q="x")))
    assert step.snapshot.phase is Phase.FAILED
    taken = step.snapshot.step
    assert taken <= m.max_transitions() <= taken + 2


def test_a_model_failure_fails_the_run_with_its_error() -> None:
    m = Agent("clerk").machine
    s = m.step(m.start("hi").snapshot, ModelFailed(error="rate limited", kind="transient")).snapshot
    assert s.failure is not None and (s.failure.kind, s.failure.message) == ("model_error", "clerk: rate limited")


# -- calls that wait for a human -------------------------------------------------------------------
def asking() -> Agent:
    return Agent("desk", tools=[lookup, tool(requires_approval=True)(pay), ask_user()])


def awaited(m: Any, *calls: ToolCall) -> tuple[InputRequest, ...]:
    step = after(m, m.start("hi"), reply(None, *calls))
    assert step.snapshot.phase is Phase.EXECUTING
    (effect,) = step.effects
    assert isinstance(effect, AwaitInput), effect
    assert effect.agent == "desk" and effect.key == "run/1/0"
    return effect.requests


def test_approvals_and_questions_are_awaited_in_call_order_the_rest_is_not() -> None:
    requests = awaited(
        asking().machine,
        call("lookup", "l1", q="x"),
        call("ask_user", "q1", question="Which city?"),
        call("pay", "p1", amount=5),
    )
    assert requests == (
        InputRequest(
            call_id="q1", tool="ask_user", arguments='{"question": "Which city?"}', kind="question", question="Which city?"
        ),
        InputRequest(call_id="p1", tool="pay", arguments='{"amount": 5}', kind="approval"),
    )


@pytest.mark.parametrize(
    ("arguments", "question"),
    [("not json", "not json"), ('["a list"]', '["a list"]'), ('{"question": 3}', '{"question": 3}')],
)
def test_a_question_the_model_did_not_phrase_as_a_string_shows_its_raw_arguments(arguments: str, question: str) -> None:
    (request,) = awaited(asking().machine, ToolCall(id="q1", name="ask_user", arguments=arguments))
    assert (request.kind, request.question, request.arguments) == ("question", question, arguments)


def test_a_question_with_empty_arguments_is_awaited_with_an_empty_question() -> None:
    """The executor runs a call with empty arguments as `{}`; a question asked that way is
    awaited like any other (it has no question text to show)."""
    (request,) = awaited(asking().machine, ToolCall(id="q1", name="ask_user", arguments=""))
    assert (request.kind, request.arguments) == ("question", "")


def test_an_approval_policy_selects_calls_of_ordinary_tools() -> None:
    checked: list[str] = []

    def big(c: ToolCall) -> bool:
        checked.append(c.id)
        return c.parsed().get("q") == "big"

    m = Agent("desk", tools=[lookup], approval=big).machine
    (request,) = awaited(m, call("lookup", "s", q="small"), call("lookup", "b", q="big"))
    assert request == InputRequest(call_id="b", tool="lookup", arguments='{"q": "big"}', kind="approval")
    assert checked == ["s", "b"]
    step = after(m, m.start("hi"), reply(None, call("lookup", "s", q="small")))
    assert isinstance(step.effects[0], RunTools)  # nothing selected: the tools run at once


def test_an_agent_whose_calls_never_wait_emits_run_tools() -> None:
    m = Agent("desk", tools=[lookup, tool(name="pay2")(pay)]).machine
    step = after(m, m.start("hi"), reply(None, call("pay2", "p", amount=1)))
    assert isinstance(step.effects[0], RunTools)
    assert [(t.source, t.event, t.target) for t in m.table if t.event == "input_received"] == []


def test_decisions_run_approved_calls_and_answer_the_others() -> None:
    m = asking().machine
    step = after(
        m,
        m.start("hi"),
        reply(
            None,
            call("lookup", "l1", q="x"),
            call("pay", "p1", amount=5),
            call("pay", "p2", amount=7),
            call("ask_user", "q1", question="Where?"),
            call("ask_user", "q2", question="When?"),
            call("pay", "p3", amount=9),
        ),
    )
    decisions = (("p1", Approved()), ("p2", Denied("too much")), ("q1", Approved()), ("q2", Denied("")))
    step = m.step(step.snapshot, InputReceived(decisions=decisions))
    (run,) = step.effects
    assert isinstance(run, RunTools) and [c.id for c in run.calls] == ["l1", "p1"]
    assert [(r.call_id, r.ok, r.error) for r in step.snapshot.results] == [
        ("p2", False, "denied by the user: too much"),
        ("q1", False, "the user did not answer"),
        ("q2", False, "the user did not answer"),
        ("p3", False, "not run: no decision was given"),
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Agent("a", tools=[tool(requires_approval=True)(pay)]),
        lambda: Agent("a", tools=[ask_user()]),
        lambda: Agent("a", tools=[lookup], approval=lambda c: False),
    ],
)
def test_an_agent_that_may_wait_accepts_decisions_in_executing(make: Any) -> None:
    m = make().machine
    assert ("EXECUTING", "input_received", "EXECUTING") in {(t.source, t.event, t.target) for t in m.table}
    assert m.table.chart.__name__ == "AwaitingAgentChart"


def handing_off(max_handoffs: int) -> Handoffs:
    """Two agents; the entry's tool needs a human's approval, so the pattern may wait for one."""
    return Handoffs("desk", Agent("a", tools=[tool(requires_approval=True)(pay)]), [Agent("b")], max_handoffs=max_handoffs)


def test_the_awaiting_variant_of_a_pattern_chart_is_made_once_and_accepts_decisions() -> None:
    table = handing_off(1).table
    assert table.chart.__name__ == "AwaitingHandoffsChart"
    assert ("EXECUTING", "input_received", "EXECUTING") in {(t.source, t.event, t.target) for t in table}
    assert handing_off(2).table.chart is table.chart  # made once per chart
    step = after(h := handing_off(1), h.start("hi"), reply(None, call("pay", "p", amount=1)))
    assert isinstance(step.effects[0], AwaitInput)


def fresh_handoffs(max_handoffs: int = 1) -> Handoffs:
    """A Handoffs pattern whose chart is built now (a chart's awaiting variant is cached per chart
    class: a fresh class makes the machine build it in this test), entry tool needing approval."""

    class FreshHandoffs(Handoffs):
        chart_class = agent_chart(handoff_limit=True, name="FreshHandoffsChart")

    return FreshHandoffs(
        "desk", Agent("a", tools=[tool(requires_approval=True)(pay)]), [Agent("b")], max_handoffs=max_handoffs
    )


def test_a_charts_awaiting_variant_is_built_on_first_need_with_the_decisions_transition() -> None:
    h = fresh_handoffs()
    table = h.table
    assert table.chart.__name__ == "AwaitingFreshHandoffsChart"
    assert ("EXECUTING", "input_received", "EXECUTING") in {(t.source, t.event, t.target) for t in table}
    again = type(h)("desk2", Agent("a", tools=[tool(requires_approval=True)(pay)]), [Agent("b")], max_handoffs=2)
    assert again.table.chart is table.chart  # made once per chart
    step = after(h, h.start("hi"), reply(None, call("pay", "p", amount=1)))
    assert isinstance(step.effects[0], AwaitInput)
    step = h.step(step.snapshot, InputReceived(decisions=(("p", Approved()),)))
    assert isinstance(step.effects[0], RunTools) and [c.id for c in step.effects[0].calls] == ["p"]


@pytest.mark.parametrize("make", [lambda: handing_off(1), lambda: fresh_handoffs(1)], ids=["Handoffs", "fresh chart"])
def test_handoffs_whose_tools_wait_for_a_human_still_stop_a_handoff_loop(make: Any) -> None:
    h = make()
    step = after(h, h.start("hi"), reply(None, call("transfer_to_b", "t1")))
    step = after(h, step, reply(None, call("transfer_to_a", "t2")))
    assert step.snapshot.phase is Phase.FAILED
    assert step.snapshot.failure is not None and step.snapshot.failure.kind == "handoff_loop"


def test_an_answer_becomes_the_questions_result_and_the_conversation_continues() -> None:
    m = Agent("desk", tools=[ask_user()]).machine
    step = after(m, m.start("hi"), reply(None, call("ask_user", "q", question="Which city?")))
    step = m.step(step.snapshot, InputReceived(decisions=(("q", Answer("Lyon")),)))
    (run,) = step.effects
    assert isinstance(run, RunTools) and run.calls == ()
    step = m.step(step.snapshot, ToolsFinished(results=()))
    tool_messages = [msg for msg in step.snapshot.conversation.messages if msg.role == "tool"]
    assert [(msg.tool_call_id, msg.content, msg.is_error) for msg in tool_messages] == [("q", "Lyon", False)]
    assert isinstance(step.snapshot.conversation.messages[0], UserMessage)


# -- the agent chart's variants, against the topology agent_chart's docstring gives ---------------
def expected_topology(
    awaits: bool, output_function: bool, inputs: bool, outputs: bool, handoff_limit: bool = False
) -> dict[tuple[str, str], list[tuple[str, str, str | None]]]:
    """(phase, event) → the candidate transitions in the order their guards are tried:
    (target, label, action). Written from `agent_chart`'s docstring, not from its code."""
    replied = [("FAILED", "model_replied [over_budget]", "fail_budget")]
    if handoff_limit:
        replied.append(("FAILED", "model_replied [handoff_limit]", "fail_handoff_loop"))
    replied += [
        ("HANDOFF", "model_replied [asks_handoff]", "hand_off"),
        ("EXECUTING", "model_replied [asks_tools]", "request_tools"),
        ("PLANNING", "model_replied [output_retry]", "retry_output"),
        ("FAILED", "model_replied [output_invalid]", "fail_output"),
    ]
    if outputs:
        replied.append(("EXECUTING", "model_replied [checks_output]", "check_output"))
    replied.append(("DONE", "model_replied", "finish"))
    topology = {
        ("PLANNING", "model_replied"): replied,
        ("PLANNING", "model_failed"): [("FAILED", "model_failed", "fail_model")],
        ("PLANNING", "limit_exceeded"): [("FAILED", "limit_exceeded", "fail_limit")],
        ("EXECUTING", "limit_exceeded"): [("FAILED", "limit_exceeded", "fail_limit")],
        ("EXECUTING", "tools_finished"): [("OBSERVING", "tools_finished", "observe")],
        ("EXECUTING", "effect_uncertain"): [("FAILED", "effect_uncertain", "fail_uncertain")],
        ("OBSERVING", "observed"): [("PLANNING", "observed", "call_model")],
        ("HANDOFF", "handed_off"): [("PLANNING", "handed_off", "call_model")],
    }
    if awaits:
        topology["EXECUTING", "input_received"] = [("EXECUTING", "input_received", "apply_decisions")]
    if output_function:
        topology["OBSERVING", "observed"].insert(0, ("DONE", "observed [tool_gave_output]", "finish_from_tool"))
    if inputs:
        topology["PLANNING", "guardrail_tripped"] = [("FAILED", "guardrail_tripped", "fail_guardrail")]
    if outputs:
        topology["EXECUTING", "guardrail_tripped"] = [("FAILED", "guardrail_tripped", "fail_guardrail")]
        topology["EXECUTING", "output_checked"] = [("DONE", "output_checked", "finish_checked")]
    return topology


def topology_of(table: Any) -> dict[tuple[str, str], list[tuple[str, str, str | None]]]:
    found: dict[tuple[str, str], list[tuple[str, str, str | None]]] = {}
    for t in table:
        found.setdefault((t.source.value, t.event), []).append((t.target.value, t.label, t.action_name))
    return found


def passes(ctx: Any, value: Any) -> GuardrailResult:
    return GuardrailResult(tripped=False)


def answer_with(text: str) -> str:
    """An output function."""
    return text


VARIANTS = [
    (a, o, i, g)
    for a in (False, True)
    for o in (False, True)
    for i in (False, True)
    for g in (False, True)
    if not (o and g)  # an output function refuses output guardrails
]


def options_for(awaits: bool, output_function: bool, inputs: bool, outputs: bool) -> dict[str, Any]:
    return {
        **({"approval": lambda c: True} if awaits else {}),
        **({"output_type": answer_with} if output_function else {}),
        **({"input_guardrails": [passes]} if inputs else {}),
        **({"output_guardrails": [passes]} if outputs else {}),
    }


@pytest.mark.parametrize(("awaits", "output_function", "inputs", "outputs"), VARIANTS)
def test_every_agent_chart_variant_has_the_documented_topology(
    awaits: bool, output_function: bool, inputs: bool, outputs: bool
) -> None:
    """The table an agent runs, and the chart `agent_chart` builds for the same options, have
    exactly the transitions its docstring lists for them, guards in the order given."""
    expected = expected_topology(awaits, output_function, inputs, outputs)
    table = Agent("a", **options_for(awaits, output_function, inputs, outputs)).machine.table
    assert topology_of(table) == expected
    fresh = agent_chart(
        awaits_input=awaits, output_function=output_function, input_guardrails=inputs, output_guardrails=outputs
    )
    guards = {g.name: g.fn for t in table for g in t.guards}
    actions = {t.action_name: t.action for t in table if t.action_name}
    assert topology_of(compile_chart(fresh, guards=guards, actions=actions, internal=table.internal)) == expected


@pytest.mark.parametrize(("awaits", "output_function", "inputs", "outputs"), [v for v in VARIANTS if any(v)])
def test_a_variant_is_made_once_per_chart_and_named_after_what_it_adds(
    awaits: bool, output_function: bool, inputs: bool, outputs: bool
) -> None:
    """A machine class with its own chart gets its variants built from that chart (a
    `Handoffs` chart keeps its handoff limit: see `fresh_handoffs`), named `<Awaiting>
    <OutputFunction><InputGuarded><OutputGuarded><chart>`, once per combination."""

    class Fresh(AgentMachine):
        chart_class = agent_chart(name="FreshChart")

    agent = Agent("a", **options_for(awaits, output_function, inputs, outputs))
    table = Fresh(agent).table
    prefix = "Awaiting" * awaits + "OutputFunction" * output_function + "InputGuarded" * inputs + "OutputGuarded" * outputs
    assert table.chart.__name__ == f"{prefix}FreshChart"
    assert topology_of(table) == expected_topology(awaits, output_function, inputs, outputs)
    assert Fresh(Agent("b", **options_for(awaits, output_function, inputs, outputs))).table.chart is table.chart


def test_a_machine_with_nothing_to_add_runs_its_own_chart() -> None:
    class Fresh(AgentMachine):
        chart_class = agent_chart(name="PlainFreshChart")

    assert Fresh(Agent("a")).table.chart is Fresh.chart_class


def test_a_handoffs_charts_awaiting_variant_keeps_the_handoff_limit() -> None:
    assert topology_of(fresh_handoffs().table) == expected_topology(True, False, False, False, handoff_limit=True)
