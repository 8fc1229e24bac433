"""fsm_agents: LLM agents and orchestration patterns as explicit finite state machines.

Pure core (`state`, `events`, `machine`, `agent`): frozen snapshots, `step(snapshot, event) ->
Step(snapshot, effects)`. Effect shell (`runtime`, `tools`, `models`): anyio performs effects.
See DESIGN.md for the architecture.
"""

from fsm_agents.agent import Agent, AgentMachine
from fsm_agents.errors import (
    CassetteDivergence,
    ConcurrencyConflict,
    EventLoopRunning,
    FsmAgentsError,
    InvalidDefinition,
    InvalidInput,
    InvalidTransition,
    MachineStalled,
    NotAMachine,
    ToolDefinitionError,
)
from fsm_agents.events import (
    AgentOutcome,
    AgentsFinished,
    AgentTask,
    CallModel,
    Effect,
    Event,
    ModelFailed,
    ModelReplied,
    RunAgents,
    RunTools,
    Step,
    Taken,
    ToolsFinished,
)
from fsm_agents.machine import Machine, compile_chart, fused
from fsm_agents.models import FunctionModel, ScriptedModel
from fsm_agents.observers import LoggingObserver, Observer
from fsm_agents.runtime import Limits, RunResult, resume, resume_sync, run, run_sync
from fsm_agents.state import (
    AssistantMessage,
    Conversation,
    Failure,
    Message,
    Phase,
    Snapshot,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolResult,
    Usage,
    UserMessage,
)
from fsm_agents.tools import Tool, tool

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentMachine",
    "AgentOutcome",
    "AgentTask",
    "AgentsFinished",
    "AssistantMessage",
    "CallModel",
    "CassetteDivergence",
    "ConcurrencyConflict",
    "Conversation",
    "Effect",
    "Event",
    "EventLoopRunning",
    "Failure",
    "FsmAgentsError",
    "FunctionModel",
    "InvalidDefinition",
    "InvalidInput",
    "InvalidTransition",
    "Limits",
    "LoggingObserver",
    "Machine",
    "MachineStalled",
    "Message",
    "ModelFailed",
    "ModelReplied",
    "NotAMachine",
    "Observer",
    "Phase",
    "RunAgents",
    "RunResult",
    "RunTools",
    "ScriptedModel",
    "Snapshot",
    "Step",
    "SystemMessage",
    "Taken",
    "Tool",
    "ToolCall",
    "ToolDefinitionError",
    "ToolMessage",
    "ToolResult",
    "ToolsFinished",
    "Usage",
    "UserMessage",
    "compile_chart",
    "fused",
    "resume",
    "resume_sync",
    "run",
    "run_sync",
    "tool",
]
