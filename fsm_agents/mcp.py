"""Model Context Protocol servers as toolsets: `MCPServerStdio` and `MCPServerHTTP` (extra `[mcp]`).

    from fsm_agents import Agent, run
    from fsm_agents.mcp import MCPServerStdio

    time = MCPServerStdio("python", ["-m", "mcp_server_time"], prefix="time")
    agent = Agent("clock", "Answer with the tools.", model, tools=[time])
    result = await run(agent, "What time is it in Tokyo?")

A server is a `fsm_agents.tools.Toolset`: when a run starts, the runtime connects to it (in the
run's task), lists its tools once (`tools/list`, every page) and offers them to the model beside
the agent's own; when the run ends, it disconnects (a stdio server's process is stopped). To keep
one connection (and one listing) across many runs, hold it open: `async with time: ...` around
them — runs then share it. Built on the official `mcp` SDK (`ClientSession` over `stdio_client` /
`streamable_http_client`); the wire format is the MCP specification's
(https://modelcontextprotocol.io/specification/2025-11-25/server/tools).

A call is a normal `RunTools` effect (the agent's tool executor): the arguments are validated
against the server's own `inputSchema` (`jsonschema`; a mismatch is an error result fed back to
the model), the call has a timeout (`timeout=`, per server), may wait for a human
(`requires_approval=`), and its text is cut like any tool's. It is not retried, and counts as
not idempotent (a crash while it ran ends a resumed run FAILED(`uncertain_effect`)) unless the
server's annotations say `idempotentHint` or `readOnlyHint`. Its output is the text of its
content blocks joined by newlines, then its `structuredContent` as JSON unless the text already
says the same (the SDK's servers send both). `isError`, an error response, a malformed result,
a server that exited or hangs: an error result (`MCPToolError`, or the timeout), never an
exception out of the run. At listing: a server that cannot start or answer in time is
`MCPServerError`; a tool name that breaks the providers' rule (1-64 of `[A-Za-z0-9_-]`, after the
prefix) or a malformed `inputSchema` is `InvalidDefinition`. See docs/architecture.md, "MCP
toolsets".
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.abc
import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from fsm_agents.errors import InvalidDefinition, MCPServerError, MCPToolError
from fsm_agents.state import is_valid_name
from fsm_agents.tools import Tool

try:
    import httpx2
    import jsonschema
    import mcp_types
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError
except ImportError as exc:  # pragma: no cover - the extra is installed wherever the tests run
    raise ImportError("fsm_agents.mcp needs the mcp SDK: pip install 'fsm-agents[mcp]'") from exc

__all__ = ["MCPServerHTTP", "MCPServerStdio"]

log = logging.getLogger("fsm_agents.mcp")

DEFAULT_TIMEOUT = 30.0
"""Seconds a tool call may take (per server, `timeout=`)."""
DEFAULT_CONNECT_TIMEOUT = 30.0
"""Seconds to start (or reach) a server, `initialize` it and list its tools (`connect_timeout=`)."""


class _Connection:
    """One open MCP session, run in a task of its own (started in a task group of the task that
    opens it): the SDK's transport and `ClientSession` are entered and left in that task, so a
    transport that fails (an HTTP server that went away) ends this task — its calls then fail
    with "closed" — and never cancels the run. Its tools are listed once, when it starts."""

    def __init__(self, server: _MCPServer) -> None:
        self.server = server
        self.session: ClientSession | None = None
        self.tools: tuple[Tool, ...] = ()
        self._closing = anyio.Event()
        self._stack: AsyncExitStack | None = None

    async def start(self) -> None:
        """Connect, `initialize`, list the tools. Raises `MCPServerError` or `InvalidDefinition`
        (see the module's docstring); the connection is then already closed."""
        stack = AsyncExitStack()
        tg = await stack.enter_async_context(anyio.create_task_group())
        try:
            failure = await tg.start(self._serve)
        except BaseException as exc:  # the opening task is cancelled
            self._closing.set()
            tg.cancel_scope.cancel()
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if failure is not None:
            await stack.aclose()
            raise failure
        self._stack = stack

    async def close(self) -> None:
        """Disconnect (a stdio server's process is stopped: the SDK closes its stdin, then
        terminates it) and wait until the connection's task has ended."""
        self._closing.set()
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _serve(self, *, task_status: anyio.abc.TaskStatus[BaseException | None]) -> None:
        server = self.server
        started = False
        try:
            async with server._transport() as (read, write), ClientSession(read, write) as session:
                with anyio.fail_after(server.connect_timeout):
                    await session.initialize()
                    listed = await _list_all(session)
                self.tools = tuple(server._tool_of(self, t) for t in listed)
                self.session = session
                started = True
                task_status.started(None)
                await self._closing.wait()
        except Exception as exc:
            if not started:
                task_status.started(_start_failure(server, exc))
            else:
                log.warning("the connection to MCP server %r ended: %s", server.name, _describe(exc))
        finally:
            self.session = None


def _start_failure(server: _MCPServer, exc: BaseException) -> BaseException:
    """The typed error for a server that could not be listed."""
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, (InvalidDefinition, MCPServerError)):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, TimeoutError):
            return MCPServerError(
                f"MCP server {server.name!r} did not answer initialize/tools/list within "
                f"{server.connect_timeout} s (connect_timeout=): is it an MCP server, and does it start?"
            )
    for leaf in leaves:
        if isinstance(leaf, ValidationError):
            return InvalidDefinition(f"MCP server {server.name!r} sent a malformed tool listing: {leaf}")
    return MCPServerError(f"cannot connect to MCP server {server.name!r}: {_describe(exc)}")


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, exception groups (anyio's task groups) opened."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def _list_all(session: ClientSession) -> list[mcp_types.Tool]:
    """Every tool of the server, following `nextCursor` pages."""
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    while True:
        params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor is not None else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def _describe(exc: BaseException) -> str:
    """An exception's type and message; an exception group's first leaf (anyio's task groups
    wrap a transport's failure)."""
    exc = _leaves(exc)[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _MCPServer(ABC):
    """What the stdio and HTTP servers share: options, the held connection, listing and calls."""

    def __init__(
        self,
        *,
        name: str,
        prefix: str | None,
        timeout: float | None,
        connect_timeout: float,
        requires_approval: bool | Iterable[str],
    ) -> None:
        kind = type(self).__name__
        if prefix is not None and (not is_valid_name(prefix) or len(prefix) > 62):
            raise InvalidDefinition(
                f"{kind}: prefix must be 1-62 ASCII letters, digits, '_' or '-' (tools become '<prefix>_<name>'), "
                f"got {prefix!r}"
            )
        for option, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if value is None and option == "timeout":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
                raise InvalidDefinition(f"{kind}: {option} must be a positive number of seconds, got {value!r}")
        approval: bool | frozenset[str]
        if isinstance(requires_approval, bool):
            approval = requires_approval
        elif isinstance(requires_approval, str) or not isinstance(requires_approval, Iterable):
            raise InvalidDefinition(
                f"{kind}: requires_approval must be True, False or a set of tool names, got {requires_approval!r}"
            )
        else:
            names = list(requires_approval)
            if not all(isinstance(n, str) for n in names):
                raise InvalidDefinition(f"{kind}: requires_approval must hold tool names (str), got {names!r}")
            # the names as the model sees them
            approval = frozenset(f"{prefix}_{n}" if prefix else n for n in names)
        self._name = name
        self._prefix = prefix
        self.timeout = None if timeout is None else float(timeout)
        self.connect_timeout = float(connect_timeout)
        self._approval = approval
        self._held: _Connection | None = None
        self._depth = 0

    # -- the Toolset protocol ----------------------------------------------------------------
    @property
    def name(self) -> str:
        """Names the server in error messages."""
        return self._name

    @property
    def prefix(self) -> str | None:
        """When set, every listed tool is named `<prefix>_<its name>`."""
        return self._prefix

    @property
    def requires_approval(self) -> bool | frozenset[str]:
        """`True` (every tool), `False`, or the tool names (prefixed) whose calls wait for a human."""
        return self._approval

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Sequence[Tool]]:
        """The server's tools for one run: the held connection's (`async with server:`) when
        there is one, else a connection of the run's own, closed when the block ends. Raises
        `MCPServerError` and `InvalidDefinition` (see the module's docstring)."""
        if self._held is not None:
            yield self._held.tools
            return
        connection = _Connection(self)
        await connection.start()
        try:
            yield connection.tools
        finally:
            await connection.close()

    # -- a connection held across runs ---------------------------------------------------------
    async def __aenter__(self) -> _MCPServer:
        """Connect (once: entries nest, the last exit disconnects) and list the tools; runs made
        while it is held share this connection. Enter and leave it in one task (an app's
        lifespan, a `main()`), as anyio requires of the SDK's transports."""
        if self._held is None:
            connection = _Connection(self)
            await connection.start()
            self._held = connection
        self._depth += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._held is not None:
            held, self._held = self._held, None
            await held.close()

    async def list_tools(self) -> tuple[Tool, ...]:
        """The tools of the held connection (inside `async with server:`), as the model sees
        them. Raises `MCPServerError` when the server is not held open."""
        if self._held is None:
            raise MCPServerError(
                f"MCP server {self._name!r} is not connected: use `async with server:` around list_tools()"
            )
        return self._held.tools

    # -- subclasses ----------------------------------------------------------------------------
    @abstractmethod
    def _transport(self) -> AbstractAsyncContextManager[Any]:
        """The SDK's client transport of this kind of server (stdio, streamable HTTP)."""

    # -- listing -------------------------------------------------------------------------------
    def _tool_of(self, connection: _Connection, listed: mcp_types.Tool) -> Tool:
        """A `Tool` for a listed MCP tool: its name (prefixed), description and schema as given,
        arguments checked against that schema, calls through `connection`."""
        remote = listed.name
        name = f"{self._prefix}_{remote}" if self._prefix else remote
        if not is_valid_name(name):
            raise InvalidDefinition(
                f"MCP server {self._name!r} lists a tool named {remote!r}; as {name!r} it breaks the providers' rule "
                "for tool names (1-64 ASCII letters, digits, '_' or '-'): fix the server, or give a shorter prefix="
            )
        schema = listed.input_schema
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            raise InvalidDefinition(
                f"MCP server {self._name!r}: tool {remote!r} has an inputSchema that is not a JSON schema of "
                f"type 'object' (MCP requires one): {schema!r:.200}"
            )
        validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InvalidDefinition(
                f"MCP server {self._name!r}: tool {remote!r} has a malformed inputSchema: {exc.message}"
            ) from None
        validator = validator_class(schema)
        annotations = listed.annotations
        idempotent = annotations is not None and bool(annotations.idempotent_hint or annotations.read_only_hint)
        description = listed.description or listed.title or (annotations.title if annotations is not None else "") or ""
        return Tool(
            name=name,
            description=description,
            fn=_caller(self, connection, remote),
            input_model=_arguments_model(name, validator),
            is_async=True,
            timeout=self.timeout,
            idempotent=idempotent,
            requires_approval=self._approval is True or (isinstance(self._approval, frozenset) and name in self._approval),
            parameters_json=pydantic_core.to_json(schema).decode(),
        )


def _arguments_model(name: str, validator: Any) -> type[BaseModel]:
    """A pydantic model that takes any JSON object the server's schema accepts, as is (its
    values are passed through untouched); what the schema rejects is a `ValidationError` the
    executor feeds back to the model."""

    class Arguments(BaseModel):
        model_config = ConfigDict(extra="allow")

        @model_validator(mode="before")
        @classmethod
        def _matches_schema(cls, data: Any) -> Any:
            errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
            if errors:
                raise ValueError("; ".join(_problem(e) for e in errors[:5]))
            if not isinstance(data, dict):  # an object schema that accepts a non-object (no "type")
                raise ValueError("the arguments must be a JSON object")
            return data

    Arguments.__name__ = Arguments.__qualname__ = f"{name}_arguments"
    return Arguments


def _problem(error: Any) -> str:
    """One `jsonschema` error as `path: message` (the message alone at the top level)."""
    path = ".".join(str(p) for p in error.path)
    return f"{path}: {error.message}" if path else str(error.message)


def _caller(server: _MCPServer, connection: _Connection, remote: str) -> Callable[..., Any]:
    """The tool's function: `tools/call` over `connection`, its result as text."""

    async def call(**arguments: Any) -> str:
        session = connection.session
        if session is None:
            raise MCPToolError(f"the connection to MCP server {server.name!r} is closed (did the server exit?)")
        try:
            result = await session.call_tool(remote, arguments)
        except MCPError as exc:
            if "closed" in exc.message.lower():
                raise MCPToolError(f"the connection to MCP server {server.name!r} is closed (did the server exit?)") from exc
            raise MCPToolError(f"MCP server {server.name!r} answered an error ({exc.code}): {exc.message}") from exc
        except ValidationError as exc:
            raise MCPToolError(f"MCP server {server.name!r} sent a malformed result: {exc}") from exc
        except RuntimeError as exc:  # the SDK's check of structuredContent against the outputSchema
            raise MCPToolError(f"MCP server {server.name!r}: {exc}") from exc
        text = result_text(result)
        if result.is_error:
            raise MCPToolError(text or f"MCP server {server.name!r} reported an error without a message")
        return text

    call.__name__ = remote
    return call


def result_text(result: mcp_types.CallToolResult) -> str:
    """A `tools/call` result as the text the model sees: each content block's text (an image or
    audio block as a one-line note, an embedded text resource as its text), joined by newlines;
    then `structuredContent` as JSON unless the text already says the same (the JSON text itself,
    or a `{"result": text}` wrapper the SDK's servers add to plain return values)."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, (mcp_types.ImageContent, mcp_types.AudioContent)):
            parts.append(f"[{block.type}: {block.mime_type}, {len(block.data)} base64 characters]")
        elif isinstance(block, mcp_types.EmbeddedResource):
            res = block.resource
            if isinstance(res, mcp_types.TextResourceContents):
                parts.append(res.text)
            else:
                parts.append(f"[resource {res.uri}: {res.mime_type or 'binary'}]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource link {block.uri}: {block.name}]")
        else:
            parts.append(f"[{getattr(block, 'type', type(block).__name__)} content]")
    text = "\n".join(parts)
    structured = result.structured_content
    if structured is None or _says_the_same(text, structured):
        return text
    as_json = pydantic_core.to_json(structured, fallback=str).decode()
    return f"{text}\n{as_json}" if text else as_json


def _says_the_same(text: str, structured: Any) -> bool:
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = text
    if parsed == structured:
        return True
    return isinstance(structured, dict) and structured.keys() == {"result"} and structured["result"] in (parsed, text)


class MCPServerStdio(_MCPServer):
    """An MCP server run as a subprocess, spoken to over its stdin/stdout (the SDK's
    `stdio_client`); the process starts when a run starts (or `async with server:`) and is
    stopped when it ends.

    - `command`, `args`: the program and its arguments (e.g. `"python", ["-m",
      "mcp_server_time"]`); `env`: variables added to the SDK's safe default environment;
      `cwd`: its working directory; `errlog`: where its stderr goes (default `sys.stderr`);
    - `prefix`: name the tools `<prefix>_<name>` (to avoid clashes);
    - `timeout`: seconds per tool call (`None`: the run's `Limits.tool_timeout`, if any);
      `connect_timeout`: seconds to start, `initialize` and list the tools;
    - `requires_approval`: `True` for every tool, or the server's names of the tools whose calls
      wait for a human's decision (the run suspends; see `fsm_agents.resume`);
    - `name`: names the server in errors (default: the command's file name and its arguments).

    Raises `InvalidDefinition` for a bad option.
    """

    def __init__(
        self,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        prefix: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        requires_approval: bool | Iterable[str] = False,
        cwd: str | Path | None = None,
        errlog: TextIO | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(command, str) or not command:
            raise InvalidDefinition(f"MCPServerStdio: command must be a non-empty str, got {command!r}")
        if isinstance(args, str) or not all(isinstance(a, str) for a in args):
            raise InvalidDefinition(f"MCPServerStdio: args must be a list of str, got {args!r}")
        if env is not None and not (
            isinstance(env, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise InvalidDefinition("MCPServerStdio: env must map str to str")
        super().__init__(
            name=name or " ".join([os.path.basename(command), *args])[:80],
            prefix=prefix,
            timeout=timeout,
            connect_timeout=connect_timeout,
            requires_approval=requires_approval,
        )
        self.command = command
        self.args = tuple(args)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.errlog = errlog

    def _transport(self) -> AbstractAsyncContextManager[Any]:
        params = StdioServerParameters(command=self.command, args=list(self.args), env=self.env, cwd=self.cwd)
        return stdio_client(params, errlog=self.errlog or sys.stderr)

    def __repr__(self) -> str:
        return f"MCPServerStdio({self.command!r}, {list(self.args)!r}, prefix={self.prefix!r})"


class MCPServerHTTP(_MCPServer):
    """An MCP server reached over streamable HTTP (the SDK's `streamable_http_client`) at `url`
    (e.g. `"http://127.0.0.1:8000/mcp"`), with `headers` on every request (authorization...).
    The other options are `MCPServerStdio`'s; `name` defaults to the URL. Raises
    `InvalidDefinition` for a bad option."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        prefix: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        requires_approval: bool | Iterable[str] = False,
        name: str | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidDefinition(f"MCPServerHTTP: url must be an http:// or https:// URL, got {url!r}")
        if headers is not None and not (
            isinstance(headers, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise InvalidDefinition("MCPServerHTTP: headers must map str to str")
        super().__init__(
            name=name or url,
            prefix=prefix,
            timeout=timeout,
            connect_timeout=connect_timeout,
            requires_approval=requires_approval,
        )
        self.url = url
        self.headers = dict(headers) if headers is not None else None

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        # the SDK's default client (its timeouts), with our headers; closed with the connection
        timeout = httpx2.Timeout(self.connect_timeout, read=max(300.0, self.timeout or 0.0))
        async with (
            httpx2.AsyncClient(headers=self.headers, timeout=timeout) as client,
            streamable_http_client(self.url, http_client=client) as streams,
        ):
            yield streams

    def __repr__(self) -> str:
        return f"MCPServerHTTP({self.url!r}, prefix={self.prefix!r})"
