"""Record a run's effects and events as a JSON cassette; replay it as a regression test.

    result = await run(agent, "question")               # on a real model, once
    record(result).save("tests/data/question.json")     # secrets scrubbed

    cassette = Cassette.load("tests/data/question.json")
    final = replay(agent, cassette)                     # pure: no model, no tools, no I/O
    assert final.snapshot.phase is Phase.DONE

`replay` restarts the machine on the recorded input and, at every step, compares the effect the
machine asks for with the recorded one before feeding the recorded event: a change in prompts,
tools or control flow raises `CassetteDivergence` naming the step and both effects.
A pattern's cassette also holds the cassette of every child run (by task id), and `replay`
replays each child against the pattern's child machine when it meets the `RunAgents` that ran it:
a change in a child's prompts, tools or control flow diverges too, as does a child that no
longer ends with the recorded outcome.
`ReplayModel(cassette)` serves the recorded model replies to a normal `run` (tools run for real),
checking each request against the recorded one; `replay_tools(cassette)` serves recorded tool
results by tool name and arguments (both include the children's calls).

Format (JSON): `{"format": "fsm_agents.cassette/3", "machine", "run_id", "input",
"interactions": [{"step", "effect": {"type", ...}, "event": {"type", ...}}], "children": {task id:
{"machine", "run_id", "input", "interactions", "children"}}}`, where `input` is encoded by
`fsm_agents.codec.dump_input` (`{"text"}`, `{"messages"}` or `{"json", "shape"}`, so messages and
a pattern's model input replay as themselves). Version 2 cassettes (no `children`) load and
replay without checking the children; version 1 cassettes, whose `input` is the raw value, too.
Text is stored as UTF-8 JSON (a lone surrogate as its `\\uXXXX` escape).
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic_core import to_jsonable_python

from fsm_agents.codec import CodecError, dump, dump_input, load_effect, load_event, load_input
from fsm_agents.errors import CassetteDivergence, FsmAgentsError
from fsm_agents.events import AgentsFinished, RunAgents, RunTools, Step, ToolsFinished
from fsm_agents.machine import Machine
from fsm_agents.models.replay import ReplayModel, all_interactions
from fsm_agents.observers import Redactor
from fsm_agents.runtime import RunResult, as_machine
from fsm_agents.state import Frozen
from fsm_agents.store._records import escape_surrogates
from fsm_agents.tools import Tool

__all__ = ["Cassette", "CassetteDivergence", "Interaction", "ReplayModel", "record", "replay", "replay_tools"]

FORMAT: Literal["fsm_agents.cassette/3"] = "fsm_agents.cassette/3"
_FORMATS = (FORMAT, "fsm_agents.cassette/2", "fsm_agents.cassette/1")


class Interaction(Frozen):
    """One effect the machine asked for and the event that answered it (both as tagged JSON)."""

    step: int
    effect: dict[str, Any]
    event: dict[str, Any]


class Cassette(Frozen):
    """A recorded run: enough to replay it without a model or tools. `children` holds the
    cassettes of the child runs of a pattern, by task id (empty for an agent, and in cassettes
    of format 2 and older)."""

    format: Literal["fsm_agents.cassette/3", "fsm_agents.cassette/2", "fsm_agents.cassette/1"] = FORMAT
    machine: str
    run_id: str
    input: Any
    interactions: tuple[Interaction, ...]
    children: dict[str, Cassette] = Field(default_factory=dict)

    def to_json(self) -> str:
        """The cassette as indented JSON text (valid UTF-8: see `fsm_agents.store._records.escape_surrogates`)."""
        return escape_surrogates(json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False))

    def save(self, path: str | Path) -> None:
        """Write the cassette to `path` (UTF-8), creating its missing parent folders. Raises
        `FsmAgentsError` when the file cannot be written."""
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.to_json() + "\n", encoding="utf-8")
        except OSError as exc:
            raise FsmAgentsError(f"cannot write cassette {target}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> Cassette:
        """Read a cassette file. Raises `FsmAgentsError` for another format or a broken file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FsmAgentsError(f"cannot read cassette {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") not in _FORMATS:
            raise FsmAgentsError(
                f"{path} is not a {FORMAT} cassette (format: {data.get('format') if isinstance(data, dict) else None!r})"
            )
        return cls.model_validate(data)


def record(result: RunResult, *, secrets: Iterable[str] = ()) -> Cassette:
    """The cassette of `result`: every effect with the event that answered it, and the same for
    each of its child runs (`result.children`, recursively). Text that looks like a secret (API
    keys, bearer tokens, the provider key environment variables, `secrets`) is replaced by
    `[REDACTED]`."""
    raw = {"format": FORMAT, **_recorded(result)}
    scrubbed = Redactor(secrets)(json.dumps(raw, ensure_ascii=False))
    return Cassette.model_validate(json.loads(scrubbed))


def _recorded(result: RunResult) -> dict[str, Any]:
    return {
        "machine": result.snapshot.machine,
        "run_id": result.run_id,
        "input": dump_input(result.input),
        "interactions": [
            {"step": i, "effect": dump(effect), "event": dump(event)}
            for i, (effect, event) in enumerate(zip(result.effects, result.events, strict=True))
        ],
        "children": {task_id: _recorded(child) for task_id, child in result.children.items()},
    }


def replay(machine: Any, cassette: Cassette) -> Step:
    """Fold the recorded events over `machine`, checking every effect against the recording,
    and replay each recorded child run against `machine`'s child machine (recursively) when the
    `RunAgents` effect that ran it is met.

    Returns the final `Step`. Raises `CassetteDivergence` when the machine (or a child) asks for
    an effect other than the recorded one (or for more or fewer effects than were recorded), or
    when a replayed child ends in another phase or with another output than the recorded outcome.
    """
    m = as_machine(machine)
    if cassette.machine != m.name:
        raise CassetteDivergence(0, f"machine {cassette.machine}", f"machine {m.name}")
    step = m.start(_run_input(cassette), run_id=cassette.run_id)
    for interaction in cassette.interactions:
        if len(step.effects) != 1:
            raise CassetteDivergence(interaction.step, interaction.effect, [dump(e) for e in step.effects])
        effect = step.effects[0]
        actual = dump(effect)
        if actual != interaction.effect:
            raise CassetteDivergence(interaction.step, interaction.effect, actual)
        event = load_event(interaction.event)
        if isinstance(effect, RunAgents) and isinstance(event, AgentsFinished) and cassette.children:
            _replay_children(m, interaction.step, effect, event, cassette.children)
        step = m.step(step.snapshot, event)
    if step.effects:
        raise CassetteDivergence(len(cassette.interactions), "the end of the recording", dump(step.effects[0]))
    return step


def _replay_children(
    machine: Machine, at: int, effect: RunAgents, event: AgentsFinished, children: Mapping[str, Cassette]
) -> None:
    known = machine.children()
    outcomes = {o.task_id: o for o in event.outcomes}
    for task in effect.tasks:
        recorded = children.get(task.task_id)
        if recorded is None:
            continue  # the child never ran (e.g. an unknown machine: its outcome says so)
        child = known.get(task.machine)
        if child is None:
            raise CassetteDivergence(at, f"child {task.machine} of {machine.name}", f"{machine.name} has no such child")
        final = replay(child, recorded).snapshot
        outcome = outcomes.get(task.task_id)
        if outcome is not None:
            expected = {"task": task.task_id, "phase": outcome.phase.value, "output": to_jsonable_python(outcome.output)}
            got = {"task": task.task_id, "phase": final.phase.value, "output": to_jsonable_python(final.output)}
            if expected != got:
                raise CassetteDivergence(at, expected, got)




def _run_input(cassette: Cassette) -> Any:
    if cassette.format == "fsm_agents.cassette/1" or not isinstance(cassette.input, dict):
        return cassette.input  # version 1: the raw value
    try:
        return load_input(cassette.input)
    except CodecError as exc:
        raise FsmAgentsError(f"the cassette's input cannot be loaded: {exc}") from None


def replay_tools(cassette: Cassette) -> dict[str, Tool]:
    """Tools that return the recorded results, keyed by tool name (pass as `run(..., tools=)`).

    Calls are matched by name and raw arguments in recorded order; an unrecorded call raises
    `CassetteDivergence`.
    """
    queues: dict[str, deque[tuple[str, str, bool, str]]] = defaultdict(deque)
    for i in all_interactions(cassette):
        effect, event = load_effect(i.effect), load_event(i.event)
        if isinstance(effect, RunTools) and isinstance(event, ToolsFinished):
            by_id = {r.call_id: r for r in event.results}
            for c in effect.calls:
                r = by_id.get(c.id)
                if r is not None:
                    queues[c.name].append((_canonical(c.arguments), r.content, r.ok, r.error or ""))

    def make(name: str) -> Tool:
        def fn(**kwargs: Any) -> str:
            queue = queues[name]
            arguments = _canonical(json.dumps(kwargs))
            if not queue:
                raise CassetteDivergence(-1, f"no more recorded calls of {name}", {"tool": name, "arguments": kwargs})
            recorded_args, content, ok, error = queue.popleft()
            if recorded_args != arguments:
                raise CassetteDivergence(
                    -1, {"tool": name, "arguments": recorded_args}, {"tool": name, "arguments": arguments}
                )
            if not ok:
                raise RuntimeError(error)
            return content

        model: type[BaseModel] = create_model(f"Replay{name}Args", __config__=ConfigDict(extra="allow"))
        return Tool(name=name, description=f"replay of {name}", fn=fn, input_model=model, thread=False)

    return {name: make(name) for name in queues}


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), sort_keys=True)
    except ValueError:
        return arguments
