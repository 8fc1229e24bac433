"""The activities of `FsmWorkflow`: each one is the local runtime for one effect.

An activity folds the run's log from the event store (`conversation_id`: the conversation is
never in its input), checks the effect the workflow names is the one the log is at, and then
does what `fsm_agents.runtime.driver.drive` does around one effect with the store's ledger
journal (`fsm_agents.store.journal.LedgerJournal`): a "started" record, the performer
(`fsm_agents.runtime.performers`: the model call, the tool executor), the event with its
"finished" record. **The activity side writes the store**; the workflow only reads the deltas
the activities return. So the log is the same as a local `run(..., store=...)` writes (`resume`,
`fsm-agents history` / `view` read it), and the crash rules are the local ones:

- an activity retried after its worker died finds what the dead attempt wrote: a "finished"
  effect is answered from the log (not performed again); a "started" one is performed again when
  it is idempotent (a model call, idempotent tools), else answered `EffectUncertain` →
  FAILED(`uncertain_effect`) without running the tool;
- the append is optimistic (`ConcurrencyConflict` when a lost attempt still writes): the
  activity fails and its retry reads the log again.

Streaming (`EffectInput.stream`, a model call): the performer streams through a per-activity
sink; its `TextDelta` / `ToolCallDelta` items are published to the activity's own workflow as the
signal `fsm_agents.deltas`, in batches (at most one every `PUBLISH_EVERY` s, and a last one
before the activity returns). Best effort: a failed signal is logged and dropped, never the effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from fsm_agents import codec
from fsm_agents.errors import FsmAgentsError, InvalidDefinition, UncertainEffect
from fsm_agents.events import CallModel, Effect, RunTools
from fsm_agents.machine import Machine, as_machine
from fsm_agents.models.base import Model
from fsm_agents.runtime.api import collect_models
from fsm_agents.runtime.driver import PERFORMERS
from fsm_agents.runtime.result import Limits
from fsm_agents.runtime.session import RunState, Session
from fsm_agents.runtime.streaming import TextDelta, ToolCallDelta
from fsm_agents.runtime.toolsets import toolsets_of
from fsm_agents.store import _fold
from fsm_agents.store._records import Record, decode_event
from fsm_agents.store.base import Store
from fsm_agents.store.journal import LedgerJournal, machine_lookup
from fsm_agents.temporal._types import (
    ACTIVITY_JOURNAL,
    ACTIVITY_LOAD,
    ACTIVITY_PERFORM,
    ACTIVITY_START,
    SIGNAL_DELTAS,
    EffectInput,
    EffectOutput,
    LoadOutput,
    StartInput,
)

__all__ = ["Activities"]

log = logging.getLogger("fsm_agents.temporal")


def _fatal(message: str, kind: str = "FsmAgentsError") -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


@contextlib.asynccontextmanager
async def _heartbeats() -> AsyncIterator[None]:
    """Heartbeat while the activity works, when the workflow asked for a heartbeat timeout (so
    the server retries the activity on another worker soon after this one dies)."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        yield
        return
    every = max(timeout.total_seconds() / 4, 0.05)

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


PUBLISH_EVERY = 0.1  # s: at most one `fsm_agents.deltas` signal per this while a model streams


class _Deltas:
    """A perform activity's stream sink (`Session.sink`): the deltas as JSON items, until
    published. Other stream events (the driver's) do not reach it: only the performer sends."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def send_nowait(self, item: Any) -> None:
        if type(item) is TextDelta:
            self.items.append({"kind": "text", "run_id": item.run_id, "agent": item.agent, "text": item.text})
        elif type(item) is ToolCallDelta:
            self.items.append(
                {
                    "kind": "tool_call",
                    "run_id": item.run_id,
                    "agent": item.agent,
                    "index": item.index,
                    "call_id": item.call_id,
                    "name": item.name,
                    "arguments": item.arguments,
                }
            )


@contextlib.asynccontextmanager
async def _publishing(sink: _Deltas) -> AsyncIterator[None]:
    """Publish what `sink` gathers to this activity's workflow run (signal `fsm_agents.deltas`),
    every `PUBLISH_EVERY` s while the block runs and once more when it ends. A signal that fails
    is logged and its batch dropped: streaming is best effort, the reply is the activity's result."""
    info = activity.info()
    if info.workflow_id is None:  # not a workflow's activity: nobody to publish to
        yield
        return
    handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
    stop = asyncio.Event()

    async def send() -> None:
        if not sink.items:
            return
        batch, sink.items = sink.items, []
        try:
            await handle.signal(SIGNAL_DELTAS, batch)
        except Exception:
            log.warning("%s: could not publish %d deltas; dropped", info.workflow_id, len(batch), exc_info=True)

    async def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), PUBLISH_EVERY)
            await send()

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        await task  # a signal in flight completes (send never raises); the rest goes below
        await send()


def _watched(session: Session, sink: _Deltas) -> Session:
    """A copy of `session` for one activity, streaming into `sink` (activities run concurrently:
    they must not share one sink)."""
    copy = Session(session.models, session.tool_overrides, session.limits, session.observers)
    copy.listed = session.listed
    copy.deps = session.deps
    copy.sink = sink
    return copy


class Activities:
    """The activities a worker runs for `FsmWorkflow`, over `machines` (by name) and `store`.
    `models` overrides agents' models by agent name (as `run(..., models=)`)."""

    def __init__(self, machines: Sequence[Machine], store: Store, models: Mapping[str, Model] | None = None) -> None:
        self.machines = {m.name: m for m in machines}
        self.store = store
        self.sessions: dict[str, Session] = {}
        for m in machines:
            self.sessions[m.name] = Session(collect_models(m, models), {}, Limits(), ())

    # -- helpers ----------------------------------------------------------------------------------

    def machine(self, name: str, path: Sequence[str]) -> Machine:
        machine = self.machines.get(name)
        if machine is None:
            raise _fatal(
                f"machine {name!r} is not registered on this worker (it has {sorted(self.machines)}): "
                "pass it in worker(..., machines=[...])",
                "MachineNotRegistered",
            )
        for part in path:
            child = machine.children().get(part)
            if child is None:
                raise _fatal(f"{machine.name} has no child machine {part!r}")
            machine = child
        return machine

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)`, in a worker thread when the store blocks on the network."""
        if self.store.threaded:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def _fold(self, inp: EffectInput) -> tuple[Machine, list[Record], int, _fold.Segment]:
        machine = self.machine(inp.machine, inp.path)
        records, seq = await self.call(_fold.resolve, self.store, inp.conversation_id)
        if seq < inp.seq:
            raise _fatal(
                f"conversation {inp.conversation_id!r} has {seq} records, the workflow knows {inp.seq}: the store is not "
                "the one this run was written to"
            )
        segments = await self.call(_fold.fold, records, machine_lookup(machine))
        return machine, records, seq, segments[-1]

    @staticmethod
    def _done_before(records: list[Record], since: int, key: str, effect: Effect | None) -> dict[str, Any] | None:
        """The event an earlier attempt already recorded for `key` after `since`, as JSON, else None."""
        event: Record | None = None
        for r in records[since:]:
            if r.kind == "event":
                event = r
            elif r.kind == "finished" and r.data.get("key") == key and event is not None:
                return codec.dump(decode_event(event.data.get("event", {}), effect))
        return None

    # -- the activities ---------------------------------------------------------------------------

    @activity.defn(name=ACTIVITY_START)
    async def start(self, inp: StartInput) -> int:
        """Write the run's `start` record; the log's length. A retry finds it written."""
        machine = self.machine(inp.machine, inp.path)
        records, seq = await self.call(_fold.resolve, self.store, inp.conversation_id, must_exist=False)
        if records:
            first = records[0]
            if first.kind == "start" and first.data.get("run_id") == inp.run_id and len(records) == 1:
                return int(seq)
            raise _fatal(
                f"conversation {inp.conversation_id!r} already exists ({seq} records): start the workflow under another id",
                "ConcurrencyConflict",
            )
        record = _fold.start_record(machine, inp.run_id, codec.load_input(inp.input))
        appended: int = await self.call(self.store.append, inp.conversation_id, 0, [record])
        return appended

    @activity.defn(name=ACTIVITY_LOAD)
    async def load(self, inp: EffectInput) -> LoadOutput:
        """The run's start input and events (a workflow continued as new folds them again)."""
        _, records, seq, seg = await self._fold(inp)
        start = next(r for r in records if r.kind == "start" and r.seq == seg.start_seq)
        return LoadOutput(seg.run_id, dict(start.data.get("input") or {}), [codec.dump(e) for e in seg.events], seq)

    @activity.defn(name=ACTIVITY_PERFORM)
    async def perform(self, inp: EffectInput) -> EffectOutput:
        """Perform the effect at `inp.key` (a model call or a reply's tool calls) and record it."""
        machine, records, seq, seg = await self._fold(inp)
        effect = seg.step.effects[0] if seg.step.effects else None
        if seq > inp.seq:  # an earlier attempt wrote: its event, when it finished, is the answer
            found = self._done_before(records, inp.seq, inp.key, seg.effects[-1] if seg.effects else None)
            if found is not None:
                return EffectOutput(seq, found)
        if effect is None or effect.key != inp.key:
            raise _fatal(
                f"conversation {inp.conversation_id!r} is at effect {getattr(effect, 'key', None)}, the workflow asks for "
                f"{inp.key}: the machine's code changed, or the log is another run's"
            )
        session = self.sessions[inp.machine]
        journal = LedgerJournal(self.store, inp.conversation_id, seq, dict(seg.open), dict(seg.decisions))
        tools = session.executor(machine, effect.agent).tools if isinstance(effect, RunTools) else None
        try:
            event = await journal.before(machine, seg.step, effect, tools)
        except UncertainEffect as exc:
            raise _fatal(str(exc), "UncertainEffect") from None
        if event is None:
            run = RunState(machine, seg.run_id, journal, {}, seg.usage)
            if inp.stream and type(effect) is CallModel:
                sink = _Deltas()
                async with _heartbeats(), _publishing(sink):
                    event = await PERFORMERS[type(effect)](_watched(session, sink), run, effect)
            else:
                async with _heartbeats():
                    event = await PERFORMERS[type(effect)](session, run, effect)  # the driver's own table
            if event is None:
                raise _fatal(f"the performer of {type(effect).__name__} gave no event")
        step = machine.step(seg.step.snapshot, event)
        await journal.after(machine, effect, event, step)
        return EffectOutput(journal.seq, codec.dump(event))

    @activity.defn(name=ACTIVITY_JOURNAL)
    async def journal(self, inp: EffectInput) -> EffectOutput:
        """Record the start (`mode="begin"`) or the event (`"end"`) of an effect the workflow
        performs itself (children, a human's decisions)."""
        machine, records, seq, seg = await self._fold(inp)
        if inp.mode == "begin":
            if any(r.kind == "started" and r.data.get("key") == inp.key for r in records[inp.seq :]):
                return EffectOutput(seq)
            effect = seg.step.effects[0] if seg.step.effects else None
            if effect is None or effect.key != inp.key:
                raise _fatal(f"conversation {inp.conversation_id!r} is not at effect {inp.key}")
            return EffectOutput(await self.call(self.store.append, inp.conversation_id, seq, [_fold.started_record(effect)]))
        if inp.mode != "end" or inp.event is None:
            raise _fatal(f"journal mode {inp.mode!r} without an event")
        if any(r.kind == "finished" and r.data.get("key") == inp.key for r in records[inp.seq :]):
            return EffectOutput(seq)
        effect = seg.step.effects[0] if seg.step.effects else None
        if effect is None or effect.key != inp.key:
            raise _fatal(f"conversation {inp.conversation_id!r} is not at effect {inp.key}")
        event = codec.load_event(inp.event)
        step = machine.step(seg.step.snapshot, event)
        records_out = _fold.event_records(effect.key, event, step, machine, effect)
        return EffectOutput(await self.call(self.store.append, inp.conversation_id, seq, records_out))


def registered(machines: Sequence[Any]) -> list[Machine]:
    """`machines` as machines (an `Agent` or a pattern is turned into its machine); two of one
    name raise `FsmAgentsError`; a machine with toolsets (MCP servers), which a worker does not
    open yet, raises `InvalidDefinition`."""
    out = [as_machine(m) for m in machines]
    for m in out:
        found = toolsets_of(m)
        if found:
            listed = ", ".join(sorted({f"{agent}: {t.name}" for _, agent, ts in found for t in ts}))
            raise InvalidDefinition(
                f"{m.name} has toolsets ({listed}): Temporal workers do not open toolsets (MCP servers) yet; "
                "run it with fsm_agents.run, or give its agents plain tools"
            )
    names = [m.name for m in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FsmAgentsError(f"two machines are named {', '.join(twice)}: a worker runs machines by name")
    return out
