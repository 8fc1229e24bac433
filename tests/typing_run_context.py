"""Checked by mypy in tests/test_run_context.py (not a test module): `RunContext` is generic in
the type of its deps, so `ctx.deps.attr` type-checks on a `RunContext[MyDeps]` and a wrong
attribute is reported. Exactly one line below is marked as the error mypy must report."""

from __future__ import annotations

from dataclasses import dataclass

from fsm_agents import Agent, RunContext, tool


@dataclass
class MyDeps:
    api_key: str
    retries: int


@tool
def lookup(ctx: RunContext[MyDeps], city: str) -> str:
    """Look a city up with the caller's key."""
    key: str = ctx.deps.api_key
    tries: int = ctx.deps.retries + 1
    return f"{city}:{key}:{tries}:{ctx.run_id}:{ctx.agent}:{ctx.usage.requests}"


def instructions(ctx: RunContext[MyDeps]) -> str:
    return f"Use {ctx.deps.no_such_attr} key."  # mypy: error


agent = Agent("typed", instructions, tools=[lookup])
