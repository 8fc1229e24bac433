"""What a run gives back: `RunResult`, and the run-wide `Limits` it ran under.

See docs/architecture.md, "One run".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from fsm_agents.errors import FsmAgentsError, InvalidDefinition
from fsm_agents.events import Effect, Event, InputRequest, ModelReplied, Taken, ToolsFinished
from fsm_agents.machine import Machine
from fsm_agents.state import AssistantMessage, Failure, Phase, Snapshot, ToolResult, Usage, _made, fields_set

__all__ = ["Limits", "Pending", "RunResult", "RunStatus"]

RunStatus = Literal["done", "failed", "suspended"]


_BUDGETS = ("input_tokens", "output_tokens", "total_tokens", "requests")


@dataclass(frozen=True, slots=True)
class Limits:
    """Run-wide limits (seconds for times, tokens as the providers report them).

    - `model_timeout`: wall time for one model call, retries included → `ModelFailed(kind="timeout")`;
    - `tool_timeout`: default per-attempt timeout for tools that set none;
    - `max_concurrency`: tool calls of one reply / children of one fan-out running at once;
    - `input_tokens`, `output_tokens`, `total_tokens` (input + output): tokens the whole run tree
      (a pattern and all its children) may use; checked after each model reply, before the next
      effect (the reply that crossed the limit is kept);
    - `requests`: model calls the run tree may make; a call that would exceed it is not made;
    - `wall_time`: seconds the run tree may take, from the start of the `run`/`resume` call; a
      model call or tool still running at the deadline is cancelled.

    Exceeding one of the last five ends the run FAILED(`usage_limit`) through each machine's
    `limit_exceeded` transition (`Failure.detail` names the limit). They apply per call of
    `run`/`iterate`/`stream`/`resume`: a resumed run starts with a fresh budget (see
    docs/architecture.md, Limits).

    Each is `None` (no limit) or positive (the counts are ints ≥ 1); else `InvalidDefinition` at
    construction.
    """

    model_timeout: float | None = None
    tool_timeout: float | None = None
    max_concurrency: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    requests: int | None = None
    wall_time: float | None = None

    def __post_init__(self) -> None:
        for name in ("model_timeout", "tool_timeout", "wall_time"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf
            ):
                raise InvalidDefinition(f"Limits.{name} must be None or a positive number of seconds, got {value!r}")
        for name in ("max_concurrency", *_BUDGETS):
            n = getattr(self, name)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise InvalidDefinition(f"Limits.{name} must be None or an int >= 1, got {n!r}")

    @property
    def budgeted(self) -> bool:
        """Whether any of the usage limits (tokens, requests, wall time) is set."""
        return (
            self.input_tokens is not None
            or self.output_tokens is not None
            or self.total_tokens is not None
            or self.requests is not None
            or self.wall_time is not None
        )


@dataclass(frozen=True, slots=True)
class Pending:
    """One tool call a suspended run waits on: `run_id` is the run that awaits it (the top-level
    run, or a child of a pattern, `<parent id>/<task id>`), `request` what it awaits
    (`request.call_id`, `.tool`, `.arguments`, `.kind` = "approval" | "question", `.question`)."""

    run_id: str
    request: InputRequest

    @property
    def call_id(self) -> str:
        return self.request.call_id


class RunResult:
    """How a run ended: the final `snapshot`, every external `event` fed to `step` (with the
    start input, enough to replay the run), the `effect` each event answered, total token
    `usage`, the `trace` of transitions, and the `children` runs by task id.

    `status` is `"done"`, `"failed"` or `"suspended"`: a suspended run waits for a human's
    decisions on `pending` (a tuple of `Pending`); its snapshot is in a non-final phase
    (EXECUTING) and `fsm_agents.resume(result, machine, decisions=...)` continues it.

    Immutable. `effects` and `trace` are derived on first access by replaying `events` through
    the pure `machine.step` from `machine.start(input, context, run_id=run_id)` (cost: one step
    per event, once), so a live run does not keep every effect — each `CallModel` pins the
    history it was sent — nor a `Taken` per transition. Pass them explicitly when they are
    already known. Raises `FsmAgentsError` on access when the replay does not reproduce
    `snapshot` (a machine whose `step` is not pure).

    A run made by `run` keeps its events packed until `events` is first read: a model reply
    without usage as its message (which the conversation holds anyway), a `ToolsFinished` as
    its results (one result alone). `events` rebuilds equal event objects from them, once.

    Picklable (e.g. to hand it to another process): the pickle holds the events, trace and
    effects, derived first if need be, and not the machine (its models and tools are live
    objects: clients, locks, functions). `copy.copy` returns the result itself (it is immutable).
    """

    __slots__ = (
        "_effects",
        "_events",
        "_machine",
        "_packed",
        "_trace",
        "children",
        "context",
        "input",
        "pending",
        "run_id",
        "snapshot",
        "usage",
    )

    run_id: str
    input: Any
    snapshot: Snapshot[Any]
    usage: Usage
    children: Mapping[str, RunResult]
    context: Any
    pending: tuple[Pending, ...]
    _machine: Machine | None
    _trace: tuple[Taken, ...] | None
    _effects: tuple[Effect, ...] | None
    _events: tuple[Any, ...]
    _packed: bool

    def __init__(
        self,
        run_id: str,
        input: Any,
        snapshot: Snapshot[Any],
        events: tuple[Event, ...],
        usage: Usage,
        trace: tuple[Taken, ...] | None = None,
        children: Mapping[str, RunResult] | None = None,
        effects: tuple[Effect, ...] | None = None,
        *,
        machine: Machine | None = None,
        context: Any = None,
        pending: tuple[Pending, ...] = (),
        _packed: bool = False,
    ) -> None:
        if (trace is None or effects is None) and machine is None:
            raise TypeError("RunResult: pass trace= and effects=, or the machine= to derive them from the events")
        init = object.__setattr__
        init(self, "run_id", run_id)
        init(self, "input", input)
        init(self, "snapshot", snapshot)
        init(self, "_events", events)
        init(self, "_packed", _packed)
        init(self, "usage", usage)
        init(self, "children", children if children is not None else {})
        init(self, "context", context)
        init(self, "pending", pending)
        init(self, "_machine", machine)
        init(self, "_trace", trace)
        init(self, "_effects", effects)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"RunResult is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"RunResult is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        trace, effects = self._derived()
        fields = (self.run_id, self.input, self.snapshot, self.events, self.usage, trace, dict(self.children), effects)
        return (_unpickled, (*fields, self.context, self.pending))

    def __copy__(self) -> RunResult:
        return self

    def __repr__(self) -> str:  # compact: the events can be long
        return (
            f"RunResult(run_id={self.run_id!r}, status={self.status}, phase={self.snapshot.phase.value}, "
            f"step={self.snapshot.step}, events={len(self._events)}, usage={self.usage!r})"
        )

    @property
    def events(self) -> tuple[Event, ...]:
        """Every external event fed to `step`, in order."""
        if self._packed:
            object.__setattr__(self, "_events", tuple(_unpacked(item) for item in self._events))
            object.__setattr__(self, "_packed", False)
        return cast(tuple[Event, ...], self._events)

    @property
    def trace(self) -> tuple[Taken, ...]:
        """Every transition taken, in order (start's included)."""
        return self._derived()[0]

    @property
    def effects(self) -> tuple[Effect, ...]:
        """`effects[i]` is the effect `events[i]` answered."""
        return self._derived()[1]

    def _derived(self) -> tuple[tuple[Taken, ...], tuple[Effect, ...]]:
        if self._trace is None or self._effects is None:
            self._replay()
        assert self._trace is not None and self._effects is not None
        return self._trace, self._effects

    def _replay(self) -> None:
        machine = self._machine
        assert machine is not None
        step = machine.start(self.input, self.context, run_id=self.run_id)
        trace = list(step.transitions)
        effects: list[Effect] = []
        for event in self.events:
            effects.append(step.effects[0])
            step = machine.step(step.snapshot, event)
            trace.extend(step.transitions)
        if step.snapshot != self.snapshot:
            raise FsmAgentsError(
                f"{machine.name}: replaying the run's {len(self.events)} events did not reproduce its final snapshot; "
                "its step function is not pure"
            )
        object.__setattr__(self, "_trace", tuple(trace))
        object.__setattr__(self, "_effects", tuple(effects))

    @property
    def status(self) -> RunStatus:
        """`"suspended"` while the run awaits decisions, else `"done"` or `"failed"`."""
        if self.pending:
            return "suspended"
        return "done" if self.snapshot.phase is Phase.DONE else "failed"

    @property
    def phase(self) -> Phase:
        return self.snapshot.phase

    @property
    def ok(self) -> bool:
        return self.snapshot.phase is Phase.DONE

    @property
    def output(self) -> Any:
        return self.snapshot.output

    @property
    def failure(self) -> Failure | None:
        return self.snapshot.failure


def _unpickled(
    run_id: str,
    input: Any,
    snapshot: Snapshot[Any],
    events: tuple[Event, ...],
    usage: Usage,
    trace: tuple[Taken, ...],
    children: Mapping[str, RunResult],
    effects: tuple[Effect, ...],
    context: Any,
    pending: tuple[Pending, ...] = (),
) -> RunResult:
    """A `RunResult` from its pickle (see `RunResult.__reduce__`)."""
    return RunResult(run_id, input, snapshot, events, usage, trace, children, effects, context=context, pending=pending)


NO_USAGE = Usage()
_TOOLS_FINISHED_FIELDS = fields_set(ToolsFinished)
_MODEL_REPLIED_FIELDS = fields_set(ModelReplied)


def packed(event: Event) -> Any:
    """How a live run keeps `event` (see `RunResult`): fewer objects per event, as each one a run
    holds costs time in every full GC collection while it runs and memory after."""
    # only exact types are packed, so `_unpacked` can tell them apart from events
    if type(event) is ModelReplied and not event.usage and type(event.message) is AssistantMessage:
        return event.message
    if type(event) is ToolsFinished and type(event.results) is tuple:
        results = event.results
        if len(results) == 1 and type(results[0]) is ToolResult:
            return results[0]
        return results
    return event


def _unpacked(item: Any) -> Event:
    if type(item) is AssistantMessage:
        return _made(ModelReplied, {"message": item, "usage": NO_USAGE}, _MODEL_REPLIED_FIELDS)
    if type(item) is tuple:
        return _made(ToolsFinished, {"results": item}, _TOOLS_FINISHED_FIELDS)
    if type(item) is ToolResult:
        return _made(ToolsFinished, {"results": (item,)}, _TOOLS_FINISHED_FIELDS)
    return cast(Event, item)
