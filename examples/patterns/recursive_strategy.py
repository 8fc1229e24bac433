"""Recursive: a strategy is decomposed into subtasks (to depth 2), leaves are executed, results synthesized.

python -m examples.patterns.recursive_strategy
"""

from __future__ import annotations

from examples.patterns._common import answers, last_user, main_with
from fsm_agents import Agent, RunResult, run_sync
from fsm_agents.models import Model
from fsm_agents.patterns import Decomposition, Recursive
from fsm_agents.state import ModelRequest

GOAL = "Go-to-market strategy for a B2B analytics product"
PLAN = {
    GOAL: ("Define the target segment", "Plan the sales channels"),
    "Plan the sales channels": ("Direct sales to enterprises", "Partner resellers"),
}


def decompose(request: ModelRequest) -> str:
    subtasks = PLAN.get(last_user(request))
    if subtasks:
        return Decomposition(action="DECOMPOSE", subtasks=subtasks).model_dump_json()
    return Decomposition(action="EXECUTE").model_dump_json()


def execute(request: ModelRequest) -> str:
    return f"plan for {last_user(request)!r}: owner, budget, milestones"


def synthesize(request: ModelRequest) -> str:
    parts = [m.content for m in request.messages if m.role == "assistant" and (m.content or "").startswith("[subtask")]
    return f"{last_user(request)}: " + "; ".join(parts)


def build(model: Model | None = None, *, max_depth: int = 2) -> Recursive:
    decomposer = Agent(
        "strategist",
        'Decide whether the task is small enough to execute. Reply as JSON: {"action": "EXECUTE"} or '
        '{"action": "DECOMPOSE", "subtasks": ["...", "..."]}.',
        model or answers(decompose),
    )
    executor = Agent("planner", "Write a concrete plan for the task.", model or answers(execute))
    synthesizer = Agent("synthesizer", "Combine the subtask plans into one plan.", model or answers(synthesize))
    return Recursive(
        "strategy", decomposer, executor, max_depth=max_depth, on_depth_exhausted="execute", synthesizer=synthesizer
    )


def run(pattern: Recursive, **kwargs: object) -> RunResult:
    return run_sync(pattern, GOAL, **kwargs)  # type: ignore[arg-type]


def main() -> int:
    return main_with(build, lambda p, kw: run(p, **kw))


if __name__ == "__main__":
    raise SystemExit(main())
