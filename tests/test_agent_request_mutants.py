"""Behaviour of the agent's model request, its limits and the AgentMachine that mutation testing
(`make mutation`, docs/mutation.md) found untested.

Every test drives the pure `start`/`step` (no runtime, no I/O).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from fsm_agents import (
    Agent,
    AwaitInput,
    CheckOutput,
    Failure,
    GuardrailResult,
    GuardrailTripped,
    InvalidTransition,
    LimitExceeded,
    Message,
    ModelReplied,
    Phase,
    RunContext,
    RunTools,
    Step,
    Tool,
    ToolResult,
    ToolsFinished,
    tool,
)
from fsm_agents.agent import model_request
from fsm_agents.models import call, reply
from fsm_agents.state import AssistantMessage, ToolSpec


class City(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str


class Size(BaseModel):
    model_config = ConfigDict(frozen=True)
    size: int


CITY = json.dumps({"name": "Oslo"})
FINAL_RESULT_DESCRIPTION = "The final response which ends this conversation: call it with your answer."
PROMPT_HEAD = "Reply with only a JSON object (no other text) that matches this JSON schema:\n"


def lookup(q: str) -> str:
    """Look up."""
    return q


def pay(amount: int) -> str:
    """Pay (needs a human's approval)."""
    return f"paid {amount}"


def town(name: str) -> City:
    """The city of that name (the output function)."""
    return City(name=name)


def passes(ctx: RunContext[Any], value: Any) -> GuardrailResult:
    return GuardrailResult(tripped=False)


def after(m: Any, step: Step, message: AssistantMessage) -> Step:
    next_step: Step = m.step(step.snapshot, ModelReplied(message=message))
    return next_step


def request_of(step: Step) -> Any:
    return step.effects[0].request  # type: ignore[attr-defined]


def is_city_schema(parameters_json: str | None) -> bool:
    assert parameters_json is not None
    schema = json.loads(parameters_json)
    return schema["type"] == "object" and set(schema["properties"]) == {"name"} and schema["required"] == ["name"]


# -- model_request: the output type by mode ------------------------------------------------------


def test_the_output_tool_comes_after_the_agents_tools_and_answers_a_none_choice() -> None:
    agent = Agent("a", "Be brief.", tools=[lookup], output_type=City, output_mode="tool")
    request = request_of(agent.machine.start("q"))
    assert [t.name for t in request.tools] == ["lookup", "final_result"]
    assert request.tools[0] == agent.tools[0].spec
    final = request.tools[1]
    assert final.name == "final_result" and final.description == FINAL_RESULT_DESCRIPTION
    assert is_city_schema(final.parameters_json)
    assert request.output_schema_json is None and request.instructions == "Be brief."
    assert request.tool_choice == "auto"
    assert agent.machine.tool_specs("a") == request.tools
    none = Agent("n", tools=[lookup], output_type=City, output_mode="tool", tool_choice="none")
    assert request_of(none.machine.start("q")).tool_choice == "final_result"
    required = Agent("r", output_type=City, output_mode="tool", tool_choice="required")
    assert request_of(required.machine.start("q")).tool_choice == "required"


def test_model_request_offers_the_output_tool_only_when_the_machine_handles_it() -> None:
    """Without `output_tool=True` a `"tool"`-mode agent's schema goes natively and a `"none"`
    choice stays `"none"`."""
    agent = Agent("a", tools=[lookup], output_type=City, output_mode="tool", tool_choice="none")
    plain = model_request(agent, tools=[agent.tools[0].spec])
    assert [t.name for t in plain.tools] == ["lookup"] and plain.tool_choice == "none"
    assert is_city_schema(plain.output_schema_json)
    handled = model_request(agent, tools=[agent.tools[0].spec], output_tool=True)
    assert [t.name for t in handled.tools] == ["lookup", "final_result"] and handled.tool_choice == "final_result"
    assert handled.output_schema_json is None


def test_prompt_mode_appends_the_schema_to_the_instructions() -> None:
    request = request_of(Agent("a", "Be brief.", output_type=City, output_mode="prompt").machine.start("q"))
    assert request.output_schema_json is None and request.tools == ()
    head, _, schema = request.instructions.partition("\n\n")
    assert head == "Be brief." and schema.startswith(PROMPT_HEAD)
    assert is_city_schema(schema.removeprefix(PROMPT_HEAD))
    bare = request_of(Agent("b", output_type=City, output_mode="prompt").machine.start("q"))
    assert bare.instructions.startswith(PROMPT_HEAD)  # no empty line ahead of it


@pytest.mark.parametrize("mode", ["prompt", "tool"])
def test_an_explicit_output_type_is_always_native(mode: str) -> None:
    agent = Agent("a", "Be brief.", output_type=City, output_mode=mode)  # type: ignore[arg-type]
    for output_tool in (False, True):
        request = model_request(agent, output_type=Size, output_tool=output_tool)
        assert request.instructions == "Be brief." and request.tools == ()
        assert request.output_schema_json is not None
        assert set(json.loads(request.output_schema_json)["properties"]) == {"size"}


def test_the_native_mode_sends_the_schema_and_no_tool() -> None:
    request = request_of(Agent("a", "Be brief.", output_type=City).machine.start("q"))
    assert request.tools == () and request.instructions == "Be brief." and is_city_schema(request.output_schema_json)


def test_an_output_function_is_one_of_the_tools_and_answers_a_none_choice() -> None:
    agent = Agent("a", tools=[lookup], output_type=town, tool_choice="none")
    request = request_of(agent.machine.start("q"))
    assert [t.name for t in request.tools] == ["lookup", "town"]
    assert request.output_schema_json is None and request.tool_choice == "town"
    specs = agent.machine.tool_specs("a")
    assert model_request(agent, tools=specs).tool_choice == "none"  # the machine does not handle it
    auto = Agent("b", tools=[lookup], output_type=town)
    assert model_request(auto, tools=specs, output_tool=True).tool_choice == "auto"
    assert model_request(auto, output_tool=True).output_schema_json is None
    explicit = model_request(agent, tools=specs, output_type=City, output_tool=True)
    assert is_city_schema(explicit.output_schema_json) and explicit.tool_choice == "none"


def test_parallel_tool_calls_is_sent_only_with_tools() -> None:
    serial = request_of(Agent("a", tools=[lookup], parallel_tool_calls=False).machine.start("q"))
    assert serial.parallel_tool_calls is False
    bare = request_of(Agent("b", parallel_tool_calls=False).machine.start("q"))
    assert bare.parallel_tool_calls is None
    assert model_request(Agent("c", parallel_tool_calls=True)).parallel_tool_calls is None
    assert model_request(Agent("d", parallel_tool_calls=True), tools=[ToolSpec(name="x")]).parallel_tool_calls is True


# -- a per-call tool_choice policy ----------------------------------------------------------------


def choose_by_turn(messages: Sequence[Message]) -> str:
    """`"none"` for the first call (only the user's message), then `"lookup"`."""
    return "none" if len(messages) == 1 else "lookup"


@pytest.mark.parametrize(
    ("options", "answer_now"),
    [
        ({"output_type": City, "output_mode": "tool"}, "final_result"),
        ({"output_type": town}, "town"),
        ({}, "none"),
        ({"output_type": City}, "none"),
    ],
)
def test_a_policys_none_is_a_call_of_the_tool_that_gives_the_answer(options: dict[str, Any], answer_now: str) -> None:
    m = Agent("a", tools=[lookup], tool_choice=choose_by_turn, **options).machine
    first = m.start("q")
    assert request_of(first).tool_choice == answer_now
    observed = m.step(
        after(m, first, reply(None, call("lookup", "c1", q="x"))).snapshot,
        ToolsFinished(results=(ToolResult(call_id="c1", name="lookup", ok=True, content="x"),)),
    )
    assert request_of(observed).tool_choice == "lookup"  # other choices are sent as they are


# -- guards of an agent with the output tool -------------------------------------------------------


def tool_mode(**options: Any) -> Any:
    return Agent("a", tools=[lookup], output_type=City, output_mode="tool", **options).machine


def test_a_final_result_call_ends_the_run_and_other_calls_run() -> None:
    m = tool_mode()
    start = m.start("q")
    done = after(m, start, reply(None, call("final_result", "c1", name="Oslo")))
    assert done.snapshot.phase is Phase.DONE and done.snapshot.output == City(name="Oslo")
    tools = after(m, start, reply(None, call("lookup", "c1", q="x")))
    assert tools.snapshot.phase is Phase.EXECUTING
    assert isinstance(tools.effects[0], RunTools) and [c.name for c in tools.effects[0].calls] == ["lookup"]


def test_a_final_result_call_is_taken_when_the_step_budget_is_spent() -> None:
    m = tool_mode(max_steps=1)
    done = after(m, m.start("q"), reply(None, call("lookup", "c1", q="x"), call("final_result", "c2", name="Oslo")))
    assert done.snapshot.phase is Phase.DONE and done.snapshot.output == City(name="Oslo")
    spent = after(m, m.start("q"), reply(None, call("lookup", "c1", q="x")))
    assert spent.snapshot.failure is not None and spent.snapshot.failure.kind == "budget_exhausted"


def test_a_final_result_call_beside_a_handoff_ends_the_run() -> None:
    helper = Agent("helper")
    m = Agent("a", output_type=City, output_mode="tool", handoffs=[helper]).machine
    start = m.start("q")
    done = after(m, start, reply(None, call("transfer_to_helper", "c1"), call("final_result", "c2", name="Oslo")))
    assert done.snapshot.phase is Phase.DONE and done.snapshot.output == City(name="Oslo")
    moved = after(m, start, reply(None, call("transfer_to_helper", "c1")))
    assert moved.snapshot.agent == "helper" and moved.snapshot.phase is Phase.PLANNING


# -- the chart variant each option needs -----------------------------------------------------------


def test_an_output_functions_result_ends_the_run() -> None:
    m = Agent("a", tools=[lookup], output_type=town).machine
    asked = after(m, m.start("q"), reply(None, call("town", "c1", name="Oslo")))
    assert asked.snapshot.phase is Phase.EXECUTING
    result = ToolResult(call_id="c1", name="town", ok=True, content=CITY)
    done = m.step(asked.snapshot, ToolsFinished(results=(result,)))
    assert done.snapshot.phase is Phase.DONE and done.snapshot.output == City(name="Oslo") and done.effects == ()


def test_output_guardrails_check_the_final_answer() -> None:
    m = Agent("a", output_guardrails=[passes]).machine
    checked = after(m, m.start("q"), reply("the answer"))
    assert checked.snapshot.phase is Phase.EXECUTING
    assert isinstance(checked.effects[0], CheckOutput) and checked.effects[0].guardrails == ("passes",)


def test_input_guardrails_are_named_on_the_first_call_and_a_trip_fails_the_run() -> None:
    m = Agent("a", input_guardrails=[passes]).machine
    start = m.start("q")
    assert start.effects[0].guardrails == ("passes",)  # type: ignore[attr-defined]
    tripped = m.step(start.snapshot, GuardrailTripped(guardrail="passes", stage="input", reason="no"))
    assert tripped.snapshot.phase is Phase.FAILED
    assert tripped.snapshot.failure is not None and tripped.snapshot.failure.kind == "guardrail"
    plain = Agent("p").machine
    with pytest.raises(InvalidTransition):
        plain.step(plain.start("q").snapshot, GuardrailTripped(guardrail="passes", stage="input", reason="no"))


def ctx_instructions(ctx: RunContext[Any]) -> str:
    return "dynamic"


def test_dynamic_instructions_are_listed_by_agent() -> None:
    helper = Agent("helper", ctx_instructions)
    m = Agent("a", "static", handoffs=[helper]).machine
    assert dict(m.dynamic_instructions()) == {"helper": ctx_instructions}
    assert dict(Agent("p").machine.dynamic_instructions()) == {}


# -- calls that wait for a human: names that are not the agent's own tools -------------------------


class Listed:
    """A toolset (never opened here: the pure core decides from its static options)."""

    def __init__(self, prefix: str | None, requires_approval: bool | frozenset[str]) -> None:
        self.name = "listed"
        self.prefix = prefix
        self.requires_approval = requires_approval

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Sequence[Tool]]:  # pragma: no cover - never opened
        yield ()


def test_a_call_of_an_unknown_tool_beside_approval_tools_does_not_wait() -> None:
    m = Agent("a", tools=[lookup, tool(requires_approval=True)(pay)]).machine
    step = after(m, m.start("q"), reply(None, call("ghost", "c1"), call("pay", "c2", amount=3)))
    assert isinstance(step.effects[0], AwaitInput)
    assert [(r.call_id, r.tool, r.kind) for r in step.effects[0].requests] == [("c2", "pay", "approval")]


@pytest.mark.parametrize(
    ("toolset", "name"),
    [(Listed("s", True), "s_echo"), (Listed(None, frozenset({"echo"})), "echo")],
)
def test_a_toolsets_call_that_needs_approval_waits(toolset: Listed, name: str) -> None:
    m = Agent("a", tools=[lookup, toolset]).machine
    step = after(m, m.start("q"), reply(None, call(name, "c1"), call("lookup", "c2", q="x")))
    assert isinstance(step.effects[0], AwaitInput)
    assert [(r.call_id, r.tool, r.kind) for r in step.effects[0].requests] == [("c1", name, "approval")]


# -- usage limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "used", "maximum", "message"),
    [
        ("wall_time", 1.23456, 1.0, "a: the wall_time limit was exceeded: used 1.23 s, at most 1 s"),
        ("requests", 123456, 100000, "a: the requests limit was exceeded: used 123456, at most 100000"),
    ],
)
def test_a_limit_failure_names_the_limit_what_was_used_and_the_maximum(
    limit: str, used: float, maximum: float, message: str
) -> None:
    m = Agent("a").machine
    failed = m.step(m.start("q").snapshot, LimitExceeded(limit=limit, used=used, maximum=maximum))
    assert failed.snapshot.phase is Phase.FAILED
    assert failed.snapshot.failure == Failure(
        kind="usage_limit", message=f"{message} (raise it in Limits, or let the run do less)", detail=limit
    )
