"""Behaviour of tool definitions and the executor that mutation testing (`make mutation`,
docs/mutation.md) found untested: the decorator's defaults, what a tool list may hold, type hints
(`Annotated` constraints, unresolvable names, callables without annotations), every field of a
successful result, when a call is retried, and the debug log of a failing tool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Annotated

import anyio
import pytest
from pydantic import BaseModel, ConfigDict, Field

from fsm_agents import Agent, ToolCall, ToolDefinitionError, ask_user, tool
from fsm_agents.tools import SingleToolset, Tool, ToolExecutor


def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def test_the_decorators_options_default_to_a_plain_tool() -> None:
    """`@tool(...)` with only a name gives the same options as a bare `@tool`: no timeout, no
    retries (retrying nothing, 0.1 s initial wait), not idempotent, run in a thread, no approval."""
    for made in (tool(name="add")(add), tool(add)):
        options = (made.timeout, made.retries, made.retry_on, made.retry_wait, made.idempotent)
        assert options == (None, 0, (), 0.1, False)
        assert (made.thread, made.requires_approval, made.asks_user) == (True, False, False)
    assert tool(name="add")(add).max_output_chars == tool(add).max_output_chars


def test_the_decorators_options_are_kept_on_the_tool() -> None:
    made = tool(
        timeout=2.5,
        retries=3,
        retry_on=[ConnectionError, TimeoutError],
        retry_wait=0.25,
        idempotent=True,
        max_output_chars=7,
        thread=False,
        requires_approval=True,
    )(add)
    assert (made.timeout, made.retries, made.retry_on, made.retry_wait) == (2.5, 3, (ConnectionError, TimeoutError), 0.25)
    assert (made.idempotent, made.max_output_chars, made.thread, made.requires_approval) == (True, 7, False, True)


# -- what a tool list may hold -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tools", "message"),
    [
        (tool(add), r"^tools must be a list of tools or functions, got a single Tool$"),
        (add, r"^tools must be a list of tools or functions, got a single function$"),
        ("add", r"^tools must be a list of tools or functions, got a single str$"),
        (b"add", r"^tools must be a list of tools or functions, got a single bytes$"),
        (42, r"^tools must be a list of tools or functions, got int$"),
        ([tool(add), 42], r"^tools must be tools or functions, got int: 42$"),
        ([add, tool(add)], r"^two tools are named 'add'$"),
    ],
)
def test_a_tool_list_that_is_not_one_is_explained(tools: object, message: str) -> None:
    with pytest.raises(ToolDefinitionError, match=message):
        ToolExecutor(tools)  # type: ignore[arg-type]
    with pytest.raises(ToolDefinitionError, match=message):
        Agent("a", tools=tools)  # type: ignore[arg-type]


def test_a_tool_list_may_mix_tools_and_functions_in_any_iterable() -> None:
    def mul(a: int, b: int) -> int:
        """Multiply."""
        return a * b

    made = tool(add)
    executor = ToolExecutor(t for t in (made, mul))
    assert list(executor.tools) == ["add", "mul"] and executor.tools["add"] is made
    assert isinstance(executor.tools["mul"], Tool) and executor.tools["mul"].description == "Multiply."


# -- type hints ------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_annotated_constraints_reach_the_schema_and_the_validation() -> None:
    def repeat(text: str, times: Annotated[int, Field(ge=1, le=3)]) -> str:
        """Repeat."""
        return text * times

    t = tool(repeat)
    times = t.spec.parameters["properties"]["times"]
    assert (times["minimum"], times["maximum"]) == (1, 3)
    executor = ToolExecutor([t])
    ok = await executor.run_one(ToolCall(id="1", name="repeat", arguments='{"text": "ab", "times": 2}'))
    bad = await executor.run_one(ToolCall(id="2", name="repeat", arguments='{"text": "ab", "times": 4}'))
    assert ok.content == "abab"
    assert not bad.ok and "times: Input should be less than or equal to 3" in (bad.error or "")


def test_an_unresolvable_type_hint_is_a_definition_error_naming_it() -> None:
    def lookup(city: Missing) -> str:  # type: ignore[name-defined]  # noqa: F821
        """Look up."""
        return ""

    with pytest.raises(
        ToolDefinitionError, match=r"^tool 'lookup': cannot resolve its type hints: name 'Missing' is not defined$"
    ):
        tool(lookup)


def test_a_return_annotation_that_cannot_be_resolved_does_not_matter() -> None:
    def lookup(city: str) -> Missing:  # type: ignore[name-defined]  # noqa: F821
        """Look up."""
        return ""

    assert list(tool(lookup).spec.parameters["properties"]) == ["city"]


def test_a_callable_without_annotations_needs_them_for_its_parameters() -> None:
    """A `functools.partial` has no `__annotations__`: named, it is refused for its parameter's
    missing annotation (not with an AttributeError)."""
    with pytest.raises(ToolDefinitionError, match=r"^tool 'plus_one': parameter 'b' needs a type annotation$"):
        tool(name="plus_one")(functools.partial(add, 1))


def test_hints_of_a_wrapped_function_resolve_in_the_wrapped_functions_module() -> None:
    """A decorator made with `functools.wraps` keeps the wrapped function's annotations (as
    strings here, `from __future__ import annotations`); they resolve in the wrapped function's
    globals, even when the wrapper itself has other globals."""
    namespace: dict[str, object] = {"functools": functools}
    exec(  # a wrapper defined in a module that does not know `Field` or `Annotated`
        "def logged(fn):\n"
        "    @functools.wraps(fn)\n"
        "    def wrapper(*args, **kwargs):\n"
        "        return fn(*args, **kwargs)\n"
        "    return wrapper\n",
        namespace,
    )

    def scaled(x: Annotated[int, Field(ge=0)]) -> int:
        """Scale."""
        return x

    wrapped = namespace["logged"](scaled)  # type: ignore[operator]
    assert tool(wrapped).spec.parameters["properties"]["x"]["minimum"] == 0


# -- results and retries ---------------------------------------------------------------------------
@pytest.mark.anyio
async def test_a_successful_result_carries_the_call_and_no_error() -> None:
    (r,) = await ToolExecutor([tool(add)]).run([ToolCall(id="c7", name="add", arguments='{"a": 1, "b": 2}')])
    assert (r.call_id, r.name, r.ok, r.content, r.error, r.attempts) == ("c7", "add", True, "3", None, 1)
    assert r.duration_ms >= 0.0 and r.text == "3"


@pytest.mark.anyio
@pytest.mark.parametrize(("retries", "retry_on"), [(0, (ConnectionError,)), (3, ())])
async def test_a_call_is_retried_only_with_both_retries_and_exceptions_to_retry(
    retries: int, retry_on: tuple[type[Exception], ...]
) -> None:
    calls = 0

    @tool(retries=retries, retry_on=retry_on, retry_wait=0.001)
    def down() -> str:
        """Always down."""
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    r = await ToolExecutor([down]).run_one(ToolCall(id="1", name="down"))
    assert (r.ok, r.attempts, calls) == (False, 1, 1)
    assert r.error == "tool 'down' raised ConnectionError: down"


@pytest.mark.anyio
async def test_a_retried_call_that_succeeds_reports_its_attempts() -> None:
    calls = 0

    @tool(retries=1, retry_on=(ConnectionError,), retry_wait=0.001, thread=False)
    def once_down(x: int) -> int:
        """Fails once."""
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("reset")
        return x

    r = await ToolExecutor([once_down]).run_one(ToolCall(id="1", name="once_down", arguments='{"x": 4}'))
    assert (r.ok, r.content, r.attempts, calls) == (True, "4", 2, 2)


@pytest.mark.anyio
async def test_a_failing_tool_is_logged_at_debug_level_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    @tool
    def boom() -> str:
        """Boom."""
        raise KeyError("missing")

    with caplog.at_level(logging.DEBUG, logger="fsm_agents.tools"):
        r = await ToolExecutor([boom]).run_one(ToolCall(id="1", name="boom"))
    assert not r.ok
    (record,) = [rec for rec in caplog.records if rec.name == "fsm_agents.tools"]
    assert (record.levelno, record.getMessage()) == (logging.DEBUG, "tool boom raised")
    assert record.exc_info is not None and record.exc_info[0] is KeyError


# -- toolsets, questions, permissive argument models, asyncio cancellation ------------------------
def test_a_single_tool_toolset_reads_as_a_list_of_one() -> None:
    made = tool(add)

    class One(SingleToolset):
        def __init__(self) -> None:
            self._tool = made

    toolset = One()
    assert len(toolset) == 1 and list(toolset) == [made] and toolset[-1] is made
    assert list(reversed(toolset)) == [made] and toolset[0:5] == (made,)
    assert list(ToolExecutor(toolset).tools) == ["add"] and Agent("a", tools=toolset).tools == (made,)


def test_ask_user_is_a_question_tool_with_its_documented_options() -> None:
    t = ask_user()
    assert (t.name, t.asks_user, t.requires_approval, t.idempotent, t.thread) == ("ask_user", True, False, True, False)
    assert (t.timeout, t.retries, t.retry_on, t.retry_wait) == (None, 0, (), 0.1)
    assert t.spec.description == "Ask the user a question and wait for the answer."
    assert t.spec.parameters["properties"]["question"]["description"] == "what to ask."
    assert t.spec.parameters["required"] == ["question"]
    custom = ask_user("clarify", "Ask which account.\n\n  - only when unsure  ")
    assert custom.name == "clarify" and custom.spec.description == "Ask which account.\n\n  - only when unsure  "
    with pytest.raises(RuntimeError, match=r"^ask_user is answered by a human decision, not called$"):
        t(question="?")


@pytest.mark.anyio
async def test_a_permissive_argument_model_passes_the_extra_arguments_through() -> None:
    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")
        a: int

    def echo(**kwargs: object) -> dict[str, object]:
        return kwargs

    t = Tool(name="echo", description="Echo.", fn=echo, input_model=Loose, thread=False)
    r = await ToolExecutor([t]).run_one(ToolCall(id="1", name="echo", arguments='{"a": 1, "b": "x"}'))
    assert r.ok and r.content == '{"a":1,"b":"x"}'


async def _task_cancel_propagates() -> None:
    """`task.cancel()` on the task running a call (not a cancel scope) is a real cancellation:
    it propagates instead of becoming an error result (asyncio only: trio has no task.cancel)."""
    started = asyncio.Event()

    @tool
    async def slow() -> str:
        """Sleeps."""
        started.set()
        await asyncio.sleep(30)
        return "never"

    task = asyncio.ensure_future(ToolExecutor([slow]).run_one(ToolCall(id="1", name="slow")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


def test_a_task_cancel_on_asyncio_propagates_out_of_the_tool_call() -> None:
    asyncio.run(_task_cancel_propagates())


# -- failures that are not exceptions, unserializable values, timing --------------------------------
class Ends(BaseException):
    """A BaseException that is neither a cancellation nor a request to stop the program."""


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (Ends(), "tool 'ends' raised Ends"),
        (Ends("stop XX"), "tool 'ends' raised Ends: stop XX"),
        (asyncio.CancelledError(), "tool 'ends' raised CancelledError"),
    ],
)
async def test_a_base_exception_of_the_tools_own_is_a_complete_logged_error_result(
    raised: BaseException, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing cancelled the run: the result says what was raised (no dangling ': ' when it has
    no text), counts the one attempt, and the debug log keeps the traceback."""

    @tool
    async def ends() -> str:
        """Raises a BaseException of its own accord."""
        raise raised

    with caplog.at_level(logging.DEBUG, logger="fsm_agents.tools"):
        r = await ToolExecutor([ends]).run_one(ToolCall(id="1", name="ends"))
    assert (r.ok, r.error, r.attempts) == (False, error, 1)
    (record,) = [rec for rec in caplog.records if rec.name == "fsm_agents.tools"]
    assert (record.levelno, record.getMessage()) == (logging.DEBUG, f"tool ends raised {type(raised).__name__}")
    assert record.exc_info is not None and record.exc_info[1] is raised


@pytest.mark.anyio
async def test_an_unserializable_value_is_a_complete_logged_error_result(caplog: pytest.LogCaptureFixture) -> None:
    @tool(thread=False)
    def loop() -> object:
        """Returns a list that contains itself."""
        items: list[object] = []
        items.append(items)
        return items

    with caplog.at_level(logging.DEBUG, logger="fsm_agents.tools"):
        r = await ToolExecutor([loop]).run_one(ToolCall(id="1", name="loop"))
    assert (r.ok, r.attempts, r.call_id, r.name) == (False, 1, "1", "loop")
    assert r.error == (
        "tool 'loop' returned a list that cannot be turned into text (PydanticSerializationError: "
        "Error serializing to JSON: ValueError: Circular reference detected (id repeated))"
    )
    assert 0.0 <= r.duration_ms < 60_000.0
    (record,) = [rec for rec in caplog.records if rec.name == "fsm_agents.tools"]
    assert (record.levelno, record.getMessage()) == (logging.DEBUG, "tool loop returned an unserializable value")
    assert record.exc_info is not None and "Circular reference" in str(record.exc_info[1])


@pytest.mark.anyio
async def test_a_retried_tool_still_times_out_on_each_attempt() -> None:
    @tool(timeout=0.05, retries=2, retry_on=(ConnectionError,), retry_wait=0.001)
    async def hang() -> str:
        """Hangs."""
        await anyio.sleep(30)
        return "never"

    with anyio.fail_after(10):
        r = await ToolExecutor([hang]).run_one(ToolCall(id="1", name="hang"))
    assert (r.ok, r.error, r.attempts) == (False, "tool 'hang' timed out after 0.05 s", 1)


@pytest.mark.anyio
async def test_a_successful_results_duration_covers_the_call_and_no_more() -> None:
    """Not a timing assertion on the machine: the recorded duration lies between the time the
    tool slept and the time the test saw pass around the call."""

    @tool
    async def nap() -> str:
        """Sleeps 50 ms."""
        await anyio.sleep(0.05)
        return "rested"

    started = time.perf_counter()
    r = await ToolExecutor([nap]).run_one(ToolCall(id="1", name="nap"))
    window_ms = (time.perf_counter() - started) * 1000.0
    assert r.ok and 50.0 <= r.duration_ms <= window_ms
    assert r.model_fields_set == set(type(r).model_fields)  # built complete, like a validated result


def test_a_parameter_listed_without_a_description_gets_none_in_the_schema() -> None:
    def scale(x: int, factor: int = 2) -> int:
        """Scale.

        Args:
            x:
            factor: How much.
        """
        return x * factor

    properties = tool(scale).spec.parameters["properties"]
    assert "description" not in properties["x"] and properties["factor"]["description"] == "How much."


@pytest.mark.anyio
async def test_a_retry_waits_retry_wait_doubling_with_jitter_of_at_most_retry_wait() -> None:
    """Backoff as `Tool` documents it: the n-th wait is `retry_wait · 2**(n-1)` plus a jitter in
    `[0, retry_wait]` (stamina's default jitter of up to 1 s would swamp a 0.1 s `retry_wait`).
    The waits are read from stamina's retry hook (what it computed), not timed."""
    import stamina
    from stamina.instrumentation import RetryDetails, get_on_retry_hooks, set_on_retry_hooks

    waits: list[float] = []

    def record(details: RetryDetails) -> None:
        waits.append(details.wait_for)

    calls = 0

    @tool(retries=3, retry_on=(ConnectionError,), retry_wait=0.01, thread=False)
    def flaky() -> str:
        """Fails three times."""
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ConnectionError("reset")
        return "up"

    hooks = get_on_retry_hooks()
    set_on_retry_hooks([record])
    try:
        with stamina.set_testing(False):
            r = await ToolExecutor([flaky]).run_one(ToolCall(id="1", name="flaky"))
    finally:
        set_on_retry_hooks(hooks)
    assert (r.ok, r.attempts) == (True, 4)
    assert len(waits) == 3
    for n, wait in enumerate(waits, start=1):
        base = 0.01 * 2 ** (n - 1)
        assert base <= wait <= base + 0.01, (n, wait)
