"""Helpers for the store tests: a real PostgreSQL server fixture, and the code child processes
run (imported by `python -c`, so a child starts fast)."""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fsm_agents import Agent, FunctionModel, tool
from fsm_agents.models.scripted import call, reply
from fsm_agents.state import AssistantMessage, ModelRequest
from fsm_agents.store import MemoryStore, PostgresStore, SQLiteStore, Store

ROUNDS = 25  # tool rounds: 2 events each, + the final answer = 51 events
EVENTS = 2 * ROUNDS + 1
CID = "crash"


# -- the scripted 50-step conversation --------------------------------------------------------


def scripted_agent(side_file: str, *, die_in: int | None = None, slow: float = 0.002) -> tuple[Agent, FunctionModel]:
    """An agent whose model calls `charge(n)` (not idempotent) on even turns and `lookup(n)`
    (idempotent) on odd ones, then answers. Every execution appends a line to `side_file`.
    `die_in=n`: the process SIGKILLs itself while executing turn n's tool."""

    def effect(kind: str, n: int) -> None:
        with open(side_file, "a") as f:
            f.write(f"{kind} {n}\n")
            f.flush()
        if die_in == n:
            os.kill(os.getpid(), 9)
        time.sleep(slow)

    @tool
    def charge(n: int) -> str:
        """Charge the customer (a side effect that must not repeat)."""
        time.sleep(slow)
        effect("charge", n)
        return f"charged {n}"

    @tool(idempotent=True)
    def lookup(n: int) -> str:
        """Read something (safe to repeat)."""
        effect("lookup", n)
        return f"value {n}"

    def respond(request: ModelRequest) -> AssistantMessage:
        turn = sum(1 for m in request.messages if m.role == "assistant")
        if turn >= ROUNDS:
            return reply("done")
        name = "charge" if turn % 2 == 0 else "lookup"
        return reply(f"turn {turn}", call(name, f"call_{turn}", n=turn))

    model = FunctionModel(respond)
    return Agent("clerk", "You are a clerk.", tools=[charge, lookup], max_steps=ROUNDS + 5), model


def crash_child(db: str, side_file: str, die_in: str = "") -> None:
    """Entry point of the crash-test child: run the conversation on SQLiteStore(db)."""
    from fsm_agents.runtime import run_sync
    from fsm_agents.store import SQLiteStore

    agent, model = scripted_agent(side_file, die_in=int(die_in) if die_in else None)
    store = SQLiteStore(db)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": the parent times its SIGKILL from this instant
    run_sync(agent, "start", models={"clerk": model}, store=store, conversation_id=CID)
    print("finished", flush=True)


# -- concurrency -------------------------------------------------------------------------------


def open_store(backend: str, target: str) -> Any:
    from fsm_agents.store import PostgresStore, SQLiteStore

    return SQLiteStore(target) if backend == "sqlite" else PostgresStore(target)


def append_child(backend: str, target: str, cid: str, writer: str, total: str, go_file: str) -> None:
    """Entry point of a concurrency child: print `ready` once its store is open, wait for
    `go_file` to exist (the parent makes it when every child is ready, so they all race whatever
    their start-up time), then append one record at a time with `expected_seq` (the length it
    last saw) until the log holds `total` records; print `win <seq>` / `lose <seq>`."""
    from fsm_agents.errors import ConcurrencyConflict
    from fsm_agents.store import Record

    store = open_store(backend, target)
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.001)
    seq = 0
    lines: list[str] = []
    while seq < int(total):
        try:
            seq = store.append(cid, seq, [Record("event", {"writer": writer, "seq": seq})])
            lines.append(f"win {seq - 1}")
        except ConcurrencyConflict as exc:
            lines.append(f"lose {seq}")
            seq = exc.actual_seq
        time.sleep(random.random() * 0.003)  # let the others in: the winner would otherwise keep winning
    store.close()
    print("\n".join(lines), flush=True)


def python_c(code: str, *args: str) -> list[str]:
    """argv running `code` in a fresh interpreter with tests/ importable."""
    here = str(Path(__file__).parent)
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {here!r}); {code}", *args]


# -- a real PostgreSQL server ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL (the Debian package's binaries) in a temporary directory on 127.0.0.1
    and a free port; yield its DSN; always stop it and delete the directory. As root, the
    server runs as the `postgres` OS user (initdb/postgres refuse root)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make setup` (Debian package postgresql)")
    bindir = Path(found[-1]).parent
    as_user: list[str] = []
    workdir = tempfile.mkdtemp(prefix="fsm-agents-pg-")
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(workdir, "postgres", "postgres")
    data, port = os.path.join(workdir, "data"), _free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
            env=env,
            cwd=workdir,
        )
        opts = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", data, "-o", opts, "-l", os.path.join(workdir, "log"), "-w", "start"],
            check=True,
            capture_output=True,
            env=env,
            cwd=workdir,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
                capture_output=True,
                env=env,
                cwd=workdir,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def postgres_missing() -> str | None:
    """Why the PostgreSQL tests cannot run here (`psycopg` not installed, no server binaries),
    or `None` when they can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "the PostgreSQL server is not installed (make sysdeps: Debian package postgresql)"
    return None


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL server started for this test session (stopped at its end). Without
    psycopg or the server the tests using it are skipped with the reason — except in CI (the
    `CI` environment variable set, as CI services do), where a missing PostgreSQL is a failure."""
    missing = postgres_missing()
    if missing is not None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"PostgreSQL tests cannot run in CI: {missing}")
        pytest.skip(f"PostgreSQL tests skipped: {missing}")
    with postgres_server() as dsn:
        yield dsn


_DB_COUNTER = [0]


def fresh_database(dsn: str) -> str:
    """Create an empty database on the server of `dsn`; return its DSN."""
    import psycopg

    _DB_COUNTER[0] += 1
    name = f"t_{os.getpid()}_{_DB_COUNTER[0]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return dsn.rsplit("/", 1)[0] + "/" + name


def calc_agent() -> Agent:
    """A one-tool agent (for the CLI tests: `store_helpers:calc_agent`)."""

    @tool(idempotent=True)
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return Agent("calc", "add", tools=[add])


def scripted_calc() -> Agent:
    """`calc_agent` on a script: adds 1 and 2, answers "3" (for `fsm-agents run` tests)."""
    from fsm_agents import ScriptedModel
    from fsm_agents.models import call, reply

    agent = calc_agent()
    agent.model = ScriptedModel([reply(None, call("add", "c1", a=1, b=2)), "3"])
    return agent


def modelless() -> Agent:
    """An agent without a model (for the CLI's error path)."""
    return Agent("nomodel", "nothing")


def broken_calc() -> Agent:
    """`calc_agent` on an empty script: its first model call fails, so the run ends FAILED."""
    from fsm_agents import ScriptedModel

    agent = calc_agent()
    agent.model = ScriptedModel([])
    return agent


# -- editing a store behind its back (tampering, and crashes simulated by cutting a log) --------


def raw_sql(store: Any, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run `sql` (`?` placeholders) on a `SQLiteStore`'s or `PostgresStore`'s own connection,
    outside the store's API: how the tests tamper with a database."""
    from fsm_agents.store import PostgresStore

    if isinstance(store, PostgresStore):
        with store._db.transaction():
            store._db.execute(sql.replace("?", "%s"), params)
    else:
        store._db.execute(sql, params)


def remove_tail(store: Any, cid: str, n: int) -> None:
    """Delete the last `n` records of `cid`, leaving the store's head as it was (tampering)."""
    from fsm_agents.store import MemoryStore

    if isinstance(store, MemoryStore):
        store._logs[cid] = store._logs[cid][:-n]
        return
    last = store.load(cid)[-1].seq
    raw_sql(store, "DELETE FROM fsm_records WHERE conversation_id = ? AND seq > ?", (cid, last - n))


def cut_log(store: Any, cid: str, keep: int) -> None:
    """Leave `cid` as a crash after its first `keep` records were appended would have: the later
    records and the head they moved are gone (MemoryStore only)."""
    log = store._logs[cid] = store._logs[cid][:keep]
    store._heads[cid] = (log[-1][0], log[-1][5])


BACKENDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store backend in turn (a fresh PostgreSQL database per test), closed afterwards."""
    s: Store
    if request.param == "memory":
        s = MemoryStore()
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "store.db")
    else:
        s = PostgresStore(fresh_database(request.getfixturevalue("postgres_dsn")))
    yield s
    s.close()
