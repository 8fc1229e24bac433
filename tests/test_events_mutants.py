"""Behaviour of the events module that mutation testing (`make mutation`, docs/mutation.md) checks:
how a human's decisions are written and looked up, and the idempotency key of an effect."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fsm_agents.events import Answer, Approved, Denied, InputReceived, effect_key
from fsm_agents.state import Conversation, EmptyContext, Phase, Snapshot


def test_decisions_take_their_text_positionally_or_by_keyword() -> None:
    assert Denied("over the limit").reason == "over the limit" == Denied(reason="over the limit").reason
    assert Denied().reason == "" and Denied().kind == "denied"
    assert Answer("Lyon").text == "Lyon" == Answer(text="Lyon").text and Answer("Lyon").kind == "answer"
    assert Answer("") == Answer(text="")
    with pytest.raises(ValidationError):
        Answer()


def test_the_decision_for_a_call_is_its_first_one_or_none() -> None:
    event = InputReceived(decisions=(("a", Approved()), ("b", Denied("no")), ("a", Denied("later"))))
    assert event.decision_for("a") == Approved()
    assert event.decision_for("b") == Denied("no")
    assert event.decision_for("c") is None


def test_an_effect_key_is_run_id_step_and_index() -> None:
    s = Snapshot[EmptyContext](
        machine="m", phase=Phase.PLANNING, conversation=Conversation(id="conv-7"), data=EmptyContext(), step=3
    )
    assert effect_key(s) == "conv-7/3/0"
    assert effect_key(s, 2) == "conv-7/3/2"
