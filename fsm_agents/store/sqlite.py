"""`SQLiteStore`: the embedded default, one SQLite file (stdlib `sqlite3`) in WAL mode.

Schema: `fsm_records(conversation_id, seq, kind, version, created_at, body, hash)`, primary key
`(conversation_id, seq)`, `WITHOUT ROWID`, and (since record format version 4)
`fsm_heads(conversation_id, seq, hash)`, each conversation's last record, created on open in an
older file. Each `append` is one `BEGIN IMMEDIATE` transaction writing the records and the head
(the write lock is taken before the seq check, so two processes can never both pass it); a `load`
reads the records and the head in one read transaction; readers never block the writer (WAL).
Several processes on one machine may share the file; `busy_timeout` bounds how long one waits
for another's write lock. What the hash chain and the head cover (and that `created_at` is
covered since format version 4): `fsm_agents.store._records`.

A file of 0 bytes is an empty SQLite database (SQLite's own rule, and what `touch runs.db` or
`tempfile.mkstemp()` leave): it opens as a new, empty store, with a warning in the log, since a
0-byte file can also be a database that was truncated; resuming a conversation it held then
raises `ConversationNotFound`. A file that is not a SQLite database raises `CorruptStore`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from fsm_agents.errors import ConcurrencyConflict
from fsm_agents.store._records import CorruptStore, Record, StoreError, verify
from fsm_agents.store._sql import HEADS_SCHEMA, SqlStore, Statements, conversation_infos
from fsm_agents.store.base import ConversationInfo, check_append, prepare_rows

__all__ = ["SQLiteStore"]

log = logging.getLogger("fsm_agents.store.sqlite")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fsm_records (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID
"""


_SQL = Statements.with_placeholder("?")


class SQLiteStore(SqlStore):
    """A `Store` in the SQLite file at `path` (created if missing; `":memory:"` works too).

    - `busy_timeout`: seconds to wait for another process's write lock before raising `StoreError`;
    - `synchronous`: SQLite's `PRAGMA synchronous`; `"NORMAL"` (default) survives a process crash
      (SIGKILL) but may lose the last commits on power loss; `"FULL"` survives both.

    Raises `CorruptStore` when the file is not a SQLite database or is damaged. `close()` (or
    leaving a `with` block) closes the connection; the last one to close checkpoints the WAL
    into the file.
    """

    threaded = False

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        if self.path != ":memory:" and os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
            log.warning("%s is empty (0 bytes): opening it as a new, empty store", self.path)
        with self._errors("opening"):
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if self.path != ":memory:":
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":  # pragma: no cover - e.g. a network file system
                    log.warning("%s: SQLite refused WAL mode (%s); concurrent readers will block", self.path, mode)
            self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._db.execute(_SCHEMA)
            self._db.execute(HEADS_SCHEMA)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise StoreError(f"{self.path}: {doing}: the database stayed locked by another writer ({text})") from exc
            if "malformed" in text or "not a database" in text:
                raise CorruptStore(f"{self.path}: {doing}: the database file is damaged ({text}); restore a backup") from exc
            raise StoreError(f"{self.path}: {doing}: {text}") from exc
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            raise CorruptStore(f"{self.path}: {doing}: the database file is damaged ({exc}); restore a backup") from exc

    def append(self, conversation_id: str, expected_seq: int, records: Sequence[Record]) -> int:
        """See `Store.append`: one `BEGIN IMMEDIATE` transaction. Raises `ConcurrencyConflict`."""
        check_append(conversation_id, expected_seq, records)
        with self._lock, self._errors("appending"):
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(_SQL.last, (conversation_id,)).fetchone()
                actual = row[0] + 1 if row else 0
                if actual != expected_seq:
                    raise ConcurrencyConflict(conversation_id, expected_seq, actual)
                rows = prepare_rows(conversation_id, expected_seq, row[1] if row else "", records)
                db.executemany(_SQL.insert, [(conversation_id, *r) for r in rows])
                db.execute(_SQL.set_head, (conversation_id, rows[-1][0], rows[-1][5]))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return expected_seq + len(rows)

    def load(self, conversation_id: str) -> list[Record]:
        """See `Store.load`. Raises `CorruptStore` or `UnsupportedFormatVersion`."""
        with self._lock, self._errors("loading"):
            db = self._db
            db.execute("BEGIN")  # one read snapshot for the records and the head
            try:
                rows = db.execute(_SQL.load, (conversation_id,)).fetchall()
                head = db.execute(_SQL.head, (conversation_id,)).fetchone()
            finally:
                if db.in_transaction:
                    db.execute("COMMIT")
        return verify(conversation_id, rows, tuple(head) if head else None)

    def conversations(self) -> list[ConversationInfo]:
        """Every conversation, oldest first."""
        with self._lock, self._errors("listing"):
            rows = self._db.execute(_SQL.listing).fetchall()
        return conversation_infos(rows)
