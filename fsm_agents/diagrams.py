"""Diagrams of machines, drawn from the very compiled `Table` that runs (`machine.table`).

- `to_mermaid(machine, trace=None) -> str`: a Mermaid `stateDiagram-v2`
  (https://mermaid.js.org/syntax/stateDiagram.html).
- `to_dot(machine, trace=None) -> str`: a Graphviz DOT digraph built with pydot
  (https://graphviz.org/doc/info/lang.html, attributes: https://graphviz.org/doc/info/attrs.html).
- `write(machine, path, trace=None)`: the suffix of `path` picks `.mmd`, `.md` (Mermaid in a
  fenced block under a title line), `.dot`, `.svg` or `.png` (rendered by the local Graphviz `dot`
  binary; no network service).

What is drawn: one state per phase of the table (the initial one entered from a start dot, the
final ones as double circles / Mermaid end states), one edge per compiled transition labelled
`event [guard ∧ !guard]` (`Transition.label`), internal events that `step` raises itself dashed
(DOT) or suffixed `(auto)` (Mermaid). Machines a machine runs through `RunAgents`
(`machine.children()`) are drawn as clusters / composite states reached from the parent's
EXECUTING state by a `runs` edge, recursively up to `max_depth`; a child machine already drawn (the
same machine under another name, or a recursive pattern running itself) is referred to, not drawn
again.

A `trace` (a `RunResult`, or a sequence of `Taken`) overlays the path a run took: visited states
highlighted, each transition labelled with how often it fired (`×3`, `×0`), never-taken edges
greyed (DOT); a `RunResult`'s child runs are overlaid on their clusters.

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

from fsm_agents.errors import FsmAgentsError
from fsm_agents.events import AgentsFinished, Taken
from fsm_agents.machine import Machine, Table, Transition
from fsm_agents.runtime import RunResult, as_machine
from fsm_agents.state import Phase

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
SHIPPED: dict[str, str] = {"agent": "fsm_agents.diagrams:example_agent"}

Trace = RunResult | Sequence[Taken]


class DiagramError(FsmAgentsError):
    """A diagram cannot be produced: unknown output suffix, a trace that does not belong to the
    machine, or Graphviz failing to render."""


class GraphvizNotFound(DiagramError):
    """The Graphviz `dot` binary (needed for `.svg`/`.png`) is not on PATH."""

    def __init__(self) -> None:
        super().__init__(
            "rendering SVG/PNG needs the Graphviz `dot` program, which is not on PATH: install Graphviz "
            "(Debian/Ubuntu: `apt-get install graphviz`, macOS: `brew install graphviz`, or `make setup` in this "
            "repository), or write .mmd/.md/.dot instead"
        )


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
    by_task = {o.task_id: o.machine for e in result.events if isinstance(e, AgentsFinished) for o in e.outcomes}
    by_name = {child.name: key for key, child in children.items()}
    for task_id, child_result in result.children.items():
        key = by_task.get(task_id) or by_name.get(child_result.snapshot.machine)
        if key is None or key not in children:
            continue
        overlay.runs[key] += 1
        overlay.children.setdefault(key, _Overlay()).merge(_overlay_of_result(children[key], child_result))
    return overlay


def _overlay(machine: Machine, trace: Trace | None) -> _Overlay | None:
    if trace is None:
        return None
    if isinstance(trace, RunResult):
        return _overlay_of_result(machine, trace)
    return _overlay_of_trace(machine, tuple(trace))


# -- the drawn tree: each machine once, children expanded up to a depth ----------------------


@dataclass
class _Run:
    """A `runs` edge from a parent's EXECUTING state to a child machine."""

    keys: tuple[str, ...]  # the child's names in the parent's `children()`
    node: _Node | None  # the child's drawing (None: not expanded, depth limit)
    names: tuple[str, ...]  # the child machines' own names (several: identical machines drawn once)
    owned: bool  # True: drawn here, inside the parent; False: a reference to a drawing elsewhere
    recursive: bool = False  # a reference to the parent itself or one of its ancestors

    def label(self, parent: _Node) -> str:
        text = "runs" if self.keys == self.names else f"runs {', '.join(self.keys)}"
        if self.recursive:
            text += " (recursive)"
        elif not self.owned and self.node is not None:
            text += " (drawn elsewhere)"
        elif self.node is None:
            text += " (not expanded)"
        if parent.overlay is not None:
            text += f" ×{sum(parent.overlay.runs[k] for k in self.keys)}"
        return text


@dataclass
class _Node:
    machine: Machine
    prefix: str  # id prefix of this machine's states ("" for the root)
    overlay: _Overlay | None
    names: list[str] = field(default_factory=list)  # every machine drawn by this node (identical tables)
    runs: list[_Run] = field(default_factory=list)

    @property
    def table(self) -> Table:
        return self.machine.table

    def sid(self, phase: Phase) -> str:
        return f"{self.prefix}_{phase.value}" if self.prefix else phase.value

    @property
    def anchor(self) -> Phase:
        """The state child runs hang from: EXECUTING (DESIGN §2), else the initial state."""
        return Phase.EXECUTING if Phase.EXECUTING in self.table.phases else self.table.initial


def _signature(machine: Machine) -> tuple[Any, ...]:
    """Machines with equal signatures draw the same picture (e.g. every plain agent loop), so they
    are drawn once: the kind of machine, its compiled transitions and its children by name."""
    return (
        type(machine).__qualname__,
        machine.table.chart.__qualname__,
        tuple((t.source, t.event, t.target, tuple(g.label for g in t.guards)) for t in machine.table.transitions),
        tuple((key, child.name) for key, child in machine.children().items()),
    )


def _slug(name: str) -> str:
    return re.sub(r"\W+", "_", name).strip("_") or "m"


def _tree(machine: Machine, overlay: _Overlay | None, max_depth: int) -> _Node:
    if max_depth < 0:
        raise DiagramError(f"max_depth must be >= 0, got {max_depth}")
    seen: dict[tuple[Any, ...], _Node] = {}
    prefixes: set[str] = set()

    ancestors: list[tuple[Any, ...]] = []

    def build(m: Machine, prefix: str, depth: int) -> _Node:
        node = _Node(m, prefix, _Overlay() if overlay is not None else None, [m.name])
        seen[_signature(m)] = node
        ancestors.append(_signature(m))
        groups: dict[tuple[Any, ...], tuple[Machine, list[str], list[str]]] = {}
        for key, child in m.children().items():
            _, keys, names = groups.setdefault(_signature(child), (child, [], []))
            keys.append(key)
            if child.name not in names:
                names.append(child.name)
        for sig, (child, keys, names) in groups.items():
            if sig in seen:
                target = seen[sig]
                target.names.extend(n for n in names if n not in target.names)
                node.runs.append(_Run(tuple(keys), target, tuple(names), owned=False, recursive=sig in ancestors))
            elif depth >= max_depth:
                node.runs.append(_Run(tuple(keys), None, tuple(names), owned=False))
            else:
                slug = base = _slug(child.name)
                n = 1
                while slug in prefixes:
                    n += 1
                    slug = f"{base}_{n}"
                prefixes.add(slug)
                drawn = build(child, slug, depth + 1)
                drawn.names.extend(n for n in names if n not in drawn.names)
                node.runs.append(_Run(tuple(keys), drawn, tuple(names), owned=True))
        ancestors.pop()
        return node

    root = build(machine, "", 0)

    def assign(node: _Node, ov: _Overlay) -> None:
        assert node.overlay is not None
        node.overlay.merge(ov)
        for run in node.runs:
            if run.node is not None:
                for key in run.keys:
                    if key in ov.children:
                        assign(run.node, ov.children[key])

    if overlay is not None:
        assign(root, overlay)
    return root


def _label(node: _Node, t: Transition, auto: str = "") -> str:
    text = t.label + (auto if t.event in node.table.internal else "")
    if node.overlay is None:
        return text
    return f"{text} ×{node.overlay.counts[t.index]}"


# -- Mermaid -----------------------------------------------------------------------------------


def _mm_text(text: str) -> str:
    # `;` ends a statement and `"` a quoted name in Mermaid; keep labels on one line
    return text.replace(";", ",").replace('"', "'").replace("\n", " ")


def _mermaid_lines(node: _Node, indent: str, classes: dict[str, list[str]], counter: list[int]) -> list[str]:
    table = node.table
    lines = [f'{indent}state "{_mm_text(p.value)}" as {node.sid(p)}' for p in table.phases]
    lines.append(f"{indent}[*] --> {node.sid(table.initial)}")
    for t in table.transitions:
        label = _label(node, t, " (auto)")
        lines.append(f"{indent}{node.sid(t.source)} --> {node.sid(t.target)} : {_mm_text(label)}")
    lines.extend(f"{indent}{node.sid(p)} --> [*]" for p in table.phases if p in table.finals)
    for run in node.runs:
        if run.owned and run.node is not None:
            child = run.node
            lines.append(f'{indent}state "{_mm_text(", ".join(child.names))}" as {child.prefix} {{')
            lines.extend(_mermaid_lines(child, indent + "    ", classes, counter))
            lines.append(f"{indent}}}")
            target = child.prefix
        else:
            # a reference: a small stand-in state here (edges across composite states break Mermaid layouts)
            counter[0] += 1
            target = f"ref_{counter[0]}"
            lines.append(f'{indent}state "{_mm_text(", ".join(run.names))}" as {target}')
            classes["reference"].append(target)
        lines.append(f"{indent}{node.sid(node.anchor)} --> {target} : {_mm_text(run.label(node))}")
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
}


def to_mermaid(machine: Any, trace: Trace | None = None, *, max_depth: int = 3) -> str:
    """The machine as a Mermaid `stateDiagram-v2` text, ending with a newline.

    `machine`: a `Machine`, an `Agent` or a pattern. States are `state "PHASE" as <id>` (ids are
    prefixed with the child machine's name inside composite states), `[*] --> initial`,
    `final --> [*]`, one `A --> B : event [guard ∧ !guard]` line per compiled transition (internal
    events suffixed `(auto)`), child machines as `state "name" as <id> { ... }` reached by a
    `runs` edge, down to `max_depth` levels. With a `trace` (a `RunResult` or a sequence of
    `Taken`) every label ends with its count (`×3`) and states get the `visited`/`unvisited`
    classes. Raises `DiagramError` for a trace of another machine, `TypeError` for a non-machine.
    Format: https://mermaid.js.org/syntax/stateDiagram.html
    """
    m = as_machine(machine)
    root = _tree(m, _overlay(m, trace), max_depth)
    classes: dict[str, list[str]] = {name: [] for name in _MERMAID_CLASSES}
    lines = ["stateDiagram-v2", "    direction LR"]
    lines.extend(_mermaid_lines(root, "    ", classes, [0]))
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


def _state_attrs(node: _Node, phase: Phase) -> dict[str, Any]:
    table = node.table
    attrs: dict[str, Any] = {"label": phase.value}
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


def _edge_attrs(node: _Node, t: Transition) -> dict[str, Any]:
    attrs: dict[str, Any] = {"label": _label(node, t)}
    if t.event in node.table.internal:
        attrs["style"] = "dashed"
    if node.overlay is not None:
        if node.overlay.counts[t.index]:
            attrs.update(penwidth="2.5", color="#b36b00", fontcolor="#7a4500")
        else:
            attrs.update(color=_GREY, fontcolor=_GREY)
    return attrs


def _dot_machine(node: _Node, graph: pydot.Graph, counter: list[int]) -> None:
    table = node.table
    start = f"{node.prefix}__start" if node.prefix else "__start"
    graph.add_node(pydot.Node(start, shape="point", width="0.18", label="", fillcolor=_INK, color=_INK))
    for phase in table.phases:
        graph.add_node(pydot.Node(node.sid(phase), **_state_attrs(node, phase)))
    graph.add_edge(pydot.Edge(start, node.sid(table.initial), label=""))
    for t in table.transitions:
        graph.add_edge(pydot.Edge(node.sid(t.source), node.sid(t.target), **_edge_attrs(node, t)))
    for run in node.runs:
        attrs: dict[str, Any] = {
            "label": run.label(node),
            "style": "dotted",
            "color": _RUNS,
            "fontcolor": _RUNS,
            "penwidth": "1.5",
        }
        child = run.node
        if child is None:
            counter[0] += 1
            stub = f"{node.prefix}__more_{counter[0]}" if node.prefix else f"__more_{counter[0]}"
            graph.add_node(
                pydot.Node(stub, label=", ".join(run.names), style="dashed", color=_RUNS, fontcolor=_RUNS, fillcolor="white")
            )
            graph.add_edge(pydot.Edge(node.sid(node.anchor), stub, **attrs))
            continue
        if run.owned:
            cluster = pydot.Cluster(
                child.prefix,
                label=", ".join(child.names),
                style="rounded,dashed",
                color=_RUNS,
                fontcolor=_RUNS,
                fontsize="15",
                labeljust="l",
                margin="14",
            )
            _dot_machine(child, cluster, counter)
            graph.add_subgraph(cast(pydot.Subgraph, cluster))  # a Cluster is accepted; the stubs say Subgraph
        else:
            attrs["constraint"] = "false"
        child_start = f"{child.prefix}__start" if child.prefix else "__start"
        if child.prefix and not run.recursive:  # (an edge from inside a cluster cannot clip at its border)
            attrs["lhead"] = f"cluster_{child.prefix}"
        graph.add_edge(pydot.Edge(node.sid(node.anchor), child_start, **attrs))


def to_dot(machine: Any, trace: Trace | None = None, *, max_depth: int = 3) -> str:
    """The machine as a Graphviz DOT `digraph` text (built with pydot), ending with a newline.

    `machine`: a `Machine`, an `Agent` or a pattern. Node ids are phase names (`PLANNING`),
    prefixed inside clusters (`agent_researcher_PLANNING`); a point node `__start` enters the
    initial state; final states are `doublecircle`s; each compiled transition is one edge labelled
    `event [guard ∧ !guard]`, dashed for internal events; child machines are
    `subgraph cluster_<name>` reached from the parent's EXECUTING state by a dotted `runs` edge,
    down to `max_depth` levels. With a `trace` (a `RunResult` or a sequence of `Taken`) labels
    end with their counts (`×3`), visited states are filled amber, never-taken edges grey.
    Raises `DiagramError` for a trace of another machine, `TypeError` for a non-machine.
    Format: https://graphviz.org/doc/info/lang.html
    """
    m = as_machine(machine)
    root = _tree(m, _overlay(m, trace), max_depth)
    graph = pydot.Dot(
        _slug(m.name),
        graph_type="digraph",
        label=m.name,
        labelloc="t",
        fontname=_FONT,
        fontsize="18",
        rankdir="LR",
        compound="true",
        nodesep="0.5",
        ranksep="0.7",
        pad="0.3",
        bgcolor="white",
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
    _dot_machine(root, graph, [0])
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


def _content(machine: Machine, suffix: str, trace: Trace | None) -> bytes:
    if suffix == ".mmd":
        return to_mermaid(machine, trace).encode()
    if suffix == ".md":
        return _markdown(machine, to_mermaid(machine, trace)).encode()
    if suffix == ".dot":
        return to_dot(machine, trace).encode()
    if suffix in (".svg", ".png"):
        return render(to_dot(machine, trace), suffix[1:])
    raise DiagramError(f"unknown diagram suffix {suffix!r}: use one of {', '.join(FORMATS)}")


def write(machine: Any, path: str | Path, trace: Trace | None = None) -> Path:
    """Write the diagram of `machine` (a `Machine`, an `Agent` or a pattern) to `path`; the suffix
    picks the format: `.mmd` (Mermaid), `.md` (a `# name` title line and a ```mermaid block),
    `.dot` (Graphviz DOT), `.svg`/`.png` (rendered by the local Graphviz `dot`). Returns the path.
    Raises `DiagramError` for an unknown suffix (nothing is written), `GraphvizNotFound` for
    SVG/PNG without Graphviz."""
    path = Path(path)
    data = _content(as_machine(machine), path.suffix.lower(), trace)
    path.write_bytes(data)
    return path


# -- the shipped machines and the committed diagrams/ -----------------------------------------


def example_agent() -> Any:
    """A representative agent (a tool and a handoff, so every transition of the chart is live)
    for the committed diagram of the agent loop."""
    from fsm_agents.agent import Agent
    from fsm_agents.tools import tool

    @tool
    def search(query: str) -> str:
        """Search the knowledge base."""
        return query

    specialist = Agent("specialist", "Answer questions the assistant hands over.")
    return Agent("assistant", "Help the user; use tools; hand over when needed.", tools=[search], handoffs=[specialist])


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
    from fsm_agents.cli import load_object

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
