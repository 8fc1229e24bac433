"""`Conversations`: persistent conversations shared by several agents, on top of a `Store`.

A conversation is one log holding one or more runs (*segments*): `start` runs a first agent (or
pattern) on the inputs; `append` runs another one on the whole history so far plus new inputs
(its start record stores only the new inputs: the history is rebuilt by folding). `history`
reads the log as entries (`message.input`, `message.output`, `tool.execution`,
`agent.handoff`, the entry types of the Mistral Conversations API the seed mirrors:
https://docs.mistral.ai/agents/agents_basics/); `fork` starts a new conversation sharing a
prefix of another; `replay` re-folds a log without any model or tool call and proves the
final snapshot equals the stored one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
from pydantic_core import to_jsonable_python

from fsm_agents.agent import TRANSFER_PREFIX
from fsm_agents.events import AgentsFinished, ModelReplied, ToolsFinished
from fsm_agents.machine import Machine, as_machine
from fsm_agents.runtime import resume, run
from fsm_agents.runtime.sync import run_boxed
from fsm_agents.state import Snapshot, ToolCall, messages_from
from fsm_agents.store import _fold
from fsm_agents.store._records import ConversationNotFound, Record, StoreError, decode_event, decode_input
from fsm_agents.store.base import ConversationInfo, Store
from fsm_agents.store.journal import machine_lookup

__all__ = ["Conversations", "HistoryEntry", "Replayed", "history", "replay"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One entry of a conversation's history.

    - `type`: `"message.input"` (a message given to a run), `"message.output"` (a model's or a
      child's answer), `"tool.execution"` (a tool call and its result), `"agent.handoff"`
      (control moved from `agent` to `to_agent`);
    - `role`: `"user"`, `"system"`, `"assistant"` or `"tool"`; `agent`: the agent that spoke or
      acted (`None` for inputs); `content`: text (a tool's output, or its error);
    - `seq`: the log record it comes from (usable as `fork(..., at_seq=seq + 1)`);
      `created_at`: Unix seconds; `name`, `arguments` (raw JSON), `call_id`, `ok`: tool entries.
    """

    seq: int
    type: str
    role: str
    agent: str | None
    content: str | None
    created_at: float
    name: str | None = None
    arguments: str | None = None
    call_id: str | None = None
    ok: bool | None = None
    to_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Replayed:
    """What `replay` proved: the final `snapshot` rebuilt from `events` events over `segments`
    runs, and `verified` — every run that ended had its stored digest matched (False only
    when the last run has not ended yet, so there is nothing to compare it with)."""

    conversation_id: str
    snapshot: Snapshot[Any]
    segments: int
    events: int
    verified: bool


def _short(machine: str) -> str:
    return machine.split(":", 1)[1] if ":" in machine else machine


def history(store: Store, conversation_id: str) -> list[HistoryEntry]:
    """The history of `conversation_id` (forks include their parent's prefix), read from the log
    alone (no machine needed). Raises `ConversationNotFound`, `CorruptStore`,
    `UnsupportedFormatVersion`."""
    records, _ = _fold.resolve(store, conversation_id)
    return _entries(records)


def _entries(records: Sequence[Record]) -> list[HistoryEntry]:
    out: list[HistoryEntry] = []
    agent: str | None = None
    pending: dict[str, ToolCall] = {}
    for r in records:
        if r.kind == "start":
            agent = _short(str(r.data.get("machine")))
            value = decode_input(r.data.get("input", {}))
            try:
                inputs = messages_from(value)
            except (TypeError, ValueError):
                out.append(HistoryEntry(r.seq, "message.input", "user", None, json.dumps(value), r.created_at))
                continue
            for m in inputs:
                content = getattr(m, "content", None)
                out.append(HistoryEntry(r.seq, "message.input", m.role, None, content, r.created_at))
        elif r.kind == "event":
            event = decode_event(r.data.get("event", {}), conversations=False)  # the listing shows outputs only
            if isinstance(event, ModelReplied):
                msg = event.message
                speaker = msg.agent or agent
                if msg.content or not msg.tool_calls:
                    out.append(HistoryEntry(r.seq, "message.output", "assistant", speaker, msg.content, r.created_at))
                for c in msg.tool_calls:
                    if c.name.startswith(TRANSFER_PREFIX):
                        target = c.name[len(TRANSFER_PREFIX) :]
                        out.append(
                            HistoryEntry(
                                r.seq,
                                "agent.handoff",
                                "assistant",
                                speaker,
                                None,
                                r.created_at,
                                name=c.name,
                                call_id=c.id,
                                to_agent=target,
                            )
                        )
                        agent = target
                        break
                    pending[c.id] = c
            elif isinstance(event, ToolsFinished):
                for res in event.results:
                    call = pending.pop(res.call_id, None)
                    out.append(
                        HistoryEntry(
                            r.seq,
                            "tool.execution",
                            "tool",
                            agent,
                            res.text,
                            r.created_at,
                            name=res.name,
                            arguments=call.arguments if call else None,
                            call_id=res.call_id,
                            ok=res.ok,
                        )
                    )
                pending.clear()
            elif isinstance(event, AgentsFinished):
                for o in event.outcomes:
                    text = (
                        o.output
                        if isinstance(o.output, str) or o.output is None
                        else json.dumps(to_jsonable_python(o.output, fallback=str))
                    )
                    out.append(HistoryEntry(r.seq, "message.output", "assistant", _short(o.machine), text, r.created_at))
    return out


def replay(store: Store, conversation_id: str, *machines: Any, context: Any = None) -> Replayed:
    """Re-fold `conversation_id` with `machines` (every machine that wrote a run in it; `Agent`s
    and patterns accepted), calling no model and no tool, and check each event's stored phase
    and step and each ended run's stored snapshot digest. Raises `ReplayMismatch` when they
    differ, `ConversationNotFound`, `CorruptStore`, `UnsupportedFormatVersion`."""
    records, _ = _fold.resolve(store, conversation_id)
    segments = _fold.fold(records, machine_lookup(*(as_machine(m) for m in machines)), context=context, check=True)
    if not segments:
        raise StoreError(f"conversation {conversation_id!r} holds no run")
    last = segments[-1]
    return Replayed(
        conversation_id=conversation_id,
        snapshot=last.step.snapshot,
        segments=len(segments),
        events=sum(len(s.events) for s in segments),
        verified=last.end is not None,
    )


class Conversations:
    """Persistent conversations in `store`, continued by any of `machines` (`Agent`s, patterns,
    machines; every one passed to `start`/`append` is added). `models`, `tools`, `limits`,
    `observers` are passed to every run (see `fsm_agents.runtime.run`).

    Every method is async (`await convs.start(...)`, `await convs.history(id)`; store reads and
    writes go to a worker thread for a networked store such as `PostgresStore`), and each has a
    blocking `_sync` twin for synchronous code (`convs.start_sync(...)`, `convs.history_sync(id)`),
    as `run` has `run_sync`: the twins of `start`, `append` and `resume` run a new event loop
    and raise `EventLoopRunning` when called inside one."""

    def __init__(
        self,
        store: Store,
        *machines: Any,
        models: Mapping[str, Any] | None = None,
        tools: Any = None,
        limits: Any = None,
        observers: Sequence[Any] = (),
    ) -> None:
        self.store = store
        self._machines: dict[str, Machine] = {}
        self._options: dict[str, Any] = {"models": models, "tools": tools, "limits": limits, "observers": observers}
        for m in machines:
            self._register(m)

    def _register(self, obj: Any) -> Machine:
        m = as_machine(obj)
        self._machines[m.name] = m
        return m

    def _lookup(self, name: str) -> Machine:
        m = self._machines.get(name)
        if m is None:
            raise StoreError(
                f"the log names machine {name!r}; pass it to Conversations(store, ...) to load this conversation"
            )
        return m

    def _segments(self, conversation_id: str, context: Any = None) -> tuple[list[_fold.Segment], int]:
        records, next_seq = _fold.resolve(self.store, conversation_id)
        return _fold.fold(records, self._lookup, context=context), next_seq

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, in a worker thread when the store blocks on the network."""
        if self.store.threaded:
            return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))
        return fn(*args, **kwargs)

    # -- running agents ------------------------------------------------------------------------

    async def start(self, agent: Any, inputs: Any, *, conversation_id: str | None = None, context: Any = None) -> Any:
        """Run `agent` on `inputs` as a new conversation (id: `conversation_id` or a random hex
        UUID, the returned `RunResult.run_id`). Raises `ConcurrencyConflict` if the id exists."""
        m = self._register(agent)
        cid = conversation_id or uuid.uuid4().hex
        return await run(m, inputs, store=self.store, conversation_id=cid, context=context, **self._options)

    def start_sync(
        self, agent: Any, inputs: Any, *, conversation_id: str | None = None, context: Any = None, backend: str = "asyncio"
    ) -> Any:
        """`start` from synchronous code, on a new event loop (raises `EventLoopRunning` inside one)."""
        return _blocking(partial(self.start, agent, inputs, conversation_id=conversation_id, context=context), backend)

    def _append_start(self, conversation_id: str, agent: Any, inputs: Any, context: Any) -> Machine:
        m = self._register(agent)
        segments, next_seq = self._segments(conversation_id, context)
        if not segments[-1].final:
            raise StoreError(f"conversation {conversation_id!r}: its last run has not ended; resume it before appending")
        run_id = f"{conversation_id}#{len(segments)}"
        start = _fold.start_record(m, run_id, inputs, continues=True, context=context)
        self.store.append(conversation_id, next_seq, [start])
        return m

    async def append(self, conversation_id: str, agent: Any, inputs: Any, *, context: Any = None) -> Any:
        """Run `agent` on the whole history of `conversation_id` followed by `inputs`, in the same
        log. Returns its `RunResult` (`input` is the full history given to it). Raises
        `StoreError` while the last run has not ended (resume it first), `ConcurrencyConflict`
        when another writer appended meanwhile, `ConversationNotFound`."""
        m = await self._call(self._append_start, conversation_id, agent, inputs, context)
        return await resume(
            conversation_id, m, store=self.store, context=context, machines=list(self._machines.values()), **self._options
        )

    def append_sync(
        self, conversation_id: str, agent: Any, inputs: Any, *, context: Any = None, backend: str = "asyncio"
    ) -> Any:
        """`append` from synchronous code, on a new event loop (raises `EventLoopRunning` inside
        one, before writing anything)."""
        return _blocking(partial(self.append, conversation_id, agent, inputs, context=context), backend)

    async def resume(self, conversation_id: str, *, context: Any = None) -> Any:
        """Continue the last run of `conversation_id` after a crash (see `fsm_agents.runtime.resume`)."""
        segments, _ = await self._call(self._segments, conversation_id, context)
        last = segments[-1].machine
        return await resume(
            conversation_id, last, store=self.store, context=context, machines=list(self._machines.values()), **self._options
        )

    def resume_sync(self, conversation_id: str, *, context: Any = None, backend: str = "asyncio") -> Any:
        """`resume` from synchronous code, on a new event loop (raises `EventLoopRunning` inside one)."""
        return _blocking(partial(self.resume, conversation_id, context=context), backend)

    # -- reading and forking (async, in a worker thread for a networked store; `_sync` twins) ------

    async def snapshot(self, conversation_id: str, *, context: Any = None) -> Snapshot[Any]:
        """The current snapshot of the conversation's last run, rebuilt from the log."""
        return await self._call(self.snapshot_sync, conversation_id, context=context)

    def snapshot_sync(self, conversation_id: str, *, context: Any = None) -> Snapshot[Any]:
        """`snapshot`, blocking."""
        return self._segments(conversation_id, context)[0][-1].step.snapshot

    async def history(self, conversation_id: str) -> list[HistoryEntry]:
        """See `history`."""
        return await self._call(history, self.store, conversation_id)

    def history_sync(self, conversation_id: str) -> list[HistoryEntry]:
        """`history`, blocking."""
        return history(self.store, conversation_id)

    async def replay(self, conversation_id: str, *, context: Any = None) -> Replayed:
        """See `replay` (with the machines this object knows)."""
        return await self._call(self.replay_sync, conversation_id, context=context)

    def replay_sync(self, conversation_id: str, *, context: Any = None) -> Replayed:
        """`replay`, blocking."""
        return replay(self.store, conversation_id, *self._machines.values(), context=context)

    async def fork(self, conversation_id: str, at_seq: int, *, new_id: str | None = None) -> str:
        """A new conversation sharing the first `at_seq` records of `conversation_id` (history
        entries carry their `seq`: fork at `entry.seq + 1` to keep that entry). Effects started
        but not finished within the prefix are forgotten (the fork performs them afresh when
        resumed), and the run the fork cuts continues under the fork's id: a pattern's children
        run from then on get conversations of their own (`<new id>/<task>`), never the
        parent's. Returns the new id (default `<id>~<8 hex>`). Raises `StoreError` for an
        `at_seq` outside `1..len(log)`, `ConversationNotFound`, `ConcurrencyConflict` if
        `new_id` exists."""
        return await self._call(self.fork_sync, conversation_id, at_seq, new_id=new_id)

    def fork_sync(self, conversation_id: str, at_seq: int, *, new_id: str | None = None) -> str:
        """`fork`, blocking."""
        records, _ = _fold.resolve(self.store, conversation_id)
        if not 1 <= at_seq <= len(records):
            raise StoreError(
                f"at_seq must be between 1 and {len(records)} for conversation {conversation_id!r}, got {at_seq}"
            )
        fid = new_id or f"{conversation_id}~{uuid.uuid4().hex[:8]}"
        self.store.append(fid, 0, [Record("fork", {"parent": conversation_id, "at_seq": at_seq, "run_id": fid})])
        return fid

    def list_sync(self) -> list[ConversationInfo]:
        """`list`, blocking."""
        return self.store.conversations()

    async def list(self) -> list[ConversationInfo]:
        """Every conversation in the store (children of patterns included), oldest first."""
        return await self._call(self.store.conversations)

    async def exists(self, conversation_id: str) -> bool:
        """Whether the store holds `conversation_id` (raises `CorruptStore` for a damaged log)."""
        return await self._call(self.exists_sync, conversation_id)

    def exists_sync(self, conversation_id: str) -> bool:
        """`exists`, blocking."""
        try:
            _fold.resolve(self.store, conversation_id)
        except ConversationNotFound:
            return False
        return True


def _blocking(fn: Callable[[], Awaitable[Any]], backend: str) -> Any:
    """Await `fn()` on a new event loop, as `run_sync` does (raises `EventLoopRunning` inside one)."""
    return run_boxed(fn, backend)
