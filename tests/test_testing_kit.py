"""The testing kit as users see it: cassettes, replay, the pytest plugin, check_module, the CLI."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from fsm_agents import Agent, CassetteDivergence, FsmAgentsError, Phase, ScriptedModel, run, tool
from fsm_agents.cli import main as cli
from fsm_agents.models import call, reply
from fsm_agents.testing import Cassette, ReplayModel, check_module, record, replay, replay_tools

pytest_plugins = ["pytester"]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def calculator(model: object = None, instructions: str = "Use add.") -> Agent:
    return Agent("calc", instructions, model, tools=[add])  # type: ignore[arg-type]


@pytest.fixture
def cassette() -> Cassette:
    import anyio

    leaky = reply("using key sk-abcdefghijklmnopqrstuvwx", call("add", a=2, b=3))
    model = ScriptedModel([leaky, "5"])
    result = anyio.run(lambda: run(calculator(model), "2+3?", run_id="rec"))
    return record(result, secrets=["hunter2"])


def test_record_captures_effects_and_events_and_scrubs_secrets(cassette: Cassette, tmp_path: Path) -> None:
    assert [i.effect["type"] for i in cassette.interactions] == ["CallModel", "RunTools", "CallModel"]
    assert [i.event["type"] for i in cassette.interactions] == ["ModelReplied", "ToolsFinished", "ModelReplied"]
    text = cassette.to_json()
    assert "sk-abcdefghijklmnopqrstuvwx" not in text and "[REDACTED]" in text
    path = tmp_path / "c.json"
    cassette.save(path)
    assert Cassette.load(path) == cassette
    path.write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(FsmAgentsError, match=r"is not a fsm_agents\.cassette/3 cassette"):
        Cassette.load(path)


def test_replay_reproduces_the_run_without_model_or_tools(cassette: Cassette) -> None:
    final = replay(calculator(), cassette)
    assert final.snapshot.phase is Phase.DONE and final.snapshot.output == "5"


def test_a_cassette_replays_message_inputs_and_typed_child_outputs_as_they_were(tmp_path: Path) -> None:
    """A recorded input of messages replays as those messages (it was stored as their repr()
    strings, so the replay could not start), and a pattern's child `output_type` models and
    fan-in tuples replay as themselves (they came back as dicts in a list): the replayed final
    snapshot equals the live one. A version 1 cassette still loads and replays."""
    from pydantic import BaseModel, ConfigDict

    from fsm_agents import SystemMessage, UserMessage, run_sync
    from fsm_agents.patterns import Parallel

    class Score(BaseModel):
        model_config = ConfigDict(frozen=True)
        value: int

    agent = Agent("a", model=ScriptedModel(["hello"]))
    live = run_sync(agent, [SystemMessage(content="be brief"), UserMessage(content="hi")])
    path = tmp_path / "m.json"
    record(live).save(path)
    assert replay(agent, Cassette.load(path)).snapshot == live.snapshot
    judges = Parallel(
        "judges",
        [Agent(f"j{i}", model=ScriptedModel([f'{{"value": {i}}}']), output_type=Score) for i in (1, 2)],
    )
    live = run_sync(judges, "rate this")
    assert live.output == (Score(value=1), Score(value=2))
    record(live).save(path)
    again = replay(judges, Cassette.load(path))
    assert again.snapshot == live.snapshot and type(again.snapshot.output[0]) is Score
    old = json.loads(path.read_text())
    old.update(format="fsm_agents.cassette/1", input="rate this")  # version 1: the raw input
    path.write_text(json.dumps(old))
    assert replay(judges, Cassette.load(path)).snapshot == live.snapshot


def test_save_creates_missing_folders(cassette: Cassette, tmp_path: Path) -> None:
    path = tmp_path / "some" / "missing" / "dir" / "x.json"
    cassette.save(path)
    assert Cassette.load(path) == cassette
    (tmp_path / "file").write_text("")
    with pytest.raises(FsmAgentsError, match="cannot write cassette"):
        cassette.save(tmp_path / "file" / "x.json")  # a file where a folder should be


def _pipeline(first: str = "Summarize.", tools: tuple[object, ...] = ()) -> object:
    from fsm_agents.patterns import Sequential

    return Sequential("pipe", [Agent("a", first, tools=list(tools)), Agent("b", "Review.")])  # type: ignore[arg-type]


def test_a_pattern_cassette_records_and_replays_its_children(tmp_path: Path) -> None:
    """`record` of a pattern run keeps each child's model and tool calls, so `replay` fails when a
    child's prompt, tools or answers changed (it passed: only the parent's steps were checked).
    A version 2 cassette (no children) still replays; ReplayModel and replay_tools serve the
    children's calls."""
    from fsm_agents import run_sync

    models = {"a": ScriptedModel([reply(None, call("add", a=1, b=2)), "A: 3"]), "b": ScriptedModel(["B: ok"])}
    live = run_sync(_pipeline(tools=(add,)), "numbers", models=models)
    assert live.ok and live.output == "B: ok"
    path = tmp_path / "pipe.json"
    record(live).save(path)
    cassette = Cassette.load(path)
    assert set(cassette.children) == set(live.children)
    first = cassette.children[next(iter(live.children))]
    assert [i.effect["type"] for i in first.interactions] == ["CallModel", "RunTools", "CallModel"]
    assert replay(_pipeline(tools=(add,)), cassette).snapshot == live.snapshot
    with pytest.raises(CassetteDivergence) as info:
        replay(_pipeline("Summarize in French.", tools=(add,)), cassette)  # a child's prompt changed
    assert "French" in json.dumps(info.value.actual)
    with pytest.raises(CassetteDivergence):
        replay(_pipeline(), cassette)  # the child lost its tool
    old = json.loads(path.read_text())
    old["format"] = "fsm_agents.cassette/2"
    del old["children"]
    path.write_text(json.dumps(old))
    assert replay(_pipeline("Summarize in French.", tools=(add,)), Cassette.load(path)).snapshot.output == "B: ok"
    again = run_sync(
        _pipeline(tools=(add,)),
        "numbers",
        models={"a": ReplayModel(cassette), "b": ReplayModel(cassette)},
        tools=replay_tools(cassette),
    )
    assert again.output == "B: ok" and again.children[next(iter(again.children))].output == "A: 3"


def test_a_child_that_ends_otherwise_than_recorded_diverges(tmp_path: Path) -> None:
    from fsm_agents import run_sync

    live = run_sync(_pipeline(), "x", models={"a": ScriptedModel(["A"]), "b": ScriptedModel(["B"])})
    data = json.loads(record(live).to_json())
    task = next(iter(data["children"]))
    data["children"][task]["interactions"][-1]["event"]["message"]["content"] = "not A"
    with pytest.raises(CassetteDivergence, match="not A"):
        replay(_pipeline(), Cassette.model_validate(data))


def test_a_cassette_with_lone_surrogates_saves_and_loads(tmp_path: Path) -> None:
    import os

    from fsm_agents import run_sync

    name = os.fsdecode(b"r\xff.txt")
    live = run_sync(Agent("a", model=ScriptedModel([f"see {name}"])), f"open {name}")
    path = tmp_path / "s.json"
    record(live).save(path)
    assert replay(Agent("a"), Cassette.load(path)).snapshot == live.snapshot


def test_replay_reports_a_divergence_with_the_step_and_both_effects(cassette: Cassette) -> None:
    with pytest.raises(CassetteDivergence) as info:
        replay(calculator(instructions="Use add. Be brief."), cassette)  # the prompt changed
    assert info.value.step == 0
    assert "Be brief" in json.dumps(info.value.actual) and "Be brief" not in json.dumps(info.value.recorded)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_replay_model_and_tools_drive_a_normal_run(cassette: Cassette, anyio_backend: str) -> None:
    result = await run(calculator(), "2+3?", models={"calc": ReplayModel(cassette)}, tools=replay_tools(cassette))
    assert result.ok and result.output == "5" and result.snapshot.results[0].content == "5"
    other = Agent("calc", "Use add.", tools=[])  # no tools offered any more: the request differs
    with pytest.raises(CassetteDivergence, match="recorded"):
        await run(other, "2+3?", models={"calc": ReplayModel(cassette)})


def test_check_module_checks_every_exported_machine() -> None:
    module = types.ModuleType("user_agents")
    module.calc = calculator()  # type: ignore[attr-defined]
    module.helper = lambda: None  # type: ignore[attr-defined]
    module.Agent = Agent  # type: ignore[attr-defined]
    reports = check_module(module, max_examples=30, seed=1)
    assert list(reports) == ["calc"] and reports["calc"].steps > 0
    with pytest.raises(ValueError, match="exports no agent"):
        check_module(types.ModuleType("empty"))


def test_pytest_plugin_fixtures_and_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        user_agents="""
from fsm_agents import Agent, tool

@tool
def add(a: int, b: int) -> int:
    '''Add.'''
    return a + b

calc = Agent("calc", "Use add.", tools=[add], max_steps=3)
""",
        test_user="""
import pytest
import user_agents
from fsm_agents import Agent, run_sync

def test_fixtures(scripted_model, function_model):
    agent = Agent("a", model=scripted_model(["hello"]))
    assert run_sync(agent, "hi").output == "hello"
    assert run_sync(Agent("b", model=function_model(lambda r: "fn")), "hi").output == "fn"

@pytest.mark.fsm_check(user_agents, examples=25)
def test_marker(fsm_reports):
    assert list(fsm_reports) == ["calc"]
    assert fsm_reports["calc"].examples > 0
""",
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_cli_check_prints_the_report_and_fails_on_a_violation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cli_agents.py").write_text(
        "from fsm_agents import Agent, AgentMachine\n"
        "good = Agent('good', max_steps=2)\n"
        "class Broken(AgentMachine):\n"
        "    def over_budget(self, s, e):\n"
        "        return False\n"
        "bad = Broken(Agent('bad', max_steps=1))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli(["check", "cli_agents:good", "--examples", "30", "--seed", "1"]) == 0
    assert "transitions covered" in capsys.readouterr().out
    assert cli(["check", "cli_agents:bad", "--examples", "100", "--seed", "1"]) == 1
    assert "invariant" in capsys.readouterr().err
    assert cli(["check", "cli_agents:missing"]) == 1
    assert "has no attribute" in capsys.readouterr().err
    sys.modules.pop("cli_agents", None)
