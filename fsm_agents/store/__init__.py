"""Event-sourced persistence (docs/architecture.md, Records): an append-only log per conversation.

A run is fully described by its start input and its events (`step` is pure), so the store keeps
only those — plus an effect ledger (effect started / finished, by idempotency key) and, at the
end, a digest of the final snapshot — never a snapshot per step: bytes per step do not grow with
the history. Loading folds `step` over the events again.

    from fsm_agents.store import SQLiteStore, Conversations

    store = SQLiteStore("runs.db")
    result = await run(agent, "question", store=store, conversation_id="c1")
    result = await resume("c1", agent, store=store)            # after a crash

    conversations = Conversations(store, triage, billing)
    first = await conversations.start(triage, "my invoice is wrong")
    await conversations.append(first.run_id, billing, "and the refund?")
    await conversations.history(first.run_id)                 # or .history_sync(...) from sync code

Backends: `MemoryStore`, `SQLiteStore(path)` (stdlib sqlite3, WAL; the embedded default) and
`PostgresStore(dsn)` (psycopg 3; the `postgres` extra). The record format, and what the hash
chain and each log's head protect (edited, moved, reordered or removed records, `created_at`
included), are documented in `fsm_agents.store._records`.
"""

from fsm_agents.store._records import (
    FORMAT_VERSION,
    ConversationNotFound,
    CorruptStore,
    Record,
    ReplayMismatch,
    StoreError,
    UnsupportedFormatVersion,
    snapshot_digest,
)
from fsm_agents.store.base import ConversationInfo, Store
from fsm_agents.store.conversations import Conversations, HistoryEntry, Replayed, history, replay
from fsm_agents.store.journal import LedgerJournal
from fsm_agents.store.memory import MemoryStore
from fsm_agents.store.postgres import PostgresStore
from fsm_agents.store.sqlite import SQLiteStore

__all__ = [
    "FORMAT_VERSION",
    "ConversationInfo",
    "ConversationNotFound",
    "Conversations",
    "CorruptStore",
    "HistoryEntry",
    "LedgerJournal",
    "MemoryStore",
    "PostgresStore",
    "Record",
    "ReplayMismatch",
    "Replayed",
    "SQLiteStore",
    "Store",
    "StoreError",
    "UnsupportedFormatVersion",
    "history",
    "replay",
    "snapshot_digest",
]
