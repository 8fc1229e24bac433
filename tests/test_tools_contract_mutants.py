"""Behaviour tests written from the surviving mutants of `fsm_agents/tools.py` (issue 18, second pass).

Each test drives the public API (`tool`, `Tool`, `ToolExecutor`) and asserts what a user sees.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from fsm_agents import Agent, RunContext, ScriptedModel, ToolCall, ToolDefinitionError, ask_user, run, tool
from fsm_agents.models import call, reply
from fsm_agents.state import ToolResult, Usage
from fsm_agents.tools import Tool, ToolExecutor

pytestmark = pytest.mark.anyio


class Deps:
    def __init__(self, who: str) -> None:
        self.who = who


CTX = RunContext(Deps("ann"), "run-7", "helper", Usage())


def _seen(ctx: Any) -> str:
    return f"{ctx.deps.who}/{ctx.run_id}/{ctx.agent}" if isinstance(ctx, RunContext) else f"no context: {ctx!r}"


# -- a RunContext reaches every kind of tool, through every path of the executor ----------------


def sync_ctx(ctx: RunContext[Deps], x: int) -> str:
    """Sync, positional context."""
    return f"{_seen(ctx)} x={x}"


async def async_ctx(ctx: RunContext[Deps], x: int) -> str:
    """Async, positional context."""
    await anyio.sleep(0)
    return f"{_seen(ctx)} x={x}"


def kw_ctx(*, ctx: RunContext[Deps], x: int) -> str:
    """Keyword-only context."""
    return f"{_seen(ctx)} x={x}"


def posonly_ctx(ctx: RunContext, /, x: int) -> str:
    """Positional-only, bare (unparametrised) RunContext."""
    return f"{_seen(ctx)} x={x}"


def ctx_tools() -> list[Tool]:
    """Made in each test, not at import: mutmut runs every test once unmutated before it switches
    a mutant on, and a tool made at import would keep what the unmutated code computed."""
    return [
        tool(sync_ctx),
        tool(name="inline_ctx", thread=False)(sync_ctx),
        tool(name="inline_timed_ctx", thread=False, timeout=30)(sync_ctx),
        tool(async_ctx),
        tool(kw_ctx),
        tool(posonly_ctx),
        tool(name="inline_posonly", thread=False)(posonly_ctx),
    ]


KINDS = [t.name for t in ctx_tools()]


def test_a_run_context_parameter_is_known_at_definition_and_left_out_of_the_schema() -> None:
    tools = ctx_tools()
    for t in tools:
        assert t.takes_ctx and t.ctx_param == "ctx", t.name
        assert t.spec.parameters["properties"].keys() == {"x"}, t.name
    assert [t.ctx_keyword for t in tools] == [False, False, False, False, True, False, False]
    assert ToolExecutor(tools).takes_ctx and not ToolExecutor([tool(no_context)]).takes_ctx


def no_context(x: int) -> int:
    """No context."""
    return x


@pytest.mark.parametrize("kind", KINDS)
async def test_each_kind_of_tool_gets_the_context_given_to_run(kind: str) -> None:
    t = next(t for t in ctx_tools() if t.name == kind)
    (r,) = await ToolExecutor([t]).run([ToolCall(id="1", name=t.name, arguments='{"x": 3}')], CTX)
    assert (r.ok, r.error, r.content) == (True, None, "ann/run-7/helper x=3")


@pytest.mark.parametrize("kind", KINDS)
async def test_without_a_context_a_tool_gets_a_bare_one_outside_a_run(kind: str) -> None:
    t = next(t for t in ctx_tools() if t.name == kind)

    def show(ctx: RunContext[None], x: int) -> str:
        return repr((ctx.deps, ctx.run_id, ctx.agent, ctx.usage, x))

    bare = Tool(t.name, None, show, thread=t.thread, timeout=t.timeout, is_async=False)
    r = await ToolExecutor([bare]).run_one(ToolCall(id="1", name=t.name, arguments='{"x": 3}'))
    assert (r.ok, r.content) == (True, repr((None, "", "", Usage(), 3)))


async def test_ordered_and_concurrent_calls_all_get_the_context() -> None:
    """Every path of `run` (one call, all concurrent, one after another, groups around a
    sequential tool, with and without a concurrency cap) passes the context to every call."""
    seq = tool(name="seq", sequential=True)(sync_ctx)
    calls = [
        ToolCall(id="a", name="sync_ctx", arguments='{"x": 1}'),
        ToolCall(id="b", name="seq", arguments='{"x": 2}'),
        ToolCall(id="c", name="async_ctx", arguments='{"x": 3}'),
        ToolCall(id="d", name="kw_ctx", arguments='{"x": 4}'),
    ]
    tools = [tool(sync_ctx), seq, tool(async_ctx), tool(kw_ctx)]
    for executor in (
        ToolExecutor(tools),
        ToolExecutor(tools, max_concurrency=2),
        ToolExecutor(tools, parallel=False),
        ToolExecutor([t for t in tools if t is not seq] + [tool(name="seq")(sync_ctx)]),
        ToolExecutor([t for t in tools if t is not seq] + [tool(name="seq")(sync_ctx)], max_concurrency=2),
    ):
        results = await executor.run(calls, CTX)
        assert [(r.call_id, r.content) for r in results] == [
            ("a", "ann/run-7/helper x=1"),
            ("b", "ann/run-7/helper x=2"),
            ("c", "ann/run-7/helper x=3"),
            ("d", "ann/run-7/helper x=4"),
        ]


async def test_a_tool_that_runs_tools_of_its_own_gives_them_the_runs_id() -> None:
    """Outside the runtime's own call (no context passed to `run_one`), a tool taking a context
    still learns the id of the run it executes in (`current_run_id`)."""

    def inner(ctx: RunContext[None], x: int) -> str:
        return f"{ctx.run_id}:{ctx.agent!r}:{ctx.deps}:{x}"

    async def outer(x: int) -> str:
        """Runs a tool of its own."""
        r = await ToolExecutor([tool(inner)]).run_one(ToolCall(id="i", name="inner", arguments=f'{{"x": {x}}}'))
        return r.content

    agent = Agent("a", model=ScriptedModel([reply(None, call("outer", "o", x=5)), "done"]), tools=[outer])
    result = await run(agent, "go", run_id="run-42")
    assert [m.content for m in result.snapshot.conversation.messages if m.role == "tool"] == ["run-42:'':None:5"]


# -- order: concurrent, sequential tools, parallel=False -----------------------------------------


def _recording_tools(log: list[str]) -> list[Tool]:
    both = anyio.Event()
    arrived: list[str] = []

    async def meet(who: str) -> str:
        """Two calls that can only finish together: each waits for the other to start."""
        log.append(f"{who} start")
        arrived.append(who)
        if len(arrived) % 2 == 0:
            both.set()
        await both.wait()
        log.append(f"{who} end")
        return who

    async def step(who: str) -> str:
        """A call that yields to the event loop between its start and its end."""
        log.append(f"{who} start")
        for _ in range(3):
            await anyio.sleep(0)
        log.append(f"{who} end")
        return who

    return [tool(meet), tool(step), tool(name="alone", sequential=True)(step)]


def _calls(*names: str) -> list[ToolCall]:
    return [ToolCall(id=str(i), name=name, arguments=f'{{"who": "{name}{i}"}}') for i, name in enumerate(names)]


async def test_calls_of_one_reply_overlap_and_a_sequential_tool_overlaps_none() -> None:
    log: list[str] = []
    with anyio.fail_after(10):  # calls that cannot overlap would wait for each other forever
        results = await ToolExecutor(_recording_tools(log)).run(_calls("step", "alone", "meet", "meet"))
    assert [r.content for r in results] == ["step0", "alone1", "meet2", "meet3"]
    assert log[:4] == ["step0 start", "step0 end", "alone1 start", "alone1 end"]
    assert sorted(log[4:]) == ["meet2 end", "meet2 start", "meet3 end", "meet3 start"]
    assert sorted(log[4:6]) == ["meet2 start", "meet3 start"]


async def test_a_sequential_tool_waits_for_the_calls_before_it_and_holds_back_those_after() -> None:
    log: list[str] = []
    with anyio.fail_after(10):
        results = await ToolExecutor(_recording_tools(log)).run(_calls("step", "step", "alone", "step"))
    assert [r.content for r in results] == ["step0", "step1", "alone2", "step3"]
    assert sorted(log[:2]) == ["step0 start", "step1 start"]  # the two before it overlap
    assert log[4:] == ["alone2 start", "alone2 end", "step3 start", "step3 end"]


async def test_with_parallel_false_each_call_ends_before_the_next_starts() -> None:
    log: list[str] = []
    tools = [t for t in _recording_tools(log) if t.name == "step"]
    results = await ToolExecutor(tools, parallel=False).run(_calls("step", "step", "step"))
    assert [r.content for r in results] == ["step0", "step1", "step2"]
    assert log == ["step0 start", "step0 end", "step1 start", "step1 end", "step2 start", "step2 end"]


async def test_without_sequential_tools_every_call_may_overlap() -> None:
    log: list[str] = []
    tools = [t for t in _recording_tools(log) if t.name != "alone"]
    with anyio.fail_after(10):
        results = await ToolExecutor(tools).run(_calls("meet", "step", "meet"))
    assert [r.content for r in results] == ["meet0", "step1", "meet2"]


# -- tools made directly with Tool(...) ---------------------------------------------------------


def test_a_tool_made_directly_has_the_documented_defaults() -> None:
    def plain(x: int) -> int:
        """Plain."""
        return x

    t = Tool("plain", None, plain)
    assert (t.retries, t.retry_on, t.retry_wait, t.timeout, t.max_output_chars) == (0, (), 0.1, None, None)
    assert (t.idempotent, t.thread, t.requires_approval, t.asks_user, t.sequential) == (False, True, False, False, False)
    assert (t.is_async, t.takes_ctx, t.ctx_keyword, t.parameters_json) == (False, False, False, None)
    assert repr(t) == (
        "Tool(name='plain', is_async=False, timeout=None, retries=0, idempotent=False, max_output_chars=None, "
        "thread=True, requires_approval=False, sequential=False, takes_ctx=False)"
    )
    assert t.spec.parameters == {
        "type": "object",
        "properties": {"x": {"title": "X", "type": "integer"}},
        "required": ["x"],
        "additionalProperties": False,
    }
    assert t.description == "Plain."


def test_a_tool_made_directly_keeps_its_options() -> None:
    t = Tool("s", "d", sync_ctx, sequential=True, parameters_json='{"type": "object"}')
    assert t.sequential and t.takes_ctx and t.ctx_param == "ctx"
    assert t.spec.parameters == {"type": "object"}
    kw = Tool("k", None, kw_ctx)
    assert kw.takes_ctx and kw.ctx_keyword
    assert tool(sequential=True)(no_context).sequential and tool(no_context).sequential is False
    assert ask_user().sequential is False


def test_a_tool_made_directly_from_a_bad_function_names_itself_in_the_error() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(ToolDefinitionError, match=r"^tool 'bad': parameter 'x' needs a type annotation$"):
        Tool("bad", None, untyped)


class Args(BaseModel):
    x: int


class AsyncCallable:
    """An object whose `__call__` is async: not a coroutine function to `inspect`."""

    async def __call__(self, x: int) -> str:
        await anyio.sleep(0)
        return f"awaited {x}"


async def test_a_tool_made_directly_with_its_own_model_and_is_async() -> None:
    t = Tool("obj", "An object.", AsyncCallable(), input_model=Args, is_async=True)
    assert t.is_async and not t.takes_ctx and t.input_model is Args
    r = await ToolExecutor([t]).run_one(ToolCall(id="1", name="obj", arguments='{"x": 2}'))
    assert (r.ok, r.content) == (True, "awaited 2")
    r = await ToolExecutor([Tool("a", None, async_ctx)]).run([ToolCall(id="1", name="a", arguments='{"x": 2}')], CTX)
    assert (r[0].ok, r[0].content) == (True, "ann/run-7/helper x=2")
    assert Tool("a", None, async_ctx).is_async and not Tool("a", None, async_ctx, is_async=False).is_async


async def test_an_inline_tool_returning_an_awaitable_is_awaited_within_its_timeout() -> None:
    def later() -> Any:
        """Returns a coroutine that never finishes on its own."""
        return anyio.sleep(3600)

    t = tool(thread=False, timeout=0.05)(later)
    with anyio.fail_after(10):
        r = await ToolExecutor([t]).run_one(ToolCall(id="1", name="later", arguments="{}"))
    assert (r.ok, r.error) == (False, "tool 'later' timed out after 0.05 s")


def test_a_tool_cannot_be_deleted_from() -> None:
    with pytest.raises(AttributeError, match=r"^Tool is immutable: cannot delete 'name'$"):
        del tool(no_context).name


@pytest.mark.parametrize("bad", [True, "7", 1.5, 0])
def test_max_output_chars_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(
        ToolDefinitionError,
        match=r"^tool 'no_context': max_output_chars must be an int >= 1 \(or None: the agent's cap\)$",
    ):
        tool(max_output_chars=bad)(no_context)


# -- signatures: cached per function, methods, callables without a function ---------------------


class Api:
    def method(self, a: int, b: int) -> int:
        """Adds."""
        return a + b


def test_tools_of_one_function_share_one_input_model_and_methods_drop_only_self() -> None:
    """Classes and functions made in the test: the signature cache of a module-level function
    was filled before mutmut switched a mutant on."""

    def fresh(x: int) -> int:
        return x

    class Fresh:
        def method(self, a: int, b: int) -> int:
            return a + b

    assert tool(fresh).input_model is tool(fresh).input_model
    first, second = tool(Fresh().method), tool(Fresh().method)
    assert first.input_model is second.input_model
    assert first.spec.parameters["required"] == ["a", "b"]
    assert "title" not in first.spec.parameters and "title" not in tool(fresh).spec.parameters


async def test_a_method_tool_is_called_on_its_instance() -> None:
    r = await ToolExecutor([tool(Api().method)]).run_one(ToolCall(id="1", name="method", arguments='{"a": 2, "b": 3}'))
    assert (r.ok, r.content) == (True, "5")


class Unhashable:
    """A callable object that cannot be a dictionary key (no `__hash__`) and has no `__globals__`."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, annotations: dict[str, Any]) -> None:
        self.__annotations__ = annotations

    def __call__(self, x: Any) -> str:
        return f"called {x}"


async def test_an_unhashable_callable_is_a_tool_without_a_cache() -> None:
    t = tool(name="obj")(Unhashable({"x": int}))
    r = await ToolExecutor([t]).run_one(ToolCall(id="1", name="obj", arguments='{"x": 4}'))
    assert (r.ok, r.content) == (True, "called 4")


def test_string_hints_of_a_callable_without_globals_resolve_against_nothing() -> None:
    with pytest.raises(
        ToolDefinitionError, match=r"^tool 'obj': cannot resolve its type hints: name 'Sequence' is not defined$"
    ):
        tool(name="obj")(Unhashable({"x": "Sequence[int]"}))


def test_a_run_context_after_the_first_parameter_is_refused_with_what_to_do() -> None:
    def late(n: int, ctx: RunContext[None]) -> str:
        return ""

    with pytest.raises(ToolDefinitionError) as caught:
        tool(late)
    assert str(caught.value) == (
        "tool 'late': parameter 'ctx' is a RunContext; a RunContext must be the first parameter "
        "(move it first, or remove it)"
    )

    def second(self_like: int, ctx: RunContext, n: int) -> str:
        return ""

    with pytest.raises(ToolDefinitionError, match="parameter 'ctx' is a RunContext"):
        tool(second)


async def test_an_error_result_has_every_field_set_like_a_validated_one() -> None:
    r = await ToolExecutor([]).run_one(ToolCall(id="1", name="nope", arguments="{}"))
    assert (r.ok, r.content, r.error) == (False, "", "unknown tool 'nope'; available tools: (none)")
    assert r.model_fields_set == ToolResult.model_validate(r.model_dump()).model_fields_set
    assert r.model_dump(exclude_unset=True) == r.model_dump()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_a_cancellation_a_tool_raises_of_its_own_is_an_error_result() -> None:
    """A tool that lets a `Cancelled` of its own (finished) cancel scope escape, while nothing
    cancels the run, gets an error result on trio as on asyncio."""

    async def leaky() -> str:
        """Keeps the cancellation of an inner scope and raises it afterwards."""
        caught: list[BaseException] = []
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                await anyio.sleep(1)
            except anyio.get_cancelled_exc_class() as exc:
                caught.append(exc)
        raise caught[0]

    with anyio.fail_after(10):
        r = await ToolExecutor([tool(leaky)]).run_one(ToolCall(id="1", name="leaky", arguments="{}"))
    assert not r.ok and r.error is not None and r.error.startswith("tool 'leaky' raised Cancelled")
