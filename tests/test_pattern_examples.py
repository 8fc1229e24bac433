"""Every pattern example runs on its scripted models and ends as its scenario says."""

from __future__ import annotations

import importlib

import pytest

from examples.patterns import SHIPPED_PATTERNS
from fsm_agents import Phase
from fsm_agents.runtime import as_machine
from fsm_agents.testing import history_problems


def load(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"examples.patterns.{name}")


def test_pipeline_runs_research_analysis_report() -> None:
    m = load("pipeline")
    result = m.run(m.build())
    assert result.ok and result.output.startswith("REPORT")
    assert [msg.agent for msg in result.snapshot.conversation.messages[1:]] == ["research", "analysis", "report"]


@pytest.mark.parametrize(
    ("request_text", "route"),
    [
        ("the app crashes on start", "technical"),
        ("find papers on sleep", "research"),
        ("write a poem", "creative"),
        ("average of this csv", "data"),
        ("hello there", "default"),
    ],
)
def test_classifier_routes_each_kind_of_request(request_text: str, route: str) -> None:
    m = load("classifier")
    result = m.run(m.build(), request_text)
    assert result.ok and result.snapshot.data.route == route


def test_research_team_synthesizes_three_findings_and_reports_a_failure() -> None:
    m = load("research_team")
    result = m.run(m.build())
    assert result.ok and result.output.startswith("SYNTHESIS of 3 findings")
    assert len(result.children) == 4  # three researchers and the synthesizer


def test_competitive_analysis_evaluator_picks_balanced() -> None:
    m = load("competitive_analysis")
    result = m.run(m.build())
    assert result.ok and result.output == m.Verdict(winner="balanced", reason="compared 3 answers")


def test_manager_worker_delegates_to_search_code_and_doc() -> None:
    m = load("manager_worker")
    result = m.run(m.build())
    assert result.ok and result.output.startswith("Done:")
    assert sorted(c.snapshot.machine for c in result.children.values()) == ["agent:code", "agent:doc", "agent:search"]
    assert not history_problems(result.snapshot.conversation)


def test_recursive_strategy_decomposes_twice_and_synthesizes() -> None:
    m = load("recursive_strategy")
    result = m.run(m.build())
    assert result.ok and "Partner resellers" in result.output and "Define the target segment" in result.output
    too_shallow = m.run(m.build(max_depth=0))
    assert too_shallow.ok  # depth exhausted → executed directly (policy "execute")
    assert too_shallow.output.startswith("plan for")


def test_customer_service_hands_off_to_billing() -> None:
    m = load("customer_service")
    result = m.run(m.build())
    assert result.ok and result.snapshot.agent == "billing" and "refunded" in result.output
    assert m.run(m.build(), "the login shows an error").snapshot.agent == "technical"
    assert m.run(m.build(), "what does the upgrade cost? price?").snapshot.agent == "sales"


def test_event_handlers_share_the_conversation() -> None:
    m = load("event_handlers")
    bus = m.build()
    result = m.run(bus)
    assert result.ok and "(5 messages of history)" in result.output
    assert len(bus.conversation) == 6


def test_shipped_patterns_list_every_example_and_build_without_arguments() -> None:
    assert len(SHIPPED_PATTERNS) == 8
    for ref in SHIPPED_PATTERNS.values():
        module, _, attr = ref.partition(":")
        obj = getattr(importlib.import_module(module), attr)()
        assert as_machine(obj).table.initial in (Phase.PLANNING, Phase.EXECUTING)


@pytest.mark.parametrize(("replies", "code"), [(["fine"], 0), ([RuntimeError("provider down")], 1)])
def test_an_example_exits_non_zero_when_its_run_ends_failed(
    replies: list[object], code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`main_with` (every pattern example's `main`) returns 1 for a run that ended FAILED (before:
    0 for any final phase, so a shell or CI saw a failed example as a success)."""
    import fsm_agents.local
    from examples.patterns._common import main_with
    from fsm_agents import Agent, ScriptedModel, run_sync

    def unavailable() -> None:
        raise fsm_agents.local.LocalModelError("no local model in this test")

    monkeypatch.setattr(fsm_agents.local, "serve", unavailable)
    build = lambda model: Agent("a", model=ScriptedModel(replies))  # noqa: E731
    assert main_with(build, lambda agent, kwargs: run_sync(agent, "hi", **kwargs)) == code
    out = capsys.readouterr().out
    assert ("DONE" if code == 0 else "FAILED") in out
