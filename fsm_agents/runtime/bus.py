"""`EventDriven`: the event bus of the event-driven pattern — handlers by event type over one
persistent conversation. Each `emit` is one run of the pure `EventDrivenMachine`
(`fsm_agents.patterns.event_driven`); the bus holds the conversation between runs, so it sits
above the runtime it calls (docs/architecture.md, Layers). Re-exported as
`fsm_agents.patterns.EventDriven`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from fsm_agents.patterns.event_driven import EventDrivenMachine, EventInput, UnknownEventType
from fsm_agents.runtime.api import run
from fsm_agents.runtime.sync import run_sync
from fsm_agents.state import Conversation

__all__ = ["EventDriven"]


class EventDriven:
    """Handlers by event type over one persistent conversation.

        bus = EventDriven("ops", {"data.received": analyst, "error.occurred": responder})
        result = await bus.emit("data.received", {"rows": 120})     # a RunResult
        bus.conversation                                            # every event and reply so far

    - `handlers`: `{event type: agent or pattern}`;
    - `emit(event_type, data=None, **run_kwargs)`: runs the handler on the conversation so far
      plus `Event <type>: <data JSON>`; on return `conversation` holds the handler's messages
      (also after a FAILED run). `run_kwargs` go to `fsm_agents.run` (`models=`, `limits=`, ...).
      Raises `UnknownEventType` (an `FsmAgentsError`) for a type with no handler. Concurrent
      emits are handled one at a time, in the order they acquire the bus (an `anyio.Lock`):
      each handler sees every earlier event and reply, and none is lost.
    - `emit_sync(...)`: the same from synchronous code.

    `.machine` is the pure `EventDrivenMachine` (input: an `EventInput`).
    """

    def __init__(self, name: str, handlers: Mapping[str, Any], *, conversation_id: str | None = None) -> None:
        self.name = name
        self.machine = EventDrivenMachine(name, handlers)
        self.handlers = tuple(handlers)
        self.conversation = Conversation(id=conversation_id or f"event_driven-{name}")
        self.emitted = 0
        self._lock = anyio.Lock()  # one emit at a time: each starts from the previous one's conversation

    def _input(self, event_type: str, data: Any) -> EventInput:
        if event_type not in self.machine.children():
            raise UnknownEventType(self.machine.name, event_type, self.handlers)
        return EventInput.of(event_type, data, self.conversation.messages)

    def _absorb(self, result: Any) -> None:
        messages = result.snapshot.conversation.messages
        self.conversation = Conversation.model_construct(id=self.conversation.id, messages=messages)

    async def emit(self, event_type: str, data: Any = None, **run_kwargs: Any) -> Any:
        """Run the handler of `event_type` on the shared conversation; returns the `RunResult`."""
        self._input(event_type, data)  # an unknown type fails at once, without waiting for the bus
        async with self._lock:
            event = self._input(event_type, data)  # the conversation as the previous emit left it
            self.emitted += 1
            run_kwargs.setdefault("run_id", f"{self.conversation.id}/{self.emitted}")
            result = await run(self.machine, event, **run_kwargs)
            self._absorb(result)
        return result

    def emit_sync(self, event_type: str, data: Any = None, **run_kwargs: Any) -> Any:
        """`emit` from synchronous code (a new event loop; not from inside a running one)."""
        event = self._input(event_type, data)
        self.emitted += 1
        run_kwargs.setdefault("run_id", f"{self.conversation.id}/{self.emitted}")
        result = run_sync(self.machine, event, **run_kwargs)
        self._absorb(result)
        return result

    def __repr__(self) -> str:
        return f"EventDriven({self.name!r}, handlers={list(self.handlers)})"
