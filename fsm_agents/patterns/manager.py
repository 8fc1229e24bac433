"""`ManagerWorker`: a manager agent delegates to workers exposed to it as `delegate_to_<worker>` tools.

    PLANNING  --model_replied [over_budget]--> FAILED         (tool calls after max_steps turns)
    PLANNING  --model_replied [delegates]--> EXECUTING        (run the called workers: RunAgents)
    PLANNING  --model_replied [asks_tools]--> PLANNING        (only unknown tools: error results, ask again)
    PLANNING  --model_replied [output_invalid]--> FAILED      (empty or invalid final answer)
    PLANNING  --model_replied--> DONE                         (the manager's final answer)
    PLANNING  --model_failed--> FAILED
    EXECUTING --agents_finished--> OBSERVING                  (worker outputs become tool results)
    OBSERVING --observed--> PLANNING                          (internal: call the manager again)

The pattern calls the manager's model itself (`CallModel`), so it offers `models()`,
`tool_specs()`; the workers are child machines run through `RunAgents`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, cast

from statemachine import State

from fsm_agents.agent import Agent, _validate_output, model_calls, model_request
from fsm_agents.errors import InvalidDefinition
from fsm_agents.events import Event, ModelReplied, Observed, Step
from fsm_agents.machine import Machine, compile_chart
from fsm_agents.patterns._base import (
    ChartClass,
    Pattern,
    chart_class,
    child_name,
    children_by_name,
    failure_text,
    outcomes_of,
    output_text,
    pattern_name,
)
from fsm_agents.state import (
    AssistantMessage,
    Conversation,
    Frozen,
    Message,
    Phase,
    Snapshot,
    ToolCall,
    ToolMessage,
    ToolSpec,
    messages_from,
)
from fsm_agents.tools import truncate

__all__ = ["DELEGATE_PREFIX", "ManagerWorker", "ManagerWorkerChart", "ManagerWorkerData"]

DELEGATE_PREFIX = "delegate_to_"


def _manager_chart() -> ChartClass:
    planning = State("PLANNING", initial=True)
    executing = State("EXECUTING")
    observing = State("OBSERVING")
    done = State("DONE", final=True)
    failed = State("FAILED", final=True)
    return chart_class(
        "ManagerWorkerChart",
        {
            "planning": planning,
            "executing": executing,
            "observing": observing,
            "done": done,
            "failed": failed,
            "model_replied": planning.to(failed, cond="over_budget", on="fail_budget")
            | planning.to(executing, cond="delegates", on="delegate")
            | planning.to(planning, cond="asks_tools", on="reject_tools")
            | planning.to(failed, cond="output_invalid", on="fail_output")
            | planning.to(done, on="finish"),
            "model_failed": planning.to(failed, on="fail_model"),
            "agents_finished": executing.to(observing, on="fold_workers"),
            "observed": observing.to(planning, on="call_manager"),
        },
        internal=(Observed,),
    )


ManagerWorkerChart = _manager_chart()


class ManagerWorkerData(Frozen):
    """Bookkeeping: manager model calls made; which pending calls were delegated (by index)."""

    turns: int = 1
    delegated: tuple[int, ...] = ()


_TASK_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"task": {"type": "string", "description": "What the worker must do, self-contained."}},
        "required": ["task"],
    }
)


class ManagerWorker(Pattern):
    """A manager agent that delegates to workers through `delegate_to_<worker>` tool calls.

    - `manager`: an `Agent` without tools of its own (give tools to a worker); its `max_steps`
      bounds its model calls (tool calls after that → FAILED(`budget_exhausted`)), its
      `output_type` validates the final answer;
    - `workers`: agents or patterns; a call `delegate_to_<w>({"task": "..."})` runs worker `w` on
      the task text (a call whose arguments are not that JSON gives the worker the raw arguments);
      the worker's output (or its failure) returns as the call's tool result. Several calls in
      one reply run concurrently.

    Input: a string or messages. Output: the manager's final answer. Raises `InvalidDefinition`
    for a manager with tools or handoffs, or no workers.
    """

    lead_role = "manager"

    def __init__(self, name: str, manager: Agent, workers: Iterable[Any]) -> None:
        self.name = pattern_name("manager_worker", name)
        if not isinstance(manager, Agent):
            raise InvalidDefinition(f"{self.name}: the manager must be an Agent")
        if manager.tools or manager.handoffs:
            raise InvalidDefinition(
                f"{self.name}: the manager {manager.name!r} has tools or handoffs; give tools to a worker instead"
            )
        items = list(workers)
        self._children = children_by_name(self.name, items, "worker")
        self.manager = manager
        self.max_steps = manager.max_steps
        self.delegate_tools: dict[str, str] = {f"{DELEGATE_PREFIX}{w}": w for w in self._children}
        specs = tuple(
            ToolSpec(
                name=tool,
                description=f"Delegate a task to the {w} worker. {_about(obj)}".strip(),
                parameters_json=_TASK_SCHEMA,
            )
            for (tool, w), obj in zip(self.delegate_tools.items(), _unique(items), strict=True)
        )
        self.lead = manager
        self._request = model_request(manager, tools=specs)
        self.table = compile_chart(ManagerWorkerChart, owner=self)

    # resources
    def tool_specs(self, agent: str) -> tuple[ToolSpec, ...]:
        """The `delegate_to_<worker>` tools the manager is offered."""
        return self._request.tools if agent == self.manager.name else ()

    def max_transitions(self) -> int:
        return 3 * self.max_steps

    # pure core
    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        """PLANNING with a `CallModel` for the manager. `input`: a string or messages."""
        conversation = Conversation.of(*messages_from(input), id=run_id)
        s = self._snapshot(Phase.PLANNING, conversation, ManagerWorkerData(), context, self.manager.name)
        return Step(s, (self._call_lead(s),))

    def _reply(self, e: Event) -> AssistantMessage:
        return cast(ModelReplied, e).message

    def _attributed(self, s: Snapshot[Any], e: Event) -> AssistantMessage:
        message = self._reply(e)
        calls = message.tool_calls
        ids = [c.id for c in calls]
        if calls and (len(set(ids)) != len(ids) or not all(ids)):
            calls = tuple(c.model_copy(update={"id": f"call_{s.step}_{i}"}) for i, c in enumerate(calls))
            message = message.model_copy(update={"tool_calls": calls})
        if message.agent != self.manager.name:
            message = message.model_copy(update={"agent": self.manager.name})
        return message

    # guards
    def over_budget(self, s: Snapshot[ManagerWorkerData], e: Event) -> bool:
        return bool(self._reply(e).tool_calls) and s.data.turns >= self.max_steps

    def delegates(self, s: Snapshot[Any], e: Event) -> bool:
        return any(c.name in self.delegate_tools for c in self._reply(e).tool_calls)

    def asks_tools(self, s: Snapshot[Any], e: Event) -> bool:
        return bool(self._reply(e).tool_calls)

    def output_invalid(self, s: Snapshot[Any], e: Event) -> bool:
        return _validate_output(self.manager.output_type, self._reply(e).content)[1] is not None

    # actions
    @property
    def _unknown(self) -> str:
        """The answer to a call of a tool the manager does not have (the model is told which it has)."""
        return f"Error: unknown tool; the tools are: {', '.join(self.delegate_tools)}"

    def _refusals(self, calls: Iterable[ToolCall], why: str) -> list[Message]:
        return [ToolMessage(tool_call_id=c.id, name=c.name, content=why, is_error=True) for c in calls]

    def fail_budget(self, s: Snapshot[ManagerWorkerData], e: Event) -> Step:
        message = self._attributed(s, e)
        note = f"not executed: the step budget of {model_calls(self.max_steps)} is exhausted"
        return self._fail(
            s.evolve(conversation=s.conversation.append(message, *self._refusals(message.tool_calls, note))),
            "budget_exhausted",
            f"{self.name}: the manager made {model_calls(s.data.turns)} (max_steps={self.max_steps}) "
            "and still asked for tools",
            detail=", ".join(c.name for c in message.tool_calls),
        )

    def delegate(self, s: Snapshot[ManagerWorkerData], e: Event) -> Step:
        message = self._attributed(s, e)
        delegated = tuple(i for i, c in enumerate(message.tool_calls) if c.name in self.delegate_tools)
        moved = s.evolve(
            conversation=s.conversation.append(message),
            pending=message.tool_calls,
            agent=None,
            data=s.data.model_copy(update={"delegated": delegated}),
        )
        tasks = []
        for i in delegated:
            call = message.tool_calls[i]
            tasks.append(self._task(moved, self.delegate_tools[call.name], _task_text(call), i))
        return Step(moved, (self._run(moved, tasks),))

    def reject_tools(self, s: Snapshot[ManagerWorkerData], e: Event) -> Step:
        message = self._attributed(s, e)
        answers = self._refusals(message.tool_calls, self._unknown)
        moved = s.evolve(
            conversation=s.conversation.append(message, *answers),
            data=s.data.model_copy(update={"turns": s.data.turns + 1}),
        )
        return Step(moved, (self._call_lead(moved),))

    def fail_output(self, s: Snapshot[Any], e: Event) -> Step:
        message = self._attributed(s, e)
        error = _validate_output(self.manager.output_type, message.content)[1]
        return self._fail(
            s.evolve(conversation=s.conversation.append(message)),
            "invalid_output",
            f"{self.name}: manager {self.manager.name}: {error}",
            detail=message.content,
        )

    def finish(self, s: Snapshot[Any], e: Event) -> Step:
        message = self._attributed(s, e)
        output = _validate_output(self.manager.output_type, message.content)[0]
        return Step(s.evolve(conversation=s.conversation.append(message), output=output))

    def fold_workers(self, s: Snapshot[ManagerWorkerData], e: Event) -> Step:
        outcomes = list(outcomes_of(e))
        by_call = dict(zip(s.data.delegated, outcomes, strict=False))
        limit = self.manager.max_tool_output_chars
        answers: list[Message] = []
        for i, call in enumerate(s.pending):
            if call.name not in self.delegate_tools:
                answers.append(ToolMessage(tool_call_id=call.id, name=call.name, content=self._unknown, is_error=True))
                continue
            o = by_call.get(i)
            if o is None:
                text, error = "Error: no result was reported for this delegation", True
            elif o.phase is Phase.DONE:
                text, error = output_text(o.output), False
            else:
                text, error = f"Error: the {self.delegate_tools[call.name]} worker failed: {failure_text(o)}", True
            answers.append(ToolMessage(tool_call_id=call.id, name=call.name, content=truncate(text, limit), is_error=error))
        return Step(
            s.evolve(conversation=s.conversation.append(*answers), pending=(), data=ManagerWorkerData(turns=s.data.turns))
        )

    def call_manager(self, s: Snapshot[ManagerWorkerData], e: Event) -> Step:
        moved = s.evolve(agent=self.manager.name, data=s.data.model_copy(update={"turns": s.data.turns + 1}))
        return Step(moved, (self._call_lead(moved),))


def _task_text(call: ToolCall) -> str:
    try:
        args = call.parsed()
    except ValueError:
        return call.arguments
    if isinstance(args, dict) and isinstance(args.get("task"), str):
        return cast(str, args["task"])
    return call.arguments


def _unique(items: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for obj in items:
        seen.setdefault(child_name(obj), obj)
    return list(seen.values())


def _about(obj: Any) -> str:
    if isinstance(obj, Agent):
        return obj.description or obj.static_instructions[:200]
    machine = obj if isinstance(obj, Machine) else getattr(obj, "machine", None)
    return f"({machine.name})" if isinstance(machine, Machine) else ""
