"""`load_object("MODULE:OBJECT")`: the objects the command line and the diagram registry name.

It sits below `fsm_agents.cli` and `fsm_agents.diagrams` (both use it), so neither imports the
other (docs/architecture.md, Layers).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

from fsm_agents.errors import FsmAgentsError
from fsm_agents.tools import Tool

__all__ = ["EXAMPLE_TARGET", "load_object"]

#: A target that exists in a checkout: a factory building the pipeline example on its scripted models.
EXAMPLE_TARGET = "examples.patterns.pipeline:build"


def _call_factory(spec: str, factory: Any) -> Any:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        required = [
            name
            for name, p in signature.parameters.items()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if required:
            raise FsmAgentsError(
                f"{spec} is a function that needs argument(s) {', '.join(required)}: name an Agent, a pattern, a "
                "machine, or a factory that takes no argument"
            )
    try:
        return factory()
    except FsmAgentsError:
        raise
    except Exception as exc:
        raise FsmAgentsError(f"{spec}() raised {type(exc).__name__}: {exc}") from exc


def load_object(spec: str) -> Any:
    """Import `MODULE:OBJECT` (OBJECT may be dotted); a factory (a function that is not a tool)
    is called without arguments. Raises `FsmAgentsError` with a clear message when the module or
    attribute is missing, when OBJECT is a `Tool`, when the factory needs arguments or raises."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise FsmAgentsError(f"expected MODULE:OBJECT (e.g. {EXAMPLE_TARGET}), got {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the current directory is importable
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise FsmAgentsError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FsmAgentsError(f"{module_name!r} has no attribute {attr!r}") from None
    if isinstance(obj, Tool):
        raise FsmAgentsError(
            f"{spec} is a tool, not an agent: name an Agent that uses it (Agent(..., tools=[{obj.name}])), "
            "a pattern or a machine"
        )
    if callable(obj) and not isinstance(obj, type) and not hasattr(obj, "machine") and not hasattr(obj, "step"):
        obj = _call_factory(spec, obj)
    return obj
