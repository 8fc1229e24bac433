"""The HTTP layer shared by the provider clients: one pooled `httpx.AsyncClient` per model,
typed errors, retries (via `stamina`) and server-sent events (via `httpx-sse`).

Errors raised (all `ModelError`s, so the runtime turns them into `ModelFailed`):

- HTTP 429 → `RateLimited(status, body, retry_after)` (`Retry-After` in seconds or as an HTTP date);
- any other status ≥ 400 → `ModelHTTPError(status, body)`;
- an httpx timeout → `ModelTimeout`; a connection failure → `ModelConnectionError` (refused,
  DNS, and a connection that breaks mid-answer, whether by a reset or by the server closing it
  before the announced end of the body);
- a body that is not JSON, lacks fields, or a stream that ends early without a transport error
  (a complete HTTP answer whose events stop before the end) → `MalformedResponse`;
- no API key where the provider needs one → `MissingAPIKey`.

Retries: 429, 5xx, timeouts and connection errors are retried (`max_retries` extra attempts,
exponential backoff with jitter from `stamina`); a 429 waits at least its `Retry-After`. Other
4xx are never retried. In tests, `stamina.set_testing(True, attempts=n)` removes the waits.

API keys live only in a private attribute and in request headers: they are kept out of reprs,
log records, exception messages and error bodies (a body echoing the key is redacted).
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import anyio
import httpx
import pydantic_core
import sniffio
import stamina
from httpx_sse import EventSource, ServerSentEvent, SSEError

from fsm_agents._secrets import register_secret
from fsm_agents.errors import MissingAPIKey, ModelConnectionError
from fsm_agents.models.base import (
    MalformedResponse,
    ModelError,
    ModelHTTPError,
    ModelResponse,
    ModelTimeout,
    RateLimited,
    StreamDelta,
)

__all__ = [
    "HTTPModel",
    "MissingAPIKey",
    "ModelConnectionError",
    "parse_retry_after",
    "retry_wait",
]

log = logging.getLogger("fsm_agents.models.http")

#: A `Retry-After` longer than this (seconds) is not waited for: the error is raised at once.
MAX_RETRY_AFTER = 120.0

_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds (`"2"`, `"1.5"`) or an HTTP
    date (RFC 9110 §10.2.3). `None` when absent or unparseable; never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def is_retryable(exc: Exception) -> bool:
    """Whether a failed attempt is worth repeating: 429, 5xx (and 408/409/529), timeouts,
    connection errors. Other 4xx, malformed answers and missing keys are not."""
    if isinstance(exc, RateLimited):
        return exc.retry_after is None or exc.retry_after <= MAX_RETRY_AFTER
    if isinstance(exc, ModelHTTPError):
        return exc.status in _RETRYABLE_STATUS or exc.status >= 500
    return isinstance(exc, (ModelTimeout, ModelConnectionError))


def retry_wait(exc: Exception, *, jitter: float = 1.0) -> bool | float:
    """The `stamina` backoff hook: `False` (do not retry), `True` (exponential backoff with
    jitter) or, for a 429 with `Retry-After`, that many seconds plus up to `jitter` seconds."""
    if not is_retryable(exc):
        return False
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return exc.retry_after + random.uniform(0.0, jitter)
    return True


def _event_loop_token() -> object:
    """Identifies the running event loop: an `httpx.AsyncClient` must not outlive its loop."""
    library = sniffio.current_async_library()
    if library == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    import asyncio

    return asyncio.get_running_loop()


class PooledClient(ABC):
    """One pooled `httpx.AsyncClient`, opened on first use and again when the event loop changes
    (a client is bound to the loop that opened it), closed by `aclose` or `async with`.
    Subclasses say how to open it (`_new_client`)."""

    _client: httpx.AsyncClient | None = None
    _client_loop: object = None

    @abstractmethod
    def _new_client(self) -> httpx.AsyncClient:
        """A new client for the running event loop."""

    def _client_for_loop(self) -> httpx.AsyncClient:
        loop = _event_loop_token()
        client = self._client
        if client is None or client.is_closed or self._client_loop is not loop:
            if client is not None and not client.is_closed:
                log.debug("%s: event loop changed; opening a new HTTP client", type(self).__name__)
            client = self._new_client()
            self._client, self._client_loop = client, loop
        return client

    async def aclose(self) -> None:
        """Close the pooled HTTP client (idempotent). The object stays usable: a new client is
        opened on the next request."""
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class HTTPModel(PooledClient):
    """Base of the HTTP provider clients.

    - `base_url`: the API root; `timeout`: seconds per HTTP request (connect, each read, write);
    - `max_retries`: extra attempts after a retryable failure (0 = try once);
    - `headers`: extra headers for every request; `transport`: an `httpx.AsyncBaseTransport`
      (e.g. `httpx.MockTransport` in tests).

    The `httpx.AsyncClient` is created on first use and reused (connection pooling); `aclose()`
    or `async with model:` closes it. A client created in another event loop (e.g. an earlier
    `run_sync`) is dropped and a new one made, so a model can serve several `run_sync` calls.
    """

    _secret_headers: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        headers: Mapping[str, str] | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not (timeout > 0):
            raise ValueError("timeout must be a positive number of seconds")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self._api_key = api_key
        register_secret(api_key)  # every Redactor (logs, cassettes) removes it from now on
        self._extra_headers = dict(headers or {})
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._client_loop: object = None

    # -- lifecycle ------------------------------------------------------------------------------
    def _auth_headers(self) -> dict[str, str]:
        """Headers carrying the key; subclasses override. Raise `MissingAPIKey` when needed."""
        return {}

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            transport=self._transport,
            headers={"accept": "application/json", **self._extra_headers},
        )

    # -- errors ---------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        key = self._api_key
        if key and key in text:
            text = text.replace(key, "[REDACTED]")
        return text

    def _status_error(self, response: httpx.Response, body: str) -> ModelHTTPError:
        body = self._redact(body)
        if response.status_code == 429:
            return RateLimited(429, body, parse_retry_after(response.headers.get("retry-after")))
        return ModelHTTPError(response.status_code, body)

    def _timeout(self, detail: str = "") -> ModelTimeout:
        return ModelTimeout(f"{type(self).__name__}: no answer within {self.timeout} s{detail}")

    def _transport_error(self, exc: httpx.HTTPError) -> ModelError:
        what = f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}"
        if isinstance(exc, httpx.TimeoutException):
            return self._timeout(f" ({what})")
        if isinstance(exc, httpx.RemoteProtocolError):
            # a body cut short by the server closing the connection (FIN) is the same transport
            # failure as one cut by a reset (RST, an httpx.ReadError): both are retried
            return ModelConnectionError(f"{type(self).__name__}: the connection broke mid-answer ({what})")
        if isinstance(exc, (httpx.TransportError, httpx.StreamError)):
            return ModelConnectionError(f"{type(self).__name__}: cannot reach {self.base_url} ({what})")
        return ModelError(f"{type(self).__name__}: HTTP failure ({what})")

    def _retrying(self) -> Any:
        return stamina.retry_context(
            on=retry_wait,
            attempts=self.max_retries + 1,
            timeout=None,
            wait_initial=0.5,
            wait_max=30.0,
            wait_jitter=1.0,
        )

    # -- requests -------------------------------------------------------------------------------
    def _request(self, path: str, payload: Mapping[str, Any], *, stream: bool = False) -> httpx.Request:
        headers = {"content-type": "application/json", **self._auth_headers()}
        if stream:
            headers["accept"] = "text/event-stream"
            headers["cache-control"] = "no-store"
        content = pydantic_core.to_json(payload)
        return self._client_for_loop().build_request("POST", path, content=content, headers=headers)

    async def _post_once(self, path: str, payload: Mapping[str, Any]) -> Any:
        request = self._request(path, payload)
        client = self._client_for_loop()
        try:
            # httpx's timeouts bound each phase (connect, each read); this bounds the whole request
            with anyio.fail_after(self.timeout):
                response = await client.send(request)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        except TimeoutError:
            raise self._timeout() from None
        text = response.text
        if response.status_code >= 400:
            raise self._status_error(response, text)
        try:
            return pydantic_core.from_json(response.content)
        except ValueError:
            raise MalformedResponse(
                f"{type(self).__name__}: the answer (HTTP {response.status_code}) is not JSON", self._redact(text)
            ) from None

    async def post_json(self, path: str, payload: Mapping[str, Any]) -> Any:
        """POST `payload` as JSON to `path` (relative to `base_url`) with retries; the decoded
        JSON answer. Raises the typed errors listed in the module docstring."""
        async for attempt in self._retrying():
            with attempt:
                if attempt.num > 1:
                    log.info("%s: retry %d of POST %s", type(self).__name__, attempt.num - 1, path)
                return await self._post_once(path, payload)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _open_stream(self, path: str, payload: Mapping[str, Any]) -> httpx.Response:
        request = self._request(path, payload, stream=True)
        client = self._client_for_loop()
        try:
            with anyio.fail_after(self.timeout):  # until the headers arrive; then httpx's read timeout
                response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        except TimeoutError:
            raise self._timeout() from None
        if response.status_code >= 400:
            try:
                body = (await response.aread()).decode("utf-8", "replace")
            except httpx.HTTPError:
                body = ""
            finally:
                await response.aclose()
            raise self._status_error(response, body)
        return response

    @asynccontextmanager
    async def post_sse(self, path: str, payload: Mapping[str, Any]) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
        """POST `payload` and iterate the server-sent events of the answer.

        Opening the stream (until the status line and headers arrive) is retried like
        `post_json`; once events flow, a failure is raised as is (`ModelTimeout`,
        `ModelConnectionError` for a connection that broke, `MalformedResponse` for a non-SSE
        answer).
        """
        response: httpx.Response | None = None
        async for attempt in self._retrying():
            with attempt:
                response = await self._open_stream(path, payload)
        assert response is not None

        async def events() -> AsyncGenerator[ServerSentEvent, None]:
            try:
                async for sse in EventSource(response).aiter_sse():
                    yield sse
            except SSEError as exc:  # (an httpx.TransportError subclass)
                raise MalformedResponse(f"{type(self).__name__}: not an event stream ({exc})") from None
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None

        stream = events()
        try:
            yield stream
        finally:
            await stream.aclose()
            await response.aclose()


def loads_event(sse: ServerSentEvent, who: str) -> Any:
    """The JSON payload of one server-sent event; `MalformedResponse` when it is not JSON."""
    try:
        return pydantic_core.from_json(sse.data)
    except ValueError:
        raise MalformedResponse(f"{who}: a stream event is not JSON", sse.data[:2000]) from None


async def collect_stream(
    deltas: AsyncIterator[StreamDelta],
    response: Callable[[], ModelResponse],
    on_delta: Callable[[StreamDelta], Awaitable[None] | None] | None = None,
) -> ModelResponse:
    """Drain `deltas`, calling `on_delta` (sync or async) for each, then return `response()`
    (the provider's assembler, fed by the same stream)."""
    async for delta in deltas:
        if on_delta is not None:
            result = on_delta(delta)
            if result is not None:
                await result
    return response()
