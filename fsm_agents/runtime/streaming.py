"""What an open run shows while it goes: `StepItem` (one per step, from `iterate`) and the typed
stream events of `stream` (`TextDelta`, `ToolCallDelta`, `TransitionTaken`, `EffectStarted`,
`EffectFinished`, `Suspended`, `Finished`).

Every stream event carries `run_id`: the top-level run's id, or a child's (`<parent id>/<task
id>`) for the machines a pattern runs. Plain frozen dataclasses (slots): they are made per text
delta, so they must be cheap. See docs/architecture.md, "Open runs".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fsm_agents.events import Effect, Event, Taken
from fsm_agents.state import Snapshot

if TYPE_CHECKING:
    from fsm_agents.runtime.result import Pending, RunResult

__all__ = [
    "EffectFinished",
    "EffectStarted",
    "Finished",
    "StepItem",
    "StreamEvent",
    "Suspended",
    "TextDelta",
    "ToolCallDelta",
    "TransitionTaken",
]


@dataclass(frozen=True, slots=True)
class StepItem:
    """One step of an open run (`iterate`): the external `event` fed to `step`, the `transitions`
    it took, the `effects` the new `snapshot` asks for (empty once final)."""

    run_id: str
    event: Event
    transitions: tuple[Taken, ...]
    effects: tuple[Effect, ...]
    snapshot: Snapshot[Any]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the text the model of `agent` is writing (as the provider streams it)."""

    run_id: str
    agent: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call the model of `agent` is writing: `index` identifies the call in the
    reply; `arguments` fragments concatenate to its JSON; `call_id`/`name` come with the first."""

    run_id: str
    agent: str
    index: int
    call_id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class TransitionTaken:
    """A transition the machine took (`taken.source --taken.event--> taken.target`)."""

    run_id: str
    taken: Taken


@dataclass(frozen=True, slots=True)
class EffectStarted:
    """The runtime started performing `effect`."""

    run_id: str
    effect: Effect


@dataclass(frozen=True, slots=True)
class EffectFinished:
    """`effect` was performed and answered by `event`."""

    run_id: str
    effect: Effect
    event: Event


@dataclass(frozen=True, slots=True)
class Suspended:
    """The run stopped to wait for a human: `pending` lists what it waits on. The stream ends
    with `Finished` right after (whose result has `status == "suspended"`)."""

    run_id: str
    pending: tuple[Pending, ...]


@dataclass(frozen=True, slots=True)
class Finished:
    """The run's call ended (DONE, FAILED or suspended): `result` is its `RunResult`. Always the
    last event of a stream."""

    run_id: str
    result: RunResult


StreamEvent = TextDelta | ToolCallDelta | TransitionTaken | EffectStarted | EffectFinished | Suspended | Finished
