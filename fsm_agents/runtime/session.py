"""What performers and the driver share about runs in progress: `Session` (one per top-level run
and its children) and `RunState` (one per run). See docs/architecture.md, One run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fsm_agents.context import RunContext
from fsm_agents.events import AgentTask, Effect, Event, Step
from fsm_agents.machine import Machine
from fsm_agents.models.base import Model
from fsm_agents.runtime.observer import Observer
from fsm_agents.runtime.result import NO_USAGE, Limits, RunResult
from fsm_agents.state import ToolSpec, Usage
from fsm_agents.tools import Tool, ToolExecutor

__all__ = ["Budget", "Journal", "Position", "RunState", "Session"]


@dataclass
class Position:
    """Where a run is: its id, start input and context, the current `step` (snapshot + the
    effects it asks for), the events so far (packed or not), their usage, and — for a run
    continued from a `RunResult` — the children it already ran."""

    run_id: str
    input: Any
    step: Step
    context: Any = None
    events: list[Any] = field(default_factory=list)
    usage: Usage = NO_USAGE
    children: dict[str, RunResult] = field(default_factory=dict)

    @classmethod
    def start(cls, machine: Machine, input: Any, run_id: str, context: Any = None) -> Position:
        return cls(run_id, input, machine.start(input, context, run_id=run_id), context)

    @classmethod
    def of_result(cls, machine: Machine, result: RunResult) -> Position:
        """Continue where `result` stopped (a suspended run)."""
        return cls(
            result.run_id,
            result.input,
            Step(result.snapshot, _effects_of(machine, result)),
            result.context,
            list(result.events),
            result.usage,
            dict(result.children),
        )


def _effects_of(machine: Machine, result: RunResult) -> tuple[Effect, ...]:
    """The effects `result.snapshot` asks for, found by replaying its events."""
    step = machine.start(result.input, result.context, run_id=result.run_id)
    for event in result.events:
        step = machine.step(step.snapshot, event)
    return step.effects


class Journal(Protocol):
    """The persistence hook of `drive`. The store's ledger journal implements it
    (`fsm_agents.store.journal.LedgerJournal`); in memory there is none.

    - `before(machine, step, effect, tools)`: called before `effect` is performed. Writes what the
      ledger needs ("started"), or returns the event to use instead of performing it (an
      `EffectUncertain` for a non-idempotent effect a crash interrupted; it may raise
      `UncertainEffect`).
    - `after(machine, effect, event, step)`: the event answering `effect` and the step it led to.
    - `child(task_id)`: the journal of a child run, and the child's `Position` when it has a log
      (a resumed fan-out continues its children), else `None`.
    """

    conversation_id: str

    async def before(
        self, machine: Machine, step: Step, effect: Effect, tools: Mapping[str, Tool] | None
    ) -> Event | None: ...

    async def after(self, machine: Machine, effect: Effect, event: Event, step: Step) -> None: ...

    async def child(self, machine: Machine, task: AgentTask, run_id: str) -> tuple[Journal, Position | None]: ...


class RunState:
    """One run in progress (a top-level run or a child): what performers need to know of it."""

    __slots__ = ("children", "items", "journal", "machine", "run_id", "usage")

    def __init__(
        self,
        machine: Machine,
        run_id: str,
        journal: Journal | None,
        children: dict[str, RunResult],
        usage: Usage = NO_USAGE,
    ) -> None:
        self.machine = machine
        self.run_id = run_id
        self.journal = journal
        self.children = children
        self.usage = usage  # the run's usage so far (kept by the driver)
        self.items: Any = None  # a memory object send stream of `StepItem`s (iterate), or None


class Budget:
    """The usage limits of `Limits` (tokens, requests, wall time) being spent by a run tree: one
    per `run`/`resume` call that sets any of them, shared by the run and all its children.

    `spent` is the tree's usage (every model reply's), `requests` the model calls started,
    `deadline` the event loop time (`anyio.current_time()`) the wall time ends at, set when the
    top-level run starts. See docs/architecture.md, Limits."""

    __slots__ = ("deadline", "limits", "requests", "spent", "started")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.spent: Usage = NO_USAGE
        self.requests = 0
        self.started: float | None = None
        self.deadline: float | None = None

    def begin(self, now: float) -> None:
        """Start the wall-time clock (once: children share the top-level run's deadline)."""
        if self.started is None:
            self.started = now
            if self.limits.wall_time is not None:
                self.deadline = now + self.limits.wall_time


class Session:
    """What a run and all its children share: models by agent name, tool overrides, limits,
    observers, the caller's `deps`, the stream sink, the decisions `resume` brought, and tool
    executors, and the tools its toolsets listed when the run started. A session that sets usage
    limits (`Limits.budgeted`) is made per call of `run`/`resume`: its `budget` counts what the
    run tree spends."""

    __slots__ = (
        "_executors",
        "budget",
        "decisions",
        "deps",
        "limits",
        "listed",
        "models",
        "observers",
        "prior",
        "sink",
        "tool_overrides",
    )

    def __init__(
        self,
        models: Mapping[str, Model],
        tools: Mapping[str, Tool],
        limits: Limits,
        observers: Sequence[Observer],
    ) -> None:
        self.models = models
        self.tool_overrides = tools
        self.limits = limits
        self.observers = observers
        # the usage limits being spent, shared by the run tree (None: none set, nothing to count)
        self.budget: Budget | None = Budget(limits) if limits.budgeted else None
        self.deps: Any = None  # `run(..., deps=...)`: given to tools, instructions and guardrails in a RunContext
        self.sink: Any = None  # a memory object send stream of stream events, or None
        self.decisions: dict[str, Any] | None = None  # call id -> decision, while resuming
        self.prior: dict[str, RunResult] | None = None  # children of a suspended in-memory run, by run id
        self._executors: dict[tuple[int, str], ToolExecutor] = {}
        # (id(machine), agent) -> (tools by name, their specs): what the agent's toolsets listed
        # when the run started (`fsm_agents.runtime.toolsets`); None when no agent has a toolset
        self.listed: dict[tuple[int, str], tuple[Mapping[str, Tool], tuple[ToolSpec, ...]]] | None = None

    def listed_specs(self, machine: Machine, agent: str) -> tuple[ToolSpec, ...]:
        """The specs of the tools `agent`'s toolsets listed for this run (the `CallModel` performer
        adds them to the request, which names only the agent's own tools)."""
        listed = self.listed.get((id(machine), agent)) if self.listed is not None else None
        return listed[1] if listed is not None else ()

    def run_context(self, run: RunState, agent: str) -> RunContext[Any]:
        """The `RunContext` of a call made for `agent` in `run`, now (deps, ids, usage so far)."""
        return RunContext(self.deps, run.run_id, agent, run.usage)

    def executor(self, machine: Machine, agent: str) -> ToolExecutor:
        """The tool executor of `agent` in `machine` (tool overrides applied, the tools its toolsets
        listed added), made once per session."""
        key = (id(machine), agent)  # by id: a machine need not be hashable
        ex = self._executors.get(key)
        if ex is None:
            tools: Mapping[str, Tool] = machine.tools_for(agent)
            if self.tool_overrides and self.tool_overrides.keys() & tools.keys():
                tools = {**tools, **{n: t for n, t in self.tool_overrides.items() if n in tools}}
            listed = self.listed.get(key) if self.listed is not None else None
            if listed is not None:
                tools = {**tools, **listed[0]}
            limits = self.limits
            ex = ToolExecutor(
                tools,
                default_timeout=limits.tool_timeout,
                max_concurrency=limits.max_concurrency,
                **machine.tool_options(agent),  # the agent's output cap and call order
            )
            self._executors[key] = ex
        return ex
