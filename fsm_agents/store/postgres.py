"""`PostgresStore`: the log in PostgreSQL (psycopg 3), for many processes or machines.

Same schema as `SQLiteStore` (tables `fsm_records`, primary key `(conversation_id, seq)`, and
`fsm_heads`, each conversation's last seq and hash). An append is one transaction: it reads the
last seq and hash, checks `expected_seq`, inserts the records and writes the head; the primary
key makes a concurrent writer that read the same last seq fail with a unique violation, reported
as `ConcurrencyConflict`. A load reads the records and the head in one `REPEATABLE READ`
transaction (one snapshot). What the hash chain and the head cover: `fsm_agents.store._records`.
Needs the `postgres` extra (`psycopg[binary]`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fsm_agents.errors import ConcurrencyConflict
from fsm_agents.store._records import Record, StoreError, verify
from fsm_agents.store._sql import HEADS_SCHEMA, SqlStore, Statements, conversation_infos
from fsm_agents.store.base import ConversationInfo, check_append, prepare_rows

__all__ = ["PostgresStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fsm_records (
    conversation_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
)
"""
_SCHEMA_LOCK = 0x6673_6D61  # advisory lock id serializing concurrent schema creation


_SQL = Statements.with_placeholder("%s")


class PostgresStore(SqlStore):
    """A `Store` in the PostgreSQL database at `dsn` (a libpq connection string or URL).

    One connection per store, used under a lock (share a store between threads freely; give
    each process its own). Raises `StoreError` when the server cannot be reached.
    """

    threaded = True

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StoreError("PostgresStore needs psycopg 3: pip install 'fsm-agents[postgres]'") from exc
        self._psycopg = psycopg
        self._lock = threading.Lock()
        try:
            self._db: Any = psycopg.connect(dsn, autocommit=False, connect_timeout=max(1, int(connect_timeout)))
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        with self._errors("creating the schema"), self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            self._db.execute(_SCHEMA)
            self._db.execute(HEADS_SCHEMA)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except self._psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {doing}: {exc}") from exc

    def append(self, conversation_id: str, expected_seq: int, records: Sequence[Record]) -> int:
        """See `Store.append`. Raises `ConcurrencyConflict` on a stale `expected_seq`."""
        check_append(conversation_id, expected_seq, records)
        unique = self._psycopg.errors.UniqueViolation
        with self._lock:
            try:
                with self._errors("appending"), self._db.transaction():
                    row = self._db.execute(_SQL.last, (conversation_id,)).fetchone()
                    actual = row[0] + 1 if row else 0
                    if actual != expected_seq:
                        raise ConcurrencyConflict(conversation_id, expected_seq, actual)
                    rows = prepare_rows(conversation_id, expected_seq, row[1] if row else "", records)
                    with self._db.cursor() as cur:
                        cur.executemany(_SQL.insert, [(conversation_id, *r) for r in rows])
                    self._db.execute(_SQL.set_head, (conversation_id, rows[-1][0], rows[-1][5]))
            except StoreError as exc:
                if isinstance(exc.__cause__, unique):  # a concurrent writer inserted the same seq first
                    raise ConcurrencyConflict(conversation_id, expected_seq, self._next_seq(conversation_id)) from None
                raise
            return expected_seq + len(rows)

    def _next_seq(self, conversation_id: str) -> int:
        with self._errors("reading"), self._db.transaction():
            row = self._db.execute(
                "SELECT MAX(seq) FROM fsm_records WHERE conversation_id = %s", (conversation_id,)
            ).fetchone()
        return -1 if row is None or row[0] is None else int(row[0]) + 1

    def load(self, conversation_id: str) -> list[Record]:
        """See `Store.load`. Raises `CorruptStore` or `UnsupportedFormatVersion`."""
        with self._lock, self._errors("loading"), self._db.transaction():
            self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot for both reads
            rows = self._db.execute(_SQL.load, (conversation_id,)).fetchall()
            head = self._db.execute(_SQL.head, (conversation_id,)).fetchone()
        return verify(conversation_id, [tuple(r) for r in rows], tuple(head) if head else None)

    def conversations(self) -> list[ConversationInfo]:
        """Every conversation, oldest first."""
        with self._lock, self._errors("listing"), self._db.transaction():
            rows = self._db.execute(_SQL.listing).fetchall()
        return conversation_infos(rows)
