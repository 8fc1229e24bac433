"""`web_search`: let an agent search the web through a pluggable backend.

A backend is anything with `async search(query, *, limit) -> Sequence[SearchResult]` (the
`SearchBackend` protocol). Shipped: `SearXNG`, a client of SearXNG's JSON search API
(https://docs.searxng.org/dev/search_api.html): `GET {base_url}/search?q=...&format=json`,
answering `{"query", "number_of_results", "results": [{"url", "title", "content", "engine",
"engines", "score", "publishedDate", ...}], "answers", "suggestions", "unresponsive_engines"}`.
The instance must allow the JSON format (`search: formats: [html, json]` in its settings.yml); one
that does not answers 403.

Errors (all `WebSearchError`, so one `except` catches them; inside an agent run the tool
executor feeds their message back to the model):

- HTTP 429 → `SearchRateLimited` (with `retry_after` seconds from `Retry-After`);
- any other status ≥ 400 → `SearchHTTPError(status, body)`;
- no answer within `timeout` seconds → `SearchTimeout`; unreachable → `SearchConnectionError`;
- an answer that is not the JSON shape above (an HTML page, say) → `SearchMalformedResponse`.

429, 5xx, timeouts and connection errors are retried (`max_retries` extra attempts, exponential
backoff with jitter by `stamina`; a 429 waits its `Retry-After` when that is at most
`MAX_RETRY_AFTER` seconds). `stamina.set_testing(True)` removes the waits in tests.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import anyio
import httpx
import pydantic_core
import stamina
from pydantic import BaseModel, ConfigDict

from fsm_agents.errors import FsmAgentsError, InvalidDefinition
from fsm_agents.models._http import PooledClient, parse_retry_after
from fsm_agents.tools import SingleToolset, tool

__all__ = [
    "MAX_RETRY_AFTER",
    "EmptySearchQuery",
    "SearXNG",
    "SearchBackend",
    "SearchConnectionError",
    "SearchHTTPError",
    "SearchMalformedResponse",
    "SearchRateLimited",
    "SearchResult",
    "SearchTimeout",
    "WebSearch",
    "WebSearchError",
    "web_search",
]

log = logging.getLogger("fsm_agents.connectors.web_search")

#: A `Retry-After` longer than this (seconds) is not waited for: the error is raised at once.
MAX_RETRY_AFTER = 60.0


class WebSearchError(FsmAgentsError):
    """A web search failed (see the subclasses); the message says why and what to do."""


class SearchHTTPError(WebSearchError):
    """The search backend answered an HTTP error status. `status`, `body` (first 2000 characters)."""

    def __init__(self, status: int, body: str, message: str | None = None) -> None:
        self.status, self.body = status, body[:2000]
        super().__init__(message or f"the search backend answered HTTP {status}: {body[:300]}")


class SearchRateLimited(SearchHTTPError):
    """HTTP 429: too many searches. `retry_after`: seconds the backend asked to wait, or `None`."""

    def __init__(self, status: int, body: str, retry_after: float | None) -> None:
        self.retry_after = retry_after
        hint = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        super().__init__(status, body, f"the search backend is rate limiting (HTTP {status}){hint}: search less often")


class SearchTimeout(WebSearchError):
    """The search backend did not answer in time."""


class SearchConnectionError(WebSearchError):
    """The search backend could not be reached (refused, reset, DNS)."""


class SearchMalformedResponse(WebSearchError):
    """The answer is not what the backend's API returns (not JSON, or JSON of another shape)."""


class EmptySearchQuery(WebSearchError, ValueError):
    """A search query is empty or blank."""


class SearchResult(BaseModel):
    """One web result: `title`, `url`, `snippet` (the engine's summary, may be empty), and when
    known the `engine` that found it and its `published` date (as the engine gave it)."""

    model_config = ConfigDict(frozen=True)

    title: str
    url: str
    snippet: str = ""
    engine: str | None = None
    published: str | None = None


@runtime_checkable
class SearchBackend(Protocol):
    """What `web_search` needs: `await backend.search(query, limit=n)` → at most `n` results,
    best first. Raise a `WebSearchError` (or any exception: it is fed back to the model)."""

    async def search(self, query: str, *, limit: int) -> Sequence[SearchResult]: ...


def _retryable(exc: Exception) -> bool | float:
    """The `stamina` backoff hook: `False` (give up), `True` (backoff) or seconds to wait."""
    if isinstance(exc, SearchRateLimited):
        if exc.retry_after is None:
            return True
        return exc.retry_after + random.uniform(0.0, 0.5) if exc.retry_after <= MAX_RETRY_AFTER else False
    if isinstance(exc, SearchHTTPError):
        return exc.status >= 500 or exc.status in (408, 425)
    return isinstance(exc, (SearchTimeout, SearchConnectionError))


class SearXNG(PooledClient):
    """A SearXNG instance's JSON API (see the module docstring for the wire format and errors).

    - `base_url`: the instance root, e.g. `http://127.0.0.1:8888`;
    - `categories`, `engines`: comma-separated SearXNG names (e.g. `"general"`, `"wikipedia"`);
      `language` (e.g. `"en"`), `safesearch` (0, 1, 2), `time_range` (`"day"`, `"month"`, `"year"`);
    - `timeout`: seconds per attempt; `max_retries`: extra attempts after a retryable failure;
    - `headers`: extra request headers; `transport`: an `httpx.AsyncBaseTransport` (tests).

    One pooled `httpx.AsyncClient` per event loop; `aclose()` or `async with` closes it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        categories: str | None = None,
        engines: str | None = None,
        language: str | None = None,
        safesearch: int | None = None,
        time_range: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidDefinition(f"SearXNG: base_url must be an http(s) URL, got {base_url!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise InvalidDefinition(f"SearXNG: timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidDefinition(f"SearXNG: max_retries must be an int >= 0, got {max_retries!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.params = {
            k: str(v)
            for k, v in {
                "categories": categories,
                "engines": engines,
                "language": language,
                "safesearch": safesearch,
                "time_range": time_range,
            }.items()
            if v is not None
        }
        self._headers = {"accept": "application/json", **(headers or {})}
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._client_loop: object = None

    def __repr__(self) -> str:
        return f"SearXNG({self.base_url!r})"

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(self.timeout), headers=self._headers, transport=self._transport
        )

    async def search(self, query: str, *, limit: int = 5) -> tuple[SearchResult, ...]:
        """At most `limit` results for `query`, in SearXNG's order (one page, ~20 results at
        most). Raises the `WebSearchError`s of the module docstring after the retries."""
        async for attempt in stamina.retry_context(
            on=_retryable, attempts=self.max_retries + 1, timeout=None, wait_initial=0.5, wait_max=20.0, wait_jitter=0.5
        ):
            with attempt:
                if attempt.num > 1:
                    log.info("%r: retry %d of %r", self, attempt.num - 1, query)
                payload = await self._get(query)
        return _parse_results(payload, limit)

    async def _get(self, query: str) -> Any:
        client = self._client_for_loop()
        try:
            with anyio.fail_after(self.timeout):  # httpx bounds each phase; this bounds the whole request
                response = await client.get("/search", params={"q": query, "format": "json", **self.params})
        except TimeoutError:
            raise SearchTimeout(f"{self!r} did not answer within {self.timeout:g} s") from None
        except httpx.TimeoutException as exc:
            raise SearchTimeout(f"{self!r} did not answer within {self.timeout:g} s ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise SearchConnectionError(f"cannot reach {self.base_url} ({type(exc).__name__}: {exc})") from None
        body = response.text
        if response.status_code == 429:
            raise SearchRateLimited(429, body, parse_retry_after(response.headers.get("retry-after")))
        if response.status_code == 403:
            raise SearchHTTPError(
                403,
                body,
                f"{self!r} answered 403: the instance does not allow format=json; "
                "add json to search.formats in its settings.yml",
            )
        if response.status_code >= 400:
            raise SearchHTTPError(response.status_code, body)
        try:
            return pydantic_core.from_json(response.content)
        except ValueError:
            kind = response.headers.get("content-type", "?")
            raise SearchMalformedResponse(
                f"{self!r} answered {kind!r} that is not JSON (first bytes: {body[:80]!r}): is base_url a SearXNG "
                "instance with the JSON format enabled?"
            ) from None


def _parse_results(payload: Any, limit: int) -> tuple[SearchResult, ...]:
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list):
        raise SearchMalformedResponse(f"the answer has no 'results' list (got {str(payload)[:200]!r})")
    out: list[SearchResult] = []
    for item in results:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str) or not item["url"]:
            continue  # infobox-like entries without a URL are not web results
        engine = item.get("engine")
        published = item.get("publishedDate")
        out.append(
            SearchResult(
                title=str(item.get("title") or item["url"]),
                url=item["url"],
                snippet=str(item.get("content") or ""),
                engine=engine if isinstance(engine, str) else None,
                published=str(published) if published else None,
            )
        )
        if len(out) >= limit:
            break
    if not out and isinstance(payload, dict) and payload.get("unresponsive_engines"):
        engines = ", ".join(str(e[0]) if isinstance(e, list) and e else str(e) for e in payload["unresponsive_engines"])
        log.warning("no result; unresponsive engines: %s", engines)
    return tuple(out)


class WebSearch(SingleToolset):
    """The toolset of `web_search`: one `Tool` (default name `web_search`; arguments `query` and
    optionally `max_results`) returning a JSON list of `SearchResult`s. Use as
    `Agent(tools=search)` or `Agent(tools=[*search, other_tool])`; `backend` is the backend."""

    def __init__(self, backend: SearchBackend, *, name: str, description: str | None, max_results: int, limit: int) -> None:
        self.backend = backend
        self.max_results = max_results
        self.limit = limit

        async def web_search(query: str, max_results: int | None = None) -> list[SearchResult]:
            """Search the web; returns results with title, URL and snippet.

            Args:
                query: what to search for: a few plain keywords, not a URL.
                max_results: how many results to return.
            """
            return await self.search(query, max_results)

        self._tool = tool(
            name=name,
            description=description or "Search the web. Returns results with title, url and snippet; cite the urls you use.",
        )(web_search)

    async def search(self, query: str, max_results: int | None = None) -> list[SearchResult]:
        """Search through the backend: at most `max_results` (default and cap: the toolset's)
        results. Raises `EmptySearchQuery` for a blank query, the backend's errors otherwise."""
        if not query.strip():
            raise EmptySearchQuery("the query is empty: search with a few keywords")
        n = self.max_results if max_results is None else max(1, min(max_results, self.limit))
        return list(await self.backend.search(query.strip(), limit=n))

    def __repr__(self) -> str:
        return f"WebSearch({self.backend!r}, tool={self._tool.name!r})"


def web_search(
    backend: SearchBackend,
    *,
    max_results: int = 5,
    limit: int = 10,
    name: str = "web_search",
    description: str | None = None,
) -> WebSearch:
    """A web-search toolset over `backend` (e.g. `SearXNG("http://127.0.0.1:8888")`).

    `max_results`: results per search by default; `limit`: the most the model may ask for.
    `name`, `description`: the tool as the model sees it. Raises `InvalidDefinition` for a
    backend without `async search(query, *, limit)` or counts below 1.
    """
    if not isinstance(backend, SearchBackend):
        raise InvalidDefinition(
            f"web_search: backend must have async search(query, *, limit) (e.g. SearXNG(url)), got {type(backend).__name__}"
        )
    for option, value in (("max_results", max_results), ("limit", limit)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidDefinition(f"web_search: {option} must be an int >= 1, got {value!r}")
    return WebSearch(backend, name=name, description=description, max_results=min(max_results, limit), limit=limit)
