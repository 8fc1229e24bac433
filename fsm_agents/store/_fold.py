"""Rebuild runs from a log: resolve forks, split into segments, fold `step` over the events.

Pure apart from `resolve` (which reads the store): no model or tool is called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fsm_agents.events import AwaitInput, Effect, Event, ModelReplied, RunAgents, RunTools, Step, Taken
from fsm_agents.machine import Machine
from fsm_agents.state import Usage, messages_from
from fsm_agents.store._records import (
    ConversationNotFound,
    CorruptStore,
    Record,
    ReplayMismatch,
    StoreError,
    decode_event,
    decode_input,
    encode_event,
    encode_input,
    snapshot_digest,
)
from fsm_agents.store.base import Store

__all__ = [
    "Segment",
    "decision_record",
    "effect_meta",
    "end_record",
    "event_records",
    "fold",
    "resolve",
    "start_record",
    "started_record",
]

MAX_FORK_DEPTH = 100


def resolve(store: Store, conversation_id: str, *, must_exist: bool = True) -> tuple[list[Record], int]:
    """The conversation's records with fork prefixes spliced in (renumbered 0..n-1), and the
    store's next seq for this conversation (what the next `append` must expect).
    Raises `ConversationNotFound` (when `must_exist`), `CorruptStore`, `UnsupportedFormatVersion`."""
    own = store.load(conversation_id)
    if not own:
        if must_exist:
            raise ConversationNotFound(conversation_id)
        return [], 0
    records = own
    seen = {conversation_id}
    while records[0].kind == "fork":
        fork = records[0]
        parent, at_seq = fork.data.get("parent"), fork.data.get("at_seq")
        if not isinstance(parent, str) or not isinstance(at_seq, int) or parent in seen or len(seen) > MAX_FORK_DEPTH:
            raise CorruptStore(f"conversation {conversation_id!r}: bad fork record {dict(fork.data)}")
        seen.add(parent)
        prefix = store.load(parent)
        if len(prefix) < at_seq:
            raise CorruptStore(
                f"conversation {conversation_id!r} forks {parent!r} at {at_seq}, which has {len(prefix)} records"
            )
        records = prefix[:at_seq] + records
    return [dataclasses.replace(r, seq=i) for i, r in enumerate(records)], len(own)


@dataclass
class Segment:
    """One run inside a conversation: the machine, its start input (the full input given to
    `machine.start`), and what folding its events gave. `run_id` is the id the run continues
    under (the start record's, or a later fork record's) and the prefix of its children's
    conversation ids (`run_id/task_id`)."""

    start_seq: int
    machine: Machine
    run_id: str
    input: Any
    step: Step
    events: list[Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    trace: list[Taken] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    open: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # key -> "started" data, not finished
    decisions: dict[str, Any] = field(default_factory=dict)  # call id -> decision JSON, recorded while suspended
    end: Record | None = None

    @property
    def final(self) -> bool:
        return self.step.snapshot.phase in self.machine.table.finals


def fold(
    records: Sequence[Record], machine_for: Callable[[str], Machine], *, context: Any = None, check: bool = True
) -> list[Segment]:
    """Fold `step` over `records` (as `resolve` returns them), segment by segment.

    `machine_for(name)` returns the machine a start record names (raise `StoreError` if unknown).
    With `check`, every event record's stored phase and step must match the fold, and every end
    record's digest the folded final snapshot; else `ReplayMismatch`.
    """
    segments: list[Segment] = []
    seg: Segment | None = None
    for r in records:
        kind, data = r.kind, r.data
        if kind == "start":
            machine = machine_for(str(data.get("machine")))
            value = decode_input(data.get("input", {}))
            if data.get("continues"):
                if seg is None or not seg.final:
                    raise CorruptStore(f"record {r.seq}: a continuation starts before the previous run ended")
                value = (*seg.step.snapshot.conversation.messages, *messages_from(value))
            run_id = str(data.get("run_id"))
            try:
                first = machine.start(value, context, run_id=run_id)
            except StoreError:
                raise
            except Exception as exc:
                raise ReplayMismatch(
                    f"record {r.seq}: {machine.name} does not start from the stored input ({type(exc).__name__}: "
                    f"{exc}); the machine changed since the run"
                ) from exc
            seg = Segment(r.seq, machine, run_id, value, first)
            seg.trace.extend(seg.step.transitions)
            segments.append(seg)
            continue
        if kind == "fork":
            if seg is not None:
                seg.open.clear()  # effects the parent started but did not finish never ran for this fork
                fork_run = data.get("run_id")
                if isinstance(fork_run, str) and fork_run:
                    # the run continues as the fork's own: children it runs from here get the fork's
                    # conversations (run_id/task), not the parent's finished ones
                    seg.run_id = fork_run
            continue
        if seg is None:
            raise CorruptStore(f"record {r.seq} ({kind}) comes before any start record")
        if kind == "started":
            seg.open[str(data.get("key"))] = data
        elif kind == "finished":
            seg.open.pop(str(data.get("key")), None)
            seg.decisions.clear()  # decisions answer the effect that just finished
        elif kind == "decision":
            seg.decisions[str(data.get("call_id"))] = data.get("decision")
        elif kind == "event":
            snapshot = seg.step.snapshot
            effect = seg.step.effects[0] if seg.step.effects else None
            event = decode_event(data.get("event", {}), effect)
            try:
                seg.step = seg.machine.step(snapshot, event)
            except StoreError:
                raise
            except Exception as exc:
                raise ReplayMismatch(
                    f"record {r.seq}: {seg.machine.name} no longer accepts the stored {event.name} event in "
                    f"phase {snapshot.phase} ({exc}); the machine changed since the run"
                ) from exc
            if check and (data.get("phase") != seg.step.snapshot.phase or data.get("step") != seg.step.snapshot.step):
                raise ReplayMismatch(
                    f"record {r.seq}: the stored run reached {data.get('phase')} at step {data.get('step')}, the "
                    f"fold reached {seg.step.snapshot.phase} at step {seg.step.snapshot.step}"
                )
            seg.events.append(event)
            if effect is not None:
                seg.effects.append(effect)
            seg.trace.extend(seg.step.transitions)
            if type(event) is ModelReplied and event.usage:
                seg.usage = seg.usage + event.usage
        elif kind == "end":
            seg.end = r
            if check and data.get("digest") != snapshot_digest(seg.step.snapshot):
                raise ReplayMismatch(
                    f"record {r.seq}: the final snapshot rebuilt from the log differs from the one the run stored "
                    f"(digest {str(data.get('digest'))[:12]}… vs {snapshot_digest(seg.step.snapshot)[:12]}…)"
                )
    return segments


# -- records the runtime writes ----------------------------------------------------------------


def start_record(machine: Machine, run_id: str, input: Any, *, continues: bool = False, context: Any = None) -> Record:
    ctx = None
    if context is not None:
        from pydantic_core import to_jsonable_python

        ctx = to_jsonable_python(context, fallback=repr)
    return Record(
        "start",
        {"machine": machine.name, "run_id": run_id, "input": encode_input(input), "continues": continues, "context": ctx},
    )


def effect_meta(effect: Effect, tools: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The "started" record data: key, effect type, whether it may be performed again, tool names."""
    meta: dict[str, Any] = {"key": effect.key, "effect": type(effect).__name__, "idempotent": True}
    if isinstance(effect, RunTools):
        names = [c.name for c in effect.calls]
        known = tools or {}
        meta["tools"] = names
        meta["idempotent"] = all(getattr(known.get(n), "idempotent", True) for n in names)
        risky = sorted({n for n in names if not getattr(known.get(n), "idempotent", True)})
        if risky:
            meta["not_idempotent"] = risky
    elif isinstance(effect, RunAgents):
        meta["tasks"] = [t.task_id for t in effect.tasks]
    elif isinstance(effect, AwaitInput):  # what a suspended run waits for, readable without its machine
        meta["requests"] = [r.model_dump(mode="json") for r in effect.requests]
    return meta


def started_record(effect: Effect, tools: Mapping[str, Any] | None = None) -> Record:
    """The ledger's "started" record for `effect` (see `effect_meta`)."""
    return Record("started", effect_meta(effect, tools))


def event_records(key: str | None, event: Event, step: Step, machine: Machine, effect: Effect | None = None) -> list[Record]:
    """What one atomic append writes after an event (answering `effect`): the event, the ledger's
    "finished" row, and (when the run ended) the end record with the final snapshot's digest."""
    snap = step.snapshot
    out = [Record("event", {"event": encode_event(event, effect), "phase": snap.phase.value, "step": snap.step})]
    if key is not None:
        out.append(Record("finished", {"key": key}))
    if snap.phase in machine.table.finals:
        out.append(end_record(step))
    return out


def end_record(step: Step) -> Record:
    snap = step.snapshot
    return Record("end", {"phase": snap.phase.value, "step": snap.step, "digest": snapshot_digest(snap)})


def decision_record(call_id: str, decision: Any) -> Record:
    """A human's decision on an awaited call, recorded while the run is suspended (applied by the
    next `resume`)."""
    return Record("decision", {"call_id": call_id, "decision": decision.model_dump(mode="json")})
