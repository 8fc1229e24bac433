"""`Handoffs`: agents pass control to each other with `transfer_to_<agent>` tools, conversation kept.

The agent loop's chart (`agent_chart(handoff_limit=True)`) plus one guard: a transfer past `max_handoffs` ends the run in
FAILED(`handoff_loop`) instead of moving control again.

    PLANNING --model_replied [over_budget]--> FAILED
    PLANNING --model_replied [handoff_limit]--> FAILED         (handoff_loop)
    PLANNING --model_replied [asks_handoff]--> HANDOFF --handed_off--> PLANNING (the new agent)
    ... the rest as the agent loop (tools → EXECUTING → OBSERVING → PLANNING, answer → DONE)
"""

from __future__ import annotations

from collections.abc import Iterable

from fsm_agents.agent import Agent, AgentData, AgentMachine, agent_chart
from fsm_agents.errors import InvalidDefinition
from fsm_agents.events import Event, ModelReplied, Step
from fsm_agents.machine import Machine, fused
from fsm_agents.patterns._base import pattern_name
from fsm_agents.state import Failure, Phase, Snapshot, ToolMessage

__all__ = ["Handoffs", "HandoffsChart"]


HandoffsChart = agent_chart(handoff_limit=True, name="HandoffsChart")


def _copy(agent: Agent) -> Agent:
    """`agent` again, every option kept but its handoffs (the pattern sets those)."""
    return Agent(
        agent.name,
        agent.instructions,
        agent.model,
        tools=[*(t for t in agent.tools if t is not agent.output_function), *agent.toolsets],
        output_type=agent.output_function or agent.output_type,
        output_mode=agent.output_mode,
        max_steps=agent.max_steps,
        description=agent.description,
        output_retries=agent.output_retries,
        max_tool_output_chars=agent.max_tool_output_chars,
        parallel_tool_calls=agent.parallel_tool_calls,
        settings=agent.settings,
        tool_choice=agent.tool_choice,
        approval=agent.approval,
        input_guardrails=agent.input_guardrails,
        output_guardrails=agent.output_guardrails,
    )


class Handoffs(AgentMachine):
    """Agents that hand the whole conversation to one another.

    - `entry`: the agent that answers first (it may also be listed in `agents`);
    - `agents`: the other agents. Each agent may transfer to the agents its own `handoffs`
      names, or — when it names none — to every other agent of the pattern; each target becomes a
      `transfer_to_<agent>` tool;
    - `max_handoffs`: transfers allowed in one run; one more → FAILED(`handoff_loop`) (the
      transfer call is answered with an error so the history stays well formed);
    - `max_steps`: model calls in one run, all agents together (default: the entry's).

    Snapshots carry `AgentData` (`handoffs` counts transfers); `snapshot.agent` is the active
    agent. Output: the final answer of the agent that answered. Raises `InvalidDefinition` for
    two different agents with one name, a handoff to an agent outside the pattern, or
    `max_handoffs < 0`.
    """

    chart_class = HandoffsChart

    def __init__(
        self, name: str, entry: Agent, agents: Iterable[Agent], max_handoffs: int, *, max_steps: int | None = None
    ) -> None:
        pattern = pattern_name("handoffs", name)
        if max_handoffs < 0:
            raise InvalidDefinition(f"{pattern}: max_handoffs must be >= 0")
        members: dict[str, Agent] = {entry.name: entry}
        for a in agents:
            if not isinstance(a, Agent):
                raise InvalidDefinition(f"{pattern}: every member must be an Agent, got {type(a).__name__}")
            if a.name in members and members[a.name] is not a:
                raise InvalidDefinition(f"{pattern}: two different agents are named {a.name!r}")
            members[a.name] = a
        copies: dict[str, Agent] = {}
        targets: dict[str, list[str]] = {}
        for a in members.values():
            declared = [h if isinstance(h, str) else h.name for h in a.handoffs]
            for target in declared:
                if target not in members:
                    raise InvalidDefinition(f"{pattern}: {a.name!r} hands off to {target!r}, which is not in the pattern")
            targets[a.name] = declared or [n for n in members if n != a.name]
            copies[a.name] = _copy(a)
        for n, copy in copies.items():  # agents, not names: the agent machine follows agent objects
            copy.handoffs = tuple(copies[t] for t in targets[n])
        first = copies[entry.name]
        if max_steps is not None:
            first.max_steps = max_steps
        self.max_handoffs = max_handoffs
        self.members = tuple(copies)
        super().__init__(first)  # compiles `chart_class` (HandoffsChart) once, with this pattern's methods
        self.name = pattern

    @property
    def machine(self) -> Machine:
        """This pattern (so `run(pattern, ...)` and `check_machine(pattern)` accept it)."""
        return self

    def handoff_limit(self, s: Snapshot[AgentData], e: ModelReplied) -> bool:
        return s.data.handoffs >= self.max_handoffs and self.asks_handoff(s, e)

    @fused
    def fail_handoff_loop(self, s: Snapshot[AgentData], e: Event, to: Phase) -> Step:
        message = self._attributed(s, e)
        note = f"not executed: the handoff budget of {self.max_handoffs} transfers is exhausted"
        answers = [ToolMessage(tool_call_id=c.id, name=c.name, content=note, is_error=True) for c in message.tool_calls]
        path = ", ".join(c.name for c in message.tool_calls)
        failure = Failure(
            kind="handoff_loop",
            message=f"{self.name}: {s.agent} asked to hand off again after {s.data.handoffs} handoffs "
            f"(max_handoffs={self.max_handoffs})",
            detail=path,
        )
        return Step(s.moved(to, conversation=s.conversation.append(message, *answers), failure=failure, pending=()))

    def __repr__(self) -> str:
        return f"Handoffs({self.name!r}, agents={list(self.members)}, max_handoffs={self.max_handoffs})"
