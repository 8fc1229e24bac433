"""Helpers the benchmarks that start a local stub server share: a free port on 127.0.0.1, and
waiting until the server answers."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Wait (≤ 20 s) until `url`/chat/completions answers; exit if `proc` dies or it never does."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the stub server exited")
        try:
            httpx.post(f"{url}/chat/completions", json={}, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the stub server did not start")
