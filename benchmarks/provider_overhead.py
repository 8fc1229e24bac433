"""Client overhead: `OpenAIChat.complete` vs the official `openai` SDK, against one local stub.

    python benchmarks/provider_overhead.py [--requests 2000] [--concurrency 50]

Starts a stub chat-completions server (uvicorn + a plain ASGI app returning a fixed tool-call
completion) in a subprocess on 127.0.0.1, then, in this process, sends the same number of
requests with the same concurrency through each client (a warm-up round first, then alternating
measured rounds) and prints requests/s for both and the ratio. Target: ratio ≥ 1 (no slower than
the SDK). Both clients parse the reply fully (ours into a `ModelResponse`, the SDK into its
pydantic `ChatCompletion`) and neither retries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from _stub import free_port, wait_ready

from fsm_agents.models import OpenAIChat
from fsm_agents.state import ModelRequest, ToolSpec, UserMessage

REPLY = json.dumps(
    {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "stub",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
    }
).encode()

STUB = f"""
import uvicorn
BODY = {REPLY!r}
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({{"type": "http.response.start", "status": 200, "headers": HEADERS}})
    await send({{"type": "http.response.body", "body": BODY}})
import sys
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""

PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
QUESTION = "What's the weather in Paris?"


async def measure(call: Callable[[], Awaitable[Any]], requests: int, concurrency: int) -> float:
    """Requests per second for `requests` calls, `concurrency` at a time."""
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return requests / (time.perf_counter() - started)


async def main_async(url: str, requests: int, concurrency: int, rounds: int) -> None:
    from openai import AsyncOpenAI

    ours = OpenAIChat("stub", url, api_key="sk-bench", max_retries=0, provider="openai")
    request = ModelRequest(
        agent="bench",
        messages=(UserMessage(content=QUESTION),),
        tools=(ToolSpec(name="get_weather", description="Get the weather", parameters_json=json.dumps(PARAMETERS)),),
    )

    async def call_ours() -> None:
        response = await ours.complete(request)
        assert response.message.tool_calls[0].name == "get_weather"

    sdk = AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    tools: Any = [
        {"type": "function", "function": {"name": "get_weather", "description": "Get the weather", "parameters": PARAMETERS}}
    ]

    async def call_sdk() -> None:
        completion = await sdk.chat.completions.create(
            model="stub", messages=[{"role": "user", "content": QUESTION}], tools=tools, tool_choice="auto"
        )
        calls = completion.choices[0].message.tool_calls
        assert calls and calls[0].function.name == "get_weather"  # type: ignore[union-attr]

    async with ours:
        await measure(call_ours, min(requests, 500), concurrency)  # warm-up: connections, imports, caches
        await measure(call_sdk, min(requests, 500), concurrency)
        results: dict[str, list[float]] = {"fsm_agents OpenAIChat": [], "openai AsyncOpenAI": []}
        for _ in range(rounds):
            results["fsm_agents OpenAIChat"].append(await measure(call_ours, requests, concurrency))
            results["openai AsyncOpenAI"].append(await measure(call_sdk, requests, concurrency))
    await sdk.close()

    import openai

    print(f"{requests} requests x {rounds} rounds, {concurrency} concurrent, stub at {url}; openai SDK {openai.__version__}")
    best = {name: max(values) for name, values in results.items()}
    for name, values in results.items():
        print(f"  {name:<24} best {best[name]:8.0f} req/s   (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    ratio = best["fsm_agents OpenAIChat"] / best["openai AsyncOpenAI"]
    print(f"  ratio OpenAIChat / AsyncOpenAI = {ratio:.2f}x  ({'no slower' if ratio >= 1 else 'SLOWER'} than the SDK)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    proc = subprocess.Popen([sys.executable, "-c", STUB, str(port)])
    try:
        wait_ready(url, proc)
        anyio.run(main_async, url, args.requests, args.concurrency, args.rounds)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
