"""Persistence cost: bytes written per step and steps/s, fsm_agents `SQLiteStore` vs LangGraph `SqliteSaver`.

    .venv/bin/python benchmarks/persistence.py              # 10, 100, 500 and 1,000 steps
    .venv/bin/python benchmarks/persistence.py --quick      # 10 and 100 steps

The loop (the same for both, in the same process and run): a user message; the model is scripted
to call `lookup(n)` K−1 times, then to answer. Each reply carries ~100 characters of text and
each tool result ~100 characters, so the message content per step is ~100 bytes. One *step* is
one persisted transition of the loop: a model turn or a tool execution (a run of K turns is
2K−1 steps; LangGraph's super-steps are the same two nodes).

- fsm_agents: `run(agent, ..., store=SQLiteStore(path))` — the event log: per step one "started"
  ledger append, then the event + "finished" in one transaction (WAL, synchronous=NORMAL).
- LangGraph: a `StateGraph(MessagesState)` with a model node and a tool node and
  `SqliteSaver` (langgraph-checkpoint-sqlite) as checkpointer, `graph.invoke` — it checkpoints
  the whole state after every super-step.

Reported per run length: steps/s (wall time of the whole run, persistence included), the
database file's size per step after the run (the WAL checkpointed), and the bytes the process
handed to `write(2)` per step (`wchar` of /proc/self/io: WAL + checkpoints + journal), i.e.
what really goes to the disk. Needs the `bench` extra.
"""

import argparse
import gc
import importlib.metadata
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEXT = "I will look that up in the reference table before answering; one moment while I check it. "  # ~100 chars
USER = "What is the sum of the numbers in the reference table?"


def _wchar() -> int:
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        pass
    return 0


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def measure(fn: Callable[[Path], int], path: Path) -> dict[str, float]:
    gc.collect()
    w0, t0 = _wchar(), time.perf_counter()
    steps = fn(path)
    elapsed = time.perf_counter() - t0
    written = _wchar() - w0
    return {
        "steps": steps,
        "seconds": elapsed,
        "steps_per_s": steps / elapsed,
        "file_per_step": _size(path) / steps,
        "written_per_step": written / steps,
    }


def fsm_agents_run(k: int) -> Callable[[Path], int]:
    from fsm_agents import Agent, FunctionModel, run_sync, tool
    from fsm_agents.models.scripted import call, reply
    from fsm_agents.state import ModelRequest
    from fsm_agents.store import SQLiteStore

    @tool(thread=False)
    def lookup(n: int) -> str:
        """Look a row up."""
        return f"row {n}: " + TEXT[: 100 - 8]

    def respond(request: ModelRequest) -> Any:
        turn = (len(request.messages) - 1) // 2
        return reply(TEXT) if turn >= k - 1 else reply(TEXT, call("lookup", f"call_{turn}", n=turn))

    agent = Agent("bench", "You answer from the table.", tools=[lookup], max_steps=k + 1)

    def go(path: Path) -> int:
        with SQLiteStore(path) as store:
            result = run_sync(agent, USER, models={"bench": FunctionModel(respond)}, store=store, conversation_id="bench")
        assert result.ok and len(result.events) == 2 * k - 1, (result.phase, result.failure)
        return len(result.events)

    return go


def langgraph_run(k: int) -> Callable[[Path], int]:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, MessagesState, StateGraph

    def model(state: MessagesState) -> dict[str, Any]:
        turn = (len(state["messages"]) - 1) // 2
        if turn >= k - 1:
            return {"messages": [AIMessage(content=TEXT, id=f"ai_{turn}")]}
        calls = [{"name": "lookup", "args": {"n": turn}, "id": f"call_{turn}"}]
        return {"messages": [AIMessage(content=TEXT, id=f"ai_{turn}", tool_calls=calls)]}

    def tools(state: MessagesState) -> dict[str, Any]:
        last = state["messages"][-1]
        out = [
            ToolMessage(content=f"row {c['args']['n']}: " + TEXT[: 100 - 8], tool_call_id=c["id"], name="lookup")
            for c in last.tool_calls  # type: ignore[attr-defined]
        ]
        return {"messages": out}

    def route(state: MessagesState) -> str:
        return "tools" if state["messages"][-1].tool_calls else END  # type: ignore[attr-defined]

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", tools)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", route)
    builder.add_edge("tools", "model")

    def go(path: Path) -> int:
        conn = sqlite3.connect(path, check_same_thread=False)
        try:
            graph = builder.compile(checkpointer=SqliteSaver(conn))
            config = {"recursion_limit": 2 * k + 10, "configurable": {"thread_id": "bench"}}
            out = graph.invoke({"messages": [HumanMessage(USER)]}, config)
        finally:
            conn.close()
        assert len(out["messages"]) == 2 * k
        return 2 * k - 1

    return go


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 and 100 steps only")
    parser.add_argument("--steps", type=int, nargs="*", default=None, help="run lengths in steps (≈2K−1 for K turns)")
    args = parser.parse_args(argv)
    lengths = args.steps or ([10, 100] if args.quick else [10, 100, 500, 1000])
    versions = {d: importlib.metadata.version(d) for d in ("fsm-agents", "langgraph", "langgraph-checkpoint-sqlite")}
    print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, {versions}")
    print(f"{'steps':>6} {'impl':<22} {'steps/s':>10} {'file B/step':>12} {'written B/step':>15} {'seconds':>8}")
    rows: dict[tuple[int, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fsm-persist-bench-") as tmp:
        for n in lengths:
            k = (n + 2) // 2  # 2K−1 steps ≈ n
            for name, make in (("fsm_agents SQLiteStore", fsm_agents_run), ("LangGraph SqliteSaver", langgraph_run)):
                path = Path(tmp) / f"{name.split()[0]}-{n}.db"
                r = measure(make(k), path)
                rows[(n, name)] = r
                print(
                    f"{int(r['steps']):>6} {name:<22} {r['steps_per_s']:>10,.0f} {r['file_per_step']:>12,.0f} "
                    f"{r['written_per_step']:>15,.0f} {r['seconds']:>8.2f}",
                    flush=True,
                )
                os.remove(path)
        for n in lengths:
            a, b = rows[(n, "fsm_agents SQLiteStore")], rows[(n, "LangGraph SqliteSaver")]
            print(
                f"{n:>6} steps: fsm_agents is {a['steps_per_s'] / b['steps_per_s']:.1f}x faster and writes "
                f"{b['written_per_step'] / max(a['written_per_step'], 1):.0f}x fewer bytes per step"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
