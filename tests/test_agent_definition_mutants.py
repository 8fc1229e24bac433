"""Behaviour of `Agent`'s definition and toolset code that mutation testing (`make mutation`,
docs/mutation.md, second pass) found untested: the exact messages of its definition errors, output
functions given as functions or `Tool`s, the output tool's reserved name, the toolsets of a tool
list (which objects are toolsets, the two refusals), which toolset calls wait for a human, and what
a machine resolves per agent (guardrails by stage, the answer tool, the tool executor's options).

Every test goes through the public `Agent(...)` and the pure `start`/`step` (no runtime, no I/O).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict

from fsm_agents import (
    Agent,
    GuardrailResult,
    InvalidDefinition,
    ModelReplied,
    Phase,
    ToolResult,
    ToolsFinished,
    tool,
)
from fsm_agents.errors import ToolDefinitionError
from fsm_agents.events import AwaitInput, CallModel, CheckOutput, RunTools
from fsm_agents.models import call, reply
from fsm_agents.output import OUTPUT_TOOL
from fsm_agents.tools import Tool


def lookup(q: str) -> str:
    """Look up."""
    return q


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    ok: bool


def verdict(ok: bool) -> Verdict:
    """Give the verdict (an output function).

    Args:
        ok: whether it holds.
    """
    return Verdict(ok=ok)


def passes(ctx: Any, value: Any) -> GuardrailResult:
    return GuardrailResult()


def request_of(agent: Agent) -> Any:
    (effect,) = agent.machine.start("q").effects
    assert isinstance(effect, CallModel)
    return effect.request


def refused(make: Any) -> str:
    with pytest.raises(InvalidDefinition) as info:
        make()
    return str(info.value)


# -- Agent.__init__: the messages of its definition errors --------------------------------------
def test_arguments_of_the_wrong_type_are_refused_with_the_agent_and_the_type_named() -> None:
    assert refused(lambda: Agent("a", description=3)) == "agent 'a': description must be a str, got int"
    assert refused(lambda: Agent("a", parallel_tool_calls="yes")) == (
        "agent 'a': parallel_tool_calls must be True, False or None, got str"
    )
    assert refused(lambda: Agent("a", instructions=3)) == (  # type: ignore[arg-type]
        "agent 'a': instructions must be a str or a function (ctx: RunContext) -> str, got int"
    )
    assert refused(lambda: Agent("a", instructions=lambda: "x")) == (  # type: ignore[arg-type,misc]
        "agent 'a': the instructions function must take exactly one argument (the RunContext)"
    )


@pytest.mark.parametrize("value", [True, False, None])
def test_parallel_tool_calls_takes_true_false_or_none(value: bool | None) -> None:
    assert Agent("a", tools=[lookup], parallel_tool_calls=value).parallel_tool_calls is value


def test_dynamic_instructions_are_accepted_and_the_pure_core_sends_no_static_text() -> None:
    def instructions(ctx: Any) -> str:
        return "be brief"

    agent = Agent("a", instructions=instructions)
    assert agent.instructions is instructions and agent.static_instructions == ""
    assert request_of(agent).instructions == ""
    assert request_of(Agent("b", instructions="be kind")).instructions == "be kind"


@pytest.mark.parametrize("option", ["input_guardrails", "output_guardrails"])
def test_guardrails_that_are_not_functions_are_refused_naming_the_agent_and_the_option(option: str) -> None:
    assert refused(lambda: Agent("a", **{option: [1]})) == (
        f"agent 'a': {option} must hold functions (ctx, value) -> GuardrailResult, got 1"
    )


def test_output_guardrails_are_refused_beside_an_output_function_and_accepted_alone() -> None:
    assert refused(lambda: Agent("a", output_type=verdict, output_guardrails=[passes])) == (
        "agent 'a': output_guardrails check a final answer the model writes; an output function's "
        "result ends the run without that check: validate inside the output function instead"
    )
    assert [g.name for g in Agent("a", output_guardrails=[passes]).output_guardrails] == ["passes"]


def test_plain_text_output_is_kept_as_none_and_ends_the_run_with_the_reply() -> None:
    agent = Agent("a", output_type=str)
    assert agent.output_type is None
    m = agent.machine
    done = m.step(m.start("q").snapshot, ModelReplied(message=reply("plain words"))).snapshot
    assert done.phase is Phase.DONE and done.output == "plain words"


def test_an_unhashable_output_type_is_refused_naming_it() -> None:
    unhashable = Annotated[int, []]
    assert refused(lambda: Agent("a", output_type=unhashable)) == (
        f"agent 'a': output_type {unhashable!r} is not hashable: use a model or a plain type"
    )


# -- output functions -----------------------------------------------------------------------------
def test_a_plain_function_as_output_type_is_an_output_function_offered_after_the_tools() -> None:
    agent = Agent("a", tools=[lookup], output_type=verdict)
    assert agent.output_type is Verdict
    assert agent.output_function is not None and agent.output_function.name == "verdict"
    assert [t.name for t in agent.tools] == ["lookup", "verdict"]
    assert [t.name for t in request_of(agent).tools] == ["lookup", "verdict"]


def test_a_tool_as_output_type_is_that_very_tool() -> None:
    named = tool(verdict, name="decide")
    agent = Agent("a", output_type=named)
    assert agent.output_function is named and agent.tools == (named,) and agent.output_type is Verdict


def test_an_output_functions_result_ends_the_run_with_its_value() -> None:
    m = Agent("a", tools=[lookup], output_type=verdict).machine
    asked = m.step(m.start("q").snapshot, ModelReplied(message=reply(None, call("verdict", "c1", ok=True))))
    assert asked.snapshot.phase is Phase.EXECUTING
    result = ToolResult(call_id="c1", name="verdict", ok=True, content='{"ok": true}')
    done = m.step(asked.snapshot, ToolsFinished(results=(result,))).snapshot
    assert done.phase is Phase.DONE and done.output == Verdict(ok=True)


def test_an_output_function_whose_return_annotation_is_missing_or_unresolved_is_explained() -> None:
    def untyped(ok: bool):  # type: ignore[no-untyped-def]
        """No return annotation."""
        return ok

    def unresolved(ok: bool) -> Nowhere:  # type: ignore[name-defined]  # noqa: F821
        """A return annotation that names nothing."""
        return ok

    assert refused(lambda: Agent("a", output_type=untyped)) == (
        "agent 'a': output_type untyped is an output function: annotate what it returns (its return value "
        "is the run's output)"
    )
    assert refused(lambda: Agent("a", output_type=unresolved)) == (
        "agent 'a': output_type unresolved: its return annotation does not resolve (name 'Nowhere' is not defined)"
    )


def test_an_output_function_also_in_tools_is_refused() -> None:
    assert refused(lambda: Agent("a", tools=[lookup, verdict], output_type=verdict)) == (
        "agent 'a': the output function 'verdict' is also in tools: list it once, as output_type"
    )


# -- the output tool's reserved name ----------------------------------------------------------------
def final_result(q: str) -> str:
    """A tool that happens to be named like the output tool."""
    return q


def test_a_tool_named_final_result_is_refused_only_beside_the_output_tool() -> None:
    assert refused(lambda: Agent("a", tools=[final_result], output_type=Verdict, output_mode="tool")) == (
        f"agent 'a': a tool is named {OUTPUT_TOOL!r}, the name of the output tool (output_mode='tool'): rename the tool"
    )
    # no output tool: plain text, a native or a prompt schema
    for options in ({}, {"output_type": Verdict}, {"output_type": Verdict, "output_mode": "prompt"}):
        assert [t.name for t in Agent("a", tools=[final_result], **options).tools] == [OUTPUT_TOOL]
    assert Agent("a", tools=[final_result], output_mode="tool").output_type is None  # text: no output tool


def test_other_tools_sit_beside_the_output_tool() -> None:
    agent = Agent("a", tools=[lookup], output_type=Verdict, output_mode="tool")
    assert [t.name for t in request_of(agent).tools] == ["lookup", OUTPUT_TOOL]
    m = agent.machine
    done = m.step(m.start("q").snapshot, ModelReplied(message=reply(None, call(OUTPUT_TOOL, "c", ok=False)))).snapshot
    assert done.phase is Phase.DONE and done.output == Verdict(ok=False)
    assert m.output_tool_type("a") is Verdict


# -- toolsets in a tool list --------------------------------------------------------------------------
@dataclass(frozen=True)
class Listed:
    """A toolset (the `Toolset` protocol) whose tools are listed when a run starts."""

    name: str
    prefix: str | None = None
    requires_approval: bool | frozenset[str] = False

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Sequence[Tool]]:
        yield ()


def test_a_toolset_alone_or_in_a_list_is_split_from_the_plain_tools_in_order() -> None:
    first, second = Listed("first", prefix="f"), Listed("second", prefix="s")
    alone = Agent("a", tools=first)
    assert alone.toolsets == (first,) and alone.tools == ()
    mixed = Agent("a", tools=[first, lookup, second])
    assert mixed.toolsets == (first, second) and [t.name for t in mixed.tools] == ["lookup"]
    assert mixed.machine.toolsets() == {"a": (first, second)}
    plain = Agent("a", tools=[lookup])
    assert plain.toolsets == () and [t.name for t in plain.tools] == ["lookup"]


def test_a_toolset_given_twice_is_refused_naming_the_first() -> None:
    first, second = Listed("first"), Listed("second")
    assert refused(lambda: Agent("a", tools=[first, second, first])) == (
        "agent 'a': a toolset is given twice in tools ('first'...)"
    )


def test_a_toolset_whose_every_call_waits_needs_a_prefix_only_beside_other_toolsets() -> None:
    everything = Listed("everything", requires_approval=True)
    assert refused(lambda: Agent("a", tools=[Listed("other"), everything])) == (
        "agent 'a': toolset 'everything' has requires_approval=True and no prefix, beside other toolsets: its "
        "calls cannot be told apart before its tools are listed; give it a prefix= or name the tools that need "
        "approval"
    )
    assert Agent("a", tools=[everything, lookup]).toolsets == (everything,)  # alone: its calls are the unknown names
    prefixed = Listed("everything", prefix="e", requires_approval=True)
    assert len(Agent("a", tools=[prefixed, Listed("other")]).toolsets) == 2
    named = Listed("named", requires_approval=frozenset({"x"}))
    assert len(Agent("a", tools=[named, Listed("other")]).toolsets) == 2
    assert len(Agent("a", tools=[Listed("one"), Listed("two")]).toolsets) == 2  # no approval: no prefix needed


def look_up(q: str) -> str:
    """Look it up (a function that also carries a toolset's attributes)."""
    return q


look_up.name = "look_up"  # type: ignore[attr-defined]
look_up.prefix = None  # type: ignore[attr-defined]
look_up.requires_approval = False  # type: ignore[attr-defined]
look_up.open = Listed("look_up").open  # type: ignore[attr-defined]


def test_a_callable_is_a_function_tool_even_with_a_toolsets_attributes() -> None:
    agent = Agent("a", tools=[look_up])
    assert agent.toolsets == () and [t.name for t in agent.tools] == ["look_up"]


class CallableList(list):  # type: ignore[type-arg]
    def __call__(self) -> None: ...


def test_a_callable_tool_list_is_refused_as_a_single_callable() -> None:
    with pytest.raises(ToolDefinitionError) as info:
        Agent("a", tools=CallableList([lookup]))
    assert str(info.value) == "tools must be a list of tools or functions, got a single CallableList"


# -- which toolset calls wait for a human ----------------------------------------------------------
def awaited_tools(agent: Agent, *names: str) -> list[str]:
    """The tools of a reply calling `names` (empty arguments) that wait for a human's decision."""
    m = agent.machine
    calls = [call(n, f"c{i}") for i, n in enumerate(names)]
    step = m.step(m.start("q").snapshot, ModelReplied(message=reply(None, *calls)))
    assert step.snapshot.phase is Phase.EXECUTING
    (effect,) = step.effects
    if isinstance(effect, RunTools):
        return []
    assert isinstance(effect, AwaitInput)
    return [r.tool for r in effect.requests]


def test_every_call_of_an_unprefixed_toolset_that_requires_approval_waits_but_the_agents_own() -> None:
    agent = Agent("a", tools=[lookup, Listed("all", requires_approval=True)])
    assert awaited_tools(agent, "lookup", "listed_later", "other") == ["listed_later", "other"]


def test_a_prefixed_toolset_that_requires_approval_makes_only_its_prefixed_calls_wait() -> None:
    agent = Agent("a", tools=[lookup, Listed("fs", prefix="fs", requires_approval=True), Listed("web", prefix="web")])
    assert awaited_tools(agent, "fs_read", "web_get", "lookup", "fsread", "fs_write") == ["fs_read", "fs_write"]
    assert awaited_tools(agent, "web_get") == []


def test_a_toolset_naming_its_tools_that_need_approval_makes_only_those_wait() -> None:
    agent = Agent("a", tools=[Listed("fs", prefix="fs", requires_approval=frozenset({"fs_write"}))])
    assert awaited_tools(agent, "fs_read", "fs_write", "other") == ["fs_write"]
    assert awaited_tools(agent, "fs_read") == []


def test_toolsets_without_approval_never_make_a_call_wait() -> None:
    agent = Agent("a", tools=[Listed("one", prefix="one"), Listed("two", requires_approval=False)])
    assert awaited_tools(agent, "one_x", "y") == []


# -- what a machine resolves per agent ---------------------------------------------------------------
def screens(ctx: Any, messages: Any) -> GuardrailResult:
    return GuardrailResult()


def test_a_machine_gives_each_agents_guardrails_by_stage_and_name() -> None:
    agent = Agent("a", input_guardrails=[screens], output_guardrails=[passes])
    m = agent.machine
    assert dict(m.guardrails_for("a", "input")) == {"screens": agent.input_guardrails[0]}
    assert dict(m.guardrails_for("a", "output")) == {"passes": agent.output_guardrails[0]}
    assert dict(Agent("b").machine.guardrails_for("b", "output")) == {}


def test_a_final_answer_is_checked_by_the_agents_output_guardrails_in_order() -> None:
    def second(ctx: Any, value: Any) -> GuardrailResult:
        return GuardrailResult()

    m = Agent("a", output_guardrails=[passes, second]).machine
    step = m.step(m.start("q").snapshot, ModelReplied(message=reply("the answer")))
    assert step.snapshot.phase is Phase.EXECUTING
    (effect,) = step.effects
    assert isinstance(effect, CheckOutput) and effect.guardrails == ("passes", "second") and effect.output == "the answer"


@pytest.mark.parametrize(("value", "parallel"), [(None, True), (True, True), (False, False)])
def test_the_tool_executor_runs_calls_concurrently_unless_parallel_tool_calls_is_false(
    value: bool | None, parallel: bool
) -> None:
    m = Agent("a", tools=[lookup], parallel_tool_calls=value, max_tool_output_chars=77).machine
    assert dict(m.tool_options("a")) == {"max_output_chars": 77, "parallel": parallel}
    assert m.start("q").effects[0].request.parallel_tool_calls is value  # type: ignore[attr-defined]


def test_a_per_call_choice_of_none_names_the_tool_that_gives_the_final_answer() -> None:
    def never(messages: Any) -> str:
        return "none"

    def by_output_tool() -> Agent:
        return Agent("a", tools=[lookup], output_type=Verdict, output_mode="tool", tool_choice=never)

    assert request_of(by_output_tool()).tool_choice == OUTPUT_TOOL
    assert request_of(Agent("a", tools=[lookup], output_type=verdict, tool_choice=never)).tool_choice == "verdict"
    assert request_of(Agent("a", tools=[lookup], output_type=Verdict, tool_choice=never)).tool_choice == "none"
