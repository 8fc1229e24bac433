"""The runtime: the only place that awaits. It performs effects and feeds their events to `step`.

    result = await run(agent_or_machine, "question", models=..., limits=Limits(...))
    result = run_sync(agent_or_machine, "question")          # from synchronous code

`run` never decides control flow (that is `step`'s job): it performs each effect with anyio —
`CallModel` through the agent's `Model` (with `Limits.model_timeout`), `RunTools` through a
`ToolExecutor` (calls of one reply concurrently), `RunAgents` by running child machines in a
task group (`Limits.max_concurrency`) — turns every result or exception into an event, and
calls `step`. Works on asyncio and trio. Cancellation is structured: cancelling a run cancels
the model calls, tools and child runs it started.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import sys
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import anyio

from fsm_agents._arguments import (
    check_backend,
    check_conversation_id,
    check_limits,
    check_machines,
    check_models,
    check_observers,
    check_store,
    check_tools,
)
from fsm_agents.errors import (
    CassetteDivergence,
    ConcurrencyConflict,
    EventLoopRunning,
    FsmAgentsError,
    InvalidDefinition,
    InvalidInput,
    MachineStalled,
    NotAMachine,
)
from fsm_agents.events import (
    AgentOutcome,
    AgentsFinished,
    AgentTask,
    CallModel,
    Effect,
    EffectUncertain,
    Event,
    ModelFailed,
    ModelReplied,
    RunAgents,
    RunTools,
    Step,
    Taken,
    ToolsFinished,
)
from fsm_agents.machine import Machine
from fsm_agents.models.base import Model, ModelError, ModelResponse
from fsm_agents.observers import Observer
from fsm_agents.state import AssistantMessage, Failure, Phase, Snapshot, ToolResult, Usage, _made, fields_set
from fsm_agents.tools import _RUN_ID, Tool, ToolExecutor, _text_of, as_tools

if TYPE_CHECKING:
    from fsm_agents.store._records import Record
    from fsm_agents.store.base import Store

__all__ = ["Limits", "RunResult", "UncertainEffect", "as_machine", "resume", "resume_sync", "run", "run_sync"]

log = logging.getLogger("fsm_agents.runtime")


@dataclass(frozen=True, slots=True)
class Limits:
    """Run-wide limits (seconds for timeouts).

    - `model_timeout`: wall time for one model call, retries included → `ModelFailed(kind="timeout")`;
    - `tool_timeout`: default per-attempt timeout for tools that set none;
    - `max_concurrency`: tool calls of one reply / children of one fan-out running at once.

    Each is `None` (no limit) or positive; else `InvalidDefinition` at construction.
    """

    model_timeout: float | None = None
    tool_timeout: float | None = None
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        for name in ("model_timeout", "tool_timeout"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf
            ):
                raise InvalidDefinition(f"Limits.{name} must be None or a positive number of seconds, got {value!r}")
        n = self.max_concurrency
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise InvalidDefinition(f"Limits.max_concurrency must be None or an int >= 1, got {n!r}")


class RunResult:
    """How a run ended: the final `snapshot`, every external `event` fed to `step` (with the
    start input, enough to replay the run), the `effect` each event answered, total token
    `usage`, the `trace` of transitions, and the `children` runs by task id.

    Immutable. `effects` and `trace` are derived on first access by replaying `events` through
    the pure `machine.step` from `machine.start(input, context, run_id=run_id)` (cost: one step
    per event, once), so a live run does not keep every effect — each `CallModel` pins the
    history it was sent — nor a `Taken` per transition. Pass them explicitly when they are
    already known. Raises `FsmAgentsError` on access when the replay does not reproduce
    `snapshot` (a machine whose `step` is not pure).

    A run made by `run` keeps its events packed until `events` is first read: a model reply
    without usage as its message (which the conversation holds anyway), a `ToolsFinished` as
    its results (one result alone). `events` rebuilds equal event objects from them, once.

    Picklable (e.g. to hand it to another process): the pickle holds the events, trace and
    effects, derived first if need be, and not the machine (its models and tools are live
    objects: clients, locks, functions). `copy.copy` returns the result itself (it is immutable).
    """

    __slots__ = (
        "_effects",
        "_events",
        "_machine",
        "_packed",
        "_trace",
        "children",
        "context",
        "input",
        "run_id",
        "snapshot",
        "usage",
    )

    run_id: str
    input: Any
    snapshot: Snapshot[Any]
    usage: Usage
    children: Mapping[str, RunResult]
    context: Any
    _machine: Machine | None
    _trace: tuple[Taken, ...] | None
    _effects: tuple[Effect, ...] | None
    _events: tuple[Any, ...]
    _packed: bool

    def __init__(
        self,
        run_id: str,
        input: Any,
        snapshot: Snapshot[Any],
        events: tuple[Event, ...],
        usage: Usage,
        trace: tuple[Taken, ...] | None = None,
        children: Mapping[str, RunResult] | None = None,
        effects: tuple[Effect, ...] | None = None,
        *,
        machine: Machine | None = None,
        context: Any = None,
        _packed: bool = False,
    ) -> None:
        if (trace is None or effects is None) and machine is None:
            raise TypeError("RunResult: pass trace= and effects=, or the machine= to derive them from the events")
        init = object.__setattr__
        init(self, "run_id", run_id)
        init(self, "input", input)
        init(self, "snapshot", snapshot)
        init(self, "_events", events)
        init(self, "_packed", _packed)
        init(self, "usage", usage)
        init(self, "children", children if children is not None else {})
        init(self, "context", context)
        init(self, "_machine", machine)
        init(self, "_trace", trace)
        init(self, "_effects", effects)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"RunResult is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"RunResult is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        trace, effects = self._derived()
        fields = (self.run_id, self.input, self.snapshot, self.events, self.usage, trace, dict(self.children), effects)
        return (_unpickled, (*fields, self.context))

    def __copy__(self) -> RunResult:
        return self

    def __repr__(self) -> str:  # compact: the events can be long (see _run_boxed)
        return (
            f"RunResult(run_id={self.run_id!r}, phase={self.snapshot.phase.value}, step={self.snapshot.step}, "
            f"events={len(self._events)}, usage={self.usage!r})"
        )

    @property
    def events(self) -> tuple[Event, ...]:
        """Every external event fed to `step`, in order."""
        if self._packed:
            object.__setattr__(self, "_events", tuple(_unpacked(item) for item in self._events))
            object.__setattr__(self, "_packed", False)
        return cast(tuple[Event, ...], self._events)

    @property
    def trace(self) -> tuple[Taken, ...]:
        """Every transition taken, in order (start's included)."""
        return self._derived()[0]

    @property
    def effects(self) -> tuple[Effect, ...]:
        """`effects[i]` is the effect `events[i]` answered."""
        return self._derived()[1]

    def _derived(self) -> tuple[tuple[Taken, ...], tuple[Effect, ...]]:
        if self._trace is None or self._effects is None:
            self._replay()
        assert self._trace is not None and self._effects is not None
        return self._trace, self._effects

    def _replay(self) -> None:
        machine = self._machine
        assert machine is not None
        step = machine.start(self.input, self.context, run_id=self.run_id)
        trace = list(step.transitions)
        effects: list[Effect] = []
        for event in self.events:
            effects.append(step.effects[0])
            step = machine.step(step.snapshot, event)
            trace.extend(step.transitions)
        if step.snapshot != self.snapshot:
            raise FsmAgentsError(
                f"{machine.name}: replaying the run's {len(self.events)} events did not reproduce its final snapshot; "
                "its step function is not pure"
            )
        object.__setattr__(self, "_trace", tuple(trace))
        object.__setattr__(self, "_effects", tuple(effects))

    @property
    def phase(self) -> Phase:
        return self.snapshot.phase

    @property
    def ok(self) -> bool:
        return self.snapshot.phase is Phase.DONE

    @property
    def output(self) -> Any:
        return self.snapshot.output

    @property
    def failure(self) -> Failure | None:
        return self.snapshot.failure


_NO_LIMITS = Limits()
_CACHE_ATTR = "_fsm_agents_runtime_cache"


def _machine_cache(machine: Machine) -> dict[Any, Any]:
    """The runtime's cache of stateless helpers for `machine` (the performer runs with default
    options share, its tool executors), kept on the machine itself (`Machine` instances have a
    `__dict__`): it goes when the machine goes, even when a cached value refers back to the
    machine, which a module-level weak-keyed cache would keep alive forever. A copy of a machine
    does not inherit its original's cache."""
    attrs = machine.__dict__
    cache: dict[Any, Any] | None = attrs.get(_CACHE_ATTR)
    if cache is None or cache.get("owner") != id(machine):
        cache = attrs[_CACHE_ATTR] = {"owner": id(machine)}
    return cache


_NO_USAGE = Usage()
_TOOLS_FINISHED_FIELDS = fields_set(ToolsFinished)
_MODEL_REPLIED_FIELDS = fields_set(ModelReplied)


def _packed(event: Event) -> Any:
    """How a live run keeps `event` (see `RunResult`): fewer objects per event, as each one a run
    holds costs time in every full GC collection while it runs and memory after."""
    # only exact types are packed, so `_unpacked` can tell them apart from events
    if type(event) is ModelReplied and not event.usage and type(event.message) is AssistantMessage:
        return event.message
    if type(event) is ToolsFinished and type(event.results) is tuple:
        results = event.results
        if len(results) == 1 and type(results[0]) is ToolResult:
            return results[0]
        return results
    return event


def _unpacked(item: Any) -> Event:
    if type(item) is AssistantMessage:
        return _made(ModelReplied, {"message": item, "usage": _NO_USAGE}, _MODEL_REPLIED_FIELDS)
    if type(item) is tuple:
        return _made(ToolsFinished, {"results": item}, _TOOLS_FINISHED_FIELDS)
    if type(item) is ToolResult:
        return _made(ToolsFinished, {"results": (item,)}, _TOOLS_FINISHED_FIELDS)
    return cast(Event, item)


def as_machine(obj: Any) -> Machine:
    """`obj` if it is a `Machine`, else its `.machine` (an `Agent`, a pattern). Raises
    `NotAMachine` (an `FsmAgentsError` and a `TypeError`) for anything else."""
    if isinstance(obj, Machine):
        return obj
    machine = getattr(obj, "machine", None)
    if isinstance(machine, Machine):
        return machine
    raise NotAMachine(f"expected a machine, an Agent or a pattern, got {type(obj).__name__}")


class _Performer:
    """Performs effects for one run (and its children)."""

    __slots__ = ("_executors", "limits", "models", "observers", "store", "tool_overrides")

    def __init__(
        self,
        models: Mapping[str, Model],
        tools: Mapping[str, Tool],
        limits: Limits,
        observers: Sequence[Observer],
        store: Store | None = None,
    ) -> None:
        self.store = store
        self.models = models
        self.tool_overrides = tools
        self.limits = limits
        self.observers = observers
        self._executors: dict[tuple[int, str], ToolExecutor] | None = None  # made on first use

    def executor(self, machine: Machine, agent: str) -> ToolExecutor:
        tools: Mapping[str, Tool] = machine.tools_for(agent)
        limits = self.limits
        if not (self.tool_overrides and self.tool_overrides.keys() & tools.keys()):
            # executors are stateless: runs of the same machine with the same limits share one
            shared = _machine_cache(machine)
            key = ("executor", agent, limits.tool_timeout, limits.max_concurrency)
            ex = shared.get(key)
            if ex is None:
                ex = shared[key] = ToolExecutor(
                    tools, default_timeout=limits.tool_timeout, max_concurrency=limits.max_concurrency
                )
            return ex
        if self._executors is None:
            self._executors = {}
        ex = self._executors.get((id(machine), agent))  # by id: a machine need not be hashable
        if ex is None:
            tools = {**tools, **{n: t for n, t in self.tool_overrides.items() if n in tools}}
            ex = ToolExecutor(tools, default_timeout=limits.tool_timeout, max_concurrency=limits.max_concurrency)
            self._executors[(id(machine), agent)] = ex
        return ex

    async def perform(self, machine: Machine, effect: Effect, run_id: str, children: dict[str, RunResult]) -> Event:
        if isinstance(effect, CallModel):
            return await self.call_model(effect)
        if isinstance(effect, RunTools):
            return ToolsFinished.model_construct(results=await self.executor(machine, effect.agent).run(effect.calls))
        if isinstance(effect, RunAgents):
            return await self.run_agents(machine, effect, run_id, children)
        raise FsmAgentsError(f"{machine.name}: the runtime does not know how to perform {type(effect).__name__}")

    async def call_model(self, effect: CallModel) -> Event:
        model = self.models[effect.agent]
        timeout = self.limits.model_timeout
        try:
            if timeout is None:
                response = await model.complete(effect.request)
            else:
                with anyio.fail_after(timeout):
                    response = await model.complete(effect.request)
        except CassetteDivergence:
            raise
        except Exception as exc:
            return _model_failed(effect.agent, exc, timeout)
        return _model_replied(response, effect.agent)

    async def run_agents(self, machine: Machine, effect: RunAgents, run_id: str, children: dict[str, RunResult]) -> Event:
        known = machine.children()
        outcomes: list[AgentOutcome | None] = [None] * len(effect.tasks)
        limit = effect.max_concurrency or self.limits.max_concurrency
        limiter = anyio.CapacityLimiter(limit) if limit else None

        async def one(i: int, task: AgentTask) -> None:
            child = known.get(task.machine)
            if child is None:
                outcomes[i] = AgentOutcome(
                    task_id=task.task_id,
                    machine=task.machine,
                    phase=Phase.FAILED,
                    failure=Failure(kind="child_failed", message=f"{machine.name} has no child machine {task.machine!r}"),
                )
                return
            child_id = f"{run_id}/{task.task_id}"
            if limiter is None:
                result = await self.run(child, task.input, child_id)
            else:
                async with limiter:
                    result = await self.run(child, task.input, child_id)
            children[task.task_id] = result
            outcomes[i] = AgentOutcome.model_construct(
                task_id=task.task_id,
                machine=task.machine,
                phase=result.phase,
                output=result.output,
                failure=result.failure,
                usage=result.usage,
                conversation=result.snapshot.conversation,
            )

        async with anyio.create_task_group() as tg:
            for i, task in enumerate(effect.tasks):
                tg.start_soon(one, i, task)
        return AgentsFinished(outcomes=tuple(o for o in outcomes if o is not None))

    async def run(self, machine: Machine, input: Any, run_id: str, context: Any = None) -> RunResult:
        if self.store is not None:  # persisted (a child of a persisted run: resumes its own log if it has one)
            return await self.run_logged(machine, input, run_id, context, run_id, resume_ok=True)
        observers = self.observers
        models = self.models
        model_timeout = self.limits.model_timeout
        _RUN_ID.set(run_id)
        # only the snapshot, its effects and the events live across the awaits below (not the
        # Step with its Taken records): every object a live run holds costs in full GC collections
        snapshot, effects, taken = machine.start(input, context, run_id=run_id)
        del taken
        events: list[Any] = []  # packed (see RunResult)
        usage = _NO_USAGE
        children: dict[str, RunResult] = {}
        finals = machine.table.finals
        executor: ToolExecutor | None = None
        executor_agent: str | None = None
        while snapshot.phase not in finals:
            if not effects:
                raise MachineStalled(f"{machine.name}: phase {snapshot.phase} at step {snapshot.step} emitted no effect")
            if len(effects) != 1:
                raise FsmAgentsError(f"{machine.name}: one effect per step is supported, got {len(effects)}")
            effect: Effect | None = effects[0]
            del effects  # not kept alive through the await
            if observers:
                _notify(observers, "on_effect", effect)
            # the two common effects are dispatched inline: one coroutine less per step
            event: Event
            if type(effect) is CallModel:
                if model_timeout is None:
                    agent, request = effect.agent, effect.request
                    if not observers:
                        effect = None  # the model holds the request; the effect need not live through the call
                    try:
                        response = await models[agent].complete(request)
                    except CassetteDivergence:
                        raise
                    except Exception as exc:
                        event = _model_failed(agent, exc, None)
                    else:
                        event = _model_replied(response, agent)
                        del response  # not kept alive through the next model call
                    del request
                else:
                    event = await self.call_model(effect)
            elif type(effect) is RunTools:
                if executor is None or effect.agent != executor_agent:
                    executor, executor_agent = self.executor(machine, effect.agent), effect.agent
                calls = effect.calls
                results: tuple[ToolResult, ...]
                if len(calls) == 1:
                    results = (await executor.run_one(calls[0]),)
                else:
                    results = await executor.run(calls)
                event = _made(ToolsFinished, {"results": results}, _TOOLS_FINISHED_FIELDS)
            else:
                assert effect is not None
                event = await self.perform(machine, effect, run_id, children)
            if observers:
                _notify(observers, "on_event", effect, event)
            if type(event) is ModelReplied or type(event) is AgentsFinished:
                usage = usage + _usage_of(event)
            events.append(_packed(event))
            snapshot, effects, taken = machine.step(snapshot, event)
            if observers:
                for t in taken:
                    _notify(observers, "on_transition", t, snapshot)
            del taken, event
        # effects and trace are not kept while running: RunResult derives them from the events
        return RunResult(
            run_id=run_id,
            input=input,
            snapshot=snapshot,
            events=tuple(events),
            usage=usage,
            children=children,
            machine=machine,
            context=context,
            _packed=True,
        )

    async def run_logged(
        self, machine: Machine, input: Any, run_id: str, context: Any, conversation_id: str, *, resume_ok: bool
    ) -> RunResult:
        """`run`, persisting to `self.store` as it goes (see `resume` for the record protocol).
        With `resume_ok`, an existing log for `conversation_id` is continued instead of refused."""
        from fsm_agents.store import _fold

        store = self.store
        assert store is not None
        log = _Log(store, conversation_id)
        records, log.seq = await log.call(_fold.resolve, store, conversation_id, must_exist=False)
        if records:
            if not resume_ok:
                raise ConcurrencyConflict(
                    conversation_id,
                    0,
                    log.seq,
                    why=f"it already exists ({log.seq} records): continue it with resume() or "
                    "Conversations.append(), or start a new one under another id",
                )
            segments = await log.call(_fold.fold, records, _machine_lookup(machine), context=context)
            return await self.continue_logged(machine, segments[-1], log)
        step = machine.start(input, context, run_id=run_id)
        await log.append([_fold.start_record(machine, run_id, input, context=context)])
        segment = _fold.Segment(0, machine, run_id, input, step)
        segment.trace.extend(step.transitions)
        return await self.continue_logged(machine, segment, log)

    async def continue_logged(self, machine: Machine, seg: Any, log: _Log) -> RunResult:
        """Drive `seg` (a `store._fold.Segment`) to a final phase, appending to `log`: a "started"
        ledger record before each effect, then event + "finished" (+ "end") in one append."""
        from fsm_agents.store import _fold

        observers = self.observers
        finals = machine.table.finals
        children: dict[str, RunResult] = {}
        step: Step = seg.step
        _RUN_ID.set(log.conversation_id)
        if step.snapshot.phase in finals and seg.end is None:
            await log.append([_fold.end_record(step)])  # a fork cut between the last event and its end record
        while step.snapshot.phase not in finals:
            snapshot, effects = step.snapshot, step.effects
            if len(effects) != 1:
                raise MachineStalled(f"{machine.name}: phase {snapshot.phase}, step {snapshot.step}: {len(effects)} effects")
            effect = effects[0]
            started = seg.open.pop(effect.key, None)
            if started is not None and not started.get("idempotent", False):
                detail = ", ".join(started.get("not_idempotent") or started.get("tools") or [type(effect).__name__])
                if "effect_uncertain" not in machine.table.accepts(snapshot.phase):
                    raise UncertainEffect(log.conversation_id, effect.key, detail)
                log_key = effect.key
                event: Event = EffectUncertain(effect_key=effect.key, detail=detail)
                log.warning_uncertain(effect.key, detail)
            else:
                if started is None:
                    tools = self.executor(machine, effect.agent).tools if isinstance(effect, RunTools) else None
                    await log.append([_fold.started_record(effect, tools)])
                if observers:
                    _notify(observers, "on_effect", effect)
                log_key = effect.key
                event = await self.perform(machine, effect, seg.run_id, children)
                if observers:
                    _notify(observers, "on_event", effect, event)
            step = machine.step(snapshot, event)
            await log.append(_fold.event_records(log_key, event, step, machine, effect))
            if type(event) is ModelReplied or type(event) is AgentsFinished:
                seg.usage = seg.usage + _usage_of(event)
            seg.events.append(event)
            seg.effects.append(effect)
            seg.trace.extend(step.transitions)
            if observers:
                for taken in step.transitions:
                    _notify(observers, "on_transition", taken, step.snapshot)
        return RunResult(
            run_id=seg.run_id,
            input=seg.input,
            snapshot=step.snapshot,
            events=tuple(seg.events),
            effects=tuple(seg.effects),
            usage=seg.usage,
            trace=tuple(seg.trace),
            children=children,
        )


class UncertainEffect(FsmAgentsError):
    """`resume` found an effect that was started but never finished, is not safe to perform again,
    and the machine has no `effect_uncertain` transition to fail with. Nothing was written;
    inspect the side effects of `detail` (the tool names) by hand."""

    def __init__(self, conversation_id: str, key: str, detail: str) -> None:
        self.conversation_id, self.key, self.detail = conversation_id, key, detail
        super().__init__(
            f"conversation {conversation_id!r}: effect {key} ({detail}) was started but never finished and may have run; "
            "it is not idempotent, so it is not run again, and the machine does not accept effect_uncertain"
        )


class _Log:
    """The append cursor of one persisted conversation (store calls go to a thread when
    `store.threaded`)."""

    __slots__ = ("conversation_id", "seq", "store")

    def __init__(self, store: Store, conversation_id: str) -> None:
        self.store, self.conversation_id, self.seq = store, conversation_id, 0

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.store.threaded:
            return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))
        return fn(*args, **kwargs)

    async def append(self, records: list[Record]) -> None:
        self.seq = await self.call(self.store.append, self.conversation_id, self.seq, records)

    def warning_uncertain(self, key: str, detail: str) -> None:
        log.warning(
            "%s: effect %s (%s) started but never finished; not idempotent → FAILED(uncertain_effect)",
            self.conversation_id,
            key,
            detail,
        )


def _machine_lookup(*machines: Machine) -> Any:
    known = {m.name: m for m in reversed(machines)}

    def lookup(name: str) -> Machine:
        found = known.get(name)
        if found is None:
            raise FsmAgentsError(
                f"the log was written by machine {name!r}, which is not among {sorted(known)}; pass that machine"
            )
        return found

    return lookup


def _unpickled(
    run_id: str,
    input: Any,
    snapshot: Snapshot[Any],
    events: tuple[Event, ...],
    usage: Usage,
    trace: tuple[Taken, ...],
    children: Mapping[str, RunResult],
    effects: tuple[Effect, ...],
    context: Any,
) -> RunResult:
    """A `RunResult` from its pickle (see `RunResult.__reduce__`)."""
    return RunResult(run_id, input, snapshot, events, usage, trace, children, effects, context=context)


def _model_failed(agent: str, exc: Exception, timeout: float | None) -> ModelFailed:
    """The event for a model call that raised `exc` (a provider bug must not kill the run: any
    exception is a model failure)."""
    if isinstance(exc, ModelError):
        return ModelFailed(error=_text_of(exc), kind=exc.kind)
    if isinstance(exc, TimeoutError):
        if timeout is None:
            return ModelFailed(error=f"TimeoutError: {_text_of(exc)}", kind="timeout")
        return ModelFailed(error=f"the model call took longer than {timeout} s", kind="timeout")
    log.warning("model for %s raised %s", agent, type(exc).__name__, exc_info=exc)
    return ModelFailed(error=f"{type(exc).__name__}: {_text_of(exc)}", kind="error")


def _model_replied(response: Any, agent: str) -> Event:
    """The event for a model's `response` to `agent`'s call; the message is attributed to `agent`
    here, once (the machine would otherwise copy it, and the event would keep the original)."""
    if type(response) is not ModelResponse and not isinstance(response, ModelResponse):
        return ModelFailed(error=f"the model returned {type(response).__name__}, not a ModelResponse", kind="malformed")
    message = response.message
    if message.agent is None:
        message = message.model_copy(update={"agent": agent})
    return _made(ModelReplied, {"message": message, "usage": response.usage}, _MODEL_REPLIED_FIELDS)


def _usage_of(event: Event) -> Usage:
    """Tokens an event reports: a model reply's, or the sum over a fan-in's children."""
    if isinstance(event, ModelReplied):
        return event.usage
    if isinstance(event, AgentsFinished):
        total = Usage()
        for outcome in event.outcomes:
            total = total + outcome.usage
        return total
    return Usage()


def _notify(observers: Sequence[Observer], hook: str, *args: Any) -> None:
    for observer in observers:
        try:
            getattr(observer, hook)(*args)
        except Exception:
            log.exception("observer %r failed in %s; ignored", observer, hook)


def _collect_models(machine: Machine, overrides: Mapping[str, Model] | None) -> dict[str, Model]:
    models: dict[str, Model] = {}
    missing: list[str] = []
    pending = [machine]
    seen: set[int] = set()
    while pending:
        m = pending.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        for name, model in m.models().items():
            chosen = (overrides or {}).get(name, model)
            if chosen is None:
                missing.append(name)
            else:
                models.setdefault(name, chosen)
        pending.extend(m.children().values())
    if missing:
        raise FsmAgentsError(
            f"no model for agent(s) {', '.join(sorted(set(missing)))}: give the Agent a model= or pass "
            f"run(..., models={{'{missing[0]}': model}})"
        )
    return models


def run(
    machine: Any,
    input: Any,
    *,
    models: Mapping[str, Model] | None = None,
    tools: Mapping[str, Tool] | Sequence[Tool] | None = None,
    limits: Limits | None = None,
    observers: Sequence[Observer] = (),
    context: Any = None,
    run_id: str | None = None,
    store: Store | None = None,
    conversation_id: str | None = None,
) -> Coroutine[Any, Any, RunResult]:
    """Run `machine` (a `Machine`, an `Agent` or a pattern) on `input` until DONE or FAILED:
    `result = await run(machine, input)`.

    - `input`: a string (one user message), a message, or messages — or what a pattern takes;
    - `models`: models by agent name, overriding each `Agent.model`;
    - `tools`: tools by name (or a list) replacing the agents' tools of the same name;
    - `limits`: `Limits`; `observers`: `Observer`s; `context`: the user's frozen model;
    - `run_id`: the conversation id, prefix of every effect key (default: a new id of 32 hex digits, a
      random prefix drawn once per process and a counter: unique without a system call per run);
    - `store`: a `fsm_agents.store.Store` to persist the run to as it goes, under
      `conversation_id` (default: `run_id`); continue it after a crash with `resume`. Children of
      a `RunAgents` effect persist under `<conversation id>/<task id>`.

    Returns a coroutine that gives the `RunResult` (`run` is a plain function returning the
    run's own coroutine: one coroutine less per live run than an `async def` wrapper). A budget,
    a model failure or an invalid output end in FAILED, not in an exception. Raises, from the
    call itself, `NotAMachine` for something that is not a machine, `InvalidInput` for a
    `context` that is not immutable or an empty `run_id` / `conversation_id`, and
    `FsmAgentsError` for a configuration error (an agent without a model); when awaited,
    `InvalidInput` for an input that is not messages, `MachineStalled` for a machine whose
    non-final step emits no effect and, with a `store`, `ConcurrencyConflict` when
    `conversation_id` already exists (use `resume`) and the store's errors
    (`fsm_agents.store.StoreError`).
    """
    m = as_machine(machine)
    check_models(models)
    check_tools(tools)
    check_limits(limits, Limits)
    check_observers(observers)
    check_store(store)
    if context is not None:
        _check_context(context)
    for name, given in (("run_id", run_id), ("conversation_id", conversation_id)):
        if given is not None and (not isinstance(given, str) or not given):
            raise InvalidInput(f"{name} must be a non-empty string or None, got {given!r}")
    collected = _collect_models(m, models)
    if tools is None and limits is None and not observers and store is None:
        performer = _shared_performer(m, collected)
    else:
        performer = _Performer(collected, _tool_map(tools), limits or _NO_LIMITS, tuple(observers), store)
    run_id = run_id or conversation_id or _new_run_id()
    if store is not None:
        return performer.run_logged(m, input, run_id, context, conversation_id or run_id, resume_ok=False)
    return performer.run(m, input, run_id, context)


# run ids: 64 random bits per process (drawn again in a forked child), then a counter; a system
# call per run (os.urandom, uuid4) costs microseconds on a virtual machine
_RUN_ID_PREFIX = os.urandom(8).hex()
_RUN_IDS = itertools.count()


def _reseed_run_ids() -> None:
    global _RUN_ID_PREFIX
    _RUN_ID_PREFIX = os.urandom(8).hex()


os.register_at_fork(after_in_child=_reseed_run_ids)


def _new_run_id() -> str:
    """A run id unique across processes: 32 hex digits, a per-process random prefix and a counter."""
    return f"{_RUN_ID_PREFIX}{next(_RUN_IDS):016x}"


def _shared_performer(machine: Machine, models: dict[str, Model]) -> _Performer:
    """The performer runs of `machine` with default options share, while its models stay the
    same objects: it holds no per-run state, and one object fewer per live run is time saved in
    every full GC collection."""
    cache = _machine_cache(machine)
    shared: _Performer | None = cache.get("performer")
    if shared is not None:
        known = shared.models
        if len(known) == len(models) and all(known.get(name) is model for name, model in models.items()):
            return shared
    shared = cache["performer"] = _Performer(models, {}, _NO_LIMITS, (), None)
    return shared


def _tool_map(tools: Mapping[str, Tool] | Sequence[Tool] | None) -> Mapping[str, Tool]:
    if tools is None:
        return {}
    if isinstance(tools, Mapping):
        return tools
    return {t.name: t for t in as_tools(tools)}


async def resume(
    conversation_id: str,
    machine: Any,
    *,
    store: Store,
    models: Mapping[str, Model] | None = None,
    tools: Mapping[str, Tool] | Sequence[Tool] | None = None,
    limits: Limits | None = None,
    observers: Sequence[Observer] = (),
    context: Any = None,
    machines: Sequence[Any] = (),
) -> RunResult:
    """Continue the persisted run `conversation_id` of `machine` (a `Machine`, an `Agent` or a
    pattern — the one that wrote the log) until DONE or FAILED; a finished run is returned as is.

    The snapshot is rebuilt by folding `machine.step` over the stored events from
    `machine.start(input, run_id=...)` (no model or tool is called for them). The pending effect
    is then performed — unless the log shows it started and never finished: a `CallModel`, a
    `RunTools` whose tools are all `idempotent=True`, or a `RunAgents` (each child resumes its own
    log `<conversation id>/<task id>`) is performed again; any other `RunTools` is not, and the
    machine gets `EffectUncertain` → FAILED(`uncertain_effect`, naming the tools). For the last
    segment of a `Conversations` conversation, `machine` is that segment's machine and `machines`
    the machines of the earlier segments; `context` is the run's context (stored for reference
    only, as JSON).

    Returns a `RunResult` whose `events` are all of the run's events, old and new. Raises
    `fsm_agents.store.ConversationNotFound`, `CorruptStore`, `UnsupportedFormatVersion`,
    `ReplayMismatch` (the machine no longer folds the log), `UncertainEffect` (a machine without
    an `effect_uncertain` transition), `ConcurrencyConflict` (another process is writing it).
    """
    from fsm_agents.store import _fold

    m = as_machine(machine)
    check_conversation_id(conversation_id)
    check_store(store, required=True)
    check_models(models)
    check_tools(tools)
    check_limits(limits, Limits)
    check_observers(observers)
    check_machines(machines)
    if context is not None:
        _check_context(context)
    log = _Log(store, conversation_id)
    records, log.seq = await log.call(_fold.resolve, store, conversation_id)
    segments = await log.call(_fold.fold, records, _machine_lookup(m, *map(as_machine, machines)), context=context)
    last = segments[-1]
    if last.machine is not m:
        raise FsmAgentsError(f"conversation {conversation_id!r} ends with a run of {last.machine.name}, not {m.name}")
    used = {} if last.final else _collect_models(m, models)  # a finished run needs no model
    performer = _Performer(used, _tool_map(tools), limits or _NO_LIMITS, tuple(observers), store)
    return await performer.continue_logged(m, last, log)


def resume_sync(conversation_id: str, machine: Any, *, backend: str = "asyncio", **kwargs: Any) -> RunResult:
    """`resume` from synchronous code, on a new event loop (raises `EventLoopRunning` inside one)."""
    return _run_boxed(partial(resume, conversation_id, machine, **kwargs), backend)


def _check_context(context: Any) -> None:
    """A snapshot holds the context, and a snapshot is immutable and hashable: so must it be."""
    try:
        hash(context)
    except TypeError as exc:
        raise InvalidInput(
            f"context must be immutable and hashable, e.g. a frozen pydantic model "
            f"(model_config = ConfigDict(frozen=True)) with tuple fields; got {type(context).__name__} ({exc})"
        ) from None


def _running_event_loop() -> str | None:
    """"asyncio" or "trio" when this thread is inside a running event loop of that library."""
    try:
        asyncio.get_running_loop()
        return "asyncio"
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")  # only a program that imported trio can be running it
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
            return "trio"
        except RuntimeError:
            pass
    return None


def _run_boxed(fn: Any, backend: str) -> RunResult:
    # The result travels in a box, not as the main task's result: CPython 3.11's asyncio.Runner
    # calls signal.getsignal(SIGINT), whose enum lookup formats repr() of the handler, i.e. of the
    # main task and its result — for a RunResult that is O(history²) (every CallModel effect
    # holds the whole conversation): 2.8 s for a 1,000-step run.
    check_backend(backend)
    library = _running_event_loop()
    if library is not None:
        raise EventLoopRunning(
            f"a synchronous entry point was called from inside a running {library} event loop, which it would "
            "block: await the async one instead (run, resume, EventDriven.emit)"
        )
    box: list[RunResult] = []

    async def main() -> None:
        box.append(await fn())

    anyio.run(main, backend=backend)
    return box[0]


def run_sync(machine: Any, input: Any, *, backend: str = "asyncio", **kwargs: Any) -> RunResult:
    """`run` from synchronous code, on a new event loop (`backend`: `"asyncio"` or `"trio"`).
    Raises `EventLoopRunning` when called from inside a running event loop."""
    return _run_boxed(partial(run, machine, input, **kwargs), backend)
