"""Tool definition and the BFCL-style tool loop: fsm_agents vs pydantic-ai, same functions, same run.

    python benchmarks/tools.py [--rounds 7] [--calls 50] [--quick]

(a) Definition time, µs per tool, median over rounds (rows interleaved):

- `tool(fn)` on plain module functions, warm: the functions were made tools before (a program
  defines its tools once; a BFCL task makes them again for each task). pydantic-ai:
  `pydantic_ai.Tool(fn)`, which builds its schema at once.
- bound methods of a fresh instance of a 16-method stateful class (BFCL's shape: each task gets a
  new API object and a new agent): `tool(obj.method)` for the 16 methods, and the same plus the
  agent made with them (`Agent(..., tools=...)` builds or finds the schemas: what a task pays
  before its first model call). pydantic-ai: `Tool(obj.method)` and `Agent(model, tools=...)`.
- cold: a new class (new function objects: nothing cached) per round, `tool()` + `spec`, i.e.
  reading the signature and docstring and building the pydantic model and JSON schema once.

(b) The BFCL-style loop, µs per tool call: a fresh `FileSystem` (16 methods) and agent per run;
the model (fsm_agents' `FunctionModel`, pydantic-ai's `FunctionModel`) asks for one call per
turn, `--calls` turns, then answers; the calls cycle through the methods with valid arguments.
Sync methods run in a worker thread in both frameworks (their default); a last row runs ours
inline (`@tool(thread=False)`), for scale. Every run's tool results are checked against calling
the methods directly. Target (issue 15): ≤ 100 µs per `tool()` call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import fsm_agents
from fsm_agents import Agent, run, tool
from fsm_agents.models import FunctionModel
from fsm_agents.state import AssistantMessage, ModelRequest, ToolCall

try:
    import pydantic_ai
    from pydantic_ai import Agent as PAgent
    from pydantic_ai import Tool as PTool
    from pydantic_ai.messages import (
        ModelMessage,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
    )
    from pydantic_ai.messages import (
        ModelRequest as PRequest,
    )
    from pydantic_ai.models.function import AgentInfo
    from pydantic_ai.models.function import FunctionModel as PFunctionModel
    from pydantic_ai.usage import UsageLimits
except ImportError:  # pragma: no cover - the bench extra installs it
    pydantic_ai = None


FILESYSTEM_SOURCE = '''
class FileSystem:
    """A BFCL-style stateful API (GorillaFileSystem's shape): 16 methods over one state."""

    def __init__(self) -> None:
        self.cwd = "/"
        self.files: dict[str, str] = {}
        self.dirs: set[str] = {"/"}

    def _path(self, name: str) -> str:
        return (self.cwd.rstrip("/") + "/" + name) if not name.startswith("/") else name

    def pwd(self) -> str:
        """The current directory."""
        return self.cwd

    def ls(self, show_hidden: bool = False) -> list[str]:
        """List the current directory.

        Args:
            show_hidden: include names starting with a dot.
        """
        prefix = self.cwd.rstrip("/") + "/"
        names = [p[len(prefix):] for p in [*self.files, *self.dirs] if p.startswith(prefix) and "/" not in p[len(prefix):]]
        return sorted(n for n in names if n and (show_hidden or not n.startswith(".")))

    def cd(self, folder: str) -> str:
        """Change the current directory.

        Args:
            folder: the directory to go to (`..` goes up).
        """
        target = self.cwd.rsplit("/", 1)[0] or "/" if folder == ".." else self._path(folder)
        if target not in self.dirs:
            return f"no such directory: {folder}"
        self.cwd = target
        return self.cwd

    def mkdir(self, dir_name: str) -> str:
        """Make a directory.

        Args:
            dir_name: the new directory's name.
        """
        self.dirs.add(self._path(dir_name))
        return f"created {dir_name}"

    def touch(self, file_name: str) -> str:
        """Create an empty file.

        Args:
            file_name: the file's name.
        """
        self.files.setdefault(self._path(file_name), "")
        return f"touched {file_name}"

    def echo(self, content: str, file_name: str | None = None) -> str:
        """Write content to a file, or return it.

        Args:
            content: the text.
            file_name: the file to write (none: return the text).
        """
        if file_name is None:
            return content
        self.files[self._path(file_name)] = content
        return f"wrote {len(content)} characters"

    def cat(self, file_name: str) -> str:
        """A file's content.

        Args:
            file_name: the file.
        """
        return self.files.get(self._path(file_name), f"no such file: {file_name}")

    def rm(self, file_name: str) -> str:
        """Remove a file.

        Args:
            file_name: the file.
        """
        return "removed" if self.files.pop(self._path(file_name), None) is not None else "no such file"

    def mv(self, source: str, destination: str) -> str:
        """Move a file.

        Args:
            source: the file.
            destination: its new name.
        """
        if self._path(source) not in self.files:
            return "no such file"
        self.files[self._path(destination)] = self.files.pop(self._path(source))
        return f"moved {source} to {destination}"

    def cp(self, source: str, destination: str) -> str:
        """Copy a file.

        Args:
            source: the file.
            destination: the copy's name.
        """
        self.files[self._path(destination)] = self.files.get(self._path(source), "")
        return f"copied {source} to {destination}"

    def wc(self, file_name: str, mode: str = "l") -> int:
        """Count lines (l), words (w) or characters (c) of a file.

        Args:
            file_name: the file.
            mode: l, w or c.
        """
        text = self.files.get(self._path(file_name), "")
        return len(text.splitlines()) if mode == "l" else len(text.split()) if mode == "w" else len(text)

    def grep(self, file_name: str, pattern: str) -> list[str]:
        """Lines of a file containing a pattern.

        Args:
            file_name: the file.
            pattern: the text to look for.
        """
        return [line for line in self.files.get(self._path(file_name), "").splitlines() if pattern in line]

    def sort(self, file_name: str) -> str:
        """A file's lines, sorted.

        Args:
            file_name: the file.
        """
        return "\\n".join(sorted(self.files.get(self._path(file_name), "").splitlines()))

    def tail(self, file_name: str, lines: int = 10) -> str:
        """The last lines of a file.

        Args:
            file_name: the file.
            lines: how many.
        """
        return "\\n".join(self.files.get(self._path(file_name), "").splitlines()[-lines:])

    def du(self, human_readable: bool = False) -> str:
        """Disk usage of the current directory.

        Args:
            human_readable: as text with a unit.
        """
        size = sum(len(v) for k, v in self.files.items() if k.startswith(self.cwd))
        return f"{size} B" if human_readable else str(size)

    def find(self, name: str | None = None, path: str = ".") -> list[str]:
        """Find files by name.

        Args:
            name: part of the name (none: every file).
            path: where to look.
        """
        root = self.cwd if path == "." else self._path(path)
        return sorted(p for p in self.files if p.startswith(root) and (name is None or name in p.rsplit("/", 1)[-1]))
'''

METHODS = ("pwd", "ls", "cd", "mkdir", "touch", "echo", "cat", "rm", "mv", "cp", "wc", "grep", "sort", "tail", "du", "find")

# the loop's calls: (method, arguments), cycled; valid in this order from an empty file system
SCRIPT: tuple[tuple[str, dict[str, Any]], ...] = (
    ("mkdir", {"dir_name": "docs"}),
    ("cd", {"folder": "docs"}),
    ("touch", {"file_name": "notes.txt"}),
    ("echo", {"content": "b line\na line\nc line", "file_name": "notes.txt"}),
    ("cat", {"file_name": "notes.txt"}),
    ("wc", {"file_name": "notes.txt", "mode": "w"}),
    ("grep", {"file_name": "notes.txt", "pattern": "a"}),
    ("sort", {"file_name": "notes.txt"}),
    ("tail", {"file_name": "notes.txt", "lines": 2}),
    ("cp", {"source": "notes.txt", "destination": "copy.txt"}),
    ("mv", {"source": "copy.txt", "destination": "moved.txt"}),
    ("ls", {}),
    ("find", {"name": "txt"}),
    ("du", {"human_readable": True}),
    ("rm", {"file_name": "moved.txt"}),
    ("pwd", {}),
    ("cd", {"folder": ".."}),
)


def new_class() -> type:
    """A fresh FileSystem class (new function objects: nothing cached for them)."""
    namespace: dict[str, Any] = {}
    exec(FILESYSTEM_SOURCE, namespace)
    return namespace["FileSystem"]  # type: ignore[no-any-return]


FileSystem = new_class()


def _plain_functions() -> list[Callable[..., Any]]:
    """Module-level plain functions with the same signatures (unbound: `self` taken by a closure)."""
    obj = FileSystem()
    out = []
    for name in METHODS:
        method = getattr(obj, name)

        def make(m: Callable[..., Any]) -> Callable[..., Any]:
            def fn(*args: Any, **kwargs: Any) -> Any:
                return m(*args, **kwargs)

            fn.__name__ = m.__name__
            fn.__doc__ = m.__doc__
            fn.__annotations__ = {k: v for k, v in m.__func__.__annotations__.items()}  # type: ignore[attr-defined]
            fn.__signature__ = __import__("inspect").signature(m)  # type: ignore[attr-defined]
            return fn

        out.append(make(method))
    return out


# -- (a) definition -------------------------------------------------------------------------------


def time_per_tool(make: Callable[[], int]) -> float:
    """µs per tool: `make()` makes some tools and returns how many."""
    gc.collect()
    started = time.perf_counter()
    n = make()
    return (time.perf_counter() - started) / n * 1e6


def definition_rows(rounds: int, repeat: int) -> dict[str, dict[str, list[float]]]:
    functions = _plain_functions()
    for f in functions:  # warm: a program defines its tools once
        tool(f)
    if pydantic_ai is not None:
        pmodel = PFunctionModel(lambda messages, info: ModelResponse(parts=[TextPart("done")]))

    def ours_plain() -> int:
        for _ in range(repeat):
            for f in functions:
                tool(f)
        return repeat * len(functions)

    def theirs_plain() -> int:
        for _ in range(repeat):
            for f in functions:
                PTool(f)
        return repeat * len(functions)

    def ours_bound() -> int:
        for _ in range(repeat):
            obj = FileSystem()
            [tool(getattr(obj, n)) for n in METHODS]
        return repeat * len(METHODS)

    def theirs_bound() -> int:
        for _ in range(repeat):
            obj = FileSystem()
            [PTool(getattr(obj, n)) for n in METHODS]
        return repeat * len(METHODS)

    def ours_agent() -> int:
        for _ in range(repeat):
            obj = FileSystem()
            Agent("bfcl", tools=[tool(getattr(obj, n)) for n in METHODS])
        return repeat * len(METHODS)

    def theirs_agent() -> int:
        for _ in range(repeat):
            obj = FileSystem()
            PAgent(pmodel, tools=[PTool(getattr(obj, n)) for n in METHODS])
        return repeat * len(METHODS)

    def ours_cold() -> int:
        cls = new_class()
        obj = cls()
        for n in METHODS:
            _ = tool(getattr(obj, n)).spec
        return len(METHODS)

    def theirs_cold() -> int:
        cls = new_class()
        obj = cls()
        for n in METHODS:
            _ = PTool(getattr(obj, n)).tool_def
        return len(METHODS)

    cases = {
        "plain functions, tool(fn)": (ours_plain, theirs_plain),
        "bound methods of a new instance, tool(m)": (ours_bound, theirs_bound),
        "… and the agent made with the 16 tools": (ours_agent, theirs_agent),
        "cold (new class), tool(m) + schema": (ours_cold, theirs_cold),
    }
    rows: dict[str, dict[str, list[float]]] = {case: {"fsm_agents": [], "pydantic-ai": []} for case in cases}
    for _ in range(rounds):
        for case, (ours, theirs) in cases.items():
            rows[case]["fsm_agents"].append(time_per_tool(ours))
            if pydantic_ai is not None:
                rows[case]["pydantic-ai"].append(time_per_tool(theirs))
    return rows


# -- (b) the BFCL-style loop ----------------------------------------------------------------------


def expected_results(calls: int) -> list[str]:
    obj = FileSystem()
    out = []
    for i in range(calls):
        name, args = SCRIPT[i % len(SCRIPT)]
        value = getattr(obj, name)(**args)
        out.append(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
    return out


async def ours_run(calls: int, thread: bool = True) -> list[str]:
    obj = FileSystem()

    def model(request: ModelRequest) -> AssistantMessage:
        done = (len(request.messages) - 1) // 2  # user, then (assistant, tool) per call
        if done >= calls:
            return AssistantMessage(content="done")
        name, args = SCRIPT[done % len(SCRIPT)]
        return AssistantMessage(tool_calls=(ToolCall(id=f"c{done}", name=name, arguments=json.dumps(args)),))

    tools = [tool(thread=thread)(getattr(obj, n)) for n in METHODS]
    agent = Agent("bfcl", model=FunctionModel(model), tools=tools, max_steps=calls + 1)
    result = await run(agent, "organize my files")
    assert result.output == "done", result.failure
    return [m.content for m in result.snapshot.conversation.messages if m.role == "tool"]


async def theirs_run(calls: int) -> list[str]:
    obj = FileSystem()

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(1 for m in messages if isinstance(m, PRequest) for p in m.parts if isinstance(p, ToolReturnPart))
        if done >= calls:
            return ModelResponse(parts=[TextPart("done")])
        name, args = SCRIPT[done % len(SCRIPT)]
        return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=f"c{done}")])

    agent = PAgent(PFunctionModel(model), tools=[PTool(getattr(obj, n)) for n in METHODS])
    result = await agent.run("organize my files", usage_limits=UsageLimits(request_limit=None))
    assert result.output == "done"
    out = []
    for m in result.all_messages():
        if isinstance(m, PRequest):
            for p in m.parts:
                if isinstance(p, ToolReturnPart):
                    out.append(p.content if isinstance(p.content, str) else json.dumps(p.content, separators=(",", ":")))
    return out


async def loop_rows(rounds: int, calls: int, runs: int) -> dict[str, list[float]]:
    want = expected_results(calls)
    assert await ours_run(calls) == want, "fsm_agents' tool results differ from calling the methods"
    if pydantic_ai is not None:
        assert await theirs_run(calls) == want, "pydantic-ai's tool results differ from calling the methods"
    rows: dict[str, list[float]] = {"fsm_agents": [], "fsm_agents, inline": [], "pydantic-ai": []}

    async def inline(n: int) -> list[str]:
        return await ours_run(n, thread=False)

    for _ in range(rounds):
        for name, fn in (("fsm_agents", ours_run), ("fsm_agents, inline", inline), ("pydantic-ai", theirs_run)):
            if name == "pydantic-ai" and pydantic_ai is None:
                continue
            gc.collect()
            started = time.perf_counter()
            for _ in range(runs):
                await fn(calls)
            rows[name].append((time.perf_counter() - started) / (runs * calls) * 1e6)
    return rows


# -- report ---------------------------------------------------------------------------------------


def _versions() -> str:
    names = ("pydantic", "pydantic-ai-slim", "anyio")
    found = []
    for n in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{n} {importlib.metadata.version(n)}")
    return f"CPython {platform.python_version()}, fsm_agents {fsm_agents.__version__}, " + ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median reported)")
    parser.add_argument("--calls", type=int, default=50, help="tool calls per run of the loop")
    parser.add_argument("--runs", type=int, default=10, help="runs per round of the loop")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 2 rounds, few runs")
    args = parser.parse_args(argv)
    rounds, runs, repeat = (2, 2, 20) if args.quick else (args.rounds, args.runs, 50)
    print("tools: definition time (µs per tool) and the BFCL-style loop (µs per tool call), median of rounds")
    print(f"  {_versions()}; gc enabled: {gc.isenabled()}; asyncio; timer: time.perf_counter")
    if pydantic_ai is None:
        print("  pydantic-ai is not installed: its rows are skipped (pip install -e '.[bench]')")
    print()
    print(f"{'(a) definition':<44} {'fsm_agents':>11} {'pydantic-ai':>12} {'pydantic-ai / ours':>19}")
    rows = definition_rows(rounds, repeat)
    for case, by in rows.items():
        ours = statistics.median(by["fsm_agents"])
        theirs = statistics.median(by["pydantic-ai"]) if by["pydantic-ai"] else float("nan")
        print(f"{case:<44} {ours:>11.1f} {theirs:>12.1f} {theirs / ours:>18.1f}×")
    plain = statistics.median(rows["bound methods of a new instance, tool(m)"]["fsm_agents"])
    print(f"\ntool(bound method): {plain:.1f} µs (target ≤ 100: {'met' if plain <= 100 else 'NOT met'})\n")
    loop = asyncio.run(loop_rows(rounds, args.calls, runs))
    ours = statistics.median(loop["fsm_agents"])
    theirs = statistics.median(loop["pydantic-ai"]) if loop["pydantic-ai"] else float("nan")
    print(f"{'(b) BFCL-style loop, ' + str(args.calls) + ' sequential calls':<44} {'fsm_agents':>11} {'pydantic-ai':>12}")
    print(
        f"{'µs per tool call (fresh API object + agent per run)':<44} {ours:>11.1f} {theirs:>12.1f} {theirs / ours:>18.1f}×"
    )
    inline_us = statistics.median(loop["fsm_agents, inline"])
    print(f"{'  fsm_agents with @tool(thread=False) tools':<44} {inline_us:>11.1f} {'':>12} {theirs / inline_us:>18.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
