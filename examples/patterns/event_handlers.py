"""EventDriven: `data.received` and `error.occurred` handlers over one persistent conversation.

python -m examples.patterns.event_handlers
"""

from __future__ import annotations

from typing import Any

from examples.patterns._common import answers, last_user, main_with
from fsm_agents import Agent, RunResult
from fsm_agents.models import Model
from fsm_agents.patterns import EventDriven
from fsm_agents.state import ModelRequest

EVENTS: tuple[tuple[str, Any], ...] = (
    ("data.received", {"source": "sensors", "rows": 120, "mean_temp": 21.4}),
    ("error.occurred", {"source": "sensors", "error": "timeout on gateway 3"}),
    ("data.received", {"source": "sensors", "rows": 80, "mean_temp": 22.0}),
)


def analyse(request: ModelRequest) -> str:
    return f"analysed: {last_user(request)} ({len(request.messages)} messages of history)"


def respond(request: ModelRequest) -> str:
    return f"incident opened for: {last_user(request)}"


def build(model: Model | None = None) -> EventDriven:
    return EventDriven(
        "sensor_events",
        {
            "data.received": Agent("analyst", "Summarise the new data in one sentence.", model or answers(analyse)),
            "error.occurred": Agent("responder", "Describe the incident and the next step.", model or answers(respond)),
        },
    )


def run(bus: EventDriven, **kwargs: Any) -> RunResult:
    """Emit every event of `EVENTS` in order; the last run's result."""
    result: RunResult | None = None
    for event_type, data in EVENTS:
        result = bus.emit_sync(event_type, data, **kwargs)
    assert result is not None
    return result


def main() -> int:
    return main_with(build, lambda bus, kw: run(bus, **kw))


if __name__ == "__main__":
    raise SystemExit(main())
