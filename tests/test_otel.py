"""OpenTelemetryObserver: one span per effect, GenAI semantic-convention names, nesting, errors."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from fsm_agents import Agent, AssistantMessage, ScriptedModel, run_sync, tool
from fsm_agents.models import ModelResponse, call, reply
from fsm_agents.observers import OpenTelemetryObserver
from fsm_agents.patterns import Parallel
from fsm_agents.state import Usage

SECRET = "my card number is 4111-1111"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def boom() -> str:
    """Always fails."""
    raise RuntimeError("down")


def traced() -> tuple[OpenTelemetryObserver, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetryObserver(provider.get_tracer("test")), exporter


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_an_agent_run_is_a_chat_span_per_model_call_and_an_execute_tool_span_per_tool_batch() -> None:
    """A run with one tool round gives chat, execute_tool, chat spans in order, each tagged with
    the agent, the run id and its effect key; token usage lands on the chat span that reported
    it; the transitions each event led to are span events; no message content is recorded."""
    observer, exporter = traced()
    usage = Usage(input_tokens=12, output_tokens=3, requests=1)
    model = ScriptedModel(
        [reply(None, call("add", "c1", a=1, b=2)), ModelResponse(message=AssistantMessage(content="3"), usage=usage)]
    )
    result = run_sync(Agent("calc", "add", model, tools=[add]), SECRET, observers=[observer], run_id="r1")
    assert result.ok
    *spans, whole = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["chat calc", "execute_tool add", "chat calc"]
    # the run is a span of its own, parent of its effects' spans, with its status and usage
    assert whole.name == "invoke_agent agent:calc" and attrs(whole)["fsm_agents.status"] == "done"
    assert attrs(whole)["gen_ai.usage.input_tokens"] == 12
    assert all(s.parent is not None and s.parent.span_id == whole.context.span_id for s in spans)
    for s, op in zip(spans, ["chat", "execute_tool", "chat"], strict=True):
        a = attrs(s)
        assert a["gen_ai.operation.name"] == op and a["gen_ai.agent.name"] == "calc"
        assert a["gen_ai.conversation.id"] == "r1" and str(a["fsm_agents.effect.key"]).startswith("r1/")
        assert s.status.status_code is StatusCode.UNSET
    assert attrs(spans[0])["fsm_agents.tool_calls"] == 1 and "gen_ai.usage.input_tokens" not in attrs(spans[0])
    assert (attrs(spans[2])["gen_ai.usage.input_tokens"], attrs(spans[2])["gen_ai.usage.output_tokens"]) == (12, 3)
    assert attrs(spans[1])["gen_ai.tool.name"] == "add" and attrs(spans[1])["fsm_agents.tools.failed"] == 0
    moves = [(dict(e.attributes or {})["source"], dict(e.attributes or {})["target"]) for s in spans for e in s.events]
    assert moves == [("PLANNING", "EXECUTING"), ("EXECUTING", "OBSERVING"), ("OBSERVING", "PLANNING"), ("PLANNING", "DONE")]
    assert SECRET not in repr([(s.name, attrs(s), [e.attributes for e in s.events]) for s in spans])


def test_failures_set_error_status_with_an_error_type() -> None:
    """A failing tool marks its execute_tool span ERROR (`tool_error`) though the run goes on; a
    failing model marks its chat span ERROR with the failure kind."""
    observer, exporter = traced()
    model = ScriptedModel([reply(None, call("boom", "c1")), RuntimeError("provider down")])
    result = run_sync(Agent("a", "x", model, tools=[boom]), "go", observers=[observer])
    assert result.failure is not None and result.failure.kind == "model_error"
    chat, tools, failed, whole = exporter.get_finished_spans()
    assert whole.status.status_code is StatusCode.ERROR and attrs(whole)["error.type"] == "model_error"
    assert chat.status.status_code is StatusCode.UNSET
    assert tools.status.status_code is StatusCode.ERROR and attrs(tools)["error.type"] == "tool_error"
    assert failed.status.status_code is StatusCode.ERROR and attrs(failed)["error.type"] == "error"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_child_runs_nest_under_the_invoke_agent_span_of_their_parent(backend: str) -> None:
    """A fan-out is an invoke_agent span; each child run's span (and under it its chat span) is
    its child in the trace (on asyncio and on trio), and a child that fails marks the fan-out span
    ERROR (`child_failed`)."""
    observer, exporter = traced()
    branches = [Agent("a", model=ScriptedModel(["A"])), Agent("b", model=ScriptedModel([]))]  # b fails
    team = Parallel("team", branches, on_failure="report")
    run_sync(team, "q", observers=[observer], backend=backend)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    fan_out = spans["invoke_agent a,b"]
    assert fan_out.status.status_code is StatusCode.ERROR and attrs(fan_out)["error.type"] == "child_failed"
    for name in ("a", "b"):
        child_run, chat = spans[f"invoke_agent agent:{name}"], spans[f"chat {name}"]
        assert child_run.parent is not None and child_run.parent.span_id == fan_out.context.span_id
        assert chat.parent is not None and chat.parent.span_id == child_run.context.span_id
        assert chat.context.trace_id == fan_out.context.trace_id


def test_without_opentelemetry_installed_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """The observer is optional: without opentelemetry-api it raises FsmAgentsError naming the extra."""
    import sys

    from fsm_agents import FsmAgentsError

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(FsmAgentsError, match=r"pip install 'fsm-agents\[otel\]'"):
        OpenTelemetryObserver()
