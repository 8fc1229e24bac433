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

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio

from fsm_agents.errors import CassetteDivergence, FsmAgentsError, MachineStalled
from fsm_agents.events import (
    AgentOutcome,
    AgentsFinished,
    AgentTask,
    CallModel,
    Effect,
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
from fsm_agents.state import Failure, Phase, Snapshot, Usage
from fsm_agents.tools import Tool, ToolExecutor

__all__ = ["Limits", "RunResult", "as_machine", "run", "run_sync"]

log = logging.getLogger("fsm_agents.runtime")


@dataclass(frozen=True, slots=True)
class Limits:
    """Run-wide limits (seconds for timeouts).

    - `model_timeout`: wall time for one model call, retries included → `ModelFailed(kind="timeout")`;
    - `tool_timeout`: default per-attempt timeout for tools that set none;
    - `max_concurrency`: tool calls of one reply / children of one fan-out running at once.
    """

    model_timeout: float | None = None
    tool_timeout: float | None = None
    max_concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended: the final `snapshot`, every external `event` fed to `step` (with the
    start input, enough to replay the run), the `effect` each event answered, total token
    `usage`, the `trace` of transitions, and the `children` runs by task id."""

    run_id: str
    input: Any
    snapshot: Snapshot[Any]
    events: tuple[Event, ...]
    usage: Usage
    trace: tuple[Taken, ...]
    children: Mapping[str, RunResult] = field(default_factory=dict)
    effects: tuple[Effect, ...] = ()  # effects[i] is the effect events[i] answered

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


def as_machine(obj: Any) -> Machine:
    """`obj` if it is a `Machine`, else its `.machine` (an `Agent`, a pattern). Raises
    `TypeError` for anything else."""
    if isinstance(obj, Machine):
        return obj
    machine = getattr(obj, "machine", None)
    if isinstance(machine, Machine):
        return machine
    raise TypeError(f"expected a machine, an Agent or a pattern, got {type(obj).__name__}")


class _Performer:
    """Performs effects for one run (and its children)."""

    def __init__(
        self,
        machine: Machine,
        models: Mapping[str, Model],
        tools: Mapping[str, Tool],
        limits: Limits,
        observers: Sequence[Observer],
    ) -> None:
        self.machine = machine
        self.models = models
        self.tool_overrides = tools
        self.limits = limits
        self.observers = observers
        self._executors: dict[str, ToolExecutor] = {}

    def executor(self, machine: Machine, agent: str) -> ToolExecutor:
        key = f"{machine.name}\0{agent}"
        ex = self._executors.get(key)
        if ex is None:
            tools: Mapping[str, Tool] = machine.tools_for(agent)
            if self.tool_overrides.keys() & tools.keys():
                tools = {**tools, **{n: t for n, t in self.tool_overrides.items() if n in tools}}
            ex = ToolExecutor(tools, default_timeout=self.limits.tool_timeout, max_concurrency=self.limits.max_concurrency)
            self._executors[key] = ex
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
        except ModelError as exc:
            return ModelFailed(error=str(exc), kind=exc.kind)
        except CassetteDivergence:
            raise
        except TimeoutError:
            return ModelFailed(error=f"the model call took longer than {timeout} s", kind="timeout")
        except Exception as exc:  # a provider bug must not kill the run: it is a model failure
            log.warning("model for %s raised %s", effect.agent, type(exc).__name__, exc_info=True)
            return ModelFailed(error=f"{type(exc).__name__}: {exc}", kind="error")
        if not isinstance(response, ModelResponse):
            return ModelFailed(error=f"the model returned {type(response).__name__}, not a ModelResponse", kind="malformed")
        return ModelReplied.model_construct(message=response.message, usage=response.usage)

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
        observers = self.observers
        step: Step = machine.start(input, context, run_id=run_id)
        events: list[Event] = []
        performed: list[Effect] = []
        trace: list[Taken] = list(step.transitions)
        usage = Usage()
        children: dict[str, RunResult] = {}
        finals = machine.table.finals
        while step.snapshot.phase not in finals:
            snapshot, effects = step.snapshot, step.effects
            if not effects:
                raise MachineStalled(f"{machine.name}: phase {snapshot.phase} at step {snapshot.step} emitted no effect")
            if len(effects) != 1:
                raise FsmAgentsError(f"{machine.name}: one effect per step is supported, got {len(effects)}")
            effect = effects[0]
            if observers:
                _notify(observers, "on_effect", effect)
            # the two common effects are dispatched inline: one coroutine frame less per step
            if type(effect) is CallModel:
                event = await self.call_model(effect)
            elif type(effect) is RunTools:
                results = await self.executor(machine, effect.agent).run(effect.calls)
                event = ToolsFinished.model_construct(results=results)
            else:
                event = await self.perform(machine, effect, run_id, children)
            if observers:
                _notify(observers, "on_event", effect, event)
            if type(event) is ModelReplied and event.usage:
                usage = usage + event.usage
            events.append(event)
            performed.append(effect)
            step = machine.step(snapshot, event)
            trace.extend(step.transitions)
            if observers:
                for taken in step.transitions:
                    _notify(observers, "on_transition", taken, step.snapshot)
        return RunResult(
            run_id=run_id,
            input=input,
            snapshot=step.snapshot,
            events=tuple(events),
            effects=tuple(performed),
            usage=usage,
            trace=tuple(trace),
            children=children,
        )


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


async def run(
    machine: Any,
    input: Any,
    *,
    models: Mapping[str, Model] | None = None,
    tools: Mapping[str, Tool] | Sequence[Tool] | None = None,
    limits: Limits | None = None,
    observers: Sequence[Observer] = (),
    context: Any = None,
    run_id: str | None = None,
) -> RunResult:
    """Run `machine` (a `Machine`, an `Agent` or a pattern) on `input` until DONE or FAILED.

    - `input`: a string (one user message), a message, or messages — or what a pattern takes;
    - `models`: models by agent name, overriding each `Agent.model`;
    - `tools`: tools by name (or a list) replacing the agents' tools of the same name;
    - `limits`: `Limits`; `observers`: `Observer`s; `context`: the user's frozen model;
    - `run_id`: the conversation id (default: a random UUID), prefix of every effect key.

    Returns a `RunResult`. A budget, a model failure or an invalid output end in FAILED, not in
    an exception. Raises `FsmAgentsError` for a configuration error (an agent without a model)
    and `MachineStalled` for a machine whose non-final step emits no effect.
    """
    m = as_machine(machine)
    tool_map: Mapping[str, Tool]
    if tools is None:
        tool_map = {}
    elif isinstance(tools, Mapping):
        tool_map = tools
    else:
        tool_map = {t.name: t for t in tools}
    performer = _Performer(m, _collect_models(m, models), tool_map, limits or Limits(), tuple(observers))
    return await performer.run(m, input, run_id or uuid.uuid4().hex, context)


def run_sync(machine: Any, input: Any, *, backend: str = "asyncio", **kwargs: Any) -> RunResult:
    """`run` from synchronous code, on a new event loop (`backend`: `"asyncio"` or `"trio"`).
    Must not be called from inside a running event loop."""
    return anyio.run(partial(run, machine, input, **kwargs), backend=backend)
