"""What `SQLiteStore` and `PostgresStore` share: the statements they run on `fsm_records` (only
the parameter placeholder differs: `?` for sqlite3, `%s` for psycopg) and their closing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from fsm_agents.store.base import ConversationInfo

__all__ = ["HEADS_SCHEMA", "SqlStore", "Statements", "conversation_infos"]

HEADS_SCHEMA = """
CREATE TABLE IF NOT EXISTS fsm_heads (
    conversation_id TEXT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
)
"""
"""One row per conversation written by format version 4 or later: the seq and hash of its last
record, updated in the same transaction as every append (a log cut at its end no longer matches)."""


@dataclass(frozen=True, slots=True)
class Statements:
    """The SQL of one store: `last` (the last seq and hash of a conversation), `insert` (one
    record), `load` (a conversation's records in seq order), `listing` (every conversation:
    id, record count, first and last `created_at`, oldest first), `head` (a conversation's
    head: last seq and hash, from `fsm_heads`), `set_head` (insert or replace it)."""

    last: str
    insert: str
    load: str
    listing: str
    head: str
    set_head: str

    @classmethod
    def with_placeholder(cls, p: str) -> Statements:
        return cls(
            last=f"SELECT seq, hash FROM fsm_records WHERE conversation_id = {p} ORDER BY seq DESC LIMIT 1",
            insert=(
                "INSERT INTO fsm_records (conversation_id, seq, kind, version, created_at, body, hash) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})"
            ),
            load=(
                "SELECT seq, kind, version, created_at, body, hash FROM fsm_records "
                f"WHERE conversation_id = {p} ORDER BY seq"
            ),
            listing=(
                "SELECT conversation_id, COUNT(*), MIN(created_at), MAX(created_at) FROM fsm_records "
                "GROUP BY conversation_id ORDER BY MIN(created_at), conversation_id"
            ),
            head=f"SELECT seq, hash FROM fsm_heads WHERE conversation_id = {p}",
            set_head=(
                f"INSERT INTO fsm_heads (conversation_id, seq, hash) VALUES ({p}, {p}, {p}) "
                "ON CONFLICT (conversation_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
            ),
        )


def conversation_infos(rows: Iterable[Sequence[Any]]) -> list[ConversationInfo]:
    """`listing` rows as `ConversationInfo`s."""
    return [ConversationInfo(str(r[0]), int(r[1]), float(r[2]), float(r[3])) for r in rows]


class SqlStore:
    """Closing, for a store holding one DB-API connection `_db` used under `_lock`."""

    _db: Any
    _lock: Any

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
