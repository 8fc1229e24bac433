"""Behaviour of the state models that mutation testing (`make mutation`, docs/mutation.md) checks:
the fast construction and copy paths against pydantic's own, usage arithmetic, phases, snapshot
moves, names, and how a run's input is normalised and refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from fsm_agents import InvalidInput
from fsm_agents.log import PersistentLog
from fsm_agents.state import (
    AssistantMessage,
    Conversation,
    EmptyContext,
    Failure,
    Frozen,
    MessageLog,
    ModelRequest,
    Phase,
    Snapshot,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolResult,
    ToolSpec,
    Usage,
    UserMessage,
    fields_set,
    is_valid_name,
    messages_from,
)


# -- fast construction and copies ------------------------------------------------------------------
def test_model_construct_fills_defaults_and_factories_like_validation() -> None:
    built = ModelRequest.model_construct(agent="a")
    assert built == ModelRequest(agent="a")
    assert built.model_fields_set == set(ModelRequest.model_fields)
    assert list(built.messages) == [] and built.tool_choice == "auto" and built.output_schema_json is None
    result = ToolResult.model_construct(call_id="c", name="t", ok=True)
    assert (result.content, result.error, result.duration_ms, result.attempts) == ("", None, 0.0, 1)
    full = ToolResult.model_construct(call_id="c", name="t", ok=False, content="x", error="e", duration_ms=1.5, attempts=2)
    assert full == ToolResult(call_id="c", name="t", ok=False, content="x", error="e", duration_ms=1.5, attempts=2)


def test_model_copy_applies_updates_to_a_copy_and_deep_copies_on_request() -> None:
    call = ToolCall(id="1", name="t", arguments='{"a": 1}')
    message = AssistantMessage(content="hi", tool_calls=(call,))
    renamed = message.model_copy(update={"agent": "bob"})
    assert (renamed.agent, renamed.content, renamed.tool_calls) == ("bob", "hi", (call,))
    assert message.agent is None  # the original is unchanged
    assert message.model_copy() == message and message.model_copy(update={}) == message
    deep = message.model_copy(deep=True)
    assert deep == message and deep.tool_calls[0] is not call
    deep_updated = message.model_copy(update={"content": "bye"}, deep=True)
    assert deep_updated.content == "bye" and deep_updated.tool_calls == (call,)


# -- usage, results, phases ------------------------------------------------------------------------
def test_usage_adds_field_by_field_and_nothing_is_the_identity() -> None:
    a = Usage(input_tokens=3, output_tokens=5, requests=1)
    b = Usage(input_tokens=10, output_tokens=1, requests=2)
    assert a + b == Usage(input_tokens=13, output_tokens=6, requests=3)
    assert (a + Usage()) is a and (Usage() + b) is b
    assert not Usage() and Usage(input_tokens=1) and Usage(output_tokens=1) and Usage(requests=1)


def test_a_results_text_is_its_content_or_its_error() -> None:
    assert ToolResult(call_id="1", name="t", ok=True, content="42").text == "42"
    assert ToolResult(call_id="1", name="t", ok=False, content="42", error="boom").text == "Error: boom"


@pytest.mark.parametrize("phase", list(Phase))
def test_only_done_and_failed_are_final(phase: Phase) -> None:
    assert phase.is_final == (phase in (Phase.DONE, Phase.FAILED))
    s = Snapshot[EmptyContext](machine="m", phase=phase, conversation=Conversation(), data=EmptyContext())
    assert s.is_final == phase.is_final


def test_a_move_counts_a_step_and_an_evolution_does_not() -> None:
    s = Snapshot[EmptyContext](machine="m", phase=Phase.PLANNING, conversation=Conversation(), data=EmptyContext(), step=4)
    failure = Failure(kind="model_error", message="x")
    moved = s.moved(Phase.FAILED, failure=failure)
    assert (moved.phase, moved.step, moved.failure, moved.machine) == (Phase.FAILED, 5, failure, "m")
    assert (s.phase, s.step, s.failure) == (Phase.PLANNING, 4, None)
    assert s.moved(Phase.EXECUTING).step == 5
    evolved = s.evolve(agent="a")
    assert (evolved.phase, evolved.step, evolved.agent) == (Phase.PLANNING, 4, "a") and s.agent is None


def test_conversations_and_specs_have_their_documented_defaults() -> None:
    c = Conversation.of(UserMessage(content="hi"))
    assert c.id == "conversation" and len(c) == 1 and len(Conversation()) == 0
    longer = c.append(UserMessage(content="more"), UserMessage(content="again"))
    assert len(longer) == 3 and len(c) == 1 and longer.id == "conversation"
    assert Conversation.of(id="x").id == "x"
    assert ToolSpec(name="t").parameters == {"type": "object", "properties": {}}
    assert ToolCall(id="1", name="t").parsed() == {}


# -- names -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("a", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("A-z_0", True),
        ("a b", False),
        ("é", False),
        ("a.b", False),
        (None, False),
        (7, False),
        ("a\n", False),
    ],
)
def test_names_are_1_to_64_ascii_letters_digits_underscores_or_dashes(name: Any, valid: bool) -> None:
    assert is_valid_name(name) is valid


# -- run input -------------------------------------------------------------------------------------
def test_every_documented_input_shape_becomes_messages() -> None:
    user = UserMessage(content="hi")
    assert messages_from("hi") == (user,)
    assert messages_from(user) == (user,)
    assert messages_from({"role": "user", "content": "hi"}) == (user,)
    system = SystemMessage(content="be brief")
    assert messages_from([system, {"role": "user", "content": "hi"}]) == (system, user)
    assert messages_from(m for m in (user, user)) == (user, user)
    call = ToolCall(id="c1", name="t")
    answered = [AssistantMessage(tool_calls=(call,)), ToolMessage(tool_call_id="c1", name="t", content="ok")]
    assert messages_from(answered) == tuple(answered)
    earlier = [AssistantMessage(tool_calls=(call,)), UserMessage(content="never mind")]
    assert messages_from(earlier) == tuple(earlier)  # only a trailing call must be answered
    assert messages_from([]) == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, r"^input must be a str, a message or a list of messages, not NoneType: None$"),
        (3, r"^input must be a str, a message or a list of messages, not int: 3$"),
        (b"hi", r"^input must be a str, a message or a list of messages, not bytes: b'hi'$"),
        (bytearray(b"x"), r"not bytearray: bytearray\(b'x'\)$"),
        (memoryview(b"x"), r"not memoryview: <memory at "),
        ({"role": "robot"}, r"^the input is not a message \(.+\), e\.g\. \{'role': 'user', 'content': '\.\.\.'\}$"),
        (
            [UserMessage(content="hi"), {"role": "user"}],
            r"^input message 1 is not a message \(user\.content: Field required\)",
        ),
        ([5], r"^input message 0 is not a message \(value: Input should be a valid dictionary or object to extract"),
        (
            [{"role": "user", "extra": 1}],
            r"^input message 0 is not a message \(user\.content: Field required; user\.extra: Extra inputs are not "
            r"permitted\)",
        ),
    ],
)
def test_inputs_that_are_not_messages_are_refused_with_what_was_given(value: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        messages_from(value)


def test_a_long_or_unprintable_input_is_shown_shortened() -> None:
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    with pytest.raises(InvalidInput, match=r"not Unprintable: <Unprintable>$"):
        messages_from(Unprintable())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as info:
        messages_from(10**200)  # type: ignore[arg-type]
    assert str(info.value).endswith(": " + repr(10**200)[:80])


def test_a_trailing_tool_call_left_unanswered_is_refused_naming_the_calls() -> None:
    calls = (ToolCall(id="c1", name="t"), ToolCall(id="c2", name="t"), ToolCall(id="c3", name="t"))
    partly = [
        UserMessage(content="go"),
        AssistantMessage(tool_calls=calls),
        ToolMessage(tool_call_id="c2", name="t", content="ok"),
    ]
    with pytest.raises(InvalidInput) as info:
        messages_from(partly)
    assert str(info.value) == (
        "input message 1 is an assistant message whose tool call(s) c1, c3 are not answered: end the input with "
        "a ToolMessage(tool_call_id=...) for each call, or drop the calls"
    )
    with pytest.raises(InvalidInput, match=r"^input message 0 is an assistant message whose tool call\(s\) c1, c2, c3"):
        messages_from(AssistantMessage(tool_calls=calls))


# -- models defined now (a class's fast-path info and pydantic schema are built once per class:
# -- for the shipped models at import time, so these tests define their own) ----------------------
def test_a_new_frozen_model_constructs_with_its_defaults_factories_and_required_fields() -> None:
    class Record(Frozen):
        name: str
        count: int = 3
        tags: tuple[str, ...] = Field(default_factory=tuple)
        notes: list[str] = Field(default_factory=list)

    built = Record.model_construct(name="a")
    assert built == Record(name="a") and built.model_fields_set == {"name", "count", "tags", "notes"}
    assert (built.count, built.tags, built.notes) == (3, (), [])
    assert Record.model_construct(name="b").notes is not built.notes  # a factory runs per instance
    full = Record.model_construct(name="c", count=1, tags=("x",), notes=["n"])
    assert (full.name, full.count, full.tags, full.notes) == ("c", 1, ("x",), ["n"])
    assert full.model_copy(update={"count": 2}).count == 2 and full.count == 1


def test_a_new_model_with_a_message_log_validates_and_dumps_it_as_a_list() -> None:
    class Transcript(Frozen):
        messages: MessageLog = Field(default_factory=PersistentLog)

    given = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "assistant", "tool_calls": [{"id": "1", "name": "t"}]},
        {"role": "tool", "tool_call_id": "1", "name": "t", "content": "ok"},
    ]
    t = Transcript.model_validate({"messages": given})
    assert isinstance(t.messages, PersistentLog)
    assert list(t.messages)[:2] == [UserMessage(content="hi"), AssistantMessage(content="hello")]
    call = {"id": "1", "name": "t", "arguments": "{}"}
    as_json = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "tool_calls": [], "agent": None},
            {"role": "assistant", "content": None, "tool_calls": [call], "agent": None},
            {"role": "tool", "tool_call_id": "1", "name": "t", "content": "ok", "is_error": False},
        ]
    }
    assert t.model_dump(mode="json") == as_json
    assert t.model_dump() == as_json  # the log dumps its messages in their JSON form in Python mode too
    assert Transcript.model_validate_json(t.model_dump_json()) == t
    log = PersistentLog([UserMessage(content="x")])
    assert Transcript(messages=log).messages is log  # a log is taken as it is
    with pytest.raises(ValidationError):
        Transcript.model_validate({"messages": [{"role": "robot"}]})


# -- what the fast paths build is what validation builds -------------------------------------------
def test_objects_built_on_the_fast_paths_report_the_fields_set_of_their_validated_twins() -> None:
    """`model_fields_set` (and so `model_dump(exclude_unset=True)`) of every object the fast paths
    build equals that of the same object built by validation with every field given."""
    hi = UserMessage(content="hi")
    built = {
        "of": Conversation.of(hi, id="c"),
        "append": Conversation.of(id="c").append(hi),
        "input": messages_from("hi")[0],
        "usage": Usage(input_tokens=1) + Usage(output_tokens=2, requests=1),
        "construct": ToolResult.model_construct(call_id="c", name="t", ok=True),
    }
    twins = {
        "of": Conversation(id="c", messages=PersistentLog([hi])),
        "append": Conversation(id="c", messages=PersistentLog([hi])),
        "input": UserMessage(role="user", content="hi"),
        "usage": Usage(input_tokens=1, output_tokens=2, requests=1),
        "construct": ToolResult(call_id="c", name="t", ok=True, content="", error=None, duration_ms=0.0, attempts=1),
    }
    for key, obj in built.items():
        assert obj == twins[key], key
        assert obj.model_fields_set == twins[key].model_fields_set, key
        assert obj.model_dump(exclude_unset=True) == twins[key].model_dump(exclude_unset=True), key
    assert fields_set(UserMessage) == {"role", "content"}
    assert fields_set(ToolCall) == {"id", "name", "arguments"}


def test_a_conversation_dumps_its_messages_in_their_json_form_in_python_mode_too() -> None:
    """The message log serializes as a list of JSON-form messages whichever dump mode is asked
    for, so a Python-mode dump equals the decoded JSON dump."""
    calls = (ToolCall(id="1", name="t", arguments='{"a": 1}'),)
    c = Conversation.of(
        UserMessage(content="go"),
        AssistantMessage(tool_calls=calls, agent="a"),
        ToolMessage(tool_call_id="1", name="t", content="ok", is_error=True),
    )
    dumped = c.model_dump()
    assert dumped == json.loads(c.model_dump_json())
    assert dumped["messages"][1]["tool_calls"] == [{"id": "1", "name": "t", "arguments": '{"a": 1}'}]
    assert Conversation.model_validate(dumped) == c


def test_a_tool_message_before_the_call_does_not_answer_it() -> None:
    early = [
        ToolMessage(tool_call_id="c1", name="t", content="too early"),
        AssistantMessage(tool_calls=(ToolCall(id="c1", name="t"),)),
    ]
    with pytest.raises(InvalidInput, match=r"^input message 1 is an assistant message whose tool call\(s\) c1 are"):
        messages_from(early)
    answered = [*early, ToolMessage(tool_call_id="c1", name="t", content="ok")]
    assert messages_from(answered) == tuple(answered)


def test_a_frozen_model_with_an_alias_is_refused_by_the_fast_paths() -> None:
    class Aliased(Frozen):
        name: str = Field(alias="Name")

    with pytest.raises(TypeError, match=r"^Aliased\.name: aliases are not supported by Frozen's fast paths$"):
        Aliased.model_construct(name="x")

    class Same(Frozen):
        name: str = Field(alias="name")

    assert Same.model_construct(name="x").name == "x"


def test_a_copy_is_shallow_and_counts_updated_fields_as_set_as_pydantic_does() -> None:
    """`model_copy` shares the values it does not update, and its fields set is pydantic's:
    the original's plus the updated names."""
    call = ToolCall(id="1", name="t")
    message = AssistantMessage(content="hi", tool_calls=(call,))
    assert message.model_copy().tool_calls is message.tool_calls
    assert message.model_copy().model_fields_set == {"content", "tool_calls"}
    renamed = message.model_copy(update={"agent": "b"})
    assert renamed.model_fields_set == {"content", "tool_calls", "agent"}
    assert renamed.model_fields_set == BaseModel.model_copy(message, update={"agent": "b"}).model_fields_set
    assert message.model_copy(update={"content": "x"}).model_fields_set == {"content", "tool_calls"}
    assert message.model_fields_set == {"content", "tool_calls"}  # the original's set is not changed


def test_a_snapshots_moves_and_evolutions_count_changed_fields_as_set_as_model_copy_does() -> None:
    """The fields set of `evolve(**changes)` and `moved(phase, **changes)` is what pydantic's
    `model_copy(update=...)` gives for the same changes, so an `exclude_unset` dump keeps them."""
    s = Snapshot[EmptyContext](machine="m", phase=Phase.PLANNING, conversation=Conversation(), data=EmptyContext())
    assert s.model_fields_set == {"machine", "phase", "conversation", "data"}
    evolved = s.evolve(agent="a")
    assert evolved.model_fields_set == BaseModel.model_copy(s, update={"agent": "a"}).model_fields_set
    assert evolved.model_fields_set == {"machine", "phase", "conversation", "data", "agent"}
    assert s.evolve(phase=Phase.DONE).model_fields_set == s.model_fields_set
    moved = s.moved(Phase.DONE, output="x")
    twin = BaseModel.model_copy(s, update={"phase": Phase.DONE, "step": 1, "output": "x"})
    assert moved == twin and moved.model_fields_set == twin.model_fields_set
    assert moved.model_dump(exclude_unset=True)["output"] == "x"
    assert s.moved(Phase.EXECUTING).model_fields_set == {"machine", "phase", "conversation", "data", "step"}
    assert s.model_fields_set == {"machine", "phase", "conversation", "data"}  # the original's set is not changed
    full = s.model_construct(**dict(s))
    assert full.moved(Phase.DONE, output="y").model_fields_set is full.model_fields_set  # nothing new to add
