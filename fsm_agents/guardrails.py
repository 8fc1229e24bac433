"""Guardrails: functions that check an agent's input or its final answer and may trip.

    def no_secrets(ctx: RunContext[Deps], value) -> GuardrailResult: ...
    Agent(..., input_guardrails=[no_secrets], output_guardrails=[guardrail(check, name="facts")])

A guardrail is called as `fn(ctx, value)` (sync or async; it may call a model itself) with the
run's `RunContext` and

- for an input guardrail: the run's input messages (a tuple of `Message`), concurrently with the
  agent's first model call — a trip cancels that call (as in the OpenAI Agents SDK);
- for an output guardrail: the validated final answer (a `str`, or the `output_type` value),
  before the run ends DONE.

It returns a `GuardrailResult(tripped, reason)`. A bare `bool` is refused (is `True` "tripped" or
"passed"? both conventions exist): returning anything but a `GuardrailResult`, or raising, trips
it too, with what it returned or raised as the reason. A trip ends the run
FAILED(`guardrail`) naming the guardrail. This module only defines them (pure data); the runtime
runs them (`fsm_agents.runtime.guardrails`). See docs/architecture.md, Guardrails.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from fsm_agents.context import RunContext
from fsm_agents.errors import InvalidDefinition

__all__ = ["Guardrail", "GuardrailFunction", "GuardrailResult", "GuardrailStage", "as_guardrails", "guardrail"]

GuardrailStage = Literal["input", "output"]


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """What a guardrail decided: `tripped` (True: stop the run) and why (`reason`, shown in the
    run's `Failure.message`). Raises `TypeError` when `tripped` is not a bool or `reason` not a str."""

    tripped: bool
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.tripped, bool):
            raise TypeError(f"GuardrailResult.tripped must be a bool, got {type(self.tripped).__name__}")
        if not isinstance(self.reason, str):
            raise TypeError(f"GuardrailResult.reason must be a str, got {type(self.reason).__name__}")


GuardrailFunction = Callable[[RunContext[Any], Any], "GuardrailResult | Awaitable[GuardrailResult]"]


class Guardrail:
    """A guardrail function with its name (`fn.__name__` unless given) and whether it is async
    (awaited on the event loop; a sync one runs in a worker thread, so a blocking check does not
    hold up the model call it runs beside). Calling it calls the function."""

    __slots__ = ("fn", "is_async", "name")

    fn: GuardrailFunction
    name: str
    is_async: bool

    def __init__(self, fn: GuardrailFunction, name: str | None = None) -> None:
        if isinstance(fn, Guardrail):
            name = name or fn.name
            fn = fn.fn
        if not callable(fn):
            raise InvalidDefinition(f"a guardrail must be a function (ctx, value) -> GuardrailResult, got {fn!r}")
        if name is None:
            name = getattr(fn, "__name__", None)
        if not isinstance(name, str) or not name:
            raise InvalidDefinition(f"guardrail {fn!r} has no name: give one with guardrail(fn, name=...)")
        self.fn = fn
        self.name = name
        call = getattr(fn, "__call__", None)  # noqa: B004  # an object with an async __call__ is async too
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)

    def __call__(self, ctx: RunContext[Any], value: Any) -> GuardrailResult | Awaitable[GuardrailResult]:
        return self.fn(ctx, value)

    def __repr__(self) -> str:
        return f"Guardrail({self.name!r})"


def guardrail(fn: GuardrailFunction | None = None, *, name: str | None = None) -> Any:
    """`guardrail(fn, name="...")` names a guardrail function; also a decorator (`@guardrail` or
    `@guardrail(name="...")`). Raises `InvalidDefinition` when `fn` is not callable or has no name."""
    if fn is None:
        return lambda f: Guardrail(f, name)
    return Guardrail(fn, name)


def as_guardrails(items: Iterable[Any], agent: str, option: str) -> tuple[Guardrail, ...]:
    """`items` (functions or `Guardrail`s) as `Guardrail`s, for `Agent(option=...)`. Raises
    `InvalidDefinition` naming `option` when `items` is not a list of callables, or two share a name."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable) or callable(items):
        raise InvalidDefinition(f"agent {agent!r}: {option} must be a list of guardrail functions, got {items!r}")
    out: list[Guardrail] = []
    for item in items:
        if not callable(item):
            raise InvalidDefinition(
                f"agent {agent!r}: {option} must hold functions (ctx, value) -> GuardrailResult, got {item!r}"
            )
        try:
            out.append(Guardrail(item))
        except InvalidDefinition as exc:
            raise InvalidDefinition(f"agent {agent!r}: {option}: {exc}") from None
    names = [g.name for g in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidDefinition(
            f"agent {agent!r}: {option} has two guardrails named {', '.join(map(repr, twice))}; "
            "name them apart with guardrail(fn, name=...)"
        )
    return tuple(out)
