"""Diagrams: Mermaid and DOT drawn from the compiled table, trace overlays, nested machines,
files by suffix, typed errors, the CLI, and the committed diagrams/ kept in sync."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pydot
import pytest
from statemachine import State, StateChart

from fsm_agents import Agent, Phase, RunResult, ScriptedModel, Step, run_sync
from fsm_agents.cli import main
from fsm_agents.diagrams import (
    DiagramError,
    GraphvizNotFound,
    example_agent,
    generate,
    regenerate,
    shipped,
    stale,
    to_dot,
    to_mermaid,
    write,
)
from fsm_agents.events import AgentTask, RunAgents, Taken, effect_key
from fsm_agents.machine import Machine, compile_chart
from fsm_agents.models import call, reply
from fsm_agents.state import Conversation, EmptyContext, Frozen, Snapshot

REPO = Path(__file__).resolve().parent.parent
HAS_DOT = shutil.which("dot") is not None
# pydot's DOT parser (used here to read diagrams back) calls pyparsing's deprecated camelCase API
pytestmark = pytest.mark.filterwarnings("ignore:'setParseAction' deprecated")

needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz `dot` is not installed")


def search(query: str) -> str:
    """Search."""
    return f"found {query}"


def tool_then_answer(name: str = "a") -> Agent:
    model = ScriptedModel([reply(None, call("search", query="x")), reply("the answer")])
    return Agent(name, tools=[search], model=model)


def edges(dot: str) -> list[pydot.Edge]:
    (graph,) = pydot.graph_from_dot_data(dot) or [None]
    assert graph is not None
    found: list[pydot.Edge] = []
    pending = [graph]
    while pending:
        g = pending.pop(0)
        found.extend(g.get_edges())
        pending.extend(g.get_subgraphs())
    return found


def edge_labels(dot: str) -> list[str]:
    return [str(e.get("label")).strip('"') for e in edges(dot)]


# -- a small parent machine running children (like tests/test_runtime.py's FanOut) --------------


class ParentChart(StateChart):  # type: ignore[type-arg]
    planning = State("PLANNING", initial=True)
    executing = State("EXECUTING")
    done = State("DONE", final=True)
    failed = State("FAILED", final=True)
    start_children = planning.to(executing)
    agents_finished = executing.to(done, cond="all_done", on="collect") | executing.to(failed, unless="all_done")


class ParentData(Frozen):
    pass


class Parent(Machine):
    def __init__(self, name: str, children: dict[str, Machine]) -> None:
        self.name = name
        self._children = children
        self.table = compile_chart(
            ParentChart,
            guards={"all_done": lambda s, e: all(o.phase is Phase.DONE for o in e.outcomes)},  # type: ignore[attr-defined]
            actions={"collect": lambda s, e: Step(s.evolve(output=tuple(o.output for o in e.outcomes)))},  # type: ignore[attr-defined]
        )

    def children(self) -> dict[str, Machine]:
        return self._children

    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        snap: Snapshot[ParentData] = Snapshot(
            machine=self.name, phase=Phase.EXECUTING, conversation=Conversation(id=run_id),
            context=EmptyContext(), data=ParentData(),
        )  # fmt: skip
        tasks = tuple(AgentTask(task_id=f"t{i}", machine=name, input=input) for i, name in enumerate(self._children))
        return Step(snap, (RunAgents(key=effect_key(snap), tasks=tasks),))


def two_levels() -> Parent:
    inner = Parent("pattern:review", {"writer": Agent("writer", model=ScriptedModel(["w"])).machine})
    return Parent("pattern:team", {"researcher": tool_then_answer("researcher").machine, "review": inner})


# -- plain diagrams ----------------------------------------------------------------------------


def test_mermaid_draws_every_compiled_transition_with_guards_finals_and_internal_events() -> None:
    agent = example_agent()
    text = to_mermaid(agent)
    assert text.startswith("stateDiagram-v2\n") and text.endswith("\n")
    for phase in Phase:
        assert f'state "{phase.value}" as {phase.value}' in text
    assert "[*] --> PLANNING" in text
    assert "DONE --> [*]" in text and "FAILED --> [*]" in text
    assert "PLANNING --> HANDOFF : model_replied [2. asks_handoff]" in text
    assert "PLANNING --> PLANNING : model_replied [4. output_retry]" in text
    assert "OBSERVING --> PLANNING : observed (auto)" in text
    assert "HANDOFF --> PLANNING : handed_off (auto)" in text
    arrows = [line for line in text.splitlines() if " --> " in line and "[*]" not in line and "handoffs" not in line]
    assert len(arrows) == len(agent.machine.table.transitions)
    assert "class DONE done" in text and "class FAILED failed" in text


def test_guards_carry_the_order_step_tries_them_and_the_fallback_is_else() -> None:
    """The labels of `model_replied` out of PLANNING, in table order, are numbered 1..5 and the
    unguarded last one is `else`; a phase with one transition on an event has no number."""
    machine = example_agent().machine
    text = to_mermaid(machine)
    tried = [t for t in machine.table.by_key[(Phase.PLANNING, "model_replied")]]
    for i, t in enumerate(tried[:-1]):
        assert f"PLANNING --> {t.target.value} : model_replied [{i + 1}. {t.guards[0].name}]" in text
    assert not tried[-1].guards and "PLANNING --> DONE : model_replied [else]" in text
    assert "PLANNING --> FAILED : model_failed\n" in text  # alone on its event: no number
    labels = edge_labels(to_dot(machine))
    assert "model_replied [1. over_budget]" in labels and "model_replied [else]" in labels


def test_negated_guards_are_drawn_with_a_bang() -> None:
    parent = Parent("p", {})
    assert "EXECUTING --> FAILED : agents_finished [2. !all_done]" in to_mermaid(parent)
    assert "agents_finished [2. !all_done]" in edge_labels(to_dot(parent))


def test_dot_has_states_finals_guards_and_dashed_internal_edges() -> None:
    machine = tool_then_answer().machine
    dot = to_dot(machine)
    (graph,) = pydot.graph_from_dot_data(dot) or [None]
    assert graph is not None
    nodes = {n.get_name(): n for n in graph.get_nodes()}
    for phase in Phase:
        assert phase.value in nodes
    assert nodes["DONE"].get("shape") == "doublecircle" and nodes["FAILED"].get("shape") == "doublecircle"
    assert nodes["PLANNING"].get("shape") is None  # the default box
    found = edges(dot)
    assert len(found) == len(machine.table.transitions) + 1  # + the start dot's edge
    by_label = {str(e.get("label") or e.get("xlabel")).strip('"'): e for e in found}
    assert by_label["observed"].get("style") == "dashed" and by_label["handed_off"].get("style") == "dashed"
    assert by_label["tools_finished"].get("style") is None
    assert by_label["model_replied [1. over_budget]"].get_source() == "PLANNING"
    assert by_label["model_replied [1. over_budget]"].get_destination() == "FAILED"
    assert any(e.get_source() == "__start" and e.get_destination() == "PLANNING" for e in found)


def test_output_is_deterministic_and_carries_no_object_ids() -> None:
    a, b = to_dot(two_levels()), to_dot(two_levels())
    assert a == b and to_mermaid(two_levels()) == to_mermaid(two_levels())
    assert not re.search(r"0x[0-9a-f]{6,}|\b\d{9,}\b", a + to_mermaid(two_levels()))


def test_non_machines_are_rejected() -> None:
    with pytest.raises(TypeError):
        to_mermaid(object())


# -- nested machines ---------------------------------------------------------------------------


def test_children_are_named_clusters_and_composite_states_run_from_executing() -> None:
    parent = two_levels()
    dot = to_dot(parent)
    assert "subgraph cluster_researcher {" in dot
    assert "subgraph cluster_review {" in dot and "subgraph cluster_review_writer {" in dot
    runs = [e for e in edges(dot) if str(e.get("label")).strip('"') == "runs"]
    assert {(e.get_source(), str(e.get("lhead")).strip('"')) for e in runs} == {
        ("EXECUTING", "cluster_researcher"),
        ("EXECUTING", "cluster_review"),
        ("review_EXECUTING", "cluster_review_writer"),
    }
    text = to_mermaid(parent)
    assert 'state "researcher" as researcher {' in text
    assert 'state "review" as review {' in text and 'state "writer" as review_writer {' in text
    assert "EXECUTING --> review : runs" in text and "review_EXECUTING --> review_writer : runs" in text
    assert "researcher_PLANNING --> researcher_DONE : model_replied [else]" in text
    assert text.count("{") == text.count("}") == 3


def test_nested_patterns_nest_and_depth_collapses_children_to_one_box() -> None:
    deep = Parent("a", {"b": Parent("b", {"c": Parent("c", {"w": Agent("w").machine})})})
    dot = to_dot(deep)
    assert dot.index("subgraph cluster_b {") < dot.index("subgraph cluster_b_c {") < dot.index("subgraph cluster_b_c_w {")
    assert "b_c_EXECUTING -> b_c_w__start" in dot
    text = to_mermaid(deep)
    assert text.index('state "b" as b {') < text.index('state "c" as b_c {') < text.index('state "w" as b_c_w {')
    shallow = to_dot(deep, depth=1)
    assert "subgraph cluster_b {" in shallow and "cluster_b_c" not in shallow
    assert 'b_c__box [label="c\\nc"' in shallow
    flat = to_dot(deep, depth=0)
    assert "cluster_" not in flat and "b__box" in flat
    assert 'state "b — b" as b' in to_mermaid(deep, depth=0)
    with pytest.raises(DiagramError, match="depth"):
        to_dot(deep, depth=-1)


def test_each_child_is_its_own_cluster_even_when_children_share_a_machine() -> None:
    shared = Agent("worker").machine
    parent = Parent("p", {"first": shared, "second": shared, "other": Agent("other").machine})
    dot = to_dot(parent)
    assert dot.count("subgraph cluster_") == 3
    for name in ("first", "second", "other"):
        assert f"subgraph cluster_{name} {{" in dot
        assert f'state "{name}" as {name} {{' in to_mermaid(parent)


def test_recursion_refers_back() -> None:
    children: dict[str, Machine] = {}
    loop = Parent("pattern:recursive", children)
    children["again"] = loop  # a machine that runs itself
    dot = to_dot(loop)
    assert "subgraph cluster_" not in dot
    assert 'again__box [label="again\\nrecursive: this pattern again"' in dot
    assert "EXECUTING -> again__box" in dot
    assert 'state "again — recursive: this pattern again" as again' in to_mermaid(loop)


# -- the patterns, each in its own logic ------------------------------------------------------


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(REPO))
    import examples.patterns as pkg

    return pkg


def load(spec: str) -> Any:
    from fsm_agents.cli import load_object

    return load_object(spec)


def test_sequential_draws_its_stages_in_order(examples: Any) -> None:
    text = to_mermaid(load("examples.patterns.pipeline:build"))
    titles = [text.index(f'state "stage {i}: {n}" as {n} {{') for i, n in enumerate(["research", "analysis", "report"], 1)]
    assert titles == sorted(titles)
    assert "EXECUTING --> research : runs stage 1" in text and "EXECUTING --> report : runs stage 3" in text
    assert "research --> analysis : then (whole conversation)" in text and "analysis --> report" in text


def test_parallel_fans_out_then_in_to_the_synthesizer(examples: Any) -> None:
    text = to_mermaid(load("examples.patterns.research_team:build"))
    for i, b in enumerate(["tech", "market", "academic"], 1):
        assert f'state "branch {i}: {b}" as {b} {{' in text
        assert f"{b} --> synthesizer" in text
    assert "EXECUTING --> tech : fan-out (≤ 3 at once)" in text
    assert 'state "synthesizer: synthesizer" as synthesizer {' in text
    assert "OBSERVING --> synthesizer : runs the synthesizer" in text
    comp = to_mermaid(load("examples.patterns.competitive_analysis:build"))
    assert "as evaluator {" in comp and "candidate 1: " in comp


def test_router_draws_each_route_with_its_condition_and_the_default_as_else(examples: Any) -> None:
    router = load("examples.patterns.classifier:build")
    text = to_mermaid(router)
    assert 'state "PLANNING (classifier: classifier)" as PLANNING' in text
    for i, label in enumerate(router.labels.values(), 1):
        assert f"EXECUTING --> {label} : {i}. label = '{label.lower()}'" in text
    assert "EXECUTING --> default_ : else" in text and 'state "default: generalist" as default_ {' in text


def test_manager_worker_draws_workers_as_tools(examples: Any) -> None:
    manager = load("examples.patterns.manager_worker:build")
    text = to_mermaid(manager)
    assert f"(manager: {manager.manager.name})" in text
    for tool, worker in manager.delegate_tools.items():
        assert f"EXECUTING --> {worker} : tool {tool}" in text
        assert f'state "worker: {worker}" as {worker} {{' in text


def test_recursive_draws_decomposer_executor_synthesizer_and_the_depth_bound(examples: Any) -> None:
    text = to_mermaid(load("examples.patterns.recursive_strategy:build"))
    assert "(decomposer: strategist)" in text
    assert 'state "executor: planner" as executor {' in text
    assert 'state "synthesizer: synthesizer" as synthesizer {' in text
    assert "subtask: strategy again, depth + 1 (max_depth 2) — recursive: this pattern again" in text
    assert "EXECUTING --> executor : EXECUTE" in text and "EXECUTING --> subtask : DECOMPOSE: each subtask" in text


def test_handoffs_draws_who_hands_off_to_whom(examples: Any) -> None:
    text = to_mermaid(load("examples.patterns.customer_service:build"))
    assert 'state "who hands off to whom (transfer_to_* tools, at most 2 per run)" as handoffs {' in text
    assert "[*] --> handoffs_triage" in text
    for target in ("technical", "billing", "sales"):
        assert f"handoffs_triage --> handoffs_{target} : transfer_to_{target}" in text
    assert "handoffs_technical --> handoffs_triage : transfer_to_triage" in text
    assert "HANDOFF --> handoffs : the active agent changes" in text
    dot = to_dot(load("examples.patterns.customer_service:build"))
    assert "subgraph cluster_handoffs {" in dot
    assert 'handoffs_triage -> handoffs_technical [color="#5b4bb7", penwidth=1.3, dir=both];' in dot


def test_event_driven_draws_a_handler_per_event_type(examples: Any) -> None:
    bus = load("examples.patterns.event_handlers:build")
    text = to_mermaid(bus)
    for event_type in bus.handlers:
        assert f"state \"on '{event_type}'\" as" in text and f"event '{event_type}'" in text


# -- trace overlay ---------------------------------------------------------------------------


def agent_run() -> tuple[Agent, RunResult]:
    agent = tool_then_answer()
    return agent, run_sync(agent, "question")


def test_trace_counts_transitions_and_highlights_visited_states() -> None:
    agent, result = agent_run()
    assert result.ok
    text = to_mermaid(agent, trace=result)
    assert "PLANNING --> EXECUTING : model_replied [3. asks_tools] ×1" in text
    assert "EXECUTING --> OBSERVING : tools_finished ×1" in text
    assert "OBSERVING --> PLANNING : observed (auto) ×1" in text
    assert "PLANNING --> DONE : model_replied [else] ×1" in text
    assert "PLANNING --> HANDOFF : model_replied [2. asks_handoff] ×0" in text
    assert "class PLANNING,EXECUTING,OBSERVING,DONE visited" in text
    assert "class HANDOFF,FAILED unvisited" in text

    dot = to_dot(agent, trace=result)
    (graph,) = pydot.graph_from_dot_data(dot) or [None]
    assert graph is not None
    nodes = {n.get_name(): n for n in graph.get_nodes()}
    assert nodes["OBSERVING"].get("fillcolor").strip('"') == "#ffe08a"
    assert nodes["HANDOFF"].get("fillcolor").strip('"') != "#ffe08a"
    by_label = {str(e.get("label")).strip('"'): e for e in edges(dot)}
    assert by_label["model_replied [3. asks_tools] ×1"].get("penwidth").strip('"') == "2.5"
    assert by_label["model_failed ×0"].get("color").strip('"') == "#a0a0a0"  # never taken: grey


def test_a_trace_may_be_a_sequence_of_taken_and_counts_repeats() -> None:
    agent = example_agent()
    loop = [
        Taken(Phase.PLANNING, "model_replied", Phase.EXECUTING, 1, 2),
        Taken(Phase.EXECUTING, "tools_finished", Phase.OBSERVING, 2, 7),
        Taken(Phase.OBSERVING, "observed", Phase.PLANNING, 3),  # a wrong index is looked up
    ]
    text = to_mermaid(agent, trace=loop * 3 + [Taken(Phase.PLANNING, "model_replied", Phase.DONE, 10, 5)])
    assert "tools_finished ×3" in text and "observed (auto) ×3" in text
    assert "PLANNING --> DONE : model_replied [else] ×1" in text


def test_a_trace_of_another_machine_is_a_typed_error() -> None:
    _, result = agent_run()
    with pytest.raises(DiagramError, match="agent:a"):
        to_dot(Agent("other"), trace=result)
    with pytest.raises(DiagramError, match="does not declare"):
        to_mermaid(Parent("p", {}), trace=[Taken(Phase.PLANNING, "model_replied", Phase.DONE, 1)])


def test_child_runs_are_overlaid_on_their_clusters() -> None:
    parent = two_levels()
    result = run_sync(parent, "go")
    assert result.ok
    text = to_mermaid(parent, trace=result)
    assert "EXECUTING --> researcher : runs ×1" in text
    assert "review_EXECUTING --> review_writer : runs ×1" in text
    assert "researcher_EXECUTING --> researcher_OBSERVING : tools_finished ×1" in text
    assert "researcher_PLANNING --> researcher_DONE : model_replied [else] ×1" in text
    assert "review_writer_PLANNING --> review_writer_DONE : model_replied [else] ×1" in text
    assert "review_writer_EXECUTING --> review_writer_OBSERVING : tools_finished ×0" in text
    assert "EXECUTING --> DONE : agents_finished [1. all_done] ×1" in text
    assert "review_EXECUTING --> review_DONE : agents_finished [1. all_done] ×1" in text
    visited = next(line for line in text.splitlines() if line.endswith(" visited"))
    assert "researcher_DONE" in visited and "researcher_OBSERVING" in visited
    assert "review_writer_OBSERVING" not in visited and "review_PLANNING" not in visited
    dot = to_dot(parent, trace=result)
    assert "runs ×1" in edge_labels(dot) and "tools_finished ×1" in edge_labels(dot)


# -- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mmd", ".md", ".dot", ".svg", ".png"])
def test_write_picks_the_format_by_suffix(tmp_path: Path, suffix: str) -> None:
    if suffix in (".svg", ".png") and not HAS_DOT:
        pytest.skip("Graphviz `dot` is not installed")
    agent = example_agent()
    path = write(agent, tmp_path / f"agent{suffix}")
    data = path.read_bytes()
    if suffix == ".mmd":
        assert data.decode() == to_mermaid(agent)
    elif suffix == ".md":
        assert data.decode() == f"# agent:assistant\n\n```mermaid\n{to_mermaid(agent)}```\n"
    elif suffix == ".dot":
        assert data.decode() == to_dot(agent)
    elif suffix == ".svg":
        assert data.startswith(b"<?xml") and b"<svg" in data and b"model_replied [3. asks_tools]" in data
    else:
        assert data.startswith(b"\x89PNG\r\n\x1a\n")


def test_write_with_a_trace(tmp_path: Path) -> None:
    agent, result = agent_run()
    assert "×1" in write(agent, tmp_path / "run.dot", trace=result).read_text()


def test_unknown_suffix_is_a_typed_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(DiagramError, match=r"\.mmd"):
        write(example_agent(), tmp_path / "agent.jpeg")
    assert not (tmp_path / "agent.jpeg").exists()


def test_missing_graphviz_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` here
    with pytest.raises(GraphvizNotFound, match="install Graphviz"):
        write(example_agent(), tmp_path / "agent.svg")
    write(example_agent(), tmp_path / "agent.dot")  # text formats need no Graphviz


# -- CLI and the committed diagrams/ --------------------------------------------------------


def test_cli_diagram(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "agent.md"
    assert main(["diagram", "fsm_agents.diagrams:example_agent", "-o", str(out)]) == 0
    assert out.read_text().startswith("# agent:assistant\n")
    assert main(["diagram", "fsm_agents.diagrams:example_agent", "-o", str(tmp_path / "a.gif")]) == 1
    assert "unknown diagram suffix" in capsys.readouterr().err
    assert main(["diagram", "no_such_module:x", "-o", str(tmp_path / "a.mmd")]) == 1
    assert main(["diagram", "fsm_agents.diagrams:SHIPPED", "-o", str(tmp_path / "a.mmd")]) == 1
    assert "expected a machine" in capsys.readouterr().err
    assert main(["diagram", "fsm_agents.diagrams:example_agent", "--depth", "0", "-o", str(tmp_path / "b.mmd")]) == 0


@needs_dot
def test_cli_diagrams_regenerates_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    out = tmp_path / "diagrams"
    assert main(["diagrams", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    for name in shipped():
        assert {f"{name}.mmd", f"{name}.dot", f"{name}.svg"} <= set(names)
    assert main(["diagrams", "--check", "--out", str(out)]) == 0
    (out / "agent.mmd").write_text("stale")
    (out / "gone.dot").write_text("left over")
    (out / "agent.svg").unlink()
    capsys.readouterr()
    assert main(["diagrams", "--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "agent.mmd" in err and "gone.dot" in err and "agent.svg" in err
    assert (out / "agent.mmd").read_text() == "stale"  # --check writes nothing
    assert main(["diagrams", "--out", str(out)]) == 0
    assert not (out / "gone.dot").exists()
    assert main(["diagrams", "--check", "--out", str(out)]) == 0


def test_stale_and_regenerate_on_a_chosen_set(tmp_path: Path) -> None:
    machines = {"one": "fsm_agents.diagrams:example_agent"}
    assert set(stale(tmp_path, machines)[0]) == set(generate(machines, svg=HAS_DOT))
    assert regenerate(tmp_path, machines) if HAS_DOT else True
    if HAS_DOT:
        assert stale(tmp_path, machines) == ([], [])
        assert regenerate(tmp_path, machines) == []


def test_committed_diagrams_are_up_to_date(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails when diagrams/ is out of date: run `fsm-agents diagrams` and commit the result."""
    monkeypatch.syspath_prepend(str(REPO))
    bad, _notes = stale(REPO / "diagrams")
    assert not bad, f"stale diagrams (run `fsm-agents diagrams` and commit): {bad}"
