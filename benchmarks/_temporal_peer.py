"""The peer: an OpenAI Agents SDK agent on Temporal (`temporalio.contrib.openai_agents`).

Written as that integration's documentation shows (the `temporalio-openai-agents` README,
https://github.com/temporalio/ai-integrations/tree/main/python/openai_agents): the worker's client
carries an `OpenAIAgentsPlugin` (its payload converter, the model activity `invoke_model_activity`,
the workflow-side runner); the workflow builds an `agents.Agent` whose tool is a Temporal activity
made into a tool by `workflow.activity_as_tool`, and calls `Runner.run`. Each model call is then
one `invoke_model_activity` activity whose input holds the whole conversation so far.

The model provider points the SDK's chat-completions model (`OpenAIProvider(use_responses=False)`)
at the benchmark's stub; the SDK's tracing export is disabled (no network).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from agents import Agent, Runner
    from temporalio.contrib.openai_agents import workflow as agents_workflow

    from benchmarks._temporal import INSTRUCTIONS, tool_output


@activity.defn
async def fetch_page(page: int) -> str:
    """Fetch one page of the report being read (5 KiB of text)."""
    return tool_output(page)


@dataclass
class PeerInput:
    history: list[tuple[str, str]]  # (role, text) of the preloaded conversation
    question: str
    max_turns: int


@dataclass
class PeerOutput:
    answer: str
    model_calls: int


@workflow.defn
class PeerAgentWorkflow:
    @workflow.run
    async def run(self, turn: PeerInput) -> PeerOutput:
        agent: Agent[Any] = Agent(
            name="reader",
            instructions=INSTRUCTIONS,
            model="stub",
            tools=[
                agents_workflow.activity_as_tool(
                    fetch_page,
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
            ],
        )
        items: list[Any] = [{"role": role, "content": text} for role, text in turn.history]
        items.append({"role": "user", "content": turn.question})
        result = await Runner.run(agent, input=items, max_turns=turn.max_turns)
        return PeerOutput(answer=str(result.final_output), model_calls=len(result.raw_responses))


def plugin(base_url: str) -> Any:
    """The `OpenAIAgentsPlugin` for a client: the SDK's chat-completions model on `base_url`."""
    from agents import OpenAIProvider
    from openai import AsyncOpenAI
    from temporalio.contrib.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin

    provider = OpenAIProvider(
        openai_client=AsyncOpenAI(base_url=base_url, api_key="stub", max_retries=0), use_responses=False
    )
    return OpenAIAgentsPlugin(
        model_params=ModelActivityParameters(start_to_close_timeout=timedelta(seconds=120)),
        model_provider=provider,
    )
