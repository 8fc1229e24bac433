"""The entry points: `run`, `iterate`, `stream`, `resume` — four views of the one driver.

    result = await run(agent, "question")                     # to the end (or a suspension)
    async with iterate(agent, "question") as r:               # one StepItem per step
        async for item in r: ...
    async for ev in stream(agent, "question"): ...            # deltas, transitions, effects, Finished
    result = await resume(result, agent, decisions={...})     # after a human decided

See docs/architecture.md, "Open runs" and "Suspension".
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from fsm_agents._arguments import (
    check_conversation_id,
    check_limits,
    check_machines,
    check_models,
    check_observers,
    check_store,
    check_tools,
)
from fsm_agents.errors import FsmAgentsError, InvalidDecision, InvalidInput, NotSuspended
from fsm_agents.events import Answer, Approved, Denied
from fsm_agents.machine import Machine, as_machine
from fsm_agents.models.base import Model
from fsm_agents.runtime.driver import Journal, Position, Session, drive
from fsm_agents.runtime.observer import Observer
from fsm_agents.runtime.performers import check_decision_kinds
from fsm_agents.runtime.result import Limits, Pending, RunResult
from fsm_agents.runtime.streaming import Channel, Finished, StepItem, StreamEvent
from fsm_agents.runtime.toolsets import toolsets_of, toolsets_opened
from fsm_agents.tools import Tool, as_tools

__all__ = ["JournalFactory", "iterate", "register_journal_factory", "resume", "run", "stream"]

_NO_LIMITS = Limits()
Decision = Approved | Denied | Answer


class JournalFactory(Protocol):
    """How the runtime gets a `Journal` for a store without importing the store layer (which sits
    above it): `fsm_agents.store` registers one when it is imported.

    - `start(store, machine, input, run_id, context, conversation_id)`: a new persisted run
      (raises `ConcurrencyConflict` when the conversation exists);
    - `open(store, conversation_id, machine, machines, context)`: a stored run folded back, as
      `(journal, position, machine of its last segment)`.
    """

    async def start(
        self, store: Any, machine: Machine, input: Any, run_id: str, context: Any, conversation_id: str
    ) -> tuple[Journal, Position]: ...

    async def open(
        self, store: Any, conversation_id: str, machine: Machine, machines: Sequence[Machine], context: Any
    ) -> tuple[Journal, Position]: ...

    async def pending(
        self, journal: Journal, machine: Machine, position: Position
    ) -> tuple[tuple[Pending, ...], dict[str, Any]]: ...


_journals: list[JournalFactory] = []


def register_journal_factory(factory: JournalFactory) -> None:
    """Install the store layer's journal factory (called by `fsm_agents.store` on import)."""
    _journals[:] = [factory]


def _journal_factory(store: Any) -> JournalFactory:
    if not _journals:
        raise InvalidInput(
            f"store must be a fsm_agents.store Store (MemoryStore, SQLiteStore, PostgresStore), got {type(store).__name__}"
        )
    if not all(callable(getattr(store, name, None)) for name in ("append", "load")):
        raise InvalidInput(
            f"store must be a fsm_agents.store Store (MemoryStore, SQLiteStore, PostgresStore), got {type(store).__name__}"
        )
    return _journals[0]


# run ids: 64 random bits per process (drawn again in a forked child), then a counter; a system
# call per run (os.urandom, uuid4) costs microseconds on a virtual machine
_RUN_ID_PREFIX = os.urandom(8).hex()
_RUN_IDS = itertools.count()


def _reseed_run_ids() -> None:
    global _RUN_ID_PREFIX
    _RUN_ID_PREFIX = os.urandom(8).hex()


os.register_at_fork(after_in_child=_reseed_run_ids)


def new_run_id() -> str:
    """A run id unique across processes: 32 hex digits, a per-process random prefix and a counter."""
    return f"{_RUN_ID_PREFIX}{next(_RUN_IDS):016x}"


def _run_id(run_id: str | None, conversation_id: str | None) -> str:
    return run_id or conversation_id or new_run_id()


def collect_models(machine: Machine, overrides: Mapping[str, Model] | None) -> dict[str, Model]:
    """The model of every agent `machine` (and its children) runs, `overrides` first. Raises
    `FsmAgentsError` naming the agents without one."""
    models: dict[str, Model] = {}
    missing: list[str] = []
    stack = [machine]
    seen: set[int] = set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        for name, model in m.models().items():
            chosen = (overrides or {}).get(name, model)
            if chosen is None:
                missing.append(name)
            else:
                models.setdefault(name, chosen)
        stack.extend(m.children().values())
    if missing:
        raise FsmAgentsError(
            f"no model for agent(s) {', '.join(sorted(set(missing)))}: give the Agent a model= or pass "
            f"run(..., models={{'{missing[0]}': model}})"
        )
    return models


def check_context(context: Any) -> None:
    """A snapshot holds the context, and a snapshot is immutable and hashable: so must it be."""
    try:
        hash(context)
    except TypeError as exc:
        raise InvalidInput(
            f"context must be immutable and hashable, e.g. a frozen pydantic model "
            f"(model_config = ConfigDict(frozen=True)) with tuple fields; got {type(context).__name__} ({exc})"
        ) from None


def _tool_map(tools: Mapping[str, Tool] | Sequence[Tool] | None) -> Mapping[str, Tool]:
    if tools is None:
        return {}
    if isinstance(tools, Mapping):
        return tools
    return {t.name: t for t in as_tools(tools)}


def _check_options(models: Any, tools: Any, limits: Any, observers: Any) -> None:
    """Typed errors for options of the wrong kind (see `fsm_agents._arguments`)."""
    check_models(models)
    check_tools(tools)
    check_limits(limits, Limits)
    check_observers(observers)


class _Prepared:
    """A run's arguments checked, its session made, its position and journal not yet opened."""

    __slots__ = ("context", "conversation_id", "input", "machine", "run_id", "session", "store")

    def __init__(
        self,
        machine: Any,
        input: Any,
        models: Any,
        tools: Any,
        limits: Any,
        observers: Any,
        context: Any,
        run_id: Any,
        store: Any,
        conversation_id: Any,
        deps: Any = None,
    ) -> None:
        self.machine = m = as_machine(machine)
        if models is not None or tools is not None or limits is not None or observers != ():
            _check_options(models, tools, limits, observers)  # (the defaults need no check)
        if store is not None:
            check_store(store)
        if context is not None:
            check_context(context)
        for name, given in (("run_id", run_id), ("conversation_id", conversation_id)):
            if given is not None and (not isinstance(given, str) or not given):
                raise InvalidInput(f"{name} must be a non-empty string or None, got {given!r}")
        if store is not None:
            _journal_factory(store)
        collected = collect_models(m, models)
        if tools is None and limits is None and not observers and deps is None and not toolsets_of(m):
            self.session = shared_session(m, collected)
        else:
            self.session = Session(collected, _tool_map(tools), limits or _NO_LIMITS, tuple(observers))
            self.session.deps = deps
        self.input, self.context, self.store = input, context, store
        self.run_id = _run_id(run_id, conversation_id)
        self.conversation_id = conversation_id or self.run_id

    async def open(self) -> tuple[Position, Journal | None]:
        if self.store is None:
            return Position.start(self.machine, self.input, self.run_id, self.context), None
        journal, position = await _journal_factory(self.store).start(
            self.store, self.machine, self.input, self.run_id, self.context, self.conversation_id
        )
        return position, journal


_SESSION_ATTR = "_fsm_agents_shared_session"


def shared_session(machine: Machine, models: dict[str, Model]) -> Session:
    """The session plain runs of `machine` share (default options, no watcher): it holds no
    per-run state, only the models and the tool executors, and one object fewer per live run is
    time saved in every full GC collection. Kept on the machine itself, so it goes with it; made
    again when the machine's models change."""
    attrs = machine.__dict__
    found: Session | None = attrs.get(_SESSION_ATTR)
    if found is not None:
        known = found.models
        if len(known) == len(models) and all(known.get(name) is model for name, model in models.items()):
            return found
    found = attrs[_SESSION_ATTR] = Session(models, {}, _NO_LIMITS, ())
    return found


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
    store: Any = None,
    conversation_id: str | None = None,
    deps: Any = None,
) -> RunResult:
    """Run `machine` (a `Machine`, an `Agent` or a pattern) on `input` until DONE or FAILED, or
    until a tool call needs a human (`result.status == "suspended"`; see `resume`).

    - `input`: a string (one user message), a message, or messages — or what a pattern takes;
    - `models`: models by agent name, overriding each `Agent.model`;
    - `tools`: tools by name (or a list) replacing the agents' tools of the same name;
    - `limits`: `Limits`; `observers`: `Observer`s; `context`: the user's frozen model;
    - `run_id`: the conversation id, prefix of every effect key (default: a new id of 32 hex
      digits, a random prefix drawn once per process and a counter);
    - `store`: a `fsm_agents.store.Store` to persist the run to as it goes, under
      `conversation_id` (default: `run_id`); continue it after a crash with `resume`. Children of
      a `RunAgents` effect persist under `<conversation id>/<task id>`;
    - `deps`: anything the tools, dynamic instructions and guardrails need (a client, a pool, a
      stateful API object); each gets it as `ctx.deps` of a `RunContext` first parameter. It is
      never stored or copied: pass it again to `resume`.

    A budget, a model failure or an invalid output end in FAILED, not in an exception. Raises
    `NotAMachine` for something that is not a machine; `InvalidInput` for an input that is not
    messages, a `context` that is not immutable, an empty `run_id` / `conversation_id`, and
    `limits`, `tools`, `observers` or `store` of the wrong type; `FsmAgentsError` for an agent
    without a model; `MachineStalled` for a machine whose non-final step asks for no effect;
    with a `store`, `ConcurrencyConflict` when `conversation_id` already exists (use `resume`)
    and the store's errors (`fsm_agents.store.StoreError`).
    """
    prepared = _Prepared(machine, input, models, tools, limits, observers, context, run_id, store, conversation_id, deps)
    session, m, rid = prepared.session, prepared.machine, prepared.run_id
    if toolsets_of(m):
        position, journal = await prepared.open()
        del prepared
        return await drive_with_toolsets(session, m, position, journal)
    if store is None:  # no local holds the start position or `prepared` while the run goes
        del prepared
        return await drive(session, m, Position.start(m, input, rid, context), None)
    position, journal = await prepared.open()
    del prepared
    return await drive(session, m, position, journal)


async def drive_with_toolsets(
    session: Session, machine: Machine, position: Position, journal: Journal | None, items: Any = None
) -> RunResult:
    """`drive`, with the toolsets of `machine` (and its children) open for the run: their tools
    listed into `session` first, and the toolsets left when the run ends, in this task (see
    `fsm_agents.runtime.toolsets`). A run that is already over opens none."""
    if not toolsets_of(machine) or position.step.snapshot.phase in machine.table.finals:
        return await drive(session, machine, position, journal, items)
    async with toolsets_opened(session, machine):
        return await drive(session, machine, position, journal, items)


class OpenRun:
    """An open run (`iterate`): `async for item in run` gives one `StepItem` per step taken. The
    driver performs the next effect only when the caller asks for the next item, so a caller that
    stops early leaves nothing half-done behind its last item. `result` is the `RunResult` once
    the iteration ended. Leaving the `async with` block early cancels the run (its children
    too); with a store it can be continued with `resume`."""

    def __init__(self) -> None:
        self._go_send, self._go_receive = anyio.create_memory_object_stream[None](0)
        self._item_send, self._item_receive = anyio.create_memory_object_stream[StepItem](0)
        self.result: RunResult | None = None

    # driver side (see `drive`'s `items`) ------------------------------------------------------
    async def turn(self) -> None:
        """Wait until the caller asks for the next item."""
        await self._go_receive.receive()

    async def send(self, item: StepItem) -> None:
        await self._item_send.send(item)

    def close(self) -> None:
        self._go_receive.close()
        self._item_send.close()

    # caller side -----------------------------------------------------------------------------
    def __aiter__(self) -> OpenRun:
        return self

    async def __anext__(self) -> StepItem:
        try:
            await self._go_send.send(None)
            return await self._item_receive.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise StopAsyncIteration from None


@asynccontextmanager
async def iterate(machine: Any, input: Any, **options: Any) -> AsyncIterator[OpenRun]:
    """Open a run and step through it: `async with iterate(agent, "q") as r: async for item in r:`.

    Takes `run`'s options. Each item is a `StepItem(run_id, event, transitions, effects,
    snapshot)` of the top-level run (a pattern's children show in its `AgentsFinished` event;
    `stream` shows their steps). Raises what `run` raises, when the block is entered.
    """
    prepared = _Prepared(machine, input, **_run_options(options))
    position, journal = await prepared.open()
    opened = OpenRun()

    async def driver() -> None:
        try:
            opened.result = await drive_with_toolsets(prepared.session, prepared.machine, position, journal, opened)
        finally:
            opened.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(driver)
        try:
            yield opened
        finally:
            if opened.result is None:
                tg.cancel_scope.cancel()
            opened._go_send.close()
            opened._item_receive.close()


def _run_options(options: dict[str, Any]) -> dict[str, Any]:
    known = ("models", "tools", "limits", "observers", "context", "run_id", "store", "conversation_id", "deps")
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidInput(f"unknown option(s) {', '.join(unknown)}; the options are {', '.join(known)}")
    values = {name: options.get(name) for name in known}
    values["observers"] = options.get("observers", ())
    return values


class RunStream:
    """The events of a run as it goes (`stream`): `TextDelta` / `ToolCallDelta` while a model
    writes, `EffectStarted` / `EffectFinished`, `TransitionTaken`, `Suspended`, and last
    `Finished(result)` — the top-level run's and its children's (tagged by `run_id`).

    `async for ev in stream(...)` runs it to the end. To stop early, use it as a context manager:
    `async with stream(...) as events: async for ev in events: ... break` — leaving the block
    cancels the run (and its children). `result` is the `RunResult` once finished.
    """

    def __init__(self, prepared: _Prepared) -> None:
        self._prepared = prepared
        self._tg: TaskGroup | None = None
        self._receive: Channel | None = None
        self.result: RunResult | None = None

    async def __aenter__(self) -> RunStream:
        prepared = self._prepared
        position, journal = await prepared.open()
        channel = Channel()
        session = prepared.session
        if session.sink is None and session is prepared.machine.__dict__.get(_SESSION_ATTR):
            session = prepared.session = Session(session.models, {}, _NO_LIMITS, ())  # a watched run has its own
        session.sink = channel
        self._receive = channel
        self._tg = tg = anyio.create_task_group()
        await tg.__aenter__()

        async def driver() -> None:
            try:
                result = await drive_with_toolsets(prepared.session, prepared.machine, position, journal)
                self.result = result
                channel.send_nowait(Finished(result.run_id, result))
            finally:
                channel.close()

        tg.start_soon(driver)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None and self._receive is not None
        if self.result is None:
            self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._receive.close()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._receive is not None:
            return self._receive
        return self._run_through()

    async def _run_through(self) -> AsyncIterator[StreamEvent]:
        async with self:
            assert self._receive is not None
            async for batch in self._receive.batches():  # one await per batch, not per event
                while batch:
                    yield batch.popleft()


def stream(machine: Any, input: Any, **options: Any) -> RunStream:
    """Watch a run as it goes: `async for ev in stream(agent, "q"): ...` (see `RunStream`).

    Takes `run`'s options. Model text and tool-call deltas come from the models'
    `stream_complete` (OpenAI-compatible, Anthropic, the local model); a model without it sends
    none (its reply shows in `EffectFinished`). Raises what `run` raises, at the call.
    """
    return RunStream(_Prepared(machine, input, **_run_options(options)))


async def resume(
    target: Any,
    machine: Any,
    *,
    store: Any = None,
    decisions: Mapping[str, Decision] | None = None,
    models: Mapping[str, Model] | None = None,
    tools: Mapping[str, Tool] | Sequence[Tool] | None = None,
    limits: Limits | None = None,
    observers: Sequence[Observer] = (),
    context: Any = None,
    machines: Sequence[Any] = (),
    deps: Any = None,
) -> RunResult:
    """Continue a run: `target` is a conversation id with `store=` (a run persisted by `run`, after
    a crash or a suspension), or a suspended `RunResult` (in memory).

    `decisions` maps each awaited call id (`result.pending[i].call_id`) to `Approved()`,
    `Denied(reason)` or `Answer(text)`; they are fed to the machine as one `InputReceived`
    event. A denial is the call's error result, fed back to the model; approved calls run once,
    also across a crash after the decision was stored.

    From a store, the snapshot is rebuilt by folding `machine.step` over the stored events (no
    model or tool is called for them); an effect the log shows started and never finished is
    performed again when it is idempotent (a `CallModel`, idempotent tools, a `RunAgents`: each
    child resumes its own log), else the machine gets `EffectUncertain` →
    FAILED(`uncertain_effect`). A finished run is returned as is. For the last segment of a
    `Conversations` conversation, `machine` is that segment's machine and `machines` the
    machines of the earlier segments. `deps` are the run's dependencies, as for `run` (they are
    never stored: give them again).

    Raises `InvalidDecision` (unknown id, an awaited call left undecided, a wrong kind of
    decision) and `NotSuspended` (decisions for a run that awaits none) before anything is
    written; from a store `ConversationNotFound`, `CorruptStore`, `UnsupportedFormatVersion`,
    `ReplayMismatch` (the machine no longer folds the log), `UncertainEffect` (a machine without
    an `effect_uncertain` transition), `ConcurrencyConflict` (another process is writing it).
    """
    m = as_machine(machine)
    _check_options(models, tools, limits, observers)
    check_machines(machines)
    if context is not None:
        check_context(context)
    if decisions is not None and not isinstance(decisions, Mapping):
        raise InvalidInput(
            "decisions must be a dict of call id -> Approved() | Denied(reason) | Answer(text), "
            f"got {type(decisions).__name__}"
        )
    given = dict(decisions) if decisions is not None else None
    journal: Journal | None = None
    if isinstance(target, RunResult):
        if store is not None:
            raise InvalidInput("resume(result, ...) continues a run in memory: give the conversation id with store=")
        position = Position.of_result(m, target)
        pending = target.pending
        prior = _flatten_children(target)
    else:
        if store is None:
            raise InvalidInput(
                f"resume needs a suspended RunResult, or a conversation id with store=; got {type(target).__name__}"
            )
        check_conversation_id(target)
        check_store(store, required=True)
        factory = _journal_factory(store)
        found_journal, position = await factory.open(store, target, m, [as_machine(x) for x in machines], context)
        journal = found_journal
        pending, stored = await factory.pending(journal, m, position)
        prior = {}
        if stored:  # decisions recorded while suspended (fsm-agents decide) join the given ones
            twice = sorted(set(stored) & set(given or {}))
            if twice:
                raise InvalidDecision(f"call(s) {', '.join(twice)} were already decided", twice)
            merged = {**stored, **(given or {})}
            if given is not None or set(merged) >= {p.call_id for p in pending}:
                given = merged
    if given is not None:
        if not pending:
            raise NotSuspended(
                f"run {position.run_id!r} awaits no decision (it is {position.step.snapshot.phase}); "
                "decisions go to a run whose status is 'suspended'",
                list(given),
            )
        check_decision_kinds(pending, given)
    elif pending and isinstance(target, RunResult):
        raise InvalidInput(
            f"run {position.run_id!r} is suspended: resume it with decisions for {', '.join(p.call_id for p in pending)}"
        )
    finals = m.table.finals
    used = {} if position.step.snapshot.phase in finals else collect_models(m, models)
    session = Session(used, _tool_map(tools), limits or _NO_LIMITS, tuple(observers))
    session.deps = deps
    session.decisions = given
    session.prior = prior
    return await drive_with_toolsets(session, m, position, journal)


def _flatten_children(result: RunResult) -> dict[str, RunResult]:
    out: dict[str, RunResult] = {}
    stack = list(result.children.values())
    while stack:
        child = stack.pop()
        out[child.run_id] = child
        stack.extend(child.children.values())
    return out
