"""Our side of the Temporal benchmarks: the agent, at module level.

`fsm_agents.temporal` builds a machine again inside Temporal's workflow sandbox by importing it,
so the agent is a module-level name of an importable module; its model (`OpenAIChat` on the
benchmark's stub, whose port changes from run to run) is given to the worker with `models=`.
It imports nothing but fsm_agents: the sandbox imports it afresh for every workflow run.
"""

from __future__ import annotations

from fsm_agents import Agent, tool

INSTRUCTIONS = "Read the pages you need with fetch_page, then answer."
TOOL_OUTPUT_BYTES = 5 * 1024


def tool_output(page: int) -> str:
    """What the benchmarks' tool returns for `page` (ours and the peer's): exactly 5 KiB of text."""
    head = f"page {page}: "
    return head + "x" * (TOOL_OUTPUT_BYTES - len(head))


@tool
async def fetch_page(page: int) -> str:
    """Fetch one page of the report being read (5 KiB of text)."""
    return tool_output(page)


reader = Agent("reader", INSTRUCTIONS, tools=[fetch_page], max_steps=200)
