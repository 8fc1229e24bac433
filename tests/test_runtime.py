"""The runtime: performing effects on asyncio and trio, observers, timeouts, cancellation."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from statemachine import State, StateChart

from fsm_agents import (
    Agent,
    AgentsFinished,
    FsmAgentsError,
    FunctionModel,
    Limits,
    LoggingObserver,
    Machine,
    ModelReplied,
    Observer,
    Phase,
    RunAgents,
    ScriptedModel,
    Snapshot,
    Step,
    Taken,
    compile_chart,
    fused,
    run,
    run_sync,
    tool,
)
from fsm_agents.agent import _ACTIONS, _GUARDS, AgentMachine
from fsm_agents.events import AgentTask, Effect, Event, effect_key
from fsm_agents.models import ModelRequest, ModelResponse, ModelTimeout, call, reply
from fsm_agents.observers import Redactor
from fsm_agents.state import AssistantMessage, Conversation, EmptyContext, Frozen, Usage
from fsm_agents.testing import history_problems

pytestmark = pytest.mark.anyio


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def calculator(model: Any, **kwargs: Any) -> Agent:
    return Agent("calc", "Use add.", model, tools=[add], **kwargs)


async def test_scripted_tool_loop_reaches_done_with_usage_and_trace() -> None:
    model = ScriptedModel([reply(None, call("add", a=2, b=3)), "5"])
    result = await run(calculator(model), "2+3?", run_id="r1")
    assert result.ok and result.output == "5" and result.run_id == "r1"
    assert [(t.source, t.event, t.target) for t in result.trace] == [
        ("PLANNING", "model_replied", "EXECUTING"),
        ("EXECUTING", "tools_finished", "OBSERVING"),
        ("OBSERVING", "observed", "PLANNING"),
        ("PLANNING", "model_replied", "DONE"),
    ]
    assert [e.name for e in result.events] == ["model_replied", "tools_finished", "model_replied"]
    assert result.snapshot.results[0].content == "5"
    assert len(model.requests) == 2 and len(model.requests[1].messages) == 3


async def test_replaying_the_events_reproduces_the_final_snapshot() -> None:
    model = ScriptedModel([reply(None, call("add", a=1, b=1)), "2"])
    result = await run(calculator(model), "1+1?", run_id="r")
    machine = calculator(None).machine
    step = machine.start(result.input, run_id="r")
    for event in result.events:
        step = machine.step(step.snapshot, event)
    assert step.snapshot == result.snapshot


async def test_effects_and_trace_are_derived_from_the_events_as_observed_live() -> None:
    live_effects: list[Effect] = []
    live_trace: list[Taken] = []

    class Recorder(Observer):
        def on_effect(self, effect: Effect) -> None:
            live_effects.append(effect)

        def on_transition(self, taken: Taken, snapshot: Snapshot[Any]) -> None:
            live_trace.append(taken)

    model = ScriptedModel([reply(None, call("add", a=1, b=2)), reply(None, call("add", a=3, b=3)), "6"])
    result = await run(calculator(model), "x", observers=[Recorder()], run_id="r")
    assert len(result.effects) == len(result.events) == 5
    assert list(result.effects) == live_effects and result.effects[0].key == "r/0/0"
    assert list(result.trace) == live_trace and len(live_trace) == 7 and result.trace[-1].target is Phase.DONE
    with pytest.raises(AttributeError):
        result.events = ()  # type: ignore[misc]
    assert "events=5" in repr(result) and "DONE" in repr(result)


async def test_events_read_back_equal_to_the_events_the_machine_consumed() -> None:
    """The run keeps its events packed (see RunResult); what `events` gives back must equal what
    `step` consumed, usage and failures included."""
    live_events: list[Event] = []

    class Recorder(Observer):
        def on_event(self, effect: Effect, event: Event) -> None:
            live_events.append(event)

    turns = iter(
        [
            ModelResponse(
                message=reply(None, call("add", "c1", a=1, b=2), call("add", "c2", a=3, b=4)),
                usage=Usage(input_tokens=7, output_tokens=3),
            ),
            ModelResponse(message=reply(None, call("add", a="x", b=2))),  # a tool error result
            ModelResponse(message=reply("3")),
        ]
    )
    result = await run(calculator(FunctionModel(lambda request: next(turns))), "x", observers=[Recorder()])
    assert result.events == tuple(live_events) and len(live_events) == 5
    assert [type(e).__name__ for e in result.events] == ["ModelReplied", "ToolsFinished"] * 2 + ["ModelReplied"]
    assert result.events[0].usage.input_tokens == 7 and len(result.events[1].results) == 2  # type: ignore[attr-defined]
    assert not result.events[3].results[0].ok  # type: ignore[attr-defined]
    assert result.events is result.events  # rebuilt once
    failed = await run(calculator(ScriptedModel([])), "x")
    assert [type(e).__name__ for e in failed.events] == ["ModelFailed"] and failed.failure is not None

    class Tagged(AssistantMessage):  # a user's message subclass is kept as it is, not packed
        tag: str = "t"

    tagged = await run(calculator(ScriptedModel([ModelResponse(message=Tagged(content="hi"))])), "x")
    assert type(tagged.events[0]).__name__ == "ModelReplied" and type(tagged.events[0].message) is Tagged  # type: ignore[attr-defined]


async def test_a_machine_whose_step_is_not_pure_is_reported_when_its_effects_are_read() -> None:
    calls = 0

    agent = calculator(ScriptedModel(["done"]))
    machine = agent.machine
    original = machine.finish

    @fused
    def counting_finish(s: Snapshot[Any], e: Event, to: Phase) -> Step:
        nonlocal calls
        calls += 1
        out = original(s, e, to)
        return Step(out.snapshot.evolve(output=f"answer {calls}"), out.effects, out.transitions)

    machine.table = compile_chart(
        machine.table.chart,
        guards={g: getattr(machine, g) for g in _GUARDS},
        actions={a: counting_finish if a == "finish" else getattr(machine, a) for a in _ACTIONS},
        internal=frozenset({"observed", "handed_off"}),
    )
    result = await run(machine, "x")
    assert result.output == "answer 1"
    with pytest.raises(FsmAgentsError, match="not pure"):
        result.effects  # noqa: B018


def test_run_sync_on_both_backends() -> None:
    for backend in ("asyncio", "trio"):
        model = ScriptedModel([reply(None, call("add", a=2, b=2)), "4"])
        assert run_sync(calculator(model), "2+2", backend=backend).output == "4"


async def test_models_argument_overrides_and_missing_model_is_a_clear_error() -> None:
    agent = calculator(None)
    with pytest.raises(FsmAgentsError, match=r"no model for agent\(s\) calc"):
        await run(agent, "x")  # run is a coroutine function: every error is raised when it is awaited
    result = await run(agent, "x", models={"calc": ScriptedModel(["fine"])})
    assert result.output == "fine"


async def test_model_exceptions_become_model_failed() -> None:
    def broken(request: ModelRequest) -> str:
        raise RuntimeError("provider bug")

    result = await run(calculator(FunctionModel(broken)), "x")
    assert result.phase is Phase.FAILED and result.failure is not None
    assert result.failure.kind == "model_error" and "RuntimeError: provider bug" in result.failure.message
    result = await run(calculator(ScriptedModel([ModelTimeout("slow")])), "x")
    assert result.failure is not None and result.failure.detail == "timeout"
    result = await run(calculator(ScriptedModel([])), "x")
    assert result.failure is not None and result.failure.detail == "exhausted"


async def test_model_timeout_limit_fails_the_run() -> None:
    async def slow(request: ModelRequest) -> str:
        await anyio.sleep(30)
        return "late"

    result = await run(calculator(FunctionModel(slow)), "x", limits=Limits(model_timeout=0.05))
    assert result.failure is not None and result.failure.detail == "timeout"
    assert "0.05 s" in result.failure.message


async def test_budget_exhausted_run_has_a_well_formed_history() -> None:
    model = FunctionModel(lambda request: reply(None, call("add", f"c{len(request.messages)}", a=1, b=1)))
    result = await run(calculator(model, max_steps=3), "loop forever")
    assert result.phase is Phase.FAILED and result.failure is not None and result.failure.kind == "budget_exhausted"
    assert history_problems(result.snapshot.conversation) == []
    assert result.usage.requests == 0 and len(result.events) == 5


async def test_observers_see_effects_events_and_transitions_in_order() -> None:
    seen: list[str] = []

    class Recorder(Observer):
        def on_effect(self, effect: Effect) -> None:
            seen.append(f"effect:{type(effect).__name__}")

        def on_event(self, effect: Effect, event: Event) -> None:
            seen.append(f"event:{event.name}")

        def on_transition(self, taken: Taken, snapshot: Snapshot[Any]) -> None:
            seen.append(f"{taken.source}->{taken.target}")

    class Broken(Observer):
        def on_event(self, effect: Effect, event: Event) -> None:
            raise RuntimeError("observer bug")

    model = ScriptedModel([reply(None, call("add", a=1, b=2)), "3"])
    result = await run(calculator(model), "x", observers=[Recorder(), Broken()])
    assert result.ok
    assert seen == [
        "effect:CallModel", "event:model_replied", "PLANNING->EXECUTING",
        "effect:RunTools", "event:tools_finished", "EXECUTING->OBSERVING", "OBSERVING->PLANNING",
        "effect:CallModel", "event:model_replied", "PLANNING->DONE",
    ]  # fmt: skip


async def test_logging_observer_redacts_secrets(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "env-secret-value-123")
    leaky = reply(None, call("add", a=1, b=2))
    leaky = leaky.model_copy(update={"content": "key sk-abcdefghijklmnopqrstuv and env-secret-value-123"})
    model = ScriptedModel([leaky, "Authorization: Bearer abcdefghijklmnop"])
    with caplog.at_level(logging.INFO, logger="fsm_agents.run"):
        await run(calculator(model), "x", observers=[LoggingObserver(redactor=Redactor(["my-own-secret"]))])
    text = caplog.text
    assert "step 1: PLANNING --model_replied--> EXECUTING" in text
    assert "sk-abcdefghijklmnopqrstuv" not in text and "env-secret-value-123" not in text
    assert "abcdefghijklmnop" not in text and "[REDACTED]" in text
    assert Redactor(["my-own-secret"])("x my-own-secret y api_key=zzzz1234") == "x [REDACTED] y api_key=[REDACTED]"


async def test_cancelling_a_run_cancels_its_tools() -> None:
    started, cancelled = anyio.Event(), anyio.Event()

    @tool
    async def wait_forever() -> str:
        """Never returns."""
        started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "never"

    agent = Agent("w", tools=[wait_forever], model=ScriptedModel([reply(None, call("wait_forever"))]))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, agent, "go")
            await started.wait()
            tg.cancel_scope.cancel()
    assert cancelled.is_set()


# -- a tiny parent machine that fans out to two agents: RunAgents through the runtime -------------


class FanOutChart(StateChart):
    planning = State("PLANNING", initial=True)
    executing = State("EXECUTING")
    done = State("DONE", final=True)
    failed = State("FAILED", final=True)
    agents_finished = executing.to(done, cond="all_done", on="collect") | executing.to(failed, on="give_up")
    never = planning.to(executing)


class FanOutData(Frozen):
    pass


class FanOut(Machine):
    def __init__(self, children: dict[str, Machine]) -> None:
        self.name = "fanout"
        self._children = children
        self.table = compile_chart(
            FanOutChart,
            guards={"all_done": lambda s, e: all(o.phase is Phase.DONE for o in e.outcomes)},  # type: ignore[attr-defined]
            actions={
                "collect": lambda s, e: Step(s.evolve(output=tuple(o.output for o in e.outcomes))),  # type: ignore[attr-defined]
                "give_up": lambda s, e: Step(s),
            },
        )

    def children(self) -> dict[str, Machine]:
        return self._children

    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        snap: Snapshot[FanOutData] = Snapshot(
            machine=self.name, phase=Phase.EXECUTING, conversation=Conversation(id=run_id),
            context=EmptyContext(), data=FanOutData(),
        )  # fmt: skip
        tasks = tuple(AgentTask(task_id=f"t{i}", machine=name, input=input) for i, name in enumerate(self._children))
        return Step(snap, (RunAgents(key=effect_key(snap), tasks=tasks),))


async def test_run_agents_runs_children_concurrently_and_folds_outcomes() -> None:
    gate = {"a": anyio.Event(), "b": anyio.Event()}

    tokens = Usage(input_tokens=3, output_tokens=2, requests=1)

    def waiting(me: str, other: str) -> FunctionModel:
        async def fn(request: ModelRequest) -> ModelResponse:
            gate[me].set()
            await gate[other].wait()  # only finishes if the sibling runs at the same time
            return ModelResponse(message=AssistantMessage(content=f"{me}:{request.messages[0].content}"), usage=tokens)

        return FunctionModel(fn)

    machine = FanOut({"a": Agent("a", model=waiting("a", "b")).machine, "b": Agent("b", model=waiting("b", "a")).machine})
    with anyio.fail_after(5):
        result = await run(machine, "hi", run_id="p")
    assert result.ok and result.output == ("a:hi", "b:hi")
    assert result.usage == Usage(input_tokens=6, output_tokens=4, requests=2)  # the children's tokens add up
    assert set(result.children) == {"t0", "t1"} and result.children["t0"].run_id == "p/t0"
    assert isinstance(result.events[0], AgentsFinished)
    assert not isinstance(result.events[0], ModelReplied)


async def test_runs_with_default_options_follow_a_model_replaced_between_runs() -> None:
    """Runs with default options share their performer; it must not keep serving a model the
    agent no longer has."""
    agent = calculator(ScriptedModel(["first"]))
    assert (await run(agent, "x")).output == "first"
    agent.model = ScriptedModel(["second"])
    assert (await run(agent, "x")).output == "second"
    assert (await run(agent, "x", models={"calc": ScriptedModel(["override"])})).output == "override"
    assert (await run(agent, "x")).failure is not None  # "second" is used up: the same model again


async def test_running_something_that_is_not_a_machine_is_a_typed_error() -> None:
    from fsm_agents.errors import NotAMachine

    with pytest.raises(NotAMachine, match="expected a machine, an Agent or a pattern, got int"):
        await run(42, "x")
    assert issubclass(NotAMachine, FsmAgentsError) and issubclass(NotAMachine, TypeError)


async def test_tools_run_for_a_machine_that_cannot_be_hashed() -> None:
    class Unhashable(AgentMachine):
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other: object) -> bool:
            return self is other

    agent = calculator(ScriptedModel([reply(None, call("add", a=2, b=3)), "5"]))
    machine = Unhashable(agent)
    with pytest.raises(TypeError):
        hash(machine)
    result = await run(machine, "2+3?")
    assert result.ok and result.snapshot.results[0].content == "5"

    @tool(name="add")
    def add_ten(a: int, b: int) -> int:
        """Add, plus ten."""
        return a + b + 10

    overridden = await run(
        machine, "2+3?", models={"calc": ScriptedModel([reply(None, call("add", a=2, b=3)), "15"])}, tools=[add_ten]
    )
    assert overridden.ok and overridden.snapshot.results[0].content == "15"


def test_default_run_ids_are_distinct_hex_and_a_forked_child_draws_its_own_prefix() -> None:
    import os
    import re

    from fsm_agents.runtime import new_run_id as _new_run_id

    ids = [run_sync(calculator(ScriptedModel(["ok"])), "x").run_id for _ in range(3)] + [_new_run_id()]
    assert len(set(ids)) == 4 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, _new_run_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert re.fullmatch(r"[0-9a-f]{32}", child) and child[:16] != ids[-1][:16]


def test_a_machine_whose_model_refers_back_to_it_is_freed_after_its_runs() -> None:
    """The runtime's shared performer and executors live on the machine, so a model that keeps a
    reference to its agent (and so to the machine) does not keep the machine alive."""
    import gc
    import weakref

    class Remembering(ScriptedModel):
        agent: Agent | None = None

    model = Remembering(["ok", "ok"])
    agent = calculator(model)
    model.agent = agent
    assert run_sync(agent, "x").ok
    assert run_sync(agent, "x", limits=Limits(tool_timeout=5.0)).ok
    machine = weakref.ref(agent.machine)
    del agent, model
    gc.collect()
    assert machine() is None


def test_a_run_result_pickles_without_its_machine() -> None:
    """A `RunResult` pickles (its machine holds a `ScriptedModel` with a lock and tool functions,
    which do not): the copy has the same snapshot, events, usage, trace, effects and children,
    the packed events of a live run come back as events, and `copy.copy` is the result itself."""
    import copy
    import pickle

    from fsm_agents.patterns import Sequential

    model = ScriptedModel(
        [
            reply(None, call("add", a=1, b=2)),
            ModelResponse(message=AssistantMessage(content="3"), usage=Usage(input_tokens=5)),
        ]
    )
    agent = Agent("adder", "add", model=model, tools=[add])
    result = run_sync(agent, "1+2?")
    loaded = pickle.loads(pickle.dumps(result))
    assert loaded.snapshot == result.snapshot and loaded.events == result.events and loaded.usage == result.usage
    assert loaded.trace == result.trace and loaded.effects == result.effects and loaded.output == "3"
    pipe = Sequential("pipe", [Agent("a", model=ScriptedModel(["A"])), Agent("b", model=ScriptedModel(["B"]))])
    piped = run_sync(pipe, "go")
    again = pickle.loads(pickle.dumps(piped))
    assert again.snapshot == piped.snapshot and again.trace == piped.trace
    assert {k: v.snapshot for k, v in again.children.items()} == {k: v.snapshot for k, v in piped.children.items()}
    assert copy.copy(piped) is piped and copy.deepcopy(piped).snapshot == piped.snapshot


def test_run_inputs_in_dict_form_are_messages_and_bad_ones_are_invalid_input() -> None:
    """A message in its JSON form (a dict) is accepted as a run input, alone or in a list; one
    that is not a valid message raises `InvalidInput` (a `ValueError`) saying which and why,
    instead of pydantic's error about the dict's keys."""
    from fsm_agents import InvalidInput

    agent = Agent("a", model=FunctionModel(lambda r: f"{len(r.messages)}:{r.messages[-1].content}"))
    assert run_sync(agent, {"role": "user", "content": "hi"}).output == "1:hi"
    history = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert run_sync(agent, history).output == "2:hello"
    with pytest.raises(InvalidInput, match=r"the input is not a message \(user\.content: Field required\)"):
        run_sync(agent, {"role": "user"})
    with pytest.raises(InvalidInput, match="input message 1 is not a message"):
        run_sync(agent, [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}])
    assert issubclass(InvalidInput, ValueError) and issubclass(InvalidInput, FsmAgentsError)


@pytest.mark.parametrize(
    "bad",
    [
        {"model_timeout": -1},
        {"model_timeout": 0},
        {"tool_timeout": float("nan")},
        {"tool_timeout": float("inf")},
        {"tool_timeout": "5"},
        {"max_concurrency": 0},
        {"max_concurrency": 2.5},
        {"max_concurrency": True},
    ],
)
def test_limits_reject_values_that_are_not_positive(bad: dict[str, Any]) -> None:
    """A timeout must be a positive finite number of seconds and `max_concurrency` an int ≥ 1
    (or None): anything else is an `InvalidDefinition` when the `Limits` is made, not a run
    that silently ignores it or fails later."""
    from fsm_agents import InvalidDefinition

    with pytest.raises(InvalidDefinition, match=f"Limits.{next(iter(bad))} must be"):
        Limits(**bad)
    assert Limits(model_timeout=0.5, tool_timeout=3, max_concurrency=1) == Limits(0.5, 3, 1)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_entry_points_inside_a_running_event_loop_raise_event_loop_running(backend: str) -> None:
    """`run_sync` (and `resume_sync`, `emit_sync`, which share its loop) called from inside a
    running asyncio or trio loop raises `EventLoopRunning`, naming the async call to use."""
    from fsm_agents import EventLoopRunning
    from fsm_agents.patterns import EventDriven

    agent = Agent("a", model=ScriptedModel(["x"]))
    bus = EventDriven("bus", {"e": Agent("h", model=ScriptedModel(["y"]))})
    seen: list[str] = []

    async def inside() -> None:
        for call_ in (lambda: run_sync(agent, "x"), lambda: bus.emit_sync("e")):
            with pytest.raises(EventLoopRunning, match=f"inside a running {backend} event loop.*await"):
                call_()
            seen.append("raised")

    anyio.run(inside, backend=backend)
    assert seen == ["raised", "raised"]
    assert run_sync(agent, "x", backend=backend).ok  # outside a loop it runs


def test_a_context_that_is_not_immutable_is_invalid_input() -> None:
    """The snapshot holds the context and must stay hashable, so `run` refuses a mutable
    context (a dict, a non-frozen model, a frozen model holding a list) with `InvalidInput`
    from the call itself, as it does an empty run or conversation id (it used to be replaced by
    a generated one silently); a frozen model is accepted and reaches the snapshot."""
    from pydantic import BaseModel, ConfigDict

    from fsm_agents import InvalidInput

    class Loose(BaseModel):
        user: str = "ann"

    class Holds(BaseModel):
        model_config = ConfigDict(frozen=True)
        tags: Any = None

    agent = Agent("a", model=ScriptedModel(["x", "y"]))
    for bad in ({"user": "ann"}, Loose(), Holds(tags=["a"])):
        with pytest.raises(InvalidInput, match=f"context must be immutable.*got {type(bad).__name__}"):
            run_sync(agent, "x", context=bad)
    for kwargs in ({"run_id": ""}, {"conversation_id": ""}, {"run_id": 7}):
        with pytest.raises(InvalidInput, match="must be a non-empty string or None"):
            run_sync(agent, "x", **kwargs)  # type: ignore[arg-type]
    good = Holds(tags=("a",))
    result = run_sync(agent, "x", context=good)
    assert result.snapshot.context is good and hash(result.snapshot)


def test_a_model_reply_of_the_wrong_type_fails_the_run_as_a_model_error() -> None:
    """A `FunctionModel` whose function returns something that is not a reply ends the run
    FAILED(`model_error`, detail `malformed`) naming the type, instead of an AttributeError
    escaping the run; a `ScriptedModel` given such an item refuses it when made."""
    from fsm_agents import InvalidDefinition

    for value in (5, None, {"content": "hi"}):
        result = run_sync(Agent("a", model=FunctionModel(lambda r, v=value: v)), "x")
        assert result.phase is Phase.FAILED and result.failure is not None
        assert result.failure.kind == "model_error" and result.failure.detail == "malformed"
        assert f"not {type(value).__name__}" in result.failure.message
    with pytest.raises(InvalidDefinition, match="ScriptedModel: reply 1: a reply must be a str"):
        ScriptedModel(["ok", 42])  # type: ignore[list-item]
