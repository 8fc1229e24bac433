"""Structured output: what an agent's `output_type` may be, its JSON schema, and how a reply
becomes a validated, immutable output value. Pure; no I/O.

- `output_spec(tp)` (cached per type): the `pydantic.TypeAdapter` of `tp`, the JSON schema sent
  to the model, and whether that schema wraps the type. OpenAI's structured outputs need an
  object at the schema's root ("Supported schemas": the root must be an object, not `anyOf`;
  https://platform.openai.com/docs/guides/structured-outputs#supported-schemas), and a tool's
  parameters are an object too, so a type that is not model-like (a model, a dataclass, a
  `TypedDict`) is sent as `{"response": <type>}` and unwrapped on the way back — as
  pydantic-ai's `final_result` tool and the OpenAI Agents SDK's `AgentOutputSchema` do.
- `validate_output(tp, text)`: the reply's JSON text (a ```json fence allowed) → `(value, None)`
  or `(None, why)`. A wrapped type also accepts the bare value (models often drop the wrapper).
- Values are frozen on the way in, so no mutable container is reachable from a `Snapshot`: a
  list (or set) comes back as a tuple (a frozenset), a dict as a `FrozenDict` (a read-only,
  hashable `dict`). Models and dataclasses must be frozen themselves (checked at definition).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, PydanticUserError, TypeAdapter, ValidationError, create_model
from typing_extensions import is_typeddict  # also knows typing_extensions.TypedDict (pydantic's on 3.11)

from fsm_agents.errors import InvalidDefinition

__all__ = ["OUTPUT_TOOL", "FrozenDict", "OutputSpec", "freeze", "output_spec", "validate_output"]

OUTPUT_TOOL = "final_result"
"""The name of the output tool (`output_mode="tool"`): its parameters are the output schema."""

OUTPUT_TOOL_DESCRIPTION = "The final response which ends this conversation: call it with your answer."

K = TypeVar("K")
V = TypeVar("V")


def _immutable(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError("a FrozenDict is immutable (an agent's output is part of a frozen snapshot)")


class FrozenDict(dict[K, V]):
    """A read-only, hashable `dict`: how a `dict` (or `TypedDict`) output is kept in a snapshot.

    It is a `dict` for reading, comparing (`== {"a": 1}` holds) and JSON (pydantic and `json`
    serialize it as an object); every mutating method raises `TypeError`."""

    __slots__ = ()

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _immutable

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


def freeze(value: Any) -> Any:
    """`value` with every list/tuple made a tuple, set a frozenset and dict a `FrozenDict`,
    recursively (other values, models included, are returned as they are)."""
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(v) for v in value)
    if isinstance(value, dict) and not isinstance(value, FrozenDict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    return value


def type_name(tp: Any) -> str:
    """A short readable name of a type: `Weather`, `list[str]`, `Literal['a', 'b']` (an
    `Annotated` type by the type it annotates)."""
    if typing.get_origin(tp) is typing.Annotated:
        return type_name(typing.get_args(tp)[0])
    if isinstance(tp, type) and not isinstance(tp, types.GenericAlias) and typing.get_origin(tp) is None:
        return tp.__name__
    return re.sub(r"\b(?:typing|typing_extensions|builtins)\.", "", repr(tp)).replace("__main__.", "")


def _is_model_like(tp: Any) -> bool:
    """A model, a dataclass or a `TypedDict`: its schema is an object with named properties."""
    return isinstance(tp, type) and (
        issubclass(tp, BaseModel) or dataclasses.is_dataclass(tp) or is_typeddict(tp)
    )


def _mutable_part(tp: Any, seen: set[int]) -> str | None:
    """The name of a non-frozen model or dataclass reachable from `tp` outside of a model's own
    fields (a frozen model owns its fields), or `None`."""
    if id(tp) in seen:
        return None
    seen.add(id(tp))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return None if tp.model_config.get("frozen") else tp.__name__
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        params = getattr(tp, "__dataclass_params__", None)
        return None if params is not None and params.frozen else tp.__name__
    if isinstance(tp, type) and is_typeddict(tp):
        hints = typing.get_type_hints(tp)
        return next((m for m in (_mutable_part(h, seen) for h in hints.values()) if m), None)
    return next((m for m in (_mutable_part(a, seen) for a in typing.get_args(tp)) if m), None)


_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, eq=False)
class OutputSpec:
    """What an agent needs of its `output_type`, built once per type by `output_spec`.

    - `type`, `name` (readable, for messages);
    - `adapter`: validates the value itself; `wrapper`: validates `{"response": value}` when
      the type is sent wrapped (`None` for a model-like type);
    - `schema`: the JSON schema sent to the model (an object; `title` is the schema's name,
      sanitized to the providers' `^[A-Za-z0-9_-]{1,64}$`); `schema_json`: the same as text.
    """

    type: Any
    name: str
    adapter: TypeAdapter[Any]
    wrapper: type[BaseModel] | None
    schema: Mapping[str, Any]
    schema_json: str

    @property
    def wrapped(self) -> bool:
        return self.wrapper is not None

    @property
    def schema_name(self) -> str:
        return str(self.schema.get("title") or OUTPUT_TOOL)

    def validate(self, text: str) -> Any:
        """The frozen value `text` (JSON) stands for. Raises `ValidationError`."""
        if self.wrapper is None:
            return freeze(self.adapter.validate_json(text))
        try:
            return freeze(self.wrapper.model_validate_json(text).response)
        except ValidationError as wrapped_error:
            try:
                return freeze(self.adapter.validate_json(text))  # the bare value, without the wrapper
            except ValidationError:
                raise wrapped_error from None


def _wrapper(tp: Any) -> type[BaseModel]:
    """The model `{"response": tp}` a non-object type is sent as."""
    return create_model(OUTPUT_TOOL, __config__=ConfigDict(frozen=True), response=(tp, ...))


@lru_cache(maxsize=256)
def output_spec(tp: Any) -> OutputSpec:
    """The `OutputSpec` of `tp` (cached). Raises `InvalidDefinition` naming `output_type` for a
    type pydantic cannot validate or build a JSON schema for, and for a non-frozen model or
    dataclass (the output is kept in a frozen snapshot)."""
    name = type_name(tp)
    mutable = _mutable_part(tp, set())
    if mutable is not None:
        raise InvalidDefinition(
            f"output_type {name}: {mutable} is not frozen; snapshots are immutable, so make it frozen "
            "(model_config = ConfigDict(frozen=True), or @dataclass(frozen=True))"
        )
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(tp)
        wrapper: type[BaseModel] | None = None
        if _is_model_like(tp):
            schema = adapter.json_schema()
        else:
            wrapper = _wrapper(tp)
            schema = wrapper.model_json_schema()
    except (PydanticUserError, TypeError, ValueError, AttributeError, NameError) as exc:
        raise InvalidDefinition(
            f"output_type {name}: pydantic cannot validate it or build a JSON schema for it ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); use a frozen pydantic model, a dataclass, a TypedDict, "
            "or a container/union/Literal of JSON types"
        ) from None
    if schema.get("type") != "object":  # e.g. a RootModel: send it wrapped too
        wrapper = _wrapper(tp)
        schema = wrapper.model_json_schema()
    title = _NAME_CHARS.sub("_", str(schema.get("title") or OUTPUT_TOOL))[:64] or OUTPUT_TOOL
    schema = {**schema, "title": title}
    return OutputSpec(tp, name, adapter, wrapper, types.MappingProxyType(schema), json.dumps(schema))


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def validate_output(tp: Any, text: str) -> tuple[Any, str | None]:
    """`(value, None)` when `text` (JSON, possibly in a ```json fence) validates as `tp`, else
    `(None, why)` with pydantic's errors, one `location: message` each."""
    spec = output_spec(tp)
    match = _FENCE.match(text)
    try:
        return spec.validate(match.group(1) if match else text), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        return None, f"the final answer does not match {spec.name}: {problems}"


def prompt_instructions(schema_json: str) -> str:
    """The instructions that ask for structured output in the prompt (`output_mode="prompt"`,
    and providers that cannot send a schema natively)."""
    return f"Reply with only a JSON object (no other text) that matches this JSON schema:\n{schema_json}"
