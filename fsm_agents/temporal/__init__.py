"""fsm_agents on Temporal (extra `[temporal]`): the same machines, run as durable workflows.

    from fsm_agents import temporal

    async with temporal.worker(client, "agents", [agent], store):          # on each worker
        result = await temporal.run(client, agent, "question", id="c1", task_queue="agents", store=store)

- `worker(client, task_queue, machines, store, models=None)`: an async context manager running a
  Temporal worker for `FsmWorkflow` and its activities;
- `run(client, machine, input, id=..., task_queue=..., store=None)` → our `RunResult`;
  `start(...)` → a workflow handle for `progress(handle)`, `decide(handle, decisions)`,
  `result(handle, machine, store=...)`;
- `stream(client, machine, input, id=..., task_queue=..., store=None)`: an async iterator of
  `TextDelta` / `ToolCallDelta` (published by the model calls' activities in batched signals,
  best effort) and last `Finished(result)` (or `Suspended`).

The pure core runs inside Temporal's workflow sandbox; model calls and tool calls are activities
that read the conversation from the event store by reference, so Temporal's history grows with
what happened, not with the conversation's size. See docs/architecture.md, "Temporal".
"""

from fsm_agents.temporal._types import Progress, RunInput, RunSummary
from fsm_agents.temporal.client import (
    decide,
    locate,
    pending,
    progress,
    result,
    run,
    sandbox_runner,
    start,
    stream,
    worker,
)
from fsm_agents.temporal.workflow import FsmWorkflow

__all__ = [
    "FsmWorkflow",
    "Progress",
    "RunInput",
    "RunSummary",
    "decide",
    "locate",
    "pending",
    "progress",
    "result",
    "run",
    "sandbox_runner",
    "start",
    "stream",
    "worker",
]
