"""State: the persistent log, frozen models, hashing, append-only conversations."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fsm_agents import AssistantMessage, Conversation, Phase, Snapshot, ToolCall, ToolMessage, UserMessage
from fsm_agents.agent import AgentData
from fsm_agents.log import PersistentLog
from fsm_agents.testing import strategies as fst

appends = st.lists(st.lists(st.integers(), max_size=40), max_size=60)


@settings(max_examples=500, deadline=None)  # a behaviour test: no per-example time limit (noisy CI hosts)
@given(appends, st.integers(0, 59))
def test_persistent_log_behaves_like_a_list_and_forks_do_not_interfere(batches: list[list[int]], fork_at: int) -> None:
    """Invariant: after any sequence of `append` batches, a PersistentLog has exactly the items of
    a list built the same way (len, iteration, positive and negative indexing, slicing, equality),
    and every earlier version — including one forked and extended separately — is unchanged."""
    log: PersistentLog[int] = PersistentLog()
    ref: list[int] = []
    versions: list[tuple[PersistentLog[int], list[int]]] = [(log, [])]
    for batch in batches:
        log = log.append(*batch)
        ref = ref + batch
        versions.append((log, ref))
    assert len(log) == len(ref) and list(log) == ref and log == ref and log == tuple(ref)
    assert all(log[i] == ref[i] and log[-i - 1] == ref[-i - 1] for i in range(len(ref)))
    assert log[2:7] == tuple(ref[2:7])
    base, base_ref = versions[min(fork_at, len(versions) - 1)]
    fork = base.append(-1, -2, -3)
    assert list(fork) == [*base_ref, -1, -2, -3]
    for version, expected in versions:
        assert list(version) == expected
        assert version.is_prefix_of(log)
    assert hash(log) == hash(PersistentLog(ref))


def test_persistent_log_index_errors_are_clear() -> None:
    log = PersistentLog([1, 2])
    with pytest.raises(IndexError, match="out of range for length 2"):
        log[2]


def test_conversation_append_shares_the_history() -> None:
    c1 = Conversation.of(UserMessage(content="hi"))
    for i in range(100):
        c1 = c1.append(UserMessage(content=str(i)))
    c2 = c1.append(AssistantMessage(content="ok"))
    assert len(c1) == 101 and len(c2) == 102
    # the first 96 items (three full leaves of 32) are the very same node objects
    assert c2.messages._root is c1.messages._root
    assert c2.messages[:101] == c1.messages[:]


def test_models_are_frozen_and_reject_unknown_fields() -> None:
    call = ToolCall(id="1", name="add", arguments='{"a": 1}')
    with pytest.raises(ValidationError):
        call.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        ToolCall(id="1", name="add", arguments="{}", colour="red")  # type: ignore[call-arg]


def test_tool_call_keeps_raw_arguments_and_parses_on_demand() -> None:
    assert ToolCall(id="1", name="f", arguments='{"a": [1, 2]}').parsed() == {"a": [1, 2]}
    bad = ToolCall(id="1", name="f", arguments='{"a": ')
    assert bad.arguments == '{"a": '
    with pytest.raises(json.JSONDecodeError):
        bad.parsed()


def test_snapshot_round_trips_through_json_and_hashes() -> None:
    conv = Conversation.of(
        UserMessage(content="q"),
        AssistantMessage(content=None, tool_calls=(ToolCall(id="c", name="f"),), agent="a"),
        ToolMessage(tool_call_id="c", name="f", content="1"),
        id="run-1",
    )
    snap = Snapshot[AgentData](
        machine="agent:a", phase=Phase.PLANNING, conversation=conv, agent="a", data=AgentData(turns=2)
    )
    again = Snapshot[AgentData].model_validate_json(snap.model_dump_json())
    # `context` and `output` are user types the snapshot cannot name: they load back as JSON data
    assert again.model_copy(update={"context": snap.context}) == snap
    assert hash(again.conversation) == hash(snap.conversation) and hash(again.data) == hash(snap.data)
    assert isinstance(again.conversation.messages, PersistentLog)
    assert isinstance(again.conversation.messages[2], ToolMessage)


@settings(max_examples=200, deadline=None)
@given(st.lists(fst.messages(), max_size=20))
def test_every_message_survives_a_json_round_trip(msgs: list[object]) -> None:
    """Invariant: any conversation serializes to JSON and back to an equal, equally hashed one
    (the discriminated union on `role` picks the right class)."""
    conv = Conversation.of(*msgs)  # type: ignore[arg-type]
    again = Conversation.model_validate_json(conv.model_dump_json())
    assert again == conv and hash(again) == hash(conv)
