"""Toolsets at run start: the tools an agent's toolsets (MCP servers, `fsm_agents.mcp`) list are
found when a run starts, offered to its model and run by its tool executor until it ends.

The pure core never sees them: a `CallModel` effect's request lists the agent's own tools, and
the `CallModel` performer adds the listed ones from the `Session` (`Session.listed_specs`); the
`RunTools` performer's executor has them too (`Session.executor`). Each toolset is entered once
per top-level run (children of patterns included), in the run's own task, and left when the run
ends. See docs/architecture.md, "MCP toolsets".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import MappingProxyType
from typing import Any

from fsm_agents.errors import InvalidDefinition
from fsm_agents.machine import Machine
from fsm_agents.runtime.session import Session
from fsm_agents.tools import Tool

__all__ = ["toolsets_of", "toolsets_opened"]

_ATTR = "_fsm_agents_toolsets"

Found = tuple[tuple[Machine, str, tuple[Any, ...]], ...]


def toolsets_of(machine: Machine) -> Found:
    """`(machine, agent, toolsets)` for every agent of `machine` and of the machines it runs that
    has toolsets; empty for most machines. Found once per machine (kept on it)."""
    found: Found | None = machine.__dict__.get(_ATTR)
    if found is None:
        out: list[tuple[Machine, str, tuple[Any, ...]]] = []
        stack, seen = [machine], set()
        while stack:
            m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            out.extend((m, agent, tuple(toolsets)) for agent, toolsets in m.toolsets().items() if toolsets)
            stack.extend(m.children().values())
        found = machine.__dict__[_ATTR] = tuple(out)
    return found


@asynccontextmanager
async def toolsets_opened(session: Session, machine: Machine) -> AsyncIterator[None]:
    """Open the toolsets of `machine` (and its children) for one run, list their tools into
    `session.listed`, and leave them when the block ends. A toolset two agents share is opened
    once. Raises what a toolset's `open()` raises (`MCPServerError`, `InvalidDefinition`), and
    `InvalidDefinition` when a listed name is one of the agent's own tools (or a handoff tool)
    or another of its toolsets' (naming both: give one a `prefix=`)."""
    found = toolsets_of(machine)
    async with AsyncExitStack() as stack:
        opened: dict[int, Sequence[Tool]] = {}
        listed: dict[tuple[int, str], tuple[MappingProxyType[str, Tool], tuple[Any, ...]]] = {}
        for m, agent, toolsets in found:
            own = set(m.tools_for(agent)) | {s.name for s in m.tool_specs(agent)}
            owner: dict[str, str] = {}
            tools: dict[str, Tool] = {}
            for ts in toolsets:
                got = opened.get(id(ts))
                if got is None:
                    got = opened[id(ts)] = tuple(await stack.enter_async_context(ts.open()))
                for t in got:
                    if t.name in own:
                        raise InvalidDefinition(
                            f"agent {agent!r}: toolset {ts.name!r} lists a tool {t.name!r}, and the agent has its own "
                            f"tool of that name: give the toolset a prefix= (its tools become '<prefix>_<name>')"
                        )
                    if t.name in owner:
                        raise InvalidDefinition(
                            f"agent {agent!r}: toolsets {owner[t.name]!r} and {ts.name!r} both list a tool {t.name!r}: "
                            "give one of them a prefix= (its tools become '<prefix>_<name>')"
                        )
                    owner[t.name] = ts.name
                    tools[t.name] = t
            listed[(id(m), agent)] = (MappingProxyType(tools), tuple(t.spec for t in tools.values()))
        session.listed = dict(listed)
        yield
