"""Machines the Temporal tests run (tests/test_temporal.py). A module of its own, holding only
definitions: Temporal's workflow sandbox imports it again for every workflow run (and workers
in child processes import it by name). Every tool execution appends a line to the file named by
$FSM_TEMPORAL_SIDE_FILE, so a test can count executions across processes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

from fsm_agents import Agent, FunctionModel, GuardrailResult, tool
from fsm_agents.models.base import ModelResponse, StreamDelta
from fsm_agents.models.scripted import call, reply
from fsm_agents.state import AssistantMessage, ModelRequest
from fsm_agents.tools import current_run_id

ROUNDS = 6  # tool rounds of `clerk`: charge (not idempotent) on even turns, lookup on odd ones


def _note(line: str) -> None:
    side = os.environ.get("FSM_TEMPORAL_SIDE_FILE")
    if side:
        with open(side, "a") as f:
            f.write(line + "\n")


def _note_run(line: str) -> None:
    _note(f"{current_run_id()} {line}")


@tool(idempotent=True)
def add(a: int, b: int) -> int:
    """Add two integers."""
    _note(f"add {a} {b}")
    return a + b


def _helper_reply(request: ModelRequest) -> AssistantMessage:
    results = [m for m in request.messages if m.role == "tool"]
    if not results:
        return reply("let me add", call("add", "call_add", a=2, b=3))
    return reply(f"the sum is {results[-1].content}")


helper = Agent("helper", "You add numbers.", model=FunctionModel(_helper_reply), tools=[add])


@tool
def charge(n: int) -> str:
    """Charge the customer (a side effect that must never repeat)."""
    _note_run(f"charge {n}")
    time.sleep(4 * float(os.environ.get("FSM_TEMPORAL_TOOL_SLEEP", "0")))  # long: a kill often lands in it
    return f"charged {n}"


@tool(idempotent=True)
def lookup(n: int) -> str:
    """Read something (safe to repeat)."""
    _note_run(f"lookup {n}")
    time.sleep(float(os.environ.get("FSM_TEMPORAL_TOOL_SLEEP", "0")))
    return f"value {n}"


def _clerk_reply(request: ModelRequest) -> AssistantMessage:
    turn = sum(1 for m in request.messages if m.role == "assistant")
    if turn >= ROUNDS:
        return reply("done")
    name = "charge" if turn % 2 == 0 else "lookup"
    return reply(f"turn {turn}", call(name, f"call_{turn}", n=turn))


clerk = Agent("clerk", "You are a clerk.", model=FunctionModel(_clerk_reply), tools=[charge, lookup], max_steps=ROUNDS + 5)


@tool(requires_approval=True)
def refund(order: int) -> str:
    """Refund an order (a human approves it first)."""
    _note(f"refund {order}")
    return f"refunded order {order}"


def _cautious_reply(request: ModelRequest) -> AssistantMessage:
    results = [m for m in request.messages if m.role == "tool"]
    if not results:
        return reply("refunding", call("refund", "call_refund", order=7))
    return reply("refunded" if "refunded" in results[-1].content else f"not refunded: {results[-1].content}")


cautious = Agent("cautious", "You refund orders.", model=FunctionModel(_cautious_reply), tools=[refund])


def _no_digits(ctx: object, messages: object) -> GuardrailResult:
    """Trip when the user's input holds a digit."""
    text = " ".join(getattr(m, "content", "") or "" for m in messages)  # type: ignore[attr-defined]
    return GuardrailResult(tripped=any(c.isdigit() for c in text), reason="digits in the input")


def _short(ctx: object, answer: object) -> GuardrailResult:
    """Trip on an answer longer than 40 characters."""
    return GuardrailResult(tripped=len(str(answer)) > 40, reason="answer too long")


guarded = Agent(
    "guarded",
    "Answer briefly.",
    model=FunctionModel(lambda request: reply("short answer" if "brief" in str(request.messages[-1].content) else "x" * 60)),
    input_guardrails=[_no_digits],
    output_guardrails=[_short],
)


class StreamingModel:
    """A model that streams (`stream_complete`): `fn`'s reply, its text in pieces of 3 characters
    and each tool call's arguments in pieces of 4, a short pause between pieces (so a reply spans
    several ~100 ms batches of published deltas). `complete` gives the same reply unstreamed."""

    def __init__(self, fn: Callable[[ModelRequest], AssistantMessage], pause: float = 0.02) -> None:
        self.fn = fn
        self.pause = pause

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(message=self.fn(request), finish_reason="stop")

    async def stream_complete(
        self, request: ModelRequest, on_delta: Callable[[StreamDelta], Awaitable[None] | None] | None = None
    ) -> ModelResponse:
        message = self.fn(request)
        pieces = [StreamDelta(text=(message.content or "")[i : i + 3]) for i in range(0, len(message.content or ""), 3)]
        for index, c in enumerate(message.tool_calls):
            args = c.arguments
            pieces.append(StreamDelta(tool_index=index, tool_call_id=c.id, tool_name=c.name, arguments=args[:4]))
            pieces += [StreamDelta(tool_index=index, arguments=args[i : i + 4]) for i in range(4, len(args), 4)]
        for piece in pieces:
            if on_delta is not None:
                maybe = on_delta(piece)
                if maybe is not None:
                    await maybe
            await asyncio.sleep(self.pause)
        return ModelResponse(message=message, finish_reason="tool_calls" if message.tool_calls else "stop")


def _talker_reply(request: ModelRequest) -> AssistantMessage:
    results = [m for m in request.messages if m.role == "tool"]
    if not results:
        return reply("I will add the two numbers for you now", call("add", "call_add", a=2, b=3))
    return reply(f"the sum of two and three is {results[-1].content}, as you asked")


talker = Agent("talker", "You add numbers, aloud.", model=StreamingModel(_talker_reply), tools=[add])
