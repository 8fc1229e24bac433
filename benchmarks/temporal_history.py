"""Temporal history size of one long agent turn: fsm_agents.temporal vs the OpenAI Agents SDK.

    python -m benchmarks.temporal_history                          # ≈105k and ≈209k tokens, 100 tool calls
    python -m benchmarks.temporal_history --tokens 2000 --tool-calls 5   # a quick check
    python -m benchmarks.temporal_history --only peer              # or --only ours

The workload of issue 16 (a real report on the peer's tracker): a conversation preloaded with ≈ T
tokens (tokens estimated as characters / 4; T = 105,000 and 209,000), then one user turn in which
the model calls one tool 100 times — each call returns 5 KiB — and then answers: 101 model calls.
The model is a local OpenAI-compatible stub (`benchmarks/_openai_stub.py`) on 127.0.0.1 that
scripts exactly that from each request; both frameworks talk to it with their own
chat-completions client. One Temporal dev server (`temporal server start-dev`, SQLite, on
127.0.0.1, started and stopped here) runs both, with the production history limits (50 MiB /
51,200 events; see `benchmarks/_temporal.py` for where they come from).

- peer: an `agents.Agent` run by `Runner.run` in a workflow, on `temporalio.contrib.openai_agents`
  (`OpenAIAgentsPlugin`; the tool is an activity through `workflow.activity_as_tool`);
  see `benchmarks/_temporal_peer.py`.
- fsm_agents: `fsm_agents.Agent` with the same tool, `OpenAIChat` on the stub, run by
  `fsm_agents.temporal.run` on a `fsm_agents.temporal.worker` whose store is a `SQLiteStore`.

Both receive the preloaded conversation as their workflow's input (so it is in the history at
least once, in the `WorkflowExecutionStarted` event). Printed per framework and size: model calls
reached (model activities scheduled: the peer's `invoke_model_activity`; ours counted by the stub),
the workflow's end (COMPLETED, or TERMINATED by the history limit), Temporal history bytes — the
server's own `history_size_bytes` (what the limit is checked against) and, as a cross-check, the
sum of the serialized `HistoryEvent` protos fetched through the client —, the event count, the
bytes written once (history less the loop) and the loop's bytes per model call: the events from
the first model activity's scheduling to the last activity's completion, divided by the model
calls (what each step of the turn adds), the largest model request the stub received, and wall
time. Target (issue 16): fsm_agents completes both sizes with history ≤ 5 MB, bytes per model
call independent of the conversation size.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks._openai_stub import OpenAIStub
from benchmarks._temporal import (
    HistoryFigures,
    dev_server,
    history_figures,
    markdown_table,
    mib,
    preloaded_conversation,
    quiet_core_logs,
    tool_output,
    wait_for_namespace,
)

QUESTION = "Read the report's pages one by one with fetch_page, then summarise it."
TARGET_BYTES = 5_000_000


@dataclass
class Row:
    framework: str
    tokens: int
    model_calls: int
    figures: HistoryFigures
    wall: float
    max_request: int
    note: str = ""

    @property
    def per_call(self) -> float:
        """History bytes of the turn's loop per model call (`HistoryFigures.loop_bytes`)."""
        return self.figures.loop_bytes / max(self.model_calls, 1)


async def run_peer(address: str, stub: OpenAIStub, tokens: int, tool_calls: int) -> Row:
    from temporalio.client import Client, WorkflowFailureError
    from temporalio.worker import Worker

    from benchmarks._temporal_peer import PeerAgentWorkflow, PeerInput, fetch_page, plugin

    client = await Client.connect(address, plugins=[plugin(stub.base_url)])
    await wait_for_namespace(client)
    history = preloaded_conversation(tokens)
    task_queue = f"peer-{uuid.uuid4().hex[:8]}"
    stub.reset()
    note = ""
    async with Worker(client, task_queue=task_queue, workflows=[PeerAgentWorkflow], activities=[fetch_page]):
        started = time.perf_counter()
        handle = await client.start_workflow(
            PeerAgentWorkflow.run,
            PeerInput(history=history, question=QUESTION, max_turns=tool_calls + 10),
            id=f"peer-history-{tokens}-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        try:
            await handle.result()
        except WorkflowFailureError as error:
            note = str(error.cause) if error.cause is not None else str(error)
        wall = time.perf_counter() - started
    figures = await history_figures(handle, "invoke_model_activity")
    stats = stub.stats()
    calls = figures.activities.get("invoke_model_activity", 0)
    return Row("OpenAI Agents SDK", tokens, calls, figures, wall, stats["max_bytes"], note)


async def run_ours(address: str, stub: OpenAIStub, tokens: int, tool_calls: int, db: Path) -> Row:
    from temporalio.client import Client

    import fsm_agents.temporal as ft
    from benchmarks._temporal_ours import reader
    from fsm_agents import AssistantMessage, UserMessage
    from fsm_agents.models import OpenAIChat
    from fsm_agents.store import SQLiteStore

    model = OpenAIChat("stub", base_url=stub.base_url, api_key="stub", max_retries=0)
    messages: list[Any] = [
        UserMessage(content=text) if role == "user" else AssistantMessage(content=text)
        for role, text in preloaded_conversation(tokens)
    ]
    messages.append(UserMessage(content=QUESTION))
    client = await Client.connect(address)
    await wait_for_namespace(client)
    task_queue = f"ours-{uuid.uuid4().hex[:8]}"
    workflow_id = f"ours-history-{tokens}-{uuid.uuid4().hex[:8]}"
    stub.reset()
    store = SQLiteStore(str(db))
    note = ""
    async with ft.worker(client, task_queue, [reader], store, models={"reader": model}):
        started = time.perf_counter()
        try:
            result = await ft.run(client, reader, messages, id=workflow_id, task_queue=task_queue, store=store)
        except Exception as error:  # a failed workflow: report it beside the figures
            note = f"{type(error).__name__}: {error}"
        else:
            if result.status != "done":
                note = f"run ended {result.status}"
        wall = time.perf_counter() - started
    figures = await history_figures(client.get_workflow_handle(workflow_id), "fsm_agents.perform")
    stats = stub.stats()
    return Row("fsm_agents", tokens, stats["requests"], figures, wall, stats["max_bytes"], note)


def print_rows(rows: list[Row]) -> None:
    header = ["framework", "tokens", "model calls", "end", "history (server)", "history (events)", "events"]
    header += ["written once", "loop bytes/model call", "largest request", "wall s"]
    cells = [
        [
            r.framework,
            f"{r.tokens:,}",
            str(r.model_calls),
            r.figures.status,
            mib(r.figures.server_bytes),
            mib(r.figures.event_bytes),
            str(r.figures.events),
            mib(r.figures.event_bytes - r.figures.loop_bytes),
            f"{r.per_call:,.0f}",
            mib(r.max_request),
            f"{r.wall:.1f}",
        ]
        for r in rows
    ]
    print()
    print(markdown_table(header, cells))
    for r in rows:
        if r.note:
            print(f"  {r.framework}, {r.tokens:,} tokens: {r.note}")
        if r.figures.loop_bytes == 0:
            print(f"  {r.framework}, {r.tokens:,} tokens: no model-call activity found in the history (renamed?)")


def verdict(rows: list[Row], tool_calls: int) -> None:
    ours = [r for r in rows if r.framework == "fsm_agents"]
    for r in rows:
        if r.framework != "fsm_agents":
            calls = f"{r.model_calls} of {tool_calls + 1} model calls"
            print(f"peer, {r.tokens:,} tokens: {calls}, {r.figures.status}, {mib(r.figures.server_bytes)}")
    if not ours:
        return
    complete = all(r.figures.status == "COMPLETED" and r.model_calls == tool_calls + 1 for r in ours)
    largest = max(r.figures.server_bytes for r in ours)
    print(f"fsm_agents completes every size: {'met' if complete else 'NOT met'}")
    print(f"fsm_agents history ≤ 5 MB: {'met' if largest <= TARGET_BYTES else 'NOT met'} (largest {mib(largest)})")
    if len(ours) > 1:
        per_call = [r.per_call for r in ours]
        spread = max(per_call) / min(per_call)
        verdict = "independent of the conversation size" if spread < 1.1 else "DEPENDS on the size"
        print(
            f"fsm_agents bytes per model call: {', '.join(f'{p:,.0f}' for p in per_call)} (max/min {spread:.2f}: {verdict})"
        )


async def main_async(args: argparse.Namespace) -> None:
    rows: list[Row] = []
    with OpenAIStub(tool_calls=args.tool_calls) as stub, dev_server() as address, tempfile.TemporaryDirectory() as tmp:
        print(f"Temporal dev server on {address}; OpenAI stub on {stub.base_url}")
        for tokens in args.tokens:
            if args.only in (None, "ours"):
                try:
                    import fsm_agents.temporal  # noqa: F401
                except ImportError as error:
                    print(f"fsm_agents.temporal not available ({error}): our side skipped")
                else:
                    rows.append(await run_ours(address, stub, tokens, args.tool_calls, Path(tmp) / f"runs-{tokens}.db"))
                    print_rows(rows[-1:])
            if args.only in (None, "peer"):
                rows.append(await run_peer(address, stub, tokens, args.tool_calls))
                print_rows(rows[-1:])
    print("\nAll runs:")
    print_rows(rows)
    verdict(rows, args.tool_calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tokens", type=int, nargs="+", default=[105_000, 209_000], help="preloaded conversation sizes (≈ tokens)"
    )
    parser.add_argument("--tool-calls", type=int, default=100, help="tool calls in the turn before the answer")
    parser.add_argument("--only", choices=["ours", "peer"], help="run one side only")
    args = parser.parse_args()
    print(
        f"CPython {platform.python_version()} on {platform.machine()}, temporalio {version('temporalio')}, "
        f"openai-agents {version('openai-agents')}, temporalio-openai-agents {version('temporalio-openai-agents')}"
    )
    workload = f"tool output {len(tool_output(1)):,} bytes; {args.tool_calls} tool calls + the answer"
    print(f"tokens estimated as characters / 4; {workload}")
    quiet_core_logs()
    asyncio.run(main_async(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
