"""Usage limits users set (issue 15 item 3): `Limits(input_tokens=, output_tokens=, total_tokens=,
requests=, wall_time=)` bound the whole run tree; exceeding one is FAILED(usage_limit) through each
machine's `limit_exceeded` transition (docs/architecture.md, Limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from fsm_agents import (
    Agent,
    FunctionModel,
    InvalidDefinition,
    LimitExceeded,
    Limits,
    LimitUnhandled,
    Phase,
    ScriptedModel,
    Snapshot,
    Step,
    fused,
    resume,
    run,
    tool,
)
from fsm_agents.agent import AgentMachine
from fsm_agents.events import CallModel, Event
from fsm_agents.machine import Machine, chart_class, compile_chart
from fsm_agents.models import ModelResponse, call, reply
from fsm_agents.patterns import Parallel, Sequential
from fsm_agents.state import AssistantMessage, Conversation, ModelRequest, Usage
from fsm_agents.store import MemoryStore, SQLiteStore
from fsm_agents.store._records import decode_event, encode_event
from fsm_agents.testing import InvariantViolation, check_machine, history_problems

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def _looping(usage: Usage = Usage(requests=1)) -> tuple[FunctionModel, list[ModelRequest]]:
    """A model that always asks for `add` again (reporting `usage` per reply), and its requests."""
    seen: list[ModelRequest] = []

    def fn(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        n = len(seen)
        return ModelResponse(message=reply(None, call("add", f"c{n}", a=n, b=1)), usage=usage)

    return FunctionModel(fn), seen


# -- the option --------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["input_tokens", "output_tokens", "total_tokens", "requests"])
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_count_limits_are_ints_of_at_least_one(field: str, bad: Any) -> None:
    with pytest.raises(InvalidDefinition, match=rf"Limits\.{field} must be None or an int >= 1"):
        Limits(**{field: bad})
    assert getattr(Limits(**{field: 7}), field) == 7


@pytest.mark.parametrize("bad", [0, -0.5, float("inf"), float("nan"), True, "1"])
def test_wall_time_is_a_positive_number_of_seconds(bad: Any) -> None:
    with pytest.raises(InvalidDefinition, match=r"Limits\.wall_time must be None or a positive number of seconds"):
        Limits(wall_time=bad)
    assert Limits(wall_time=0.5).wall_time == 0.5


def test_only_usage_limits_make_a_budget() -> None:
    assert not Limits(model_timeout=3, tool_timeout=1, max_concurrency=2).budgeted
    for field in ("input_tokens", "output_tokens", "total_tokens", "requests", "wall_time"):
        assert Limits(**{field: 5}).budgeted


# -- one agent ---------------------------------------------------------------------------------


async def test_the_request_limit_stops_the_run_before_the_call_that_would_exceed_it() -> None:
    model, seen = _looping()
    agent = Agent("looper", tools=[add], model=model, max_steps=10)
    result = await run(agent, "count", limits=Limits(requests=2))
    assert result.phase is Phase.FAILED and result.status == "failed"
    f = result.failure
    assert f is not None and f.kind == "usage_limit" and f.detail == "requests"
    assert "requests limit was exceeded: used 3, at most 2" in f.message
    assert len(seen) == 2  # the third call was never made
    assert type(result.events[-1]) is LimitExceeded and result.output is None
    assert not history_problems(result.snapshot.conversation)


@pytest.mark.parametrize(
    ("limit", "usage", "used"),
    [
        ("input_tokens", Usage(input_tokens=100, output_tokens=1, requests=1), 200),
        ("output_tokens", Usage(input_tokens=1, output_tokens=100, requests=1), 200),
        ("total_tokens", Usage(input_tokens=50, output_tokens=50, requests=1), 200),
    ],
)
async def test_a_token_limit_keeps_the_reply_that_crossed_it_and_answers_its_calls(
    limit: str, usage: Usage, used: int
) -> None:
    ran: list[int] = []

    @tool
    def count(n: int) -> int:
        """Count."""
        ran.append(n)
        return n

    def fn(request: ModelRequest) -> ModelResponse:
        k = sum(1 for m in request.messages if m.role == "assistant") + 1
        return ModelResponse(message=reply(f"turn {k}", call("count", f"c{k}", n=k)), usage=usage)

    agent = Agent("counter", tools=[count], model=FunctionModel(fn), max_steps=10)
    result = await run(agent, "go", limits=Limits(**{limit: 150}))
    f = result.failure
    assert f is not None and f.kind == "usage_limit" and f.detail == limit
    assert f"{limit} limit was exceeded: used {used}, at most 150" in f.message
    assert ran == [1]  # the second reply's call did not run ...
    messages = result.snapshot.conversation.messages
    assert [m.content for m in messages if m.role == "assistant"] == ["turn 1", "turn 2"]  # ... but the reply is kept
    assert messages[-1].role == "tool" and messages[-1].is_error and "limit was exceeded" in messages[-1].content
    assert not history_problems(result.snapshot.conversation) and not result.snapshot.pending
    assert result.usage.input_tokens + result.usage.output_tokens == 2 * (usage.input_tokens + usage.output_tokens)


async def test_a_final_answer_that_crosses_a_token_limit_still_ends_the_run_done() -> None:
    big = ModelResponse(message=AssistantMessage(content="done"), usage=Usage(input_tokens=500, requests=1))
    result = await run(Agent("a", model=ScriptedModel([big])), "hi", limits=Limits(total_tokens=10))
    assert result.ok and result.output == "done"


async def test_without_limits_nothing_is_counted() -> None:
    model, seen = _looping(Usage(input_tokens=10**6, output_tokens=10**6, requests=1))
    result = await run(Agent("a", tools=[add], model=model, max_steps=4), "x", limits=Limits(tool_timeout=5))
    assert result.failure is not None and result.failure.kind == "budget_exhausted" and len(seen) == 4


async def test_the_wall_time_cancels_a_model_call_in_flight() -> None:
    cancelled = anyio.Event()

    async def hangs(request: ModelRequest) -> ModelResponse:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    with anyio.fail_after(60):  # a safety net: without the limit the call would hang
        result = await run(Agent("slow", model=FunctionModel(hangs)), "hi", limits=Limits(wall_time=0.2))
    assert cancelled.is_set()  # the model saw its call cancelled
    f = result.failure
    assert f is not None and f.kind == "usage_limit" and f.detail == "wall_time"
    assert "wall_time limit was exceeded" in f.message and "at most 0.2 s" in f.message
    event = result.events[-1]
    assert isinstance(event, LimitExceeded) and event.used >= 0.2 and event.maximum == 0.2


async def test_the_wall_time_cancels_a_running_tool_and_answers_its_call() -> None:
    cancelled: list[bool] = []

    @tool
    async def wait_forever() -> str:
        """Wait."""
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise
        return "never"

    model = ScriptedModel([reply(None, call("wait_forever", "w1"))])
    with anyio.fail_after(60):  # a safety net: without the limit the tool would hang
        result = await run(Agent("waiter", tools=[wait_forever], model=model), "go", limits=Limits(wall_time=0.2))
    assert cancelled == [True]
    assert result.failure is not None and result.failure.detail == "wall_time"
    last = result.snapshot.conversation.messages[-1]
    assert last.role == "tool" and last.tool_call_id == "w1" and last.is_error
    assert not history_problems(result.snapshot.conversation)


# -- the run tree shares one budget --------------------------------------------------------------


async def test_a_sequential_whose_stage_hits_the_shared_request_limit_fails_with_usage_limit() -> None:
    first = Agent("first", model=ScriptedModel([reply(None, call("add", "a1", a=1, b=2)), "3"]), tools=[add])
    second_model, second_seen = _looping()
    second = Agent("second", model=second_model, tools=[add])
    pipeline = Sequential("pipe", [first, second])
    result = await run(pipeline, "go", limits=Limits(requests=2))
    assert result.children and result.phase is Phase.FAILED
    f = result.failure
    assert f is not None and f.kind == "usage_limit" and f.detail == "requests"
    assert "'second'" in f.message  # the stage is named
    assert second_seen == []  # the first stage spent the tree's two requests
    (child,) = [c for c in result.children.values() if c.snapshot.machine == "agent:second"]
    assert child.failure is not None and child.failure.kind == "usage_limit"


async def test_a_parallel_stops_before_its_synthesizer_once_the_branches_spent_the_tokens() -> None:
    def branch(name: str) -> Agent:
        answer = ModelResponse(message=AssistantMessage(content=name), usage=Usage(output_tokens=100, requests=1))
        return Agent(name, model=ScriptedModel([answer]))

    synth_model, synth_seen = _looping()
    fan = Parallel("fan", [branch("x"), branch("y")], synthesizer=Agent("z", model=synth_model))
    result = await run(fan, "go", limits=Limits(output_tokens=150))
    assert {c.phase for c in result.children.values()} == {Phase.DONE}  # each branch's reply was kept
    f = result.failure
    assert f is not None and f.kind == "usage_limit" and f.detail == "output_tokens"
    assert "used 200, at most 150" in f.message
    assert synth_seen == []
    assert type(result.events[-1]) is LimitExceeded


async def test_a_machine_without_a_limit_exceeded_transition_is_a_typed_error() -> None:
    from statemachine import State

    planning, done = State("PLANNING", initial=True), State("DONE", final=True)
    Bare = chart_class("Bare", {"planning": planning, "done": done, "model_replied": planning.to(done)})

    class BareMachine(Machine):
        name = "bare"
        table = compile_chart(Bare)

        def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
            s = Snapshot[Any](machine=self.name, phase=Phase.PLANNING, conversation=Conversation.of(id=run_id), data=None)
            request = ModelRequest(agent="m", messages=())
            return Step(s, (CallModel(key=f"{run_id}/0/0", agent="m", request=request),))

    with pytest.raises(LimitUnhandled, match="has no limit_exceeded transition"):
        await run(BareMachine(), "x", models={"m": ScriptedModel(["a"])}, limits=Limits(requests=1, wall_time=1e-9))


# -- persistence -----------------------------------------------------------------------------------


def test_limit_exceeded_round_trips_through_the_store_records() -> None:
    event = LimitExceeded(limit="wall_time", used=1.25, maximum=1.0)
    assert decode_event(encode_event(event)) == event


async def test_a_stored_usage_limit_failure_is_resumed_as_is(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "runs.db") as store:
        model, _ = _looping()
        agent = Agent("looper", tools=[add], model=model)
        result = await run(agent, "count", store=store, conversation_id="c", limits=Limits(requests=1))
        assert result.failure is not None and result.failure.kind == "usage_limit"
        assert any(r.kind == "event" and r.data["event"]["type"] == "LimitExceeded" for r in store.load("c"))
        again = await resume("c", Agent("looper", tools=[add]), store=store)  # no model needed: it is final
        assert again.snapshot == result.snapshot and again.events == result.events


async def test_limits_apply_per_call_so_a_resumed_run_gets_a_fresh_budget() -> None:
    @tool(requires_approval=True)
    def pay(amount: int) -> str:
        """Pay."""
        return f"paid {amount}"

    store = MemoryStore()
    model = ScriptedModel([reply(None, call("pay", "p1", amount=5)), "paid"])
    agent = Agent("payer", tools=[pay], model=model)
    first = await run(agent, "pay 5", store=store, conversation_id="c", limits=Limits(requests=1))
    assert first.status == "suspended"
    from fsm_agents import Approved

    done = await resume("c", agent, store=store, decisions={"p1": Approved()}, limits=Limits(requests=1))
    assert done.ok and done.output == "paid"  # the resume's one request was its own


# -- check_machine -------------------------------------------------------------------------------


def test_check_machine_draws_limit_exceeded_in_every_resting_phase() -> None:
    agent = Agent("looper", tools=[add], max_steps=3)
    report = check_machine(agent, max_examples=150, seed=2)
    assert "limits" in report.invariants
    taken = {(t.source, t.event) for t in report.declared if report.covered[report.key(t)]}
    assert {(Phase.PLANNING, "limit_exceeded"), (Phase.EXECUTING, "limit_exceeded")} <= taken


def test_check_machine_catches_a_limit_failure_that_leaves_calls_unanswered() -> None:
    class ForgetsPendingCalls(AgentMachine):
        @fused
        def fail_limit(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
            step = super().fail_limit(s, e, to)
            return Step(step.snapshot.evolve(conversation=s.conversation))  # the error results dropped

    with pytest.raises(InvariantViolation) as info:
        check_machine(ForgetsPendingCalls(Agent("looper", tools=[add], max_steps=3)), max_examples=200, seed=4)
    assert info.value.invariant == "limits", str(info.value)
    assert isinstance(info.value.events[-1], LimitExceeded)


def test_every_pattern_chart_fails_on_limit_exceeded_from_its_resting_phases() -> None:
    fan = Parallel("fan", [Agent("x"), Agent("y")], synthesizer=Agent("z"))
    s = fan.start("go").snapshot
    step = fan.step(s, LimitExceeded(limit="total_tokens", used=9, maximum=5))
    assert step.snapshot.phase is Phase.FAILED and step.snapshot.failure is not None
    assert step.snapshot.failure.kind == "usage_limit" and step.snapshot.failure.detail == "total_tokens"
    assert "fan" in step.snapshot.failure.message and "used 9, at most 5" in step.snapshot.failure.message
    observing = [t for t in fan.table.transitions if t.source is Phase.OBSERVING]
    assert observing and all(t.event != "limit_exceeded" for t in observing)  # transient: left by `observed` only
