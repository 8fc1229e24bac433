"""Behaviour of the agent machine's output handling that mutation testing (docs/mutation.md,
second pass over issue 15's code) found untested: which calls of a reply that uses the output
tool `final_result` get which result, a text reply or an empty-argument call in tool mode, what an
output function's results end a run with (the first valid one, falsy values included), the
output-tool guards on machines where only some agents (or none) have the output tool, the output
guardrails' check, and the testing-kit hints `output_tool_type` / `output_function_of`.

Every test drives the pure `start`/`step` (no runtime, no I/O).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from fsm_agents import Agent, GuardrailResult, ModelReplied, Phase, Step, ToolResult, ToolsFinished
from fsm_agents.agent import AgentMachine
from fsm_agents.context import RunContext
from fsm_agents.events import CallModel, CheckOutput, RunTools
from fsm_agents.models import call, reply
from fsm_agents.output import OUTPUT_TOOL
from fsm_agents.state import AssistantMessage, ToolCall, ToolMessage, UserMessage

NOT_RUN = f"not executed: the reply called {OUTPUT_TOOL}, which gives the final answer"


class City(BaseModel):
    model_config = ConfigDict(frozen=True)
    city: str
    country: str


class Settings(BaseModel):
    """Every field has a default: `{}` is a valid value."""

    model_config = ConfigDict(frozen=True)
    verbose: bool = False


def lookup(q: str) -> str:
    """Look up."""
    return q


def count(n: int) -> int:
    """Count.

    Args:
        n: a number.
    """
    return n


def trips(ctx: RunContext[Any], value: Any) -> GuardrailResult:
    return GuardrailResult(tripped=True, reason="no")


def after(m: AgentMachine, step: Step, message: AssistantMessage) -> Step:
    return m.step(step.snapshot, ModelReplied(message=message))


def tool_mode(**options: Any) -> AgentMachine:
    return Agent("finder", output_type=City, output_mode="tool", tools=[lookup], **options).machine


# -- the output tool: which call gets which result ------------------------------------------------
def test_the_first_final_result_call_gets_the_result_and_every_other_call_is_answered_not_run() -> None:
    m = tool_mode()
    message = reply(
        None,
        call("lookup", "a", q="x"),
        call(OUTPUT_TOOL, "b", city="Lima", country="Peru"),
        call(OUTPUT_TOOL, "c", city="Oslo", country="Norway"),
    )
    step = after(m, m.start("q"), message)
    s = step.snapshot
    assert s.phase is Phase.DONE and s.output == City(city="Lima", country="Peru") and step.effects == ()
    assert s.conversation.messages[-4:] == (
        message.model_copy(update={"agent": "finder"}),
        ToolMessage(tool_call_id="a", name="lookup", content=NOT_RUN, is_error=True),
        ToolMessage(tool_call_id="b", name=OUTPUT_TOOL, content="Final result processed.", is_error=False),
        ToolMessage(tool_call_id="c", name=OUTPUT_TOOL, content=NOT_RUN, is_error=True),
    )


def test_invalid_arguments_of_the_output_tool_are_answered_with_the_error_and_a_retry() -> None:
    m = tool_mode(output_retries=1)
    message = reply(None, call(OUTPUT_TOOL, "b", city="Lima"), call("lookup", "a", q="x"))
    step = after(m, m.start("q"), message)
    s = step.snapshot
    assert s.phase is Phase.PLANNING and isinstance(step.effects[0], CallModel)
    answer, other = s.conversation.messages[-2:]
    assert isinstance(answer, ToolMessage)
    assert (answer.tool_call_id, answer.name, answer.is_error) == ("b", OUTPUT_TOOL, True)
    assert "country" in answer.content and answer.content.endswith(f". Call {OUTPUT_TOOL} again with corrected arguments.")
    assert other == ToolMessage(tool_call_id="a", name="lookup", content=NOT_RUN, is_error=True)
    # out of retries: the run fails, each call still answered
    s2 = after(m, step, message).snapshot
    assert s2.phase is Phase.FAILED and s2.failure is not None and s2.failure.kind == "invalid_output"
    failed, skipped = s2.conversation.messages[-2:]
    assert isinstance(failed, ToolMessage) and (failed.tool_call_id, failed.is_error) == ("b", True)
    assert skipped == ToolMessage(tool_call_id="a", name="lookup", content=NOT_RUN, is_error=True)


def test_a_final_result_call_without_arguments_is_an_empty_object() -> None:
    m = Agent("a", output_type=Settings, output_mode="tool").machine
    empty = AssistantMessage(content=None, tool_calls=(ToolCall(id="c", name=OUTPUT_TOOL, arguments=""),))
    s = after(m, m.start("q"), empty).snapshot
    assert s.phase is Phase.DONE and s.output == Settings()


def test_in_tool_mode_a_text_reply_is_validated_as_the_output_type() -> None:
    m = tool_mode(output_retries=1)
    s = after(m, m.start("q"), reply('{"city": "Lima", "country": "Peru"}')).snapshot
    assert s.phase is Phase.DONE and s.output == City(city="Lima", country="Peru")
    retried = after(m, m.start("q"), reply("Lima, Peru")).snapshot
    assert retried.phase is Phase.PLANNING
    last = retried.conversation.messages[-1]
    assert isinstance(last, UserMessage) and last.content.startswith("Your previous reply was not accepted: ")
    assert last.content.endswith(f" (give the final answer by calling the {OUTPUT_TOOL} tool). Reply again.")


def test_in_tool_mode_a_reply_calling_other_tools_only_runs_them() -> None:
    m = tool_mode()
    step = after(m, m.start("q"), reply(None, call("lookup", "a", q="x")))
    assert step.snapshot.phase is Phase.EXECUTING
    (effect,) = step.effects
    assert isinstance(effect, RunTools) and [c.id for c in effect.calls] == ["a"]


# -- the output tool guards where an agent has no output tool -------------------------------------
def test_without_an_output_tool_a_call_named_final_result_is_an_ordinary_tool_call() -> None:
    """No agent has the output tool: at the step budget, such a call fails the run like any other."""
    m = Agent("a", tools=[lookup], max_steps=1).machine
    s = after(m, m.start("q"), reply(None, call(OUTPUT_TOOL, "c", city="x"))).snapshot
    assert s.phase is Phase.FAILED and s.failure is not None and s.failure.kind == "budget_exhausted"


def test_an_agent_without_the_output_tool_runs_a_final_result_call_even_if_another_agent_has_it() -> None:
    finder = Agent("finder", output_type=City, output_mode="tool", description="finds cities")
    m = Agent("desk", tools=[lookup], handoffs=[finder]).machine
    step = after(m, m.start("q"), reply(None, call(OUTPUT_TOOL, "c", city="Lima", country="Peru")))
    assert step.snapshot.phase is Phase.EXECUTING and step.snapshot.output is None
    (effect,) = step.effects
    assert isinstance(effect, RunTools) and [c.name for c in effect.calls] == [OUTPUT_TOOL]


# -- output functions -----------------------------------------------------------------------------
def test_a_text_reply_to_an_agent_with_an_output_function_is_sent_back_naming_it() -> None:
    m = Agent("a", output_type=count, output_retries=1).machine
    s = after(m, m.start("q"), reply("3")).snapshot
    assert s.phase is Phase.PLANNING
    assert s.conversation.messages[-1] == UserMessage(
        content="Your previous reply was not accepted: a reply is not the final answer here: "
        "call the count tool, whose result is the answer. Reply again."
    )


def results_of(m: AgentMachine, *results: ToolResult) -> Step:
    """A reply calling each result's tool, then those results: the step after OBSERVING."""
    calls = [ToolCall(id=r.call_id, name=r.name, arguments="{}") for r in results]
    step = after(m, m.start("q"), reply(None, *calls))
    assert step.snapshot.phase is Phase.EXECUTING
    return m.step(step.snapshot, ToolsFinished(results=results))


def test_the_run_ends_with_the_first_valid_result_of_the_output_function_even_a_falsy_one() -> None:
    m = Agent("a", output_type=count, tools=[lookup], max_steps=3).machine
    step = results_of(
        m,
        ToolResult(call_id="1", name="lookup", ok=True, content="5"),  # another tool's result validates too
        ToolResult(call_id="2", name="count", ok=False, error="boom"),
        ToolResult(call_id="3", name="count", ok=True, content="many"),  # does not validate as int
        ToolResult(call_id="4", name="count", ok=True, content="0"),
        ToolResult(call_id="5", name="count", ok=True, content="7"),
    )
    assert step.snapshot.phase is Phase.DONE and step.effects == ()
    assert step.snapshot.output == 0 and type(step.snapshot.output) is int


def test_without_a_valid_result_of_the_output_function_the_model_is_called_again() -> None:
    m = Agent("a", output_type=count, tools=[lookup], max_steps=3).machine
    for results in (
        (ToolResult(call_id="1", name="count", ok=False, error="boom"),),
        (ToolResult(call_id="1", name="count", ok=True, content="many"),),
        (ToolResult(call_id="1", name="lookup", ok=True, content="5"),),
    ):
        step = results_of(m, *results)
        assert step.snapshot.phase is Phase.PLANNING and step.snapshot.output is None
        assert isinstance(step.effects[0], CallModel)


# -- output guardrails --------------------------------------------------------------------------
def test_a_valid_answer_of_an_agent_with_output_guardrails_is_checked_before_done() -> None:
    m = Agent("a", output_guardrails=[trips]).machine
    step = after(m, m.start("q"), reply("the answer"))
    assert step.snapshot.phase is Phase.EXECUTING and step.snapshot.output == "the answer"
    (effect,) = step.effects
    assert isinstance(effect, CheckOutput) and effect.output == "the answer" and effect.guardrails == ("trips",)
    plain = Agent("a").machine
    assert after(plain, plain.start("q"), reply("the answer")).snapshot.phase is Phase.DONE


# -- the testing kit's hints ----------------------------------------------------------------------
def test_output_tool_type_is_the_output_type_only_with_the_output_tool() -> None:
    assert tool_mode().output_tool_type("finder") is City
    assert Agent("a", output_type=City).machine.output_tool_type("a") is None  # native mode
    assert Agent("a").machine.output_tool_type("a") is None


def test_output_function_of_names_the_function_and_its_return_type() -> None:
    assert Agent("a", output_type=count).machine.output_function_of("a") == ("count", int)
    assert Agent("a", output_type=City).machine.output_function_of("a") is None  # a type, no function
    assert Agent("a").machine.output_function_of("a") is None

    def say(text: str) -> str:
        """Say it."""
        return text

    said = Agent("a", output_type=say)
    assert said.output_function is not None and said.output_type is None
    assert said.machine.output_function_of("a") is None  # returns text
