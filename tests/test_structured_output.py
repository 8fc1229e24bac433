"""Structured output (issue 15, item 2): `output_type` of any type pydantic validates, delivered
natively, as the output tool `final_result`, or in the prompt (docs/architecture.md, Structured
output)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

import pytest
from cassette import replay
from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict

from fsm_agents import Agent, ScriptedModel, run, tool
from fsm_agents.agent import guided_tool_choice
from fsm_agents.errors import InvalidDefinition
from fsm_agents.events import CallModel, ModelReplied
from fsm_agents.models import OpenAIChat, call, reply
from fsm_agents.output import OUTPUT_TOOL, FrozenDict, output_spec
from fsm_agents.runtime import resume
from fsm_agents.state import AssistantMessage, Phase, ToolCall, ToolMessage, UserMessage
from fsm_agents.store import SQLiteStore
from fsm_agents.store import replay as replay_store
from fsm_agents.testing import history_problems


class City(BaseModel):
    model_config = ConfigDict(frozen=True)
    city: str
    country: str


class Cat(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["dog"]
    good: bool


class Point(TypedDict):
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Span:
    start: int
    end: int


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def replied(message: AssistantMessage | str) -> ModelReplied:
    return ModelReplied(message=AssistantMessage(content=message) if isinstance(message, str) else message)


def finish(agent: Agent, answer: AssistantMessage | str) -> Any:
    m = agent.machine
    return m.step(m.start("q").snapshot, replied(answer)).snapshot


# -- any type -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output_type", "answer", "expected"),
    [
        (list[str], '{"response": ["a", "b"]}', ("a", "b")),
        (list[str], '["a", "b"]', ("a", "b")),  # the bare value, without the wrapper, is accepted too
        (int, '{"response": 42}', 42),
        (int, "42", 42),
        (dict[str, float], '{"response": {"x": 1.5}}', {"x": 1.5}),
        (Literal["yes", "no"], '{"response": "no"}', "no"),
        (Cat | Dog, '{"response": {"kind": "dog", "good": true}}', Dog(kind="dog", good=True)),
        (Point, '{"x": 1, "y": 2}', {"x": 1, "y": 2}),
        (Span, '{"start": 1, "end": 3}', Span(1, 3)),
        (City, '```json\n{"city": "Paris", "country": "France"}\n```', City(city="Paris", country="France")),
        (list[City], '{"response": [{"city": "Lima", "country": "Peru"}]}', (City(city="Lima", country="Peru"),)),
    ],
)
def test_any_type_pydantic_validates_is_an_output_type(output_type: Any, answer: str, expected: Any) -> None:
    s = finish(Agent("a", output_type=output_type), answer)
    assert s.phase is Phase.DONE and s.output == expected
    hash(s)  # the snapshot stays hashable: containers are frozen


def test_containers_come_back_frozen_so_no_mutable_value_is_reachable_from_the_snapshot() -> None:
    s = finish(Agent("a", output_type=dict[str, list[int]]), '{"response": {"x": [1, 2]}}')
    assert isinstance(s.output, FrozenDict) and s.output == {"x": (1, 2)}
    with pytest.raises(TypeError, match="immutable"):
        s.output["y"] = (3,)
    with pytest.raises(TypeError, match="immutable"):
        s.output.update(y=(3,))
    assert json.loads(s.model_dump_json())["output"] == {"x": [1, 2]}
    assert hash(s.output) == hash(FrozenDict({"x": (1, 2)}))


def test_a_non_object_type_is_sent_wrapped_and_a_model_as_it_is() -> None:
    """OpenAI's json_schema response format and tool parameters need an object at the root, so
    a list, a number, a union... is sent as `{"response": <type>}` (as pydantic-ai does)."""
    wrapped = json.loads(output_spec(list[str]).schema_json)
    assert wrapped["type"] == "object" and wrapped["required"] == ["response"]
    assert wrapped["properties"]["response"] == {"items": {"type": "string"}, "title": "Response", "type": "array"}
    union = json.loads(output_spec(Cat | Dog).schema_json)
    assert union["type"] == "object" and set(union["$defs"]) == {"Cat", "Dog"}
    plain = json.loads(output_spec(City).schema_json)
    assert plain["title"] == "City" and set(plain["properties"]) == {"city", "country"}
    for model_like in (Point, Span):  # a TypedDict and a dataclass are objects already
        assert not output_spec(model_like).wrapped and json.loads(output_spec(model_like).schema_json)["type"] == "object"
    request = Agent("a", output_type=list[str]).machine.start("q").effects[0].request  # type: ignore[attr-defined]
    assert json.loads(request.output_schema_json) == wrapped and not request.tools


def test_an_invalid_answer_of_a_wrapped_type_says_where_it_is_wrong() -> None:
    m = Agent("a", output_type=list[int]).machine
    s1 = m.step(m.start("q").snapshot, replied('{"response": [1, "x"]}')).snapshot
    feedback = s1.conversation.messages[-1]
    assert s1.phase is Phase.PLANNING and isinstance(feedback, UserMessage)
    assert "does not match list[int]" in feedback.content and "response.1" in feedback.content


class Loose(BaseModel):
    x: int


@dataclasses.dataclass
class LooseSpan:
    start: int


class Opaque:
    pass


@pytest.mark.parametrize(
    ("output_type", "message"),
    [
        (Loose, "output_type Loose: Loose is not frozen"),
        (list[Loose], r"output_type list\[.*Loose\]: Loose is not frozen"),
        (LooseSpan | int, "LooseSpan is not frozen"),
        (Opaque, "output_type Opaque: pydantic cannot validate it"),
        (list[Opaque], "pydantic cannot validate it"),
    ],
)
def test_an_output_type_that_cannot_be_kept_or_schemed_is_rejected_at_definition(output_type: Any, message: str) -> None:
    with pytest.raises(InvalidDefinition, match=message):
        Agent("a", output_type=output_type)


def test_str_output_type_is_plain_text() -> None:
    s = finish(Agent("a", output_type=str), "just text")
    assert s.output == "just text"


@pytest.mark.anyio
async def test_a_list_output_persisted_to_sqlite_loads_and_resumes_equal(tmp_path: Path, anyio_backend: str) -> None:
    from fsm_agents.patterns import Sequential

    store = SQLiteStore(str(tmp_path / "runs.db"))
    agent = Agent("lister", model=ScriptedModel(['{"response": ["a", "b"]}']), output_type=list[str])
    done = await run(agent, "list", store=store, conversation_id="c")
    assert done.output == ("a", "b")
    again = await resume("c", agent, store=store)
    assert again.output == done.output and again.snapshot == done.snapshot
    assert replay_store(store, "c", agent).verified
    # a child's dict output crosses the log as an AgentsFinished outcome: it loads back frozen
    scores = Agent("scores", model=ScriptedModel(['{"response": {"x": [1.5]}}']), output_type=dict[str, list[float]])
    pipe = Sequential("pipe", [Agent("w", model=ScriptedModel(["draft"])), scores])
    done = await run(pipe, "go", store=store, conversation_id="p")
    loaded = await resume("p", pipe, store=store)
    assert type(loaded.output) is FrozenDict and loaded.output == {"x": (1.5,)} and loaded.snapshot == done.snapshot
    hash(loaded.snapshot)


# -- output_mode ------------------------------------------------------------------------------------
def test_prompt_mode_puts_the_schema_in_the_instructions_and_native_sends_it() -> None:
    prompt = Agent("a", "Be brief.", output_type=City, output_mode="prompt").machine.start("q").effects[0]
    assert isinstance(prompt, CallModel)
    assert prompt.request.output_schema_json is None and prompt.request.instructions.startswith("Be brief.\n\n")
    assert '"country"' in prompt.request.instructions
    native = Agent("a", output_type=City).machine.start("q").effects[0]
    assert isinstance(native, CallModel) and native.request.output_schema_json == output_spec(City).schema_json


def tool_agent(**kwargs: Any) -> Agent:
    return Agent("a", output_type=City, output_mode="tool", **kwargs)


def test_tool_mode_offers_final_result_with_the_schema_and_its_call_is_the_answer() -> None:
    m = tool_agent(tools=[add]).machine
    request = m.start("q").effects[0].request  # type: ignore[attr-defined]
    assert [t.name for t in request.tools] == ["add", OUTPUT_TOOL] and request.output_schema_json is None
    assert request.tools[1].parameters == json.loads(output_spec(City).schema_json)
    step = m.step(
        m.start("q").snapshot,
        replied(reply(None, call("add", "c1", a=1, b=2), call(OUTPUT_TOOL, "c2", city="Paris", country="France"))),
    )
    s = step.snapshot
    assert s.phase is Phase.DONE and s.output == City(city="Paris", country="France") and not step.effects
    *_, first, second = s.conversation.messages
    assert isinstance(first, ToolMessage) and first.is_error and "not executed" in first.content
    assert isinstance(second, ToolMessage) and not second.is_error and second.tool_call_id == "c2"
    assert history_problems(s.conversation) == []


def test_tool_mode_invalid_arguments_are_fed_back_as_the_tools_result_then_fail() -> None:
    m = tool_agent(output_retries=1).machine
    bad = reply(None, call(OUTPUT_TOOL, "c1", city="Paris"))
    s1 = m.step(m.start("q").snapshot, replied(bad))
    assert s1.snapshot.phase is Phase.PLANNING and isinstance(s1.effects[0], CallModel)
    result = s1.snapshot.conversation.messages[-1]
    assert isinstance(result, ToolMessage) and result.is_error and result.tool_call_id == "c1"
    assert "country" in result.content and f"Call {OUTPUT_TOOL} again" in result.content
    s2 = m.step(s1.snapshot, replied(reply(None, call(OUTPUT_TOOL, "c2", city=3, country="x"))))
    failure = s2.snapshot.failure
    assert s2.snapshot.phase is Phase.FAILED and failure is not None and failure.kind == "invalid_output"
    assert failure.detail == '{"city": 3, "country": "x"}'
    assert history_problems(s2.snapshot.conversation) == []


def test_tool_mode_text_answer_is_fed_back_asking_for_the_tool_unless_it_validates() -> None:
    s = finish(tool_agent(), "Paris.")
    assert s.phase is Phase.PLANNING and OUTPUT_TOOL in s.conversation.messages[-1].content
    assert finish(tool_agent(), '{"city": "Paris", "country": "France"}').output == City(city="Paris", country="France")


def test_tool_mode_output_call_on_the_last_step_is_the_answer_not_a_budget_failure() -> None:
    m = tool_agent(tools=[add], max_steps=1).machine
    s = m.step(m.start("q").snapshot, replied(reply(None, call(OUTPUT_TOOL, "c", city="Lima", country="Peru")))).snapshot
    assert s.phase is Phase.DONE and s.output == City(city="Lima", country="Peru")


def test_tool_mode_output_call_wins_over_a_handoff_in_the_same_reply() -> None:
    other = Agent("b")
    m = tool_agent(handoffs=[other]).machine
    message = reply(None, call("transfer_to_b", "h"), call(OUTPUT_TOOL, "c", city="Lima", country="Peru"))
    s = m.step(m.start("q").snapshot, replied(message)).snapshot
    assert s.phase is Phase.DONE and s.agent == "a" and history_problems(s.conversation) == []


def test_tool_mode_keeps_the_output_tool_reachable_when_the_choice_says_none() -> None:
    assert tool_agent(tool_choice="none").machine.start("q").effects[0].request.tool_choice == OUTPUT_TOOL  # type: ignore[attr-defined]
    m = tool_agent(tools=[add], tool_choice=guided_tool_choice("add")).machine
    s0 = m.start("q")
    assert s0.effects[0].request.tool_choice == "add"  # type: ignore[attr-defined]
    asked = m.step(s0.snapshot, replied(reply(None, call("add", "c", a=1, b=2))))
    from fsm_agents.events import ToolsFinished
    from fsm_agents.state import ToolResult

    observed = m.step(asked.snapshot, ToolsFinished(results=(ToolResult(call_id="c", name="add", ok=True, content="3"),)))
    assert observed.effects[0].request.tool_choice == OUTPUT_TOOL  # type: ignore[attr-defined]


def test_a_tool_named_final_result_beside_the_output_tool_is_rejected() -> None:
    @tool
    def final_result(x: int) -> int:
        """Clash."""
        return x

    with pytest.raises(InvalidDefinition, match="output_mode='tool'"):
        tool_agent(tools=[final_result])
    Agent("a", tools=[final_result])  # without an output tool the name is free


@pytest.mark.anyio
async def test_recorded_exchange_calling_the_output_tool_ends_in_done_with_one_model_call(anyio_backend: str) -> None:
    """The recorded Ollama (gpt-oss:20b) exchange of tests/data/cassettes/openai_compatible/
    ollama_chat_tool_call.yaml: its second reply calls `final_result`. Served as the first reply,
    it is the final answer: DONE, one model call, no "unknown tool" round trip."""
    rec = replay("openai_compatible/ollama_chat_tool_call.yaml")
    rec.interactions.pop(0)  # start at the reply that calls the output tool
    model = OpenAIChat("gpt-oss:20b", "https://ollama.com/v1", transport=rec.transport())
    agent = Agent("a", model=model, output_type=City, output_mode="tool")
    result = await run(agent, "What is the capital of France?")
    assert result.phase is Phase.DONE and result.output == City(city="Paris", country="France")
    assert result.usage.requests == 1 and len(rec.sent) == 1
    sent = rec.sent_json[0]
    assert sent["tools"][0]["function"]["name"] == OUTPUT_TOOL and sent["tool_choice"] == "auto"
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["city", "country"]
    assert "response_format" not in sent


@pytest.mark.anyio
async def test_recorded_exchange_text_first_is_fed_back_then_the_output_tool_ends_it(anyio_backend: str) -> None:
    """The whole recorded exchange: a text answer ("Paris.") is not accepted in tool mode and is
    fed back; the model then calls `final_result`: DONE after two model calls."""
    rec = replay("openai_compatible/ollama_chat_tool_call.yaml")
    model = OpenAIChat("gpt-oss:20b", "https://ollama.com/v1", transport=rec.transport())
    agent = Agent("a", model=model, output_type=City, output_mode="tool")
    result = await run(agent, "What is the capital of France?")
    assert result.phase is Phase.DONE and result.output == City(city="Paris", country="France")
    assert result.usage.requests == 2
    feedback = rec.sent_json[1]["messages"][-1]
    assert feedback["role"] == "user" and OUTPUT_TOOL in feedback["content"]
    last = result.snapshot.conversation.messages[-1]
    assert isinstance(last, ToolMessage) and last.tool_call_id == "call_o2vnpxrw" and not last.is_error


def test_output_tool_call_ids_are_attributed_like_any_call() -> None:
    """Duplicate ids in an output-tool reply are renumbered, and the results pair with them."""
    message = AssistantMessage(
        tool_calls=(
            ToolCall(id="x", name=OUTPUT_TOOL, arguments='{"city": "A", "country": "B"}'),
            ToolCall(id="x", name="add", arguments="{}"),
        )
    )
    s = finish(tool_agent(tools=[add]), message)
    assert s.phase is Phase.DONE and history_problems(s.conversation) == []


# -- output functions -----------------------------------------------------------------------------
class Density(BaseModel):
    model_config = ConfigDict(frozen=True)
    country: str
    people_per_km2: float


AREAS = {"Japan": (124_500_000, 377_975)}


def density(country: str) -> Density:
    """The population density of a country.

    Args:
        country: the country's English name.
    """
    population, area = AREAS[country]
    return Density(country=country, people_per_km2=round(population / area, 1))


def test_an_output_function_ends_the_run_with_its_return_value_not_the_models_words() -> None:
    m = Agent("analyst", output_type=density).machine
    request = m.start("q").effects[0].request  # type: ignore[attr-defined]
    assert [t.name for t in request.tools] == ["density"] and request.output_schema_json is None
    result = run_sync_with(m, [reply(None, call("density", "c1", country="Japan"))])
    assert result.phase is Phase.DONE and result.output == Density(country="Japan", people_per_km2=329.4)
    assert model_calls(result) == 1  # no model call after the function's result
    assert [t.target for t in result.trace][-3:] == [Phase.EXECUTING, Phase.OBSERVING, Phase.DONE]
    assert history_problems(result.snapshot.conversation) == []


def test_an_output_functions_error_is_fed_back_and_the_model_may_call_it_again() -> None:
    m = Agent("analyst", output_type=density, max_steps=3).machine
    result = run_sync_with(
        m, [reply(None, call("density", "c1", country="Atlantis")), reply(None, call("density", "c2", country="Japan"))]
    )
    assert result.phase is Phase.DONE and result.output.people_per_km2 == 329.4 and model_calls(result) == 2
    error = next(x for x in result.snapshot.conversation.messages if isinstance(x, ToolMessage))
    assert error.is_error and "Atlantis" in error.content


def test_a_text_reply_is_never_the_answer_of_an_agent_with_an_output_function() -> None:
    """Even JSON that would validate: the answer's values must come from the function."""
    m = Agent("analyst", output_type=density, output_retries=1).machine
    s1 = m.step(m.start("q").snapshot, replied('{"country": "Japan", "people_per_km2": 1.0}')).snapshot
    assert s1.phase is Phase.PLANNING and "call the density tool" in s1.conversation.messages[-1].content
    s2 = m.step(s1, replied("329.4")).snapshot
    assert s2.phase is Phase.FAILED and s2.failure is not None and s2.failure.kind == "invalid_output"


def test_an_output_function_needs_a_return_annotation_and_is_listed_once() -> None:
    def untyped(country: str):  # type: ignore[no-untyped-def]
        """No return annotation."""
        return country

    with pytest.raises(InvalidDefinition, match="output_type untyped is an output function: annotate what it returns"):
        Agent("a", output_type=untyped)
    with pytest.raises(InvalidDefinition, match="also in tools"):
        Agent("a", output_type=density, tools=[density])
    agent = Agent("a", output_type=tool(density), tool_choice="none")  # a Tool works too
    assert agent.output_type is Density and agent.machine.start("q").effects[0].request.tool_choice == "density"  # type: ignore[attr-defined]


def model_calls(result: Any) -> int:
    return sum(1 for e in result.events if isinstance(e, ModelReplied))


def run_sync_with(machine: Any, replies: list[AssistantMessage]) -> Any:
    from fsm_agents import run_sync

    return run_sync(machine, "How dense is Japan?", models={machine.entry.name: ScriptedModel(replies)})


def count(n: int) -> int:
    """Count.

    Args:
        n: a number.
    """
    return n


def test_check_machine_explores_output_functions_and_the_output_tool() -> None:
    """check_machine takes every transition of an agent with an output function (its results
    validate, or not) and of one with the output tool (its calls' arguments drawn valid and
    invalid), with all invariants holding."""
    from fsm_agents.testing import check_machine

    handoffs = {("PLANNING", "model_replied", "HANDOFF"), ("HANDOFF", "handed_off", "PLANNING")}  # no handoff here

    def uncovered(report: Any) -> set[tuple[str, str, str]]:
        return {(t.source, t.event, t.target) for t in report.uncovered}

    # an agent with an output function ends on its result only: a text reply is never its answer
    text_answer = {("PLANNING", "model_replied", "DONE")}
    report = check_machine(Agent("a", output_type=count, tools=[add], max_steps=3), max_examples=60, seed=3)
    assert ("OBSERVING", "observed", "DONE") in {(t.source, t.event, t.target) for t in report.declared}
    assert uncovered(report) <= handoffs | text_answer
    # a model returned: its results are drawn as Density values, so the run can end on one
    report = check_machine(Agent("c", output_type=density, max_steps=3), max_examples=60, seed=3)
    assert uncovered(report) <= handoffs | text_answer
    tool_mode = Agent("b", output_type=City, output_mode="tool", tools=[add], max_steps=3)
    report = check_machine(tool_mode, max_examples=60, seed=3)
    assert uncovered(report) <= handoffs
    assert report.guards["output_invalid"][0] > 0 and report.guards["output_invalid"][1] > 0


def test_handoffs_keep_each_agents_output_mode_and_output_function() -> None:
    from fsm_agents.patterns import Handoffs

    finder = Agent("finder", output_type=City, output_mode="tool", description="finds cities")
    analyst = Agent("analyst", output_type=density, description="computes densities")
    team = Handoffs("team", finder, [analyst], max_handoffs=3)
    assert OUTPUT_TOOL in [t.name for t in team.tool_specs("finder")]
    assert "density" in [t.name for t in team.tool_specs("analyst")]
    s = team.step(team.start("q").snapshot, replied(reply(None, call(OUTPUT_TOOL, "c", city="Lima", country="Peru"))))
    assert s.snapshot.phase is Phase.DONE and s.snapshot.output == City(city="Lima", country="Peru")


def test_annotated_constraints_hold_and_the_feedback_names_the_plain_type() -> None:
    from typing import Annotated

    from pydantic import Field

    m = Agent("a", output_type=Annotated[int, Field(gt=0)]).machine
    s = m.step(m.start("q").snapshot, replied('{"response": -1}')).snapshot
    assert s.phase is Phase.PLANNING
    assert "does not match int: response: Input should be greater than 0" in s.conversation.messages[-1].content
    assert finish(Agent("a", output_type=Annotated[int, Field(gt=0)]), "5").output == 5


def test_frozen_dict_pickles_prints_and_its_shape_is_checked_when_loaded() -> None:
    import pickle

    from fsm_agents.codec import json_shape, rebuilt
    from fsm_agents.errors import CodecError

    value = FrozenDict({"a": (1, FrozenDict({"b": 2}))})
    assert pickle.loads(pickle.dumps(value)) == value and type(pickle.loads(pickle.dumps(value))) is FrozenDict
    assert repr(FrozenDict({"a": 1})) == "FrozenDict({'a': 1})"
    shape = json_shape(value)
    assert shape == {"frozendict": {"a": {"tuple": [None, {"frozendict": {"b": None}}]}}}
    loaded = rebuilt(json.loads(json.dumps(value)), shape)
    assert loaded == value and type(loaded["a"][1]) is FrozenDict
    with pytest.raises(CodecError, match="frozendict"):
        rebuilt({"a": [1, {"b": 2}], "extra": 1}, shape)
    with pytest.raises(CodecError, match="frozendict"):
        rebuilt([1], shape)


def test_a_generic_server_without_instructions_gets_the_schema_as_a_first_system_message() -> None:
    from fsm_agents.state import ModelRequest

    schema = output_spec(City).schema_json
    request = ModelRequest(agent="a", messages=(UserMessage(content="x"),), output_schema_json=schema)
    messages = OpenAIChat("m", "http://127.0.0.1:9/v1").payload(request)["messages"]
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("Reply with only a JSON object")
    assert messages[1:] == [{"role": "user", "content": "x"}]
