"""Many concurrent runs on one event loop: fsm_agents vs LangGraph.

    .venv/bin/python benchmarks/concurrency.py                         # 10,000 runs of each, 3 rounds (≈5 min)
    .venv/bin/python benchmarks/concurrency.py --runs 500 --repeat 1   # a quick check

Each run is a 3-step agent: the model (a `FunctionModel`) sleeps 50 ms per turn, as a remote model
would, and replies with a call to `add` twice, then with a text answer; a step is a model turn, so
a run is 3 steps and 2 tool calls, and the zero-overhead ideal is 3 × 50 ms = 0.15 s whatever the
number of runs. Both frameworks get the same harness: one coroutine per run, all awaited with
`asyncio.gather` under `asyncio.run`, every result kept and checked. fsm_agents: `fsm_agents.run`
(its `FunctionModel` awaits `anyio.sleep`, as the issue specifies). LangGraph: a compiled
`StateGraph(MessagesState)` with a model node, the prebuilt `ToolNode` and `tools_condition`,
`ainvoke` (its model node awaits `asyncio.sleep`). Each measurement runs in a fresh interpreter
with only its framework imported (a row's imports and leftover heap would otherwise be walked by
the next row's garbage collector: LangGraph's imports alone add ≈ 66,000 tracked objects) and
starts from a collected heap (`gc.collect()` first); default GC settings are left alone. In both,
`add` runs inline on the event loop (`@tool(thread=False)`; an async langchain tool); `--thread`
runs the fsm_agents tool in a worker thread instead (anyio's default limiter: 40 threads).
Printed: wall time, steps/s, the time spent in the cyclic GC and its full collections, and
LangGraph's wall time / fsm_agents' wall time. Rows are measured `--repeat` times (default 3),
interleaved; each reports its best round and the median. A first row times the harness alone (n coroutines
awaiting the 3 `anyio.sleep`s, no framework): the floor under both frameworks.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio

TURN_SECONDS = 0.05
STEPS = 3  # model turns per run: two tool calls, then the answer
USER = "Add 1 and 2, then add 3 to the result."


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first addend
        b: the second addend
    """
    return a + b


async def fsm_agents_runs(n: int, *, thread: bool) -> float:
    """Wall time of `n` concurrent fsm_agents runs."""
    import fsm_agents
    from fsm_agents import AssistantMessage, FunctionModel, ToolCall, tool
    from fsm_agents.state import ModelRequest
    calls = [
        AssistantMessage(tool_calls=(ToolCall(id="call_0", name="add", arguments=json.dumps({"a": 1, "b": 2})),)),
        AssistantMessage(tool_calls=(ToolCall(id="call_1", name="add", arguments=json.dumps({"a": 3, "b": 3})),)),
    ]
    answer = AssistantMessage(content="The result is 6.")

    async def reply(request: ModelRequest) -> AssistantMessage:
        await anyio.sleep(TURN_SECONDS)
        turn = (len(request.messages) - 1) // 2  # [user, (assistant, tool) × turns so far]
        return calls[turn] if turn < len(calls) else answer

    agent = fsm_agents.Agent(
        "adder", instructions="Use the add tool.", model=FunctionModel(reply), tools=[tool(thread=thread)(add)]
    )
    started = time.perf_counter()
    results = await asyncio.gather(*(fsm_agents.run(agent, USER) for _ in range(n)))
    elapsed = time.perf_counter() - started
    failed = sum(1 for r in results if not (r.ok and r.output == "The result is 6." and r.snapshot.data.turns == STEPS))
    if failed:
        raise AssertionError(f"fsm_agents: {failed} of {n} runs did not end as scripted")
    return elapsed


async def langgraph_runs(n: int) -> float:
    """Wall time of `n` concurrent LangGraph runs."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.tools import tool as lc_tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    @lc_tool("add")
    async def add_lc(a: int, b: int) -> int:
        """Add two integers."""
        return add(a, b)

    async def model(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(TURN_SECONDS)
        turn = (len(state["messages"]) - 2) // 2  # [system, user, (ai, tool) × turns so far]
        if turn == 0:
            message = AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "call_0"}])
        elif turn == 1:
            message = AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 3, "b": 3}, "id": "call_1"}])
        else:
            message = AIMessage(content="The result is 6.")
        return {"messages": [message]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode([add_lc]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    graph = builder.compile()

    async def one() -> Any:
        return await graph.ainvoke({"messages": [SystemMessage("Use the add tool."), HumanMessage(USER)]})

    started = time.perf_counter()
    outs = await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - started
    bad = sum(1 for out in outs if out["messages"][-1].content != "The result is 6." or len(out["messages"]) != 7)
    if bad:
        raise AssertionError(f"langgraph: {bad} of {n} runs did not end as scripted")
    return elapsed


async def harness_runs(n: int) -> float:
    """Wall time of the harness alone: `n` coroutines that only await the model's 3 sleeps."""

    async def one() -> None:
        for _ in range(STEPS):
            await anyio.sleep(TURN_SECONDS)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - started


class GcClock:
    """Time spent in the cyclic garbage collector while active (`gc.callbacks`), and how many
    full (generation 2) collections ran."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info["generation"] == 2

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def measure(fn: Any) -> tuple[float, GcClock]:
    """(wall seconds, GC clock) of `asyncio.run(fn())`, started from a collected heap."""
    gc.collect()
    with GcClock() as clock:
        wall = asyncio.run(fn())
    return wall, clock


def _versions() -> str:
    parts = [f"python {platform.python_version()}", f"{os.cpu_count()} CPUs"]
    for dist in ("fsm-agents", "anyio", "langgraph", "langchain-core"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    return ", ".join(parts)


def _line(name: str, n: int, wall: float, clock: GcClock) -> str:
    steps = n * STEPS
    return (
        f"{name:<24} {n:>7} {steps:>7} {wall:>9.2f} {steps / wall:>12,.0f} {wall / (STEPS * TURN_SECONDS):>8.1f}"
        f" {clock.seconds:>7.2f} {clock.full:>6}"
    )


ROWS = ("harness only (sleeps)", "fsm_agents", "fsm_agents (thread)", "langgraph")


def _row_coroutine(name: str, n: int) -> Any:
    if name == "harness only (sleeps)":
        return harness_runs(n)
    if name.startswith("fsm_agents"):
        return fsm_agents_runs(n, thread=name == "fsm_agents (thread)")
    return langgraph_runs(n)


def measure_row(name: str, n: int) -> dict[str, float]:
    """Measure one row in this process: a short warm-up (imports, first-call caches), then `n` runs."""
    asyncio.run(_row_coroutine(name, 10))
    wall, clock = measure(lambda: _row_coroutine(name, n))
    return {"wall": wall, "gc": clock.seconds, "full": clock.full}


def measure_row_isolated(name: str, n: int) -> tuple[float, GcClock]:
    """`measure_row` in a fresh interpreter: only that framework is imported, and no other row's
    heap is left for its garbage collector to walk."""
    out = subprocess.run(
        [sys.executable, __file__, "--row", name, "--runs", str(n)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"row {name!r} failed:\n{out.stderr}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    clock = GcClock()
    clock.seconds, clock.full = data["gc"], int(data["full"])
    return data["wall"], clock


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="concurrent runs per framework (default 10000)")
    parser.add_argument("--thread", action="store_true", help="run the fsm_agents tool in a worker thread")
    parser.add_argument("--skip-langgraph", action="store_true", help="measure fsm_agents only")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each row reports its best round (default 3)")
    parser.add_argument("--row", choices=ROWS, help=argparse.SUPPRESS)  # internal: measure one row, print JSON
    args = parser.parse_args(argv)
    n = args.runs
    if args.row:
        print(json.dumps(measure_row(args.row, n)))
        return 0
    rounds = max(1, args.repeat)
    sleep_ms = TURN_SECONDS * 1000
    print(f"concurrency: {n:,} concurrent runs of a {STEPS}-step agent, the model sleeps {sleep_ms:.0f} ms per turn")
    print(f"  {_versions()}; gc enabled: {gc.isenabled()}, thresholds {gc.get_threshold()}; asyncio.run + asyncio.gather")
    print(f"  zero-overhead ideal: {STEPS * TURN_SECONDS:.2f} s wall")
    print(f"  {rounds} round(s), rows interleaved, each measurement in a fresh interpreter; each row reports its")
    print("  best round (min wall, as timeit does: on a shared host, noise only ever adds time) and the median")
    print()
    label = "fsm_agents (thread)" if args.thread else "fsm_agents"
    names = ["harness only (sleeps)", label] + ([] if args.skip_langgraph else ["langgraph"])
    seen: dict[str, list[tuple[float, GcClock]]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            seen[name].append(measure_row_isolated(name, n))
    best = {name: min(rounds_, key=lambda m: m[0]) for name, rounds_ in seen.items()}
    print(
        f"{'framework':<24} {'runs':>7} {'steps':>7} {'wall s':>9} {'steps/s':>12} {'× ideal':>8} {'gc s':>7} {'full':>6}"
        f" {'median s':>9}"
    )
    for name in names:
        print(f"{_line(name, n, *best[name])} {statistics.median(m[0] for m in seen[name]):>9.2f}")
    fsm_wall = best[label][0]
    ratio = None
    if "langgraph" in best:
        ratio = best["langgraph"][0] / fsm_wall
        print()
        print(f"langgraph wall / fsm_agents wall (best rounds): {ratio:.1f}×")
    print()
    print("gc s: time inside the cyclic garbage collector during the row; full: generation-2 collections")
    if n != 10_000:
        verdict = "n/a: not 10,000 runs"
    else:
        verdict = "ok" if fsm_wall <= 2.0 else "MISSED"
        if ratio is not None:
            verdict += f"; ≥ 50× LangGraph: {'ok' if ratio >= 50 else 'MISSED'}"
    print(f"fsm_agents wall: {fsm_wall:.2f} s (target ≤ 2 s at 10,000 runs: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
