"""`Sequential`: a pipeline of stages, each an agent or a pattern; each stage's output feeds the next.

EXECUTING --agents_finished [child_failed]--> FAILED       (the stage is named)
EXECUTING --agents_finished--> OBSERVING                   (fold the stage's messages)
OBSERVING --observed--> PLANNING                           (internal)
PLANNING  --planned [pipeline_complete]--> DONE            (internal; output = last stage's)
PLANNING  --planned--> EXECUTING                           (internal; run the next stage)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from statemachine import State

from fsm_agents.events import Event, Observed, Step
from fsm_agents.machine import compile_chart
from fsm_agents.patterns._base import (
    ChartClass,
    Pattern,
    Planned,
    chart_class,
    child_name,
    children_by_name,
    output_text,
    pattern_name,
)
from fsm_agents.state import Conversation, Frozen, Phase, Snapshot, messages_from

__all__ = ["Sequential", "SequentialChart", "SequentialData"]


def _sequential_chart() -> ChartClass:
    executing = State("EXECUTING", initial=True)
    observing = State("OBSERVING")
    planning = State("PLANNING")
    done = State("DONE", final=True)
    failed = State("FAILED", final=True)
    return chart_class(
        "SequentialChart",
        {
            "executing": executing,
            "observing": observing,
            "planning": planning,
            "done": done,
            "failed": failed,
            "agents_finished": executing.to(failed, cond="child_failed", on="fail_stage")
            | executing.to(observing, on="fold_stage"),
            "observed": observing.to(planning),
            "planned": planning.to(done, cond="pipeline_complete", on="finish") | planning.to(executing, on="run_stage"),
        },
        internal=(Observed, Planned),
    )


SequentialChart = _sequential_chart()


class SequentialData(Frozen):
    """Bookkeeping: the index of the running (or last finished) stage, and its output."""

    stage: int = 0
    last_output: Any = None


class Sequential(Pattern):
    """A pipeline: `stages` run one after the other.

    - `stages`: agents, patterns or machines (names must be distinct), at least one;
    - `shared_conversation=True`: each stage gets the whole conversation so far (full context)
      and its new messages are folded into it; `False`: each stage gets only the previous
      stage's output as text (the first stage gets the input).

    Input: a string or messages. Output: the last stage's output. A failed stage ends the
    pipeline in FAILED(`child_failed`) naming the stage. Raises `InvalidDefinition` for no stages
    or two different stages with one name.
    """

    def __init__(self, name: str, stages: Iterable[Any], *, shared_conversation: bool = True) -> None:
        self.name = pattern_name("sequential", name)
        items = list(stages)
        self._children = children_by_name(self.name, items, "stage")
        self.stages: tuple[str, ...] = tuple(child_name(o) for o in items)  # a stage may appear twice
        self.shared_conversation = shared_conversation
        self.table = compile_chart(SequentialChart, owner=self)

    def max_transitions(self) -> int:
        return 3 * len(self.stages)

    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        """EXECUTING with a `RunAgents` for the first stage. `input`: a string or messages."""
        conversation = Conversation.of(*messages_from(input), id=run_id)
        s = self._snapshot(Phase.EXECUTING, conversation, SequentialData(), context)
        return Step(s, (self._run(s, (self._task(s, self.stages[0], self._stage_input(s)),)),))

    def _stage_input(self, s: Snapshot[SequentialData]) -> Any:
        if self.shared_conversation or s.data.stage == 0:
            return s.conversation.messages
        return output_text(s.data.last_output)

    def _sent(self, s: Snapshot[SequentialData]) -> int:
        # how many messages the running stage was given
        return len(s.conversation.messages) if self.shared_conversation or s.data.stage == 0 else 1

    # guards (and `child_failed`)
    def pipeline_complete(self, s: Snapshot[SequentialData], e: Event) -> bool:
        return s.data.stage + 1 >= len(self.stages)

    # actions
    def _fold(self, s: Snapshot[SequentialData], e: Event) -> Snapshot[SequentialData]:
        folded, outcome = self._fold_child(s, e, self._sent(s), self.stages[s.data.stage])
        if outcome is None:
            return folded
        return folded.evolve(data=s.data.model_copy(update={"last_output": outcome.output}))

    def fail_stage(self, s: Snapshot[SequentialData], e: Event) -> Step:
        stage = self.stages[s.data.stage]
        why = self._why(e)
        return self._fail_child(
            self._fold(s, e),
            e,
            f"{self.name}: stage {s.data.stage + 1}/{len(self.stages)} {stage!r} failed: {why}",
            detail=stage,
        )

    def fold_stage(self, s: Snapshot[SequentialData], e: Event) -> Step:
        return Step(self._fold(s, e))

    def finish(self, s: Snapshot[SequentialData], e: Event) -> Step:
        return Step(s.evolve(output=s.data.last_output))

    def run_stage(self, s: Snapshot[SequentialData], e: Event) -> Step:
        moved = s.evolve(data=s.data.model_copy(update={"stage": s.data.stage + 1}))
        stage = self.stages[moved.data.stage]
        return Step(moved, (self._run(moved, (self._task(moved, stage, self._stage_input(moved)),)),))
