"""How the runtime runs guardrails (`fsm_agents.guardrails`): beside the first model call, and on
the final answer. See docs/architecture.md, Guardrails.

- `call_model_guarded`: a `CallModel` that names input guardrails runs the model call and the
  guardrails in one task group; the first guardrail that trips cancels the rest (the model call
  included) and its `GuardrailTripped` answers the effect; when none trips, the model's event does.
- `check_output`: the `CheckOutput` performer; the output guardrails run concurrently on the
  validated answer → `OutputChecked`, or the first trip's `GuardrailTripped`.

A guardrail that raises, or returns anything but a `GuardrailResult`, trips with that as the
reason: the run ends FAILED(`guardrail`) instead of leaving with a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import Any, cast

import anyio

from fsm_agents.events import CallModel, CheckOutput, Event, GuardrailTripped, OutputChecked
from fsm_agents.guardrails import Guardrail, GuardrailResult, GuardrailStage
from fsm_agents.runtime.performers import call_model
from fsm_agents.runtime.session import RunState, Session
from fsm_agents.tools import _text_of

__all__ = ["call_model_guarded", "check_output", "perform_call_model", "run_guardrail"]

log = logging.getLogger("fsm_agents.runtime.guardrails")


async def run_guardrail(
    session: Session, run: RunState, agent: str, g: Guardrail, value: Any, stage: GuardrailStage
) -> GuardrailTripped | None:
    """Run one guardrail on `value`: `None` when it passed, else the `GuardrailTripped` event (a
    trip, an exception, or a result that is not a `GuardrailResult`)."""
    ctx = session.run_context(run, agent)
    out: Any
    try:
        if g.is_async:
            out = await cast(Awaitable[Any], g.fn(ctx, value))
        else:
            out = await anyio.to_thread.run_sync(partial(g.fn, ctx, value), abandon_on_cancel=True)
            if hasattr(out, "__await__"):  # a sync function that returned a coroutine
                out = await out
    except Exception as exc:
        log.warning("guardrail %s of %s raised %s", g.name, agent, type(exc).__name__, exc_info=exc)
        return GuardrailTripped(guardrail=g.name, stage=stage, reason=f"it raised {type(exc).__name__}: {_text_of(exc)}")
    if not isinstance(out, GuardrailResult):
        return GuardrailTripped(
            guardrail=g.name,
            stage=stage,
            reason=f"it returned {type(out).__name__} {out!r:.80}, not a GuardrailResult "
            "(return GuardrailResult(tripped=..., reason=...))",
        )
    if out.tripped:
        return GuardrailTripped(guardrail=g.name, stage=stage, reason=out.reason)
    return None


def _guardrails(run: RunState, agent: str, names: Sequence[str], stage: GuardrailStage) -> list[Guardrail]:
    known = run.machine.guardrails_for(agent, stage)
    return [known[n] for n in names]


async def _first_trip(
    session: Session, run: RunState, agent: str, guards: Sequence[Guardrail], value: Any, stage: GuardrailStage,
    beside: Any = None,
) -> GuardrailTripped | None:
    """Run `guards` (and the coroutine function `beside`, if given) concurrently; the first trip
    cancels the others and is returned."""
    tripped: GuardrailTripped | None = None

    async with anyio.create_task_group() as tg:

        async def one(g: Guardrail) -> None:
            nonlocal tripped
            found = await run_guardrail(session, run, agent, g, value, stage)
            if found is not None and tripped is None:
                tripped = found
                tg.cancel_scope.cancel()

        if beside is not None:
            tg.start_soon(beside)
        for g in guards:
            tg.start_soon(one, g)
    return tripped


async def call_model_guarded(session: Session, run: RunState, effect: CallModel) -> Event:
    """`CallModel` with input guardrails → `GuardrailTripped` (the model call cancelled), or the
    model's `ModelReplied` / `ModelFailed` once every guardrail passed."""
    guards = _guardrails(run, effect.agent, effect.guardrails, "input")
    reply: Event | None = None

    async def model() -> None:
        nonlocal reply
        reply = await call_model(session, run, effect)

    tripped = await _first_trip(session, run, effect.agent, guards, tuple(effect.request.messages), "input", model)
    if tripped is not None:
        return tripped
    assert reply is not None
    return reply


async def perform_call_model(session: Session, run: RunState, effect: CallModel) -> Event | None:
    """The `CallModel` performer of the driver's table: with input guardrails named on the effect,
    `call_model_guarded`; else the plain model call."""
    if effect.guardrails:
        return await call_model_guarded(session, run, effect)
    return await call_model(session, run, effect)


async def check_output(session: Session, run: RunState, effect: CheckOutput) -> Event:
    """`CheckOutput` → `OutputChecked`, or the first trip's `GuardrailTripped`."""
    guards = _guardrails(run, effect.agent, effect.guardrails, "output")
    tripped = await _first_trip(session, run, effect.agent, guards, effect.output, "output")
    return tripped if tripped is not None else OutputChecked()
