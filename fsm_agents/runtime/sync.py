"""Synchronous twins of the entry points, for scripts: `run_sync`, `resume_sync`.

Each call runs the async entry point to completion: on asyncio on an event loop the calling
thread keeps for such calls (a new loop per call costs more than a short run), on trio in a new
`trio.run`. Calling one from inside a running event loop raises `EventLoopRunning` (it would block
that loop).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from fsm_agents._arguments import check_backend
from fsm_agents.errors import EventLoopRunning
from fsm_agents.runtime.api import resume, run
from fsm_agents.runtime.result import RunResult

__all__ = ["resume_sync", "run_boxed", "run_sync"]


def running_event_loop() -> str | None:
    """ "asyncio" or "trio" when this thread is inside a running event loop of that library."""
    try:
        asyncio.get_running_loop()
        return "asyncio"
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")  # only a program that imported trio can be running it
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
            return "trio"
        except RuntimeError:
            pass
    return None


# One asyncio event loop per thread (`_loops.loop`), reused by every synchronous call made in that
# thread: a new loop per call (what `anyio.run` does) costs more than a short run itself. A plain
# `threading.local()` rather than a subclass: Temporal's workflow sandbox, which imports the package
# (fsm_agents.temporal), proxies `threading` and refuses subclasses of what it proxies.
_loops = threading.local()


def _drop_loop() -> None:
    loop, _loops.loop = getattr(_loops, "loop", None), None
    if loop is not None and not loop.is_closed():
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


os.register_at_fork(after_in_child=lambda: setattr(_loops, "loop", None))  # a loop does not survive fork
atexit.register(_drop_loop)


def _on_asyncio(fn: Callable[[], Awaitable[Any]]) -> Any:
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()

    async def main() -> Any:
        return await fn()

    try:
        return loop.run_until_complete(main())
    except BaseException:
        # KeyboardInterrupt and the like can leave tasks behind: cancel them, start afresh next time
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        _drop_loop()
        raise


def run_boxed(fn: Callable[[], Awaitable[Any]], backend: str) -> Any:
    """Run `fn()` to completion on an event loop of `backend`: on asyncio, this thread's reused
    loop; on trio, a new run. Raises `InvalidInput` for an unknown backend and
    `EventLoopRunning` inside a running loop."""
    check_backend(backend)
    library = running_event_loop()
    if library is not None:
        raise EventLoopRunning(
            f"a synchronous entry point was called from inside a running {library} event loop, which it would "
            "block: await the async one instead (run, resume, EventDriven.emit)"
        )
    if backend == "asyncio":
        return _on_asyncio(fn)
    # The result travels in a box, not as the main task's result: CPython 3.11's asyncio.Runner
    # calls signal.getsignal(SIGINT), whose enum lookup formats repr() of the handler, i.e. of the
    # main task and its result.
    box: list[Any] = []

    async def main() -> None:
        box.append(await fn())

    anyio.run(main, backend=backend)
    return box[0]


def run_sync(machine: Any, input: Any, *, backend: str = "asyncio", **kwargs: Any) -> RunResult:
    """`run` from synchronous code, on a new event loop (`backend`: `"asyncio"` or `"trio"`).
    Raises what `run` raises, `InvalidInput` for an unknown backend, and `EventLoopRunning` when
    called from inside a running event loop."""
    result: RunResult = run_boxed(partial(run, machine, input, **kwargs), backend)
    return result


def resume_sync(target: Any, machine: Any, *, backend: str = "asyncio", **kwargs: Any) -> RunResult:
    """`resume` from synchronous code, on a new event loop (raises `EventLoopRunning` inside one)."""
    result: RunResult = run_boxed(partial(resume, target, machine, **kwargs), backend)
    return result
