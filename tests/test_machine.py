"""The compiled machine core: plain and `@fused` actions see the snapshots their contract names."""

from __future__ import annotations

from typing import Any, ClassVar

from statemachine import State, StateChart

from fsm_agents import Conversation, Event, Machine, Phase, Snapshot, Step, compile_chart, fused


class Go(Event):
    name: ClassVar[str] = "go"


class Tiny(StateChart):  # type: ignore[type-arg]
    planning = State("PLANNING", initial=True)
    done = State("DONE", final=True)
    go = planning.to(done, on="finish")


def machine_with(action: Any) -> Machine:
    class M(Machine):
        name = "tiny"
        table = compile_chart(Tiny, guards={}, actions={"finish": action})

    return M()


def first() -> Snapshot[Any]:
    return Snapshot[Any].model_construct(machine="tiny", phase=Phase.PLANNING, conversation=Conversation.of(), data=None)


def test_a_plain_action_gets_the_moved_snapshot_and_a_fused_one_the_snapshot_before() -> None:
    seen: dict[str, Any] = {}

    def plain(s: Snapshot[Any], e: Event) -> Step:
        seen["plain"] = (s.phase, s.step)
        return Step(s.evolve(output="plain"))

    @fused
    def fast(s: Snapshot[Any], e: Event, to: Phase) -> Step:
        seen["fused"] = (s.phase, s.step, to)
        return Step(s.moved(to, output="fused"))

    start = first()
    by_plain = machine_with(plain).step(start, Go())
    by_fused = machine_with(fast).step(start, Go())
    assert seen == {"plain": (Phase.DONE, 1), "fused": (Phase.PLANNING, 0, Phase.DONE)}
    for step, output in ((by_plain, "plain"), (by_fused, "fused")):
        assert (step.snapshot.phase, step.snapshot.step, step.snapshot.output) == (Phase.DONE, 1, output)
        assert [(t.source, t.event, t.target, t.step) for t in step.transitions] == [(Phase.PLANNING, "go", Phase.DONE, 1)]
    assert start.phase is Phase.PLANNING and start.step == 0  # neither altered its input
    assert machine_with(fast).table.transitions[0].fused and not machine_with(plain).table.transitions[0].fused


def test_moved_applies_the_changes_on_top_of_the_move() -> None:
    s = first().moved(Phase.DONE, output="x", agent="a")
    assert (s.phase, s.step, s.output, s.agent) == (Phase.DONE, 1, "x", "a")
    assert s == first().evolve(phase=Phase.DONE, step=1, output="x", agent="a")
