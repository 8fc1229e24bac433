"""Record a run's effects and events as a JSON cassette; replay it as a regression test.

    result = await run(agent, "question")               # on a real model, once
    record(result).save("tests/data/question.json")     # secrets scrubbed

    cassette = Cassette.load("tests/data/question.json")
    final = replay(agent, cassette)                     # pure: no model, no tools, no I/O
    assert final.snapshot.phase is Phase.DONE

`replay` restarts the machine on the recorded input and, at every step, compares the effect the
machine asks for with the recorded one before feeding the recorded event: a change in prompts,
tools or control flow raises `CassetteDivergence` naming the step and both effects.
`ReplayModel(cassette)` serves the recorded model replies to a normal `run` (tools run for real),
checking each request against the recorded one; `replay_tools(cassette)` serves recorded tool
results by tool name and arguments.

Format (JSON): `{"format": "fsm_agents.cassette/2", "machine", "run_id", "input",
"interactions": [{"step", "effect": {"type", ...}, "event": {"type", ...}}]}`, where `input` is
encoded by `fsm_agents.codec.dump_input` (`{"text"}`, `{"messages"}` or `{"json", "shape"}`, so
messages and a pattern's model input replay as themselves). Version 1 cassettes, whose `input`
is the raw value, still load.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, create_model

from fsm_agents.codec import CodecError, dump, dump_input, load_effect, load_event, load_input
from fsm_agents.errors import CassetteDivergence, FsmAgentsError
from fsm_agents.events import CallModel, ModelReplied, RunTools, Step, ToolsFinished
from fsm_agents.models.base import ModelError, ModelResponse
from fsm_agents.observers import Redactor
from fsm_agents.runtime import RunResult, as_machine
from fsm_agents.state import Frozen, ModelRequest
from fsm_agents.tools import Tool

__all__ = ["Cassette", "CassetteDivergence", "Interaction", "ReplayModel", "record", "replay", "replay_tools"]

FORMAT: Literal["fsm_agents.cassette/2"] = "fsm_agents.cassette/2"
_FORMATS = (FORMAT, "fsm_agents.cassette/1")


class Interaction(Frozen):
    """One effect the machine asked for and the event that answered it (both as tagged JSON)."""

    step: int
    effect: dict[str, Any]
    event: dict[str, Any]


class Cassette(Frozen):
    """A recorded run: enough to replay it without a model or tools."""

    format: Literal["fsm_agents.cassette/2", "fsm_agents.cassette/1"] = FORMAT
    machine: str
    run_id: str
    input: Any
    interactions: tuple[Interaction, ...]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

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
    """The cassette of `result`: every effect with the event that answered it. Text that looks
    like a secret (API keys, bearer tokens, the provider key environment variables, `secrets`)
    is replaced by `[REDACTED]`."""
    interactions = [
        {"step": i, "effect": dump(effect), "event": dump(event)}
        for i, (effect, event) in enumerate(zip(result.effects, result.events, strict=True))
    ]
    raw = {
        "format": FORMAT,
        "machine": result.snapshot.machine,
        "run_id": result.run_id,
        "input": dump_input(result.input),
        "interactions": interactions,
    }
    scrubbed = Redactor(secrets)(json.dumps(raw, ensure_ascii=False))
    return Cassette.model_validate(json.loads(scrubbed))


def replay(machine: Any, cassette: Cassette) -> Step:
    """Fold the recorded events over `machine`, checking every effect against the recording.

    Returns the final `Step`. Raises `CassetteDivergence` when the machine asks for an effect
    other than the recorded one (or for more or fewer effects than were recorded).
    """
    m = as_machine(machine)
    if cassette.machine != m.name:
        raise CassetteDivergence(0, f"machine {cassette.machine}", f"machine {m.name}")
    step = m.start(_run_input(cassette), run_id=cassette.run_id)
    for interaction in cassette.interactions:
        if len(step.effects) != 1:
            raise CassetteDivergence(interaction.step, interaction.effect, [dump(e) for e in step.effects])
        actual = dump(step.effects[0])
        if actual != interaction.effect:
            raise CassetteDivergence(interaction.step, interaction.effect, actual)
        step = m.step(step.snapshot, load_event(interaction.event))
    if step.effects:
        raise CassetteDivergence(len(cassette.interactions), "the end of the recording", dump(step.effects[0]))
    return step


def _run_input(cassette: Cassette) -> Any:
    if cassette.format == "fsm_agents.cassette/1" or not isinstance(cassette.input, dict):
        return cassette.input  # version 1: the raw value
    try:
        return load_input(cassette.input)
    except CodecError as exc:
        raise FsmAgentsError(f"the cassette's input cannot be loaded: {exc}") from None


def _request_shape(request: ModelRequest) -> dict[str, Any]:
    return {
        "agent": request.agent,
        "roles": [m.role for m in request.messages],
        "tools": sorted(t.name for t in request.tools),
    }


class ReplayModel:
    """A `Model` that answers with the recorded replies of `cassette`, in order.

    Each request is compared with the recorded one (agent, message roles, tools offered); a
    mismatch raises `CassetteDivergence` (the runtime lets it through instead of turning it into
    a model failure).
    """

    def __init__(self, cassette: Cassette) -> None:
        self._calls = deque(
            (i.step, load_effect(i.effect), load_event(i.event))
            for i in cassette.interactions
            if i.effect["type"] == "CallModel"
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if not self._calls:
            raise CassetteDivergence(-1, "no more recorded model calls", _request_shape(request))
        step, effect, event = self._calls.popleft()
        assert isinstance(effect, CallModel)
        expected, actual = _request_shape(effect.request), _request_shape(request)
        if expected != actual:
            raise CassetteDivergence(step, expected, actual)
        if not isinstance(event, ModelReplied):
            raise ModelError(f"recorded model failure: {getattr(event, 'error', event)}")
        return ModelResponse(message=event.message, usage=event.usage)


def replay_tools(cassette: Cassette) -> dict[str, Tool]:
    """Tools that return the recorded results, keyed by tool name (pass as `run(..., tools=)`).

    Calls are matched by name and raw arguments in recorded order; an unrecorded call raises
    `CassetteDivergence`.
    """
    queues: dict[str, deque[tuple[str, str, bool, str]]] = defaultdict(deque)
    for i in cassette.interactions:
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
