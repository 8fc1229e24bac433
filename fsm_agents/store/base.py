"""The `Store` protocol: an append-only log of records per conversation, with optimistic concurrency."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from fsm_agents.store._records import _SURROGATE, FORMAT_VERSION, GENESIS, KINDS, Record, StoreError, chain_hash

__all__ = ["ConversationInfo", "Row", "Store", "check_append", "prepare_rows"]

Row = tuple[int, str, int, float, str, str]
"""A stored record: `(seq, kind, version, created_at, body JSON text, hash)`."""


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """A conversation in a store: its id, how many records it holds, when its first and last
    records were written (Unix seconds, UTC)."""

    id: str
    records: int
    created_at: float
    updated_at: float


@runtime_checkable
class Store(Protocol):
    """An append-only, per-conversation log of `Record`s (`seq` 0, 1, 2, ... without gaps).

    - `append(conversation_id, expected_seq, records) -> int`: write `records` at seqs
      `expected_seq, expected_seq + 1, ...` in one transaction and return the next seq. Raises
      `ConcurrencyConflict` when the log does not end at `expected_seq - 1` (another writer came
      first): two writers can never both win a seq. `expected_seq=0` creates the conversation.
      The same transaction records the log's *head* (its last seq and hash).
    - `load(conversation_id) -> list[Record]`: every record in seq order (empty when the
      conversation does not exist), checked against the hash chain and the head (see
      `fsm_agents.store._records`). Raises `CorruptStore` (damaged file, broken hash chain, a
      record moved from another conversation or seq, records removed from the end, undecodable
      record) or `UnsupportedFormatVersion` (written by a newer fsm_agents).
    - `conversations() -> list[ConversationInfo]`, `close()`.
    - `threaded`: True when calls block on the network; the runtime then calls the store from a
      worker thread instead of the event loop.
    """

    threaded: bool

    def append(self, conversation_id: str, expected_seq: int, records: Sequence[Record]) -> int: ...

    def load(self, conversation_id: str) -> list[Record]: ...

    def conversations(self) -> list[ConversationInfo]: ...

    def close(self) -> None: ...


def prepare_rows(
    conversation_id: str, expected_seq: int, previous_hash: str, records: Sequence[Record]
) -> list[tuple[int, str, int, float, str, str]]:
    """Rows to insert for `records` appended after a log whose last hash is `previous_hash`
    (`""` for an empty log): seqs from `expected_seq`, `created_at` now, chained hashes (see
    `chain_hash`). The new head of the log is `(rows[-1][0], rows[-1][5])`."""
    now = time.time()
    rows: list[tuple[int, str, int, float, str, str]] = []
    h = previous_hash if expected_seq else GENESIS
    for i, r in enumerate(records):
        body, seq = r.body(), expected_seq + i
        h = chain_hash(h, r.kind, FORMAT_VERSION, body, conversation_id=conversation_id, seq=seq, created_at=now)
        rows.append((seq, r.kind, FORMAT_VERSION, now, body, h))
    return rows


def check_append(conversation_id: str, expected_seq: int, records: Sequence[Record]) -> None:
    """Raise `StoreError` for arguments no append accepts (checked before the seq)."""
    if not isinstance(conversation_id, str) or not conversation_id:
        raise StoreError("a conversation id must be a non-empty string")
    if "\0" in conversation_id or _SURROGATE.search(conversation_id):
        raise StoreError(
            f"conversation id {conversation_id!r} holds a NUL character or a lone surrogate, which a database cannot "
            "store as text: use another id"
        )
    if expected_seq < 0:
        raise StoreError(f"expected_seq must be >= 0, got {expected_seq}")
    if not records:
        raise StoreError("append needs at least one record")
    for r in records:
        if r.kind not in KINDS:
            raise StoreError(f"unknown record kind {r.kind!r}; expected one of {sorted(KINDS)}")
