"""Stored runs, children included, and the one-page HTML run viewer (`fsm-agents view`).

- `load_run(store, conversation_id, machine) -> StoredRun`: the last run of a stored
  conversation rebuilt by folding the log (no model or tool is called), as a `RunResult` whose
  `children` are the child runs stored under `<conversation id>/<task id>`, plus the wall-clock
  times the store recorded (record `created_at`, Unix seconds).
- `view_html(run, machine) -> str`: one self-contained HTML page (no script, no network): the
  diagram with the run overlaid (inline SVG drawn by the local Graphviz), the timeline of
  transitions, the model calls with usage and latency, the tool calls with arguments, results
  and errors, the child runs (recursively), and the failure if any.

`run` may also be a live `RunResult` (then no latencies are known).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fsm_agents.diagrams import DiagramError, render, to_dot
from fsm_agents.events import (
    AgentsFinished,
    CallModel,
    Effect,
    Event,
    ModelFailed,
    ModelReplied,
    RunAgents,
    RunTools,
    Taken,
    ToolsFinished,
)
from fsm_agents.machine import Machine
from fsm_agents.runtime import RunResult, as_machine
from fsm_agents.state import Failure, Phase
from fsm_agents.store._fold import fold, resolve

__all__ = ["StoredRun", "load_run", "view_html"]


@dataclass(frozen=True)
class StoredRun:
    """A stored run: its `RunResult` (children included), the conversation it is stored under,
    when each effect started and finished (`timings[effect key] = (started, finished)`), when
    each event was recorded (`event_times[i]` for `result.events[i]`) and when the run started
    (`started_at`), all Unix seconds as the store wrote them; and the stored child runs by task
    id (`children`)."""

    conversation_id: str
    result: RunResult
    timings: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    event_times: tuple[float, ...] = ()
    started_at: float = 0.0
    children: Mapping[str, StoredRun] = field(default_factory=dict)


def _machines(root: Machine) -> dict[str, Machine]:
    """Every machine reachable from `root` through `children()`, by machine name."""
    out: dict[str, Machine] = {}
    pending = [root]
    while pending:
        m = pending.pop()
        if m.name in out:
            continue
        out[m.name] = m
        pending.extend(m.children().values())
    return out


def load_run(store: Any, conversation_id: str, machine: Any) -> StoredRun:
    """The last run stored under `conversation_id`, rebuilt with `machine` (a `Machine`, an
    `Agent` or a pattern), with its child runs (`<conversation id>/<task id>`, when stored).

    Raises `ConversationNotFound` for an unknown id, `DiagramError` when the run is of another
    machine, `ReplayMismatch` / `CorruptStore` when the log does not fold.
    """
    m = as_machine(machine)
    known = _machines(m)
    records, _ = resolve(store, conversation_id)

    def machine_for(name: str) -> Machine:
        found = known.get(name)
        if found is None:
            raise DiagramError(
                f"conversation {conversation_id!r} is a run of {name!r}, not of {m.name!r}: give the machine that made it"
            )
        return found

    segments = fold(records, machine_for, check=False)
    if not segments:
        raise DiagramError(f"conversation {conversation_id!r} holds no run")
    seg = segments[-1]
    if seg.machine is not m:
        raise DiagramError(f"conversation {conversation_id!r} is a run of {seg.machine.name!r}, not of {m.name!r}")
    mine = [r for r in records if r.seq >= seg.start_seq]
    started: dict[str, float] = {}
    timings: dict[str, tuple[float, float]] = {}
    event_times: list[float] = []
    for r in mine:
        if r.kind == "started":
            started[str(r.data.get("key"))] = r.created_at
        elif r.kind == "finished":
            key = str(r.data.get("key"))
            if key in started:
                timings[key] = (started[key], r.created_at)
        elif r.kind == "event":
            event_times.append(r.created_at)
    children: dict[str, StoredRun] = {}
    kids = m.children()
    for event in seg.events:
        if not isinstance(event, AgentsFinished):
            continue
        for outcome in event.outcomes:
            child = kids.get(outcome.machine)
            child_id = f"{conversation_id}/{outcome.task_id}"
            if child is None or not store.load(child_id):
                continue
            children[outcome.task_id] = load_run(store, child_id, child)
    result = RunResult(
        seg.run_id,
        seg.input,
        seg.step.snapshot,
        tuple(seg.events),
        seg.usage,
        trace=tuple(seg.trace),
        children={k: v.result for k, v in children.items()},
        effects=tuple(seg.effects),
        machine=m,
    )
    start_time = mine[0].created_at if mine else 0.0
    return StoredRun(conversation_id, result, timings, tuple(event_times), start_time, children)


# -- the page ----------------------------------------------------------------------------------

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#263238;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;margin-bottom:12px} .diagram{overflow:auto;border:1px solid #ddd;padding:8px;margin:8px 0}
.diagram svg{max-width:100%;height:auto}
table{border-collapse:collapse;width:100%;font-size:13px;margin-bottom:8px}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#eef3fb} td pre{margin:0;white-space:pre-wrap;word-break:break-word;font-size:12px}
tr.error td{background:#fde7e7} tr.last td{background:#c8ecd0} tr.last.failed td{background:#f6c9c9}
.failure{border:2px solid #c62828;background:#fde7e7;padding:8px 12px;margin:10px 0}
.ok{color:#2e7d32;font-weight:bold} .bad{color:#c62828;font-weight:bold}
details{margin:6px 0 6px 12px;border-left:3px solid #5b4bb7;padding-left:10px}
summary{cursor:pointer;font-weight:bold;color:#5b4bb7}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pre(text: Any, limit: int = 4000) -> str:
    s = text if isinstance(text, str) else json.dumps(text, default=str, ensure_ascii=False)
    if len(s) > limit:
        s = s[:limit] + f"… ({len(s) - limit} more characters)"
    return f"<pre>{_e(s)}</pre>"


_ANSWERS: dict[type, type] = {
    ModelReplied: CallModel,
    ModelFailed: CallModel,
    ToolsFinished: RunTools,
    AgentsFinished: RunAgents,
}  # event class -> the effect class it answers


def _pairs(effects: Sequence[Effect], events: Sequence[Event]) -> Iterator[tuple[Effect, Event, int]]:
    """Each effect with the event that answered it (matched by kind, in order) and the event's
    index in `events`."""
    answers: dict[type, list[tuple[Event, int]]] = {}
    for i, ev in enumerate(events):
        answers.setdefault(_ANSWERS.get(type(ev), type(None)), []).append((ev, i))
    seen: dict[type, int] = {}
    for eff in effects:
        queue = answers.get(type(eff), [])
        n = seen.get(type(eff), 0)
        if n < len(queue):
            seen[type(eff)] = n + 1
            yield eff, queue[n][0], queue[n][1]


def _latency(run: StoredRun | None, key: str) -> str:
    if run is None or key not in run.timings:
        return "—"
    a, b = run.timings[key]
    return f"{(b - a) * 1000:.0f} ms"


def _timeline(result: RunResult, run: StoredRun | None) -> str:
    rows = []
    trace: Sequence[Taken] = result.trace
    final = result.snapshot.phase
    for i, t in enumerate(trace):
        cls = ["transition"]
        if i == len(trace) - 1:
            cls.append("last")
            if final is Phase.FAILED:
                cls.append("failed")
        rows.append(
            f'<tr class="{" ".join(cls)}"><td>{i + 1}</td><td>{t.step}</td><td>{_e(t.source.value)}</td>'
            f"<td>{_e(t.event)}</td><td>{_e(t.target.value)}</td></tr>"
        )
    head = "<tr><th>#</th><th>step</th><th>from</th><th>event</th><th>to</th></tr>"
    return f'<table class="timeline">{head}{"".join(rows)}</table>'


def _model_calls(result: RunResult, run: StoredRun | None) -> str:
    rows = []
    for eff, ev, _ in _pairs(result.effects, result.events):
        if not isinstance(eff, CallModel):
            continue
        if isinstance(ev, ModelReplied):
            msg = ev.message
            calls = "".join(f"<br>→ {_e(c.name)}({_e(c.arguments)})" for c in msg.tool_calls)
            reply = _pre(msg.content or "") + calls
            usage = ev.usage
            u = f"{usage.input_tokens} in / {usage.output_tokens} out" if usage else "—"
            rows.append(
                f"<tr><td>{_e(eff.agent)}</td><td>{len(eff.request.messages)}</td><td>{reply}</td>"
                f"<td>{u}</td><td>{_latency(run, eff.key)}</td></tr>"
            )
        elif isinstance(ev, ModelFailed):
            rows.append(
                f'<tr class="error"><td>{_e(eff.agent)}</td><td>{len(eff.request.messages)}</td>'
                f"<td>{_pre(f'{ev.kind}: {ev.error}')}</td><td>—</td><td>{_latency(run, eff.key)}</td></tr>"
            )
    if not rows:
        return "<p>No model calls.</p>"
    head = "<tr><th>agent</th><th>messages sent</th><th>reply</th><th>usage (tokens)</th><th>latency</th></tr>"
    return f'<table class="models">{head}{"".join(rows)}</table>'


def _tool_calls(result: RunResult, run: StoredRun | None) -> str:
    rows = []
    for eff, ev, _ in _pairs(result.effects, result.events):
        if not isinstance(eff, RunTools) or not isinstance(ev, ToolsFinished):
            continue
        by_id = {r.call_id: r for r in ev.results}
        for call in eff.calls:
            r = by_id.get(call.id)
            if r is None:
                rows.append(
                    f'<tr class="error"><td>{_e(call.name)}</td><td>{_pre(call.arguments)}</td>'
                    "<td>no result</td><td>—</td></tr>"
                )
                continue
            outcome = _pre(r.content) if r.ok else _pre(f"ERROR: {r.error or r.content}")
            cls = "" if r.ok else ' class="error"'
            rows.append(
                f"<tr{cls}><td>{_e(call.name)}</td><td>{_pre(call.arguments)}</td><td>{outcome}</td>"
                f"<td>{r.duration_ms:.0f} ms</td></tr>"
            )
    if not rows:
        return "<p>No tool calls.</p>"
    head = "<tr><th>tool</th><th>arguments</th><th>result / error</th><th>duration</th></tr>"
    return f'<table class="tools">{head}{"".join(rows)}</table>'


def _failure(failure: Any) -> str:
    if failure is None:
        return ""
    if isinstance(failure, Failure):
        detail = f"<br><small>{_e(failure.detail)}</small>" if failure.detail else ""
        return f'<div class="failure"><b>FAILED ({_e(failure.kind)})</b>: {_e(failure.message)}{detail}</div>'
    return f'<div class="failure"><b>FAILED</b>: {_e(failure)}</div>'


def _sections(result: RunResult, run: StoredRun | None, level: int) -> str:
    snap = result.snapshot
    status = (
        '<span class="ok">DONE</span>' if snap.phase is Phase.DONE else f'<span class="bad">{_e(snap.phase.value)}</span>'
    )
    u = result.usage
    parts = [
        f'<div class="meta">{_e(snap.machine)} · run <code>{_e(result.run_id)}</code> · {status} at step {snap.step} · '
        f"usage {u.input_tokens} in / {u.output_tokens} out tokens, {u.requests} requests</div>",
        _failure(snap.failure),
    ]
    if snap.phase is Phase.DONE:
        parts.append(f"<h{3 + level}>Output</h{3 + level}>{_pre(snap.output)}")
    parts += [
        f"<h{3 + level}>Timeline of transitions</h{3 + level}>",
        _timeline(result, run),
        f"<h{3 + level}>Model calls</h{3 + level}>",
        _model_calls(result, run),
        f"<h{3 + level}>Tool calls</h{3 + level}>",
        _tool_calls(result, run),
    ]
    if result.children:
        parts.append(f"<h{3 + level}>Children</h{3 + level}>")
        for task_id, child in result.children.items():
            sub = run.children.get(task_id) if run is not None else None
            phase = child.snapshot.phase.value
            parts.append(
                f"<details open><summary>{_e(task_id)} · {_e(child.snapshot.machine)} · {_e(phase)}</summary>"
                f"{_sections(child, sub, min(level + 1, 3))}</details>"
            )
    return "".join(parts)


def view_html(run: StoredRun | RunResult, machine: Any) -> str:
    """One self-contained HTML page for `run` of `machine` (see the module docstring): the
    overlaid diagram as inline SVG, the timeline, model calls, tool calls, children, failure.
    Every text from the run is HTML-escaped. Raises `DiagramError` for a run of another machine,
    `GraphvizNotFound` without Graphviz."""
    stored = run if isinstance(run, StoredRun) else None
    result = run.result if isinstance(run, StoredRun) else run
    m = as_machine(machine)
    svg = render(to_dot(m, result), "svg").decode()
    svg = svg[svg.find("<svg") :] if "<svg" in svg else svg  # drop the XML prolog and doctype
    title = f"{m.name} · run {result.run_id}"
    where = f" · conversation <code>{_e(stored.conversation_id)}</code>" if stored is not None else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{_CSS}</style></head>'
        f'<body><h1>{_e(title)}</h1><div class="meta">fsm-agents run viewer{where}</div>'
        f'<h2>Diagram</h2><div class="diagram">{svg}</div>'
        f"<h2>Run</h2>{_sections(result, stored, 0)}</body></html>\n"
    )
