"""Observers: see a run as it happens (logging with secrets redacted, live progress, traces).

An observer gets three calls from the runtime, none of which can change the run:
`on_effect(effect)` when an effect starts, `on_event(effect, event)` when its result came back,
`on_transition(taken, snapshot)` for every transition taken. Exceptions raised by an observer
are logged and ignored: observing must not break a run.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any, TextIO

from fsm_agents.events import (
    CallModel,
    Effect,
    Event,
    ModelFailed,
    ModelReplied,
    RunAgents,
    RunTools,
    Taken,
    ToolsFinished,
)
from fsm_agents.state import Snapshot

__all__ = ["LoggingObserver", "Observer", "PrintObserver", "RedactingFilter", "Redactor"]

SECRET_ENV_VARS = ("OPENAI_API_KEY", "MISTRAL_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY")

_PATTERNS = (
    re.compile(r"sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-~+/]{8,}=*"),
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|authorization|password|secret|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"),
)


class Redactor:
    """Replaces secrets in text with `[REDACTED]`: known key shapes (`sk-…`, `Bearer …`,
    `api_key=…`), the values of the provider key environment variables, and `secrets`."""

    def __init__(self, secrets: Iterable[str] = (), *, env_vars: Iterable[str] = SECRET_ENV_VARS) -> None:
        values = [s for s in secrets if s]
        values += [v for name in env_vars if (v := os.environ.get(name))]
        self._literals = sorted(set(values), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._literals:
            text = text.replace(value, "[REDACTED]")
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
        return text


class RedactingFilter(logging.Filter):
    """A `logging.Filter` that redacts every record's formatted message (attach it to handlers
    that may see provider traffic)."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        return True


class Observer:
    """Base observer: every hook does nothing; override the ones you need."""

    def on_effect(self, effect: Effect) -> None:
        """An effect is about to be performed."""

    def on_event(self, effect: Effect, event: Event) -> None:
        """`effect` finished and produced `event`."""

    def on_transition(self, taken: Taken, snapshot: Snapshot[Any]) -> None:
        """A transition was taken; `snapshot` is the state after the whole step."""


def describe_effect(effect: Effect) -> str:
    """A one-line, secret-free summary of an effect (no message contents)."""
    if isinstance(effect, CallModel):
        return f"call model for {effect.agent} ({len(effect.request.messages)} messages)"
    if isinstance(effect, RunTools):
        return f"run tools for {effect.agent}: " + ", ".join(c.name for c in effect.calls)
    if isinstance(effect, RunAgents):
        return "run agents: " + ", ".join(t.machine for t in effect.tasks)
    return type(effect).__name__


def describe_event(event: Event) -> str:
    """A one-line summary of an event."""
    if isinstance(event, ModelReplied):
        calls = event.message.tool_calls
        if calls:
            return "model asked for " + ", ".join(f"{c.name}({c.arguments})" for c in calls)
        return f"model answered: {(event.message.content or '')[:200]!r}"
    if isinstance(event, ModelFailed):
        return f"model failed ({event.kind}): {event.error}"
    if isinstance(event, ToolsFinished):
        return "tools returned " + ", ".join(
            f"{r.name} → {r.content[:80] if r.ok else 'error: ' + (r.error or '')[:80]!s}" for r in event.results
        )
    return event.name


class LoggingObserver(Observer):
    """Logs effects, events and transitions to `logger` (default `fsm_agents.run`) at `level`,
    every message passed through a `Redactor` first."""

    def __init__(
        self, logger: logging.Logger | None = None, level: int = logging.INFO, redactor: Redactor | None = None
    ) -> None:
        self.logger = logger or logging.getLogger("fsm_agents.run")
        self.level = level
        self.redact = redactor or Redactor()

    def _log(self, text: str) -> None:
        if self.logger.isEnabledFor(self.level):
            self.logger.log(self.level, "%s", self.redact(text))

    def on_effect(self, effect: Effect) -> None:
        self._log(f"[{effect.key}] effect: {describe_effect(effect)}")

    def on_event(self, effect: Effect, event: Event) -> None:
        self._log(f"[{effect.key}] event: {describe_event(event)}")

    def on_transition(self, taken: Taken, snapshot: Snapshot[Any]) -> None:
        self._log(f"[{snapshot.machine}] step {taken.step}: {taken.source} --{taken.event}--> {taken.target}")


class PrintObserver(Observer):
    """Live progress on a text stream (default: stderr) for scripts and the demo, redacted."""

    def __init__(self, stream: TextIO | None = None, redactor: Redactor | None = None) -> None:
        import sys

        self.stream = stream or sys.stderr
        self.redact = redactor or Redactor()

    def _write(self, text: str) -> None:
        self.stream.write(self.redact(text) + "\n")
        self.stream.flush()

    def on_event(self, effect: Effect, event: Event) -> None:
        self._write(f"    · {describe_event(event)}")

    def on_transition(self, taken: Taken, snapshot: Snapshot[Any]) -> None:
        self._write(f"  {snapshot.machine} step {taken.step:>3}: {taken.source:<9} --{taken.event}--> {taken.target}")
