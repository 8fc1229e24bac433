"""JSON encoding of events, effects and run inputs: `{"type": <class name>, ...fields}`.

Used by cassettes (`fsm_agents.testing.cassette`) and stores. Decoding looks the class up among
every loaded subclass of `Event` / `Effect` (patterns define their own), so a class must be
imported before its records are loaded. Raises `CodecError` for an unknown type or invalid
fields.

JSON loses some types a run holds: an agent's output is its `output_type` (a frozen pydantic
model), a fan-in's output a tuple of outputs, and a pattern's input may be a model
(`RecursiveTask`, `EventInput`). Such a value is stored with its *shape* (`json_shape`) and
rebuilt from it (`rebuilt`): an `AgentsFinished` outcome carries `"output_shape"`, an input
`"shape"`, so a replay folds and starts from the values the live run had.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from fsm_agents.errors import CodecError, FsmAgentsError, ShapeMismatch  # noqa: F401 - re-exported here
from fsm_agents.events import AgentsFinished, Effect, Event
from fsm_agents.output import FrozenDict
from fsm_agents.state import AssistantMessage, Frozen, Message, SystemMessage, ToolMessage, UserMessage

__all__ = [
    "CodecError",
    "ShapeMismatch",
    "dump",
    "dump_input",
    "json_shape",
    "load_effect",
    "load_event",
    "load_input",
    "rebuilt",
]

T = TypeVar("T", bound=Frozen)
M = TypeVar("M", bound=BaseModel)


def dump(value: Event | Effect, *, exclude: Any = None) -> dict[str, Any]:
    """`value` as a JSON-ready dict tagged with its class name (an `AgentsFinished` outcome whose
    output JSON would not load back as the same value also carries `"output_shape"`). `exclude`
    is passed to `model_dump`."""
    data = {"type": type(value).__name__, **value.model_dump(mode="json", exclude=exclude)}
    if isinstance(value, AgentsFinished):
        for outcome, dumped in zip(value.outcomes, data["outcomes"], strict=True):
            shape = json_shape(outcome.output)
            if shape is not None:
                dumped["output_shape"] = shape
    return data


def _subclasses(base: type[M]) -> Iterator[type[M]]:
    """Every loaded subclass of `base`, once each, siblings in creation order."""
    seen: set[type[M]] = set()
    pending: list[type[M]] = [base]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                pending.append(sub)
                yield sub


def _classes(base: type[T]) -> dict[str, type[T]]:
    found: dict[str, type[T]] = {}
    for sub in _subclasses(base):
        if "[" not in sub.__name__:  # skip parametrized generics
            found.setdefault(sub.__name__, sub)
    return found


def _load(base: type[T], data: dict[str, Any]) -> T:
    fields = dict(data)
    name = fields.pop("type", None)
    cls = _classes(base).get(str(name))
    if cls is None:
        raise CodecError(f"unknown {base.__name__.lower()} type {name!r}: import the module that defines it first")
    outcomes = fields.get("outcomes")
    if isinstance(outcomes, list) and any(isinstance(o, dict) and "output_shape" in o for o in outcomes):
        fields["outcomes"] = [_reshaped(o) for o in outcomes]
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        raise CodecError(f"invalid {name} record: {exc}") from exc


def _reshaped(outcome: Any) -> Any:
    if not isinstance(outcome, dict) or "output_shape" not in outcome:
        return outcome
    rest = dict(outcome)
    shape = rest.pop("output_shape")
    rest["output"] = rebuilt(rest.get("output"), shape)
    return rest


def load_event(data: dict[str, Any]) -> Event:
    """The event `dump` encoded."""
    return _load(Event, data)


def load_effect(data: dict[str, Any]) -> Effect:
    """The effect `dump` encoded."""
    return _load(Effect, data)


# -- shapes ---------------------------------------------------------------------------------------


def json_shape(value: Any) -> Any:
    """What `value`'s JSON (`to_jsonable_python`) loses, so `rebuilt` can restore it: `None` when
    the JSON loads back as an equal value (text, numbers, booleans, null), else
    `{"model": "module:QualifiedName"}` for a pydantic model (rebuilt by the class's own
    validation, so its typed fields come back typed), and `{"tuple": [shape, ...]}` or
    `{"frozenset": [shape, ...]}` (one shape per item, in the order the items are dumped), and
    `{"frozendict": {key: shape, ...}}` for a `FrozenDict` (a dict output; str keys). A value
    of any other type (a dataclass, a datetime) is stored as its JSON and loads back as that JSON.
    """
    if isinstance(value, BaseModel):
        return {"model": f"{type(value).__module__}:{type(value).__qualname__}"}
    if isinstance(value, tuple):
        return {"tuple": [json_shape(v) for v in value]}
    if isinstance(value, frozenset):
        return {"frozenset": [json_shape(v) for v in value]}
    if isinstance(value, FrozenDict):
        return {"frozendict": {str(k): json_shape(v) for k, v in value.items()}}
    return None


def _model_class(name: str) -> type[BaseModel]:
    """The loaded pydantic model class named `module:QualifiedName`, found among every loaded
    subclass of `BaseModel` (as event classes are: its module must be imported before the value
    is loaded; nothing is imported from a name in stored data). When one class statement ran
    more than once (e.g. in a function called twice), the newest class wins."""
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name)  # the class as its (already imported) module names it now: inside
    if module is not None and "<" not in qualname:  # Temporal's sandbox, the sandbox's own copy of it
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            return obj
    found: type[BaseModel] | None = None
    for sub in _subclasses(BaseModel):
        if f"{sub.__module__}:{sub.__qualname__}" == name:
            found = sub  # the same statement's later class comes later in its base's list
    if found is None:
        raise CodecError(f"a stored value is of type {name}, which is not loaded: import its module first")
    return found


def rebuilt(value: Any, shape: Any) -> Any:
    """`value` (loaded from JSON) rebuilt as the value `json_shape` described. Raises
    `ShapeMismatch` when a model class no longer validates it, `CodecError` for a class that is
    not loaded or a shape that does not fit the value."""
    if shape is None:
        return value
    if not isinstance(shape, dict) or len(shape) != 1:
        raise CodecError(f"a stored value's shape is malformed: {str(shape)[:200]}")
    ((kind, spec),) = shape.items()
    if kind == "model":
        cls = _model_class(str(spec))
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise ShapeMismatch(f"a stored value no longer validates as {spec} (the class changed): {exc}") from None
    if kind in ("tuple", "frozenset"):
        if not isinstance(value, list) or not isinstance(spec, list) or len(spec) != len(value):
            raise CodecError(f"a stored value does not match its shape ({kind}): {str(value)[:200]}")
        items = [rebuilt(v, s) for v, s in zip(value, spec, strict=True)]
        return tuple(items) if kind == "tuple" else frozenset(items)
    if kind == "frozendict":
        if not isinstance(value, dict) or not isinstance(spec, dict) or set(spec) != set(value):
            raise CodecError(f"a stored value does not match its shape (frozendict): {str(value)[:200]}")
        return FrozenDict({k: rebuilt(v, spec[k]) for k, v in value.items()})
    raise CodecError(f"a stored value's shape has an unknown kind {kind!r}")


# -- run inputs ---------------------------------------------------------------------------------

_MESSAGES = TypeAdapter(list[Message])
_MESSAGE_TYPES = (SystemMessage, UserMessage, AssistantMessage, ToolMessage)


def dump_input(value: Any) -> dict[str, Any]:
    """A run input as JSON: `{"text": s}`, `{"messages": [...]}` (a message or messages) or
    `{"json": value}` (anything else JSON-able, e.g. a pattern's input), with `"shape":
    json_shape(value)` when its JSON alone would not load back as the same value."""
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, _MESSAGE_TYPES):
        value = [value]
    if isinstance(value, Iterable) and not isinstance(value, (Mapping, bytes)):
        items = list(value)
        if items and all(isinstance(m, _MESSAGE_TYPES) for m in items):
            return {"messages": [m.model_dump(mode="json") for m in items]}
    shape = json_shape(value)
    return {"json": to_jsonable_python(value), **({"shape": shape} if shape is not None else {})}


def load_input(data: Mapping[str, Any]) -> Any:
    """The inverse of `dump_input`: messages come back as a tuple of messages, a shaped value as
    the model or tuple it was. Raises `CodecError` (`ShapeMismatch`, see `rebuilt`)."""
    if "text" in data:
        return data["text"]
    if "messages" in data:
        try:
            return tuple(_MESSAGES.validate_python(data["messages"]))
        except ValidationError as exc:
            raise CodecError(f"stored input messages do not validate: {exc}") from None
    if "shape" in data:
        return rebuilt(data.get("json"), data["shape"])
    return data.get("json")
