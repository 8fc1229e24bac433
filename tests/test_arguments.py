"""Every malformed call of an entry point raises a typed error (issue 13, item 8).

Before: `run(agent, None)` raised `TypeError`, `limits="fast"` / `tools="notalist"` /
`store="x.db"` an `AttributeError` from inside the run, `backend="curio"` a `LookupError`; an
input ending in an unanswered tool call was accepted and ended DONE with the call unanswered.
Each case below names the error the README promises (`InvalidInput` for a value of the wrong
kind, `InvalidDefinition` for a bad configuration object, `NotAMachine` for a non-machine).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from fsm_agents import (
    Agent,
    InvalidDefinition,
    InvalidInput,
    Limits,
    LoggingObserver,
    NotAMachine,
    ScriptedModel,
    ToolMessage,
    UserMessage,
    resume,
    resume_sync,
    run,
    run_sync,
    tool,
)
from fsm_agents.errors import FsmAgentsError
from fsm_agents.models import call, reply
from fsm_agents.store import MemoryStore

pytestmark = pytest.mark.anyio


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def plain(a: int) -> int:
    """A plain function (not a Tool)."""
    return a


def agent() -> Agent:
    return Agent("calc", "Use add.", ScriptedModel(["ok"] * 3), tools=[add])


UNANSWERED = reply(None, call("add", "c1", a=1, b=2))

# (id, input, keyword arguments, expected error) — for run (awaited) and run_sync alike
RUN_CASES: list[tuple[str, Any, dict[str, Any], type[Exception]]] = [
    ("input-None", None, {}, InvalidInput),
    ("input-int", 123, {}, InvalidInput),
    ("input-nan", math.nan, {}, InvalidInput),
    ("input-bool", True, {}, InvalidInput),
    ("input-bytes", b"hello", {}, InvalidInput),
    ("input-bytearray", bytearray(b"hi"), {}, InvalidInput),
    ("input-object", object(), {}, InvalidInput),
    ("input-dict-bad-role", {"role": "robot", "content": "x"}, {}, InvalidInput),
    ("input-list-of-ints", [1, 2], {}, InvalidInput),
    ("input-list-with-None", ["hi", None], {}, InvalidInput),
    ("input-ends-unanswered-call", [UserMessage(content="add"), UNANSWERED], {}, InvalidInput),
    ("input-is-unanswered-call", UNANSWERED, {}, InvalidInput),
    (
        "input-call-half-answered",
        [
            UserMessage(content="add twice"),
            reply(None, call("add", "c1", a=1, b=2), call("add", "c2", a=3, b=4)),
            ToolMessage(tool_call_id="c1", name="add", content="3"),
        ],
        {},
        InvalidInput,
    ),
    (
        "input-dict-unanswered-call",
        [{"role": "assistant", "content": None, "tool_calls": [{"id": "c9", "name": "add", "arguments": "{}"}]}],
        {},
        InvalidInput,
    ),
    ("limits-str", "hi", {"limits": "fast"}, InvalidDefinition),
    ("limits-dict", "hi", {"limits": {"model_timeout": 1}}, InvalidDefinition),
    ("limits-int", "hi", {"limits": 5}, InvalidDefinition),
    ("tools-str", "hi", {"tools": "notalist"}, InvalidDefinition),
    ("tools-single-tool", "hi", {"tools": add}, InvalidDefinition),
    ("tools-int", "hi", {"tools": 5}, InvalidDefinition),
    ("tools-list-of-int", "hi", {"tools": [5]}, InvalidDefinition),
    ("tools-map-to-function", "hi", {"tools": {"add": plain}}, InvalidDefinition),
    ("tools-map-to-str", "hi", {"tools": {"add": "add"}}, InvalidDefinition),
    ("store-path-str", "hi", {"store": "x.db"}, InvalidInput),
    ("store-pathlib", "hi", {"store": Path("x.db")}, InvalidInput),
    ("store-int", "hi", {"store": 5}, InvalidInput),
    ("store-object", "hi", {"store": object()}, InvalidInput),
    ("observers-str", "hi", {"observers": "log"}, InvalidInput),
    ("observers-single", "hi", {"observers": LoggingObserver()}, InvalidInput),
    ("observers-list-of-int", "hi", {"observers": [5]}, InvalidInput),
    ("models-int", "hi", {"models": 5}, InvalidInput),
    ("models-list", "hi", {"models": [ScriptedModel(["x"])]}, InvalidInput),
    ("models-map-to-str", "hi", {"models": {"calc": "gpt-4o"}}, InvalidInput),
    ("context-unhashable", "hi", {"context": [1, 2]}, InvalidInput),
    ("run_id-empty", "hi", {"run_id": ""}, InvalidInput),
    ("run_id-int", "hi", {"run_id": 5}, InvalidInput),
    ("conversation_id-empty", "hi", {"conversation_id": ""}, InvalidInput),
]

MACHINE_CASES: list[tuple[str, Any]] = [("machine-int", 5), ("machine-str", "examples:agent"), ("machine-None", None)]

BACKEND_CASES: list[tuple[str, Any]] = [("backend-curio", "curio"), ("backend-None", None), ("backend-int", 1)]

# (id, conversation id, keyword arguments, expected error) — for resume (awaited)
RESUME_CASES: list[tuple[str, Any, dict[str, Any], type[Exception]]] = [
    ("resume-id-None", None, {}, InvalidInput),
    ("resume-id-empty", "", {}, InvalidInput),
    ("resume-id-int", 5, {}, InvalidInput),
    ("resume-store-None", "c", {"store": None}, InvalidInput),
    ("resume-store-path", "c", {"store": "x.db"}, InvalidInput),
    ("resume-limits-str", "c", {"limits": "fast"}, InvalidDefinition),
    ("resume-tools-str", "c", {"tools": "notalist"}, InvalidDefinition),
    ("resume-models-int", "c", {"models": 5}, InvalidInput),
    ("resume-observers-str", "c", {"observers": "x"}, InvalidInput),
    ("resume-machines-int", "c", {"machines": 5}, InvalidInput),
    ("resume-context-unhashable", "c", {"context": {"a": 1}}, InvalidInput),
]


def test_there_are_at_least_38_bad_calls() -> None:
    n = 2 * (len(RUN_CASES) + len(MACHINE_CASES)) + len(BACKEND_CASES) * 2 + len(RESUME_CASES)
    assert n >= 38


@pytest.mark.parametrize(("input", "kwargs", "expected"), [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES])
async def test_bad_run_calls_raise_typed_errors(input: Any, kwargs: dict[str, Any], expected: type[Exception]) -> None:
    with pytest.raises(expected) as info:
        await run(agent(), input, **kwargs)
    assert isinstance(info.value, FsmAgentsError)


@pytest.mark.parametrize(("input", "kwargs", "expected"), [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES])
def test_bad_run_sync_calls_raise_typed_errors(input: Any, kwargs: dict[str, Any], expected: type[Exception]) -> None:
    with pytest.raises(expected):
        run_sync(agent(), input, **kwargs)


@pytest.mark.parametrize("machine", [c[1] for c in MACHINE_CASES], ids=[c[0] for c in MACHINE_CASES])
async def test_run_on_a_non_machine_is_not_a_machine(machine: Any) -> None:
    with pytest.raises(NotAMachine):
        await run(machine, "hi")
    with pytest.raises(NotAMachine):
        await resume("c", machine, store=MemoryStore())


@pytest.mark.parametrize("backend", [c[1] for c in BACKEND_CASES], ids=[c[0] for c in BACKEND_CASES])
def test_an_unknown_backend_is_invalid_input(backend: Any) -> None:
    with pytest.raises(InvalidInput, match="backend must be one of 'asyncio', 'trio'"):
        run_sync(agent(), "hi", backend=backend)
    with pytest.raises(InvalidInput, match="backend must be one of"):
        resume_sync("c", agent(), store=MemoryStore(), backend=backend)


@pytest.mark.parametrize(
    ("conversation_id", "kwargs", "expected"), [c[1:] for c in RESUME_CASES], ids=[c[0] for c in RESUME_CASES]
)
async def test_bad_resume_calls_raise_typed_errors(
    conversation_id: Any, kwargs: dict[str, Any], expected: type[Exception]
) -> None:
    options: dict[str, Any] = {"store": MemoryStore(), **kwargs}
    with pytest.raises(expected):
        await resume(conversation_id, agent(), **options)


async def test_messages_name_the_argument_and_the_fix() -> None:
    with pytest.raises(InvalidInput, match=r"input must be a str, a message or a list of messages, not NoneType"):
        await run(agent(), None)
    with pytest.raises(InvalidDefinition, match=r"limits must be a fsm_agents.Limits, e.g. Limits\(model_timeout=30\)"):
        await run(agent(), "hi", limits="fast")
    with pytest.raises(InvalidInput, match=r"open it first, e.g. store=SQLiteStore\('x.db'\)"):
        await run(agent(), "hi", store="x.db")
    with pytest.raises(InvalidInput, match=r"tool call\(s\) c1 are not answered"):
        await run(agent(), [UserMessage(content="add"), UNANSWERED])


async def test_good_calls_still_run() -> None:
    """The checks refuse only what is wrong: answered calls, a list of plain functions as tool
    overrides, a Limits, a store object and an observer list all run to DONE."""
    answered = [UserMessage(content="add"), UNANSWERED, ToolMessage(tool_call_id="c1", name="add", content="3")]
    result = await run(
        agent(),
        answered,
        tools=[add],
        limits=Limits(model_timeout=10),
        store=MemoryStore(),
        observers=[LoggingObserver()],
        models={"calc": ScriptedModel(["3"])},
    )
    assert result.ok and result.output == "3"
    assert (await run(agent(), "hi", tools={"add": add})).ok


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_good_sync_calls_still_run(backend: str) -> None:
    assert run_sync(agent(), "hi", tools=[plain], backend=backend).ok
