"""Throughput on Temporal: many concurrent short agent workflows, fsm_agents vs the OpenAI Agents SDK.

    python -m benchmarks.temporal_throughput                      # 1,000 workflows, model answers after 50 ms
    python -m benchmarks.temporal_throughput --workflows 50       # a quick check
    python -m benchmarks.temporal_throughput --only peer          # or --only ours

N workflows (default 1,000) are started at once on one worker and awaited together. Each is a
3-step agent: the model (the local OpenAI-compatible stub, `benchmarks/_openai_stub.py`, replying
after `--delay-ms`, default 50) calls the tool `fetch_page` twice (an activity returning 5 KiB),
then answers; a step is a model call, so 3 N steps. One Temporal dev server on 127.0.0.1 (started
and stopped here, see `benchmarks/_temporal.py`) and one stub serve both frameworks, one after the
other:

- peer: the OpenAI Agents SDK on `temporalio.contrib.openai_agents` (`benchmarks/_temporal_peer.py`),
  workflows started with `client.start_workflow` and awaited with `handle.result()`;
- fsm_agents: `fsm_agents.temporal.run(client, agent, question, id=..., task_queue=...)` on one
  `fsm_agents.temporal.worker(client, task_queue, [agent], store)` with a `SQLiteStore`.

Both workers keep temporalio's default `Worker` options. Printed per framework: wall time from
the first start to the last result, steps/s, the multiple of the zero-overhead ideal (3 × the
model delay), the model requests the stub served, and runs that did not complete (failed, or
still running after `--timeout` s, default 1,200: they are cancelled and the side's wall time is
the timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks._openai_stub import OpenAIStub
from benchmarks._temporal import dev_server, markdown_table, quiet_core_logs, wait_for_namespace

QUESTION = "Read the first two pages with fetch_page, then answer."
TOOL_CALLS = 2  # + the answer: 3 model calls per run


async def within(timeout: float, runs: list[Coroutine[Any, Any, bool]]) -> tuple[list[object], float]:
    """Run `runs` concurrently for at most `timeout` s: each one's result (or exception; a run
    still going at the deadline is cancelled and counts as `TimeoutError`) and the wall time
    until the last one ended (or the deadline)."""
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(r) for r in runs]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    wall = time.perf_counter() - started
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    results: list[object] = []
    for task in tasks:
        if task not in done:
            results.append(TimeoutError(f"not finished within {timeout:g} s"))
        else:
            results.append(task.exception() or task.result())
    return results, wall


@dataclass
class Row:
    framework: str
    runs: int
    wall: float
    failed: int
    requests: int

    @property
    def steps_per_s(self) -> float:
        """Model calls of the completed runs per second."""
        return (self.runs - self.failed) * (TOOL_CALLS + 1) / self.wall


async def run_peer(address: str, stub: OpenAIStub, runs: int, timeout: float) -> Row:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from benchmarks._temporal_peer import PeerAgentWorkflow, PeerInput, fetch_page, plugin

    client = await Client.connect(address, plugins=[plugin(stub.base_url)])
    await wait_for_namespace(client)
    task_queue = f"peer-{uuid.uuid4().hex[:8]}"
    batch = uuid.uuid4().hex[:8]
    stub.reset()
    async with Worker(client, task_queue=task_queue, workflows=[PeerAgentWorkflow], activities=[fetch_page]):
        async def one(i: int) -> bool:
            handle = await client.start_workflow(
                PeerAgentWorkflow.run,
                PeerInput(history=[], question=QUESTION, max_turns=10),
                id=f"peer-tp-{batch}-{i}",
                task_queue=task_queue,
            )
            out = await handle.result()
            return out.model_calls == TOOL_CALLS + 1

        results, wall = await within(timeout, [one(i) for i in range(runs)])
    failed = sum(1 for r in results if r is not True)
    return Row("OpenAI Agents SDK", runs, wall, failed, stub.stats()["requests"])


async def run_ours(address: str, stub: OpenAIStub, runs: int, db: Path, timeout: float) -> Row:
    from temporalio.client import Client

    import fsm_agents.temporal as ft
    from benchmarks._temporal_ours import reader
    from fsm_agents.models import OpenAIChat
    from fsm_agents.store import SQLiteStore

    model = OpenAIChat("stub", base_url=stub.base_url, api_key="stub", max_retries=0)
    client = await Client.connect(address)
    await wait_for_namespace(client)
    task_queue = f"ours-{uuid.uuid4().hex[:8]}"
    batch = uuid.uuid4().hex[:8]
    stub.reset()
    store = SQLiteStore(str(db))
    async with ft.worker(client, task_queue, [reader], store, models={"reader": model}):
        async def one(i: int) -> bool:
            result = await ft.run(client, reader, QUESTION, id=f"ours-tp-{batch}-{i}", task_queue=task_queue, store=store)
            return bool(result.status == "done")

        results, wall = await within(timeout, [one(i) for i in range(runs)])
    failed = sum(1 for r in results if r is not True)
    for error in sorted({repr(r)[:300] for r in results if isinstance(r, BaseException)})[:3]:
        print(f"  fsm_agents error: {error}")
    return Row("fsm_agents", runs, wall, failed, stub.stats()["requests"])


def print_rows(rows: list[Row], delay: float) -> None:
    header = ["framework", "workflows", "wall s", "steps/s", "× ideal", "model requests", "not completed"]
    cells = [
        [
            r.framework,
            f"{r.runs:,}",
            f"{r.wall:.2f}",
            f"{r.steps_per_s:,.0f}",
            f"{r.wall / (3 * delay):.1f}",
            f"{r.requests:,}",
            str(r.failed),
        ]
        for r in rows
    ]
    print()
    print(markdown_table(header, cells))


async def main_async(args: argparse.Namespace) -> None:
    rows: list[Row] = []
    with (
        OpenAIStub(tool_calls=TOOL_CALLS, delay_ms=args.delay_ms) as stub,
        dev_server() as address,
        tempfile.TemporaryDirectory() as tmp,
    ):
        print(f"Temporal dev server on {address}; OpenAI stub on {stub.base_url}, replies after {args.delay_ms:g} ms")
        if args.only in (None, "peer"):
            rows.append(await run_peer(address, stub, args.workflows, args.timeout))
            print_rows(rows[-1:], args.delay_ms / 1000)
        if args.only in (None, "ours"):
            try:
                import fsm_agents.temporal  # noqa: F401
            except ImportError as error:
                print(f"fsm_agents.temporal not available ({error}): our side skipped")
            else:
                rows.append(await run_ours(address, stub, args.workflows, Path(tmp) / "runs.db", args.timeout))
                print_rows(rows[-1:], args.delay_ms / 1000)
    print("\nAll runs:")
    print_rows(rows, args.delay_ms / 1000)
    by = {r.framework: r for r in rows}
    if "fsm_agents" in by and "OpenAI Agents SDK" in by:
        print(f"\npeer wall / fsm_agents wall: {by['OpenAI Agents SDK'].wall / by['fsm_agents'].wall:.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=1000, help="concurrent workflows")
    parser.add_argument("--delay-ms", type=float, default=50, help="the stub's reply delay (ms)")
    parser.add_argument("--only", choices=["ours", "peer"], help="run one side only")
    parser.add_argument("--timeout", type=float, default=1200, help="give up on a side's unfinished runs after this (s)")
    args = parser.parse_args()
    print(
        f"CPython {platform.python_version()} on {platform.machine()}, temporalio {version('temporalio')}, "
        f"openai-agents {version('openai-agents')}, temporalio-openai-agents {version('temporalio-openai-agents')}"
    )
    quiet_core_logs()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
