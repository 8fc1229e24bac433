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
from typing import TYPE_CHECKING, Any, TextIO

from fsm_agents._secrets import registered_secrets
from fsm_agents.errors import FsmAgentsError
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
from fsm_agents.runtime.observer import Observer
from fsm_agents.state import Snapshot

if TYPE_CHECKING:
    from fsm_agents.runtime.result import RunResult

__all__ = ["LoggingObserver", "Observer", "OpenTelemetryObserver", "PrintObserver", "RedactingFilter", "Redactor"]

SECRET_ENV_VARS = ("OPENAI_API_KEY", "MISTRAL_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY")

_PATTERNS = (
    # OpenAI / Anthropic / OpenRouter / test keys: `sk-` then 8+ key characters, not inside a
    # word (so "task-management" stays)
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-~+/]{8,}=*"),
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|authorization|password|secret|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"),
)


class Redactor:
    """Replaces secrets in text with `[REDACTED]`: known key shapes (`sk-…` with 8 or more key
    characters, `Bearer …`, `api_key=…`), the values of the provider key environment variables,
    `secrets`, and every key a model was given in this process (`api_key=` or from the
    environment; see `fsm_agents._secrets`), including models created after this redactor."""

    def __init__(self, secrets: Iterable[str] = (), *, env_vars: Iterable[str] = SECRET_ENV_VARS) -> None:
        values = [s for s in secrets if s]
        values += [v for name in env_vars if (v := os.environ.get(name))]
        self._own = frozenset(values)
        self._registered: tuple[str, ...] | None = None
        self._literals: list[str] = []

    def _current_literals(self) -> list[str]:
        registered = registered_secrets()
        if registered is not self._registered:  # a model registered a key since the last call
            self._registered = registered
            self._literals = sorted(self._own.union(registered), key=len, reverse=True)
        return self._literals

    def __call__(self, text: str) -> str:
        for value in self._current_literals():
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

    def on_run_start(self, run_id: str, machine: str) -> None:
        self._log(f"run {run_id} of {machine} starts")

    def on_run_end(self, result: RunResult) -> None:
        failure = f" ({result.failure.kind}: {result.failure.message})" if result.failure is not None else ""
        self._log(f"run {result.run_id} ends {result.status} at step {result.snapshot.step}{failure}")

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


class OpenTelemetryObserver(Observer):
    """One OpenTelemetry span per run (`invoke_agent <machine>`, with the run's status, token
    usage and failure kind) and one per effect nested in it, named and tagged after the GenAI semantic conventions
    (development status: https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-agent-spans/).

    - `CallModel` → span `chat <agent>` (`gen_ai.operation.name="chat"`); its event adds
      `gen_ai.usage.input_tokens` / `gen_ai.usage.output_tokens` when the provider reported them
      and `fsm_agents.tool_calls` (how many the reply asked for); a `ModelFailed` sets the span's
      status to ERROR with `error.type` = the failure kind (`http`, `timeout`, `malformed`, ...).
    - `RunTools` → span `execute_tool <names>` (`gen_ai.tool.name`: the names, comma-separated);
      a failed call sets ERROR with `error.type="tool_error"` (the model still gets the error).
    - `RunAgents` → span `invoke_agent <machines>`; a child that did not reach DONE sets ERROR
      with `error.type="child_failed"`.

    Every span carries `gen_ai.agent.name`, `gen_ai.conversation.id` (the run id) and
    `fsm_agents.effect.key`. The transitions the effect's event led to are span events
    `fsm_agents.transition` (`source`, `event`, `target`, `step`); the span ends when the run's
    next effect starts or the run reaches DONE/FAILED. While an effect runs its span is the
    current span, so child runs and a provider client's own instrumentation nest under it.
    Only names, counts and kinds are recorded: no message content, arguments or tool output.

    `tracer`: an `opentelemetry.trace.Tracer` (default: the global tracer provider's). Needs the
    `opentelemetry-api` package (`pip install 'fsm-agents[otel]'`); raises `FsmAgentsError`
    naming it when missing. Spans of a run that is cancelled mid-effect are not ended.
    """

    def __init__(self, tracer: Any = None) -> None:
        try:
            from opentelemetry import context, trace
        except ImportError:
            raise FsmAgentsError(
                "OpenTelemetryObserver needs the opentelemetry-api package: pip install 'fsm-agents[otel]'"
            ) from None
        self._context, self._trace = context, trace
        self.tracer = tracer or trace.get_tracer("fsm_agents")
        self._open: dict[str, tuple[Any, Any]] = {}  # run id -> (span, context token or None)
        self._runs: dict[str, tuple[Any, Any]] = {}  # run id -> (run span, context token)

    def on_run_start(self, run_id: str, machine: str) -> None:
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.conversation.id": run_id,
            "fsm_agents.machine": machine,
        }
        span = self.tracer.start_span(f"invoke_agent {machine}", attributes=attributes)
        token = self._context.attach(self._trace.set_span_in_context(span))
        self._runs[run_id] = (span, token)

    def on_run_end(self, result: RunResult) -> None:
        self._end(result.run_id)
        opened = self._runs.pop(result.run_id, None)
        if opened is None:
            return
        span, token = opened
        span.set_attribute("fsm_agents.status", result.status)
        span.set_attribute("gen_ai.usage.input_tokens", result.usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", result.usage.output_tokens)
        if result.failure is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", result.failure.kind)
            span.set_status(Status(StatusCode.ERROR, result.failure.kind))
        self._context.detach(token)
        span.end()

    def _end(self, run_id: str) -> None:
        opened = self._open.pop(run_id, None)
        if opened is not None:
            span, token = opened
            if token is not None:
                self._context.detach(token)
            span.end()

    def on_effect(self, effect: Effect) -> None:
        run_id = effect.key.rsplit("/", 2)[0]
        self._end(run_id)
        attributes: dict[str, Any] = {
            "gen_ai.conversation.id": run_id,
            "fsm_agents.effect.key": effect.key,
        }
        if isinstance(effect, CallModel):
            operation, target = "chat", effect.agent
            attributes["fsm_agents.messages"] = len(effect.request.messages)
        elif isinstance(effect, RunTools):
            operation, target = "execute_tool", ",".join(c.name for c in effect.calls)
            attributes["gen_ai.tool.name"] = target
        elif isinstance(effect, RunAgents):
            operation, target = "invoke_agent", ",".join(t.machine for t in effect.tasks)
        else:
            operation, target = type(effect).__name__, ""
        agent = getattr(effect, "agent", None)
        if agent:
            attributes["gen_ai.agent.name"] = agent
        attributes["gen_ai.operation.name"] = operation
        span = self.tracer.start_span(f"{operation} {target}".strip(), attributes=attributes)
        token = self._context.attach(self._trace.set_span_in_context(span))
        self._open[run_id] = (span, token)

    def on_event(self, effect: Effect, event: Event) -> None:
        run_id = effect.key.rsplit("/", 2)[0]
        opened = self._open.get(run_id)
        if opened is None:
            return
        span, token = opened
        if token is not None:  # the effect is over: its span is no longer the current one
            self._context.detach(token)
            self._open[run_id] = (span, None)
        error: str | None = None
        if isinstance(event, ModelReplied):
            span.set_attribute("fsm_agents.tool_calls", len(event.message.tool_calls))
            if event.usage.requests or event.usage.input_tokens or event.usage.output_tokens:
                span.set_attribute("gen_ai.usage.input_tokens", event.usage.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", event.usage.output_tokens)
        elif isinstance(event, ModelFailed):
            error = event.kind or "error"
        elif isinstance(event, ToolsFinished):
            failed = sum(1 for r in event.results if not r.ok)
            span.set_attribute("fsm_agents.tools.failed", failed)
            error = "tool_error" if failed else None
        else:
            outcomes = getattr(event, "outcomes", None)
            if outcomes is not None:
                failed = sum(1 for o in outcomes if o.phase != "DONE")
                span.set_attribute("fsm_agents.children.failed", failed)
                error = "child_failed" if failed else None
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))

    def on_transition(self, taken: Taken, snapshot: Snapshot[Any]) -> None:
        run_id = snapshot.conversation.id
        opened = self._open.get(run_id)
        if opened is None:
            return
        opened[0].add_event(
            "fsm_agents.transition",
            {"source": str(taken.source), "event": taken.event, "target": str(taken.target), "step": taken.step},
        )
        if snapshot.is_final and taken.target == snapshot.phase:
            self._end(run_id)
