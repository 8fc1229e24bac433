"""Store integrity (issue 13): any text is stored losslessly, every record is bound to its
conversation, seq and time, a log cut at its end is detected, older record formats still load."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from store_helpers import raw_sql, remove_tail, scripted_agent

from fsm_agents import Agent, FunctionModel, ScriptedModel, tool
from fsm_agents.models.scripted import call, reply
from fsm_agents.runtime import resume, run
from fsm_agents.state import AssistantMessage, ModelRequest, Phase
from fsm_agents.store import (
    FORMAT_VERSION,
    ConversationNotFound,
    Conversations,
    CorruptStore,
    MemoryStore,
    SQLiteStore,
    Store,
    StoreError,
    history,
    replay,
    snapshot_digest,
)
from fsm_agents.store._records import Record, chain_hash, verify

BACKENDS = ["memory", "sqlite", "postgres"]
DATA = Path(__file__).parent / "data"


# -- 1. text JSON-in-UTF-8 cannot carry: lone surrogates ----------------------------------------

NAME = os.fsdecode(b"report-\xff.txt")  # 'report-\udcff.txt': an undecodable file name


@tool
def list_files() -> str:
    """List the files (names as the OS gives them)."""
    return f"{NAME}, notes.txt"


def _surrogate_agent() -> tuple[Agent, FunctionModel]:
    def respond(request: ModelRequest) -> AssistantMessage:
        if not any(m.role == "tool" for m in request.messages):
            return reply("looking\ud800", call("list_files", "c1"))  # a lone high surrogate in model text
        return reply(f"found {NAME}")

    return Agent("files", "List files.", tools=[list_files]), FunctionModel(respond)


@pytest.mark.anyio
async def test_lone_surrogates_in_input_model_text_and_tool_output_are_stored_losslessly(
    store: Store, anyio_backend: str
) -> None:
    """A run whose input, model text and tool output hold lone surrogates ends DONE with a store
    (it raised UnicodeEncodeError from the hash chain, or PydanticSerializationError from the
    digest), and the snapshot rebuilt from the log equals the live one."""
    agent, model = _surrogate_agent()
    live = await run(agent, f"open {NAME}", models={"files": model}, store=store, conversation_id="s")
    assert live.ok and live.output == f"found {NAME}"
    assert replay(store, "s", agent).snapshot == live.snapshot
    assert (await resume("s", agent, store=store)).snapshot == live.snapshot
    entries = history(store, "s")
    assert entries[0].content == f"open {NAME}" and entries[1].content == "looking\ud800"
    assert entries[2].content == f"{NAME}, notes.txt"
    for r in store.load("s"):
        r.body().encode()  # what is stored is valid UTF-8 (and hashed as such)


_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


@settings(deadline=None)
@given(
    texts=st.lists(st.text(st.characters(codec=None, exclude_categories=()), max_size=8), min_size=1, max_size=6),
    cut=st.integers(min_value=1, max_value=6),
)
def test_any_text_round_trips_and_any_cut_of_the_tail_is_detected(texts: list[str], cut: int) -> None:
    """Invariant: a record whose data holds any text (every code point, lone surrogates
    included, in keys and values) loads back with equal data; and removing the last `k >= 1`
    records of the log makes `load` raise `CorruptStore`. (A high surrogate directly followed by
    a low one, two code points, is the documented exception: JSON loads it back as one.)"""
    assume(not any(_PAIR.search(t) for t in texts))
    store = MemoryStore()
    records = [Record("event", {"text": t, t: i}) for i, t in enumerate(texts)]
    store.append("c", 0, records)
    assert [r.data for r in store.load("c")] == [dict(r.data) for r in records]
    k = min(cut, len(records))
    remove_tail(store, "c", k)
    with pytest.raises(CorruptStore):
        store.load("c")


def test_a_snapshot_digest_is_unchanged_where_json_carries_the_text() -> None:
    """The digest of a snapshot without surrogates is still sha256(model_dump_json()), so the end
    records of older logs verify; with one, the digest is defined and stable."""
    import hashlib

    from fsm_agents import run_sync

    agent = Agent("a", model=ScriptedModel(["plain"]))
    snap = run_sync(agent, "hi").snapshot
    assert snapshot_digest(snap) == hashlib.sha256(snap.model_dump_json().encode()).hexdigest()
    odd = run_sync(Agent("a", model=ScriptedModel([f"odd {NAME}"])), "hi").snapshot
    assert snapshot_digest(odd) == snapshot_digest(odd.model_copy()) != snapshot_digest(snap)


# -- 4. a log cut at its end ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_removing_the_last_records_is_detected_and_resume_runs_nothing_again(
    store: Store, tmp_path: Path, anyio_backend: str
) -> None:
    """Deleting the last 20 records (which a hash chain alone cannot see) makes `load` raise
    `CorruptStore` instead of returning a shorter, valid-looking log; `resume` performs nothing:
    no non-idempotent `charge` runs a second time."""
    side = tmp_path / "side-effects"
    agent, model = scripted_agent(str(side), slow=0)
    await run(agent, "start", models={"clerk": model}, store=store, conversation_id="t")
    done = side.read_text()
    remove_tail(store, "t", 20)
    with pytest.raises(CorruptStore, match="head"):
        store.load("t")
    again, model = scripted_agent(str(side), slow=0)
    with pytest.raises(CorruptStore):
        await resume("t", again, store=store, models={"clerk": model})
    assert side.read_text() == done


def test_removing_the_head_of_a_current_log_is_detected(store: Store) -> None:
    store.append("h", 0, [Record("event", {"i": 0}), Record("event", {"i": 1})])
    if isinstance(store, MemoryStore):
        del store._heads["h"]
    else:
        raw_sql(store, "DELETE FROM fsm_heads WHERE conversation_id = ?", ("h",))
    with pytest.raises(CorruptStore, match="no head"):
        store.load("h")


# -- 5, 6. a record bound to its conversation, seq and time ---------------------------------------


def _rename(store: Store, old: str, new: str) -> None:
    if isinstance(store, MemoryStore):
        store._logs[new], store._heads[new] = store._logs.pop(old), store._heads.pop(old)
        return
    raw_sql(store, "UPDATE fsm_records SET conversation_id = ? WHERE conversation_id = ?", (new, old))
    raw_sql(store, "UPDATE fsm_heads SET conversation_id = ? WHERE conversation_id = ?", (new, old))


def test_records_moved_to_another_conversation_are_detected(store: Store) -> None:
    """A log whose records (and head) were moved under another conversation id no longer
    verifies: the hash covers the conversation id."""
    store.append("a", 0, [Record("event", {"i": 0}), Record("event", {"i": 1})])
    _rename(store, "a", "b")
    with pytest.raises(CorruptStore, match="hash chain"):
        store.load("b")


def test_the_hash_covers_the_seq_and_the_creation_time() -> None:
    rows = [(0, "event", FORMAT_VERSION, 10.0, '{"i":0}', "")]
    h = chain_hash("", "event", FORMAT_VERSION, '{"i":0}', conversation_id="c", seq=0, created_at=10.0)
    rows = [(0, "event", FORMAT_VERSION, 10.0, '{"i":0}', h)]
    assert verify("c", rows, (0, h))[0].data == {"i": 0}
    assert chain_hash("", "event", FORMAT_VERSION, '{"i":0}', conversation_id="c", seq=1, created_at=10.0) != h
    with pytest.raises(CorruptStore, match="hash chain"):
        verify("c", [(0, "event", FORMAT_VERSION, 11.0, '{"i":0}', h)], (0, h))


def test_an_edited_creation_time_is_detected(store: Store) -> None:
    store.append("t", 0, [Record("event", {"i": 0}), Record("event", {"i": 1})])
    if isinstance(store, MemoryStore):
        seq, kind, version, created_at, body, h = store._logs["t"][0]
        store._logs["t"][0] = (seq, kind, version, created_at - 3600, body, h)
    else:
        raw_sql(store, "UPDATE fsm_records SET created_at = created_at - 3600 WHERE conversation_id = ?", ("t",))
    with pytest.raises(CorruptStore, match="hash chain"):
        store.load("t")


def test_a_conversation_id_a_database_cannot_store_is_a_store_error(store: Store) -> None:
    for bad in ("bad\udcff", "nul\0"):
        with pytest.raises(StoreError, match="another id"):
            store.append(bad, 0, [Record("event", {})])


# -- 7. a 0-byte SQLite file -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_zero_byte_sqlite_file_opens_as_an_empty_store_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    """Documented in `fsm_agents.store.sqlite`: a 0-byte file (what `touch` or `mkstemp` leave,
    or a truncated database) is an empty store, said in a warning; a conversation it was
    thought to hold is then `ConversationNotFound`; a file that is not a database is refused."""
    path = tmp_path / "empty.db"
    path.touch()
    with caplog.at_level(logging.WARNING, logger="fsm_agents.store.sqlite"), SQLiteStore(path) as s:
        assert s.conversations() == []
        with pytest.raises(ConversationNotFound):
            await resume("c", Agent("a"), store=s)
        s.append("c", 0, [Record("event", {"i": 0})])
    assert "0 bytes" in caplog.text and "empty store" in caplog.text
    with SQLiteStore(path) as s:
        assert [r.data for r in s.load("c")] == [{"i": 0}]
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 200)
    with pytest.raises(CorruptStore, match="damaged"):
        SQLiteStore(junk)


# -- record format 3 still loads, and continues as format 4 -------------------------------------


def _format3_rows() -> dict[str, Any]:
    """tests/data/store_format3.json: the rows of two conversations written by the format-3
    code (commit f3e5b16, see the file's "source")."""
    return json.loads((DATA / "store_format3.json").read_text())


def _insert_rows(store: Store, cid: str, rows: list[list[Any]]) -> None:
    if isinstance(store, MemoryStore):
        store._logs[cid] = [tuple(r) for r in rows]  # type: ignore[misc]
        return
    for r in rows:
        raw_sql(
            store,
            "INSERT INTO fsm_records (conversation_id, seq, kind, version, created_at, body, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (cid, *r),
        )


@pytest.mark.anyio
async def test_a_format_3_log_loads_replays_and_continues_as_format_4(store: Store, anyio_backend: str) -> None:
    from store_helpers import calc_agent

    data = _format3_rows()
    for cid, rows in data["conversations"].items():
        _insert_rows(store, cid, rows)
    agent = calc_agent()
    records = store.load("c")
    assert {r.version for r in records} == {3} and records[-1].kind == "end"
    assert replay(store, "c", agent).verified
    forked = replay(store, "c-fork", agent)  # cut after the model asked for add(1, 2)
    assert not forked.verified and forked.snapshot.phase is Phase.EXECUTING
    # a format-3 fork keeps its parent's run id; continuing it writes format-4 records and a head
    convs = Conversations(store, agent, models={"calc": ScriptedModel(["again 3"])})
    more = await convs.append("c", agent, "and again?")
    assert more.output == "again 3"
    assert {r.version for r in store.load("c")} == {3, FORMAT_VERSION}
    remove_tail(store, "c", 1)
    with pytest.raises(CorruptStore, match="head"):
        store.load("c")


def test_old_sqlite_files_get_the_heads_table(tmp_path: Path) -> None:
    """A file created before format 4 (no `fsm_heads`) opens; appends then write heads."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE fsm_records (conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, "
            "version INTEGER NOT NULL, created_at REAL NOT NULL, body TEXT NOT NULL, hash TEXT NOT NULL, "
            "PRIMARY KEY (conversation_id, seq)) WITHOUT ROWID"
        )
    with SQLiteStore(path) as s:
        s.append("x", 0, [Record("event", {})])
        assert s._db.execute("SELECT seq FROM fsm_heads WHERE conversation_id = 'x'").fetchone() == (0,)
