"""The one driver: the only loop in fsm_agents that turns effects into events.

    snapshot ──step──▶ (snapshot', effects) ──performer──▶ event ──step──▶ ...

`drive` takes a run from a `Position` (a fresh start, a stored log folded back, or a suspended
`RunResult`) to a final phase or a suspension. `run`, `iterate`, `stream` and `resume` are
views of it: they differ only in where the run starts (`Position`), whether it persists
(`Journal`), and who watches (`Session.sink` for stream events, `RunState.items` for steps).

- Performers are a table keyed by effect type (`PERFORMERS`: `performers.py`'s, plus
  `run_agents` here, the one that drives child machines).
- Persistence is a `Journal`: `None` in memory; with `store=`, the store's ledger journal
  (`fsm_agents.store.journal`), which owns the record order: a "started" record before an
  effect, then the event with its "finished" (and "end") record in one append. The driver
  never writes a record itself.
- Observers are told of effects, events and transitions; an observer that raises is logged and
  ignored.
- Usage limits (`Limits` tokens / requests / wall time, counted on the session's `Budget` for
  the whole run tree) are checked before each effect: when one is exceeded the run is fed
  `LimitExceeded` instead of performing it; an effect still running at the wall-time deadline
  is cancelled and answered by `LimitExceeded` (docs/architecture.md, Limits).

See docs/architecture.md, "One run".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from fsm_agents.errors import LimitUnhandled, MachineStalled, RunAborted
from fsm_agents.events import (
    AgentOutcome,
    AgentsFinished,
    AgentTask,
    AwaitInput,
    CallModel,
    CheckOutput,
    Effect,
    Event,
    LimitExceeded,
    ModelReplied,
    RunAgents,
    Step,
)
from fsm_agents.machine import Machine
from fsm_agents.runtime.guardrails import check_output, perform_call_model
from fsm_agents.runtime.observer import Observer
from fsm_agents.runtime.performers import PERFORMERS as EFFECT_PERFORMERS
from fsm_agents.runtime.performers import Performer, model_failed, model_replied, usage_of
from fsm_agents.runtime.result import Pending, RunResult, packed
from fsm_agents.runtime.session import Budget, Journal, Position, RunState, Session
from fsm_agents.runtime.streaming import (
    EffectFinished,
    EffectStarted,
    StepItem,
    Suspended,
    TransitionTaken,
)
from fsm_agents.state import Failure, Phase
from fsm_agents.tools import Tool

__all__ = ["PERFORMERS", "Journal", "Position", "RunState", "Session", "drive", "run_child"]

log = logging.getLogger("fsm_agents.runtime")


async def run_child(session: Session, parent: RunState, machine: Machine, task: AgentTask) -> RunResult:
    """Run (or continue) the child `machine` of `parent` for `task`, under `<parent id>/<task id>`."""
    run_id = f"{parent.run_id}/{task.task_id}"
    prior = session.prior.pop(run_id, None) if session.prior else None
    if prior is not None:  # an in-memory resume: a finished child stays finished
        if not prior.pending:
            return prior
        return await drive(session, machine, Position.of_result(machine, prior), None)
    journal: Journal | None = None
    position: Position | None = None
    if parent.journal is not None:
        journal, position = await parent.journal.child(machine, task, run_id)
    if position is None:
        position = Position.start(machine, task.input, run_id)
    return await drive(session, machine, position, journal)


async def run_agents(session: Session, run: RunState, effect: RunAgents) -> Event | None:
    """`RunAgents` → `AgentsFinished`: each task's child machine runs (resumes, with a store) in a
    task group, at most `effect.max_concurrency` (else `Limits.max_concurrency`) at once. When a
    child suspends, the parent suspends too (`None`), after every child has stopped."""
    known = run.machine.children()
    outcomes: list[AgentOutcome | None] = [None] * len(effect.tasks)
    limit = effect.max_concurrency or session.limits.max_concurrency
    limiter = anyio.CapacityLimiter(limit) if limit else None
    suspended = False

    async def one(i: int, task: AgentTask) -> None:
        nonlocal suspended
        child = known.get(task.machine)
        if child is None:
            outcomes[i] = AgentOutcome(
                task_id=task.task_id,
                machine=task.machine,
                phase=Phase.FAILED,
                failure=Failure(kind="child_failed", message=f"{run.machine.name} has no child machine {task.machine!r}"),
            )
            return
        if limiter is None:
            result = await run_child(session, run, child, task)
        else:
            async with limiter:
                result = await run_child(session, run, child, task)
        run.children[task.task_id] = result
        if result.pending:
            suspended = True
            return
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
    if suspended:
        return None
    return AgentsFinished(outcomes=tuple(o for o in outcomes if o is not None))


PERFORMERS: dict[type[Effect], Performer] = {
    **EFFECT_PERFORMERS,
    CallModel: perform_call_model,  # (runs the input guardrails an effect names beside the call)
    RunAgents: run_agents,
    CheckOutput: check_output,
}
"""The performer of each effect type; the driver looks effects up here by exact type."""


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
    run_id, input, context = position.run_id, position.input, position.context
    run = RunState(machine, run_id, journal, position.children, position.usage)
    run.items = items
    observers = session.observers
    sink = session.sink
    finals = machine.table.finals
    snapshot, effects, _ = position.step
    events = position.events
    usage = position.usage
    del position  # a live run keeps only what it needs: each object it holds costs in full GC collections
    models = session.models
    budget = session.budget
    if budget is not None:
        budget.begin(anyio.current_time())
    # model calls need no cancel scope, no listed tools and no instructions computed per call
    plain = (
        sink is None
        and session.limits.model_timeout is None
        and (budget is None or budget.deadline is None)
        and session.listed is None
        and not machine.dynamic_instructions()
    )
    pending: tuple[Pending, ...] = ()
    if observers:
        notify(observers, "on_run_start", run_id, machine.name)
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
        effects = ()  # not kept alive through the await: every object a live run holds costs in GC
        if budget is not None and event is None:
            event = _over_limit(budget, effect)
            if event is not None and (snapshot.phase, "limit_exceeded") not in machine.table.by_key:
                raise LimitUnhandled(
                    f"{machine.name}: {event.limit} limit exceeded, but phase {snapshot.phase} has no limit_exceeded "
                    "transition to end the run FAILED(usage_limit); add one, or run without usage limits"
                )
            if event is None and type(effect) is CallModel:
                budget.requests += 1
        if event is None:
            if observers:
                notify(observers, "on_effect", effect)
            if sink is not None:
                sink.send_nowait(EffectStarted(run.run_id, effect))
            if type(effect) is CallModel and plain and not effect.guardrails:
                # the CallModel performer's plain case, inline: one coroutine less per live run
                agent, request = effect.agent, effect.request
                if journal is None and not observers:
                    effect = None  # type: ignore[assignment]  # nothing reads it after the call: not kept alive through it
                try:
                    event = model_replied(await models[agent].complete(request), agent)
                except RunAborted:
                    raise
                except Exception as exc:
                    event = model_failed(agent, exc, None)
                del request
            elif budget is None or budget.deadline is None or type(effect) is RunAgents:
                # (children run under their own checks: a fan-out's scope would cancel them whole)
                event = await PERFORMERS[type(effect)](session, run, effect)
            else:
                event = await _before_deadline(budget, session, run, effect)
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
            usage = run.usage = usage + usage_of(event)
            if budget is not None and type(event) is ModelReplied:  # (children's replies were counted by them)
                budget.spent = budget.spent + event.usage
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
    result = RunResult(
        run_id=run_id,
        input=input,
        snapshot=snapshot,
        events=tuple(events),
        usage=usage,
        children=run.children,
        machine=machine,
        context=context,
        pending=pending,
        _packed=True,
    )
    if observers:
        notify(observers, "on_run_end", result)
    return result


def _over_limit(budget: Budget, effect: Effect) -> LimitExceeded | None:
    """The `LimitExceeded` to feed instead of performing `effect`, or None: the run tree's tokens
    over a token limit, the wall-time deadline passed, or — for a model call — no request left."""
    limits, spent = budget.limits, budget.spent
    if limits.input_tokens is not None and spent.input_tokens > limits.input_tokens:
        return LimitExceeded(limit="input_tokens", used=spent.input_tokens, maximum=limits.input_tokens)
    if limits.output_tokens is not None and spent.output_tokens > limits.output_tokens:
        return LimitExceeded(limit="output_tokens", used=spent.output_tokens, maximum=limits.output_tokens)
    total = spent.input_tokens + spent.output_tokens
    if limits.total_tokens is not None and total > limits.total_tokens:
        return LimitExceeded(limit="total_tokens", used=total, maximum=limits.total_tokens)
    if budget.deadline is not None:
        now = anyio.current_time()
        if now >= budget.deadline:
            return _wall_time(budget, now)
    if limits.requests is not None and type(effect) is CallModel and budget.requests >= limits.requests:
        return LimitExceeded(limit="requests", used=budget.requests + 1, maximum=limits.requests)
    return None


def _wall_time(budget: Budget, now: float) -> LimitExceeded:
    assert budget.started is not None and budget.limits.wall_time is not None
    return LimitExceeded(limit="wall_time", used=now - budget.started, maximum=budget.limits.wall_time)


async def _before_deadline(budget: Budget, session: Session, run: RunState, effect: Effect) -> Event | None:
    """Perform `effect` in a cancel scope that ends at the wall-time deadline: cut, it is
    answered by `LimitExceeded(wall_time)`."""
    with anyio.CancelScope(deadline=budget.deadline if budget.deadline is not None else math.inf) as scope:
        return await PERFORMERS[type(effect)](session, run, effect)
    assert scope.cancelled_caught
    return _wall_time(budget, anyio.current_time())


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
