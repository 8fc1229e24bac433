"""`FsmWorkflow`: any fsm_agents machine as a Temporal workflow.

The workflow *is* the pure core: it imports the machine by `MODULE:OBJECT` inside Temporal's
workflow sandbox (fsm_agents is not passed through: each workflow run imports it afresh, and the
sandbox refuses any clock, randomness or I/O the core would touch), folds `machine.step` over the
events its effects bring back, and turns each effect into Temporal commands:

    CallModel   → activity `fsm_agents.perform` (the model call, beside its input guardrails;
                  its reply comes back)
    CheckOutput → activity `fsm_agents.perform` (the output guardrails; their verdict comes back)
    RunTools    → activity `fsm_agents.perform` (the reply's tool calls; their results come back;
                  a non-idempotent tool gets one attempt, see below)
    RunAgents   → one child workflow per task (`<workflow id>/<task id>`), then the
                  `AgentsFinished` event recorded by `fsm_agents.journal`
    AwaitInput  → a "started" record, then the run waits for the `decide` update (the decisions,
                  checked by its validator like `resume`'s), recorded as `InputReceived`

Activities read the conversation from the event store by reference (`conversation_id`, `seq`)
and write its records; the workflow's history holds the deltas only (docs/architecture.md,
"Temporal"). This is not `fsm_agents.runtime.driver.drive`: the driver's performers run on anyio,
whose asyncio backend cannot be imported inside the sandbox (it subclasses `threading.Thread`),
and they perform tools in-process; the loop below is the smallest deterministic one over
`machine.step`, with the same rules (one effect per non-final step, else `MachineStalled`).

A run that made `RunInput.continue_as_new_after` events, or that the server says is growing
large (`workflow.info().is_continue_as_new_suggested()`), continues as new carrying only
`(conversation_id, seq)`; the new run reads its events back from the store (`fsm_agents.load`).

Queries: `progress` (`Progress`), `snapshot` (the current snapshot as JSON). Update: `decide`
(`{call id: {"kind": "approved"} | {"kind": "denied", "reason": ...} | {"kind": "answer", "text":
...}}`), rejected with `InvalidDecision` / `NotSuspended` before anything is recorded.

Streaming (`RunInput.stream`): the `perform` activity of a model call publishes its deltas as
the signal `fsm_agents.deltas` (a batch of JSON items, at most one every ~100 ms); the workflow
appends them to a list (signals are in the history: replay rebuilds it) and the query
`fsm_agents.deltas(after)` returns `{"items": [...], "next": n, "status": ...}`, the items from
index `after` on (indices stay absolute across continue-as-new). A child workflow keeps its own
deltas: `temporal.stream` shows the top-level run's.
"""

from __future__ import annotations

import asyncio
import importlib
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from fsm_agents import codec
from fsm_agents.errors import FsmAgentsError, InvalidDecision, MachineStalled, NotSuspended
from fsm_agents.events import (
    AgentOutcome,
    AgentsFinished,
    AwaitInput,
    CallModel,
    CheckOutput,
    Decision,
    Effect,
    Event,
    InputReceived,
    ModelReplied,
    RunAgents,
    RunTools,
    Step,
)
from fsm_agents.machine import Machine, as_machine
from fsm_agents.runtime.performers import check_decision_kinds
from fsm_agents.runtime.result import Pending
from fsm_agents.state import Failure, Phase, Usage
from fsm_agents.temporal._types import (
    ACTIVITY_JOURNAL,
    ACTIVITY_LOAD,
    ACTIVITY_PERFORM,
    ACTIVITY_START,
    QUERY_DELTAS,
    QUERY_PROGRESS,
    QUERY_SNAPSHOT,
    SIGNAL_DELTAS,
    UPDATE_DECIDE,
    WORKFLOW,
    EffectInput,
    EffectOutput,
    LoadOutput,
    Progress,
    RunInput,
    RunSummary,
    StartInput,
)

__all__ = ["FsmWorkflow", "machine_at"]

_machines: dict[str, Machine] = {}  # spec -> machine, per sandbox (one workflow run)


def machine_at(spec: str, path: list[str] | tuple[str, ...] = ()) -> Machine:
    """The machine `spec` (`MODULE:OBJECT`, an `Agent`, pattern, machine, or a factory taking no
    argument) names, then its child machines along `path`. Raises `FsmAgentsError`."""
    machine = _machines.get(spec)
    if machine is None:
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise FsmAgentsError(f"a machine is named MODULE:OBJECT, got {spec!r}")
        # definition code (the module, a factory) runs without the sandbox's restrictions: a
        # model may take a lock, an import hook may read files; `start` and `step` run restricted
        with workflow.unsafe.sandbox_unrestricted():
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
            if callable(obj) and not hasattr(obj, "step") and not hasattr(obj, "as_machine"):
                obj = obj()
            machine = _machines[spec] = as_machine(obj)
    for name in path:
        child = machine.children().get(name)
        if child is None:
            raise FsmAgentsError(f"{machine.name} has no child machine {name!r}")
        machine = child
    return machine


_DECISION: TypeAdapter[Any] = TypeAdapter(Decision)


def _decisions(data: dict[str, Any]) -> dict[str, Any]:
    return {str(cid): _DECISION.validate_python(d) for cid, d in data.items()}


@workflow.defn(name=WORKFLOW, sandboxed=True)
class FsmWorkflow:
    """Runs one machine (a top-level run, or a child of a pattern's fan-out) to DONE or FAILED."""

    def __init__(self) -> None:
        self._step: Step | None = None
        self._seq = 0
        self._awaiting: AwaitInput | None = None
        self._run_id = ""
        self._decided: dict[str, Any] | None = None
        self._input: dict[str, Any] | None = None
        self._deltas: list[dict[str, Any]] = []  # published deltas (`RunInput.stream`), from `_deltas_base` on
        self._deltas_base = 0

    # -- queries, the update and the deltas signal ----------------------------------------------

    @workflow.query(name=QUERY_PROGRESS)
    def progress(self) -> Progress:
        if self._step is None:
            return Progress("starting", 0, self._seq, "running")
        snap = self._step.snapshot
        awaiting = self._awaiting
        if awaiting is not None and self._decided is None:
            return Progress(
                snap.phase.value, snap.step, self._seq, "suspended", [r.model_dump(mode="json") for r in awaiting.requests]
            )
        final = snap.phase in (Phase.DONE, Phase.FAILED)
        status = ("done" if snap.phase is Phase.DONE else "failed") if final else "running"
        return Progress(snap.phase.value, snap.step, self._seq, status)

    @workflow.signal(name=SIGNAL_DELTAS)
    def add_deltas(self, batch: list[dict[str, Any]]) -> None:
        self._deltas.extend(batch)

    @workflow.query(name=QUERY_DELTAS)
    def deltas(self, after: int) -> dict[str, Any]:
        start = max(after - self._deltas_base, 0)
        return {
            "items": self._deltas[start:],
            "next": self._deltas_base + len(self._deltas),
            "status": self.progress().status,
        }

    @workflow.query(name=QUERY_SNAPSHOT)
    def snapshot(self) -> dict[str, Any] | None:
        return None if self._step is None else self._step.snapshot.model_dump(mode="json")

    @workflow.update(name=UPDATE_DECIDE)
    async def decide(self, decisions: dict[str, Any]) -> list[str]:
        self._decided = _decisions(decisions)
        return sorted(self._decided)

    @decide.validator
    def _check_decisions(self, decisions: dict[str, Any]) -> None:
        try:
            awaiting = self._awaiting
            if awaiting is None or self._decided is not None:
                raise NotSuspended("the run awaits no decision now", list(decisions))
            if not isinstance(decisions, dict):
                raise InvalidDecision(f"decisions are a dict of call id -> decision, got {type(decisions).__name__}")
            try:
                given = _decisions(decisions)
            except Exception as exc:
                raise InvalidDecision(
                    f"a decision is {{'kind': 'approved'}}, {{'kind': 'denied', 'reason': ...}} or "
                    f"{{'kind': 'answer', 'text': ...}}: {exc}",
                    list(decisions),
                ) from None
            check_decision_kinds([Pending(self._run_id, r) for r in awaiting.requests], given)
        except (InvalidDecision, NotSuspended) as exc:
            raise ApplicationError(str(exc), list(exc.call_ids), type=type(exc).__name__, non_retryable=True) from None

    # -- the run --------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: RunInput) -> RunSummary:
        machine = machine_at(inp.spec, inp.path)
        self._run_id = inp.run_id
        self._deltas_base = inp.deltas_base
        events: list[Event] = []
        if inp.seq is None:
            if inp.input is None:
                raise ApplicationError("RunInput.input is required for a new run", non_retryable=True)
            self._input = inp.input
            start_input = codec.load_input(inp.input)
            step = machine.start(start_input, None, run_id=inp.run_id)
            self._step = step
            self._seq = await self._activity(
                ACTIVITY_START,
                StartInput(inp.machine, inp.path, inp.conversation_id, inp.run_id, inp.input),
                inp,
            )
        else:
            loaded: LoadOutput = await workflow.execute_activity(
                ACTIVITY_LOAD,
                EffectInput(inp.machine, inp.path, inp.conversation_id, inp.seq, ""),
                result_type=LoadOutput,
                start_to_close_timeout=timedelta(seconds=inp.activity_timeout),
                retry_policy=RetryPolicy(maximum_attempts=10),
            )
            self._input = loaded.input
            step = machine.start(codec.load_input(loaded.input), None, run_id=loaded.run_id)
            for data in loaded.events:
                event = codec.load_event(data)
                events.append(event)
                step = machine.step(step.snapshot, event)
            self._step = step
            self._seq = loaded.seq
        made = 0
        finals = machine.table.finals
        while step.snapshot.phase not in finals:
            if len(step.effects) != 1:
                raise MachineStalled(
                    f"{machine.name}: phase {step.snapshot.phase} at step {step.snapshot.step} asks for "
                    f"{len(step.effects)} effects; a non-final step must ask for exactly one"
                )
            effect = step.effects[0]
            event = await self._perform(machine, inp, effect)
            events.append(event)
            step = self._step = machine.step(step.snapshot, event)
            made += 1
            if step.snapshot.phase not in finals and (
                (inp.continue_as_new_after is not None and made >= inp.continue_as_new_after)
                or workflow.info().is_continue_as_new_suggested()
            ):
                workflow.continue_as_new(
                    RunInput(
                        inp.spec,
                        inp.machine,
                        inp.conversation_id,
                        inp.run_id,
                        None,
                        inp.path,
                        self._seq,
                        inp.activity_timeout,
                        inp.heartbeat_timeout,
                        inp.continue_as_new_after,
                        inp.return_events,
                        inp.stream,
                        self._deltas_base + len(self._deltas),
                    )
                )
        snap = step.snapshot
        usage = Usage()
        for event in events:
            if isinstance(event, ModelReplied):
                usage = usage + event.usage
            elif isinstance(event, AgentsFinished):
                for outcome in event.outcomes:
                    usage = usage + outcome.usage
        outcome = AgentOutcome.model_construct(
            task_id=inp.run_id.rsplit("/", 1)[-1],
            machine=machine.name,
            phase=snap.phase,
            output=snap.output,
            failure=snap.failure,
            usage=usage,
            # a parent workflow folds its child's conversation; a top-level caller reads the store
            conversation=snap.conversation if inp.path else None,
        )
        return RunSummary(
            inp.conversation_id,
            inp.run_id,
            snap.phase.value,
            snap.step,
            self._seq,
            codec.dump(AgentsFinished(outcomes=(outcome,))),
            [codec.dump(e) for e in events] if inp.return_events else None,
            self._input if inp.return_events else None,
        )

    async def _activity(self, name: str, arg: Any, inp: RunInput, *, attempts: int = 10) -> Any:
        out = await workflow.execute_activity(
            name,
            arg,
            result_type=int,
            start_to_close_timeout=timedelta(seconds=inp.activity_timeout),
            heartbeat_timeout=None if inp.heartbeat_timeout is None else timedelta(seconds=inp.heartbeat_timeout),
            retry_policy=RetryPolicy(maximum_attempts=attempts, initial_interval=timedelta(milliseconds=200)),
        )
        return out

    async def _effect(self, inp: RunInput, arg: EffectInput, timeout: float, attempts: int) -> EffectOutput:
        out: EffectOutput = await workflow.execute_activity(
            ACTIVITY_PERFORM if arg.mode == "perform" else ACTIVITY_JOURNAL,
            arg,
            result_type=EffectOutput,
            start_to_close_timeout=timedelta(seconds=timeout),
            heartbeat_timeout=None if inp.heartbeat_timeout is None else timedelta(seconds=inp.heartbeat_timeout),
            retry_policy=RetryPolicy(maximum_attempts=attempts, initial_interval=timedelta(milliseconds=200)),
        )
        self._seq = out.seq
        return out

    async def _perform(self, machine: Machine, inp: RunInput, effect: Effect) -> Event:
        ref = EffectInput(inp.machine, inp.path, inp.conversation_id, self._seq, effect.key)
        if isinstance(effect, CallModel) and inp.stream:
            ref.stream = True
        if isinstance(effect, (CallModel, CheckOutput)):  # a model call (with its input guardrails), an output check
            out = await self._effect(inp, ref, inp.activity_timeout, 10)
        elif isinstance(effect, RunTools):
            tools = machine.tools_for(effect.agent)
            chosen = [tools.get(c.name) for c in effect.calls]
            once = any(t is not None and not t.idempotent for t in chosen)
            per_call = [(t.timeout or inp.activity_timeout) * (t.retries + 1) for t in chosen if t is not None]
            timeout = max([inp.activity_timeout, *per_call]) + 30.0
            try:
                # a non-idempotent tool is attempted once: when the attempt is lost (its worker
                # died), the settling call below finds its "started" record and answers
                # EffectUncertain without performing it (a tool that never started runs then)
                out = await self._effect(inp, ref, timeout, 1 if once else 10)
            except ActivityError:
                if not once:
                    raise
                workflow.logger.warning("%s: tool effect %s lost its worker; settling it", inp.run_id, effect.key)
                out = await self._effect(inp, ref, timeout, 10)
        elif isinstance(effect, RunAgents):
            return await self._children(machine, inp, effect)
        elif isinstance(effect, AwaitInput):
            await self._effect(inp, EffectInput(**{**ref.__dict__, "mode": "begin"}), inp.activity_timeout, 10)
            self._awaiting, self._decided = effect, None
            await workflow.wait_condition(lambda: self._decided is not None)
            decided: dict[str, Any] = self._decided or {}
            event: Event = InputReceived(decisions=tuple((r.call_id, decided[r.call_id]) for r in effect.requests))
            self._awaiting, self._decided = None, None
            end = EffectInput(**{**ref.__dict__, "seq": self._seq, "mode": "end", "event": codec.dump(event)})
            await self._effect(inp, end, inp.activity_timeout, 10)
            return event
        else:
            raise ApplicationError(f"no Temporal performer for effect {type(effect).__name__}", non_retryable=True)
        assert out.event is not None
        return codec.load_event(out.event)

    async def _children(self, machine: Machine, inp: RunInput, effect: RunAgents) -> Event:
        ref = EffectInput(inp.machine, inp.path, inp.conversation_id, self._seq, effect.key, "begin")
        await self._effect(inp, ref, inp.activity_timeout, 10)
        known = machine.children()
        wid = workflow.info().workflow_id

        async def one(task: Any) -> AgentOutcome:
            if task.machine not in known:
                return AgentOutcome(
                    task_id=task.task_id,
                    machine=task.machine,
                    phase=Phase.FAILED,
                    failure=Failure(kind="child_failed", message=f"{machine.name} has no child machine {task.machine!r}"),
                )
            child = RunInput(
                inp.spec,
                inp.machine,
                f"{inp.conversation_id}/{task.task_id}",
                f"{inp.run_id}/{task.task_id}",
                codec.dump_input(task.input),
                [*inp.path, task.machine],
                None,
                inp.activity_timeout,
                inp.heartbeat_timeout,
                inp.continue_as_new_after,
                stream=inp.stream,
            )
            summary: RunSummary = await workflow.execute_child_workflow(
                WORKFLOW,
                child,
                id=f"{wid}/{task.task_id}",
                result_type=RunSummary,
                task_timeout=workflow.info().task_timeout,
            )
            finished = codec.load_event(summary.outcome)
            assert isinstance(finished, AgentsFinished)
            return finished.outcomes[0].model_copy(update={"task_id": task.task_id})

        outcomes = await asyncio.gather(*(one(t) for t in effect.tasks))
        event = AgentsFinished(outcomes=tuple(outcomes))
        end = EffectInput(inp.machine, inp.path, inp.conversation_id, self._seq, effect.key, "end", codec.dump(event))
        await self._effect(inp, end, inp.activity_timeout, 10)
        return event
