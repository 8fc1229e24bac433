"""Immutable conversation state: phases, messages, tool calls and results, snapshots.

Every model here is a frozen pydantic v2 model; containers are tuples or `PersistentLog`, so no
mutable container is reachable from a `Snapshot` and `hash(snapshot)` works. Message shapes
follow the OpenAI chat-completions roles (https://platform.openai.com/docs/api-reference/chat);
provider clients translate them to each wire format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Generic, Literal, Self, TypeAlias, TypeGuard, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import core_schema

from fsm_agents.errors import InvalidInput
from fsm_agents.log import PersistentLog

__all__ = [
    "AssistantMessage",
    "Conversation",
    "EmptyContext",
    "Failure",
    "FailureKind",
    "Frozen",
    "Message",
    "ModelRequest",
    "ModelSettings",
    "Phase",
    "Snapshot",
    "SystemMessage",
    "ToolCall",
    "ToolMessage",
    "ToolResult",
    "ToolSpec",
    "Usage",
    "UserMessage",
]


class Frozen(BaseModel):
    """Base of every state model: frozen, extra fields rejected.

    `model_construct` and `model_copy` are overridden with fast paths (the step function builds
    several models per step): like pydantic's own, they do not validate; they fill defaults,
    share one immutable fields-set per class, and copy `__dict__` shallowly. Values are immutable,
    so sharing them between a model and its copies is safe.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def _fast_info(cls) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
        info = cls.__dict__.get("_Frozen__fast")
        if info is None:
            defaults: dict[str, Any] = {}
            factories: dict[str, Any] = {}
            for name, f in cls.model_fields.items():
                if f.alias is not None and f.alias != name:
                    raise TypeError(f"{cls.__name__}.{name}: aliases are not supported by Frozen's fast paths")
                if f.default_factory is not None:
                    factories[name] = f.default_factory
                elif not f.is_required():
                    defaults[name] = f.default
            # a set, as pydantic keeps it (its serializer refuses a frozenset for exclude_unset);
            # shared by the instances the fast paths build: frozen models never add to it
            info = (defaults, factories, set(cls.model_fields))
            type.__setattr__(cls, "_Frozen__fast", info)
        return info

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:  # type: ignore[override]
        """Build without validation (callers pass well-typed values); defaults are filled in."""
        defaults, factories, names = cls.__dict__.get("_Frozen__fast") or cls._fast_info()
        if len(values) != len(names):
            filled = dict(defaults)
            filled.update(values)
            for name, factory in factories.items():
                if name not in filled:
                    filled[name] = factory()
            values = filled
        return _made(cls, values, names)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A shallow copy with `update` applied, without validation (`deep=True`: pydantic's)."""
        if deep:
            return super().model_copy(update=update, deep=True)
        values = self.__dict__.copy()
        fields = self.__pydantic_fields_set__
        if update:
            values.update(update)
            if not fields.issuperset(update):  # as pydantic: an updated field counts as set
                fields = fields | update.keys()
        return _made(type(self), values, fields)


_new = object.__new__
# the slot descriptors pydantic's BaseModel declares, called directly (the fast paths above set
# all four on every new instance; a descriptor call skips the attribute lookup)
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


_M = TypeVar("_M", bound=BaseModel)


def fields_set(cls: type[Frozen]) -> set[str]:
    """Every field name of `cls`: the fields set of an instance built with all of them."""
    return cls._fast_info()[2]


def _made(cls: type[_M], values: dict[str, Any], fields_set: set[str]) -> _M:
    """A new `cls` instance holding `values` (not validated, not copied)."""
    new = _new(cls)
    _set_dict(new, values)
    _set_fields_set(new, fields_set)
    _set_extra(new, None)
    _set_private(new, None)
    return new


class Phase(StrEnum):
    """The six phases every machine uses; `DONE` and `FAILED` are final."""

    PLANNING = "PLANNING"
    EXECUTING = "EXECUTING"
    OBSERVING = "OBSERVING"
    HANDOFF = "HANDOFF"
    DONE = "DONE"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({Phase.DONE, Phase.FAILED})


class ToolCall(Frozen):
    """A tool call as the model produced it.

    `arguments` is the raw JSON text (OpenAI `tool_calls[].function.arguments`); it is kept
    verbatim so a malformed payload can be reported back to the model unchanged.
    """

    id: str
    name: str
    arguments: str = "{}"

    def parsed(self) -> Any:
        """The decoded arguments. Raises `json.JSONDecodeError` (a `ValueError`) when malformed."""
        return json.loads(self.arguments)


class SystemMessage(Frozen):
    role: Literal["system"] = "system"
    content: str


class UserMessage(Frozen):
    role: Literal["user"] = "user"
    content: str


_USER_FIELDS = fields_set(UserMessage)


class AssistantMessage(Frozen):
    """A model reply: text and/or tool calls. `agent` names the agent that produced it."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    agent: str | None = None


class ToolMessage(Frozen):
    """The result of one tool call as the model sees it; `is_error` marks a fed-back error."""

    role: Literal["tool"] = "tool"
    tool_call_id: str
    name: str
    content: str
    is_error: bool = False


Message: TypeAlias = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]
_MESSAGE = TypeAdapter(Message)


class _MessageLogSchema:
    """pydantic integration for `PersistentLog[Message]`: validates from any sequence of messages
    (or their dicts), serializes as a JSON array."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        item_schema = handler.generate_schema(Message)
        list_schema = core_schema.list_schema(item_schema)

        def to_log(items: list[Any]) -> PersistentLog[Any]:
            return PersistentLog(items)

        from_list = core_schema.no_info_after_validator_function(to_log, list_schema)
        return core_schema.json_or_python_schema(
            json_schema=from_list,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(PersistentLog), from_list]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda log: [_MESSAGE.dump_python(m, mode="json") for m in log],
            ),
        )


MessageLog: TypeAlias = Annotated[PersistentLog[Message], _MessageLogSchema]


class Conversation(Frozen):
    """An append-only conversation.

    `messages` is a `PersistentLog`: `append` shares the existing history instead of copying it,
    so the per-step cost does not grow with the length of the conversation.
    """

    id: str = "conversation"
    messages: MessageLog = Field(default_factory=PersistentLog)

    @classmethod
    def of(cls, *messages: Message, id: str = "conversation") -> Conversation:
        return _made(cls, {"id": id, "messages": PersistentLog(messages)}, _CONVERSATION_FIELDS)

    def append(self, *messages: Message) -> Conversation:
        """A new conversation with `messages` added; this one is unchanged."""
        return _made(Conversation, {"id": self.id, "messages": self.messages.append(*messages)}, _CONVERSATION_FIELDS)

    def __len__(self) -> int:
        return len(self.messages)


_CONVERSATION_FIELDS = {"id", "messages"}  # (a set, as pydantic keeps fields sets)


class Usage(Frozen):
    """Token counts reported by a provider (units: tokens)."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def __bool__(self) -> bool:
        return bool(self.input_tokens or self.output_tokens or self.requests)

    def __add__(self, other: Usage) -> Usage:
        if not other:
            return self
        if not self:
            return other
        return Usage.model_construct(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            requests=self.requests + other.requests,
        )


class ToolResult(Frozen):
    """What running one tool call produced.

    `ok=False` means `error` holds a message meant for the model (unknown tool, invalid JSON,
    validation error, exception, timeout). `content` is the serialized, possibly truncated
    output. `duration_ms` is wall time in milliseconds.
    """

    call_id: str
    name: str
    ok: bool
    content: str = ""
    error: str | None = None
    duration_ms: float = 0.0
    attempts: int = 1

    @property
    def text(self) -> str:
        """What the model is shown: the content, or the error message."""
        return self.content if self.ok else f"Error: {self.error}"


FailureKind: TypeAlias = Literal[
    "budget_exhausted",
    "model_error",
    "invalid_output",
    "tool_error",
    "handoff_loop",
    "child_failed",
    "uncertain_effect",
    "unknown_route",
]


class Failure(Frozen):
    """Why a machine ended in `FAILED`: a kind, a human message, and optional detail text."""

    kind: str
    message: str
    detail: str | None = None


class EmptyContext(Frozen):
    """The default user context: nothing."""


class ToolSpec(Frozen):
    """A tool as a model sees it: name, description, JSON schema of its arguments.

    The schema is kept as JSON text (immutable); `parameters` decodes it.
    """

    name: str
    description: str = ""
    parameters_json: str = '{"type": "object", "properties": {}}'

    @cached_property
    def parameters(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.parameters_json)
        return result


class ModelSettings(Frozen):
    """Sampling settings passed to the provider; `None` leaves the provider default."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None


class ModelRequest(Frozen):
    """Everything a model call needs, as data.

    `instructions` is sent as the system prompt ahead of `messages` (for an agent with dynamic
    instructions, the effect carries the static text and the runtime fills in the function's
    text before the call). `tool_choice` is `"auto"`, `"required"`, `"none"` or a tool name.
    `output_schema_json` is the JSON schema of the structured output the agent expects, if any.
    `parallel_tool_calls`: whether the model may ask for several tool calls in one reply
    (`None`: not sent, the provider's default; sent only with tools).
    """

    agent: str
    instructions: str = ""
    messages: MessageLog = Field(default_factory=PersistentLog)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"
    output_schema_json: str | None = None
    settings: ModelSettings = ModelSettings()
    # left out of dumps while unset, so requests recorded before the field existed still match
    parallel_tool_calls: bool | None = Field(default=None, exclude_if=lambda v: v is None)


D = TypeVar("D")


class Snapshot(Frozen, Generic[D]):
    """The whole state of one run of a machine at one step.

    - `machine`: the machine's name; `phase`: where it is; `step`: events consumed so far;
    - `conversation`: the shared, append-only history; `agent`: the active agent's name;
    - `pending`: tool calls awaiting results; `results`: the results last folded in;
    - `output`: the final answer (text or a validated frozen pydantic model) once `DONE`;
    - `failure`: why it is `FAILED`; `context`: the user's frozen model;
    - `data`: the machine's own frozen bookkeeping.

    Serializes to JSON; `output` and `context` are user types the snapshot cannot name, so they
    load back as plain JSON values (persistence stores the input and events, not snapshots).
    """

    machine: str
    phase: Phase
    conversation: Conversation
    agent: str | None = None
    step: int = 0
    pending: tuple[ToolCall, ...] = ()
    results: tuple[ToolResult, ...] = ()
    output: Any = None
    failure: Failure | None = None
    context: Any = EmptyContext()
    data: D

    def evolve(self, **changes: Any) -> Snapshot[D]:
        """A copy with `changes` applied (no validation: callers pass well-typed values); as with
        `model_copy`, the changed fields count as set (`model_fields_set`, `exclude_unset`)."""
        values = self.__dict__.copy()
        values.update(changes)
        fields = self.__pydantic_fields_set__
        if not fields.issuperset(changes):  # as `model_copy`: a changed field counts as set
            fields = fields | changes.keys()
        return _made(type(self), values, fields)

    def moved(self, phase: Phase, **changes: Any) -> Snapshot[D]:
        """A copy in `phase` with `step` + 1 and `changes` applied: what a transition to `phase`
        produces (`Machine` hands it to a plain action; a `@fused` action calls it itself)."""
        values = self.__dict__.copy()
        values["phase"] = phase
        values["step"] = values["step"] + 1
        fields = self.__pydantic_fields_set__
        if changes:
            values.update(changes)
            if not fields.issuperset(changes):
                fields = fields | changes.keys()
        if "step" not in fields:  # as `model_copy`: phase and step are changed, so they count as set
            fields = fields | {"step"}
        return _made(type(self), values, fields)

    @property
    def is_final(self) -> bool:
        return self.phase in _FINAL


_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_valid_name(name: object) -> TypeGuard[str]:
    """Whether `name` may name an agent, a pattern or a tool: 1-64 ASCII letters, digits, '_' or
    '-' (the providers' rule for function names, e.g. OpenAI's `^[a-zA-Z0-9_-]{1,64}$`; names
    also become parts of conversation ids and diagram file names)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def messages_from(value: str | Message | Iterable[Message] | Mapping[str, Any]) -> tuple[Message, ...]:
    """Normalise a run input: a string becomes one `UserMessage`; a message, or a mapping in a
    message's JSON form (`{"role": "user", "content": ...}`), one message; an iterable of them,
    a tuple of messages. Raises `InvalidInput` (a `ValueError`) for an input of another type
    (`None`, a number, bytes...), a mapping or an item that is not a valid message, and messages
    ending in an assistant message whose tool calls are not all answered by the `ToolMessage`s
    after it (the run would otherwise send the provider a history it refuses, or leave the calls
    unanswered)."""
    if isinstance(value, str):
        return (_made(UserMessage, {"role": "user", "content": value}, _USER_FIELDS),)
    if isinstance(value, (SystemMessage, UserMessage, AssistantMessage, ToolMessage)):
        messages: tuple[Message, ...] = (value,)
    elif isinstance(value, Mapping):
        messages = (_message(value, None),)
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray, memoryview)):
        messages = tuple(_message(m, i) for i, m in enumerate(value))
    else:
        raise InvalidInput(
            f"input must be a str, a message or a list of messages, not {type(value).__name__}: {_short_repr(value)}"
        )
    _check_calls_answered(messages)
    return messages


def _short_repr(value: Any) -> str:
    try:
        return repr(value)[:80]
    except Exception:
        return f"<{type(value).__name__}>"


def _check_calls_answered(messages: tuple[Message, ...]) -> None:
    """The trailing assistant message with tool calls (followed only by tool messages, if
    anything) must have every call answered."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, ToolMessage):
            continue
        if isinstance(m, AssistantMessage) and m.tool_calls:
            answered = {t.tool_call_id for t in messages[i + 1 :] if isinstance(t, ToolMessage)}
            missing = [c.id for c in m.tool_calls if c.id not in answered]
            if missing:
                raise InvalidInput(
                    f"input message {i} is an assistant message whose tool call(s) {', '.join(missing)} are not "
                    "answered: end the input with a ToolMessage(tool_call_id=...) for each call, or drop the calls"
                )
        return


def _message(value: Any, index: int | None) -> Message:
    try:
        return _MESSAGE.validate_python(value)
    except ValidationError as exc:
        which = "the input" if index is None else f"input message {index}"
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"{which} is not a message ({problems}), e.g. {{'role': 'user', 'content': '...'}}") from None
