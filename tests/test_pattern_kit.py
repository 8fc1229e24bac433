"""The one kit the eight patterns share: `compile_chart(chart, owner=...)` resolving names by
attribute, internal events declared once on the chart, one "child failed" guard, one model
failure action, and Handoffs compiling the agent loop's chart (with its extra guard) once."""

from __future__ import annotations

from typing import Any

import pytest
from statemachine import State

import fsm_agents.agent as agent_module
from fsm_agents import Agent, ScriptedModel
from fsm_agents.agent import AgentChart, agent_chart
from fsm_agents.errors import InvalidDefinition
from fsm_agents.events import HandedOff, Observed, Step
from fsm_agents.machine import chart_class, compile_chart
from fsm_agents.patterns import EventDrivenMachine, Handoffs, ManagerWorker, Recursive, Router, Sequential
from fsm_agents.patterns._base import Pattern, Planned
from fsm_agents.state import Phase


def tiny(internal: tuple[Any, ...] = (Observed,)) -> Any:
    executing, observing = State("EXECUTING", initial=True), State("OBSERVING")
    done = State("DONE", final=True)
    return chart_class(
        "Tiny",
        {
            "executing": executing,
            "observing": observing,
            "done": done,
            "agents_finished": executing.to(observing, on="fold"),
            "observed": observing.to(done),
        },
        internal=internal,
    )


class Owner:
    def fold(self, s: Any, e: Any) -> Step:
        return Step(s)


def test_owner_methods_resolve_guard_and_action_names() -> None:
    owner = Owner()
    table = compile_chart(tiny(), owner=owner)
    assert table.transitions[0].action == owner.fold
    assert table.internal == {"observed"} and isinstance(table.internal_events["observed"], Observed)
    assert table.auto == {Phase.OBSERVING: "observed"}


def test_a_name_the_owner_lacks_is_invalid_definition_naming_it() -> None:
    with pytest.raises(InvalidDefinition, match=r"action 'fold'.*object has no method 'fold'"):
        compile_chart(tiny(), owner=object())


def test_internal_events_are_declared_once_on_the_chart_and_a_mismatch_is_invalid_definition() -> None:
    """At definition time, not as a KeyError when `step` first raises the event."""
    with pytest.raises(InvalidDefinition, match="differ from those the chart declares"):
        compile_chart(tiny(), owner=Owner(), internal=frozenset({"observed", "planned"}))
    with pytest.raises(InvalidDefinition, match="'planned' has no transition"):
        compile_chart(tiny((Observed, Planned)), owner=Owner())
    with pytest.raises(InvalidDefinition, match="internal_events must list Event classes"):
        compile_chart(tiny(("observed",)), owner=Owner())
    # the names given may restate the chart's declaration
    assert compile_chart(tiny(), owner=Owner(), internal={"observed"}).internal == {"observed"}


def test_the_agent_chart_declares_its_internal_events() -> None:
    m = Agent("a").machine
    assert set(m.internal_events) == {"observed", "handed_off"}
    assert isinstance(m.internal_events["handed_off"], HandedOff)


def leaf(name: str) -> Agent:
    return Agent(name, model=ScriptedModel(["x"]))


def patterns() -> list[Pattern]:
    decomposer = Agent("dec", model=ScriptedModel([]))
    return [
        Sequential("s", [leaf("a"), leaf("b")]),
        Router("r", lambda text: "a", {"a": leaf("a")}),
        Recursive("rec", decomposer, leaf("exe"), max_depth=1),
        EventDrivenMachine("e", {"tick": leaf("a")}),
    ]


@pytest.mark.parametrize("pattern", patterns(), ids=lambda p: p.name)
def test_one_child_failed_guard_serves_every_single_child_pattern(pattern: Pattern) -> None:
    guards = {g.name: g.fn for t in pattern.table for g in t.guards}
    assert guards["child_failed"].__func__ is Pattern.child_failed  # type: ignore[attr-defined]


def test_one_model_failure_action_serves_every_pattern_that_calls_a_model() -> None:
    manager = ManagerWorker("m", Agent("boss", model=ScriptedModel([])), [leaf("w")])
    for pattern in (*patterns()[1:3], manager):
        (fail,) = [t.action for t in pattern.table if t.event == "model_failed"]
        assert fail.__func__ is Pattern.fail_model  # type: ignore[union-attr]


def test_handoffs_compiles_one_table_from_the_agent_chart_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = agent_module.compile_chart

    def counting(chart: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(chart.__name__)
        return real(chart, *args, **kwargs)

    monkeypatch.setattr(agent_module, "compile_chart", counting)
    triage = Agent("triage", model=ScriptedModel([]), handoffs=["billing"])
    pattern = Handoffs("desk", triage, [Agent("billing", model=ScriptedModel([]))], max_handoffs=1)
    assert calls == ["HandoffsChart"]
    # the agent loop's transitions, with `handoff_limit` tried just before `asks_handoff`
    plain = [(t.source, t.event, t.target, [str(c) for c in t.cond]) for s in AgentChart.states for t in s.transitions]
    ours = [(t.source, t.event, t.target, [g.label for g in t.guards]) for t in pattern.table]
    limit = next(i for i, t in enumerate(ours) if t[3] == ["handoff_limit"])
    assert ours[limit + 1][3] == ["asks_handoff"]
    assert [x[3] for x in ours[:limit] + ours[limit + 1 :]] == [x[3] for x in plain]
    assert agent_chart(handoff_limit=True).__name__ == "AgentChart"
