"""ManagerWorker: a manager delegates to code, search and doc workers (as `delegate_to_<worker>` tools).

python -m examples.patterns.manager_worker
"""

from __future__ import annotations

from examples.patterns._common import answers, calls, fixed, main_with
from fsm_agents import Agent, AssistantMessage, RunResult, run_sync
from fsm_agents.models import Model
from fsm_agents.patterns import ManagerWorker
from fsm_agents.state import ModelRequest

TASK = "Add retry with backoff to our HTTP client and document it."


def manage(request: ModelRequest) -> str | AssistantMessage:
    results = [m.content for m in request.messages if m.role == "tool"]
    if not results:  # first turn: research and code in parallel
        return calls(
            ("delegate_to_search", {"task": "Find best practices for HTTP retry with exponential backoff"}),
            ("delegate_to_code", {"task": "Write a retry decorator with exponential backoff and jitter"}),
        )
    if len(results) == 2:
        return calls(("delegate_to_doc", {"task": "Document the retry decorator: " + results[1]}))
    return "Done: " + " / ".join(results)


def build(model: Model | None = None) -> ManagerWorker:
    manager = Agent(
        "manager",
        "Split the task and delegate to your workers (search, code, doc); answer when their results are in.",
        model or answers(manage),
        max_steps=5,
    )
    workers = [
        Agent("code", "Write the code asked for.", model or fixed("def retry(...): ...  # backoff 2**n + jitter")),
        Agent("search", "Search and summarise sources.", model or fixed("use capped exponential backoff with full jitter")),
        Agent("doc", "Write documentation.", model or fixed("## Retries\nCalls are retried with backoff.")),
    ]
    return ManagerWorker("dev_team", manager, workers)


def run(pattern: ManagerWorker, **kwargs: object) -> RunResult:
    return run_sync(pattern, TASK, **kwargs)  # type: ignore[arg-type]


def main() -> int:
    return main_with(build, lambda p, kw: run(p, **kw))


if __name__ == "__main__":
    raise SystemExit(main())
