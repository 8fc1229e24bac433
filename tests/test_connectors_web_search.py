"""`web_search` and the `SearXNG` backend against a stub server on 127.0.0.1: the answer in
SearXNG's JSON shape (`tests/data/searxng/`, see SOURCES.md there), 429 with Retry-After, 500,
403, HTML instead of JSON, a timeout, a refused connection, and an agent that uses the tool.
No test reaches the internet."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina
from connector_stubs import Answer, stub_server

from fsm_agents import Agent, ToolMessage, run_sync
from fsm_agents.connectors import (
    EmptySearchQuery,
    SearchConnectionError,
    SearchHTTPError,
    SearchMalformedResponse,
    SearchRateLimited,
    SearchResult,
    SearchTimeout,
    SearXNG,
    WebSearchError,
    web_search,
)
from fsm_agents.errors import InvalidDefinition
from fsm_agents.models.scripted import ScriptedModel, call, reply

pytestmark = pytest.mark.anyio

RECORDED = json.loads((Path(__file__).parent / "data" / "searxng" / "search_asyncio_gather.json").read_text())


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3, cap=True):
        yield


async def test_results_parsed_from_the_searxng_shape(anyio_backend: str) -> None:
    with stub_server(Answer(200, RECORDED)) as stub:
        async with SearXNG(stub.url, categories="general", language="en") as backend:
            results = await backend.search("asyncio gather", limit=5)
    assert results[0] == SearchResult(
        title="Coroutines and Tasks — Python 3.13 documentation",
        url="https://docs.python.org/3/library/asyncio-task.html",
        snippet="asyncio.gather(*aws, return_exceptions=False) Run awaitable objects in the aws sequence concurrently.",
        engine="duckduckgo",
    )
    assert results[1].published == "2017-02-14T00:00:00"
    assert results[2].snippet == ""  # a result without content
    assert len(results) == 3  # the infobox is not a web result
    seen = stub.requests[0]
    assert (seen.method, seen.path) == ("GET", "/search")
    assert seen.query == {"q": ["asyncio gather"], "format": ["json"], "categories": ["general"], "language": ["en"]}


async def test_results_without_a_url_are_skipped() -> None:
    payload = {**RECORDED, "results": [{"title": "no link", "url": None, "content": "x"}, *RECORDED["results"][:1]]}
    with stub_server(Answer(200, payload)) as stub:
        results = await SearXNG(stub.url).search("q")
    assert [r.url for r in results] == ["https://docs.python.org/3/library/asyncio-task.html"]


async def test_limit_cuts_the_results() -> None:
    with stub_server(Answer(200, RECORDED)) as stub:
        assert len(await SearXNG(stub.url).search("x", limit=1)) == 1


async def test_429_with_retry_after_is_waited_for_then_retried() -> None:
    with stub_server(Answer(429, "slow down", {"retry-after": "0"}), Answer(200, RECORDED)) as stub:
        results = await SearXNG(stub.url).search("asyncio gather")
    assert len(stub.requests) == 2 and results[0].engine == "duckduckgo"


async def test_429_with_a_long_retry_after_is_raised_at_once() -> None:
    with (
        stub_server(Answer(429, "slow down", {"retry-after": "3600"})) as stub,
        pytest.raises(SearchRateLimited, match=r"retry after 3600 s") as info,
    ):
        await SearXNG(stub.url).search("q")
    assert info.value.retry_after == 3600 and info.value.status == 429 and len(stub.requests) == 1


async def test_500_is_retried_then_raised() -> None:
    with (
        stub_server(*[Answer(500, "Internal Server Error")] * 3) as stub,
        pytest.raises(SearchHTTPError, match="HTTP 500") as info,
    ):
        await SearXNG(stub.url, max_retries=2).search("q")
    assert info.value.status == 500 and len(stub.requests) == 3


async def test_500_then_success() -> None:
    with stub_server(Answer(502, "bad gateway"), Answer(200, RECORDED)) as stub:
        assert (await SearXNG(stub.url).search("q"))[0].url.startswith("https://docs.python.org")
    assert len(stub.requests) == 2


async def test_403_explains_how_to_enable_json() -> None:
    with stub_server(Answer(403, "Forbidden")) as stub, pytest.raises(SearchHTTPError, match=r"settings\.yml") as info:
        await SearXNG(stub.url).search("q")
    assert info.value.status == 403 and len(stub.requests) == 1  # not retried


async def test_html_instead_of_json_is_malformed_and_not_retried() -> None:
    page = "<!DOCTYPE html><html><body><form id='search'>SearXNG</form></body></html>"
    with (
        stub_server(Answer(200, page)) as stub,
        pytest.raises(SearchMalformedResponse, match=r"not JSON.*JSON format enabled"),
    ):
        await SearXNG(stub.url).search("q")
    assert len(stub.requests) == 1


async def test_json_of_another_shape_is_malformed() -> None:
    with stub_server(Answer(200, {"hits": []})) as stub, pytest.raises(SearchMalformedResponse, match="no 'results' list"):
        await SearXNG(stub.url).search("q")


async def test_timeout_is_retried_then_raised(anyio_backend: str) -> None:
    with (
        stub_server(Answer(200, RECORDED, delay=1.0), Answer(200, RECORDED, delay=1.0)) as stub,
        pytest.raises(SearchTimeout, match=r"within 0\.2 s"),
    ):
        await SearXNG(stub.url, timeout=0.2, max_retries=1).search("q")
    assert len(stub.requests) == 2


async def test_refused_connection() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SearchConnectionError, match="cannot reach"):
        await SearXNG(f"http://127.0.0.1:{port}", max_retries=0).search("q")


def test_errors_are_typed() -> None:
    for cls in (SearchHTTPError, SearchRateLimited, SearchTimeout, SearchConnectionError, SearchMalformedResponse):
        assert issubclass(cls, WebSearchError)
    with pytest.raises(InvalidDefinition, match="backend"):
        web_search(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidDefinition, match="base_url"):
        SearXNG("localhost:8888")
    with pytest.raises(InvalidDefinition, match="max_results"):
        web_search(SearXNG("http://127.0.0.1:1"), max_results=0)


def test_an_agent_searches_and_failures_are_fed_back() -> None:
    with stub_server(Answer(200, RECORDED), *[Answer(500, "boom")] * 3) as stub:
        search = web_search(SearXNG(stub.url), max_results=2)
        model = ScriptedModel(
            [
                reply(None, call("web_search", "c1", query="")),
                reply(None, call("web_search", "c2", query="asyncio gather")),
                reply(None, call("web_search", "c3", query="asyncio wait")),
                "Use asyncio.gather (https://docs.python.org/3/library/asyncio-task.html).",
            ]
        )
        result = run_sync(Agent("researcher", "Search, then answer.", model=model, tools=search), "gather?")
    assert result.ok, result.failure
    empty, found, failed = [m for m in result.snapshot.conversation.messages if isinstance(m, ToolMessage)]
    assert empty.is_error and "query is empty" in empty.content
    assert not found.is_error and [r["url"] for r in json.loads(found.content)] == [
        "https://docs.python.org/3/library/asyncio-task.html",
        "https://stackoverflow.com/questions/42231161/asyncio-gather-vs-asyncio-wait",
    ]
    assert failed.is_error and "SearchHTTPError" in failed.content and "HTTP 500" in failed.content
    assert len(stub.requests) == 4


async def test_any_backend_with_the_protocol_works() -> None:
    class Canned:
        async def search(self, query: str, *, limit: int) -> list[SearchResult]:
            return [SearchResult(title=query, url=f"https://example.test/{i}") for i in range(10)][:limit]

    search = web_search(Canned(), max_results=3, limit=4)
    assert len(await search.search("x")) == 3
    assert len(await search.search("x", 100)) == 4
    with pytest.raises(EmptySearchQuery):
        await search.search(" \n")
    assert [t.name for t in search] == ["web_search"]
