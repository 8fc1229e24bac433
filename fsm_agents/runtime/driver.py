"""The one driver: the only loop in fsm_agents that turns effects into events.

    snapshot ──step──▶ (snapshot', effects) ──performer──▶ event ──step──▶ ...

`drive` takes a run from a `Position` (a fresh start, a stored log folded back, or a suspended
`RunResult`) to a final phase or a suspension. `run`, `iterate`, `stream` and `resume` are
views of it: they differ only in where the run starts (`Position`), whether it persists
(`Journal`), and who watches (`Session.sink` for stream events, `RunState.items` for steps).

- Performers are a table keyed by effect type (`performers.PERFORMERS`).
- Persistence is a `Journal`: `None` in memory; with `store=`, the store's ledger journal
  (`fsm_agents.store.journal`), which owns the record order: a "started" record before an
  effect, then the event with its "finished" (and "end") record in one append. The driver
  never writes a record itself.
- Observers are told of effects, events and transitions; an observer that raises is logged and
  ignored.

See docs/architecture.md, "One run".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fsm_agents.errors import MachineStalled
from fsm_agents.events import AgentsFinished, AgentTask, AwaitInput, Effect, Event, ModelReplied, Step
from fsm_agents.machine import Machine
from fsm_agents.models.base import Model
from fsm_agents.observers import Observer
from fsm_agents.runtime.performers import PERFORMERS, usage_of
from fsm_agents.runtime.result import NO_USAGE, Limits, Pending, RunResult, packed
from fsm_agents.runtime.streaming import (
    EffectFinished,
    EffectStarted,
    StepItem,
    Suspended,
    TransitionTaken,
)
from fsm_agents.state import Usage
from fsm_agents.tools import _RUN_ID, Tool, ToolExecutor

__all__ = ["Journal", "Position", "RunState", "Session", "drive"]

log = logging.getLogger("fsm_agents.runtime")


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

    __slots__ = ("children", "items", "journal", "machine", "run_id")

    def __init__(self, machine: Machine, run_id: str, journal: Journal | None, children: dict[str, RunResult]) -> None:
        self.machine = machine
        self.run_id = run_id
        self.journal = journal
        self.children = children
        self.items: Any = None  # a memory object send stream of `StepItem`s (iterate), or None


class Session:
    """What a run and all its children share: models by agent name, tool overrides, limits,
    observers, the stream sink, the decisions `resume` brought, and tool executors."""

    __slots__ = ("_executors", "decisions", "limits", "models", "observers", "prior", "sink", "tool_overrides")

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
        self.sink: Any = None  # a memory object send stream of stream events, or None
        self.decisions: dict[str, Any] | None = None  # call id -> decision, while resuming
        self.prior: dict[str, RunResult] = {}  # children of a suspended in-memory run, by run id
        self._executors: dict[tuple[int, str], ToolExecutor] = {}

    def executor(self, machine: Machine, agent: str) -> ToolExecutor:
        """The tool executor of `agent` in `machine` (tool overrides applied), made once per session."""
        key = (id(machine), agent)  # by id: a machine need not be hashable
        ex = self._executors.get(key)
        if ex is None:
            tools: Mapping[str, Tool] = machine.tools_for(agent)
            if self.tool_overrides and self.tool_overrides.keys() & tools.keys():
                tools = {**tools, **{n: t for n, t in self.tool_overrides.items() if n in tools}}
            limits = self.limits
            ex = ToolExecutor(tools, default_timeout=limits.tool_timeout, max_concurrency=limits.max_concurrency)
            self._executors[key] = ex
        return ex

    async def run_child(self, parent: RunState, machine: Machine, task: AgentTask) -> RunResult:
        """Run (or continue) the child `machine` of `parent` for `task`, under `<parent id>/<task id>`."""
        run_id = f"{parent.run_id}/{task.task_id}"
        prior = self.prior.pop(run_id, None)
        if prior is not None:  # an in-memory resume: a finished child stays finished
            if not prior.pending:
                return prior
            return await drive(self, machine, Position.of_result(machine, prior), None)
        journal: Journal | None = None
        position: Position | None = None
        if parent.journal is not None:
            journal, position = await parent.journal.child(machine, task, run_id)
        if position is None:
            position = Position.start(machine, task.input, run_id)
        return await drive(self, machine, position, journal)


def notify(observers: Sequence[Observer], hook: str, *args: Any) -> None:
    for observer in observers:
        fn = getattr(observer, hook, None)
        if fn is None:  # an observer need not subclass Observer
            continue
        try:
            fn(*args)
        except Exception:
            log.exception("observer %r failed in %s; ignored", observer, hook)


async def drive(
    session: Session, machine: Machine, position: Position, journal: Journal | None, items: Any = None
) -> RunResult:
    """Drive the run at `position` until its machine reaches a final phase, or an effect needs a
    human (the result is then suspended: `status == "suspended"`, `pending` set).

    Each turn: the one effect of the current step → its performer (or the journal's stand-in
    event) → `machine.step` → the journal → observers, the stream sink and `items`.
    Raises `MachineStalled` when a non-final step asks for no effect or for several (a bug in
    the machine); lets `CassetteDivergence` and cancellation through.
    """
    run = RunState(machine, position.run_id, journal, position.children)
    run.items = items
    observers = session.observers
    sink = session.sink
    finals = machine.table.finals
    snapshot, effects, _ = position.step
    events = position.events
    usage = position.usage
    pending: tuple[Pending, ...] = ()
    token = _RUN_ID.set(journal.conversation_id if journal is not None else run.run_id)
    if observers:
        notify(observers, "on_run_start", run.run_id, machine.name)
    try:
        while snapshot.phase not in finals:
            if len(effects) != 1:
                raise MachineStalled(
                    f"{machine.name}: phase {snapshot.phase} at step {snapshot.step} asks for {len(effects)} effects; "
                    "a non-final step must ask for exactly one"
                )
            effect = effects[0]
            if items is not None:
                await items.turn()  # an open run performs an effect only when its caller asks for more
            event: Event | None = None
            if journal is not None:
                event = await journal.before(machine, Step(snapshot, effects), effect, _tools_of(session, machine, effect))
            if event is None:
                if observers:
                    notify(observers, "on_effect", effect)
                if sink is not None:
                    sink.send_nowait(EffectStarted(run.run_id, effect))
                event = await PERFORMERS[type(effect)](session, run, effect)
                if event is None:  # suspended: a human must decide
                    pending = _pending_of(run, effect)
                    if sink is not None:
                        sink.send_nowait(Suspended(run.run_id, pending))
                    break
                if observers:
                    notify(observers, "on_event", effect, event)
                if sink is not None:
                    sink.send_nowait(EffectFinished(run.run_id, effect, event))
            if type(event) is ModelReplied or type(event) is AgentsFinished:
                usage = usage + usage_of(event)
            events.append(packed(event))
            step = machine.step(snapshot, event)
            if journal is not None:
                await journal.after(machine, effect, event, step)
            snapshot, effects, taken = step
            del step, effect
            if observers:
                for t in taken:
                    notify(observers, "on_transition", t, snapshot)
            if sink is not None:
                for t in taken:
                    sink.send_nowait(TransitionTaken(run.run_id, t))
            if items is not None:
                await items.send(StepItem(run.run_id, event, taken, effects, snapshot))
            del taken, event
    finally:
        _RUN_ID.reset(token)
    result = RunResult(
        run_id=position.run_id,
        input=position.input,
        snapshot=snapshot,
        events=tuple(events),
        usage=usage,
        children=run.children,
        machine=machine,
        context=position.context,
        pending=pending,
        _packed=True,
    )
    if observers:
        notify(observers, "on_run_end", result)
    return result


def _tools_of(session: Session, machine: Machine, effect: Effect) -> Mapping[str, Tool] | None:
    agent = getattr(effect, "agent", None)
    if agent is None or not hasattr(effect, "calls"):
        return None
    return session.executor(machine, agent).tools


def _pending_of(run: RunState, effect: Effect) -> tuple[Pending, ...]:
    """What a run that suspended on `effect` waits for: its own awaited calls, or its children's."""
    if isinstance(effect, AwaitInput):
        return tuple(Pending(run.run_id, r) for r in effect.requests)
    return tuple(p for child in run.children.values() for p in child.pending)
