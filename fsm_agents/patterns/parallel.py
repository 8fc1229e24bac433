"""`Parallel` (fan-out / fan-in, optional synthesizer) and `Competitive` (candidates + evaluator).

    EXECUTING --agents_finished [children_failed]--> FAILED     (by policy; or the synthesizer failed)
    EXECUTING --agents_finished [synthesized]--> DONE            (with a synthesizer: its answer)
    EXECUTING --agents_finished--> OBSERVING                     (fan-in: one message per branch)
    OBSERVING --observed--> EXECUTING                            (with a synthesizer: run it)
    OBSERVING --observed--> DONE                                 (without: the branch outputs)

The fan-out is one `RunAgents` effect with one task per branch; the runtime runs them
concurrently (at most `max_concurrency` at once).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from statemachine import State

from fsm_agents.errors import InvalidDefinition
from fsm_agents.events import AgentOutcome, Event, Observed, Step
from fsm_agents.machine import compile_chart
from fsm_agents.patterns._base import (
    ChartClass,
    Pattern,
    chart_class,
    child_name,
    children_by_name,
    failure_text,
    new_messages,
    outcome_message,
    outcomes_of,
    pattern_name,
    resolve_child,
)
from fsm_agents.state import Conversation, Frozen, Phase, Snapshot, messages_from

__all__ = ["Competitive", "OnFailure", "Parallel", "ParallelData", "parallel_chart"]

OnFailure = Literal["fail", "report"]


def parallel_chart(*, synthesizer: bool, name: str = "ParallelChart") -> ChartClass:
    """The fan-out/fan-in chart, with or without a synthesizing step."""
    executing = State("EXECUTING", initial=True)
    observing = State("OBSERVING")
    done = State("DONE", final=True)
    failed = State("FAILED", final=True)
    finished = executing.to(failed, cond="children_failed", on="fail_children")
    if synthesizer:
        finished |= executing.to(done, cond="synthesized", on="finish_synthesis")
    finished |= executing.to(observing, on="fan_in")
    observed = observing.to(executing, on="run_synthesizer") if synthesizer else observing.to(done, on="finish")
    return chart_class(
        name,
        {
            "executing": executing,
            "observing": observing,
            "done": done,
            "failed": failed,
            "agents_finished": finished,
            "observed": observed,
        },
        internal=(Observed,),
    )


ParallelChart = parallel_chart(synthesizer=False)
ParallelSynthesisChart = parallel_chart(synthesizer=True, name="ParallelSynthesisChart")
CompetitiveChart = parallel_chart(synthesizer=True, name="CompetitiveChart")


class ParallelData(Frozen):
    """Bookkeeping: whether the synthesizer is running, and how many messages it was given."""

    synthesizing: bool = False
    sent: int = 0


class Parallel(Pattern):
    """Run `branches` concurrently on the same input, then fan in.

    - `branches`: agents or patterns (a branch may repeat), at least one;
    - `synthesizer`: an agent or pattern given the input followed by one attributed assistant
      message per branch (`[branch] output`, or `[branch] (failed: kind: message)`); its output
      is the pattern's output. Without one the output is a tuple of the branch outputs in branch
      order (`None` for a failed branch);
    - `max_concurrency`: branches running at once (default: the run's `Limits.max_concurrency`);
    - `on_failure`: `"fail"` — any failed branch fails the pattern (FAILED(`child_failed`) naming
      the branches); `"report"` — failures are reported to the synthesizer / in the output, and the
      pattern fails only when every branch failed.

    Raises `InvalidDefinition` for no branches or an unknown policy.
    """

    kind = "parallel"
    label = "branch"
    role = "synthesizer"  # the child name of the synthesizer

    def __init__(
        self,
        name: str,
        branches: Iterable[Any],
        synthesizer: Any = None,
        max_concurrency: int | None = None,
        on_failure: OnFailure = "fail",
        *,
        _chart: ChartClass | None = None,
    ) -> None:
        self.name = pattern_name(self.kind, name)
        if on_failure not in ("fail", "report"):
            raise InvalidDefinition(f"{self.name}: on_failure must be 'fail' or 'report', got {on_failure!r}")
        if max_concurrency is not None and max_concurrency < 1:
            raise InvalidDefinition(f"{self.name}: max_concurrency must be >= 1")
        items = list(branches)
        children = children_by_name(self.name, items, self.label)
        self.branches: tuple[str, ...] = tuple(child_name(b) for b in items)
        self.synthesizer = synthesizer is not None
        if synthesizer is not None:
            if self.role in children:
                raise InvalidDefinition(f"{self.name}: a {self.label} is named {self.role!r}; rename it")
            children[self.role] = resolve_child(synthesizer)
        self._children = children
        self.max_concurrency = max_concurrency
        self.on_failure = on_failure
        chart = _chart or (ParallelSynthesisChart if self.synthesizer else ParallelChart)
        self.table = compile_chart(chart, owner=self)

    def max_transitions(self) -> int:
        return 3 if self.synthesizer else 2

    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        """EXECUTING with one `RunAgents` effect: a task per branch, all given `input` (a string
        or messages)."""
        conversation = Conversation.of(*messages_from(input), id=run_id)
        s = self._snapshot(Phase.EXECUTING, conversation, ParallelData(sent=len(conversation)), context)
        messages = conversation.messages
        tasks = [self._task(s, b, messages, i) for i, b in enumerate(self.branches)]
        return Step(s, (self._run(s, tasks, self.max_concurrency),))

    # guards
    def children_failed(self, s: Snapshot[ParallelData], e: Event) -> bool:
        outcomes = outcomes_of(e)
        failed = [o for o in outcomes if o.phase is not Phase.DONE]
        if s.data.synthesizing or self.on_failure == "fail":
            return bool(failed) or not outcomes
        return len(failed) == len(outcomes)

    def synthesized(self, s: Snapshot[ParallelData], e: Event) -> bool:
        return s.data.synthesizing

    # actions
    def _names(self, outcomes: tuple[AgentOutcome, ...]) -> list[str]:
        return [self.branches[i] if i < len(self.branches) else o.machine for i, o in enumerate(outcomes)]

    def fail_children(self, s: Snapshot[ParallelData], e: Event) -> Step:
        outcomes = outcomes_of(e)
        if s.data.synthesizing:
            why = failure_text(outcomes[0]) if outcomes else "no outcome was reported"
            added = new_messages(outcomes[0], s.data.sent, self.role) if outcomes else ()
            return self._fail_child(
                s.evolve(conversation=s.conversation.append(*added)),
                e,
                f"{self.name}: the {self.role} failed: {why}",
                detail=self.role,
            )
        names = self._names(outcomes)
        bad = [f"{n} ({failure_text(o)})" for n, o in zip(names, outcomes, strict=True) if o.phase is not Phase.DONE]
        folded = s.evolve(conversation=s.conversation.append(*self._messages(outcomes)))
        which = "every" if self.on_failure == "report" else f"{len(bad)} of {len(outcomes)}"
        return self._fail_child(
            folded,
            e,
            f"{self.name}: {which} {self.label}(es) failed: {'; '.join(bad) or 'no outcome was reported'}",
            detail=",".join(n for n, o in zip(names, outcomes, strict=True) if o.phase is not Phase.DONE),
        )

    def _messages(self, outcomes: tuple[AgentOutcome, ...]) -> list[Any]:
        return [outcome_message(o, n) for n, o in zip(self._names(outcomes), outcomes, strict=True)]

    def fan_in(self, s: Snapshot[ParallelData], e: Event) -> Step:
        outcomes = outcomes_of(e)
        output = tuple(o.output if o.phase is Phase.DONE else None for o in outcomes)
        return Step(s.evolve(conversation=s.conversation.append(*self._messages(outcomes)), output=output))

    def finish(self, s: Snapshot[ParallelData], e: Event) -> Step:
        return Step(s)

    def run_synthesizer(self, s: Snapshot[ParallelData], e: Event) -> Step:
        moved = s.evolve(output=None, data=ParallelData(synthesizing=True, sent=len(s.conversation)))
        return Step(moved, (self._run(moved, (self._task(moved, self.role, s.conversation.messages),)),))

    def finish_synthesis(self, s: Snapshot[ParallelData], e: Event) -> Step:
        outcome = outcomes_of(e)[0]
        added = new_messages(outcome, s.data.sent, self.role)
        return Step(s.evolve(conversation=s.conversation.append(*added), output=outcome.output))


class Competitive(Parallel):
    """Candidates answer the same input concurrently; an `evaluator` compares their answers.

    - `candidates`: agents or patterns with different perspectives (instructions, temperatures);
    - `evaluator`: an agent or pattern given the input and one `[candidate] answer` message per
      candidate; its output (e.g. the chosen answer, or a structured verdict) is the output.

    A failed candidate is reported to the evaluator; the pattern fails only when every candidate
    failed, or the evaluator did. Raises `InvalidDefinition` for no candidates.
    """

    kind = "competitive"
    label = "candidate"
    role = "evaluator"

    def __init__(self, name: str, candidates: Iterable[Any], evaluator: Any, max_concurrency: int | None = None) -> None:
        if evaluator is None:
            raise InvalidDefinition(f"competitive:{name}: an evaluator is required")
        super().__init__(name, candidates, evaluator, max_concurrency, "report", _chart=CompetitiveChart)
