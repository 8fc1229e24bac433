"""Every pattern passes `check_machine` (the invariants of docs/architecture.md) with full transition coverage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st

from fsm_agents import Agent, tool
from fsm_agents.patterns import (
    Competitive,
    EventDriven,
    EventInput,
    Handoffs,
    ManagerWorker,
    Parallel,
    Recursive,
    RecursiveTask,
    Router,
    Sequential,
)
from fsm_agents.testing import check_machine

EXAMPLES = 200


@tool
def lookup(city: str) -> str:
    """Look up a city."""
    return city


def recursive_inputs(max_depth: int) -> st.SearchStrategy[Any]:
    # a run may be a subtask at any depth: that is how depth exhaustion is reachable from start
    return st.one_of(
        st.text(min_size=1, max_size=8), st.builds(RecursiveTask, task=st.just("t"), depth=st.integers(0, max_depth))
    )


CASES: dict[str, tuple[Callable[[], Any], st.SearchStrategy[Any] | None]] = {
    "sequential": (lambda: Sequential("pipe", [Agent("research"), Agent("analysis"), Agent("report")]), None),
    "router": (lambda: Router("r", Agent("cls"), {"tech": Agent("t"), "data": Agent("d")}), None),
    "router_default": (lambda: Router("r", lambda text: "tech", {"tech": Agent("t")}, default=Agent("g")), None),
    "parallel": (lambda: Parallel("p", [Agent("a"), Agent("b"), Agent("c")]), None),
    "parallel_synth": (lambda: Parallel("p", [Agent("a"), Agent("b")], synthesizer=Agent("s"), on_failure="report"), None),
    "competitive": (lambda: Competitive("c", [Agent("a"), Agent("b")], Agent("e")), None),
    "manager_worker": (lambda: ManagerWorker("m", Agent("boss", max_steps=3), [Agent("w1"), Agent("w2")]), None),
    "recursive": (lambda: Recursive("rec", Agent("dec"), Agent("exe"), max_depth=1), recursive_inputs(1)),
    "recursive_execute_synth": (
        lambda: Recursive("rec", Agent("dec"), Agent("exe"), 1, on_depth_exhausted="execute", synthesizer=Agent("s")),
        recursive_inputs(1),
    ),
    "handoffs": (
        lambda: Handoffs(
            "h", Agent("triage", tools=[lookup]), [Agent("billing"), Agent("tech")], max_handoffs=1, max_steps=4
        ),
        None,
    ),
    "event_driven": (
        lambda: EventDriven("ev", {"data.received": Agent("an"), "error.occurred": Agent("resp")}),
        st.builds(EventInput.of, st.sampled_from(["data.received", "error.occurred"]), st.integers() | st.text(max_size=5)),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pattern_passes_check_machine_with_full_coverage(case: str) -> None:
    """Invariants 1-8 hold on every explored run of the pattern (only declared transitions,
    pure and deterministic steps, append-only conversation, tool calls answered before the next
    model call, bounded progress, effects matching phases, replay, agreement with
    python-statemachine's engine), and every declared transition is taken at least once."""
    build, inputs = CASES[case]
    report = check_machine(build(), max_examples=EXAMPLES, seed=7, inputs=inputs, assert_full_coverage=True)
    assert report.examples >= EXAMPLES and report.coverage == 1.0
