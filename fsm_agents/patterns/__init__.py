"""Orchestration patterns as named machines over the six phases (docs/architecture.md, The idea).

Each pattern is a `Machine` (and its own `.machine`) with a flat chart, pure transitions and child
runs through `RunAgents`; a stage, branch, worker, route or handler may be an `Agent` or another
pattern. `EventDriven` wraps its machine (`.machine`) and keeps the shared conversation.

| pattern | children | the pattern calls a model itself |
|---|---|---|
| `Sequential(name, stages)` | the stages | no |
| `Router(name, classifier, routes, default=None)` | the routes (+ `default`) | the classifier |
| `Parallel(name, branches, synthesizer=None, max_concurrency=None, on_failure="fail")` | branches (+ `synthesizer`) | no |
| `Competitive(name, candidates, evaluator)` | candidates + `evaluator` | no |
| `ManagerWorker(name, manager, workers)` | the workers | the manager |
| `Recursive(name, decomposer, executor, max_depth, ...)` | `executor`, `subtask` (itself) | the decomposer |
| `Handoffs(name, entry, agents, max_handoffs)` | none (one agent loop) | every agent |
| `EventDriven(name, handlers)` | the handlers | no |
"""

from fsm_agents.patterns._base import Pattern, chart_class
from fsm_agents.patterns.event_driven import EventDrivenMachine, EventInput, UnknownEventType
from fsm_agents.patterns.handoffs import Handoffs
from fsm_agents.patterns.manager import ManagerWorker
from fsm_agents.patterns.parallel import Competitive, Parallel
from fsm_agents.patterns.recursive import Decomposition, Recursive, RecursiveTask
from fsm_agents.patterns.router import Router
from fsm_agents.patterns.sequential import Sequential
from fsm_agents.runtime.bus import EventDriven  # the bus runs the pure machine: it sits above the runtime

__all__ = [
    "Competitive",
    "Decomposition",
    "EventDriven",
    "EventDrivenMachine",
    "EventInput",
    "Handoffs",
    "ManagerWorker",
    "Parallel",
    "Pattern",
    "Recursive",
    "RecursiveTask",
    "Router",
    "Sequential",
    "UnknownEventType",
    "chart_class",
]
