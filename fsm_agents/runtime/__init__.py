"""The runtime: the only place that awaits. It performs effects and feeds their events to `step`.

    result = await run(agent_or_machine, "question", models=..., limits=Limits(...))
    result = run_sync(agent_or_machine, "question")          # from synchronous code
    async with iterate(agent, "question") as r: ...          # one StepItem per step
    async for ev in stream(agent, "question"): ...           # deltas, transitions, effects
    result = await resume(result, agent, decisions={...})    # a human decided

One driver (`driver.drive`) does all of it; performers (`performers.PERFORMERS`) carry out each
effect type; a journal persists the run when `store=` is given. Works on asyncio and trio.
Cancellation is structured: cancelling a run cancels the model calls, tools and child runs it
started. See docs/architecture.md.
"""

from fsm_agents.errors import UncertainEffect
from fsm_agents.machine import as_machine
from fsm_agents.runtime.api import iterate, new_run_id, register_journal_factory, resume, run, stream
from fsm_agents.runtime.driver import Journal, Position, RunState, Session, drive
from fsm_agents.runtime.result import Limits, Pending, RunResult, RunStatus
from fsm_agents.runtime.streaming import (
    EffectFinished,
    EffectStarted,
    Finished,
    StepItem,
    StreamEvent,
    Suspended,
    TextDelta,
    ToolCallDelta,
    TransitionTaken,
)
from fsm_agents.runtime.sync import resume_sync, run_sync

__all__ = [
    "EffectFinished",
    "EffectStarted",
    "Finished",
    "Journal",
    "Limits",
    "Pending",
    "Position",
    "RunResult",
    "RunState",
    "RunStatus",
    "Session",
    "StepItem",
    "StreamEvent",
    "Suspended",
    "TextDelta",
    "ToolCallDelta",
    "TransitionTaken",
    "UncertainEffect",
    "as_machine",
    "drive",
    "iterate",
    "new_run_id",
    "register_journal_factory",
    "resume",
    "resume_sync",
    "run",
    "run_sync",
    "stream",
]
