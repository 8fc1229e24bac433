"""What an open run shows while it goes: `StepItem` (one per step, from `iterate`) and the typed
stream events of `stream` (`TextDelta`, `ToolCallDelta`, `TransitionTaken`, `EffectStarted`,
`EffectFinished`, `Suspended`, `Finished`).

Every stream event carries `run_id`: the top-level run's id, or a child's (`<parent id>/<task
id>`) for the machines a pattern runs. Plain frozen dataclasses (slots): they are made per text
delta, so they must be cheap. See docs/architecture.md, "Open runs".
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from fsm_agents.events import Effect, Event, Taken
from fsm_agents.state import Snapshot

if TYPE_CHECKING:
    from fsm_agents.runtime.result import Pending, RunResult

__all__ = [
    "Channel",
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


class Channel:
    """An unbounded single-consumer queue of stream events between the driver (`send_nowait`,
    never blocks) and the watcher (`async for`). Lighter than a memory object stream: a delta
    costs a deque append, and the watcher awaits only when the queue is empty."""

    __slots__ = ("_closed", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._waiter: anyio.Event | None = None
        self._closed = False

    def send_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def close(self) -> None:
        self._closed = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def __aiter__(self) -> Channel:
        return self

    async def batches(self) -> AsyncIterator[deque[Any]]:
        """The queue each time it holds items (the caller empties it), until closed and empty."""
        items = self._items
        while True:
            if items:
                yield items
            elif self._closed:
                return
            else:
                waiter = self._waiter = anyio.Event()
                await waiter.wait()

    async def __anext__(self) -> Any:
        items = self._items
        while not items:
            if self._closed:
                raise StopAsyncIteration
            waiter = self._waiter = anyio.Event()
            await waiter.wait()
        return items.popleft()


StreamEvent = TextDelta | ToolCallDelta | TransitionTaken | EffectStarted | EffectFinished | Suspended | Finished
