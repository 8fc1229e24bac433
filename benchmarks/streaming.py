"""Streaming overhead: `fsm_agents.stream` vs the provider client's own `stream_complete` vs
pydantic-ai's `Agent.run_stream`, against one local SSE stub.

    python benchmarks/streaming.py [--deltas 400] [--rounds 30]

Starts a stub OpenAI-compatible chat-completions server (uvicorn + a plain ASGI app) in a
subprocess on 127.0.0.1. Each request gets the same streamed reply: `--deltas` text chunks
(`chat.completion.chunk` events, https://platform.openai.com/docs/api-reference/chat-streaming),
a finish chunk with usage, then `data: [DONE]`, all written at once so the network is not what is
measured. In this process, rounds of the three ways alternate:

- client: `OpenAIChat.stream_complete(request, on_delta)` directly — the floor;
- fsm_agents: `async for ev in fsm_agents.stream(agent, question)`, an `Agent` on that
  `OpenAIChat`, counting its `TextDelta` events;
- pydantic-ai: `agent.run_stream(question)` on an `OpenAIChatModel` with the same base URL,
  `result.stream_text(delta=True)`.

Reported (median over rounds): time from the call to the first text delta (ms), and deltas per
second from the first text delta to the last (the framework's cost per delta; the stub writes the
whole reply at once, so the network does not pace it). Targets (issue 12): the framework adds ≤ 1 ms to the first delta and
keeps ≥ 95 % of the client's delta throughput. pydantic-ai is skipped when it is not installed
(`pip install 'pydantic-ai-slim[openai]'`).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from _stub import free_port, wait_ready

import fsm_agents
from fsm_agents import Agent, TextDelta, stream
from fsm_agents.models import OpenAIChat
from fsm_agents.state import ModelRequest, UserMessage

QUESTION = "Tell me a story."


def stub_source(deltas: int) -> str:
    chunks = []
    for i in range(deltas):
        delta = {"role": "assistant", "content": f"w{i} "} if i == 0 else {"content": f"w{i} "}
        chunks.append(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "stub",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
        )
    chunks.append(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "stub",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": deltas, "total_tokens": 10 + deltas},
        }
    )
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return f"""
import uvicorn, sys
BODY = {body.encode()!r}
HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({{"type": "http.response.start", "status": 200, "headers": HEADERS}})
    await send({{"type": "http.response.body", "body": BODY}})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


Way = Callable[[], Awaitable[tuple[float, float, int]]]  # -> (first delta s, first to last delta s, deltas)


def ways(url: str) -> dict[str, Way]:
    client = OpenAIChat("stub", base_url=url, api_key="sk-bench")
    agent = Agent("writer", "Write.", OpenAIChat("stub", base_url=url, api_key="sk-bench"))
    request = ModelRequest(agent="writer", messages=(UserMessage(content=QUESTION),))

    async def direct() -> tuple[float, float, int]:
        start = time.perf_counter()
        first: list[float] = []
        count = 0

        last = 0.0

        def on_delta(delta: Any) -> None:
            nonlocal count, last
            if delta.text:
                last = time.perf_counter()
                if not first:
                    first.append(last)
                count += 1

        await client.stream_complete(request, on_delta)
        return first[0] - start, last - first[0], count

    async def ours() -> tuple[float, float, int]:
        start = time.perf_counter()
        first = last = 0.0
        count = 0
        async for ev in stream(agent, QUESTION):
            if isinstance(ev, TextDelta):
                last = time.perf_counter()
                if not count:
                    first = last
                count += 1
        return first - start, last - first, count

    out: dict[str, Way] = {"client stream_complete": direct, "fsm_agents stream": ours}
    try:
        from pydantic_ai import Agent as PAgent
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider
    except ImportError:
        return out
    peer = PAgent(OpenAIChatModel("stub", provider=OpenAIProvider(base_url=url, api_key="sk-bench")), instructions="Write.")

    async def pydantic_ai() -> tuple[float, float, int]:
        start = time.perf_counter()
        first = last = 0.0
        count = 0
        async with peer.run_stream(QUESTION) as result:
            async for _ in result.stream_text(delta=True, debounce_by=None):
                last = time.perf_counter()
                if not count:
                    first = last
                count += 1
        return first - start, last - first, count

    out["pydantic-ai run_stream"] = pydantic_ai
    return out


async def bench(url: str, rounds: int) -> dict[str, list[tuple[float, float, int]]]:
    chosen = ways(url)
    for way in chosen.values():  # warm-up: connections, imports, caches
        for _ in range(3):
            await way()
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in chosen}
    for _ in range(rounds):
        for name, way in chosen.items():
            results[name].append(await way())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=400, help="text chunks per reply (default 400)")
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds per way (default 30)")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    proc = subprocess.Popen([sys.executable, "-c", stub_source(args.deltas), str(port)])
    try:
        wait_ready(url, proc)
        results = anyio.run(bench, url, args.rounds)
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"python {platform.python_version()}, fsm_agents {fsm_agents.__version__}, {args.deltas} deltas per reply")
    base_first = base_rate = 0.0
    print(f"{'way':<26}{'first delta ms':>16}{'deltas/s':>12}{'vs client':>12}")
    for name, rows in results.items():
        first = statistics.median(r[0] for r in rows) * 1e3
        rate = statistics.median((r[2] - 1) / r[1] for r in rows if r[1] > 0)
        counts = {r[2] for r in rows}
        if name.startswith("client"):
            base_first, base_rate = first, rate
        print(f"{name:<26}{first:>16.2f}{rate:>12.0f}{rate / base_rate:>11.0%}  (deltas seen: {sorted(counts)})")
    ours = results["fsm_agents stream"]
    added = statistics.median(r[0] for r in ours) * 1e3 - base_first
    share = statistics.median((r[2] - 1) / r[1] for r in ours if r[1] > 0) / base_rate
    print(f"fsm_agents adds {added:.2f} ms to the first delta (target ≤ 1 ms): {'met' if added <= 1 else 'missed'}")
    print(f"fsm_agents keeps {share:.0%} of the client's throughput (target ≥ 95 %): {'met' if share >= 0.95 else 'missed'}")


if __name__ == "__main__":
    main()
