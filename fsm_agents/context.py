"""`RunContext[Deps]`: what a tool, a dynamic instruction or a guardrail learns about the run it
serves — the caller's dependencies (`run(..., deps=...)`), the run id, the active agent and the
usage so far. See docs/architecture.md, Run context.

It is made by the runtime for each call and never stored: deps may be anything (a database
pool, an HTTP client, a stateful API object), so they are not part of any snapshot, event or
record. A replayed or resumed run gets the deps its caller passes again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from fsm_agents.state import Usage

__all__ = ["RunContext"]

DepsT = TypeVar("DepsT")


@dataclass(frozen=True, slots=True)
class RunContext(Generic[DepsT]):
    """The run a call serves.

    - `deps`: what the caller passed as `run(..., deps=...)` (`None` when nothing was passed);
    - `run_id`: the run's id (a pattern's child has `<parent id>/<task id>`);
    - `agent`: the name of the active agent (`""` outside an agent, e.g. a pattern's own step);
    - `usage`: the run's `Usage` (tokens, model requests) before this call.

    Generic in the type of `deps`: annotate a tool's first parameter `ctx: RunContext[MyDeps]`
    and a type checker knows `ctx.deps` is a `MyDeps` (tests/typing_run_context.py is checked
    by mypy in the suite).
    """

    deps: DepsT
    run_id: str
    agent: str
    usage: Usage
