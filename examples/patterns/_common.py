"""Shared by the pattern examples: a scripted default model, and `main()` on the local model."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from fsm_agents import AssistantMessage, FunctionModel, RunResult, ToolCall
from fsm_agents.models import Model
from fsm_agents.runtime import Limits
from fsm_agents.state import ModelRequest

Build = Callable[[Model | None], Any]


def last_user(request: ModelRequest) -> str:
    """The content of the last user message of a request ("" if none)."""
    for m in reversed(request.messages):
        if m.role == "user":
            return m.content
    return ""


def answers(fn: Callable[[ModelRequest], str | AssistantMessage]) -> FunctionModel:
    """A scripted model replying `fn(request)` (stateless: one model serves many runs)."""
    return FunctionModel(fn)


def fixed(text: str) -> FunctionModel:
    """A scripted model that always answers `text`."""
    return FunctionModel(lambda request: text)


def calls(*pairs: tuple[str, dict[str, Any]]) -> AssistantMessage:
    """An assistant reply calling tools: `calls(("delegate_to_x", {"task": "..."}), ...)`."""
    return AssistantMessage(
        content="",
        tool_calls=tuple(ToolCall(id=f"call_{i}", name=n, arguments=json.dumps(a)) for i, (n, a) in enumerate(pairs)),
    )


def describe(result: RunResult) -> str:
    lines = [f"{result.snapshot.machine}: {result.phase} after {result.snapshot.step} transitions"]
    if result.ok:
        lines.append(f"output: {result.output}")
    elif result.failure is not None:
        lines.append(f"failure: {result.failure.kind}: {result.failure.message}")
    return "\n".join(lines)


def main_with(build: Build, go: Callable[[Any, dict[str, Any]], RunResult]) -> int:
    """Run the example on the embedded local model when it can be served, else on its scripted
    models; print the outcome. `go(pattern, run_kwargs)` runs it. Returns the exit code: 0 when
    the run ended DONE, 1 when it ended FAILED (a shell or CI sees the failure)."""
    from fsm_agents.local import LocalModelError, serve

    kwargs: dict[str, Any] = {"limits": Limits(model_timeout=180, tool_timeout=10)}
    try:
        with serve() as model:
            print(f"on the local model {model!r}", flush=True)
            result = go(build(model), kwargs)
    except LocalModelError as exc:
        print(f"local model unavailable ({type(exc).__name__}); running on scripted models", file=sys.stderr)
        result = go(build(None), kwargs)
    print(describe(result), flush=True)
    return 0 if result.ok else 1
