"""A scripted HTTP server on 127.0.0.1 for the connector tests: each request takes the next
canned answer (status, headers, body, optional delay); every request is recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            headers.setdefault("content-type", "text/html; charset=utf-8")
            return self.body.encode(), headers
        headers.setdefault("content-type", "application/json")
        return json.dumps(self.body).encode(), headers


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class StubServer:
    def __init__(self, answers: list[Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                url = urlsplit(self.path)
                with stub._lock:
                    stub.requests.append(
                        Seen(
                            self.command,
                            url.path,
                            parse_qs(url.query),
                            {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length),
                        )
                    )
                    answer = stub.answers.pop(0) if stub.answers else Answer(599, "stub script exhausted")
                if answer.delay:
                    time.sleep(answer.delay)
                body, headers = answer.encoded()
                try:
                    self.send_response(answer.status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, *answers: Answer) -> None:
        with self._lock:
            self.answers.extend(answers)


@contextmanager
def stub_server(*answers: Answer) -> Iterator[StubServer]:
    """A started `StubServer` answering `answers` in order (HTTP 599 once they are used up)."""
    stub = StubServer(list(answers))
    thread = threading.Thread(target=stub.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()
        thread.join(5)
