"""`Observer`: the hooks the runtime calls while a run goes (docs/architecture.md, One run).
Concrete observers (logging, printing, OpenTelemetry) are in `fsm_agents.observers`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fsm_agents.events import Effect, Event, Taken
from fsm_agents.state import Snapshot

if TYPE_CHECKING:
    from fsm_agents.runtime.result import RunResult

__all__ = ["Observer"]


class Observer:
    """Base observer: every hook does nothing; override the ones you need. The runtime calls
    them in this order for each run (a pattern's children too, with their own run ids):
    `on_run_start`, then per step `on_effect`, `on_event`, `on_transition`..., and `on_run_end`
    when the run's call ends (DONE, FAILED or suspended; not when it is cancelled or raises)."""

    def on_run_start(self, run_id: str, machine: str) -> None:
        """The run `run_id` of the machine named `machine` starts (or resumes)."""

    def on_run_end(self, result: RunResult) -> None:
        """The run's call ended: `result.status` is "done", "failed" or "suspended"."""

    def on_effect(self, effect: Effect) -> None:
        """An effect is about to be performed."""

    def on_event(self, effect: Effect, event: Event) -> None:
        """`effect` finished and produced `event`."""

    def on_transition(self, taken: Taken, snapshot: Snapshot[Any]) -> None:
        """A transition was taken; `snapshot` is the state after the whole step."""
