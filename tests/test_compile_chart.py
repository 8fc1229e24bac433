"""`compile_chart`: what a compiled table holds, and every definition it rejects (with the reason).

Found untested by mutation testing (docs/mutation.md): the checks only ran on well-formed charts.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, ClassVar

import pytest
from statemachine import State, StateChart

from fsm_agents import Conversation, Event, Machine, Phase, Snapshot, Step
from fsm_agents.errors import InvalidDefinition, InvalidTransition, NotAMachine
from fsm_agents.events import Effect, Taken
from fsm_agents.machine import GuardRef, as_machine, chart_class, compile_chart


def yes(s: Any, e: Any) -> bool:
    return True


def no(s: Any, e: Any) -> bool:
    return False


def act(s: Snapshot[Any], e: Event) -> Step:
    return Step(s)


class Seen(Event):
    name: ClassVar[str] = "seen"


class Loop(StateChart):  # type: ignore[type-arg]
    planning = State("PLANNING", initial=True)
    executing = State("EXECUTING")
    observing = State("OBSERVING")
    done = State("DONE", final=True)
    failed = State("FAILED", final=True)

    reply = (
        planning.to(failed, cond="broke", unless="lucky", on="fail")
        | planning.to(executing, cond="wants")
        | planning.to(done, on="finish")
    )
    give_up = planning.to(failed)
    results = executing.to(observing)
    seen = observing.to(planning)  # internal
    internal_events = (Seen,)  # declared on the chart, once (see fsm_agents.machine.chart_class)


def compile_loop(**changes: Any) -> Any:
    kwargs: dict[str, Any] = {
        "guards": {"broke": no, "lucky": no, "wants": yes},
        "actions": {"fail": act, "finish": act},
    }
    kwargs.update(changes)
    chart = kwargs.pop("chart", Loop)
    return compile_chart(chart, **kwargs)


def test_the_table_lists_transitions_in_declaration_order_with_their_labels() -> None:
    table = compile_loop()
    assert table.chart is Loop and table.initial is Phase.PLANNING
    assert table.phases == (Phase.PLANNING, Phase.EXECUTING, Phase.OBSERVING, Phase.DONE, Phase.FAILED)
    assert table.finals == frozenset({Phase.DONE, Phase.FAILED})
    assert table.events == ("reply", "give_up", "results", "seen")
    assert table.internal == frozenset({"seen"})
    rows = [(t.index, t.source, t.event, t.target, t.label, t.action_name, t.fused) for t in table]
    assert rows == [
        (0, Phase.PLANNING, "reply", Phase.FAILED, "reply [broke ∧ !lucky]", "fail", False),
        (1, Phase.PLANNING, "reply", Phase.EXECUTING, "reply [wants]", None, False),
        (2, Phase.PLANNING, "reply", Phase.DONE, "reply", "finish", False),
        (3, Phase.PLANNING, "give_up", Phase.FAILED, "give_up", None, False),
        (4, Phase.EXECUTING, "results", Phase.OBSERVING, "results", None, False),
        (5, Phase.OBSERVING, "seen", Phase.PLANNING, "seen", None, False),
    ]
    assert table.transitions[0].action is act and table.transitions[1].action is None
    assert [t.index for t in table.by_key[(Phase.PLANNING, "reply")]] == [0, 1, 2]
    assert dict(table.auto) == {Phase.OBSERVING: "seen"}
    assert table.accepts(Phase.PLANNING) == ("reply", "give_up")
    assert table.accepts(Phase.OBSERVING) == () and table.accepts(Phase.DONE) == ()
    assert table.accepts(Phase.EXECUTING) == ("results",)


def test_guard_refs_negate_for_unless() -> None:
    plain, negated = GuardRef("wants", False, yes), GuardRef("lucky", True, yes)
    assert (plain.label, negated.label) == ("wants", "!lucky")
    assert plain(None, None) is True and negated(None, None) is False  # type: ignore[arg-type]
    assert GuardRef("x", True, no)(None, None) is True  # type: ignore[arg-type]


class Reply(Event):
    name: ClassVar[str] = "reply"


class Results(Event):
    name: ClassVar[str] = "results"


def loop_machine(**guards: Any) -> Machine:
    class LoopMachine(Machine):
        name = "loop"
        internal_events = MappingProxyType({"seen": Seen()})
        table = compile_loop(guards={"broke": no, "lucky": no, "wants": yes, **guards})

    return LoopMachine()


def snapshot(phase: Phase) -> Snapshot[Any]:
    return Snapshot[Any].model_construct(machine="loop", phase=phase, conversation=Conversation.of(), data=None)


def test_step_takes_the_first_transition_whose_guards_hold_and_runs_internal_events() -> None:
    m = loop_machine()
    assert m.chart is Loop
    to_exec = m.step(snapshot(Phase.PLANNING), Reply())
    assert to_exec.snapshot.phase is Phase.EXECUTING and to_exec.snapshot.step == 1
    assert [(t.target, t.step, t.index) for t in to_exec.transitions] == [(Phase.EXECUTING, 1, 1)]
    back = m.step(to_exec.snapshot, Results())  # EXECUTING → OBSERVING → (internal seen) → PLANNING
    assert back.snapshot.phase is Phase.PLANNING and back.snapshot.step == 3
    assert [(t.source, t.event, t.target, t.step, t.index) for t in back.transitions] == [
        (Phase.EXECUTING, "results", Phase.OBSERVING, 2, 4),
        (Phase.OBSERVING, "seen", Phase.PLANNING, 3, 5),
    ]
    failing = loop_machine(broke=yes).step(snapshot(Phase.PLANNING), Reply())
    assert failing.snapshot.phase is Phase.FAILED and [t.index for t in failing.transitions] == [0]
    lucky = loop_machine(broke=yes, lucky=yes, wants=no).step(snapshot(Phase.PLANNING), Reply())
    assert lucky.snapshot.phase is Phase.DONE and [t.index for t in lucky.transitions] == [2]


def test_an_internal_event_sent_from_outside_is_rejected() -> None:
    with pytest.raises(InvalidTransition, match="accepts no external event") as info:
        loop_machine().step(snapshot(Phase.OBSERVING), Seen())
    assert info.value.machine == "loop" and info.value.accepted == ()


def guarded_machine() -> Machine:
    """One transition, PLANNING --reply [wants]--> DONE, whose guard never holds."""

    class Guarded(StateChart):  # type: ignore[type-arg]
        planning = State("PLANNING", initial=True)
        done = State("DONE", final=True)
        reply = planning.to(done, cond="wants")

    class M(Machine):
        name = "guarded"
        table = compile_chart(Guarded, guards={"wants": no}, actions={})

    return M()


def test_no_guard_holding_is_an_invalid_transition_saying_so() -> None:
    with pytest.raises(InvalidTransition, match="no transition's guard held") as info:
        guarded_machine().step(snapshot(Phase.PLANNING), Reply())
    assert info.value.no_guard and info.value.accepted == ("reply",)


def test_machine_defaults_describe_a_machine_with_no_resources() -> None:
    m = loop_machine()
    assert m.max_transitions() is None and dict(m.models()) == {} and dict(m.tools_for("x")) == {}
    assert m.example_inputs() == () and m.tool_specs("x") == () and dict(m.children()) == {}


# -- rejected definitions ----------------------------------------------------------------------
def chart(name: str, **attrs: Any) -> Any:
    return type(name, (StateChart,), {"__module__": __name__, **attrs})


def test_states_must_be_named_after_distinct_phases() -> None:
    planning, waiting, done = State("PLANNING", initial=True), State("WAITING"), State("DONE", final=True)
    bad = chart("Bad", planning=planning, waiting=waiting, done=done, go=planning.to(waiting), end=waiting.to(done))
    with pytest.raises(InvalidDefinition, match=r"state 'waiting' is named 'WAITING'; every state must be named after"):
        compile_chart(bad, guards={}, actions={})
    a, b, done = State("PLANNING", initial=True), State("PLANNING"), State("DONE", final=True)
    twice = chart("Twice", a=a, b=b, done=done, go=a.to(b), end=b.to(done))
    with pytest.raises(InvalidDefinition, match="Twice: a Phase is used by two states"):
        compile_chart(twice, guards={}, actions={})


def test_final_states_must_be_done_or_failed() -> None:
    planning, executing = State("PLANNING", initial=True), State("EXECUTING", final=True)
    bad = chart("BadFinal", planning=planning, executing=executing, go=planning.to(executing))
    with pytest.raises(InvalidDefinition, match=r"BadFinal: final states must be DONE and/or FAILED, got \['EXECUTING'\]"):
        compile_chart(bad, guards={}, actions={})


def test_unknown_and_unused_guards_and_actions_are_named() -> None:
    with pytest.raises(InvalidDefinition, match=r"Loop: guard 'wants' on planning->executing has no function"):
        compile_loop(guards={"broke": no, "lucky": no})
    with pytest.raises(InvalidDefinition, match=r"Loop: guard functions not referenced by the chart: \['extra'\]"):
        compile_loop(guards={"broke": no, "lucky": no, "wants": yes, "extra": yes})
    with pytest.raises(InvalidDefinition, match="Loop: action 'finish' has no function"):
        compile_loop(actions={"fail": act})


def test_a_transition_needs_exactly_one_event_and_at_most_one_action() -> None:
    planning, done = State("PLANNING", initial=True), State("DONE", final=True)
    two_actions = chart("TwoActions", planning=planning, done=done, go=planning.to(done, on=["a", "b"]))
    with pytest.raises(InvalidDefinition, match="TwoActions: transition planning->done has several actions"):
        compile_chart(two_actions, guards={}, actions={"a": act, "b": act})
    planning, done = State("PLANNING", initial=True), State("DONE", final=True)
    two_events = chart("TwoEvents", planning=planning, done=done, go=planning.to(done, event="go other"))
    with pytest.raises(InvalidDefinition, match="TwoEvents: transition planning->done has 2 events"):
        compile_chart(two_events, guards={}, actions={})
    planning, done = State("PLANNING", initial=True), State("DONE", final=True)
    planning.to(done)  # declared without an event
    eventless = chart("Eventless", planning=planning, done=done)
    with pytest.raises(InvalidDefinition, match="Eventless: transition planning->done has no event"):
        compile_chart(eventless, guards={}, actions={})


class Nope(Event):
    name: ClassVar[str] = "nope"


class GiveUp(Event):
    name: ClassVar[str] = "give_up"


def _loop_declaring(*internal: type[Event]) -> Any:
    planning, executing, observing = State("PLANNING", initial=True), State("EXECUTING"), State("OBSERVING")
    done, failed = State("DONE", final=True), State("FAILED", final=True)
    attrs = {
        "planning": planning,
        "executing": executing,
        "observing": observing,
        "done": done,
        "failed": failed,
        "reply": planning.to(failed, cond="broke", unless="lucky", on="fail")
        | planning.to(executing, cond="wants")
        | planning.to(done, on="finish"),
        "give_up": planning.to(failed),
        "results": executing.to(observing),
        "seen": observing.to(planning),
    }
    return chart_class("Loop", attrs, internal=internal)


def test_internal_events_must_exist_and_be_the_only_way_out() -> None:
    with pytest.raises(InvalidDefinition, match="Loop: internal event 'nope' has no transition"):
        compile_loop(chart=_loop_declaring(Seen, Nope))
    with pytest.raises(
        InvalidDefinition,
        match=r"Loop: internal event 'give_up' must be the only way out of PLANNING, which also accepts \['reply'\]",
    ):
        compile_loop(chart=_loop_declaring(Seen, GiveUp))
    with pytest.raises(InvalidDefinition, match=r"Loop: internal events \['nope'\] differ from those the chart declares"):
        compile_loop(internal=frozenset({"nope"}))


def test_guard_refs_pass_the_snapshot_and_the_event_to_their_function() -> None:
    seen: list[tuple[Any, Any]] = []

    def record(s: Any, e: Any) -> bool:
        seen.append((s, e))
        return True

    assert GuardRef("g", False, record)("S", "E") is True  # type: ignore[arg-type]
    assert seen == [("S", "E")]


def test_internal_transitions_get_the_internal_event_and_every_effect_is_kept_in_order() -> None:
    """One external event taking several transitions: the internal one's action receives the
    internal event `step` raised, and the effects of all of them come out in order."""
    got: list[str] = []

    def on_results(s: Snapshot[Any], e: Event) -> Step:
        got.append(e.name)
        return Step(s, (Effect(key="from-results"),))

    def on_seen(s: Snapshot[Any], e: Event) -> Step:
        got.append(e.name)
        return Step(s, (Effect(key="from-seen"),))

    class Chained(StateChart):  # type: ignore[type-arg]
        executing = State("EXECUTING", initial=True)
        observing = State("OBSERVING")
        done = State("DONE", final=True)
        results = executing.to(observing, on="on_results")
        seen = observing.to(done, on="on_seen")
        internal_events = (Seen,)

    class M(Machine):
        name = "chained"
        internal_events = MappingProxyType({"seen": Seen()})
        table = compile_chart(
            Chained, guards={}, actions={"on_results": on_results, "on_seen": on_seen}
        )

    step = M().step(snapshot(Phase.EXECUTING), Results())
    assert got == ["results", "seen"]
    assert [e.key for e in step.effects] == ["from-results", "from-seen"]
    assert step.snapshot.phase is Phase.DONE and [t.target for t in step.transitions] == [Phase.OBSERVING, Phase.DONE]


def test_transitions_an_action_reports_follow_its_own() -> None:
    """An action may report transitions it took itself (e.g. of a machine it drives): they come
    after the transition that ran it."""
    inner = Taken(Phase.PLANNING, "inner", Phase.DONE, 7, 0)

    def drive(s: Snapshot[Any], e: Event) -> Step:
        return Step(s, (), (inner,))

    class One(StateChart):  # type: ignore[type-arg]
        planning = State("PLANNING", initial=True)
        done = State("DONE", final=True)
        reply = planning.to(done, on="drive")

    class M(Machine):
        name = "one"
        table = compile_chart(One, guards={}, actions={"drive": drive})

    step = M().step(snapshot(Phase.PLANNING), Reply())
    assert step.transitions == (Taken(Phase.PLANNING, "reply", Phase.DONE, 1, 0), inner)


def test_rejections_carry_the_machine_phase_and_event() -> None:
    with pytest.raises(InvalidTransition) as info:
        loop_machine(broke=no, lucky=no, wants=no).step(snapshot(Phase.EXECUTING), Reply())
    assert (info.value.machine, info.value.phase, info.value.event) == ("loop", "EXECUTING", "reply")
    stranger = snapshot(Phase.OBSERVING).evolve(machine="other")
    with pytest.raises(InvalidTransition, match="the snapshot is not one of loop's") as info:
        loop_machine().step(stranger, Reply())
    assert (info.value.machine, info.value.phase, info.value.event) == ("other", "OBSERVING", "reply")


def test_no_guard_holding_names_where_it_happened() -> None:
    with pytest.raises(InvalidTransition) as info:
        guarded_machine().step(snapshot(Phase.PLANNING).evolve(machine="guarded"), Reply())
    assert (info.value.machine, info.value.phase, info.value.event) == ("guarded", "PLANNING", "reply")
    assert str(info.value) == "guarded: event 'reply' is not accepted in phase PLANNING: no transition's guard held"


def test_a_state_not_named_after_a_phase_lists_the_phases() -> None:
    planning, waiting, done = State("PLANNING", initial=True), State("WAITING"), State("DONE", final=True)
    bad = chart("Bad2", planning=planning, waiting=waiting, done=done, go=planning.to(waiting), end=waiting.to(done))
    with pytest.raises(InvalidDefinition) as info:
        compile_chart(bad, guards={}, actions={})
    assert "(PLANNING, EXECUTING, OBSERVING, HANDOFF, DONE, FAILED), e.g. State('PLANNING')" in str(info.value)


def test_a_machine_without_start_says_so() -> None:
    class NoStart(Machine):
        name = "nostart"
        table = compile_loop()

    with pytest.raises(InvalidDefinition, match=r"^NoStart does not define start\(\)$"):
        NoStart().start("hi")


# -- found untested by the second mutation pass ----------------------------------------------------
class Nameless(Event):
    """An event class that forgot its name."""


@pytest.mark.parametrize("entry", [int, Nameless, "seen", Seen()])
def test_internal_events_must_be_event_classes_with_a_name(entry: Any) -> None:
    with pytest.raises(
        InvalidDefinition,
        match=r"^Declares: internal_events must list Event classes with a name \(e\.g\. Observed\), got ",
    ) as info:
        compile_loop(chart=type("Declares", (Loop,), {"internal_events": (Seen, entry)}))
    assert str(info.value).endswith(f"got {entry!r}")


class Owner:
    """Guards and actions as methods: what `compile_chart(Chart, owner=self)` resolves."""

    wants = staticmethod(yes)
    lucky = "not callable"

    @staticmethod
    def broke(s: Any, e: Any) -> bool:
        return False

    def fail(self, s: Snapshot[Any], e: Event) -> Step:
        return Step(s)

    def finish(self, s: Snapshot[Any], e: Event) -> Step:
        return Step(s)


def test_an_owners_methods_are_the_guards_and_actions_the_functions_given_do_not_name() -> None:
    owner = Owner()
    table = compile_chart(Loop, guards={"lucky": no}, owner=owner)
    rows = {(t.index, t.action_name): t for t in table}
    assert rows[(0, "fail")].action == owner.fail and rows[(2, "finish")].action == owner.finish
    assert [g.fn for g in rows[(0, "fail")].guards] == [Owner.broke, no]  # `lucky` given, `broke` the owner's


def test_a_guard_the_owner_lacks_or_has_as_a_value_is_named_with_the_owners_type() -> None:
    with pytest.raises(
        InvalidDefinition,
        match=r"^Loop: guard 'lucky' on planning->failed has no function \(Owner has no method 'lucky'\)$",
    ):
        compile_chart(Loop, owner=Owner())  # `lucky` is a string attribute, not a method
    with pytest.raises(
        InvalidDefinition, match=r"^Loop: action 'finish' has no function \(object has no method 'finish'\)$"
    ):
        compile_chart(Loop, guards={"broke": no, "lucky": no, "wants": yes}, actions={"fail": act}, owner=object())
    with pytest.raises(InvalidDefinition, match=r"^Loop: action 'finish' has no function$"):
        compile_chart(Loop, guards={"broke": no, "lucky": no, "wants": yes}, actions={"fail": act})


def test_a_bare_machine_has_no_tool_options_instructions_guardrails_or_toolsets() -> None:
    class Bare(Machine):
        name = "bare"
        table = compile_loop()

    m = Bare()
    assert dict(m.tool_options("a")) == {} and dict(m.dynamic_instructions()) == {}
    assert dict(m.guardrails_for("a", "input")) == {} and dict(m.toolsets()) == {}
    with pytest.raises(InvalidDefinition, match=r"^Bare does not define start\(\)$"):
        m.start("hi")


@pytest.mark.parametrize("thing", [42, object(), None])
def test_what_is_not_a_machine_nor_has_one_is_refused_naming_its_type(thing: Any) -> None:
    with pytest.raises(NotAMachine, match=rf"^expected a machine, an Agent or a pattern, got {type(thing).__name__}$"):
        as_machine(thing)


def test_a_chart_class_keeps_its_module_and_declares_its_internal_events() -> None:
    planning, done = State("PLANNING", initial=True), State("DONE", final=True)
    made = chart_class("Made", {"planning": planning, "done": done, "go": planning.to(done)}, (Seen,))
    assert made.__name__ == "Made" and made.__module__ == "fsm_agents.machine" and made.internal_events == (Seen,)
    planning, done = State("PLANNING", initial=True), State("DONE", final=True)
    here = chart_class("Here", {"__module__": __name__, "planning": planning, "done": done, "go": planning.to(done)})
    assert here.__module__ == __name__ and here.internal_events == ()
