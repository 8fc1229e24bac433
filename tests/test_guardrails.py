"""Guardrails (issue 15 item 4): `Agent(input_guardrails=[...], output_guardrails=[...])`; a trip is
FAILED(guardrail, name). Input guardrails run concurrently with the first model call and a trip
cancels it (docs/architecture.md, Guardrails)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, ConfigDict

from fsm_agents import (
    Agent,
    CheckOutput,
    EffectFinished,
    Finished,
    FunctionModel,
    GuardrailResult,
    GuardrailTripped,
    InvalidDefinition,
    Message,
    Phase,
    RunContext,
    ScriptedModel,
    Snapshot,
    Step,
    TransitionTaken,
    fused,
    guardrail,
    iterate,
    resume,
    run,
    stream,
    tool,
)
from fsm_agents.agent import AgentMachine
from fsm_agents.events import Event, OutputChecked
from fsm_agents.models import ModelResponse, call, reply
from fsm_agents.patterns import Sequential
from fsm_agents.state import ModelRequest
from fsm_agents.store import SQLiteStore
from fsm_agents.store._records import decode_event, encode_event
from fsm_agents.testing import InvariantViolation, check_machine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def passes(ctx: RunContext[Any], value: Any) -> GuardrailResult:
    return GuardrailResult(tripped=False)


def trips(ctx: RunContext[Any], value: Any) -> GuardrailResult:
    return GuardrailResult(tripped=True, reason="off topic")


# -- definitions --------------------------------------------------------------------------------


def test_guardrails_are_named_by_function_or_given_name() -> None:
    agent = Agent("a", input_guardrails=[passes, guardrail(trips, name="topic")], output_guardrails=[trips])
    assert [g.name for g in agent.input_guardrails] == ["passes", "topic"]
    assert [g.name for g in agent.output_guardrails] == ["trips"]

    @guardrail(name="decorated")
    async def check(ctx: RunContext[Any], value: Any) -> GuardrailResult:
        return GuardrailResult(tripped=False)

    assert check.name == "decorated" and check.is_async and not agent.input_guardrails[0].is_async


@pytest.mark.parametrize("option", ["input_guardrails", "output_guardrails"])
def test_bad_guardrail_definitions_are_invalid_definitions_naming_the_option(option: str) -> None:
    with pytest.raises(InvalidDefinition, match=f"{option} must hold functions"):
        Agent("a", **{option: [passes, "not a function"]})
    with pytest.raises(InvalidDefinition, match=f"{option} must be a list of guardrail functions"):
        Agent("a", **{option: passes})  # one function, not a list
    with pytest.raises(InvalidDefinition, match=f"{option} has two guardrails named 'passes'"):
        Agent("a", **{option: [passes, passes]})
    Agent("a", **{option: [passes, guardrail(passes, name="again")]})  # named apart: fine


def test_guardrail_result_checks_its_fields() -> None:
    with pytest.raises(TypeError, match="tripped must be a bool"):
        GuardrailResult(tripped="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reason must be a str"):
        GuardrailResult(tripped=True, reason=3)  # type: ignore[arg-type]


def test_plain_agents_have_no_guardrail_transitions_and_name_none_on_their_calls() -> None:
    machine = Agent("plain", model=ScriptedModel(["x"])).machine
    assert "guardrail_tripped" not in machine.table.events and "output_checked" not in machine.table.events
    assert machine.start("hi").effects[0].guardrails == ()  # type: ignore[attr-defined]
    guarded = Agent("g", input_guardrails=[passes]).machine
    assert guarded.start("hi").effects[0].guardrails == ("passes",)  # type: ignore[attr-defined]


# -- input guardrails ---------------------------------------------------------------------------


async def test_an_input_trip_cancels_the_first_model_call_in_flight() -> None:
    started, cancelled = anyio.Event(), anyio.Event()

    async def slow(request: ModelRequest) -> ModelResponse:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    async def waits_then_trips(ctx: RunContext[Any], messages: Any) -> GuardrailResult:
        await started.wait()  # the model call is in flight
        return GuardrailResult(tripped=True, reason="asks for a password")

    agent = Agent("desk", model=FunctionModel(slow), input_guardrails=[waits_then_trips])
    with anyio.fail_after(60):  # a safety net: without the cancellation the call would hang
        result = await run(agent, "what is the admin password?")
    assert cancelled.is_set()  # the model saw its call cancelled
    f = result.failure
    assert result.phase is Phase.FAILED and f is not None and f.kind == "guardrail" and f.detail == "waits_then_trips"
    assert "input guardrail 'waits_then_trips'" in f.message and "asks for a password" in f.message
    assert result.events == (GuardrailTripped(guardrail="waits_then_trips", stage="input", reason="asks for a password"),)


async def test_input_guardrails_that_pass_let_the_reply_through_and_see_the_input_and_deps() -> None:
    seen: list[tuple[Any, str, tuple[Message, ...]]] = []

    def sync_check(ctx: RunContext[Any], messages: Any) -> GuardrailResult:
        seen.append((ctx.deps, ctx.agent, messages))
        return GuardrailResult(tripped=False)

    async def async_check(ctx: RunContext[Any], messages: Any) -> GuardrailResult:
        seen.append((ctx.deps, ctx.agent, messages))
        return GuardrailResult(tripped=False, reason="fine")

    agent = Agent("desk", model=ScriptedModel(["hello"]), input_guardrails=[sync_check, async_check])
    result = await run(agent, "hi there", deps={"tenant": 7})
    assert result.ok and result.output == "hello"
    assert len(seen) == 2
    for deps, name, messages in seen:
        assert deps == {"tenant": 7} and name == "desk"
        assert [m.content for m in messages] == ["hi there"]


async def test_input_guardrails_run_once_per_run_not_on_every_model_call() -> None:
    calls: list[int] = []

    def counted(ctx: RunContext[Any], messages: Any) -> GuardrailResult:
        calls.append(len(messages))
        return GuardrailResult(tripped=False)

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    model = ScriptedModel([reply(None, call("add", a=1, b=2)), reply(None, call("add", a=3, b=3)), "done"])
    result = await run(Agent("calc", model=model, tools=[add], input_guardrails=[counted]), "sum")
    assert result.ok and calls == [1]


async def test_a_trip_after_the_model_replied_still_fails_the_run() -> None:
    replied = anyio.Event()

    def model(request: ModelRequest) -> str:
        replied.set()
        return "a reply that must not be used"

    async def slow_trip(ctx: RunContext[Any], messages: Any) -> GuardrailResult:
        await replied.wait()
        return GuardrailResult(tripped=True, reason="late but decisive")

    result = await run(Agent("a", model=FunctionModel(model), input_guardrails=[slow_trip]), "hi")
    assert result.failure is not None and result.failure.kind == "guardrail"
    assert result.output is None and not any(m.role == "assistant" for m in result.snapshot.conversation.messages)


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        (trips, "off topic"),
        (lambda ctx, value: (_ for _ in ()).throw(ValueError("boom")), "it raised ValueError: boom"),
        (lambda ctx, value: True, "it returned bool True, not a GuardrailResult"),
        (lambda ctx, value: None, "it returned NoneType None, not a GuardrailResult"),
    ],
    ids=["trips", "raises", "returns-a-bool", "returns-none"],
)
async def test_a_trip_a_raise_or_a_wrong_return_is_failed_guardrail_not_an_escape(check: Any, reason: str) -> None:
    agent = Agent("a", model=ScriptedModel(["never used"]), input_guardrails=[guardrail(check, name="screen")])
    result = await run(agent, "hi")
    f = result.failure
    assert f is not None and f.kind == "guardrail" and f.detail == "screen" and reason in f.message


async def test_an_async_guardrail_that_raises_is_a_trip_too() -> None:
    async def broken(ctx: RunContext[Any], value: Any) -> GuardrailResult:
        raise RuntimeError("classifier down")

    result = await run(Agent("a", model=ScriptedModel(["x"]), output_guardrails=[broken]), "hi")
    f = result.failure
    assert f is not None and f.kind == "guardrail" and "it raised RuntimeError: classifier down" in f.message


# -- output guardrails --------------------------------------------------------------------------


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True)
    value: int


async def test_an_output_guardrail_checks_the_validated_answer_before_done() -> None:
    checked: list[Any] = []

    def positive(ctx: RunContext[Any], answer: Answer) -> GuardrailResult:
        checked.append(answer)
        return GuardrailResult(tripped=answer.value < 0, reason=f"{answer.value} is negative")

    ok = await run(Agent("a", model=ScriptedModel(['{"value": 4}']), output_type=Answer, output_guardrails=[positive]), "x")
    assert ok.ok and ok.output == Answer(value=4) and checked == [Answer(value=4)]
    assert [type(e) for e in ok.events][-1] is OutputChecked

    bad_then_neg = ScriptedModel(["not json", '{"value": -2}'])
    agent = Agent("a", model=bad_then_neg, output_type=Answer, output_guardrails=[positive], output_retries=1)
    tripped = await run(agent, "x")
    assert checked[1:] == [Answer(value=-2)]  # the invalid answer was retried, not checked
    f = tripped.failure
    assert f is not None and f.kind == "guardrail" and f.detail == "positive" and "-2 is negative" in f.message
    assert "final answer" in f.message and tripped.output is None
    assert tripped.snapshot.conversation.messages[-1].content == '{"value": -2}'  # the answer is kept in the history


async def test_output_guardrails_pass_both_ways_sync_and_async() -> None:
    async def fine(ctx: RunContext[Any], answer: Any) -> GuardrailResult:
        await anyio.sleep(0)
        return GuardrailResult(tripped=False)

    agent = Agent("a", model=ScriptedModel(["hello"]), output_guardrails=[passes, fine])
    result = await run(agent, "x")
    assert result.ok and result.output == "hello"
    tripped = await run(Agent("a", model=ScriptedModel(["hello"]), output_guardrails=[fine, trips]), "x")
    assert tripped.failure is not None and tripped.failure.detail == "trips"


async def test_a_guarded_agent_inside_a_pattern_fails_its_stage() -> None:
    guarded = Agent("guarded", model=ScriptedModel(["secret"]), output_guardrails=[trips])
    result = await run(Sequential("pipe", [Agent("first", model=ScriptedModel(["ok"])), guarded]), "go")
    f = result.failure
    assert f is not None and f.kind == "child_failed" and "guardrail: guarded: the output guardrail 'trips'" in f.message


# -- stored, resumed and streamed runs ----------------------------------------------------------


def test_guardrail_events_round_trip_through_the_store_records() -> None:
    for event in (GuardrailTripped(guardrail="g", stage="output", reason="why"), OutputChecked()):
        assert decode_event(encode_event(event)) == event


async def test_a_stored_trip_is_resumed_as_is(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "runs.db") as store:
        agent = Agent("a", model=ScriptedModel(["x"]), input_guardrails=[trips])
        result = await run(agent, "hi", store=store, conversation_id="c")
        assert result.failure is not None and result.failure.kind == "guardrail"
        again = await resume("c", Agent("a", input_guardrails=[trips]), store=store)
        assert again.snapshot == result.snapshot and again.events == result.events


async def test_an_output_check_cut_off_is_performed_again_on_resume(tmp_path: Path) -> None:
    checks: list[str] = []

    def counted(ctx: RunContext[Any], answer: Any) -> GuardrailResult:
        checks.append(answer)
        return GuardrailResult(tripped=False)

    with SQLiteStore(tmp_path / "runs.db") as store:
        agent = Agent("a", model=ScriptedModel(["the answer"]), output_guardrails=[counted])
        async with iterate(agent, "q", store=store, conversation_id="c") as r:
            async for item in r:
                if any(isinstance(e, CheckOutput) for e in item.effects):
                    break  # leaving the block cancels the run before the check
        assert checks == []
        done = await resume("c", Agent("a", model=ScriptedModel([]), output_guardrails=[counted]), store=store)
        assert done.ok and done.output == "the answer" and checks == ["the answer"]


async def test_streaming_shows_the_trip() -> None:
    agent = Agent("a", model=ScriptedModel(["x"]), output_guardrails=[trips])
    seen = [ev async for ev in stream(agent, "hi")]
    finished = [ev for ev in seen if isinstance(ev, EffectFinished) and isinstance(ev.event, GuardrailTripped)]
    assert finished and isinstance(finished[0].effect, CheckOutput) and finished[0].effect.output == "x"
    taken = [ev.taken.event for ev in seen if isinstance(ev, TransitionTaken)]
    assert taken[-2:] == ["model_replied", "guardrail_tripped"]
    assert isinstance(seen[-1], Finished) and seen[-1].result.failure is not None
    assert seen[-1].result.failure.kind == "guardrail"


# -- check_machine ------------------------------------------------------------------------------


def _guarded_agent() -> Agent:
    @tool
    def lookup(q: str) -> str:
        """Look up."""
        return q

    helper = Agent("helper", "Answers without output guardrails.", max_steps=3)  # so `finish` is live too
    return Agent(
        "guarded", tools=[lookup], handoffs=[helper], input_guardrails=[passes], output_guardrails=[trips], max_steps=3
    )


def test_check_machine_covers_the_guardrail_transitions() -> None:
    report = check_machine(_guarded_agent(), max_examples=200, seed=3, assert_full_coverage=True)
    assert "guardrails" in report.invariants and report.coverage == 1.0
    events = {t.event for t in report.declared}
    assert {"guardrail_tripped", "output_checked", "limit_exceeded"} <= events


def test_check_machine_catches_a_trip_that_keeps_the_output() -> None:
    class KeepsOutput(AgentMachine):
        @fused
        def fail_guardrail(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
            step = super().fail_guardrail(s, e, to)
            return Step(step.snapshot.evolve(output=s.output))

    with pytest.raises(InvariantViolation) as info:
        check_machine(KeepsOutput(_guarded_agent()), max_examples=200, seed=4)
    assert info.value.invariant == "guardrails", str(info.value)


def test_a_call_model_dumps_its_guardrails_only_when_it_names_some() -> None:
    from fsm_agents.codec import dump, load_effect

    plain = Agent("plain").machine.start("hi").effects[0]
    guarded = Agent("g", input_guardrails=[passes]).machine.start("hi").effects[0]
    assert "guardrails" not in dump(plain)  # as recorded before the field existed (cassettes)
    assert dump(guarded)["guardrails"] == ["passes"]
    assert load_effect(dump(plain)) == plain and load_effect(dump(guarded)) == guarded
