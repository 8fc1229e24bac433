"""Secrets never reach logs or cassettes (issue 13, item 11): short `sk-` keys, and a key given
explicitly to a model (`api_key=`), whatever its shape, even when the provider echoes it back."""

from __future__ import annotations

import logging

import httpx
import pytest

from fsm_agents import Agent, LoggingObserver, run
from fsm_agents.models import OpenAIChat
from fsm_agents.observers import Redactor
from fsm_agents.testing import record

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "text",
    ["sk-test-SECRET123", "key sk-abcdEFGH1", "Authorization: sk-ant-api03-x_y-z0123456789", '"sk-proj-0123456789"'],
)
def test_short_and_long_sk_keys_are_redacted(text: str) -> None:
    out = Redactor(env_vars=())(text)
    assert "[REDACTED]" in out and "SECRET" not in out and "0123456789" not in out and "abcdEFGH1" not in out


@pytest.mark.parametrize("text", ["task-management-system", "ask-questions-first", "sk-short", "desk-lamp"])
def test_words_that_merely_contain_sk_dash_are_kept(text: str) -> None:
    assert Redactor(env_vars=())(text) == text


async def test_an_explicit_api_key_echoed_by_the_provider_reaches_neither_logs_nor_cassettes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key of no known shape, given as `api_key=`, echoed in the model's answer: the log line
    of `LoggingObserver` and the saved cassette carry `[REDACTED]` instead (before: the key)."""
    key = "groq-private-7f3a9c21e4b8"  # matches none of the Redactor's patterns
    redactor = Redactor()  # made before the model: keys registered later count too

    def echo(request: httpx.Request) -> httpx.Response:
        text = f"your key is {request.headers['authorization'].removeprefix('Bearer ')}"
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return httpx.Response(200, json={"model": "m", "choices": [choice]})

    model = OpenAIChat("m", base_url="http://127.0.0.1:9/v1", api_key=key, transport=httpx.MockTransport(echo))
    with caplog.at_level(logging.INFO, logger="fsm_agents.run"):
        result = await run(Agent("a", model=model), "what is my key?", observers=[LoggingObserver()])
    assert result.ok and key in result.output  # the run itself keeps the model's answer as it came
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "your key is [REDACTED]" in logged and key not in logged
    assert key not in record(result).to_json()
    assert redactor(f"x {key} y") == "x [REDACTED] y"


def test_placeholder_keys_are_not_registered() -> None:
    """A placeholder such as Ollama's `"ollama"` is too short to be a secret: it stays in logs."""
    OpenAIChat("m", base_url="http://127.0.0.1:9/v1", api_key="ollama")
    assert Redactor(env_vars=())("pulled with ollama") == "pulled with ollama"
