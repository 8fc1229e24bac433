"""Run machines on Temporal: `worker(...)` on the workers, `run(...)` / `start(...)` on the caller.

    from fsm_agents import temporal
    from fsm_agents.store import SQLiteStore

    async with temporal.worker(client, "agents", [support_agent], SQLiteStore("runs.db")):
        result = await temporal.run(client, support_agent, "my invoice is wrong",
                                    id="ticket-42", task_queue="agents", store=store)

See docs/architecture.md, "Temporal".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import SandboxImportNotificationPolicy

from fsm_agents import codec
from fsm_agents.errors import FsmAgentsError, InvalidDecision, InvalidInput, NotSuspended
from fsm_agents.events import Answer, Approved, Denied, InputRequest
from fsm_agents.loading import load_object
from fsm_agents.machine import Machine, as_machine
from fsm_agents.models.base import Model
from fsm_agents.runtime.performers import usage_of
from fsm_agents.runtime.result import Pending, RunResult
from fsm_agents.runtime.streaming import Finished, StreamEvent, Suspended, TextDelta, ToolCallDelta
from fsm_agents.state import Usage
from fsm_agents.store import _fold
from fsm_agents.store.base import Store
from fsm_agents.store.journal import machine_lookup, stored_children
from fsm_agents.temporal._types import (
    QUERY_DELTAS,
    QUERY_PROGRESS,
    UPDATE_DECIDE,
    WORKFLOW,
    Progress,
    RunInput,
    RunSummary,
)
from fsm_agents.temporal.activities import Activities, registered
from fsm_agents.temporal.workflow import FsmWorkflow

__all__ = ["decide", "locate", "pending", "progress", "result", "run", "sandbox_runner", "start", "stream", "worker"]

log = logging.getLogger("fsm_agents.temporal")


def locate(machine: Any) -> str:
    """The `MODULE:OBJECT` name of `machine` (an `Agent`, pattern or machine object that is a
    module-level name of an importable module), or `machine` itself when it is such a string.
    The workflow sandbox builds the machine again by importing it. Raises `InvalidInput`."""
    if isinstance(machine, str):
        if ":" not in machine:
            raise InvalidInput(f"a machine is named MODULE:OBJECT, got {machine!r}")
        return machine
    for name, module in list(sys.modules.items()):
        if module is None or name == "__main__" or name.startswith(("fsm_agents", "temporalio")):
            continue
        found = getattr(module, "__dict__", {})
        for attr, value in list(found.items()):
            if value is machine and not attr.startswith("_"):
                return f"{name}:{attr}"
    raise InvalidInput(
        f"{getattr(machine, 'name', type(machine).__name__)} is not a module-level name of an importable module: "
        "Temporal's workflow sandbox builds a machine again by importing it. Define it at module level (not in "
        "__main__), or pass its 'MODULE:OBJECT' name"
    )


def _load(spec: str) -> Machine:
    return as_machine(load_object(spec))


def sandbox_runner(machine_modules: Sequence[str] = ()) -> SandboxedWorkflowRunner:
    """Temporal's workflow sandbox for `FsmWorkflow`: every module loaded now passes through
    (third-party libraries: pydantic, httpx, python-statemachine, ...) except fsm_agents and the
    machines' own modules (`machine_modules`, top-level package names), which each workflow run
    imports afresh inside the sandbox: the core's `step` runs there, under its restrictions."""
    ours = {"fsm_agents", "__main__", *machine_modules}
    loaded = {name.partition(".")[0] for name in list(sys.modules)}
    passthrough = sorted(n for n in loaded - ours if n and not n.startswith("_"))
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*passthrough).with_import_notification_policy(
        SandboxImportNotificationPolicy.SILENT  # a machine module imports what it needs when the run starts
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)


@contextlib.asynccontextmanager
async def worker(
    client: Client,
    task_queue: str,
    machines: Sequence[Any],
    store: Store,
    *,
    models: Mapping[str, Model] | None = None,
    max_concurrent_activities: int = 100,
    max_concurrent_workflow_tasks: int = 100,
    **options: Any,
) -> AsyncIterator[Worker]:
    """A Temporal worker running `FsmWorkflow` and its activities for `machines`, as an async
    context manager: it polls `task_queue` while the block runs and shuts down (gracefully) when
    it ends. `await asyncio.Event().wait()` inside the block serves until cancelled.

    - `machines`: `Agent`s, patterns or machines — each a module-level name of an importable
      module — or `MODULE:OBJECT` names; registered by name (children of patterns included);
    - `store`: the event store every activity reads and writes (`SQLiteStore` for workers on one
      machine, `PostgresStore` shared by workers on many); all workers of a task queue use one;
    - `models`: models by agent name, overriding the agents' own (as `run(..., models=)`);
    - `options`: more `temporalio.worker.Worker` options (e.g. `sticky_queue_schedule_to_start_timeout`).

    Raises `InvalidInput` for a machine that cannot be located, `FsmAgentsError` for two
    machines of one name or an agent without a model.
    """
    specs = [locate(m) for m in machines]
    objects = [_load(s) if isinstance(m, str) else as_machine(m) for m, s in zip(machines, specs, strict=True)]
    acts = Activities(registered(objects), store, models)
    modules = {s.partition(":")[0].partition(".")[0] for s in specs}
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[FsmWorkflow],
        activities=[acts.start, acts.load, acts.perform, acts.journal],
        workflow_runner=sandbox_runner(sorted(modules)),
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        **options,
    ) as w:
        yield w


async def start(
    client: Client,
    machine: Any,
    input: Any,
    *,
    id: str,
    task_queue: str,
    activity_timeout: float = 300.0,
    heartbeat_timeout: float | None = None,
    continue_as_new_after: int | None = None,
    return_events: bool = False,
    task_timeout: float = 60.0,
    stream: bool = False,
) -> WorkflowHandle[Any, RunSummary]:
    """Start `machine` on `input` as the workflow `id` (also the conversation id and run id in
    the store) and return its handle (`progress`, `decide`, `result` take it).

    `activity_timeout` (s): start-to-close of one effect's activity (a tool's own timeout ×
    attempts is added); `heartbeat_timeout` (s): how soon a dead worker's activity is retried on
    another worker; `continue_as_new_after`: events per workflow run (default: when the server
    suggests it); `task_timeout` (s): Temporal's workflow task timeout (Temporal's default is
    10 s; a workflow run's first task imports fsm_agents and the machine's module inside the
    sandbox, which takes seconds on a loaded machine, hence 60 s); `stream`: publish the model
    calls' deltas to the workflow (`stream(...)` sets it and reads them). Raises `InvalidInput`
    for a machine that cannot be located; Temporal's `WorkflowAlreadyStartedError` when `id` is
    taken."""
    spec = locate(machine)
    m = _load(spec) if isinstance(machine, str) else as_machine(machine)
    inp = RunInput(
        spec,
        m.name,
        id,
        id,
        codec.dump_input(input),
        [],
        None,
        activity_timeout,
        heartbeat_timeout,
        continue_as_new_after,
        return_events,
        stream,
    )
    return await client.start_workflow(
        WORKFLOW,
        inp,
        id=id,
        task_queue=task_queue,
        result_type=RunSummary,
        task_timeout=timedelta(seconds=task_timeout),
    )


async def result(handle: WorkflowHandle[Any, Any], machine: Any, *, store: Store | None = None) -> RunResult:
    """Wait for the workflow of `handle` to end and return its `RunResult` (children included),
    read from `store` (the workers' store) — or, without one, from the events the workflow
    returned (start it with `return_events=True`). Raises what the workflow failed with
    (Temporal's `WorkflowFailureError`)."""
    found: Any = await handle.result()
    summary = found if isinstance(found, RunSummary) else RunSummary(**found)  # a handle made without result_type
    m = _load(machine) if isinstance(machine, str) else as_machine(machine)
    if store is not None:
        records, _ = _fold.resolve(store, summary.conversation_id)
        seg = _fold.fold(records, machine_lookup(m))[-1]
        return RunResult(
            run_id=seg.run_id,
            input=seg.input,
            snapshot=seg.step.snapshot,
            events=tuple(seg.events),
            usage=seg.usage,
            trace=tuple(seg.trace),
            effects=tuple(seg.effects),
            children=stored_children(store, summary.conversation_id, seg),
        )
    if summary.events is None or summary.input is None:
        raise InvalidInput("the workflow returned no events: pass store=, or start it with return_events=True")
    value = codec.load_input(summary.input)
    step = m.start(value, None, run_id=summary.run_id)
    events = []
    usage = Usage()
    for data in summary.events:
        event = codec.load_event(data)
        events.append(event)
        usage = usage + usage_of(event)
        step = m.step(step.snapshot, event)
    return RunResult(summary.run_id, value, step.snapshot, tuple(events), usage, machine=m)


async def run(
    client: Client,
    machine: Any,
    input: Any,
    *,
    id: str,
    task_queue: str,
    store: Store | None = None,
    **options: Any,
) -> RunResult:
    """Run `machine` on `input` on Temporal (a worker of `task_queue` performs it) and return its
    `RunResult` — the same as `fsm_agents.run` gives, read back from `store` (the workers' event
    store), or without a store from the events the workflow returns. `options`: `start`'s. A run
    that suspends waits for `decide` (from anywhere) before this returns."""
    handle = await start(client, machine, input, id=id, task_queue=task_queue, return_events=store is None, **options)
    return await result(handle, machine, store=store)


async def progress(handle: WorkflowHandle[Any, Any]) -> Progress:
    """The run's phase, step, log length, status ("running", "suspended", "done", "failed") and
    the calls it awaits (`Progress.pending`), from the `progress` query."""
    found: Progress = await handle.query(QUERY_PROGRESS, result_type=Progress)
    return found


def pending(found: Progress, run_id: str) -> tuple[Pending, ...]:
    """`Progress.pending` as `Pending` (what `RunResult.pending` holds)."""
    return tuple(Pending(run_id, InputRequest.model_validate(r)) for r in found.pending)


async def decide(handle: WorkflowHandle[Any, Any], decisions: Mapping[str, Approved | Denied | Answer]) -> list[str]:
    """Send a suspended run the decisions on the calls it awaits (`{call id: Approved() |
    Denied(reason) | Answer(text)}`), as the workflow's `decide` update; returns the decided call
    ids once the run accepted them. Raises `InvalidDecision` (unknown id, a call left undecided,
    the wrong kind) or `NotSuspended` (the run awaits nothing) — checked by the update's
    validator, so nothing is recorded then."""
    data = {cid: d.model_dump(mode="json") if hasattr(d, "model_dump") else d for cid, d in decisions.items()}
    try:
        decided: list[str] = await handle.execute_update(UPDATE_DECIDE, data, result_type=list[str])
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError):
            ids = [str(x) for x in (cause.details[0] if cause.details else [])]
            if cause.type == "NotSuspended":
                raise NotSuspended(cause.message, ids) from None
            if cause.type == "InvalidDecision":
                raise InvalidDecision(cause.message, ids) from None
        raise FsmAgentsError(f"the run rejected the decisions: {exc}") from exc
    return decided


def _delta(item: Mapping[str, Any]) -> TextDelta | ToolCallDelta:
    if item.get("kind") == "tool_call":
        run_id, agent, index = item["run_id"], item["agent"], int(item["index"])
        return ToolCallDelta(run_id, agent, index, item.get("call_id"), item.get("name"), item.get("arguments", ""))
    return TextDelta(item["run_id"], item["agent"], item.get("text", ""))


async def stream(
    client: Client,
    machine: Any,
    input: Any,
    *,
    id: str,
    task_queue: str,
    store: Store | None = None,
    poll_every: float = 0.1,
    **options: Any,
) -> AsyncIterator[StreamEvent]:
    """Run `machine` on Temporal as `run` does, and watch it: `async for ev in temporal.stream(...)`
    yields `TextDelta` / `ToolCallDelta` (the events of local `fsm_agents.stream`) while its models
    write, then `Finished(result)` with the `RunResult` `run` would return. A run that suspends
    yields `Suspended(pending)` and ends (decide it with `decide(client.get_workflow_handle(id),
    ...)`). `options`: `start`'s.

    The workflow starts with `stream=True`: each model call's activity publishes its deltas in
    batches (a signal per ~100 ms of streaming: one history event each); this polls the
    workflow's `fsm_agents.deltas` query every `poll_every` s. Best effort: a batch whose signal
    failed is missing, the result is whole. The top-level run's deltas only (a pattern's child
    workflows keep theirs: query `fsm_agents.deltas` on `<id>/<task id>`). Leaving the loop early
    stops watching, not the run (it goes on on the workers). Raises what `start` and `result`
    raise.
    """
    handle = await start(
        client, machine, input, id=id, task_queue=task_queue, return_events=store is None, stream=True, **options
    )
    ended = asyncio.ensure_future(handle.result())
    after = 0
    try:
        while True:
            done = ended.done()  # read before the query: a run ended then has published everything
            try:
                page: dict[str, Any] = await handle.query(QUERY_DELTAS, after, result_type=dict)
            except (RPCError, WorkflowQueryFailedError):
                if not done:
                    raise
                # an ended run is queried by replaying it on a worker: without one, the last
                # deltas are missing (best effort), the result is whole
                log.warning("%s: could not read the last deltas of the ended run", id, exc_info=True)
                break
            for item in page["items"]:
                yield _delta(item)
            after = int(page["next"])
            if done:
                break
            if page["status"] == "suspended":
                found = await progress(handle)
                yield Suspended(id, pending(found, id))
                return
            await asyncio.wait({ended}, timeout=poll_every)
        finished = await result(handle, machine, store=store)
        yield Finished(finished.run_id, finished)
    finally:
        if not ended.done():
            ended.cancel()
        with contextlib.suppress(BaseException):
            await ended
