# ruff: noqa: E402  (the imports follow the sys.path fix below)
"""MCP tool calls: our toolset's path against the `mcp` SDK's `ClientSession.call_tool` directly.

    .venv/bin/python benchmarks/mcp.py                 # 12 rounds of 100 calls per row
    .venv/bin/python benchmarks/mcp.py --rounds 3      # a quick check

One real stdio server, `mcp-server-time` (`python -m mcp_server_time`), one connection to it
(`async with MCPServerStdio(...)`), and `get_current_time(timezone="UTC")` called one at a time
by three rows, interleaved round by round (each round starting at the next row) so a change in
machine load hits all alike:

- `ClientSession.call_tool` — the SDK's call on the very session our toolset holds (the floor);
- `RunTools performer` — `fsm_agents.runtime.performers.run_tools` with a one-call `RunTools`
  effect, as the driver performs it: the executor looks the tool up, checks the arguments
  against the server's `inputSchema`, calls, turns the result into text, builds `ToolsFinished`;
- `agent run, 20 calls` — `fsm_agents.run` of an agent whose `FunctionModel` calls the tool once
  per turn, 20 turns, then answers: also the model steps and the history (per call).

Printed per row: calls per second (the median round), its share of the SDK's rate and the spread
of the rounds (p25-p75: on a shared host the server's scheduling dominates it), and the CPU time
this process spent per call (`time.process_time`: the client side, the SDK's and ours, without
the server's), the steadier measure of what our path adds.
Target (issue 15): the RunTools path ≥ 90 % of `ClientSession.call_tool`'s calls per second.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio

# this file is named like the SDK: its folder must not shadow the `mcp` package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from fsm_agents import Agent, FunctionModel, run
from fsm_agents.events import RunTools, ToolsFinished
from fsm_agents.mcp import MCPServerStdio
from fsm_agents.models import call, reply
from fsm_agents.runtime.performers import run_tools
from fsm_agents.runtime.result import Limits
from fsm_agents.runtime.session import RunState, Session
from fsm_agents.runtime.toolsets import toolsets_opened
from fsm_agents.state import ModelRequest, ToolCall, ToolMessage

TARGET = 0.90
AGENT_CALLS = 20


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds (the median is printed)")
    parser.add_argument("--calls", type=int, default=100, help="calls per row and round")
    args = parser.parse_args(argv)
    anyio.run(bench, args.rounds, args.calls)
    return 0


async def bench(rounds: int, calls: int) -> None:
    server = MCPServerStdio(sys.executable, ["-m", "mcp_server_time", "--local-timezone", "UTC"], errlog=_quiet())
    print("MCP: get_current_time over stdio to mcp-server-time, one connection (calls per second)")
    print(
        f"  python {platform.python_version()}, mcp {version('mcp')}, mcp-server-time {version('mcp-server-time')}, "
        f"anyio {version('anyio')}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )

    def agent_model(request: ModelRequest) -> Any:
        done = sum(1 for m in request.messages if isinstance(m, ToolMessage))
        if done < AGENT_CALLS:
            return reply(None, call("get_current_time", f"c{done}", timezone="UTC"))
        return "done"

    agent = Agent("clock", "", FunctionModel(agent_model), tools=[server], max_steps=AGENT_CALLS + 1)
    machine = agent.machine
    async with server:
        session_ = server._held.session if server._held is not None else None
        assert session_ is not None
        sdk_session = session_
        session = Session({"clock": agent.model}, {}, Limits(), ())  # type: ignore[dict-item]
        async with toolsets_opened(session, machine):
            state = RunState(machine, "bench", None, {})
            one = ToolCall(id="c", name="get_current_time", arguments='{"timezone": "UTC"}')
            effect = RunTools(key="bench/0/0", agent="clock", calls=(one,))

            async def sdk() -> None:
                for _ in range(calls):
                    result = await sdk_session.call_tool("get_current_time", {"timezone": "UTC"})
                    assert not result.is_error

            async def performer() -> None:
                for _ in range(calls):
                    event = await run_tools(session, state, effect)
                    assert isinstance(event, ToolsFinished) and event.results[0].ok, event

            async def agent_run() -> None:
                for _ in range(max(1, calls // AGENT_CALLS)):
                    result = await run(agent, "time?")
                    assert result.status == "done" and len(result.snapshot.conversation.messages) == 2 * AGENT_CALLS + 2

            rows: dict[str, tuple[Callable[[], Awaitable[None]], int, list[float], list[float]]] = {
                "ClientSession.call_tool (SDK)": (sdk, calls, [], []),
                "RunTools performer (ours)": (performer, calls, [], []),
                f"agent run, {AGENT_CALLS} calls (ours)": (agent_run, max(1, calls // AGENT_CALLS) * AGENT_CALLS, [], []),
            }
            for fn, *_ in rows.values():  # warm-up
                await fn()
            order = list(rows.values())
            for r in range(rounds):  # each round starts at another row: no row always follows another
                for fn, n, rates, cpu in order[r % len(order) :] + order[: r % len(order)]:
                    started, cpu_started = time.perf_counter(), time.process_time()
                    await fn()
                    rates.append(n / (time.perf_counter() - started))
                    cpu.append((time.process_time() - cpu_started) / n * 1e6)
    floor = statistics.median(rows["ClientSession.call_tool (SDK)"][2])
    floor_cpu = statistics.median(rows["ClientSession.call_tool (SDK)"][3])
    print(f"  {'':<32} {'calls/s':>8} {'of SDK':>7} {'p25-p75 calls/s':>16} {'client CPU µs/call':>19} {'× SDK':>6}")
    for name, (_, _, rates, cpu) in rows.items():
        rate, used = statistics.median(rates), statistics.median(cpu)
        q = statistics.quantiles(rates, n=4) if len(rates) > 1 else [rate, rate, rate]
        spread = f"{q[0]:.0f}-{q[2]:.0f}"
        print(f"  {name:<32} {rate:>8.0f} {rate / floor:>6.0%} {spread:>16} {used:>19.0f} {used / floor_cpu:>6.2f}")
    ours = statistics.median(rows["RunTools performer (ours)"][2]) / floor
    verdict = "met" if ours >= TARGET else "NOT met"
    print(f"  target: the RunTools path ≥ {TARGET:.0%} of the SDK's calls/s: {verdict} ({ours:.0%})")


def _quiet() -> Any:
    """The server logs each call to stderr; a benchmark does not want it on the terminal."""
    return open("/dev/null", "w")  # lives as long as the process


if __name__ == "__main__":
    raise SystemExit(main())
