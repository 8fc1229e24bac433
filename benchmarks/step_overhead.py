"""Per-step overhead of the scripted tool loop: fsm_agents vs pydantic-graph, Apache Burr, LangGraph.

    .venv/bin/python benchmarks/step_overhead.py            # the full run (a few minutes)
    .venv/bin/python benchmarks/step_overhead.py --quick    # a smoke test (seconds)

The loop: a system message and a user message; the model is scripted to call `add(a, b)` K−1 times,
then to answer with text. One step = one model turn + the tool execution + folding the result into
the history, so a run is K steps (K model turns, K−1 tool calls) and ends with 2K+1 messages.
Reported: wall time of a batch of sequential runs / (runs × K), in µs per step, the median of
several batches; each batch starts after a `gc.collect()` (untimed), with the interpreter's
default GC settings. The model is free (its replies are built before timing), so this is the
framework's own cost: control flow, state updates, tool dispatch and argument parsing.

Each framework runs the loop in its normal way (and fsm_agents also per call, `run_sync` from plain
synchronous code, the "fsm_agents (run_sync)" row, measured after the interleaved ones):
- fsm_agents: `await fsm_agents.run(agent, ...)` — the public run path — with a real `@tool`; the
  `FunctionModel` picks its reply from the number of messages (O(1): `request.messages` is a
  `PersistentLog`, never copied). Measured with `add` inline (`@tool(thread=False)`, the reference
  row) and with the default worker thread (`@tool`, sync tools run in `anyio.to_thread`).
- pydantic-graph: a `GraphBuilder` graph of two `BaseNode`s (model → tool → model ... → `End`);
  state is a dataclass whose `messages` list (OpenAI-style dicts) is appended in place.
- Apache Burr: two async `@action`s with transitions model → tools (`when(has_tool_calls=True)`) and
  tools → model; the history is a list in Burr `State`, grown with `state.append(messages=...)`;
  one `Application` is built per run (Burr keeps a run's state in its application); `arun`.
- LangGraph: a `StateGraph(MessagesState)` (the `add_messages` reducer), a model node, the
  prebuilt `ToolNode` with a langchain `@tool` and `tools_condition`; compiled once, `ainvoke`.
The peers' `add` runs inline (an async langchain tool; a direct call in the others), so the
inline fsm_agents row is the like-for-like reference. fsm_agents also validates the arguments
with the tool's pydantic model (LangGraph's ToolNode does too; the pydantic-graph and Burr
loops only `json.loads` them).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

import fsm_agents
from fsm_agents import AssistantMessage, FunctionModel, ToolCall, ToolMessage, tool
from fsm_agents.state import ModelRequest

SYSTEM = "You are a calculator. Use the add tool."
USER = "Keep adding one."

RunOnce = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Impl:
    """One framework's loop: `prepare(K)` builds (outside timing) what a run needs and returns a
    coroutine function performing one full run; `tool_results(output)` counts the tool results
    in the run's final history (checked after warm-up, never timed)."""

    name: str
    prepare: Callable[[int], RunOnce]
    tool_results: Callable[[Any], int]


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first addend
        b: the second addend
    """
    return a + b


# ---------------------------------------------------------------------------------------------
# fsm_agents
# ---------------------------------------------------------------------------------------------


def _fsm_agent(k: int, *, thread: bool) -> fsm_agents.Agent:
    """The calculator agent whose `FunctionModel` calls `add` K−1 times, then answers."""
    add_tool = tool(thread=thread)(add)
    calls = [
        AssistantMessage(tool_calls=(ToolCall(id=f"call_{i}", name="add", arguments=json.dumps({"a": i, "b": 1})),))
        for i in range(k - 1)
    ]
    answer = AssistantMessage(content=f"The result is {k - 1}.")

    def reply(request: ModelRequest) -> AssistantMessage:
        # the history is [user, (assistant, tool) × turns so far]; the system prompt is `instructions`
        turn = (len(request.messages) - 1) // 2
        return calls[turn] if turn < k - 1 else answer

    return fsm_agents.Agent("calculator", instructions=SYSTEM, model=FunctionModel(reply), tools=[add_tool], max_steps=k)


def _fsm_prepare(k: int, *, thread: bool) -> RunOnce:
    agent = _fsm_agent(k, thread=thread)

    async def run_once() -> Any:
        result = await fsm_agents.run(agent, USER)
        if not result.ok:
            raise RuntimeError(f"fsm_agents run failed: {result.failure}")
        return result.snapshot.conversation.messages

    return run_once


def _fsm_sync_batch(k: int, runs: int, warmup: int) -> tuple[float, Any]:
    """µs per step of `runs` sequential `fsm_agents.run_sync` calls from plain synchronous code
    (the per-call path a script takes: each call enters an event loop and leaves it)."""
    agent = _fsm_agent(k, thread=False)
    result = None
    for _ in range(warmup):
        result = fsm_agents.run_sync(agent, USER)
    gc.collect()
    started = time.perf_counter()
    for _ in range(runs):
        result = fsm_agents.run_sync(agent, USER)
    return (time.perf_counter() - started) / (runs * k) * 1e6, result


def sync_rows(configs: Sequence[Config]) -> list[Row]:
    """The `run_sync` per-call rows (outside any event loop, so not interleaved with the others)."""
    rows = []
    for cfg in configs:
        samples = []
        for _ in range(cfg.repeats):
            us, result = _fsm_sync_batch(cfg.k, cfg.runs, cfg.warmup)
            if not result.ok:
                raise RuntimeError(f"fsm_agents run_sync failed: {result.failure}")
            samples.append(us)
        rows.append(Row(SYNC, cfg.k, statistics.median(samples), samples))
    return rows


def _fsm_tool_results(history: Sequence[Any]) -> int:
    return sum(1 for m in history if isinstance(m, ToolMessage) and not m.is_error)


# ---------------------------------------------------------------------------------------------
# pydantic-graph
# ---------------------------------------------------------------------------------------------


def _openai_replies(k: int) -> list[dict[str, Any]]:
    """The scripted replies as OpenAI chat-completions assistant messages."""
    replies: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": "add", "arguments": json.dumps({"a": i, "b": 1})},
                }
            ],
        }
        for i in range(k - 1)
    ]
    replies.append({"role": "assistant", "content": f"The result is {k - 1}.", "tool_calls": []})
    return replies


def _openai_tool_results(history: Sequence[dict[str, Any]]) -> int:
    return sum(1 for m in history if m["role"] == "tool")


def _pydantic_graph_prepare(k: int) -> RunOnce:
    from pydantic_graph import BaseNode, End, GraphBuilder, GraphRunContext, StepContext

    @dataclass
    class LoopState:
        messages: list[dict[str, Any]]

    Replies = list[dict[str, Any]]  # the graph's deps: the scripted replies

    @dataclass
    class CallModel(BaseNode[LoopState, Replies, str]):
        async def run(self, ctx: GraphRunContext[LoopState, Replies]) -> RunTools | End[str]:
            messages = ctx.state.messages
            reply = ctx.deps[(len(messages) - 2) // 2]
            messages.append(reply)
            return RunTools() if reply["tool_calls"] else End(reply["content"])

    @dataclass
    class RunTools(BaseNode[LoopState, Replies, str]):
        async def run(self, ctx: GraphRunContext[LoopState, Replies]) -> CallModel:
            messages = ctx.state.messages
            for call in messages[-1]["tool_calls"]:
                args = json.loads(call["function"]["arguments"])
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": str(add(**args))})
            return CallModel()

    g = GraphBuilder(name="tool_loop", state_type=LoopState, deps_type=Replies, output_type=str)

    @g.step
    async def start(ctx: StepContext[LoopState, Replies, None]) -> CallModel:
        return CallModel()

    g.add(g.node(CallModel), g.node(RunTools), g.edge_from(g.start_node).to(start))
    graph = g.build()
    replies = _openai_replies(k)

    async def run_once() -> Any:
        state = LoopState(messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}])
        await graph.run(state=state, deps=replies)
        return state.messages

    return run_once


# ---------------------------------------------------------------------------------------------
# Apache Burr
# ---------------------------------------------------------------------------------------------


def _burr_prepare(k: int) -> RunOnce:
    from burr.core import ApplicationBuilder, State, action, default, when

    replies = _openai_replies(k)

    @action(reads=["messages"], writes=["messages", "has_tool_calls"])
    async def model(state: State) -> State:
        reply = replies[(len(state["messages"]) - 2) // 2]
        return state.append(messages=reply).update(has_tool_calls=bool(reply["tool_calls"]))

    @action(reads=["messages"], writes=["answer"])
    async def respond(state: State) -> State:
        return state.update(answer=state["messages"][-1]["content"])

    @action(reads=["messages"], writes=["messages"])
    async def tools(state: State) -> State:
        for call in state["messages"][-1]["tool_calls"]:
            args = json.loads(call["function"]["arguments"])
            state = state.append(messages={"role": "tool", "tool_call_id": call["id"], "content": str(add(**args))})
        return state

    async def run_once() -> Any:
        app = (
            ApplicationBuilder()
            .with_actions(model=model, tools=tools, respond=respond)
            .with_transitions(
                ("model", "tools", when(has_tool_calls=True)), ("model", "respond", default), ("tools", "model")
            )
            .with_state(
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
                has_tool_calls=False,
            )
            .with_entrypoint("model")
            .build()
        )
        _, _, state = await app.arun(halt_after=["respond"])
        return state["messages"]

    return run_once


# ---------------------------------------------------------------------------------------------
# LangGraph
# ---------------------------------------------------------------------------------------------


def _langgraph_prepare(k: int) -> RunOnce:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.tools import tool as lc_tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    @lc_tool("add")
    async def add_lc(a: int, b: int) -> int:
        """Add two integers."""
        return add(a, b)

    # ids given up front: add_messages would otherwise assign (mutate) ids on these shared objects
    replies = [
        AIMessage(content="", id=f"ai_{i}", tool_calls=[{"name": "add", "args": {"a": i, "b": 1}, "id": f"call_{i}"}])
        for i in range(k - 1)
    ]
    replies.append(AIMessage(content=f"The result is {k - 1}.", id=f"ai_{k - 1}"))

    async def model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [replies[(len(state["messages"]) - 2) // 2]]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode([add_lc]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    graph = builder.compile()
    config = {"recursion_limit": 2 * k + 10}

    async def run_once() -> Any:
        out = await graph.ainvoke({"messages": [SystemMessage(SYSTEM), HumanMessage(USER)]}, config)
        return out["messages"]

    return run_once


def _langgraph_tool_results(history: Sequence[Any]) -> int:
    return sum(1 for m in history if m.type == "tool" and m.status == "success")


IMPLS: tuple[Impl, ...] = (
    Impl("fsm_agents", lambda k: _fsm_prepare(k, thread=False), _fsm_tool_results),
    Impl("fsm_agents (thread)", lambda k: _fsm_prepare(k, thread=True), _fsm_tool_results),
    Impl("pydantic-graph", _pydantic_graph_prepare, _openai_tool_results),
    Impl("burr", _burr_prepare, _openai_tool_results),
    Impl("langgraph", _langgraph_prepare, _langgraph_tool_results),
)
REFERENCE = "fsm_agents"
SYNC = "fsm_agents (run_sync)"


# ---------------------------------------------------------------------------------------------
# harness
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    k: int
    runs: int  # sequential runs per timed batch
    repeats: int  # timed batches; the median is reported
    warmup: int  # untimed runs first


FULL = (Config(10, 100, 7, 20), Config(200, 5, 5, 2), Config(1000, 1, 5, 2))
QUICK = (Config(10, 20, 3, 5), Config(200, 1, 3, 1), Config(1000, 1, 1, 1))


@dataclass
class Row:
    impl: str
    k: int
    us_per_step: float | None
    samples: list[float]
    note: str = ""


async def _batch(run_once: RunOnce, runs: int, k: int) -> float:
    # every batch starts from a collected heap, so one framework's garbage (the batches are
    # interleaved) does not trigger collections timed against the next one
    gc.collect()
    started = time.perf_counter()
    for _ in range(runs):
        await run_once()
    return (time.perf_counter() - started) / (runs * k) * 1e6


def _estimate_run_seconds(measured: Sequence[tuple[int, float]], k: int) -> float | None:
    """Seconds one run of K steps should take, from earlier (K, µs/step) medians: per-step cost
    fitted as a + b·K through the last two sizes (flat with one size; never below the last)."""
    if not measured:
        return None
    k1, us1 = measured[-1]
    per_step = us1
    if len(measured) >= 2:
        k0, us0 = measured[-2]
        per_step = max(us1, us1 + (us1 - us0) / (k1 - k0) * (k - k1))
    return per_step * 1e-6 * k


async def bench(impls: Sequence[Impl], configs: Sequence[Config], budget: float) -> list[Row]:
    rows: list[Row] = []
    measured: dict[str, list[tuple[int, float]]] = {impl.name: [] for impl in impls}
    for cfg in configs:
        active: list[tuple[Impl, RunOnce, int]] = []
        for impl in impls:
            repeats = cfg.repeats
            estimate = _estimate_run_seconds(measured[impl.name], cfg.k)
            if estimate is not None:
                if estimate > budget:
                    note = f"skipped: one run estimated at {estimate:.0f} s > budget {budget:.0f} s"
                    rows.append(Row(impl.name, cfg.k, None, [], note))
                    continue
                if estimate * (cfg.runs * cfg.repeats + cfg.warmup) > budget:
                    repeats = max(1, int((budget / estimate - cfg.warmup) // cfg.runs))
            run_once = impl.prepare(cfg.k)
            for _ in range(cfg.warmup):
                output = await run_once()
            found = impl.tool_results(output)
            if found != cfg.k - 1:
                raise AssertionError(f"{impl.name} at K={cfg.k}: {found} tool results, expected {cfg.k - 1}")
            active.append((impl, run_once, repeats))
        samples: dict[str, list[float]] = {impl.name: [] for impl, _, _ in active}
        # interleave the frameworks batch by batch so a change in machine load hits all of them alike
        for r in range(cfg.repeats):
            for impl, run_once, repeats in active:
                if r < repeats:
                    samples[impl.name].append(await _batch(run_once, cfg.runs, cfg.k))
        for impl, _, repeats in active:
            note = ""
            if repeats < cfg.repeats:
                note = f"capped at {repeats} batch(es) of {cfg.runs}: time budget {budget:.0f} s per framework and K"
            median = statistics.median(samples[impl.name])
            rows.append(Row(impl.name, cfg.k, median, samples[impl.name], note))
            measured[impl.name].append((cfg.k, median))
    return rows


def _versions() -> list[str]:
    out = [
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    ]
    for dist in ("fsm-agents", "pydantic", "anyio", "pydantic-graph", "apache-burr", "langgraph", "langchain-core"):
        try:
            out.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{dist} (not installed)")
    return out


def _table(rows: Sequence[Row], configs: Sequence[Config]) -> str:
    ref = {r.k: r.us_per_step for r in rows if r.impl == REFERENCE}
    lines = [f"{'framework':<22} {'K':>5} {'runs×batches':>13} {'µs/step':>10} {'× fsm_agents':>13}  note"]
    runs = {c.k: c.runs for c in configs}
    order = [i.name for i in IMPLS] + [SYNC]
    for row in sorted(rows, key=lambda r: (r.k, order.index(r.impl))):
        if row.us_per_step is None:
            lines.append(f"{row.impl:<22} {row.k:>5} {'-':>13} {'-':>10} {'-':>13}  {row.note}")
            continue
        base = ref.get(row.k)
        ratio = f"{row.us_per_step / base:.2f}" if base else "-"
        shape = f"{runs[row.k]}×{len(row.samples)}"
        lines.append(f"{row.impl:<22} {row.k:>5} {shape:>13} {row.us_per_step:>10.1f} {ratio:>13}  {row.note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batches: a smoke test, not a measurement")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help=f"frameworks to run, among: {', '.join(i.name for i in IMPLS)}, {SYNC}"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=30.0,
        help="seconds a framework may spend at one K (estimated from the previous K); slower ones run fewer batches "
        "or are skipped (default 30)",
    )
    args = parser.parse_args(argv)
    impls = [i for i in IMPLS if not args.only or i.name in args.only]
    configs = QUICK if args.quick else FULL
    print("step_overhead: the scripted tool loop (K steps = K model turns + K−1 add() calls), µs per step")
    for line in _versions():
        print("  " + line)
    print(f"  gc enabled: {gc.isenabled()}; event loop: asyncio via anyio.run; timer: time.perf_counter")
    print()
    rows = anyio.run(bench, impls, configs, args.budget, backend="asyncio")
    if not args.only or SYNC in args.only:
        rows += sync_rows(configs)
    print(_table(rows, configs))
    print()
    ref = {r.k: r.us_per_step for r in rows if r.impl == REFERENCE and r.us_per_step is not None}
    if 10 in ref:
        verdict = "ok" if ref[10] <= 50 else "MISSED"
        print(f"fsm_agents at K=10: {ref[10]:.1f} µs/step (target ≤ 50: {verdict})")
    per_call = {r.k: r.us_per_step for r in rows if r.impl == SYNC and r.us_per_step is not None}
    if 10 in ref and 10 in per_call:
        ratio = per_call[10] / ref[10]
        verdict = "ok" if ratio <= 1.3 else "MISSED"
        print(
            f"fsm_agents run_sync per call at K=10: {per_call[10]:.1f} µs/step, {ratio:.2f}× the awaited path "
            f"(target ≤ 1.3: {verdict})"
        )
    if 10 in ref and 1000 in ref:
        growth = ref[1000] / ref[10]
        verdict = "ok" if growth <= 1.3 else "MISSED"
        print(f"fsm_agents K=1000 / K=10: {growth:.2f} (target ≤ 1.3: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
