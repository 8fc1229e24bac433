"""Behaviour of the orchestration patterns: happy paths, failure paths, budgets, composition."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fsm_agents import Agent, AgentsFinished, AssistantMessage, FunctionModel, Phase, RunAgents, ScriptedModel, run_sync
from fsm_agents.errors import FsmAgentsError, InvalidDefinition
from fsm_agents.events import AgentOutcome, ModelReplied
from fsm_agents.models.scripted import call, reply
from fsm_agents.patterns import (
    Competitive,
    Decomposition,
    EventDriven,
    Handoffs,
    ManagerWorker,
    Parallel,
    Recursive,
    Router,
    Sequential,
    UnknownEventType,
)
from fsm_agents.state import Failure, ModelRequest
from fsm_agents.testing import history_problems


def said(text: str) -> FunctionModel:
    return FunctionModel(lambda request: text)


def echo(prefix: str) -> FunctionModel:
    return FunctionModel(lambda r: f"{prefix}:{r.messages[-1].content}")


def broken() -> ScriptedModel:
    return ScriptedModel([])  # every call raises ScriptExhausted → the agent fails (model_error)


# -- Sequential ------------------------------------------------------------------------------------
def test_sequential_shares_the_conversation_and_outputs_the_last_stage() -> None:
    seen: list[int] = []

    def second(request: ModelRequest) -> str:
        seen.append(len(request.messages))
        return "analysed"

    p = Sequential("pipe", [Agent("research", model=said("facts")), Agent("analysis", model=FunctionModel(second))])
    result = run_sync(p, "topic")
    assert result.ok and result.output == "analysed"
    assert [m.content for m in result.snapshot.conversation.messages] == ["topic", "facts", "analysed"]
    assert [m.agent for m in result.snapshot.conversation.messages[1:]] == ["research", "analysis"]
    assert seen == [2]  # the second stage saw the input and the first stage's reply
    assert [t.target for t in result.trace] == [Phase.OBSERVING, Phase.PLANNING, Phase.EXECUTING] * 1 + [
        Phase.OBSERVING,
        Phase.PLANNING,
        Phase.DONE,
    ]


def test_sequential_without_shared_conversation_feeds_only_the_previous_output() -> None:
    p = Sequential("pipe", [Agent("a", model=said("one")), Agent("b", model=echo("b"))], shared_conversation=False)
    result = run_sync(p, "start")
    assert result.output == "b:one"


def test_sequential_failed_stage_names_the_stage() -> None:
    p = Sequential("pipe", [Agent("research", model=said("x")), Agent("analysis", model=broken()), Agent("report")])
    result = run_sync(p, "topic", models={"report": said("never")})
    assert result.phase is Phase.FAILED
    assert result.failure is not None and result.failure.kind == "child_failed"
    assert "stage 2/3 'analysis'" in result.failure.message and result.failure.detail == "analysis"


def test_sequential_a_stage_may_be_another_pattern() -> None:
    inner = Parallel("team", [Agent("x", model=said("X")), Agent("y", model=said("Y"))])
    p = Sequential("outer", [inner, Agent("writer", model=FunctionModel(lambda r: f"{len(r.messages)} messages"))])
    result = run_sync(p, "go")
    assert result.ok and result.output == "3 messages"  # input + one fan-in message per branch
    assert set(result.children) and all(c.ok for c in result.children.values())


def test_sequential_rejects_no_stages() -> None:
    with pytest.raises(InvalidDefinition):
        Sequential("empty", [])


# -- Router ----------------------------------------------------------------------------------------
def routes() -> dict[str, Agent]:
    return {"tech": Agent("tech", model=said("fixed it")), "data": Agent("data", model=said("charted"))}


def test_router_runs_the_route_the_classifier_agent_names() -> None:
    classifier = Agent("cls", model=said('{"route": "DATA"}'))
    result = run_sync(Router("r", classifier, routes()), "plot the csv")
    assert result.ok and result.output == "charted"
    assert result.snapshot.data.route == "data"


def test_router_accepts_a_pure_function_classifier() -> None:
    result = run_sync(Router("r", lambda text: "tech" if "crash" in text else "data", routes()), "it crashes")
    assert result.output == "fixed it"


def test_router_unknown_label_fails_naming_it_without_default() -> None:
    result = run_sync(Router("r", lambda text: "poetry", routes()), "a poem")
    assert result.phase is Phase.FAILED and result.failure is not None
    assert (
        result.failure.kind == "unknown_route" and result.failure.detail == "poetry" and "'poetry'" in result.failure.message
    )


def test_router_unknown_label_goes_to_default() -> None:
    result = run_sync(Router("r", lambda text: "poetry", routes(), default=Agent("general", model=said("ok"))), "a poem")
    assert result.ok and result.output == "ok" and result.snapshot.data.route == "default"


def test_router_classifier_failure_and_route_failure() -> None:
    assert run_sync(Router("r", Agent("cls", model=broken()), routes()), "x").failure.kind == "model_error"  # type: ignore[union-attr]
    bad = {"tech": Agent("tech", model=broken())}
    result = run_sync(Router("r", lambda t: "tech", bad), "x")
    assert result.failure is not None and result.failure.kind == "child_failed" and result.failure.detail == "tech"


# -- Parallel / Competitive ------------------------------------------------------------------------
def test_parallel_fans_out_in_one_effect_and_fans_in() -> None:
    p = Parallel("team", [Agent("a", model=said("A")), Agent("b", model=said("B"))], max_concurrency=2)
    first = p.start("q", run_id="r")
    (effect,) = first.effects
    assert isinstance(effect, RunAgents) and [t.machine for t in effect.tasks] == ["a", "b"] and effect.max_concurrency == 2
    result = run_sync(p, "q")
    assert result.ok and result.output == ("A", "B")
    assert [m.content for m in result.snapshot.conversation.messages] == ["q", "[a] A", "[b] B"]


def test_parallel_failed_branch_fails_by_default_and_is_reported_by_policy() -> None:
    branches = [Agent("good", model=said("G")), Agent("bad", model=broken())]
    failed = run_sync(Parallel("team", branches), "q")
    assert failed.phase is Phase.FAILED and failed.failure is not None and failed.failure.detail == "bad"
    synth = Agent("synth", model=FunctionModel(lambda r: " | ".join(m.content or "" for m in r.messages[1:])))
    reported = run_sync(Parallel("team", branches, synthesizer=synth, on_failure="report"), "q")
    assert reported.ok and reported.output.startswith("[good] G | [bad] (failed: model_error")


def test_parallel_report_policy_fails_when_every_branch_failed() -> None:
    result = run_sync(Parallel("team", [Agent("x", model=broken())], on_failure="report"), "q")
    assert result.phase is Phase.FAILED and "every" in result.failure.message  # type: ignore[union-attr]


def test_parallel_step_is_pure_on_fan_in() -> None:
    p = Parallel("team", [Agent("a"), Agent("b")])
    s = p.start("q").snapshot
    outcomes = (
        AgentOutcome(task_id="0", machine="a", phase=Phase.DONE, output="A"),
        AgentOutcome(task_id="1", machine="b", phase=Phase.FAILED, failure=Failure(kind="model_error", message="m")),
    )
    one, two = p.step(s, AgentsFinished(outcomes=outcomes)), p.step(s, AgentsFinished(outcomes=outcomes))
    assert one.snapshot == two.snapshot and one.snapshot.phase is Phase.FAILED and s.phase is Phase.EXECUTING


def test_competitive_evaluator_compares_all_candidates() -> None:
    seen: list[str] = []

    def judge(request: ModelRequest) -> str:
        seen.extend(m.agent or "" for m in request.messages if m.role == "assistant")
        return "balanced wins"

    c = Competitive(
        "c",
        [
            Agent("conservative", model=said("safe")),
            Agent("aggressive", model=broken()),
            Agent("balanced", model=said("mix")),
        ],
        Agent("judge", model=FunctionModel(judge)),
    )
    result = run_sync(c, "plan?")
    assert result.ok and result.output == "balanced wins" and seen == ["conservative", "aggressive", "balanced"]
    assert "evaluator" in c.children()


# -- ManagerWorker ---------------------------------------------------------------------------------
def test_manager_delegates_to_workers_and_gets_tool_results() -> None:
    manager_model = ScriptedModel(
        [
            reply(None, call("delegate_to_search", "c1", task="find x"), call("delegate_to_code", "c2", task="write y")),
            "done",
        ]
    )
    mw = ManagerWorker(
        "team", Agent("boss", model=manager_model), [Agent("search", model=echo("S")), Agent("code", model=echo("C"))]
    )
    assert [s.name for s in mw.tool_specs("boss")] == ["delegate_to_search", "delegate_to_code"]
    result = run_sync(mw, "build it")
    assert result.ok and result.output == "done"
    tools = [m for m in result.snapshot.conversation.messages if m.role == "tool"]
    assert [(m.tool_call_id, m.content, m.is_error) for m in tools] == [
        ("c1", "S:find x", False),
        ("c2", "C:write y", False),
    ]
    second = manager_model.requests[1]
    assert [m.role for m in second.messages] == ["user", "assistant", "tool", "tool"]
    assert not history_problems(result.snapshot.conversation)


def test_manager_worker_failure_is_a_tool_error_and_budget_fails() -> None:
    model = ScriptedModel([reply(None, call("delegate_to_w", task="t"))] * 3)
    mw = ManagerWorker("team", Agent("boss", model=model, max_steps=2), [Agent("w", model=broken())])
    result = run_sync(mw, "go")
    assert result.phase is Phase.FAILED and result.failure is not None and result.failure.kind == "budget_exhausted"
    errors = [m for m in result.snapshot.conversation.messages if m.role == "tool" and m.is_error]
    assert "the w worker failed" in errors[0].content
    assert not history_problems(result.snapshot.conversation)


def test_manager_unknown_tool_is_answered_and_the_manager_asked_again() -> None:
    model = ScriptedModel([reply(None, call("rm_rf")), "ok"])
    result = run_sync(ManagerWorker("team", Agent("boss", model=model), [Agent("w", model=said("x"))]), "go")
    assert result.ok and any(m.role == "tool" and m.is_error for m in result.snapshot.conversation.messages)


def test_manager_with_tools_is_rejected() -> None:
    def t(x: int) -> int:
        """T."""
        return x

    with pytest.raises(InvalidDefinition):
        ManagerWorker("team", Agent("boss", tools=[t]), [Agent("w")])


# -- Recursive -------------------------------------------------------------------------------------
def decomposer(plan: dict[str, list[str]]) -> Agent:
    def fn(request: ModelRequest) -> str:
        task = request.messages[-1].content
        subtasks = plan.get(task or "")
        if subtasks:
            return json.dumps({"action": "DECOMPOSE", "subtasks": subtasks})
        return json.dumps({"action": "EXECUTE"})

    return Agent("dec", model=FunctionModel(fn))


def test_recursive_decomposes_to_depth_and_joins_results() -> None:
    plan = {"goal": ["a", "b"], "b": ["b1", "b2"]}
    r = Recursive("rec", decomposer(plan), Agent("exe", model=echo("done")), max_depth=2)
    result = run_sync(r, "goal")
    assert result.ok
    assert "1. a\ndone:a" in result.output and "done:b1" in result.output and "done:b2" in result.output


def test_recursive_depth_exhaustion_fails_or_executes_by_policy() -> None:
    plan = {"goal": ["a"], "a": ["a1"]}
    failed = run_sync(Recursive("rec", decomposer(plan), Agent("exe", model=echo("done")), max_depth=1), "goal")
    assert failed.phase is Phase.FAILED and failed.failure is not None and failed.failure.kind == "child_failed"
    inner = next(iter(failed.children.values()))
    assert inner.failure is not None and inner.failure.kind == "budget_exhausted"
    executed = run_sync(
        Recursive("rec", decomposer(plan), Agent("exe", model=echo("done")), max_depth=1, on_depth_exhausted="execute"),
        "goal",
    )
    assert executed.ok and "done:a" in executed.output


def test_recursive_invalid_decomposition_fails() -> None:
    result = run_sync(Recursive("rec", Agent("dec", model=said("no idea")), Agent("exe", model=said("x")), max_depth=1), "g")
    assert result.failure is not None and result.failure.kind == "invalid_output"
    with pytest.raises(ValueError):
        Decomposition(action="DECOMPOSE", subtasks=())


def test_recursive_with_synthesizer() -> None:
    synth = Agent("syn", model=FunctionModel(lambda r: f"synth of {sum(m.role == 'assistant' for m in r.messages)}"))
    r = Recursive("rec", decomposer({"g": ["a", "b"]}), Agent("exe", model=said("x")), max_depth=1, synthesizer=synth)
    result = run_sync(r, "g")
    assert result.ok and result.output == "synth of 3"  # the decomposition + two subtask results


# -- Handoffs --------------------------------------------------------------------------------------
def test_handoffs_move_control_with_the_whole_conversation() -> None:
    seen: list[int] = []

    def billing(request: ModelRequest) -> str:
        seen.append(len(request.messages))
        return "refunded"

    triage = Agent("triage", model=ScriptedModel([reply(None, call("transfer_to_billing"))]))
    h = Handoffs("cs", triage, [Agent("billing", model=FunctionModel(billing)), Agent("sales")], max_handoffs=2)
    assert {s.name for s in h.tool_specs("triage")} == {"transfer_to_billing", "transfer_to_sales"}
    result = run_sync(h, "charged twice", models={"sales": said("x")})
    assert result.ok and result.output == "refunded" and result.snapshot.agent == "billing"
    assert seen == [3] and Phase.HANDOFF in {t.target for t in result.trace}


def test_handoff_loop_beyond_max_handoffs_fails() -> None:
    ping = Agent("ping", model=FunctionModel(lambda r: reply(None, call("transfer_to_pong", f"p{len(r.messages)}"))))
    pong = Agent("pong", model=FunctionModel(lambda r: reply(None, call("transfer_to_ping", f"q{len(r.messages)}"))))
    result = run_sync(Handoffs("loop", ping, [pong], max_handoffs=3, max_steps=20), "hi")
    assert result.phase is Phase.FAILED and result.failure is not None and result.failure.kind == "handoff_loop"
    assert result.snapshot.data.handoffs == 3
    assert not history_problems(result.snapshot.conversation)


def test_handoffs_reject_targets_outside_the_pattern() -> None:
    with pytest.raises(InvalidDefinition):
        Handoffs("cs", Agent("triage", handoffs=["nobody"]), [Agent("billing")], max_handoffs=1)


# -- EventDriven -----------------------------------------------------------------------------------
def test_event_driven_handlers_share_one_conversation() -> None:
    lengths: list[int] = []

    def handler(request: ModelRequest) -> str:
        lengths.append(len(request.messages))
        return f"handled {request.messages[-1].content}"

    bus = EventDriven(
        "bus", {"data.received": Agent("an", model=FunctionModel(handler)), "error.occurred": Agent("er", model=said("ack"))}
    )
    first = bus.emit_sync("data.received", {"rows": 3})
    second = bus.emit_sync("error.occurred", "boom")
    third = bus.emit_sync("data.received", {"rows": 4})
    assert first.ok and second.output == "ack" and third.ok
    assert lengths == [1, 5]  # the third run saw both earlier events and replies
    contents = [m.content for m in bus.conversation.messages]
    assert contents[:4] == [
        'Event data.received: {"rows": 3}',
        'handled Event data.received: {"rows": 3}',
        "Event error.occurred: boom",
        "ack",
    ]


def test_event_driven_unknown_event_type_is_a_typed_error() -> None:
    bus = EventDriven("bus", {"data.received": Agent("an", model=said("x"))})
    with pytest.raises(UnknownEventType) as info:
        bus.emit_sync("disk.full", {})
    assert isinstance(info.value, FsmAgentsError) and info.value.event_type == "disk.full"
    assert len(bus.conversation) == 0


def test_event_driven_handler_may_be_a_pattern_and_failures_are_reported() -> None:
    pipeline = Sequential("p", [Agent("s1", model=said("one")), Agent("s2", model=said("two"))])
    bus = EventDriven("bus", {"go": pipeline, "bad": Agent("b", model=broken())})
    assert bus.emit_sync("go", None).output == "two"
    failed = bus.emit_sync("bad", None)
    assert failed.phase is Phase.FAILED and failed.failure is not None and failed.failure.detail == "bad"


def test_patterns_compose_three_levels_deep() -> None:
    router = Router(
        "r", lambda text: "team", {"team": Parallel("team", [Agent("a", model=said("A")), Agent("b", model=said("B"))])}
    )
    outer = Sequential("outer", [Agent("intake", model=said("noted")), router])
    result = run_sync(outer, "q")
    assert result.ok and result.output == ("A", "B")


def test_model_replied_is_rejected_by_a_pure_pattern() -> None:
    from fsm_agents.errors import InvalidTransition

    p = Sequential("pipe", [Agent("a")])
    with pytest.raises(InvalidTransition):
        p.step(p.start("x").snapshot, ModelReplied(message=AssistantMessage(content="no")))


def test_concurrent_emits_are_queued_and_lose_no_message() -> None:
    import anyio

    seen: list[int] = []

    async def slow(request: ModelRequest) -> str:
        seen.append(len(request.messages))
        await anyio.sleep(0.01)  # the other emits arrive while this one runs
        return f"handled {request.messages[-1].content}"

    bus = EventDriven("bus", {"tick": Agent("h", model=FunctionModel(slow))})

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(bus.emit, "tick", i)

    anyio.run(main)
    assert seen == [1, 3, 5, 7, 9]  # each handler saw every earlier event and reply
    contents = [m.content for m in bus.conversation.messages]
    assert len(contents) == 10 and sorted(contents[::2]) == [f"Event tick: {i}" for i in range(5)]
    assert all(reply == f"handled {event}" for event, reply in zip(contents[::2], contents[1::2], strict=True))


@pytest.mark.parametrize(
    "make",
    [
        lambda n: Sequential(n, [Agent("a")]),
        lambda n: Parallel(n, [Agent("a")]),
        lambda n: Competitive(n, [Agent("a")], Agent("judge")),
        lambda n: Router(n, Agent("c"), {"x": Agent("a")}),
        lambda n: ManagerWorker(n, Agent("m"), [Agent("w")]),
        lambda n: Recursive(n, Agent("d"), Agent("e"), max_depth=1),
        lambda n: Handoffs(n, Agent("t"), [Agent("b")], max_handoffs=1),
        lambda n: EventDriven(n, {"e": Agent("h")}),
    ],
)
def test_pattern_names_follow_the_agent_name_rule(make: Any) -> None:
    """A pattern's name becomes part of child conversation ids (`<id>/<task>`) and diagram file
    names, so it follows the agent name rule: a name with a space, a slash or nothing in it is an
    `InvalidDefinition` when the pattern is made."""
    assert ":ok_name-1" in make("ok_name-1").machine.name
    for bad in ("two words", "a/b", "", 7):
        with pytest.raises(InvalidDefinition, match="must be 1-64 letters"):
            make(bad)
