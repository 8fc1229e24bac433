"""The store's journal: how a persisted run writes its ledger, in one place.

The driver (`fsm_agents.runtime.driver.drive`) calls a `Journal` around each effect; this one
owns the record order of a persisted conversation:

1. a `start` record when the run begins (`start`);
2. before each effect, a `started` ledger record (the effect's key, whether it may be performed
   again, the tool names) — unless the log already shows it started and never finished: then
   an idempotent effect is performed again, and a non-idempotent one is answered by
   `EffectUncertain` (→ FAILED(`uncertain_effect`)) or refused with `UncertainEffect`;
3. after the event, one atomic append of the event, its `finished` record and, when the run
   ended, the `end` record with the final snapshot's digest.

Children of a `RunAgents` effect journal under `<conversation id>/<task id>` and resume their
own log. See docs/architecture.md, "Records".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from pydantic import TypeAdapter

from fsm_agents.errors import ConcurrencyConflict, FsmAgentsError, InvalidDecision, NotSuspended, UncertainEffect
from fsm_agents.events import (
    AgentTask,
    Answer,
    Approved,
    AwaitInput,
    Decision,
    Denied,
    Effect,
    EffectUncertain,
    Event,
    RunAgents,
    Step,
)
from fsm_agents.machine import Machine
from fsm_agents.runtime import Journal, Pending, Position, RunResult, register_journal_factory
from fsm_agents.store import _fold
from fsm_agents.store._records import Record
from fsm_agents.store.base import Store
from fsm_agents.tools import Tool

__all__ = [
    "LedgerJournal",
    "PendingCall",
    "machine_lookup",
    "pending_calls",
    "record_decision",
    "stored_children",
]

log = logging.getLogger("fsm_agents.store")


class LedgerJournal:
    """The `Journal` of one persisted conversation: its append cursor (`seq`) and the effects its
    log shows started and not finished (`open`). Store calls go to a worker thread when
    `store.threaded`."""

    __slots__ = ("conversation_id", "decisions", "open", "seq", "store")

    def __init__(
        self,
        store: Store,
        conversation_id: str,
        seq: int = 0,
        open: dict[str, Mapping[str, Any]] | None = None,
        decisions: dict[str, Any] | None = None,
    ) -> None:
        self.store, self.conversation_id, self.seq = store, conversation_id, seq
        self.open: dict[str, Mapping[str, Any]] = open if open is not None else {}
        self.decisions: dict[str, Any] = decisions if decisions is not None else {}  # recorded, not yet applied

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.store.threaded:
            return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))
        return fn(*args, **kwargs)

    async def append(self, records: list[Record]) -> None:
        self.seq = await self.call(self.store.append, self.conversation_id, self.seq, records)

    async def before(self, machine: Machine, step: Step, effect: Effect, tools: Mapping[str, Tool] | None) -> Event | None:
        started = self.open.pop(effect.key, None)
        if started is None:
            await self.append([_fold.started_record(effect, tools)])
            return None
        if started.get("idempotent", False):
            return None  # safe to perform again; its "started" record is already there
        detail = ", ".join(started.get("not_idempotent") or started.get("tools") or [type(effect).__name__])
        if "effect_uncertain" not in machine.table.accepts(step.snapshot.phase):
            raise UncertainEffect(self.conversation_id, effect.key, detail)
        log.warning(
            "%s: effect %s (%s) started but never finished; not idempotent → FAILED(uncertain_effect)",
            self.conversation_id,
            effect.key,
            detail,
        )
        return EffectUncertain(effect_key=effect.key, detail=detail)

    async def after(self, machine: Machine, effect: Effect, event: Event, step: Step) -> None:
        await self.append(_fold.event_records(effect.key, event, step, machine, effect))

    async def child(self, machine: Machine, task: AgentTask, run_id: str) -> tuple[Journal, Position | None]:
        conversation_id = f"{self.conversation_id}/{task.task_id}"
        records, seq = await self.call(_fold.resolve, self.store, conversation_id, must_exist=False)
        if records:
            segments = await self.call(_fold.fold, records, machine_lookup(machine))
            return await _continued(self.store, conversation_id, seq, segments[-1])
        journal = LedgerJournal(self.store, conversation_id)
        first = machine.start(task.input, None, run_id=run_id)
        await journal.append([_fold.start_record(machine, run_id, task.input)])
        return journal, Position(run_id, task.input, first)


async def _continued(store: Store, conversation_id: str, seq: int, seg: _fold.Segment) -> tuple[LedgerJournal, Position]:
    journal = LedgerJournal(store, conversation_id, seq, dict(seg.open), dict(seg.decisions))
    if seg.final and seg.end is None:
        await journal.append([_fold.end_record(seg.step)])  # a fork cut between the last event and its end record
    return journal, Position(seg.run_id, seg.input, seg.step, None, list(seg.events), seg.usage)


def stored_children(store: Store, conversation_id: str, seg: _fold.Segment) -> dict[str, RunResult]:
    """The child runs of `seg`'s fan-outs (`RunAgents` effects), folded back from their own logs
    `<conversation id>/<task id>`, by task id (recursively: a child's children too). A task whose
    log is missing (it never started) is left out."""
    children: dict[str, RunResult] = {}
    known = seg.machine.children()
    for effect in seg.effects:
        if not isinstance(effect, RunAgents):
            continue
        for task in effect.tasks:
            child = known.get(task.machine)
            cid = f"{conversation_id}/{task.task_id}"
            if child is None:
                continue
            records, _ = _fold.resolve(store, cid, must_exist=False)
            if not records:
                continue
            last = _fold.fold(records, machine_lookup(child))[-1]
            children[task.task_id] = RunResult(
                run_id=last.run_id,
                input=last.input,
                snapshot=last.step.snapshot,
                events=tuple(last.events),
                usage=last.usage,
                trace=tuple(last.trace),
                effects=tuple(last.effects),
                children=stored_children(store, cid, last),
            )
    return children


def machine_lookup(*machines: Machine) -> Callable[[str], Machine]:
    """`name -> machine` over `machines` (the first of a name wins); an unknown name raises
    `FsmAgentsError` listing the known ones."""
    known = {m.name: m for m in reversed(machines)}

    def lookup(name: str) -> Machine:
        found = known.get(name)
        if found is None:
            raise FsmAgentsError(
                f"the log was written by machine {name!r}, which is not among {sorted(known)}; pass that machine"
            )
        return found

    return lookup


class _LedgerJournals:
    """The journal factory the runtime uses for `store=` (registered on import of the store layer)."""

    async def start(
        self, store: Any, machine: Machine, input: Any, run_id: str, context: Any, conversation_id: str
    ) -> tuple[Journal, Position]:
        journal = LedgerJournal(store, conversation_id)
        records, journal.seq = await journal.call(_fold.resolve, store, conversation_id, must_exist=False)
        if records:
            raise ConcurrencyConflict(
                conversation_id,
                0,
                journal.seq,
                why=f"it already exists ({journal.seq} records): continue it with resume() or "
                "Conversations.append(), or start a new one under another id",
            )
        position = Position.start(machine, input, run_id, context)
        await journal.append([_fold.start_record(machine, run_id, input, context=context)])
        return journal, position

    async def open(
        self, store: Any, conversation_id: str, machine: Machine, machines: Sequence[Machine], context: Any
    ) -> tuple[Journal, Position]:
        probe = LedgerJournal(store, conversation_id)
        records, seq = await probe.call(_fold.resolve, store, conversation_id)
        segments = await probe.call(_fold.fold, records, machine_lookup(machine, *machines), context=context)
        last = segments[-1]
        if last.machine is not machine:
            raise FsmAgentsError(
                f"conversation {conversation_id!r} ends with a run of {last.machine.name}, not {machine.name}"
            )
        journal, position = await _continued(store, conversation_id, seq, last)
        position.context = context
        position.children = await journal.call(stored_children, store, conversation_id, last)
        return journal, position

    async def pending(
        self, journal: Journal, machine: Machine, position: Position
    ) -> tuple[tuple[Pending, ...], dict[str, Any]]:
        """What the stored run at `position` awaits — its own `AwaitInput`, or (a fan-out that is
        still open) what its children's logs await — and the decisions already recorded for
        those calls (`fsm-agents decide`), by call id."""
        effects = position.step.effects
        if position.step.snapshot.phase in machine.table.finals or len(effects) != 1:
            return (), {}
        effect = effects[0]
        if isinstance(effect, AwaitInput) and isinstance(journal, LedgerJournal):
            stored = {cid: _DECISION.validate_python(d) for cid, d in journal.decisions.items()}
            return tuple(Pending(position.run_id, r) for r in effect.requests), stored
        if isinstance(effect, RunAgents) and isinstance(journal, LedgerJournal):
            found: list[Pending] = []
            decided: dict[str, Any] = {}
            known = machine.children()
            for task in effect.tasks:
                child = known.get(task.machine)
                conversation_id = f"{journal.conversation_id}/{task.task_id}"
                records, seq = await journal.call(_fold.resolve, journal.store, conversation_id, must_exist=False)
                if child is None or not records:
                    continue
                segments = await journal.call(_fold.fold, records, machine_lookup(child))
                child_journal, child_position = await _continued(journal.store, conversation_id, seq, segments[-1])
                more, more_decided = await self.pending(child_journal, child, child_position)
                found.extend(more)
                decided.update(more_decided)
            return tuple(found), decided
        return (), {}


@dataclass(frozen=True)
class PendingCall:
    """A tool call a stored, suspended run waits on (read from the log, no machine needed):
    the conversation that awaits it (a child of a pattern has its own, `<parent>/<task id>`),
    the call's id, tool name and JSON arguments, `kind` ("approval" or "question"), the
    question, and the decision already recorded for it, if any (as JSON)."""

    conversation_id: str
    call_id: str
    tool: str
    arguments: str
    kind: str
    question: str | None
    decision: Mapping[str, Any] | None


def pending_calls(store: Store, conversation_id: str | None = None) -> list[PendingCall]:
    """Every call that suspended runs in `store` (or in one conversation) wait on, in
    conversation order. Reads the logs only. Raises the store's errors (`CorruptStore`, ...)."""
    ids = [conversation_id] if conversation_id is not None else [c.id for c in store.conversations()]
    out: list[PendingCall] = []
    for cid in ids:
        records, _ = _fold.resolve(store, cid, must_exist=conversation_id is not None)
        waiting: dict[str, list[Mapping[str, Any]]] = {}
        decided: dict[str, Mapping[str, Any]] = {}
        for r in records:
            if r.kind == "started" and r.data.get("effect") == "AwaitInput":
                waiting[str(r.data.get("key"))] = list(r.data.get("requests") or [])
            elif r.kind == "finished":
                waiting.pop(str(r.data.get("key")), None)
                decided.clear()
            elif r.kind == "decision":
                decided[str(r.data.get("call_id"))] = r.data.get("decision") or {}
            elif r.kind == "start":
                waiting.clear()
                decided.clear()
        for requests in waiting.values():
            for q in requests:
                call_id = str(q.get("call_id"))
                out.append(
                    PendingCall(
                        cid,
                        call_id,
                        str(q.get("tool")),
                        str(q.get("arguments")),
                        str(q.get("kind")),
                        q.get("question"),
                        decided.get(call_id),
                    )
                )
    return out


def record_decision(store: Store, conversation_id: str, call_id: str, decision: Any) -> list[PendingCall]:
    """Record a human's `decision` (`Approved()`, `Denied(reason)`, `Answer(text)`) on the awaited
    call `call_id` of `conversation_id`; the next `resume` of the run applies it (once every
    awaited call is decided). Returns the calls of that conversation still undecided.

    Raises `NotSuspended` when the conversation awaits nothing, `InvalidDecision` for an unknown
    call id, a call already decided, or a decision of the wrong kind; nothing is written then.
    `ConcurrencyConflict` when another writer appended meanwhile."""
    calls = pending_calls(store, conversation_id)
    if not calls:
        raise NotSuspended(f"conversation {conversation_id!r} awaits no decision", [call_id])
    chosen = next((c for c in calls if c.call_id == call_id), None)
    if chosen is None:
        raise InvalidDecision(
            f"conversation {conversation_id!r} awaits no call {call_id!r}; it awaits {', '.join(c.call_id for c in calls)}",
            [call_id],
        )
    if chosen.decision is not None:
        raise InvalidDecision(f"call {call_id!r} is already decided ({dict(chosen.decision)})", [call_id])
    if not isinstance(decision, (Approved, Denied, Answer)):
        raise InvalidDecision(f"a decision is Approved(), Denied(reason) or Answer(text), got {type(decision).__name__}")
    if not (isinstance(decision, Denied) or (chosen.kind == "question") == isinstance(decision, Answer)):
        wanted = "Answer(text)" if chosen.kind == "question" else "Approved() or Denied(reason)"
        raise InvalidDecision(f"call {call_id!r} awaits {chosen.kind}: decide it with {wanted}", [call_id])
    _, seq = _fold.resolve(store, conversation_id)
    store.append(conversation_id, seq, [_fold.decision_record(call_id, decision)])
    return [c for c in calls if c.decision is None and c.call_id != call_id]


_DECISION: TypeAdapter[Any] = TypeAdapter(Decision)

register_journal_factory(_LedgerJournals())
