"""Checks of the arguments of the entry points (`run`, `run_sync`, `resume`, `resume_sync`).

Each `check_*` function returns nothing and raises a typed error naming the argument, what it
got and what it takes: `InvalidInput` for a value of the wrong kind, `InvalidDefinition`
(`ToolDefinitionError` for tools) for a bad configuration object. Without them a wrong type
surfaced later as a bare `AttributeError`, `TypeError` or `LookupError` from deep inside the run.
The run's *input* is checked by `fsm_agents.state.messages_from` (or the pattern that takes it).

Stores are duck-typed (the `fsm_agents.store.Store` protocol: `append`, `load`,
`conversations`, `threaded`) so that this module, below the store layer, does not import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fsm_agents.errors import InvalidDefinition, InvalidInput
from fsm_agents.tools import Tool, as_tools

__all__ = [
    "BACKENDS",
    "check_backend",
    "check_conversation_id",
    "check_limits",
    "check_machines",
    "check_models",
    "check_observers",
    "check_store",
    "check_tools",
]

#: The event loops `run_sync` / `resume_sync` can start (anyio's backends).
BACKENDS = ("asyncio", "trio")

_OBSERVER_HOOKS = ("on_effect", "on_event", "on_transition")
_STORE_METHODS = ("append", "load", "conversations")


def _shown(value: Any) -> str:
    """`type: repr` cut to 60 characters (a repr that fails shows the type only)."""
    try:
        text = repr(value)
    except Exception:
        return type(value).__name__
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _is_list_like(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, bytearray, memoryview, Mapping))


def check_limits(limits: Any, limits_class: type) -> None:
    """`limits` is `None` or a `limits_class` (`fsm_agents.Limits`); else `InvalidDefinition`."""
    if limits is not None and not isinstance(limits, limits_class):
        raise InvalidDefinition(
            f"limits must be a fsm_agents.Limits, e.g. Limits(model_timeout=30), or None; got {_shown(limits)}"
        )


def check_tools(tools: Any) -> None:
    """`tools` is `None`, a mapping of names to `Tool`s, or a list of tools / functions; else
    `ToolDefinitionError` (an `InvalidDefinition`), raised by `fsm_agents.tools.as_tools`."""
    if tools is None:
        return
    if isinstance(tools, Mapping):
        for name, t in tools.items():
            if not isinstance(name, str) or not isinstance(t, Tool):
                raise InvalidDefinition(
                    f"tools given as a mapping must map names to Tools (made with @tool); got {_shown(name)}: {_shown(t)}"
                )
        return
    as_tools(tools)  # raises ToolDefinitionError for a string, a single tool, a non-iterable, ...


def check_models(models: Any) -> None:
    """`models` is `None` or a mapping of agent names to models (objects with `complete`)."""
    if models is None:
        return
    if not isinstance(models, Mapping):
        raise InvalidInput(f"models must be a dict of agent name -> model, e.g. {{'writer': model}}; got {_shown(models)}")
    for name, model in models.items():
        if not isinstance(name, str):
            raise InvalidInput(f"models: keys are agent names (str); got {_shown(name)}")
        if model is not None and not callable(getattr(model, "complete", None)):
            raise InvalidInput(
                f"models[{name!r}] must be a model (an object with async complete(request), e.g. OpenAIChat); "
                f"got {_shown(model)}"
            )


def check_observers(observers: Any) -> None:
    """`observers` is a list of observers (objects with `on_effect` / `on_event` /
    `on_transition`, e.g. subclasses of `fsm_agents.observers.Observer`)."""
    if not _is_list_like(observers):
        raise InvalidInput(f"observers must be a list of Observers (e.g. [LoggingObserver()]); got {_shown(observers)}")
    for o in observers:
        if not any(callable(getattr(o, hook, None)) for hook in _OBSERVER_HOOKS):
            raise InvalidInput(
                f"observers: {_shown(o)} is not an observer (subclass fsm_agents.observers.Observer and override "
                "on_effect / on_event / on_transition)"
            )


def check_store(store: Any, *, required: bool = False) -> None:
    """`store` is a `fsm_agents.store.Store` (or `None` unless `required`); a path is refused
    with a hint to open one (`SQLiteStore(path)`)."""
    if store is None:
        if required:
            raise InvalidInput("store is required: pass the store the run was persisted to, e.g. SQLiteStore(path)")
        return
    if isinstance(store, (str, bytes)) or hasattr(store, "__fspath__"):
        raise InvalidInput(f"store must be a Store object, not a path: open it first, e.g. store=SQLiteStore({store!r})")
    if not all(callable(getattr(store, name, None)) for name in _STORE_METHODS) or not hasattr(store, "threaded"):
        raise InvalidInput(
            f"store must be a fsm_agents.store.Store (MemoryStore, SQLiteStore, PostgresStore); got {_shown(store)}"
        )


def check_conversation_id(conversation_id: Any) -> None:
    """`conversation_id` is a non-empty string."""
    if not isinstance(conversation_id, str) or not conversation_id:
        raise InvalidInput(f"conversation_id must be a non-empty string; got {_shown(conversation_id)}")


def check_machines(machines: Any) -> None:
    """`machines` (of `resume`) is a list; its items are checked by `as_machine`."""
    if not _is_list_like(machines):
        raise InvalidInput(f"machines must be a list of machines, Agents or patterns; got {_shown(machines)}")


def check_backend(backend: Any) -> None:
    """`backend` is one of `BACKENDS`."""
    if backend not in BACKENDS:
        raise InvalidInput(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {_shown(backend)}")
