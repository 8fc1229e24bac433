"""MCP servers as toolsets (issue 15, item 8): `fsm_agents.mcp` against real servers.

- `mcp-server-time` (its own package) over stdio, end to end through an agent;
- a server built with the `mcp` SDK (`MCPServer`) over streamable HTTP on 127.0.0.1, served by
  uvicorn in a thread the tests start and stop;
- `tests/mcp_stub_server.py`, a hand-written stdio server that misbehaves on purpose (errors,
  garbage, a crash, a hang, bad listings) and starts in milliseconds.

Most tests run on asyncio only (a stdio server costs a process start); a few run on trio too.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer

from fsm_agents import Agent, Approved, Denied, FunctionModel, InvalidDefinition, iterate, resume, run, stream, tool
from fsm_agents.errors import MCPServerError
from fsm_agents.events import ToolsFinished
from fsm_agents.mcp import MCPServerHTTP, MCPServerStdio, result_text
from fsm_agents.models import call, reply
from fsm_agents.patterns import Sequential
from fsm_agents.state import ModelRequest, ToolMessage
from fsm_agents.store import MemoryStore
from fsm_agents.tools import Toolset

STUB = str(Path(__file__).with_name("mcp_stub_server.py"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _same(text: str) -> str:
    return text


def _one() -> int:
    return 1


def stub(config: dict[str, Any] | None = None, **options: Any) -> MCPServerStdio:
    args = [STUB] if config is None else [STUB, json.dumps(config)]
    return MCPServerStdio(sys.executable, args, **options)


class Caller:
    """A model that calls the given tools on its first turn, then answers with the results it
    got (each tool message's content, or its error, one per line); it keeps every request."""

    def __init__(self, *calls: Any) -> None:
        self.calls = calls
        self.requests: list[ModelRequest] = []
        self.model = FunctionModel(self.reply)

    def reply(self, request: ModelRequest) -> Any:
        self.requests.append(request)
        results = [m for m in request.messages if isinstance(m, ToolMessage)]
        if not results:
            return reply(None, *self.calls)
        return "\n".join(("ERROR " if m.is_error else "") + m.content for m in results)

    def offered(self, i: int = 0) -> dict[str, Any]:
        return {t.name: t for t in self.requests[i].tools}


# -- mcp-server-time over stdio ----------------------------------------------------------------


@pytest.mark.anyio
async def test_mcp_server_time_over_stdio_end_to_end() -> None:
    time_server = MCPServerStdio(sys.executable, ["-m", "mcp_server_time", "--local-timezone", "UTC"], prefix="time")
    assert isinstance(time_server, Toolset)
    model = Caller(call("time_get_current_time", timezone="Asia/Tokyo"))
    own = tool(_same, name="own")  # the agent's own tool is offered beside the listed ones

    result = await run(Agent("clock", "Use the tools.", model.model, tools=[own, time_server]), "Tokyo time?")

    assert result.status == "done", result.failure
    offered = model.offered()
    assert set(offered) == {"own", "time_get_current_time", "time_convert_time"}
    schema = json.loads(offered["time_get_current_time"].parameters_json)
    assert schema["required"] == ["timezone"]  # the server's own schema, as listed
    answer = json.loads(result.output)  # the server's text (its structuredContent says the same)
    assert answer["timezone"] == "Asia/Tokyo" and answer["datetime"].endswith("+09:00")
    # a bad timezone is the server's isError, fed back to the model: the run goes on
    model = Caller(call("time_get_current_time", timezone="Nowhere/Atlantis"))
    result = await run(Agent("clock", "", model.model, tools=[time_server]), "?")
    assert result.status == "done" and result.output.startswith("ERROR ") and "Nowhere/Atlantis" in result.output


# -- a server built with the mcp SDK over streamable HTTP ---------------------------------------

http_app = MCPServer("inproc")


@http_app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@http_app.tool()
def weather(city: str) -> dict[str, Any]:
    """The weather in a city."""
    return {"city": city, "temp_c": 21}


@contextmanager
def serving(seen: list[Any]) -> Iterator[tuple[str, uvicorn.Server, threading.Thread]]:
    """`http_app` served by uvicorn in a thread on 127.0.0.1 (a free port), stopped at the end;
    `seen` gets the Authorization header of every request."""
    starlette_app = http_app.streamable_http_app()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]).get(b"authorization"))
        await starlette_app(scope, receive, send)

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the MCP HTTP server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp", server, thread
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[str, list[Any]]]:
    """The SDK's server for the module's tests, and the Authorization headers it received."""
    seen: list[Any] = []
    with serving(seen) as (url, _, _):
        yield url, seen


@pytest.mark.anyio
async def test_sdk_server_over_streamable_http_end_to_end(http_server: tuple[str, list[Any]]) -> None:
    url, seen = http_server
    server = MCPServerHTTP(url, headers={"Authorization": "Bearer t0ken"})
    model = Caller(call("add", a=2, b=40), call("weather", city="Oslo"), call("add", a="two"))

    result = await run(Agent("calc", "", model.model, tools=[server]), "2+40? Oslo?")

    assert result.status == "done", result.failure
    lines = result.output.split("\n", 1)
    assert lines[0] == "42"  # a plain return value: its text, not also {"result": 42}
    assert json.loads(lines[1].rsplit("\nERROR", 1)[0]) == {"city": "Oslo", "temp_c": 21}
    # arguments the server's schema rejects never reach it: an error result
    assert "ERROR Error: invalid arguments" in result.output and "'b' is a required property" in result.output
    assert b"Bearer t0ken" in seen
    assert model.offered()["add"].description == "Add two integers."


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_http_server_held_open_on_trio(http_server: tuple[str, list[Any]]) -> None:
    server = MCPServerHTTP(http_server[0], prefix="calc")
    async with server:
        listed = await server.list_tools()
        assert [t.name for t in listed] == ["calc_add", "calc_weather"]
        model = Caller(call("calc_add", a=1, b=1))
        result = await run(Agent("calc", "", model.model, tools=[server]), "1+1?")
        assert result.output == "2"
        assert await server.list_tools() is listed  # listed once per connection
    with pytest.raises(MCPServerError, match="not connected"):
        await server.list_tools()


@pytest.mark.anyio
async def test_an_http_server_that_goes_away_mid_run_gives_error_results_not_a_cancelled_run() -> None:
    """The transport's failure ends the connection's own task, not the run's."""
    with serving([]) as (url, server, thread):
        turns = iter([reply(None, call("add", a=1, b=2)), reply(None, call("add", a=3, b=4))])

        async def model(request: ModelRequest) -> Any:
            if len(request.messages) == 3:  # the first result is in: stop the server
                server.should_exit = True
                await anyio.to_thread.run_sync(thread.join)
            return next(turns, None) or "\n".join(m.content for m in request.messages if isinstance(m, ToolMessage))

        result = await run(Agent("calc", "", FunctionModel(model), tools=[MCPServerHTTP(url, timeout=10)]), "go")
    assert result.status == "done", result.failure
    first, second = result.output.split("\n", 1)
    assert first == "3" and "is closed (did the server exit?)" in second


# -- failures fed back: the stub server --------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_every_server_failure_is_a_fed_back_error_and_the_run_goes_on() -> None:
    """isError, a JSON-RPC error, a result that is not a CallToolResult and a hang (the server's
    timeout): each call gets an error result, the other calls of the reply keep theirs, the run
    ends DONE, and nothing hangs (a crash: the next test)."""
    model = Caller(call("echo", text="hi", times=2), call("fail"), call("rpc_error"), call("garbage"), call("hang"))
    started = time.monotonic()
    result = await run(Agent("a", "", model.model, tools=[stub(timeout=1.0)]), "go")
    assert time.monotonic() - started < 20

    assert result.status == "done", result.failure
    by_name = {r.name: r for r in result.snapshot.conversation.messages if isinstance(r, ToolMessage)}
    assert not by_name["echo"].is_error and json.loads(by_name["echo"].content.split("\n")[0]) == {"text": "hi", "times": 2}
    # the structured content differs from the text: both are given
    assert json.loads(by_name["echo"].content.split("\n")[1]) == {"args": {"text": "hi", "times": 2}}
    assert by_name["fail"].is_error and "the stub failed on purpose" in by_name["fail"].content
    assert by_name["rpc_error"].is_error and "answered an error (-32000): no such thing" in by_name["rpc_error"].content
    assert by_name["garbage"].is_error and "malformed result" in by_name["garbage"].content
    assert by_name["hang"].is_error and "timed out after 1.0 s" in by_name["hang"].content


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_server_that_exits_mid_call_gives_error_results_at_once() -> None:
    """The process exits during a call: that call, a concurrent one (`hang`, which would wait
    for its timeout otherwise) and a later one get error results; nothing waits for a timeout."""
    turns = iter([reply(None, call("exit"), call("hang")), reply(None, call("pid"))])

    def model(request: ModelRequest) -> Any:
        return next(turns, None) or "\n".join(m.content for m in request.messages if isinstance(m, ToolMessage))

    agent = Agent("a", "", FunctionModel(model), tools=[stub(timeout=60)])
    started = time.monotonic()
    result = await run(agent, "go")
    assert time.monotonic() - started < 30
    assert result.status == "done"
    assert result.output.count("is closed (did the server exit?)") == 3


@pytest.mark.anyio
async def test_arguments_are_checked_against_the_servers_schema() -> None:
    model = Caller(call("echo", times=0), call("echo", text="a", extra=1), call("echo", text="ok"))
    result = await run(Agent("a", "", model.model, tools=[stub()]), "go")
    lines = result.output.split("\n")
    assert lines[0].startswith("ERROR Error: invalid arguments") and "'text' is a required property" in lines[0]
    assert "times: 0 is less than the minimum of 1" in lines[0]
    assert lines[1].startswith("ERROR Error: invalid arguments") and "'extra' was unexpected" in lines[1]
    assert json.loads(lines[2]) == {"text": "ok"}


@pytest.mark.anyio
async def test_idempotence_comes_from_the_annotations_and_timeout_from_the_server() -> None:
    server = stub(timeout=7.5)
    async with server:
        tools = {t.name: t for t in await server.list_tools()}
    assert tools["echo"].idempotent and not tools["pid"].idempotent  # idempotentHint
    assert {t.timeout for t in tools.values()} == {7.5}
    assert all(t.retries == 0 for t in tools.values())


# -- one connection per run, or one held across runs --------------------------------------------


@pytest.mark.anyio
async def test_a_held_connection_is_shared_by_runs_and_each_run_otherwise_has_its_own() -> None:
    server = stub()

    async def pid() -> str:
        result = await run(Agent("a", "", Caller(call("pid")).model, tools=[server]), "pid?")
        assert result.status == "done"
        return str(result.output)

    alone = {await pid(), await pid()}
    assert len(alone) == 2  # a process per run, stopped when it ended
    async with server:
        async with server:  # entries nest
            held = {await pid(), await pid()}
        assert {await pid()} == held  # still held: the inner exit did not disconnect
    assert len(held) == 1 and not held & alone
    assert await pid() not in held


@pytest.mark.anyio
async def test_toolsets_of_a_patterns_children_are_listed_and_one_server_is_opened_once() -> None:
    server = stub()
    first, second = Caller(call("pid")), Caller(call("pid"))
    pattern = Sequential(
        "pipe", [Agent("one", "", first.model, tools=[server]), Agent("two", "", second.model, tools=[server])]
    )
    result = await run(pattern, "go", )
    assert result.status == "done", result.failure
    assert "pid" in first.offered() and "pid" in second.offered()
    outputs = [child.output for child in result.children.values()]
    assert len(outputs) == 2 and outputs[0] == outputs[1]  # the same process served both children


@pytest.mark.anyio
async def test_listed_tools_are_offered_to_their_own_agent_only() -> None:
    """After a handoff, the agent that owns the toolset is offered its tools; the other is not."""
    front_requests: list[ModelRequest] = []

    def front(request: ModelRequest) -> Any:
        front_requests.append(request)
        return reply(None, call("transfer_to_back"))

    back_requests: list[ModelRequest] = []

    def back(request: ModelRequest) -> Any:
        back_requests.append(request)
        pids = [m.content for m in request.messages if isinstance(m, ToolMessage) and m.name == "pid"]
        return pids[0] if pids else reply(None, call("pid"))

    agent = Agent("front", "", FunctionModel(front), handoffs=[Agent("back", "", FunctionModel(back), tools=[stub()])])
    result = await run(agent, "go")
    assert result.status == "done" and result.output.isdigit()
    assert [t.name for t in front_requests[0].tools] == ["transfer_to_back"]
    assert "pid" in {t.name for t in back_requests[0].tools}


@pytest.mark.anyio
async def test_stream_opens_toolsets_in_the_runs_task() -> None:
    model = Caller(call("echo", text="streamed"))
    events = [ev async for ev in stream(Agent("a", "", model.model, tools=[stub()]), "go")]
    assert json.loads(events[-1].result.output.split("\n")[0]) == {"text": "streamed"}


@pytest.mark.anyio
async def test_iterate_opens_toolsets_in_the_runs_task_and_closes_them_when_left_early() -> None:
    server = stub()
    model = Caller(call("pid"))
    async with iterate(Agent("a", "", model.model, tools=[server]), "go") as steps:
        async for item in steps:
            if isinstance(item.event, ToolsFinished):
                assert item.event.results[0].ok
                break  # leaving early cancels the run; its connection closes with it
    assert "pid" in model.offered()
    async with server:  # and the server can be opened again
        assert [t.name for t in await server.list_tools()][:2] == ["echo", "pid"]


@pytest.mark.anyio
@pytest.mark.parametrize("idempotent", [False, True])
async def test_a_run_stopped_during_an_mcp_call_resumes_by_the_tools_annotations(idempotent: bool) -> None:
    """With a store, the "started" record of an MCP call knows the listed tool: a call that was
    cut is run again on resume when the server says it is idempotent, else the run ends
    FAILED(uncertain_effect) without calling it again."""
    hang = {"name": "hang", "inputSchema": {"type": "object"}, "annotations": {"idempotentHint": idempotent}}

    def agent(timeout: float | None) -> Agent:
        return Agent("a", "", Caller(call("hang")).model, tools=[stub({"tools": [hang]}, timeout=timeout)])

    store = MemoryStore()
    with anyio.move_on_after(2):  # the process stops mid-call (here: the run is cancelled)
        await run(agent(None), "go", store=store, conversation_id="c")
        pytest.fail("the call should still be running")
    resumed = await resume("c", agent(0.5), store=store)  # (the same agent, its calls now time out)
    if idempotent:
        assert resumed.status == "done" and "timed out after 0.5 s" in resumed.output  # run again
    else:
        assert resumed.status == "failed" and resumed.failure is not None
        assert resumed.failure.kind == "uncertain_effect" and resumed.failure.detail == "hang"


# -- approval: the pure core decides from static data ------------------------------------------


@pytest.mark.anyio
async def test_requires_approval_suspends_and_resume_runs_the_approved_call() -> None:
    server = stub(prefix="s", requires_approval=["echo"])
    model = Caller(call("s_echo", text="approved"), call("s_pid"))
    agent = Agent("a", "", model.model, tools=[server])

    suspended = await run(agent, "go")
    assert suspended.status == "suspended"
    assert [p.request.tool for p in suspended.pending] == ["s_echo"]  # s_pid needs no approval
    done = await resume(suspended, agent, decisions={suspended.pending[0].call_id: Approved()})
    assert done.status == "done"
    assert json.loads(done.output.split("\n")[0]) == {"text": "approved"}


@pytest.mark.anyio
async def test_requires_approval_true_covers_every_listed_tool_and_a_denial_is_fed_back() -> None:
    model = Caller(call("pid"))
    agent = Agent("a", "", model.model, tools=[stub(requires_approval=True), tool(_one, name="mine")])
    suspended = await run(agent, "go")
    assert [p.request.tool for p in suspended.pending] == ["pid"]
    done = await resume(suspended, agent, decisions={suspended.pending[0].call_id: Denied("not now")})
    assert done.output == "ERROR Error: denied by the user: not now"


def test_requires_approval_true_without_prefix_beside_another_toolset_is_invalid() -> None:
    with pytest.raises(InvalidDefinition, match="requires_approval=True and no prefix"):
        Agent("a", tools=[stub(requires_approval=True), stub(prefix="b")])
    Agent("a", tools=[stub(requires_approval=True, prefix="a"), stub(prefix="b")])


# -- listing: names, schemas, clashes, servers that do not start --------------------------------


@pytest.mark.anyio
async def test_a_listed_tool_name_that_breaks_the_providers_rule_is_invalid_definition() -> None:
    bad = {"tools": [{"name": "get time", "inputSchema": {"type": "object"}}]}
    with pytest.raises(InvalidDefinition, match=r"'get time'.*providers' rule"):
        await run(Agent("a", "", Caller().model, tools=[stub(bad)]), "go")
    long = {"tools": [{"name": "x" * 60, "inputSchema": {"type": "object"}}]}
    async with stub(long):  # fine alone...
        pass
    with pytest.raises(InvalidDefinition, match="shorter prefix"):
        async with stub(long, prefix="longprefix"):  # ...over 64 characters with the prefix
            pass


@pytest.mark.anyio
@pytest.mark.parametrize(
    "schema, why",
    [
        ({"type": "object", "properties": {"a": {"type": "nonsense"}}}, "malformed inputSchema"),
        # (the SDK's own check of the listing catches these first)
        ({"type": "string"}, "malformed tool listing|not a JSON schema of type 'object'"),
        ({"properties": {}}, "malformed tool listing|not a JSON schema of type 'object'"),
    ],
)
async def test_a_malformed_input_schema_is_invalid_definition(schema: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidDefinition, match=why):
        async with stub({"tools": [{"name": "t", "inputSchema": schema}]}):
            pass


@pytest.mark.anyio
async def test_a_listing_that_is_not_a_listing_is_invalid_definition() -> None:
    with pytest.raises(InvalidDefinition, match="malformed tool listing"):
        async with stub({"tools": [{"name": "t", "inputSchema": "an object, honestly"}]}):
            pass


@pytest.mark.anyio
async def test_name_clashes_name_both_and_a_prefix_resolves_them() -> None:
    echo = tool(_same, name="echo")
    with pytest.raises(InvalidDefinition, match=r"toolset .* lists a tool 'echo', and the agent has its own"):
        await run(Agent("a", "", Caller().model, tools=[echo, stub()]), "go")
    one, two = stub(name="one"), stub(name="two")
    with pytest.raises(InvalidDefinition, match="toolsets 'one' and 'two' both list a tool 'echo'"):
        await run(Agent("a", "", Caller().model, tools=[one, two]), "go")
    model = Caller(call("echo", text="mine"), call("b_echo", text="theirs"))
    result = await run(Agent("a", "", model.model, tools=[echo, stub(prefix="b")]), "go")
    assert result.output.split("\n")[0] == "mine" and json.loads(result.output.split("\n")[1]) == {"text": "theirs"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "server, why",
    [
        (MCPServerStdio("/nonexistent/mcp-server"), "cannot connect"),
        (stub({"start": "exit"}), "cannot connect"),
        (stub({"start": "hang"}, connect_timeout=1.0), r"did not answer initialize/tools/list within 1.0 s"),
        (MCPServerHTTP("http://127.0.0.1:9/mcp", connect_timeout=5.0), "cannot connect|did not answer"),
    ],
)
async def test_a_server_that_does_not_start_is_mcp_server_error(server: Any, why: str) -> None:
    started = time.monotonic()
    with pytest.raises(MCPServerError, match=why):
        await run(Agent("a", "", Caller().model, tools=[server]), "go")
    assert time.monotonic() - started < 20


# -- options and output ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, option",
    [
        (lambda: MCPServerStdio(""), "command"),
        (lambda: MCPServerStdio("x", "-m y"), "args"),
        (lambda: MCPServerStdio("x", env={"A": 1}), "env"),
        (lambda: MCPServerStdio("x", prefix="bad prefix"), "prefix"),
        (lambda: MCPServerStdio("x", timeout=0), "timeout"),
        (lambda: MCPServerStdio("x", connect_timeout=float("inf")), "connect_timeout"),
        (lambda: MCPServerStdio("x", requires_approval="echo"), "requires_approval"),
        (lambda: MCPServerStdio("x", requires_approval=[1]), "requires_approval"),
        (lambda: MCPServerHTTP("ftp://x"), "url"),
        (lambda: MCPServerHTTP("http://x", headers={"A": None}), "headers"),
    ],
)
def test_bad_options_are_invalid_definition_naming_them(make: Any, option: str) -> None:
    with pytest.raises(InvalidDefinition, match=option):
        make()


def test_a_toolset_given_twice_is_invalid_definition() -> None:
    server = stub()
    with pytest.raises(InvalidDefinition, match="given twice"):
        Agent("a", tools=[server, server])
    assert Agent("a", tools=server).toolsets == (server,)  # one toolset alone is a list of one


def test_result_text_joins_blocks_and_adds_structured_content_only_when_it_says_more() -> None:
    import mcp_types as types

    def result(*blocks: Any, structured: Any = None) -> types.CallToolResult:
        return types.CallToolResult(content=list(blocks), structured_content=structured)

    text = types.TextContent(type="text", text='{"a": 1}')
    assert result_text(result(text, structured={"a": 1})) == '{"a": 1}'
    assert result_text(result(types.TextContent(type="text", text="7"), structured={"result": 7})) == "7"
    assert result_text(result(types.TextContent(type="text", text="x"), structured={"b": 2})) == 'x\n{"b":2}'
    assert result_text(result(structured={"b": 2})) == '{"b":2}'
    image = types.ImageContent(type="image", data="aGVsbG8=", mime_type="image/png")
    assert result_text(result(text, image)) == '{"a": 1}\n[image: image/png, 8 base64 characters]'
