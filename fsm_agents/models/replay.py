"""`ReplayModel`: a `Model` that answers with the model replies a cassette recorded
(`fsm_agents.testing.record`). It lives with the models so that `fsm_agents.models` offers it
without importing the testing kit (docs/architecture.md, Layers); the cassette format is the
testing kit's (`fsm_agents.testing.cassette`).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterator
from typing import Any

from fsm_agents.codec import load_effect, load_event
from fsm_agents.errors import CassetteDivergence
from fsm_agents.events import CallModel, ModelReplied
from fsm_agents.models.base import ModelError, ModelResponse
from fsm_agents.state import ModelRequest

__all__ = ["ReplayModel", "all_interactions", "request_shape"]


def all_interactions(cassette: Any) -> Iterator[Any]:
    """The interactions of `cassette` (a `fsm_agents.testing.Cassette`) and of its children
    (depth first, each child after its parent's)."""
    yield from cassette.interactions
    for child in cassette.children.values():
        yield from all_interactions(child)


def request_shape(request: ModelRequest) -> dict[str, Any]:
    return {
        "agent": request.agent,
        "roles": [m.role for m in request.messages],
        "tools": sorted(t.name for t in request.tools),
    }


class ReplayModel:
    """A `Model` that answers with the recorded replies of `cassette` (its children's included),
    in order for each agent (so the children of a parallel fan-out may ask in any order).

    Each request is compared with the recorded one (agent, message roles, tools offered); a
    mismatch raises `CassetteDivergence` (the runtime lets it through instead of turning it into
    a model failure).
    """

    def __init__(self, cassette: Any) -> None:
        self._calls: dict[str | None, deque[tuple[int, Any, Any]]] = defaultdict(deque)
        for i in all_interactions(cassette):
            if i.effect["type"] == "CallModel":
                effect = load_effect(i.effect)
                assert isinstance(effect, CallModel)
                self._calls[effect.agent].append((i.step, effect, load_event(i.event)))

    async def complete(self, request: ModelRequest) -> ModelResponse:
        calls = self._calls.get(request.agent)
        if not calls:
            raise CassetteDivergence(-1, f"no more recorded model calls of {request.agent}", request_shape(request))
        step, effect, event = calls.popleft()
        assert isinstance(effect, CallModel)
        expected, actual = request_shape(effect.request), request_shape(request)
        if expected != actual:
            raise CassetteDivergence(step, expected, actual)
        if not isinstance(event, ModelReplied):
            raise ModelError(f"recorded model failure: {getattr(event, 'error', event)}")
        return ModelResponse(message=event.message, usage=event.usage)


