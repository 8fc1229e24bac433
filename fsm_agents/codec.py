"""JSON encoding of events and effects: `{"type": <class name>, ...fields}`.

Used by cassettes (`fsm_agents.testing.cassette`) and stores. Decoding looks the class up among
every loaded subclass of `Event` / `Effect` (patterns define their own), so a class must be
imported before its records are loaded. Raises `CodecError` for an unknown type or invalid
fields.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from fsm_agents.errors import FsmAgentsError
from fsm_agents.events import Effect, Event
from fsm_agents.state import Frozen

__all__ = ["CodecError", "dump", "load_effect", "load_event"]

T = TypeVar("T", bound=Frozen)


class CodecError(FsmAgentsError):
    """A stored event or effect cannot be decoded (unknown type, invalid fields)."""


def dump(value: Event | Effect) -> dict[str, Any]:
    """`value` as a JSON-ready dict tagged with its class name."""
    return {"type": type(value).__name__, **value.model_dump(mode="json")}


def _classes(base: type[T]) -> dict[str, type[T]]:
    found: dict[str, type[T]] = {}
    pending: list[type[T]] = [base]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if "[" not in sub.__name__:  # skip parametrized generics
                found.setdefault(sub.__name__, sub)
            pending.append(sub)
    return found


def _load(base: type[T], data: dict[str, Any]) -> T:
    fields = dict(data)
    name = fields.pop("type", None)
    cls = _classes(base).get(str(name))
    if cls is None:
        raise CodecError(f"unknown {base.__name__.lower()} type {name!r}: import the module that defines it first")
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        raise CodecError(f"invalid {name} record: {exc}") from exc


def load_event(data: dict[str, Any]) -> Event:
    """The event `dump` encoded."""
    return _load(Event, data)


def load_effect(data: dict[str, Any]) -> Effect:
    """The effect `dump` encoded."""
    return _load(Effect, data)
