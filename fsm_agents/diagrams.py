"""Diagrams of machines, drawn from the very compiled `Table` that runs (`machine.table`).

- `to_mermaid(machine, trace=None) -> str`: a Mermaid `stateDiagram-v2`
  (https://mermaid.js.org/syntax/stateDiagram.html).
- `to_dot(machine, trace=None) -> str`: a Graphviz DOT digraph built with pydot
  (https://graphviz.org/doc/info/lang.html, attributes: https://graphviz.org/doc/info/attrs.html).
- `write(machine, path, trace=None)`: the suffix of `path` picks `.mmd`, `.md` (Mermaid in a
  fenced block under a title line), `.dot`, `.svg` or `.png` (rendered by the local Graphviz `dot`
  binary; no network service).

What is drawn (docs/architecture.md, Diagrams): one state per phase of the table (the initial one entered from a
start dot, the final ones as double circles / Mermaid end states), one edge per compiled
transition labelled `event [guard]`. Guards of one event out of one phase carry the order `step`
tries them, `event [1. guard]`, `event [2. guard]`, ..., and the unguarded fallback reads
`event [else]`. Internal events that `step` raises itself are dashed (DOT) or suffixed `(auto)`
(Mermaid). A pattern is drawn at two levels: its own phase machine, and each machine it runs
(`machine.children()`) as a named cluster / composite state laid out in the pattern's logic —
stages in order (Sequential), fan-out then fan-in (Parallel, Competitive with its evaluator),
routes with their labels and the default as `else` (Router), workers as the manager's tools
(ManagerWorker), executor / subtask / synthesizer with the depth bound (Recursive), handlers per
event type (EventDriven); an agent loop with handoffs (Handoffs) adds who may hand off to whom.
Nested patterns nest, down to `depth` levels (deeper children: one box each); a pattern that
runs itself is drawn as a reference box.

A `trace` (a `RunResult`, e.g. from `fsm_agents.viewer.load_run`, or a sequence of `Taken`)
overlays the path a run took: visited states highlighted, each transition labelled with how
often it fired (`×3`, `×0`), never-taken edges greyed (DOT); child runs are counted on the edges
that start them and overlaid on their clusters.

Output is deterministic (table and `children()` order, no object ids), so committed diagrams can
be compared byte for byte. `SHIPPED` (plus `examples.patterns.SHIPPED_PATTERNS` when that module
exists) names the machines whose diagrams live in `diagrams/`; `generate`/`stale` regenerate and
check them (CLI: `fsm-agents diagrams [--check]`).
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pydot

from fsm_agents.agent import Agent, AgentMachine
from fsm_agents.errors import DiagramError, FsmAgentsError, GraphvizNotFound  # noqa: F401 - re-exported here
from fsm_agents.events import AgentsFinished, Taken
from fsm_agents.guardrails import GuardrailResult
from fsm_agents.loading import load_object
from fsm_agents.machine import Machine, Table, Transition
from fsm_agents.patterns.event_driven import EventDrivenMachine
from fsm_agents.patterns.handoffs import Handoffs
from fsm_agents.patterns.manager import ManagerWorker
from fsm_agents.patterns.parallel import Competitive, Parallel
from fsm_agents.patterns.recursive import Recursive
from fsm_agents.patterns.router import DEFAULT_ROUTE, Router
from fsm_agents.patterns.sequential import Sequential
from fsm_agents.runtime import RunResult, as_machine
from fsm_agents.state import Phase
from fsm_agents.tools import ask_user, tool

__all__ = [
    "FORMATS",
    "SHIPPED",
    "DiagramError",
    "GraphvizNotFound",
    "example_agent",
    "generate",
    "graphviz_version",
    "regenerate",
    "render",
    "shipped",
    "stale",
    "to_dot",
    "to_mermaid",
    "write",
]

FORMATS = (".mmd", ".md", ".dot", ".svg", ".png")

#: name → "module:object_or_factory" of every machine whose diagrams are committed in `diagrams/`
#: (the patterns' entries are merged in from `examples.patterns.SHIPPED_PATTERNS` by `shipped()`).
SHIPPED: dict[str, str] = {
    "agent": "fsm_agents.diagrams:example_agent",
    "agent_approval": "fsm_agents.diagrams:example_approval_agent",
    "agent_output_function": "fsm_agents.diagrams:example_output_function_agent",
    "agent_guardrails": "fsm_agents.diagrams:example_guarded_agent",
}

Trace = RunResult | Sequence[Taken]


# -- the trace overlay -------------------------------------------------------------------------


@dataclass
class _Overlay:
    """What a run (or several runs of the same machine) did: visited phases, how often each
    transition (by table index) fired, and the child runs by child name."""

    visited: set[Phase] = field(default_factory=set)
    counts: Counter[int] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)
    children: dict[str, _Overlay] = field(default_factory=dict)

    def merge(self, other: _Overlay) -> None:
        self.visited |= other.visited
        self.counts.update(other.counts)
        self.runs.update(other.runs)
        for key, child in other.children.items():
            self.children.setdefault(key, _Overlay()).merge(child)


def _index_of(machine: Machine, taken: Taken) -> int:
    transitions = machine.table.transitions
    if 0 <= taken.index < len(transitions):
        t = transitions[taken.index]
        if (t.source, t.event, t.target) == (taken.source, taken.event, taken.target):
            return taken.index
    for t in transitions:
        if (t.source, t.event, t.target) == (taken.source, taken.event, taken.target):
            return t.index
    raise DiagramError(
        f"the trace took {taken.source} --{taken.event}--> {taken.target}, which {machine.name} does not declare: "
        "is the trace from another machine?"
    )


def _overlay_of_trace(machine: Machine, trace: Sequence[Taken]) -> _Overlay:
    overlay = _Overlay()
    for taken in trace:
        overlay.counts[_index_of(machine, taken)] += 1
        overlay.visited.add(taken.target)
    if trace:
        overlay.visited.add(trace[0].source)
    return overlay


def _overlay_of_result(machine: Machine, result: RunResult) -> _Overlay:
    if result.snapshot.machine != machine.name:
        raise DiagramError(f"the run is of {result.snapshot.machine!r}, not of {machine.name!r}")
    overlay = _overlay_of_trace(machine, result.trace)
    overlay.visited.add(result.snapshot.phase)
    children = machine.children()
    outcomes = [o for e in result.events if isinstance(e, AgentsFinished) for o in e.outcomes]
    # child runs are counted from the outcomes the parent received (a stored run may come
    # without its children's logs); their own transitions from `result.children`
    overlay.runs.update(o.machine for o in outcomes if o.machine in children)
    by_task = {o.task_id: o.machine for o in outcomes}
    by_name = {child.name: key for key, child in children.items()}
    for task_id, child_result in result.children.items():
        key = by_task.get(task_id) or by_name.get(child_result.snapshot.machine)
        if key is None or key not in children:
            continue
        overlay.children.setdefault(key, _Overlay()).merge(_overlay_of_result(children[key], child_result))
    return overlay


def _overlay(machine: Machine, trace: Trace | None) -> _Overlay | None:
    if trace is None:
        return None
    if isinstance(trace, RunResult):
        return _overlay_of_result(machine, trace)
    return _overlay_of_trace(machine, tuple(trace))


# -- the drawn tree: a machine, its children laid out in the pattern's logic ------------------


@dataclass
class _Slot:
    """One child run drawn inside its parent: a named cluster (or one box when collapsed)."""

    key: str  # the child's name in the parent's `children()`
    title: str  # the cluster's title, e.g. "stage 1: research"
    machine: Machine
    prefix: str  # id prefix of the child's states (and its cluster)
    node: _Node | None = None  # the child's drawing (None: collapsed to one box)
    recursive: bool = False  # the child is the parent itself or an ancestor (drawn as a reference)


@dataclass
class _Link:
    """An edge of the pattern's logic: from a phase or a slot to a phase or a slot."""

    src: Phase | int  # a phase of this machine, or the index of a slot
    dst: Phase | int
    label: str
    runs: bool = False  # a child run (its label gets the run count in an overlay)
    key: str = ""  # the child key whose runs are counted


@dataclass
class _Node:
    machine: Machine
    prefix: str  # id prefix of this machine's states ("" for the root)
    overlay: _Overlay | None
    slots: list[_Slot] = field(default_factory=list)
    links: list[_Link] = field(default_factory=list)
    notes: dict[Phase, str] = field(default_factory=dict)  # a second line under a phase's name
    # Handoffs: who may hand off to whom (agent -> targets), in declaration order, and the entry
    handoffs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    entry: str = ""

    @property
    def table(self) -> Table:
        return self.machine.table

    def sid(self, phase: Phase) -> str:
        return f"{self.prefix}_{phase.value}" if self.prefix else phase.value

    def start_id(self) -> str:
        return f"{self.prefix}__start" if self.prefix else "__start"


# words Mermaid's state diagram grammar gives a meaning (`classDef default` styles every state)
_RESERVED = frozenset({"default", "end", "state", "direction", "note", "class", "classDef", "as", "style"})


def _slug(name: str) -> str:
    slug = re.sub(r"\W+", "_", name).strip("_") or "m"
    return f"{slug}_" if slug in _RESERVED else slug


def _short(name: str) -> str:
    return name.split(":", 1)[1] if ":" in name else name


def _layout(m: Machine) -> tuple[list[tuple[str, str]], list[_Link], dict[Phase, str]]:
    """The pattern's logic: its child slots `(key, title)` in drawing order, the links between
    its phases and the slots, and notes on its phases. Any other machine with children gets one
    slot per child, run from EXECUTING (or its initial phase)."""
    ex, ob, pl = Phase.EXECUTING, Phase.OBSERVING, Phase.PLANNING
    slots: list[tuple[str, str]] = []
    links: list[_Link] = []
    notes: dict[Phase, str] = {}
    if isinstance(m, Sequential):
        for i, stage in enumerate(m.stages):
            slots.append((stage, f"stage {i + 1}: {stage}"))
            links.append(_Link(ex, i, f"runs stage {i + 1}", runs=True, key=stage))
            if i:
                links.append(
                    _Link(i - 1, i, "its output feeds" if not m.shared_conversation else "then (whole conversation)")
                )
    elif isinstance(m, Parallel):
        competitive = isinstance(m, Competitive)
        for i, b in enumerate(m.branches):
            slots.append((b, f"{m.label} {i + 1}: {b}"))
        fan_out = "fan-out (concurrent)" if m.max_concurrency is None else f"fan-out (≤ {m.max_concurrency} at once)"
        links.append(_Link(ex, 0, fan_out, runs=True, key=m.branches[0]))
        links.extend(_Link(ex, i, "", runs=True, key=b) for i, b in enumerate(m.branches) if i)
        if m.synthesizer:
            j = len(slots)
            slots.append((m.role, f"{m.role}: {_short(m.children()[m.role].name)}"))
            for i in range(len(m.branches)):
                links.append(_Link(i, j, "fan-in" if i == 0 else ""))
            links.append(_Link(ob, j, f"runs the {m.role}", runs=True, key=m.role))
            notes[ob] = "every answer, attributed"
        else:
            for i in range(len(m.branches)):
                links.append(_Link(i, ob, "fan-in" if i == 0 else ""))
        if competitive:
            notes[ex] = "candidates, then the evaluator"
    elif isinstance(m, Router):
        notes[pl] = f"classifier: {m.classifier.name}"
        for i, (low, label) in enumerate(m.labels.items()):
            slots.append((label, f"route {label!r}"))
            links.append(_Link(ex, i, f"{i + 1}. label = {low!r}", runs=True, key=label))
        if m.has_default:
            slots.append((DEFAULT_ROUTE, f"default: {_short(m.children()[DEFAULT_ROUTE].name)}"))
            links.append(_Link(ex, len(slots) - 1, "else", runs=True, key=DEFAULT_ROUTE))
    elif isinstance(m, ManagerWorker):
        notes[pl] = f"manager: {m.manager.name}"
        for i, (tool, w) in enumerate(m.delegate_tools.items()):
            slots.append((w, f"worker: {w}"))
            links.append(_Link(ex, i, f"tool {tool}", runs=True, key=w))
            links.append(_Link(i, ob, "result → tool message" if i == 0 else ""))
    elif isinstance(m, Recursive):
        notes[pl] = f"decomposer: {m.decomposer.name}"
        slots.append(("executor", f"executor: {_short(m.children()['executor'].name)}"))
        links.append(_Link(ex, 0, "EXECUTE", runs=True, key="executor"))
        slots.append(("subtask", f"subtask: {_short(m.name)} again, depth + 1 (max_depth {m.max_depth})"))
        links.append(_Link(ex, 1, "DECOMPOSE: each subtask", runs=True, key="subtask"))
        if m.has_synthesizer:
            slots.append(("synthesizer", f"synthesizer: {_short(m.children()['synthesizer'].name)}"))
            links.append(_Link(ob, 2, "runs the synthesizer", runs=True, key="synthesizer"))
            links.append(_Link(1, 2, "subtask results"))
    elif isinstance(m, EventDrivenMachine):
        for i, event_type in enumerate(m.children()):
            slots.append((event_type, f"on {event_type!r}"))
            links.append(_Link(ex, i, f"event {event_type!r}", runs=True, key=event_type))
    elif isinstance(m, Handoffs):
        notes[pl] = "the active agent"
    else:
        anchor = ex if ex in m.table.phases else m.table.initial
        for i, key in enumerate(m.children()):
            slots.append((key, key))
            links.append(_Link(anchor, i, "runs", runs=True, key=key))
    return slots, links, notes


def _tree(machine: Machine, overlay: _Overlay | None, depth: int) -> _Node:
    if depth < 0:
        raise DiagramError(f"depth must be >= 0, got {depth}")
    prefixes: set[str] = set()

    def build(m: Machine, prefix: str, level: int, ancestors: tuple[Machine, ...], ov: _Overlay | None) -> _Node:
        slots, links, notes = _layout(m)
        node = _Node(m, prefix, ov, links=links, notes=notes)
        if isinstance(m, AgentMachine) and any(a.handoffs for a in m.agents.values()):
            node.entry = m.entry.name
            for name, a in m.agents.items():
                node.handoffs[name] = tuple(h if isinstance(h, str) else h.name for h in a.handoffs)
        children = m.children()
        for key, title in slots:
            child = children[key]
            slug = base = _slug(f"{prefix}_{key}" if prefix else key)
            n = 1
            while slug in prefixes:
                n += 1
                slug = f"{base}_{n}"
            prefixes.add(slug)
            slot = _Slot(key, title, child, slug)
            if any(child is a for a in (*ancestors, m)):
                slot.recursive = True
            elif level < depth:
                child_ov = None
                if ov is not None:
                    child_ov = ov.children.get(key, _Overlay())
                slot.node = build(child, slug, level + 1, (*ancestors, m), child_ov)
            node.slots.append(slot)
        return node

    return build(machine, "", 0, (), overlay)


def _labels(node: _Node, auto: str = "") -> dict[int, str]:
    """Edge label of each transition (by table index): `event [guard]`, and when one phase has
    several transitions on one event, the order `step` tries them: `event [1. guard]`, ...,
    `event [else]` for the unguarded fallback. Internal events get `auto`; an overlay adds `×n`."""
    table = node.table
    out: dict[int, str] = {}
    for (_, _), group in table.by_key.items():
        numbered = len(group) > 1
        for i, t in enumerate(group):
            guard = " ∧ ".join(g.label for g in t.guards)
            if not numbered:
                text = f"{t.event} [{guard}]" if guard else t.event
            elif guard:
                text = f"{t.event} [{i + 1}. {guard}]"
            else:
                text = f"{t.event} [else]"
            if t.event in table.internal:
                text += auto
            if node.overlay is not None:
                text += f" ×{node.overlay.counts[t.index]}"
            out[t.index] = text
    return out


def _run_label(node: _Node, link: _Link) -> str:
    if node.overlay is None or not link.runs:
        return link.label
    count = node.overlay.runs[link.key]
    return f"{link.label} ×{count}".strip()


# -- Mermaid -----------------------------------------------------------------------------------


def _mm_text(text: str) -> str:
    # `;` ends a statement, `"` a quoted name, `:` starts a label in Mermaid; keep labels on one line
    return text.replace(";", ",").replace('"', "'").replace("\n", " ")


def _mm_state(node: _Node, p: Phase) -> str:
    note = node.notes.get(p)
    return f"{p.value} ({note})" if note else p.value


def _mm_slot_id(slot: _Slot) -> str:
    return slot.prefix


def _mermaid_lines(node: _Node, indent: str, classes: dict[str, list[str]]) -> list[str]:
    table = node.table
    lines = [f'{indent}state "{_mm_text(_mm_state(node, p))}" as {node.sid(p)}' for p in table.phases]
    lines.append(f"{indent}[*] --> {node.sid(table.initial)}")
    labels = _labels(node, " (auto)")
    for t in table.transitions:
        lines.append(f"{indent}{node.sid(t.source)} --> {node.sid(t.target)} : {_mm_text(labels[t.index])}")
    lines.extend(f"{indent}{node.sid(p)} --> [*]" for p in table.phases if p in table.finals)
    for slot in node.slots:
        if slot.node is not None:
            lines.append(f'{indent}state "{_mm_text(slot.title)}" as {slot.prefix} {{')
            lines.extend(_mermaid_lines(slot.node, indent + "    ", classes))
            lines.append(f"{indent}}}")
        else:
            what = "recursive: this pattern again" if slot.recursive else slot.machine.name
            lines.append(f'{indent}state "{_mm_text(f"{slot.title} — {what}")}" as {slot.prefix}')
            classes["reference" if slot.recursive else "collapsed"].append(slot.prefix)
    if node.handoffs:
        group = f"{node.prefix}_handoffs" if node.prefix else "handoffs"
        lines.append(f'{indent}state "{_mm_text(_handoffs_title(node))}" as {group} {{')
        for agent in node.handoffs:
            lines.append(f'{indent}    state "{_mm_text(agent)}" as {group}_{_slug(agent)}')
        lines.append(f"{indent}    [*] --> {group}_{_slug(node.entry)}")
        for agent, targets in node.handoffs.items():
            for target in targets:
                lines.append(
                    f"{indent}    {group}_{_slug(agent)} --> {group}_{_slug(target)} : transfer_to_{_mm_text(target)}"
                )
        lines.append(f"{indent}}}")
        if Phase.HANDOFF in table.phases:
            lines.append(f"{indent}{node.sid(Phase.HANDOFF)} --> {group} : the active agent changes")

    def end(x: Phase | int) -> str:
        return node.sid(x) if isinstance(x, Phase) else node.slots[x].prefix

    for link in node.links:
        label = _run_label(node, link)
        lines.append(f"{indent}{end(link.src)} --> {end(link.dst)}" + (f" : {_mm_text(label)}" if label else ""))
    for p in table.phases:
        if node.overlay is not None:
            classes["visited" if p in node.overlay.visited else "unvisited"].append(node.sid(p))
        elif p in table.finals:
            classes["done" if p is Phase.DONE else "failed"].append(node.sid(p))
    return lines


_MERMAID_CLASSES = {
    "done": "fill:#e3f4e5,stroke:#2e7d32",
    "failed": "fill:#fde7e7,stroke:#c62828",
    "visited": "fill:#ffe08a,stroke:#b36b00,stroke-width:2px",
    "unvisited": "fill:#f5f5f5,stroke:#9e9e9e,color:#9e9e9e",
    "reference": "fill:#ffffff,stroke:#6a5acd,stroke-dasharray:4 3",
    "collapsed": "fill:#f3f0ff,stroke:#6a5acd",
}

DEFAULT_DEPTH = 3  # levels of child machines drawn inside their parent


def to_mermaid(machine: Any, trace: Trace | None = None, *, depth: int = DEFAULT_DEPTH) -> str:
    """The machine as a Mermaid `stateDiagram-v2` text, ending with a newline.

    `machine`: a `Machine`, an `Agent` or a pattern. States are `state "PHASE" as <id>` (ids are
    prefixed with the child's name inside composite states), `[*] --> initial`, `final --> [*]`,
    one `A --> B : label` line per compiled transition. A label is `event [guard]`; when a phase
    has several transitions on one event they carry the order `step` tries them,
    `event [1. guard]`, `event [2. guard]`, ..., and the unguarded fallback `event [else]`;
    internal events end with `(auto)`. A pattern's children are composite states
    `state "stage 1: research" as <id> { ... }` laid out in the pattern's logic (stages in order,
    fan-out/fan-in, routes with their labels, workers as tools, ...), down to `depth` levels
    (deeper children are one state each; `depth=0`: every child is one state). With a `trace`
    (a `RunResult` or a sequence of `Taken`) every label ends with its count (`×3`) and states
    get the `visited`/`unvisited` classes. Raises `DiagramError` for a trace of another machine
    or `depth < 0`, `TypeError` for a non-machine.
    Format: https://mermaid.js.org/syntax/stateDiagram.html
    """
    m = as_machine(machine)
    root = _tree(m, _overlay(m, trace), depth)
    classes: dict[str, list[str]] = {name: [] for name in _MERMAID_CLASSES}
    lines = ["stateDiagram-v2", "    direction LR"]
    lines.extend(_mermaid_lines(root, "    ", classes))
    for name, style in _MERMAID_CLASSES.items():
        if classes[name]:
            lines.append(f"    classDef {name} {style}")
    for name, ids in classes.items():
        if ids:
            lines.append(f"    class {','.join(ids)} {name}")
    return "\n".join(lines) + "\n"


# -- Graphviz DOT ------------------------------------------------------------------------------

_FONT = "Helvetica"
_INK = "#263238"
_GREY = "#a0a0a0"
_RUNS = "#5b4bb7"


def _dot_quote(text: str) -> str:
    """`text` as a quoted DOT string: quotes and backslashes escaped, newlines as `\\n` (a
    centred line break in Graphviz labels)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _state_attrs(node: _Node, phase: Phase) -> dict[str, Any]:
    table = node.table
    note = node.notes.get(phase)
    attrs: dict[str, Any] = {"label": _dot_quote(f"{phase.value}\n{note}" if note else phase.value)}
    if phase in table.finals:
        attrs.update(shape="doublecircle", fontsize="12", width="0.9", fixedsize="true", margin="0")
        attrs["fillcolor"] = "#e3f4e5" if phase is Phase.DONE else "#fde7e7"
        attrs["color"] = "#2e7d32" if phase is Phase.DONE else "#c62828"
    if node.overlay is not None:
        if phase in node.overlay.visited:
            attrs.update(fillcolor="#ffe08a", color="#b36b00", penwidth="2.5")
        else:
            attrs.update(fillcolor="#f7f7f7", color=_GREY, fontcolor=_GREY)
    return attrs


def _edge_attrs(node: _Node, t: Transition, label: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {"label": _dot_quote(label)}
    if t.event in node.table.internal:
        attrs["style"] = "dashed"
    if t.source == t.target:
        # a self-loop's label as an external label under the state (Graphviz keeps xlabels off
        # other labels; a plain label would sit on the loop, into its neighbours' labels); the
        # empty first line keeps the text clear of the loop's curve
        attrs.update(tailport="s", headport="s", label="", xlabel=_dot_quote("\n" + label))
    if node.overlay is not None:
        if node.overlay.counts[t.index]:
            attrs.update(penwidth="2.5", color="#b36b00", fontcolor="#7a4500")
        else:
            attrs.update(color=_GREY, fontcolor=_GREY)
    return attrs


def _handoffs_title(node: _Node) -> str:
    bound = getattr(node.machine, "max_handoffs", None)
    limit = f", at most {bound} per run" if isinstance(bound, int) else ""
    return f"who hands off to whom (transfer_to_* tools{limit})"


def _dot_machine(node: _Node, graph: pydot.Graph) -> None:
    table = node.table
    start = node.start_id()
    graph.add_node(pydot.Node(start, shape="point", width="0.18", label="", fillcolor=_INK, color=_INK))
    for phase in table.phases:
        graph.add_node(pydot.Node(node.sid(phase), **_state_attrs(node, phase)))
    graph.add_edge(pydot.Edge(start, node.sid(table.initial), label=""))
    labels = _labels(node)
    for t in table.transitions:
        graph.add_edge(pydot.Edge(node.sid(t.source), node.sid(t.target), **_edge_attrs(node, t, labels[t.index])))
    for slot in node.slots:
        if slot.node is None:
            what = "recursive: this pattern again" if slot.recursive else slot.machine.name
            graph.add_node(
                pydot.Node(
                    f"{slot.prefix}__box",
                    label=_dot_quote(f"{slot.title}\n{what}"),
                    style="rounded,dashed" if slot.recursive else "rounded,filled",
                    fillcolor="#f3f0ff",
                    color=_RUNS,
                    fontcolor=_RUNS,
                )
            )
            continue
        cluster = pydot.Cluster(
            slot.prefix,
            label=_dot_quote(slot.title),
            style="rounded,dashed",
            color=_RUNS,
            fontcolor=_RUNS,
            fontsize="15",
            labeljust="l",
            margin="14",
        )
        _dot_machine(slot.node, cluster)
        graph.add_subgraph(cast(pydot.Subgraph, cluster))  # a Cluster is accepted; the stubs say Subgraph
    if node.handoffs:
        group = f"{node.prefix}_handoffs" if node.prefix else "handoffs"
        cluster = pydot.Cluster(
            group,
            label=_dot_quote(_handoffs_title(node)),
            style="rounded,dashed",
            color=_RUNS,
            fontcolor=_RUNS,
            fontsize="15",
            labeljust="l",
            margin="14",
        )
        cluster.add_node(pydot.Node(f"{group}__start", shape="point", width="0.18", label="", fillcolor=_INK, color=_INK))
        for agent in node.handoffs:
            cluster.add_node(pydot.Node(f"{group}_{_slug(agent)}", label=_dot_quote(agent), fillcolor="#f3f0ff"))
        cluster.add_edge(pydot.Edge(f"{group}__start", f"{group}_{_slug(node.entry)}", label='"entry"'))
        drawn: set[tuple[str, str]] = set()
        for agent, targets in node.handoffs.items():
            for target in targets:
                if (target, agent) in drawn:
                    continue  # drawn as one two-headed arrow
                both = agent in node.handoffs.get(target, ())
                drawn.add((agent, target))
                arrow: dict[str, Any] = {"color": _RUNS, "penwidth": "1.3"}
                if both:
                    arrow["dir"] = "both"
                cluster.add_edge(pydot.Edge(f"{group}_{_slug(agent)}", f"{group}_{_slug(target)}", **arrow))
        graph.add_subgraph(cast(pydot.Subgraph, cluster))
        if Phase.HANDOFF in table.phases:
            graph.add_edge(
                pydot.Edge(
                    node.sid(Phase.HANDOFF),
                    f"{group}__start",
                    label='"the active agent changes"',
                    style="dotted",
                    color=_RUNS,
                    fontcolor=_RUNS,
                    lhead=f"cluster_{group}",
                )
            )

    def end(x: Phase | int, head: bool) -> tuple[str, dict[str, str]]:
        if isinstance(x, Phase):
            return node.sid(x), {}
        slot = node.slots[x]
        if slot.node is None:
            return f"{slot.prefix}__box", {}
        inner = slot.node
        if head:
            return inner.start_id(), {"lhead": f"cluster_{slot.prefix}"}
        anchor = Phase.DONE if Phase.DONE in inner.table.phases else inner.table.initial
        return inner.sid(anchor), {"ltail": f"cluster_{slot.prefix}"}

    for link in node.links:
        src, a = end(link.src, head=False)
        dst, b = end(link.dst, head=True)
        link_attrs: dict[str, Any] = {"style": "dotted", "color": _RUNS, "fontcolor": _RUNS, "penwidth": "1.5", **a, **b}
        label = _run_label(node, link)
        if label:
            link_attrs["label"] = _dot_quote(label)
        graph.add_edge(pydot.Edge(src, dst, **link_attrs))


def to_dot(machine: Any, trace: Trace | None = None, *, depth: int = DEFAULT_DEPTH) -> str:
    """The machine as a Graphviz DOT `digraph` text (built with pydot), ending with a newline.

    `machine`: a `Machine`, an `Agent` or a pattern. Node ids are phase names (`PLANNING`),
    prefixed inside clusters (`research_PLANNING`); a point node `__start` enters the initial
    state; final states are `doublecircle`s; each compiled transition is one edge labelled like
    `to_mermaid`'s (`event [1. guard]` ... `event [else]`), dashed for internal events. A
    pattern's children are `subgraph cluster_<key>`s titled by their role (`stage 1: research`,
    `route 'billing'`, `worker: x`, ...), joined by dotted edges in the pattern's logic, down to
    `depth` levels (deeper children: one box each). With a `trace` (a `RunResult` or a sequence
    of `Taken`) labels end with their counts (`×3`), visited states are filled amber, never-taken
    edges grey. Raises `DiagramError` for a trace of another machine or `depth < 0`,
    `TypeError` for a non-machine. Format: https://graphviz.org/doc/info/lang.html
    """
    m = as_machine(machine)
    root = _tree(m, _overlay(m, trace), depth)
    graph = pydot.Dot(
        _slug(m.name),
        graph_type="digraph",
        label=_dot_quote(m.name),
        labelloc="t",
        fontname=_FONT,
        fontsize="18",
        rankdir="LR",
        compound="true",
        nodesep="0.5",
        ranksep="0.7",
        pad="0.3",
        bgcolor="white",
        forcelabels="true",
    )
    graph.set_node_defaults(
        shape="box",
        style="rounded,filled",
        fillcolor="#eef3fb",
        color=_INK,
        fontname=_FONT,
        fontsize="14",
        margin="0.2,0.1",
    )
    graph.set_edge_defaults(fontname=_FONT, fontsize="12", color=_INK, fontcolor=_INK, arrowsize="0.8")
    _dot_machine(root, graph)
    return str(graph.to_string()).rstrip("\n") + "\n"


# -- rendering and files ---------------------------------------------------------------------


def render(dot_text: str, fmt: str) -> bytes:
    """Render DOT text with the local Graphviz `dot` binary (`fmt`: "svg" or "png"; PNG at 144
    dpi). Raises `GraphvizNotFound` when `dot` is not installed, `DiagramError` when it fails."""
    if fmt not in ("svg", "png"):
        raise DiagramError(f"render() makes svg or png, not {fmt!r}")
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFound()
    args = [exe, f"-T{fmt}"] + (["-Gdpi=144"] if fmt == "png" else [])
    try:
        proc = subprocess.run(args, input=dot_text.encode(), capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DiagramError(f"Graphviz `dot` could not render the diagram: {exc}") from exc
    if proc.returncode != 0:
        raise DiagramError(f"Graphviz `dot` failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def graphviz_version() -> str | None:
    """The local Graphviz version (e.g. "2.43.0"), or None when `dot` is not installed."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    proc = subprocess.run([exe, "-V"], capture_output=True, timeout=30, check=False)
    found = re.search(r"version\s+(\S+)", proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace"))
    return found.group(1) if found else None


def _markdown(machine: Machine, mermaid: str) -> str:
    return f"# {machine.name}\n\n```mermaid\n{mermaid}```\n"


def _content(machine: Machine, suffix: str, trace: Trace | None, depth: int) -> bytes:
    if suffix == ".mmd":
        return to_mermaid(machine, trace, depth=depth).encode()
    if suffix == ".md":
        return _markdown(machine, to_mermaid(machine, trace, depth=depth)).encode()
    if suffix == ".dot":
        return to_dot(machine, trace, depth=depth).encode()
    if suffix in (".svg", ".png"):
        return render(to_dot(machine, trace, depth=depth), suffix[1:])
    raise DiagramError(f"unknown diagram suffix {suffix!r}: use one of {', '.join(FORMATS)}")


def write(machine: Any, path: str | Path, trace: Trace | None = None, *, depth: int = DEFAULT_DEPTH) -> Path:
    """Write the diagram of `machine` (a `Machine`, an `Agent` or a pattern) to `path`; the suffix
    picks the format: `.mmd` (Mermaid), `.md` (a `# name` title line and a ```mermaid block),
    `.dot` (Graphviz DOT), `.svg`/`.png` (rendered by the local Graphviz `dot`). `trace` and
    `depth` as for `to_dot`. Returns the path. Raises `DiagramError` for an unknown suffix or a
    folder that does not exist (nothing is written), `GraphvizNotFound` for SVG/PNG without
    Graphviz."""
    path = Path(path)
    if not path.parent.is_dir():
        raise DiagramError(f"cannot write {path}: the folder {path.parent} does not exist")
    data = _content(as_machine(machine), path.suffix.lower(), trace, depth)
    path.write_bytes(data)
    return path


# -- the shipped machines and the committed diagrams/ -----------------------------------------


def example_agent() -> Any:
    """A representative agent (a tool and a handoff, so every transition of the chart is live)
    for the committed diagram of the agent loop."""

    @tool
    def search(query: str) -> str:
        """Search the knowledge base."""
        return query

    specialist = Agent("specialist", "Answer questions the assistant hands over.")
    return Agent("assistant", "Help the user; use tools; hand over when needed.", tools=[search], handoffs=[specialist])


def example_approval_agent() -> Any:
    """An agent whose refunds wait for a human's approval, and who may ask the user: the
    committed diagram of the loop that waits (EXECUTING --input_received--> EXECUTING)."""

    @tool(requires_approval=True)
    def refund(order: str, amount: float) -> str:
        """Refund an order (a human approves each refund)."""
        return f"refunded {amount} on {order}"

    return Agent("support", "Refund orders when asked; ask the user when unsure.", tools=[refund, ask_user()])


def example_output_function_agent() -> Any:
    """An agent whose typed answer is its output function's return value: the committed
    diagram of the loop that ends on a tool's result (OBSERVING --observed--> DONE)."""

    @tool
    def convert(amount: float, rate: float) -> float:
        """Convert an amount at an exchange rate (the run's answer)."""
        return round(amount * rate, 2)

    return Agent("converter", "Convert the amount the user gives with the convert tool.", output_type=convert)


def example_guarded_agent() -> Any:
    """An agent with an input and an output guardrail: the committed diagram of the guarded loop
    (PLANNING --guardrail_tripped--> FAILED; a final answer checked in EXECUTING before DONE)."""

    def on_topic(ctx: Any, messages: Any) -> GuardrailResult:
        """Trip on requests outside the assistant's remit."""
        return GuardrailResult(tripped=False)

    def no_secrets(ctx: Any, answer: Any) -> GuardrailResult:
        """Trip on answers that leak a secret."""
        return GuardrailResult(tripped="sk-" in str(answer), reason="the answer holds an API key")

    return Agent(
        "guarded", "Answer questions about our product.", input_guardrails=[on_topic], output_guardrails=[no_secrets]
    )


def shipped() -> dict[str, str]:
    """`SHIPPED` plus `examples.patterns.SHIPPED_PATTERNS` when that module exists (name →
    "module:object_or_factory"), in that order."""
    names = dict(SHIPPED)
    try:
        module = importlib.import_module("examples.patterns")
    except ModuleNotFoundError as exc:
        if exc.name not in ("examples", "examples.patterns"):
            raise
        return names
    names.update(getattr(module, "SHIPPED_PATTERNS", {}))
    return names


def generate(machines: Mapping[str, str] | None = None, *, svg: bool = True) -> dict[str, bytes]:
    """The committed diagram files (relative name → bytes) for `machines` (default `shipped()`):
    `<name>.mmd`, `<name>.dot`, `<name>.svg` (unless `svg=False`) per machine, and `README.md`, an
    index with each Mermaid diagram. Raises `FsmAgentsError` when a spec cannot be loaded,
    `GraphvizNotFound` for SVG without Graphviz."""
    specs = shipped() if machines is None else dict(machines)
    files: dict[str, bytes] = {}
    index = [
        "# Diagrams",
        "",
        "Generated by `fsm-agents diagrams` from the compiled transition tables; do not edit by hand",
        "(`tests/test_diagrams.py` fails when a file here is out of date).",
        "",
    ]
    for name, spec in specs.items():
        machine = as_machine(load_object(spec))
        mermaid = to_mermaid(machine)
        dot = to_dot(machine)
        files[f"{name}.mmd"] = mermaid.encode()
        files[f"{name}.dot"] = dot.encode()
        if svg:
            files[f"{name}.svg"] = render(dot, "svg")
        index += [f"## {name}: `{machine.name}`", "", f"`{spec}` — [SVG]({name}.svg), [DOT]({name}.dot)", ""]
        index += ["```mermaid", mermaid.rstrip("\n"), "```", ""]
    files["README.md"] = "\n".join(index).encode()
    return files


_GENERATED = re.compile(r"<!-- Generated by graphviz version (\S+)")


def stale(out: str | Path, machines: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Compare `out` with freshly generated diagrams, writing nothing: `(stale, notes)` where
    `stale` lists relative names that are missing, different, or left over (a `.mmd`/`.dot`/`.svg`
    no shipped machine makes), and `notes` says what could not be compared. An `.svg` is compared
    only when the committed one was made by the local Graphviz version (its text depends on it)."""
    out = Path(out)
    version = graphviz_version()
    expected = generate(machines, svg=version is not None)
    notes: list[str] = []
    if version is None:
        notes.append("Graphviz `dot` is not installed: .svg files were not compared")
    bad: list[str] = []
    for rel, data in expected.items():
        path = out / rel
        if not path.is_file() or path.read_bytes() != data:
            if rel.endswith(".svg") and path.is_file():
                found = _GENERATED.search(path.read_text(errors="replace"))
                if found is None or found.group(1) != version:
                    notes.append(f"{rel}: made by Graphviz {found.group(1) if found else '?'}, not {version}: not compared")
                    continue
            bad.append(rel)
    if out.is_dir():
        names = {Path(rel).stem for rel in expected}
        for path in sorted(out.iterdir()):
            if path.suffix in (".mmd", ".dot", ".svg") and path.stem not in names:
                bad.append(path.name)
    return bad, notes


def regenerate(out: str | Path, machines: Mapping[str, str] | None = None) -> list[str]:
    """Write every diagram of `generate()` into `out` (created if needed), removing left-over
    `.mmd`/`.dot`/`.svg` files of machines no longer shipped; returns the names written or removed
    that changed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = generate(machines)
    changed: list[str] = []
    for rel, data in files.items():
        path = out / rel
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
            changed.append(rel)
    names = {Path(rel).stem for rel in files}
    for path in sorted(out.iterdir()):
        if path.suffix in (".mmd", ".dot", ".svg") and path.stem not in names:
            path.unlink()
            changed.append(path.name)
    return changed
