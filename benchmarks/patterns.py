"""Framework overhead of orchestration patterns: fsm_agents vs LangGraph, µs per child step.

    .venv/bin/python benchmarks/patterns.py            # ≈1-2 min
    .venv/bin/python benchmarks/patterns.py --quick    # a smoke test

Two workloads, each run by both frameworks in the same process, batches interleaved:
- **parallel**: a fan-out to 100 branches, each a scripted 3-step agent (model calls `add`, the tool
  runs, twice; then a text answer), then a fan-in collecting the 100 answers.
  fsm_agents: `Parallel("bench", [100 agents])` run with `fsm_agents.run`. LangGraph: a
  `StateGraph` whose conditional edge returns 100 `Send("branch", ...)`; the branch node invokes the
  compiled agent graph (`MessagesState`, model node, prebuilt `ToolNode`, `tools_condition`) and
  appends its answer to an `operator.add` channel; a `collect` node runs after the fan-in.
- **sequential**: 3 stages, each the same 3-step agent, on one shared conversation.
  fsm_agents: `Sequential("bench", [3 agents])`. LangGraph: three agent subgraphs (the same
  graph as above) added as nodes in a chain `START → s0 → s1 → s2 → END` over `MessagesState`.

A child step is one agent step (a model turn, plus its tool call): 300 per parallel run, 9 per
sequential run. The models are free (replies are built before timing) and the tool runs inline,
so the time measured is the frameworks' own: control flow, state, tool dispatch, fan-out/fan-in.
Reported: median over batches of wall time / child steps, in µs, and LangGraph / fsm_agents.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import operator
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

import anyio

import fsm_agents
from fsm_agents import AssistantMessage, FunctionModel, ToolCall, tool
from fsm_agents.patterns import Parallel, Sequential
from fsm_agents.state import ModelRequest

STEPS = 3  # model turns per agent: add, add, answer
RunOnce = Callable[[], Awaitable[Any]]


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# -- fsm_agents ---------------------------------------------------------------------------------------
def _fsm_model() -> FunctionModel:
    calls = [
        AssistantMessage(tool_calls=(ToolCall(id=f"call_{i}", name="add", arguments=json.dumps({"a": i, "b": 1})),))
        for i in range(STEPS - 1)
    ]
    answer = AssistantMessage(content=f"The result is {STEPS - 1}.")

    def reply(request: ModelRequest) -> AssistantMessage:
        # this agent's turns so far: its own attributed replies (the conversation may be shared)
        turn = sum(1 for m in request.messages if m.role == "assistant" and m.agent == request.agent)
        return calls[turn] if turn < STEPS - 1 else answer

    return FunctionModel(reply)


def _fsm_agents(n: int) -> list[fsm_agents.Agent]:
    add_tool = tool(thread=False)(add)
    model = _fsm_model()
    return [fsm_agents.Agent(f"a{i}", "Add.", model=model, tools=[add_tool], max_steps=STEPS) for i in range(n)]


def fsm_parallel(n: int) -> RunOnce:
    pattern = Parallel("bench", _fsm_agents(n))

    async def once() -> Any:
        result = await fsm_agents.run(pattern, "go")
        assert result.ok and len(result.output) == n, result.failure
        return result

    return once


def fsm_sequential(n: int) -> RunOnce:
    pattern = Sequential("bench", _fsm_agents(n))

    async def once() -> Any:
        result = await fsm_agents.run(pattern, "go")
        assert result.ok and len(result.snapshot.conversation) == 1 + n * (2 * STEPS - 1), result.failure
        return result

    return once


# -- LangGraph ----------------------------------------------------------------------------------------
def _lg_agent_graph() -> Any:
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool as lc_tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    @lc_tool("add")
    async def add_lc(a: int, b: int) -> int:
        """Add two integers."""
        return add(a, b)

    async def model(state: MessagesState) -> dict[str, Any]:
        # this agent's turns so far: tool-calling replies since the last final answer (or the start)
        turn = 0
        for m in reversed(state["messages"]):
            if m.type == "ai":
                if not m.tool_calls:
                    break
                turn += 1
        n = len(state["messages"])
        if turn < STEPS - 1:
            call = {"name": "add", "args": {"a": turn, "b": 1}, "id": f"call_{n}"}
            return {"messages": [AIMessage(content="", id=f"ai_{n}", tool_calls=[call])]}
        return {"messages": [AIMessage(content=f"The result is {STEPS - 1}.", id=f"ai_{n}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode([add_lc]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile()


class FanState(TypedDict):
    topic: str
    results: Annotated[list[str], operator.add]


class BranchState(TypedDict):
    topic: str
    agent: str


def lg_parallel(n: int) -> RunOnce:
    from langchain_core.messages import HumanMessage
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    agent = _lg_agent_graph()

    async def branch(state: BranchState) -> dict[str, Any]:
        out = await agent.ainvoke(
            {"messages": [HumanMessage(state["topic"])]},
            {"recursion_limit": 4 * STEPS},
        )
        return {"results": [out["messages"][-1].content]}

    def fan_out(state: FanState) -> list[Any]:
        return [Send("branch", {"topic": state["topic"], "agent": f"a{i}"}) for i in range(n)]

    def collect(state: FanState) -> dict[str, Any]:
        return {}

    builder = StateGraph(FanState)
    builder.add_node("branch", branch)
    builder.add_node("collect", collect)
    builder.add_conditional_edges(START, fan_out, ["branch"])
    builder.add_edge("branch", "collect")
    builder.add_edge("collect", END)
    graph = builder.compile()

    async def once() -> Any:
        out = await graph.ainvoke({"topic": "go", "results": []})
        assert len(out["results"]) == n
        return out

    return once


def lg_sequential(n: int) -> RunOnce:
    from langchain_core.messages import HumanMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    agent = _lg_agent_graph()
    builder = StateGraph(MessagesState)
    previous = START
    for i in range(n):

        async def stage(state: MessagesState) -> dict[str, Any]:
            out = await agent.ainvoke(state, {"recursion_limit": 4 * STEPS})
            return {"messages": out["messages"][len(state["messages"]) :]}

        builder.add_node(f"s{i}", stage)
        builder.add_edge(previous, f"s{i}")
        previous = f"s{i}"
    builder.add_edge(previous, END)
    graph = builder.compile()

    async def once() -> Any:
        out = await graph.ainvoke({"messages": [HumanMessage("go")]})
        assert len(out["messages"]) == 1 + n * (2 * STEPS - 1), len(out["messages"])
        return out

    return once


# -- harness ------------------------------------------------------------------------------------------
WORKLOADS = {
    "parallel (100 branches)": (100, fsm_parallel, lg_parallel),
    "sequential (3 stages)": (3, fsm_sequential, lg_sequential),
}


async def _batch(once: RunOnce, runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        await once()
    return time.perf_counter() - start


async def measure(runs: int, repeats: int) -> dict[str, tuple[float, float]]:
    """{workload: (fsm µs per child step, langgraph µs per child step)} (medians)."""
    figures: dict[str, tuple[float, float]] = {}
    for label, (n, fsm, lg) in WORKLOADS.items():
        impls = {"fsm_agents": fsm(n), "langgraph": lg(n)}
        steps = n * STEPS
        batch_runs = runs if n > 10 else runs * 20
        for once in impls.values():  # warm-up (imports, caches)
            await _batch(once, 2)
        samples: dict[str, list[float]] = {name: [] for name in impls}
        for _ in range(repeats):
            for name, once in impls.items():  # interleaved: load changes hit both alike
                gc.collect()
                samples[name].append(await _batch(once, batch_runs) / (batch_runs * steps) * 1e6)
        figures[label] = (statistics.median(samples["fsm_agents"]), statistics.median(samples["langgraph"]))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: few runs")
    args = parser.parse_args(argv)
    runs, repeats = (1, 1) if args.quick else (5, 5)
    versions = ", ".join(
        f"{d} {importlib.metadata.version(d)}" for d in ("pydantic", "anyio", "langgraph", "langchain-core")
    )
    print(f"Python {platform.python_version()} on {platform.machine()}; {versions}")
    figures = anyio.run(measure, runs, repeats, backend="asyncio")
    print(f"\n{'workload':<26}{'fsm_agents µs/step':>20}{'langgraph µs/step':>20}{'langgraph / fsm':>18}")
    met = True
    for label, (fsm, lg) in figures.items():
        ratio = lg / fsm
        met &= ratio >= 10
        print(f"{label:<26}{fsm:>20.1f}{lg:>20.1f}{ratio:>17.1f}×")
    print(f"\ntarget ≥ 10× less overhead than LangGraph: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
