"""Reliability with real processes and real files: SIGKILL + resume, concurrent writers, corruption."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from store_helpers import CID, EVENTS, ROUNDS, fresh_database, open_store, python_c, scripted_agent

from fsm_agents.events import EffectUncertain, ModelReplied, ToolsFinished
from fsm_agents.runtime import resume_sync, run_sync
from fsm_agents.state import Phase
from fsm_agents.store import CorruptStore, SQLiteStore, replay
from fsm_agents.store._records import decode_event

CRASH_TRIALS = 50
CHILD = "import store_helpers, sys; store_helpers.crash_child(*sys.argv[1:])"


def _spawn(db: Path, side: Path, die_in: str = "", *, go: bool = True) -> subprocess.Popen[bytes]:
    """Start a child running the scripted conversation; it waits for "go" once it is ready."""
    p = subprocess.Popen(python_c(CHILD, str(db), str(side), die_in), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    if go:
        _go(p)
    return p


def _go(p: subprocess.Popen[bytes]) -> None:
    assert p.stdin is not None
    p.stdin.write(b"go\n")
    p.stdin.flush()


def _check_recovered(db: Path, side: Path) -> tuple[int, Phase]:
    """Resume the run in `db` and check the log and the side effects; return (events logged
    before resuming, final phase)."""
    with SQLiteStore(db) as store:
        before = sum(1 for r in store.load(CID) if r.kind == "event")
        agent, model = scripted_agent(str(side), slow=0)
        if before == 0 and not store.load(CID):  # killed before the start record: nothing ran, start afresh
            assert not side.exists()
            result = run_sync(agent, "start", store=store, conversation_id=CID, models={"clerk": model})
        else:
            result = resume_sync(CID, agent, store=store, models={"clerk": model})
        records = store.load(CID)
        # the log: seqs without gaps (checked by load), each event once, in the script's order
        events = [decode_event(r.data["event"]) for r in records if r.kind == "event"]
        assert tuple(events) == result.events
        turns = [int(e.message.content.split()[1]) for e in events if isinstance(e, ModelReplied) and e.message.tool_calls]
        assert turns == list(range(len(turns))), f"lost or duplicated model turns: {turns}"
        kinds = [type(e).__name__ for e in events]
        expected = ["ModelReplied", "ToolsFinished"] * len(turns)
        if result.phase is Phase.DONE:
            assert len(events) == EVENTS and kinds == [*expected, "ModelReplied"]
        else:
            assert result.failure is not None and result.failure.kind == "uncertain_effect"
            assert result.failure.detail == "charge" and kinds == [*expected[:-1], "EffectUncertain"]
            assert isinstance(events[-1], EffectUncertain)
        # the ledger: every effect that started either finished or is the uncertain one
        started = Counter(r.data["key"] for r in records if r.kind == "started")
        finished = Counter(r.data["key"] for r in records if r.kind == "finished")
        assert all(n == 1 for n in started.values()) and finished == started
        assert [r.kind for r in records][-1] == "end" and replay(store, CID, agent).verified
    # side effects: each non-idempotent charge ran at most once — exactly once when its result is logged
    lines = side.read_text().split() if side.exists() else []
    charges = Counter(int(n) for kind, n in zip(lines[::2], lines[1::2], strict=True) if kind == "charge")
    assert all(n == 1 for n in charges.values()), f"a charge ran twice: {charges}"
    done_charges = {
        int(r.call_id.split("_")[1]) for e in events if isinstance(e, ToolsFinished) for r in e.results if r.name == "charge"
    }
    assert done_charges <= set(charges)
    uncertain = set(charges) - done_charges
    assert len(uncertain) <= 1 and (not uncertain or result.phase is Phase.FAILED)
    return before, result.phase


def _events_logged(db: Path) -> int:
    """Event records in `db` so far (read-only, while the child writes: WAL allows it)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM fsm_records WHERE kind = 'event'").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def test_sigkill_at_random_points_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Each trial kills the child once its log holds a random number of events, plus a random
    extra delay so the kill lands anywhere inside the next effect (progress-based, so the kill
    points stay spread out however loaded the machine is)."""
    rng = random.Random(int(os.environ.get("FSM_CRASH_SEED", "20240611")))
    before_counts: list[int] = []
    phases: list[Phase] = []
    for batch in range(0, CRASH_TRIALS, 2):  # two children at a time (2 cores)
        trials = []
        for trial in (batch, batch + 1):
            db, side = tmp_path / f"t{trial}.db", tmp_path / f"t{trial}.side"
            target = rng.randint(0, EVENTS)
            trials.append([db, side, _spawn(db, side, go=False), target, rng.uniform(0.0, 0.004), None])
        for trial_ in trials:
            _go(trial_[2])
        deadline = time.perf_counter() + 60
        while any(t[5] is None for t in trials) and time.perf_counter() < deadline:
            for t in trials:
                db, _, proc, target, extra, killed = t
                if killed is None and (proc.poll() is not None or _events_logged(db) >= target):
                    time.sleep(extra)
                    proc.send_signal(signal.SIGKILL)
                    t[5] = True
            time.sleep(0.0005)
        for db, side, proc, *_ in trials:
            proc.wait(timeout=30)
            before, phase = _check_recovered(db, side)
            before_counts.append(before)
            phases.append(phase)
    assert len(before_counts) == CRASH_TRIALS
    # the kills really landed at spread-out points of the run
    mid_run = [n for n in before_counts if 0 < n < EVENTS]
    assert len(mid_run) >= CRASH_TRIALS // 3, sorted(before_counts)
    assert len(set(before_counts)) >= 10, sorted(before_counts)


@pytest.mark.parametrize("die_in", [4, 5])
def test_killed_inside_a_tool_resume_fails_or_reruns_by_idempotency(tmp_path: Path, die_in: int) -> None:
    """Turn 4 calls `charge` (not idempotent): resume must FAIL(uncertain_effect) without charging
    again. Turn 5 calls `lookup` (idempotent): resume performs it again and finishes."""
    db, side = tmp_path / "s.db", tmp_path / "side"
    proc = _spawn(db, side, str(die_in))
    assert proc.wait(timeout=60) == -signal.SIGKILL
    before, phase = _check_recovered(db, side)
    assert before == 2 * die_in + 1
    assert phase is (Phase.FAILED if die_in % 2 == 0 else Phase.DONE)
    lines = side.read_text().split()
    assert lines.count(str(die_in)) == (1 if die_in % 2 == 0 else 2)  # lookup ran twice: fine, it is idempotent
    assert die_in < ROUNDS


# -- concurrent writers ---------------------------------------------------------------------

WRITERS, TOTAL = 8, 120


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_eight_processes_appending_exactly_one_wins_each_seq(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    target = str(tmp_path / "c.db") if backend == "sqlite" else fresh_database(request.getfixturevalue("postgres_dsn"))
    open_store(backend, target).close()  # create the schema once
    go_file = tmp_path / "go"  # made once every child is ready: they all race, however slowly they started
    code = "import store_helpers, sys; store_helpers.append_child(*sys.argv[1:])"
    procs = [
        subprocess.Popen(
            python_c(code, backend, target, "shared", f"w{i}", str(TOTAL), str(go_file)), stdout=subprocess.PIPE
        )
        for i in range(WRITERS)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
    go_file.touch()
    outputs = [p.communicate(timeout=120)[0].decode().split("\n") for p in procs]
    assert all(p.returncode == 0 for p in procs)
    wins: dict[int, list[int]] = {}
    losses = 0
    for writer, lines in enumerate(outputs):
        for line in filter(None, lines):
            what, seq = line.split()
            if what == "win":
                wins.setdefault(int(seq), []).append(writer)
            else:
                losses += 1
    assert sorted(wins) == list(range(TOTAL))
    assert all(len(w) == 1 for w in wins.values()), "two writers won the same seq"
    store = open_store(backend, target)
    records = store.load("shared")  # verifies seqs 0..n-1 and the hash chain
    store.close()
    assert [r.seq for r in records] == list(range(TOTAL))
    assert [r.data["writer"] for r in records] == [f"w{wins[s][0]}" for s in range(TOTAL)]
    assert losses > 0 and len({w[0] for w in wins.values()}) > 1  # they really raced


# -- corruption -----------------------------------------------------------------------------


def _db_with_a_run(tmp_path: Path) -> Path:
    db, side = tmp_path / "s.db", tmp_path / "side"
    proc = _spawn(db, side)
    assert proc.wait(timeout=60) == 0
    return db


def test_a_truncated_database_file_is_a_clear_error(tmp_path: Path) -> None:
    db = _db_with_a_run(tmp_path)
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 3)
    with pytest.raises(CorruptStore, match="damaged"), SQLiteStore(db) as store:
        store.load(CID)


def test_garbage_bytes_in_the_database_file_are_a_clear_error(tmp_path: Path) -> None:
    db = _db_with_a_run(tmp_path)
    with open(db, "r+b") as f:
        f.seek(0)
        f.write(b"this is not a sqlite file at all")
    with pytest.raises(CorruptStore, match="damaged"), SQLiteStore(db) as store:
        store.load(CID)


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE fsm_records SET body = replace(body, 'turn 3', 'turn 9') WHERE seq < 40",
        "DELETE FROM fsm_records WHERE seq = 7",
        "UPDATE fsm_records SET body = '{not json' WHERE seq = 3",
        "UPDATE fsm_records SET kind = 'mystery' WHERE seq = 2",
    ],
    ids=["edited", "deleted", "not-json", "unknown-kind"],
)
def test_an_edited_log_is_a_clear_error(tmp_path: Path, edit: str) -> None:
    db = _db_with_a_run(tmp_path)
    with sqlite3.connect(db) as conn:
        assert conn.execute(edit).rowcount == 1 or "turn" in edit
    with SQLiteStore(db) as store, pytest.raises(CorruptStore):
        store.load(CID)
