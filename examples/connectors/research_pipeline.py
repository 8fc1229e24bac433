"""A research pipeline with web search: a researcher searches, a writer turns the findings into a
short brief that cites its sources.

    python -m examples.connectors.research_pipeline ["topic"] [--searxng URL]

By default the search goes to a SearXNG-shaped stub this example starts on 127.0.0.1
(`examples/connectors/searxng_stub.py`: canned pages, no internet); `--searxng URL` points it at a
real SearXNG instance (its settings.yml must allow `format=json`). The two agents run as a
`Sequential` pattern sharing one conversation. Runs on the embedded local model (SmolLM2-135M via
llama.cpp) when it can be served, else on scripted models; the tests run it on `ScriptedModel`.
A 135M model is weak: it often searches with a made-up URL and summarises badly, but the pipeline
always ends DONE or FAILED with a complete, well-formed history.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from examples.connectors.searxng_stub import searxng_stub
from fsm_agents import Agent, AssistantMessage, FunctionModel, RunResult, ToolMessage, run_sync
from fsm_agents.agent import guided_tool_choice
from fsm_agents.connectors import SearXNG, WebSearch, web_search
from fsm_agents.models import Model, ModelSettings
from fsm_agents.models.scripted import call, reply
from fsm_agents.patterns import Sequential
from fsm_agents.runtime import Limits
from fsm_agents.state import ModelRequest

TOPIC = "solid-state battery production outlook"
SETTINGS = ModelSettings(temperature=0.0, seed=11, max_tokens=120)


def build(search: WebSearch, model: Model | None = None, topic: str = TOPIC) -> Sequential:
    """The pipeline: `researcher` (web search, steered to search first) then `writer`.

    Without `model`, scripted stand-ins: the researcher searches `topic` and lists what it found,
    the writer turns the list into a brief."""
    researcher = Agent(
        "researcher",
        "You research the topic the user gives: call web_search with the topic as the query, then list the "
        "three most relevant findings with their url.",
        model=model or _scripted_researcher(topic),
        tools=search,
        max_steps=4,
        settings=SETTINGS,
        tool_choice=guided_tool_choice("web_search"),
    )
    writer = Agent(
        "writer",
        "You write a three-sentence brief from the researcher's findings above, citing urls in brackets.",
        model=model or FunctionModel(_scripted_writer),
        max_steps=2,
        settings=SETTINGS,
    )
    return Sequential("research_pipeline", [researcher, writer])


def _scripted_researcher(topic: str) -> FunctionModel:
    def answer(request: ModelRequest) -> str | AssistantMessage:
        results = [m for m in request.messages if isinstance(m, ToolMessage)]
        if not results:
            return reply(None, call("web_search", "search_1", query=topic, max_results=3))
        if results[-1].is_error:
            return f"The search failed: {results[-1].content}"
        found = json.loads(results[-1].content)
        return "Findings:\n" + "\n".join(f"- {r['title']}: {r['snippet']} ({r['url']})" for r in found)

    return FunctionModel(answer)


def _scripted_writer(request: ModelRequest) -> str:
    findings = next(
        (m.content for m in reversed(request.messages) if m.role == "assistant" and m.content.startswith("Findings")), ""
    )
    lines = [line[2:] for line in findings.splitlines() if line.startswith("- ")]
    if not lines:
        return "BRIEF: no findings to report."
    return "BRIEF: " + " ".join(f"{line.split(': ', 1)[-1]}" for line in lines)


@contextmanager
def search_backend(url: str | None) -> Iterator[WebSearch]:
    """`web_search` over `url`, or over the stub started for the block."""
    if url is not None:
        yield web_search(SearXNG(url), max_results=3)
        return
    with searxng_stub() as stub_url:
        yield web_search(SearXNG(stub_url), max_results=3)


def run(pattern: Sequential, topic: str = TOPIC) -> RunResult:
    return run_sync(pattern, topic, limits=Limits(model_timeout=180, tool_timeout=30))


def main(argv: list[str] | None = None) -> int:
    from fsm_agents.local import LocalModelError, serve

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("topic", nargs="*")
    parser.add_argument("--searxng", help="a SearXNG instance's URL (default: a local stub)")
    args = parser.parse_args(argv)
    topic = " ".join(args.topic) or TOPIC
    with search_backend(args.searxng) as search:
        print(f"searching with {search!r}", flush=True)
        try:
            with serve() as model:
                print(f"on the local model {model!r}", flush=True)
                result = run(build(search, model, topic), topic)
        except LocalModelError as exc:
            print(f"local model unavailable ({type(exc).__name__}); running on scripted models", file=sys.stderr)
            result = run(build(search, None, topic), topic)
    for m in result.snapshot.conversation.messages:
        for c in getattr(m, "tool_calls", ()):
            print(f"{m.agent}: {c.name}({c.arguments[:200]})", flush=True)
        if isinstance(m, ToolMessage):
            print(f"  → {m.content[:300]}", flush=True)
        elif m.role == "assistant" and m.content:
            print(f"{m.agent}: {m.content}", flush=True)
    print(f"{result.snapshot.machine}: {result.phase}", flush=True)
    for run_ in [result, *result.children.values()]:
        if run_.failure is not None:
            print(f"  {run_.snapshot.machine}: FAILED({run_.failure.kind}): {run_.failure.message}", flush=True)
    return 0 if result.phase.is_final else 1


if __name__ == "__main__":
    raise SystemExit(main())
