"""A user's own agent tested three ways with fsm_agents.testing (run by `make test`).

1. invariants: `check_machine` explores the agent with hypothesis and asserts the invariants of docs/architecture.md;
2. a targeted property of *this* agent, written with the strategies;
3. a cassette recorded on the embedded local model, replayed as a deterministic regression test.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings

from fsm_agents import Phase, Snapshot, ToolMessage
from fsm_agents.testing import Cassette, check_machine, history_problems, replay
from fsm_agents.testing import strategies as fst

from .support_agent import CASSETTE, support_agent

AGENT = support_agent()


def test_the_agent_keeps_every_invariant() -> None:
    report = check_machine(AGENT, max_examples=300, seed=1)
    print(report)
    assert report.coverage >= 0.8  # HANDOFF is unreachable: this agent has no handoffs


@settings(max_examples=300, deadline=None)
@given(fst.snapshots(AGENT, max_events=12))
def test_a_finished_run_never_leaves_a_tool_call_unanswered(snapshot: Snapshot[Any]) -> None:
    """Property: in every reachable snapshot the agent made at most max_steps model calls, and a
    run that ended (DONE or FAILED) has a well-formed history: each order_status call answered
    exactly once."""
    assert snapshot.data.turns <= AGENT.max_steps
    if snapshot.is_final:
        assert history_problems(snapshot.conversation) == []


def test_the_recorded_local_model_run_replays_exactly() -> None:
    cassette = Cassette.load(CASSETTE)
    final = replay(AGENT, cassette)  # raises CassetteDivergence if the agent now asks for anything else
    snapshot = final.snapshot
    assert snapshot.phase is Phase.DONE
    tool_answers = [m for m in snapshot.conversation.messages if isinstance(m, ToolMessage)]
    assert [m.content for m in tool_answers] == ["Order A100: shipped on 2026-11-20, arriving 2026-11-24."]
