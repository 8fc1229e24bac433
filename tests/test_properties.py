"""The invariants of docs/architecture.md on the agent machine, checked with hypothesis (500 examples, all at
once), and planted bugs proving that each check can fail."""

from __future__ import annotations

import random
from typing import Any

import pytest

from fsm_agents import Agent, AgentMachine, Event, Snapshot, Step, tool
from fsm_agents.agent import AgentData
from fsm_agents.events import CallModel
from fsm_agents.machine import fused
from fsm_agents.state import Conversation, Phase
from fsm_agents.testing import InvariantViolation, check_machine
from fsm_agents.testing import check as testing_check

EXAMPLES = 500


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def lookup(city: str, year: int = 2024) -> str:
    """Look up a city."""
    return city


def support_desk() -> Agent:
    """An agent with two tools, a structured handoff and a small budget: every transition of the
    agent chart is reachable from it."""
    billing = Agent("billing", "Invoices.", tools=[lookup], max_steps=3)
    return Agent("triage", "Route or answer.", tools=[add, lookup], handoffs=[billing], max_steps=3)


# What each invariant states (docs/architecture.md, Invariants). `test_all_invariants_together_with_full_transition_coverage`
# explores all of them at once, deeply (EXAMPLES runs); the per-invariant test below only proves
# that each can be selected and checked on its own, so it runs a few examples (they repeated the
# same exploration eight times, a third of the suite's CPU time).
INVARIANTS = {
    "declared": "every transition `step` takes is declared in the chart and chains from the current phase; "
    "events a phase does not accept (everything, in DONE/FAILED) raise InvalidTransition",
    "pure": "`step(s, e)` twice gives equal snapshots and effects, `s` is unchanged (same dump and hash), "
    "and every reachable snapshot is hashable",
    "append_only": "each snapshot's conversation is a prefix of the next one's",
    "tool_results": "whenever a CallModel is emitted, every assistant tool call in the history has exactly one "
    "tool result and nothing is pending — even when the tool results event drops, duplicates or reorders results",
    "progress": "`snapshot.step` advances by exactly one per transition taken, each `Taken` record carries its "
    "step, and no run exceeds `max_transitions()` (3 × max_steps) without reaching DONE or FAILED",
    "effects": "CallModel only in PLANNING, RunTools only in EXECUTING, no effect in a final phase and at least "
    "one in every other phase (no stall)",
    "replay": "folding a run's events over `start(input)` reproduces its final snapshot exactly",
    "oracle": "python-statemachine's own engine, driven with the same events and guard functions, takes the "
    "same transition at every step as the compiled table",
    "decisions": "every call an AwaitInput awaits is decided exactly once before the next model call: it either "
    "runs (approved) or has its decided result, never both, and a denied call never runs",
    "limits": "a LimitExceeded ends the run FAILED(usage_limit) naming the limit, with no output, nothing "
    "pending and every tool call of the history answered",
    "guardrails": "a GuardrailTripped ends the run FAILED(guardrail) naming the guardrail, with no output; "
    "OutputChecked ends it DONE with the output its guardrails checked",
}
ALONE_EXAMPLES = 25


@pytest.mark.parametrize("invariant", list(INVARIANTS))
def test_each_invariant_can_be_checked_alone(invariant: str) -> None:
    """Invariant `invariant` (see INVARIANTS) holds on a short exploration of the support desk
    when checked on its own; the runs really went somewhere."""
    report = check_machine(support_desk(), invariants=(invariant,), max_examples=ALONE_EXAMPLES, seed=1)
    assert report.steps > ALONE_EXAMPLES


def test_all_invariants_together_with_full_transition_coverage() -> None:
    """All the invariants of INVARIANTS at once over EXAMPLES explored runs, and every declared
    transition of the agent chart taken."""
    assert set(INVARIANTS) == set(testing_check.DEFAULT)  # the table above names every invariant
    report = check_machine(support_desk(), max_examples=EXAMPLES, seed=9, assert_full_coverage=True)
    assert report.coverage == 1.0
    assert all(yes > 0 and no > 0 for yes, no in report.guards.values()), report
    # 13: effect_uncertain (resume) and limit_exceeded (from PLANNING and EXECUTING) included
    assert "transitions covered: 13/13" in str(report)


def test_each_example_runs_the_machine_runs_per_example_times() -> None:
    one = check_machine(support_desk(), max_examples=40, seed=5, runs_per_example=1)
    three = check_machine(support_desk(), max_examples=40, seed=5, runs_per_example=3)
    assert one.runs == one.examples
    assert three.examples < three.runs <= 3 * three.examples and three.steps > one.steps
    assert f"{three.runs} runs" in str(three)
    with pytest.raises(ValueError, match="runs_per_example"):
        check_machine(support_desk(), runs_per_example=0)


def test_user_invariants_are_checked() -> None:
    """A user invariant `(before, event, after)` returning False is reported by name."""

    def never_more_than_six_messages(before: Snapshot[Any], event: Event, after: Snapshot[Any]) -> bool:
        return len(after.conversation) <= 6

    with pytest.raises(InvariantViolation, match="never_more_than_six_messages") as info:
        check_machine(support_desk(), invariants=(), extra=[never_more_than_six_messages], max_examples=300, seed=3)
    assert 1 <= len(info.value.events) <= 6  # shrunk to a short run


# -- planted bugs: each must be caught, with a short counterexample --------------------------------


class ForgetsAResult(AgentMachine):
    @fused
    def observe(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        step = super().observe(s, e, to)
        messages = tuple(step.snapshot.conversation.messages)[: len(s.conversation) + max(0, len(s.pending) - 1)]
        return Step(step.snapshot.evolve(conversation=Conversation.of(*messages, id=s.conversation.id)))


class NoBudgetGuard(AgentMachine):
    def over_budget(self, s: Snapshot[AgentData], e: Event) -> bool:
        return False


class SkipsAStep(AgentMachine):
    """Its answer transition counts two steps: the run still ends within the bound."""

    @fused
    def finish(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        step = super().finish(s, e, to)
        return Step(step.snapshot.evolve(step=step.snapshot.step + 1))


class RandomGuard(AgentMachine):
    def asks_tools(self, s: Snapshot[Any], e: Event) -> bool:
        return bool(self._reply(s, e).tool_calls) and random.random() < 0.5


class RewritesHistory(AgentMachine):
    @fused
    def finish(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        step = super().finish(s, e, to)
        return Step(step.snapshot.evolve(conversation=Conversation.of(*tuple(step.snapshot.conversation.messages)[1:])))


class ModelCallWhileExecuting(AgentMachine):
    @fused
    def request_tools(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        step = super().request_tools(s, e, to)
        return Step(step.snapshot, (CallModel(key="x", agent="a", request=self.start("x").effects[0].request),))  # type: ignore[attr-defined]


class MutatesItsInput(AgentMachine):
    @fused
    def call_model(self, s: Snapshot[AgentData], e: Event, to: Phase) -> Step:
        # sneaks past `frozen`: `s.data` is shared with the caller's snapshot, which changes too
        object.__setattr__(s.data, "turns", s.data.turns + 1)
        return super().call_model(s, e, to)


class LastMatchWins(AgentMachine):
    """Evaluates guards in reverse declaration order: disagrees with python-statemachine."""

    def _take(self, snapshot: Snapshot[Any], event: Event, candidates: Any) -> Step:
        return super()._take(snapshot, event, tuple(reversed(candidates)))


class FinalStateMoves(AgentMachine):
    def step(self, snapshot: Snapshot[Any], event: Event) -> Step:
        if snapshot.phase is Phase.DONE:
            return Step(snapshot.evolve(step=snapshot.step + 1, phase=Phase.DONE), ())
        return super().step(snapshot, event)


class HiddenCounter(AgentMachine):
    calls = 0

    @fused
    def finish(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        HiddenCounter.calls += 1
        step = super().finish(s, e, to)
        return Step(step.snapshot.evolve(output=f"{step.snapshot.output}#{HiddenCounter.calls}"))


class StartReadsHiddenState(AgentMachine):
    """`start` depends on state outside its arguments: each step is pure, the run is not replayable."""

    runs = 0

    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        StartReadsHiddenState.runs += 1
        step = super().start(input, context, run_id=run_id)
        return Step(step.snapshot.evolve(data=step.snapshot.data.model_copy(update={"handoffs": self.runs})), step.effects)


@pytest.mark.parametrize(
    ("bug", "invariants", "max_events"),
    [
        (ForgetsAResult, {"tool_results"}, 4),
        (NoBudgetGuard, {"progress"}, 12),
        (SkipsAStep, {"progress"}, 2),
        (RandomGuard, {"pure"}, 3),
        (RewritesHistory, {"append_only"}, 2),
        (ModelCallWhileExecuting, {"tool_results", "effects"}, 2),
        (MutatesItsInput, {"pure"}, 3),
        (LastMatchWins, {"oracle"}, 2),
        (FinalStateMoves, {"declared"}, 2),
        (HiddenCounter, {"pure"}, 2),
        (StartReadsHiddenState, {"replay"}, 2),
    ],
)
def test_planted_bug_is_caught_with_a_short_counterexample(
    bug: type[AgentMachine], invariants: set[str], max_events: int
) -> None:
    machine = bug(Agent("a", tools=[add], max_steps=3))
    with pytest.raises(InvariantViolation) as info:
        check_machine(machine, max_examples=150, seed=11)
    assert info.value.invariant in invariants, str(info.value)
    assert 1 <= len(info.value.events) <= max_events, str(info.value)


def test_a_machine_that_cannot_be_hashed_is_checked_too() -> None:
    class Unhashable(AgentMachine):
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other: object) -> bool:  # e.g. a user's dataclass machine
            return self is other

    report = check_machine(Unhashable(Agent("a", tools=[add], max_steps=3)), max_examples=30, seed=2)
    assert report.steps > 0 and report.coverage > 0.5
