"""`EventDriven`: `emit(event_type, data)` runs that event type's handler on one shared conversation.

One emitted event is one run of `EventDrivenMachine`:

    EXECUTING --agents_finished [child_failed]--> FAILED
    EXECUTING --agents_finished--> OBSERVING --observed--> DONE      (fold the handler's messages)

`EventDriven` keeps the conversation between emits (append-only: each run starts from it and its
final conversation becomes the next start).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field
from statemachine import State

from fsm_agents.errors import (
    InvalidDefinition,
    UnknownEventType,
)
from fsm_agents.events import Event, Observed, Step
from fsm_agents.log import PersistentLog
from fsm_agents.machine import compile_chart
from fsm_agents.patterns._base import (
    ChartClass,
    Pattern,
    chart_class,
    pattern_name,
    resolve_child,
)
from fsm_agents.state import Conversation, Frozen, MessageLog, Phase, Snapshot, UserMessage

__all__ = ["EventDrivenChart", "EventDrivenMachine", "EventInput", "UnknownEventType"]


def _event_driven_chart() -> ChartClass:
    executing = State("EXECUTING", initial=True)
    observing = State("OBSERVING")
    done = State("DONE", final=True)
    failed = State("FAILED", final=True)
    return chart_class(
        "EventDrivenChart",
        {
            "executing": executing,
            "observing": observing,
            "done": done,
            "failed": failed,
            "agents_finished": executing.to(failed, cond="child_failed", on="fail_handler")
            | executing.to(observing, on="fold"),
            "observed": observing.to(done, on="finish"),
        },
        internal=(Observed,),
    )


EventDrivenChart = _event_driven_chart()


class EventInput(Frozen):
    """One emitted event: its type, its data (as JSON text), and the conversation so far."""

    event_type: str
    data_json: str = "null"
    # the conversation's messages (`of` keeps a tuple or `PersistentLog` as given: no copy);
    # serialized as a JSON array of messages, validated back from one (e.g. a stored start record)
    history: MessageLog = Field(default_factory=PersistentLog)

    @classmethod
    def of(cls, event_type: str, data: Any = None, history: Any = ()) -> EventInput:
        """An event with `data` encoded as JSON (non-JSON values via `str`)."""
        return cls.model_construct(
            event_type=event_type, data_json=json.dumps(data, default=str, sort_keys=True), history=history
        )

    @property
    def data(self) -> Any:
        return json.loads(self.data_json)

    @property
    def text(self) -> str:
        """The data as the handler reads it: a string as is, anything else as JSON."""
        data = self.data
        return data if isinstance(data, str) else self.data_json


class EventDrivenData(Frozen):
    """Bookkeeping: the event type being handled and messages the handler was given."""

    event_type: str = ""
    sent: int = 0


class EventDrivenMachine(Pattern):
    """The pure machine of `EventDriven`: one run handles one `EventInput` (or an event type as a
    string, with no data and no history). `start` raises `UnknownEventType` for an event type
    with no handler."""

    def __init__(self, name: str, handlers: Mapping[str, Any]) -> None:
        self.name = pattern_name("event_driven", name)
        if not handlers:
            raise InvalidDefinition(f"{self.name}: at least one handler is required")
        self._children = {event_type: resolve_child(h) for event_type, h in handlers.items()}
        self.table = compile_chart(EventDrivenChart, owner=self)

    def max_transitions(self) -> int:
        return 2

    def example_inputs(self) -> tuple[Any, ...]:
        """One event of every handled type, with and without data (for `check_machine`)."""
        return tuple(EventInput.of(t, data) for t in self._children for data in (None, {"value": 1}))

    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        """EXECUTING with a `RunAgents` for the handler of the event; the handler gets the history
        and one user message `Event <type>: <data JSON>`."""
        event = input if isinstance(input, EventInput) else EventInput.of(str(input))
        if event.event_type not in self._children:
            raise UnknownEventType(self.name, event.event_type, tuple(self._children))
        message = UserMessage(content=f"Event {event.event_type}: {event.text}")
        conversation = Conversation.of(*event.history, message, id=run_id)
        data = EventDrivenData(event_type=event.event_type, sent=len(conversation))
        s = self._snapshot(Phase.EXECUTING, conversation, data, context)
        return Step(s, (self._run(s, (self._task(s, event.event_type, conversation.messages),)),))

    def _fold(self, s: Snapshot[EventDrivenData], e: Event) -> Snapshot[EventDrivenData]:
        folded, outcome = self._fold_child(s, e, s.data.sent, s.data.event_type)
        return folded.evolve(output=outcome.output) if outcome is not None else folded

    def fail_handler(self, s: Snapshot[EventDrivenData], e: Event) -> Step:
        why = self._why(e)
        return self._fail_child(
            self._fold(s, e).evolve(output=None),
            e,
            f"{self.name}: the handler of {s.data.event_type!r} failed: {why}",
            detail=s.data.event_type,
        )

    def fold(self, s: Snapshot[EventDrivenData], e: Event) -> Step:
        return Step(self._fold(s, e))

    def finish(self, s: Snapshot[EventDrivenData], e: Event) -> Step:
        return Step(s)
