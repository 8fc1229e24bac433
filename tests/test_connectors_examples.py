"""The connector scenarios of `examples/connectors/` on `ScriptedModel` (and on their own scripted
stand-ins): a support agent over a document library, a research pipeline with web search against
the SearXNG-shaped stub the example starts itself."""

from __future__ import annotations

import json

import httpx

from examples.connectors import research_pipeline, support_docs
from examples.connectors.searxng_stub import searxng_stub
from fsm_agents import ToolMessage
from fsm_agents.models.scripted import ScriptedModel, call, reply
from fsm_agents.testing import history_problems


def tool_messages(result: object) -> list[ToolMessage]:
    return [m for m in result.snapshot.conversation.messages if isinstance(m, ToolMessage)]  # type: ignore[attr-defined]


def test_support_agent_searches_the_help_center_and_cites() -> None:
    model = ScriptedModel(
        [
            reply(None, call("search_documents", "c1", query="refund business days")),
            "Refunds reach your payment method within 5 business days [returns.md#refunds].",
        ]
    )
    with support_docs.library() as docs:
        result = support_docs.ask(docs, model, "How long does a refund take?")
    assert result.ok and result.output.endswith("[returns.md#refunds].")
    [found] = tool_messages(result)
    passages = json.loads(found.content)
    assert len(passages) == 2  # the example's k
    assert (passages[0]["file"], passages[0]["anchor"]) == ("returns.md", "refunds")
    assert "5 business days" in passages[0]["text"]
    assert not history_problems(result.snapshot.conversation)


def test_support_agent_scripted_stand_in_answers_the_default_question() -> None:
    with support_docs.library() as docs:
        result = support_docs.ask(docs, support_docs.scripted(support_docs.QUESTION))
    assert result.ok and "[source: returns.md#refunds" in result.output and "5 business days" in result.output


def test_support_agent_scripted_stand_in_answers_from_html_article() -> None:
    question = "The light of my lamp flickers, what should I do?"
    with support_docs.library() as docs:
        result = support_docs.ask(docs, support_docs.scripted(question), question)
    assert result.ok
    assert "troubleshooting.html#flicker" in result.output and "battery is almost empty" in result.output


def test_support_agent_gets_an_empty_query_back_as_an_error() -> None:
    model = ScriptedModel(
        [
            reply(None, call("search_documents", "c1", query="")),
            reply(None, call("search_documents", "c2", query="customs")),
            "ok",
        ]
    )
    with support_docs.library() as docs:
        result = support_docs.ask(docs, model)
    empty, found = tool_messages(result)
    assert empty.is_error and "no word to search for" in empty.content
    assert json.loads(found.content)[0]["file"] == "shipping.md" and result.ok


def test_research_pipeline_on_scripted_models_against_the_stub() -> None:
    with research_pipeline.search_backend(None) as search:
        result = research_pipeline.run(research_pipeline.build(search))
    assert result.ok, result.failure
    [found] = tool_messages(result)
    urls = [r["url"] for r in json.loads(found.content)]
    # the stub ranks by query words found: "production" puts the pilot-lines page first
    assert urls[0] == "https://example.org/news/solid-state-battery-pilot-lines" and len(urls) == 3
    assert result.output.startswith("BRIEF: ") and "pilot production" in result.output
    assert not history_problems(result.snapshot.conversation)


def test_research_pipeline_with_scripted_model() -> None:
    model = ScriptedModel(
        [
            reply(None, call("web_search", "c1", query="sodium-ion cold")),
            "Findings: sodium-ion works in the cold (https://example.org/guide/sodium-ion).",
            "Sodium-ion batteries perform well in the cold [https://example.org/guide/sodium-ion].",
        ]
    )
    with research_pipeline.search_backend(None) as search:
        result = research_pipeline.run(research_pipeline.build(search, model), "sodium-ion")
    assert result.ok and "sodium-ion" in result.output
    [found] = tool_messages(result)
    assert json.loads(found.content)[0]["url"] == "https://example.org/guide/sodium-ion"


def test_the_stub_answers_like_searxng() -> None:
    with searxng_stub() as url:
        answer = httpx.get(f"{url}/search", params={"q": "lithium dendrites", "format": "json"}).json()
        assert httpx.get(f"{url}/search", params={"q": "x"}).status_code == 403  # format=json is required
    assert answer["results"][0]["url"] == "https://example.org/review/solid-electrolyte-dendrites"
    assert set(answer) >= {"query", "number_of_results", "results", "answers", "suggestions", "unresponsive_engines"}
