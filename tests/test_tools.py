"""Tools: schema from typed functions, and the executor's typed outcomes for every bad input."""

from __future__ import annotations

import json
import threading
from datetime import date

import anyio
import pytest
from pydantic import BaseModel

from fsm_agents import Tool, ToolCall, ToolDefinitionError, tool
from fsm_agents.tools import ToolExecutor

pytestmark = pytest.mark.anyio


@tool
def lookup(city: str, year: int = 2024, units: list[str] | None = None) -> dict[str, object]:
    """Look up a city's population.

    Uses the bundled census table.

    Args:
        city: The city name, e.g. "Lyon".
        year: Census year.
        units: Optional units.
    """
    return {"city": city, "year": year}


def test_schema_and_description_come_from_signature_and_docstring() -> None:
    spec = lookup.spec
    assert spec.name == "lookup"
    assert spec.description == "Look up a city's population.\n\nUses the bundled census table."
    params = spec.parameters
    assert params["required"] == ["city"]
    assert params["properties"]["city"] == {"description": 'The city name, e.g. "Lyon".', "title": "City", "type": "string"}
    assert params["properties"]["year"]["default"] == 2024
    assert params["additionalProperties"] is False
    assert lookup("Lyon") == {"city": "Lyon", "year": 2024}  # still callable as a function


def test_options_and_bad_definitions() -> None:
    @tool(name="fetch-page", timeout=2.5, retries=2, retry_on=(ConnectionError,), idempotent=True)
    async def fetch(url: str) -> str:
        """Fetch."""
        return url

    assert isinstance(fetch, Tool) and fetch.is_async and fetch.name == "fetch-page"
    assert (fetch.timeout, fetch.retries, fetch.idempotent) == (2.5, 2, True)

    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(ToolDefinitionError, match="needs a type annotation"):
        tool(untyped)

    def star(*args: int) -> int:
        return 0

    with pytest.raises(ToolDefinitionError, match=r"\*args"):
        tool(star)
    with pytest.raises(ToolDefinitionError, match="timeout must be a positive"):
        tool(timeout=0)(untyped)
    with pytest.raises(ToolDefinitionError, match="must be 1-64 ASCII letters"):
        tool(lambda: 1)


def run_one(executor: ToolExecutor, name: str, arguments: str) -> object:
    return executor.run_one(ToolCall(id="c1", name=name, arguments=arguments))


async def test_valid_call_serializes_output_as_json_and_records_duration() -> None:
    class Out(BaseModel):
        day: date

    @tool
    def when() -> Out:
        """When."""
        return Out(day=date(2026, 1, 2))

    ex = ToolExecutor([lookup, when])
    r = await ex.run_one(ToolCall(id="c1", name="lookup", arguments='{"city": "Lyon"}'))
    assert r.ok and json.loads(r.content) == {"city": "Lyon", "year": 2024} and r.duration_ms >= 0
    r2 = await ex.run_one(ToolCall(id="c2", name="when", arguments=""))
    assert r2.ok and r2.content == '{"day":"2026-01-02"}'


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("nope", "{}", "unknown tool 'nope'; available tools: lookup"),
        ("lookup", '{"city": ', "not valid JSON"),
        ("lookup", '{"city": "Lyon", "year": "soon"}', "year: Input should be a valid integer"),
        ("lookup", "{}", "city: Field required"),
        ("lookup", '{"city": "x", "extra": 1}', "extra: Extra inputs are not permitted"),
        ("lookup", "[1, 2]", "Input should be an object"),
    ],
)
async def test_bad_calls_become_error_results_fed_back(name: str, arguments: str, expected: str) -> None:
    r = await ToolExecutor([lookup]).run_one(ToolCall(id="c1", name=name, arguments=arguments))
    assert not r.ok and r.content == "" and expected in (r.error or "")
    assert r.text.startswith("Error: ")


async def test_exceptions_timeouts_and_hanging_sync_tools_are_results() -> None:
    @tool
    def boom() -> str:
        """Boom."""
        raise KeyError("missing")

    @tool(timeout=0.05)
    async def hang() -> str:
        """Hang."""
        await anyio.sleep(30)
        return "never"

    release = threading.Event()

    @tool(timeout=0.05)
    def hang_sync() -> str:
        """Hang in a thread."""
        release.wait(10)
        return "late"

    ex = ToolExecutor([boom, hang, hang_sync])
    r = await ex.run_one(ToolCall(id="1", name="boom"))
    assert not r.ok and r.error == "tool 'boom' raised KeyError: 'missing'"
    r = await ex.run_one(ToolCall(id="2", name="hang"))
    assert not r.ok and r.error == "tool 'hang' timed out after 0.05 s"
    r = await ex.run_one(ToolCall(id="3", name="hang_sync"))
    release.set()
    assert not r.ok and "timed out" in (r.error or "")


async def test_transient_exceptions_are_retried_others_are_not() -> None:
    attempts = {"flaky": 0, "broken": 0}

    @tool(retries=3, retry_on=(ConnectionError,), retry_wait=0.001)
    def flaky() -> str:
        """Fails twice."""
        attempts["flaky"] += 1
        if attempts["flaky"] < 3:
            raise ConnectionError("reset")
        return "ok"

    @tool(retries=3, retry_on=(ConnectionError,), retry_wait=0.001)
    def broken() -> str:
        """Fails with a non-transient error."""
        attempts["broken"] += 1
        raise ValueError("bad input")

    ex = ToolExecutor([flaky, broken])
    r = await ex.run_one(ToolCall(id="1", name="flaky"))
    assert r.ok and r.content == "ok" and r.attempts == 3
    r = await ex.run_one(ToolCall(id="2", name="broken"))
    assert not r.ok and attempts["broken"] == 1 and "ValueError" in (r.error or "")


async def test_retries_give_up_after_the_last_attempt() -> None:
    calls = 0

    @tool(retries=2, retry_on=(ConnectionError,), retry_wait=0.001)
    def down() -> str:
        """Always down."""
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    r = await ToolExecutor([down]).run_one(ToolCall(id="1", name="down"))
    assert not r.ok and calls == 3 and r.attempts == 3


async def test_output_is_truncated_with_a_marker() -> None:
    @tool(max_output_chars=5)
    def long() -> str:
        """Long."""
        return "abcdefghij"

    r = await ToolExecutor([long]).run_one(ToolCall(id="1", name="long"))
    assert r.content == "abcde\n…[truncated: 5 of 10 characters shown]"


async def test_calls_of_one_reply_run_concurrently() -> None:
    """`ping` only returns once `pong` has started and vice versa: sequential execution would
    deadlock (and hit the 5 s safety timeout), concurrent execution finishes."""
    started = {"ping": anyio.Event(), "pong": anyio.Event()}

    def make(name: str, other: str) -> Tool:
        async def fn() -> str:
            started[name].set()
            await started[other].wait()
            return name

        fn.__name__ = name
        fn.__doc__ = name
        return tool(fn)

    ex = ToolExecutor([make("ping", "pong"), make("pong", "ping")])
    with anyio.fail_after(5):
        results = await ex.run([ToolCall(id="a", name="ping"), ToolCall(id="b", name="pong")])
    assert [(r.call_id, r.content) for r in results] == [("a", "ping"), ("b", "pong")]


def test_tool_definitions_the_providers_would_refuse_are_tool_definition_errors() -> None:
    """A tool is made from a function (not from a number), and its name follows the providers'
    rule for function names (1-64 ASCII letters, digits, '_' or '-'): a lambda is told to take a
    name, a non-ASCII or 65-character name is refused, and so is a handoff whose
    `transfer_to_<agent>` tool name would exceed 64 characters."""
    from fsm_agents import Agent, InvalidDefinition

    def café(a: int) -> int:
        """Non-ASCII name."""
        return a

    with pytest.raises(ToolDefinitionError, match="a tool is made from a function, not int"):
        tool(5)  # type: ignore[call-overload]
    with pytest.raises(ToolDefinitionError, match=r"'<lambda>' must be 1-64 ASCII .*name it with @tool\(name=\.\.\.\)"):
        tool(lambda a: a)
    with pytest.raises(ToolDefinitionError, match="'café' must be 1-64 ASCII"):
        tool(café)
    with pytest.raises(ToolDefinitionError, match="must be 1-64 ASCII"):
        tool(name="x" * 65)(café)
    assert tool(name="x" * 64)(café).name == "x" * 64
    long = "b" * 53  # transfer_to_ + 53 = 65 characters
    with pytest.raises(InvalidDefinition, match="longer than the 64 characters"):
        _ = Agent("a", handoffs=[Agent(long)]).machine
    assert Agent("a", handoffs=[Agent("b" * 52)]).machine.agents.keys() == {"a", "b" * 52}


class _BadStr:
    """An object pydantic cannot encode and whose `__str__` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class _NonStringStr:
    """An object whose `__str__` returns a non-string (`str()` then raises TypeError)."""

    def __str__(self) -> str:
        return 42  # type: ignore[return-value]


class _Plain:
    def __str__(self) -> str:
        return "plain"


async def test_unserializable_return_values_are_error_results_beside_the_other_calls() -> None:
    """A tool returning an object that neither JSON nor `str()` can turn into text gets an error
    result (the serialization runs inside the tool's error handling); the reply's other calls keep
    their own results. (Before: RuntimeError / TypeError, or an ExceptionGroup, escaped `run`.)"""

    @tool
    def bad_str() -> object:
        """Returns an object whose __str__ raises."""
        return _BadStr()

    @tool
    def non_string_str() -> object:
        """Returns an object whose __str__ returns an int."""
        return _NonStringStr()

    ex = ToolExecutor([bad_str, non_string_str, lookup])
    r = await ex.run_one(ToolCall(id="1", name="bad_str"))
    assert not r.ok and "tool 'bad_str' returned a _BadStr that cannot be turned into text" in (r.error or "")
    assert "no text for you" in (r.error or "")
    results = await ex.run(
        [
            ToolCall(id="a", name="bad_str"),
            ToolCall(id="b", name="non_string_str"),
            ToolCall(id="c", name="lookup", arguments='{"city": "Lyon"}'),
        ]
    )
    assert [(r.call_id, r.ok) for r in results] == [("a", False), ("b", False), ("c", True)]
    assert "_NonStringStr that cannot be turned into text" in (results[1].error or "")
    assert json.loads(results[2].content) == {"city": "Lyon", "year": 2024}


async def test_unknown_values_are_encoded_one_by_one_with_str_fallback() -> None:
    """`pydantic_core.to_json(value, fallback=str)`: a list of unknown objects stays a JSON list
    of their texts (before: `str()` of the whole list, Python repr text)."""

    @tool
    def plain_list() -> object:
        """Returns unknown objects inside JSON-able containers."""
        return {"items": [_Plain(), 1]}

    r = await ToolExecutor([plain_list]).run_one(ToolCall(id="1", name="plain_list"))
    assert r.ok and json.loads(r.content) == {"items": ["plain", 1]}


async def test_an_exception_whose_message_cannot_be_printed_is_still_a_result() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("nope")

    @tool
    def raises_unprintable() -> str:
        """Raises an exception with a broken __str__."""
        raise Unprintable()

    r = await ToolExecutor([raises_unprintable]).run_one(ToolCall(id="1", name="raises_unprintable"))
    assert not r.ok and r.error == "tool 'raises_unprintable' raised Unprintable: (its message cannot be printed)"


async def test_a_tool_raising_cancelled_error_is_an_error_result_and_the_other_result_is_kept() -> None:
    """A tool that raises `asyncio.CancelledError` itself (nothing cancelled the run) gets an
    error result, and the other call of the same reply keeps its real result (before: on asyncio
    the other result was lost — "no result was reported"; on trio a BaseExceptionGroup escaped)."""
    import asyncio

    @tool
    async def cancels() -> str:
        """Raises CancelledError of its own accord."""
        await anyio.sleep(0)
        raise asyncio.CancelledError("upstream gave up")

    @tool
    async def works() -> str:
        """Works after the other call failed."""
        await anyio.sleep(0.01)
        return "real result"

    ex = ToolExecutor([cancels, works])
    results = await ex.run([ToolCall(id="a", name="cancels"), ToolCall(id="b", name="works")])
    assert [(r.call_id, r.ok) for r in results] == [("a", False), ("b", True)]
    assert results[0].error == "tool 'cancels' raised CancelledError: upstream gave up"
    assert results[1].content == "real result"
    single = await ex.run([ToolCall(id="c", name="cancels")])
    assert not single[0].ok


async def test_a_real_cancellation_of_the_run_still_propagates() -> None:
    """Cancelling the scope around the executor cancels the tools: no result is invented."""
    started = anyio.Event()

    @tool
    async def slow() -> str:
        """Sleeps."""
        started.set()
        await anyio.sleep(30)
        return "never"

    ex = ToolExecutor([slow])
    finished: list[object] = []
    with anyio.move_on_after(5) as outer:
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                finished.append(await ex.run([ToolCall(id="a", name="slow"), ToolCall(id="b", name="slow")]))

            tg.start_soon(go)
            await started.wait()
            tg.cancel_scope.cancel()
    assert not outer.cancelled_caught and finished == []


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("calls", [1, 2])
async def test_keyboard_interrupt_and_system_exit_propagate_unwrapped(stop: type[BaseException], calls: int) -> None:
    """KeyboardInterrupt / SystemExit from a tool stop the program: they propagate as
    themselves (never wrapped in a BaseExceptionGroup), on asyncio and on trio, with one call or
    several in the reply."""

    @tool
    async def stops() -> str:
        """Asks the program to stop."""
        raise stop("bye")

    @tool
    async def sleeps() -> str:
        """Would run long."""
        await anyio.sleep(30)
        return "never"

    batch = [ToolCall(id="a", name="stops"), ToolCall(id="b", name="sleeps")][:calls]
    with anyio.fail_after(5), pytest.raises(stop) as info:
        await ToolExecutor([stops, sleeps]).run(batch)
    assert type(info.value) is stop


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_from_a_tool_leaves_run_sync_as_itself(stop: type[BaseException], anyio_backend: str) -> None:
    """Through the whole runtime (`run_sync`), on both backends, a tool's KeyboardInterrupt /
    SystemExit reaches the caller unwrapped."""
    from fsm_agents import Agent, ScriptedModel, run_sync
    from fsm_agents.models.scripted import call, reply

    @tool
    def stops() -> str:
        """Asks the program to stop."""
        raise stop("bye")

    @tool
    def fine() -> str:
        """Fine."""
        return "ok"

    agent = Agent("a", model=ScriptedModel([reply(None, call("stops"), call("fine")), "done"]), tools=[stops, fine])
    with pytest.raises(stop) as info:
        run_sync(agent, "go", backend=anyio_backend)
    assert type(info.value) is stop


async def test_a_cassette_divergence_in_a_reply_of_two_calls_propagates_as_itself() -> None:
    """A replayed tool that diverges fails the test with `CassetteDivergence` itself, not an
    ExceptionGroup around it (the executor lets it through, one call or several)."""
    from fsm_agents.errors import CassetteDivergence

    @tool
    async def diverges() -> str:
        """A replayed tool asked for a call the recording lacks."""
        raise CassetteDivergence(3, "recorded", "actual")

    batch = [ToolCall(id="a", name="diverges"), ToolCall(id="b", name="diverges")]
    with pytest.raises(CassetteDivergence) as info:
        await ToolExecutor([diverges]).run(batch)
    assert info.value.step == 3
