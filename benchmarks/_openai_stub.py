"""A scripted OpenAI-compatible chat-completions server for the Temporal benchmarks.

    python benchmarks/_openai_stub.py PORT [--tool-calls 100] [--delay-ms 0]

`POST /v1/chat/completions` (or `/chat/completions`, non-streaming; wire format:
https://platform.openai.com/docs/api-reference/chat/create) answers every conversation the same
way, from the request alone, so any number of runs can share the server: it counts the `tool`
messages after the last `user` message; while there are fewer than `--tool-calls`, it asks for one
call of the first tool the request offers (arguments `{"page": k}`, k = 1, 2, ...); then it answers
with text. `--delay-ms` sleeps before each reply (a remote model's latency). `usage.prompt_tokens`
is the request's size in characters / 4 (the usual estimate for English text).

`GET /stats` returns what it has received since the last `POST /stats/reset`, as JSON:
`{"requests": n, "bytes": total request-body bytes, "max_bytes": largest body, "sizes": [bytes per
request, in arrival order]}`; the benchmarks show from it the payload of each model call.

`OpenAIStub` starts the server in a subprocess on 127.0.0.1 and stops it (a context manager).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

_JSON = [(b"content-type", b"application/json")]


class _Stats:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "requests": len(self.sizes),
                "bytes": sum(self.sizes),
                "max_bytes": max(self.sizes, default=0),
                "sizes": self.sizes,
            }
        ).encode()


def _tool_results_in_turn(messages: list[dict[str, Any]]) -> int:
    """The number of `tool` messages after the last `user` message."""
    count = 0
    for message in reversed(messages):
        role = message.get("role")
        if role == "user":
            break
        if role == "tool":
            count += 1
    return count


def _completion(body: dict[str, Any], tool_calls: int, size: int) -> dict[str, Any]:
    done = _tool_results_in_turn(body.get("messages", []))
    tools = body.get("tools") or []
    message: dict[str, Any]
    if done < tool_calls and tools:
        name = tools[0]["function"]["name"]
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{done + 1}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps({"page": done + 1})},
                }
            ],
        }
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": f"Read {done} pages; here is the answer."}
        finish = "stop"
    prompt_tokens = size // 4
    return {
        "id": f"chatcmpl-stub-{done}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": body.get("model", "stub"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 10, "total_tokens": prompt_tokens + 10},
    }


def make_app(tool_calls: int, delay: float) -> Any:
    """The ASGI app: `tool_calls` tool calls per turn, then the answer, each reply after `delay` s."""
    stats = _Stats()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        path, method = scope["path"], scope["method"]
        if path.endswith("/chat/completions") and method == "POST":
            stats.sizes.append(len(raw))
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            if delay:
                await asyncio.sleep(delay)
            reply = json.dumps(_completion(body, tool_calls, len(raw))).encode()
            status = 200
        elif path == "/stats" and method == "GET":
            reply, status = stats.as_json(), 200
        elif path == "/stats/reset" and method == "POST":
            stats.sizes = []
            reply, status = b"{}", 200
        else:
            reply, status = b'{"error": "not found"}', 404
        headers = [*_JSON, (b"content-length", str(len(reply)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": reply})

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OpenAIStub:
    """The stub in a subprocess on 127.0.0.1: `with OpenAIStub(tool_calls=3, delay_ms=50) as stub:`.

    `stub.base_url` is the OpenAI base URL (`http://127.0.0.1:PORT/v1`); `stub.stats()` and
    `stub.reset()` read and clear the request sizes. Raises `RuntimeError` when the server does not
    answer within 20 s.
    """

    def __init__(self, *, tool_calls: int, delay_ms: float = 0) -> None:
        self.tool_calls = tool_calls
        self.delay_ms = delay_ms
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OpenAIStub:
        args = [str(self.port), "--tool-calls", str(self.tool_calls), "--delay-ms", str(self.delay_ms)]
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError("the OpenAI stub server exited at start")
            try:
                self.stats()
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("the OpenAI stub server did not answer within 20 s")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def stats(self) -> dict[str, Any]:
        """`{"requests", "bytes", "max_bytes", "sizes"}` since the last reset."""
        reply = httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=5)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def reset(self) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/stats/reset", timeout=5).raise_for_status()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--tool-calls", type=int, default=100, help="tool calls per turn before the answer")
    parser.add_argument("--delay-ms", type=float, default=0, help="sleep before each reply (ms)")
    args = parser.parse_args()
    app = make_app(args.tool_calls, args.delay_ms / 1000)
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, backlog=4096, timeout_keep_alive=60
    )


if __name__ == "__main__":
    main()
