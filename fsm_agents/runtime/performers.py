"""Performers: how the runtime carries out each kind of effect, as a table keyed by effect type.

A performer is `async (session, run, effect) -> Event | None`: it performs `effect` for the run
`run` and returns the event that answers it, or `None` when the run must suspend (an
`AwaitInput` without decisions, or a child that suspended). It never decides control flow:
that is the machine's `step`. Every exception of a model or a tool becomes an event here (a
`ModelFailed`, an error `ToolResult`), so a run ends DONE or FAILED, never in a traceback.
See docs/architecture.md, "One run".
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from fsm_agents.context import RunContext
from fsm_agents.errors import InvalidDecision, RunAborted
from fsm_agents.events import (
    AgentsFinished,
    Answer,
    Approved,
    AwaitInput,
    CallModel,
    Denied,
    Effect,
    Event,
    InputReceived,
    ModelFailed,
    ModelReplied,
    RunTools,
    ToolsFinished,
)
from fsm_agents.models.base import ModelError, ModelResponse, StreamDelta
from fsm_agents.runtime.session import RunState, Session
from fsm_agents.runtime.streaming import TextDelta, ToolCallDelta
from fsm_agents.state import ModelRequest, ToolResult, Usage, _made, fields_set
from fsm_agents.tools import _RUN_ID, _text_of

__all__ = ["PERFORMERS", "Performer", "check_decision_kinds", "model_failed", "model_replied", "usage_of"]

log = logging.getLogger("fsm_agents.runtime")

Performer = Callable[[Session, RunState, Any], Awaitable[Event | None]]

_TOOLS_FINISHED_FIELDS = fields_set(ToolsFinished)
_MODEL_REPLIED_FIELDS = fields_set(ModelReplied)


async def call_model(session: Session, run: RunState, effect: CallModel) -> Event:
    """`CallModel` → `ModelReplied` / `ModelFailed`, through the agent's model (streamed, with
    `stream_complete`, when someone watches the run's deltas), under `Limits.model_timeout`. The
    request offers the agent's own tools (from the effect) and the tools its toolsets listed
    when the run started (from the session)."""
    model = session.models[effect.agent]
    timeout = session.limits.model_timeout
    sink = session.sink
    request = effect.request
    if session.listed is not None:  # the tools the agent's toolsets listed join its own
        listed = session.listed_specs(run.machine, effect.agent)
        if listed:
            request = request.model_copy(update={"tools": (*request.tools, *listed)})
    dynamic = run.machine.dynamic_instructions()
    if dynamic and effect.agent in dynamic:
        try:
            request = await _with_instructions(request, dynamic[effect.agent], session.run_context(run, effect.agent))
        except RunAborted:
            raise
        except Exception as exc:  # the call is not made: a model failure of kind "instructions"
            log.debug("the instructions of %s raised", effect.agent, exc_info=True)
            return ModelFailed(
                error=f"the instructions function of agent {effect.agent!r} raised {type(exc).__name__}: {_text_of(exc)}",
                kind="instructions",
            )
    # (the driver calls the model itself, as below, when there is neither a timeout, a watcher, a
    # toolset nor dynamic instructions)
    try:
        if timeout is None and sink is None:  # the common path: no cancel scope to enter and leave
            response = await model.complete(request)
        else:
            with anyio.fail_after(timeout):
                if sink is not None and hasattr(model, "stream_complete"):
                    on_delta = _delta_sender(sink, run.run_id, effect.agent)
                    response = await model.stream_complete(request, on_delta)
                else:
                    response = await model.complete(request)
    except RunAborted:
        raise
    except Exception as exc:
        return model_failed(effect.agent, exc, timeout)
    return model_replied(response, effect.agent)


async def _with_instructions(request: ModelRequest, fn: Callable[[Any], Any], ctx: RunContext[Any]) -> ModelRequest:
    """`request` with its instructions computed by `fn(ctx)` (sync or async) for this call: the
    function's text, then the request's static text (a pattern's additions), a blank line
    apart. Raises what `fn` raises, and `TypeError` when it returns something else than a str."""
    text = fn(ctx)
    if inspect.isawaitable(text):
        text = await text
    if not isinstance(text, str):
        raise TypeError(f"it returned {type(text).__name__}, not str")
    static = request.instructions
    return request.model_copy(update={"instructions": f"{text}\n\n{static}" if static and text else text or static})


_YIELD_EVERY = 0.001  # s: how long a burst of buffered deltas may be parsed before the watcher runs


def _delta_sender(sink: Any, run_id: str, agent: str) -> Callable[[StreamDelta], Awaitable[None] | None]:
    """The `on_delta` callback of `stream_complete`: each delta to the sink as a stream event.
    Returns an awaitable (a checkpoint) only when the watcher is due to run, so a delta costs no
    coroutine."""
    due = 0.0  # when the watcher must next get the event loop (the first delta goes at once)

    def send(delta: StreamDelta) -> Awaitable[None] | None:
        nonlocal due
        if delta.text:
            sink.send_nowait(TextDelta(run_id, agent, delta.text))
        if delta.tool_index is not None:
            sink.send_nowait(
                ToolCallDelta(run_id, agent, delta.tool_index, delta.tool_call_id, delta.tool_name, delta.arguments)
            )
        # chunks that arrived together are parsed without awaiting anything: yield now and then so
        # the watcher sees the first one at once and the rest as they come
        now = time.perf_counter()
        if now >= due:
            due = now + _YIELD_EVERY
            return anyio.lowlevel.checkpoint()
        return None

    return send


async def run_tools(session: Session, run: RunState, effect: RunTools) -> Event:
    """`RunTools` → `ToolsFinished`, through the agent's `ToolExecutor` (which never raises for a
    bad call: its errors are results fed back to the model)."""
    executor = session.executor(run.machine, effect.agent)
    calls = effect.calls
    results: tuple[ToolResult, ...]
    # a tool whose first parameter is a RunContext gets the run's (made only when one does)
    ctx = session.run_context(run, effect.agent) if executor.takes_ctx else None
    # the tools see which run calls them (`fsm_agents.tools.current_run_id`), for as long as they run
    token = _RUN_ID.set(run.journal.conversation_id if run.journal is not None else run.run_id)
    try:
        if len(calls) == 1:
            results = (await executor.run_one(calls[0], ctx),)
        else:
            results = await executor.run(calls, ctx)
    finally:
        _RUN_ID.reset(token)
    return _made(ToolsFinished, {"results": results}, _TOOLS_FINISHED_FIELDS)


async def await_input(session: Session, run: RunState, effect: AwaitInput) -> Event | None:
    """`AwaitInput` → `InputReceived` with the human's decisions when `resume` brought them, else
    `None`: the run suspends (the driver records what it awaits)."""
    decisions = session.decisions
    if decisions is None or not any(r.call_id in decisions for r in effect.requests):
        return None
    chosen = []
    for r in effect.requests:
        d = decisions.pop(r.call_id, None)
        if d is None:
            raise InvalidDecision(f"call {r.call_id} ({r.tool}) awaits a decision and got none", [r.call_id])
        chosen.append((r.call_id, d))
    return InputReceived(decisions=tuple(chosen))


PERFORMERS: dict[type[Effect], Performer] = {
    CallModel: call_model,
    RunTools: run_tools,
    AwaitInput: await_input,
}
"""The performers of the effects that do not run child machines, by effect type (the driver adds
`RunAgents`, whose performer drives the children)."""


def model_failed(agent: str, exc: Exception, timeout: float | None) -> ModelFailed:
    """The event for a model call that raised `exc` (a provider bug must not kill the run: any
    exception is a model failure)."""
    if isinstance(exc, ModelError):
        return ModelFailed(error=_text_of(exc), kind=exc.kind)
    if isinstance(exc, TimeoutError):
        if timeout is None:
            return ModelFailed(error=f"TimeoutError: {_text_of(exc)}", kind="timeout")
        return ModelFailed(error=f"the model call took longer than {timeout} s", kind="timeout")
    log.warning("model for %s raised %s", agent, type(exc).__name__, exc_info=exc)
    return ModelFailed(error=f"{type(exc).__name__}: {_text_of(exc)}", kind="error")


def model_replied(response: Any, agent: str) -> Event:
    """The event for a model's `response` to `agent`'s call; the message is attributed to `agent`
    here, once (the machine would otherwise copy it, and the event would keep the original)."""
    if type(response) is not ModelResponse and not isinstance(response, ModelResponse):
        return ModelFailed(error=f"the model returned {type(response).__name__}, not a ModelResponse", kind="malformed")
    message = response.message
    if message.agent is None:
        message = message.model_copy(update={"agent": agent})
    return _made(ModelReplied, {"message": message, "usage": response.usage}, _MODEL_REPLIED_FIELDS)


def usage_of(event: Event) -> Usage:
    """Tokens an event reports: a model reply's, or the sum over a fan-in's children."""
    if isinstance(event, ModelReplied):
        return event.usage
    if isinstance(event, AgentsFinished):
        total = Usage()
        for outcome in event.outcomes:
            total = total + outcome.usage
        return total
    return Usage()


def check_decision_kinds(pending: Any, decisions: dict[str, Any]) -> None:
    """Raise `InvalidDecision` unless `decisions` decides exactly the calls of `pending` (a
    sequence of `Pending`), each with a decision of its kind."""
    awaited = {p.call_id: p for p in pending}
    unknown = sorted(set(decisions) - set(awaited))
    if unknown:
        raise InvalidDecision(
            f"no awaited call has the id(s) {', '.join(unknown)}; the run awaits {', '.join(sorted(awaited)) or 'nothing'}",
            unknown,
        )
    missing = sorted(set(awaited) - set(decisions))
    if missing:
        raise InvalidDecision(
            f"every awaited call needs a decision; missing: {', '.join(missing)} (decide them all in one resume)", missing
        )
    for cid, d in decisions.items():
        if not isinstance(d, (Approved, Denied, Answer)):
            raise InvalidDecision(
                f"call {cid}: a decision is Approved(), Denied(reason) or Answer(text), got {type(d).__name__}", [cid]
            )
        kind = awaited[cid].request.kind
        if kind == "question" and isinstance(d, Approved):
            raise InvalidDecision(f"call {cid} asks a question: decide it with Answer(text) (or Denied)", [cid])
        if kind == "approval" and isinstance(d, Answer):
            raise InvalidDecision(f"call {cid} awaits approval: decide it with Approved() or Denied(reason)", [cid])
