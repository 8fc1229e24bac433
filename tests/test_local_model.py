"""Integration: an agent on the REAL local model (SmolLM2-135M in a llama.cpp server) through the
real HTTP client. Skipped only when llama-cpp-python is not installed (CI installs it)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from fsm_agents import Agent, AssistantMessage, Phase, ToolMessage, run
from fsm_agents.agent import guided_tool_choice
from fsm_agents.local import serve
from fsm_agents.models import ModelSettings, OpenAIChat
from fsm_agents.runtime import Limits

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"),
]

MAX_STEPS = 4
CAPITALS = {"france": "Paris", "japan": "Tokyo", "kenya": "Nairobi", "peru": "Lima"}


def capital_of(country: str) -> str:
    """The capital city of a country.

    Args:
        country: the country's English name, e.g. "France".
    """
    key = "".join(ch for ch in country.lower() if ch.isalpha())
    if key not in CAPITALS:
        raise ValueError(f"unknown country {country!r}; known: France, Japan, Kenya, Peru")
    return f"The capital of {country} is {CAPITALS[key]}."


@pytest.fixture(scope="session")
def local_model() -> Iterator[OpenAIChat]:
    with serve(n_ctx=2048) as model:
        yield model


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_agent_on_the_real_local_model(local_model: OpenAIChat, anyio_backend: str) -> None:
    agent = Agent(
        "geo",
        "You are a helpful assistant. Use the capital_of tool, then answer briefly.",
        model=local_model,
        tool_choice=guided_tool_choice("capital_of"),
        tools=[capital_of],
        max_steps=MAX_STEPS,
        settings=ModelSettings(temperature=0.0, seed=7, max_tokens=48),
    )
    async with local_model:
        result = await run(agent, "What is the capital of France?", limits=Limits(model_timeout=240))

    assert result.phase in (Phase.DONE, Phase.FAILED), result
    if result.phase is Phase.FAILED:
        assert result.failure is not None and result.failure.kind == "budget_exhausted", result.failure
    assert 1 <= result.usage.requests <= MAX_STEPS
    assert result.usage.input_tokens > 0  # usage came back from the real server

    messages = list(result.snapshot.conversation.messages)
    calls = [c for m in messages if isinstance(m, AssistantMessage) for c in m.tool_calls]
    answers = [m for m in messages if isinstance(m, ToolMessage)]
    # every tool call is answered exactly once, and nothing else is answered
    assert sorted(a.tool_call_id for a in answers) == sorted(c.id for c in calls)
    assert len({c.id for c in calls}) == len(calls)
    # at least one real tool call was parsed from the server's reply and executed successfully
    assert calls and calls[0].name == "capital_of"
    executed = [a for a in answers if not a.is_error]
    assert executed and "Paris" in executed[0].content
    # each tool-call turn is immediately followed by its answers (well-formed history)
    for i, m in enumerate(messages):
        if isinstance(m, AssistantMessage) and m.tool_calls:
            following = messages[i + 1 : i + 1 + len(m.tool_calls)]
            assert [a.tool_call_id for a in following if isinstance(a, ToolMessage)] == [c.id for c in m.tool_calls]


class City(BaseModel):
    model_config = ConfigDict(frozen=True)
    city: str
    country: str


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_native_structured_output_is_a_grammar_on_the_real_local_model(
    local_model: OpenAIChat, anyio_backend: str
) -> None:
    """The llama.cpp server turns `response_format: {"type": "json_object", "schema": ...}` into a
    grammar: even a 135M model then answers with JSON of the schema's shape, a model (City) or a
    wrapped non-object type (`{"response": "yes" | "no"}`), on the first call."""
    settings = ModelSettings(temperature=0.0, seed=7, max_tokens=96)
    async with local_model:
        city = await run(
            Agent("geo", "Name the capital asked about and its country.", model=local_model, output_type=City,
                  settings=settings),
            "What is the capital of France?",
            limits=Limits(model_timeout=240),
        )  # fmt: skip
        verdict = await run(
            Agent("judge", "Answer yes or no.", model=local_model, output_type=Literal["yes", "no"], settings=settings),
            "Is Paris in France?",
            limits=Limits(model_timeout=240),
        )
    assert city.phase is Phase.DONE and isinstance(city.output, City), city.failure
    assert verdict.phase is Phase.DONE and verdict.output in ("yes", "no"), verdict.failure
    assert city.usage.requests == verdict.usage.requests == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_the_demo_answers_with_the_density_its_tool_computed(local_model: OpenAIChat, anyio_backend: str) -> None:
    """`make demo` (examples/local_agent.py) as it runs: the analyst's typed answer carries the
    density its output function computed (124,500,000 / 377,975 km² = 329.4), and the summary
    prints it."""
    from examples.local_agent import QUESTION, Density, build_team, summary, watch

    async with local_model:
        result = await watch(build_team(local_model), QUESTION)
    assert result.phase is Phase.DONE, result.failure
    assert result.output == Density(country="Japan", people_per_km2=329.4)
    lines = summary(result, 1.0).splitlines()
    assert lines[-1] == "DONE: Density(country='Japan', people_per_km2=329.4)"
    # the server streams no usage: the summary says so instead of counting 0 tokens
    assert f"model calls: {result.usage.requests}; tokens in/out: not reported; 1.0 s" in lines[-2]
