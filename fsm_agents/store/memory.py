"""`MemoryStore`: the log in a dict, for tests and single-process use (lost at exit)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from fsm_agents.errors import ConcurrencyConflict
from fsm_agents.store._records import Record, verify
from fsm_agents.store.base import ConversationInfo, Row, check_append, prepare_rows

__all__ = ["MemoryStore"]


class MemoryStore:
    """An in-memory `Store` (thread-safe). Records are kept as JSON text, exactly as the database
    backends keep them (with the same hash chain and head, see `fsm_agents.store._records`), so a
    run behaves the same on every backend."""

    threaded = False

    def __init__(self) -> None:
        self._logs: dict[str, list[Row]] = {}
        self._heads: dict[str, tuple[int, str]] = {}  # conversation id -> (last seq, last hash)
        self._lock = threading.Lock()

    def append(self, conversation_id: str, expected_seq: int, records: Sequence[Record]) -> int:
        """See `Store.append`. Raises `ConcurrencyConflict` on a stale `expected_seq`."""
        check_append(conversation_id, expected_seq, records)
        with self._lock:
            log = self._logs.get(conversation_id, [])
            if len(log) != expected_seq:
                raise ConcurrencyConflict(conversation_id, expected_seq, len(log))
            rows = prepare_rows(conversation_id, expected_seq, log[-1][5] if log else "", records)
            self._logs.setdefault(conversation_id, log).extend(rows)
            self._heads[conversation_id] = (rows[-1][0], rows[-1][5])
            return expected_seq + len(rows)

    def load(self, conversation_id: str) -> list[Record]:
        """See `Store.load`."""
        with self._lock:
            rows = list(self._logs.get(conversation_id, ()))
            head = self._heads.get(conversation_id)
        return verify(conversation_id, rows, head)

    def conversations(self) -> list[ConversationInfo]:
        """Every conversation, oldest first."""
        with self._lock:
            infos = [ConversationInfo(cid, len(log), log[0][3], log[-1][3]) for cid, log in self._logs.items() if log]
        return sorted(infos, key=lambda i: (i.created_at, i.id))

    def close(self) -> None:
        """Nothing to release."""
