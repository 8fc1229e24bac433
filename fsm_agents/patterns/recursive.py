"""`Recursive`: a decomposer splits a task into subtasks (run recursively) or has it executed.

    PLANNING  --model_replied [invalid_plan]--> FAILED         (not a valid `Decomposition`)
    PLANNING  --model_replied [wants_execute]--> EXECUTING     (run the executor on the task)
    PLANNING  --model_replied [within_depth]--> EXECUTING      (run every subtask: this pattern again)
    PLANNING  --model_replied--> FAILED | EXECUTING            (depth exhausted: by policy, fail or execute)
    PLANNING  --model_failed--> FAILED
    EXECUTING --agents_finished [child_failed]--> FAILED
    EXECUTING --agents_finished [single_result]--> DONE        (the executor's / synthesizer's output)
    EXECUTING --agents_finished--> OBSERVING                   (fold the subtask results)
    OBSERVING --observed--> EXECUTING | DONE                   (run the synthesizer, or join the results)

A subtask is a child run of this same machine (child name `"subtask"`) with a `RecursiveTask`
input carrying its depth, so `children()` contains the pattern itself.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, model_validator
from statemachine import State

from fsm_agents.agent import Agent, _validate_output, model_request
from fsm_agents.errors import InvalidDefinition
from fsm_agents.events import Event, ModelReplied, Observed, Step
from fsm_agents.machine import Machine, compile_chart
from fsm_agents.patterns._base import (
    ChartClass,
    Pattern,
    chart_class,
    failure_text,
    outcomes_of,
    output_text,
    pattern_name,
    resolve_child,
)
from fsm_agents.state import (
    AssistantMessage,
    Conversation,
    Frozen,
    Phase,
    Snapshot,
    UserMessage,
    messages_from,
)

__all__ = ["Decomposition", "OnDepthExhausted", "Recursive", "RecursiveData", "RecursiveTask", "recursive_chart"]

OnDepthExhausted = Literal["fail", "execute"]


class Decomposition(BaseModel):
    """The decomposer's structured answer: `EXECUTE` the task as is, or `DECOMPOSE` it into
    `subtasks` (at least one). Unknown fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    action: Literal["EXECUTE", "DECOMPOSE"]
    subtasks: tuple[str, ...] = ()
    reasoning: str = ""

    @model_validator(mode="after")
    def _subtasks_match_action(self) -> Decomposition:
        if self.action == "DECOMPOSE" and not self.subtasks:
            raise ValueError("DECOMPOSE needs at least one subtask")
        return self


class RecursiveTask(Frozen):
    """The input of a subtask run: the task text and its depth (the top-level task is depth 0)."""

    task: str
    depth: int = 0


class RecursiveData(Frozen):
    """Bookkeeping: depth, what is running (`execute`, `subtasks`, `synthesize`), the subtasks,
    messages of the input, and messages given to the synthesizer."""

    depth: int = 0
    mode: str = "plan"
    subtasks: tuple[str, ...] = ()
    input_len: int = 0
    sent: int = 0


def recursive_chart(*, on_depth_exhausted: OnDepthExhausted, synthesizer: bool) -> ChartClass:
    """The chart variant for a depth policy and the presence of a synthesizer."""
    planning = State("PLANNING", initial=True)
    executing = State("EXECUTING")
    observing = State("OBSERVING")
    done = State("DONE", final=True)
    failed = State("FAILED", final=True)
    # transitions are tried in creation order: the depth-exhausted fallback is created last
    replied = (
        planning.to(failed, cond="invalid_plan", on="fail_plan")
        | planning.to(executing, cond="wants_execute", on="run_executor")
        | planning.to(executing, cond="within_depth", on="run_subtasks")
    )
    exhausted = (
        planning.to(failed, on="fail_depth") if on_depth_exhausted == "fail" else planning.to(executing, on="run_executor")
    )
    name = (
        "Recursive" + ("Execute" if on_depth_exhausted == "execute" else "") + ("Synthesis" if synthesizer else "") + "Chart"
    )
    return chart_class(
        name,
        {
            "planning": planning,
            "executing": executing,
            "observing": observing,
            "done": done,
            "failed": failed,
            "model_replied": replied | exhausted,
            "model_failed": planning.to(failed, on="fail_model"),
            "agents_finished": executing.to(failed, cond="child_failed", on="fail_child")
            | executing.to(done, cond="single_result", on="finish_single")
            | executing.to(observing, on="fold_subtasks"),
            "observed": observing.to(executing, on="run_synthesizer")
            if synthesizer
            else observing.to(done, on="join_results"),
        },
        internal=(Observed,),
    )


_CHARTS = {
    (policy, synth): recursive_chart(on_depth_exhausted=policy, synthesizer=synth)
    for policy in ("fail", "execute")
    for synth in (False, True)
}
RecursiveChart = _CHARTS[("fail", False)]


class Recursive(Pattern):
    """Decompose a task recursively, execute the leaves, synthesize the results.

    - `decomposer`: an `Agent` whose reply must be a `Decomposition` JSON (the schema is sent as
      the request's output schema; an invalid reply → FAILED(`invalid_output`));
    - `executor`: an agent or pattern run on a task the decomposer chose to EXECUTE;
    - `max_depth`: subtasks of a task at depth `max_depth` are not run; a DECOMPOSE there →
      `on_depth_exhausted`: `"fail"` → FAILED(`budget_exhausted`), `"execute"` → the executor;
    - `synthesizer`: an agent or pattern given the task, the decomposition and one
      `[subtask i] result` message per subtask; without one the output is the results joined
      as text (`"1. subtask\\nresult\\n\\n2. ..."`).

    Input: a string or messages (depth 0), or a `RecursiveTask`. Output: the executor's output,
    or the synthesized / joined subtask results. Raises `InvalidDefinition` for `max_depth < 0`,
    an unknown policy, or a decomposer that is not an `Agent`.
    """

    lead_role = "decomposer"

    def __init__(
        self,
        name: str,
        decomposer: Agent,
        executor: Any,
        max_depth: int,
        on_depth_exhausted: OnDepthExhausted = "fail",
        synthesizer: Any = None,
    ) -> None:
        self.name = pattern_name("recursive", name)
        if not isinstance(decomposer, Agent):
            raise InvalidDefinition(f"{self.name}: the decomposer must be an Agent")
        if max_depth < 0:
            raise InvalidDefinition(f"{self.name}: max_depth must be >= 0, got {max_depth}")
        if on_depth_exhausted not in ("fail", "execute"):
            raise InvalidDefinition(f"{self.name}: on_depth_exhausted must be 'fail' or 'execute'")
        self.decomposer = decomposer
        self.max_depth = max_depth
        self.on_depth_exhausted = on_depth_exhausted
        self.has_synthesizer = synthesizer is not None
        children: dict[str, Machine] = {"executor": resolve_child(executor), "subtask": self}
        if synthesizer is not None:
            children["synthesizer"] = resolve_child(synthesizer)
        self._children = children
        self.lead = decomposer
        self._request = model_request(decomposer, tool_choice="none", output_type=Decomposition)
        self.table = compile_chart(_CHARTS[(on_depth_exhausted, self.has_synthesizer)], owner=self)

    def max_transitions(self) -> int:
        return 4

    def example_inputs(self) -> tuple[Any, ...]:
        """A top-level task and a subtask at every depth (a run may be a subtask at any depth:
        that is how depth exhaustion is reachable from `start`)."""
        return ("Plan the launch", *(RecursiveTask(task="part", depth=d) for d in range(self.max_depth + 1)))

    def example_replies(self, agent: str) -> tuple[str, ...]:
        """Decomposer replies worth exploring in tests: EXECUTE, DECOMPOSE, and an invalid one."""
        return (
            '{"action": "EXECUTE"}',
            '{"action": "DECOMPOSE", "subtasks": ["first part", "second part"]}',
            '{"action": "DECOMPOSE", "subtasks": []}',
        )

    # pure core
    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        """PLANNING with a `CallModel` for the decomposer. `input`: a string, messages, or a
        `RecursiveTask` (a subtask run)."""
        if isinstance(input, RecursiveTask):
            messages: tuple[Any, ...] = (UserMessage(content=input.task),)
            depth = input.depth
        else:
            messages, depth = messages_from(input), 0
        conversation = Conversation.of(*messages, id=run_id)
        data = RecursiveData(depth=depth, input_len=len(conversation))
        s = self._snapshot(Phase.PLANNING, conversation, data, context, self.decomposer.name)
        note = f"This task is at depth {depth}; tasks at depth {self.max_depth} must not be decomposed further."
        return Step(s, (self._call_lead(s, instructions=f"{self._request.instructions}\n\n{note}".strip()),))

    def _plan(self, e: Event) -> tuple[Decomposition | None, str | None]:
        value, error = _validate_output(Decomposition, cast(ModelReplied, e).message.content)
        return cast(Decomposition | None, value), error

    # guards
    def invalid_plan(self, s: Snapshot[RecursiveData], e: Event) -> bool:
        return self._plan(e)[0] is None

    def wants_execute(self, s: Snapshot[RecursiveData], e: Event) -> bool:
        plan = self._plan(e)[0]
        return plan is not None and plan.action == "EXECUTE"

    def within_depth(self, s: Snapshot[RecursiveData], e: Event) -> bool:
        return s.data.depth < self.max_depth

    def single_result(self, s: Snapshot[RecursiveData], e: Event) -> bool:
        return s.data.mode != "subtasks"

    # actions
    def _noted(self, s: Snapshot[RecursiveData], e: Event, **changes: Any) -> Snapshot[RecursiveData]:
        reply = cast(ModelReplied, e).message
        note = AssistantMessage.model_construct(
            role="assistant", content=reply.content, tool_calls=(), agent=self.decomposer.name
        )
        return s.evolve(conversation=s.conversation.append(note), agent=None, **changes)

    def fail_plan(self, s: Snapshot[RecursiveData], e: Event) -> Step:
        error = self._plan(e)[1]
        return self._fail(self._noted(s, e), "invalid_output", f"{self.name}: decomposer {self.decomposer.name}: {error}")

    def fail_depth(self, s: Snapshot[RecursiveData], e: Event) -> Step:
        plan = self._plan(e)[0]
        n = len(plan.subtasks) if plan else 0
        return self._fail(
            self._noted(s, e),
            "budget_exhausted",
            f"{self.name}: the decomposer split a task at depth {s.data.depth} into {n} subtasks, "
            f"but max_depth is {self.max_depth}",
            detail=str(s.data.depth),
        )

    def run_executor(self, s: Snapshot[RecursiveData], e: Event) -> Step:
        moved = self._noted(s, e, data=s.data.model_copy(update={"mode": "execute"}))
        task = self._task(moved, "executor", s.conversation.messages[: s.data.input_len])
        return Step(moved, (self._run(moved, (task,)),))

    def run_subtasks(self, s: Snapshot[RecursiveData], e: Event) -> Step:
        plan = cast(Decomposition, self._plan(e)[0])
        moved = self._noted(s, e, data=s.data.model_copy(update={"mode": "subtasks", "subtasks": plan.subtasks}))
        depth = s.data.depth + 1
        tasks = [self._task(moved, "subtask", RecursiveTask(task=t, depth=depth), i) for i, t in enumerate(plan.subtasks)]
        return Step(moved, (self._run(moved, tasks),))

    def fail_child(self, s: Snapshot[RecursiveData], e: Event) -> Step:
        outcomes = outcomes_of(e)
        bad = [f"{o.machine} {o.task_id} ({failure_text(o)})" for o in outcomes if o.phase is not Phase.DONE]
        what = {"execute": "the executor", "synthesize": "the synthesizer"}.get(s.data.mode, "a subtask")
        return self._fail_child(
            s,
            e,
            f"{self.name}: {what} failed at depth {s.data.depth}: {'; '.join(bad) or 'no outcome was reported'}",
        )

    def finish_single(self, s: Snapshot[RecursiveData], e: Event) -> Step:
        if s.data.mode == "execute":
            folded, outcome = self._fold_child(s, e, s.data.input_len, "executor")
        else:
            folded, outcome = self._fold_child(s, e, s.data.sent, "synthesizer")
        return Step(folded.evolve(output=outcome.output if outcome is not None else None))

    def fold_subtasks(self, s: Snapshot[RecursiveData], e: Event) -> Step:
        outcomes = outcomes_of(e)
        notes = [
            AssistantMessage.model_construct(
                role="assistant",
                content=f"[subtask {i + 1}: {task}] {output_text(o.output)}",
                tool_calls=(),
                agent="subtask",
            )
            for i, (task, o) in enumerate(zip(s.data.subtasks, outcomes, strict=False))
        ]
        joined = "\n\n".join(
            f"{i + 1}. {task}\n{output_text(o.output)}"
            for i, (task, o) in enumerate(zip(s.data.subtasks, outcomes, strict=False))
        )
        return Step(s.evolve(conversation=s.conversation.append(*notes), output=joined))

    def join_results(self, s: Snapshot[RecursiveData], e: Event) -> Step:
        return Step(s)

    def run_synthesizer(self, s: Snapshot[RecursiveData], e: Event) -> Step:
        moved = s.evolve(output=None, data=s.data.model_copy(update={"mode": "synthesize", "sent": len(s.conversation)}))
        return Step(moved, (self._run(moved, (self._task(moved, "synthesizer", s.conversation.messages),)),))
