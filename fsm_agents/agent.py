"""The agent loop as a machine: `Agent` (configuration) → `AgentMachine` (pure `start`/`step`).

The five phases of the classic agent loop map onto the chart below:
input assembly + reasoning = PLANNING (emit `CallModel`), action selection = the guards on
`model_replied`, execution = EXECUTING (emit `RunTools`), observation = OBSERVING (fold the tool
results into the conversation; the executor cut each to its cap), then back to PLANNING.

- a reply with tool calls → EXECUTING; the tool results → OBSERVING → PLANNING;
- a reply calling `transfer_to_<agent>` → HANDOFF → PLANNING with that agent active;
- a final reply → DONE with the answer (validated against `output_type` if set; an invalid or
  empty answer is fed back `output_retries` times, then FAILED(`invalid_output`)); with
  `output_mode="tool"` a reply calling the output tool `final_result` is the final answer (its
  arguments validated the same way; docs/architecture.md, Structured output);
- an agent whose `output_type` is a function (an output function): its successful result ends
  the run, OBSERVING → DONE with its return value;
- a model failure → FAILED(`model_error`);
- a reply asking for tools after `max_steps` model calls → FAILED(`budget_exhausted`); its tool
  calls are answered with error results so the history stays well formed;
- with output guardrails, a valid final answer → EXECUTING (`CheckOutput`) → `output_checked` →
  DONE, or `guardrail_tripped` → FAILED(`guardrail`); with input guardrails, the first model
  call's `guardrail_tripped` → FAILED(`guardrail`);
- `limit_exceeded` (a usage limit of the run's `Limits`) → FAILED(`usage_limit`) from PLANNING
  or EXECUTING (pending tool calls answered with error results).
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard, cast, get_args

from statemachine import State

from fsm_agents.context import RunContext
from fsm_agents.errors import InvalidDefinition
from fsm_agents.events import (
    Answer,
    Approved,
    AwaitInput,
    CallModel,
    CheckOutput,
    EffectUncertain,
    Event,
    GuardrailTripped,
    HandedOff,
    InputReceived,
    InputRequest,
    LimitExceeded,
    ModelFailed,
    ModelReplied,
    Observed,
    RunTools,
    Step,
    ToolsFinished,
    effect_key,
)
from fsm_agents.guardrails import Guardrail, as_guardrails
from fsm_agents.machine import ChartClass, Machine, chart_class, compile_chart, fused
from fsm_agents.output import OUTPUT_TOOL, OUTPUT_TOOL_DESCRIPTION, output_spec, prompt_instructions, validate_output
from fsm_agents.state import (
    AssistantMessage,
    Conversation,
    EmptyContext,
    Failure,
    Frozen,
    Message,
    ModelRequest,
    ModelSettings,
    Phase,
    Snapshot,
    ToolCall,
    ToolMessage,
    ToolResult,
    ToolSpec,
    UserMessage,
    _made,
    fields_set,
    is_valid_name,
    messages_from,
)
from fsm_agents.tools import DEFAULT_MAX_OUTPUT_CHARS, Tool, Toolset, as_tools

if TYPE_CHECKING:
    from fsm_agents.models.base import Model

__all__ = [
    "TRANSFER_PREFIX",
    "Agent",
    "AgentChart",
    "AgentData",
    "AgentMachine",
    "AwaitingAgentChart",
    "OutputMode",
    "agent_chart",
    "model_request",
]

TRANSFER_PREFIX = "transfer_to_"

OutputMode = Literal["native", "tool", "prompt"]
_OUTPUT_MODES: tuple[str, ...] = get_args(OutputMode)


ToolChoicePolicy = Callable[[Sequence[Message]], str]
InstructionsFn = Callable[[RunContext[Any]], "str | Awaitable[str]"]


def guided_tool_choice(tool: str) -> ToolChoicePolicy:
    """A per-call `tool_choice` policy for small models: force `tool` until a result of `tool` is
    in the conversation; after a successful result ask for a text answer (`"none"`); after an
    error result let the model try again (`"auto"`). Pure: it reads only the messages (results of
    other tools, e.g. an earlier agent's in a shared conversation, do not count)."""

    def choose(messages: Sequence[Message]) -> str:
        for m in reversed(messages):
            if isinstance(m, ToolMessage) and m.name == tool:
                return "auto" if m.is_error else "none"
        return tool

    choose.__name__ = f"guided_tool_choice_{tool}"
    return choose


def agent_chart(
    *,
    handoff_limit: bool = False,
    awaits_input: bool = False,
    output_function: bool = False,
    input_guardrails: bool = False,
    output_guardrails: bool = False,
    name: str = "AgentChart",
) -> ChartClass:
    """The topology of the agent loop (guards and actions are named; see `AgentMachine`).

    `handoff_limit=True` (the `Handoffs` pattern) inserts `model_replied [handoff_limit] → FAILED`
    just before the handoff transition: a transfer past the budget fails instead of moving on.
    `awaits_input=True` (an agent with tools that wait for a human) adds `EXECUTING
    --input_received--> EXECUTING` (`apply_decisions`). `output_function=True` (an agent whose
    `output_type` is a function) adds `OBSERVING --observed [tool_gave_output]--> DONE`
    (`finish_from_tool`) before the way back to PLANNING. `input_guardrails=True` adds `PLANNING
    --guardrail_tripped--> FAILED`; `output_guardrails=True` inserts `model_replied
    [checks_output] → EXECUTING` (`check_output`, emitting `CheckOutput`) just before `finish`,
    then `EXECUTING --output_checked--> DONE` and `EXECUTING --guardrail_tripped--> FAILED`.
    Every variant has `limit_exceeded` from PLANNING and EXECUTING to FAILED (`fail_limit`).
    Guards of one event are tried in the order written.
    """
    planning = State("PLANNING", initial=True)
    executing = State("EXECUTING")
    observing = State("OBSERVING")
    handoff = State("HANDOFF")
    done = State("DONE", final=True)
    failed = State("FAILED", final=True)
    model_replied = planning.to(failed, cond="over_budget", on="fail_budget")
    if handoff_limit:
        model_replied |= planning.to(failed, cond="handoff_limit", on="fail_handoff_loop")
    model_replied |= (
        planning.to(handoff, cond="asks_handoff", on="hand_off")
        | planning.to(executing, cond="asks_tools", on="request_tools")
        | planning.to(planning, cond="output_retry", on="retry_output")
        | planning.to(failed, cond="output_invalid", on="fail_output")
    )
    if output_guardrails:
        model_replied |= planning.to(executing, cond="checks_output", on="check_output")
    model_replied |= planning.to(done, on="finish")
    guarded: dict[str, Any] = {}
    if input_guardrails and output_guardrails:
        guarded["guardrail_tripped"] = planning.to(failed, on="fail_guardrail") | executing.to(failed, on="fail_guardrail")
    elif input_guardrails:
        guarded["guardrail_tripped"] = planning.to(failed, on="fail_guardrail")
    elif output_guardrails:
        guarded["guardrail_tripped"] = executing.to(failed, on="fail_guardrail")
    if output_guardrails:
        guarded["output_checked"] = executing.to(done, on="finish_checked")
    chart = chart_class(
        name,
        {
            "__module__": __name__,
            "planning": planning,
            "executing": executing,
            "observing": observing,
            "handoff": handoff,
            "done": done,
            "failed": failed,
            "model_replied": model_replied,
            "model_failed": planning.to(failed, on="fail_model"),
            **({"input_received": executing.to(executing, on="apply_decisions")} if awaits_input else {}),
            "tools_finished": executing.to(observing, on="observe"),
            # resume: a non-idempotent tool may have run
            "effect_uncertain": executing.to(failed, on="fail_uncertain"),
            **guarded,
            # a limit of the run's `Limits` (the runtime checks them): from every phase a run rests in
            "limit_exceeded": planning.to(failed, on="fail_limit") | executing.to(failed, on="fail_limit"),
            # internal: raised by step
            "observed": (
                observing.to(done, cond="tool_gave_output", on="finish_from_tool") | observing.to(planning, on="call_model")
                if output_function
                else observing.to(planning, on="call_model")
            ),
            "handed_off": handoff.to(planning, on="call_model"),  # internal: raised by step
        },
        internal=(Observed, HandedOff),
    )
    if handoff_limit:
        _HANDOFF_LIMITED.add(chart)
    return chart


_HANDOFF_LIMITED: set[ChartClass] = set()  # the charts made with handoff_limit=True (their variants keep it)

AgentChart = agent_chart()
AwaitingAgentChart = agent_chart(awaits_input=True, name="AwaitingAgentChart")


_VARIANTS: dict[tuple[ChartClass, bool, bool, bool, bool], ChartClass] = {
    (AgentChart, True, False, False, False): AwaitingAgentChart
}


def _variant(chart: ChartClass, awaits: bool, output_function: bool, inputs: bool, outputs: bool) -> ChartClass:
    """`chart` with EXECUTING waiting for a human's decisions (`awaits`), OBSERVING ending the run
    on an output function's result (`output_function`) and/or the guardrail transitions (`inputs`,
    `outputs`); made once per combination."""
    if not (awaits or output_function or inputs or outputs):
        return chart
    key = (chart, awaits, output_function, inputs, outputs)
    found = _VARIANTS.get(key)
    if found is None:
        handoff_limit = chart in _HANDOFF_LIMITED
        prefix = (
            ("Awaiting" if awaits else "")
            + ("OutputFunction" if output_function else "")
            + ("InputGuarded" if inputs else "")
            + ("OutputGuarded" if outputs else "")
        )
        found = _VARIANTS[key] = agent_chart(
            handoff_limit=handoff_limit,
            awaits_input=awaits,
            output_function=output_function,
            input_guardrails=inputs,
            output_guardrails=outputs,
            name=f"{prefix}{chart.__name__}",
        )
    return found


class AgentData(Frozen):
    """The agent machine's bookkeeping: model calls made, output retries used, handoffs taken."""

    turns: int = 0
    output_retries: int = 0
    handoffs: int = 0


# fields sets for `_made` (the hot constructions skip model_construct's keyword handling)
_CALL_MODEL_FIELDS = fields_set(CallModel)
_RUN_TOOLS_FIELDS = fields_set(RunTools)
_TOOL_MESSAGE_FIELDS = fields_set(ToolMessage)
_AgentSnapshot = Snapshot[AgentData]  # subscripting a generic model per run costs microseconds
_SNAPSHOT_FIELDS = fields_set(_AgentSnapshot)
_AGENT_DATA_FIELDS = fields_set(AgentData)
_NO_CONTEXT = EmptyContext()
_MAX_INTERNED = 4096  # AgentData values one machine keeps for sharing (see AgentMachine._agent_data)


class Agent:
    """An LLM agent: a name, instructions (the system prompt), a model, tools.

    - `instructions`: the system prompt, a str; or a function `(ctx: RunContext) -> str` (sync
      or async), *dynamic instructions*: the runtime calls it before each model call of this
      agent (the pure core's request carries the static text, `""`; see
      docs/architecture.md, Tools and run context). One that raises or returns a non-str makes
      that call a `ModelFailed(kind="instructions")`: the run ends FAILED(`model_error`);
    - `model`: a `fsm_agents.models.Model` (or `None` and pass `models=` to `run`);
    - `tools`: `Tool`s or typed functions (wrapped with `@tool`), and toolsets whose tools are
      listed when a run starts (`fsm_agents.mcp.MCPServerStdio`, `MCPServerHTTP`: a `Toolset`);
    - `handoffs`: agents (or their names, for cycles) this agent may transfer control to; each
      becomes a `transfer_to_<name>` tool;
    - `output_type`: the type of the final answer: anything pydantic validates and builds a
      JSON schema for — a frozen model, `list[str]`, `int`, `dict[str, float]`, `Literal[...]`,
      a union of models, a `TypedDict`, a frozen dataclass (`None` or `str`: plain text). The
      value is kept frozen: lists come back as tuples, dicts as `FrozenDict`s. A function (or
      a `Tool`) is an *output function*: offered as a tool, it runs like any tool when the model
      calls it, and its successful result — its return value, validated as its return
      annotation — ends the run DONE (pydantic-ai's output functions, the OpenAI Agents SDK's
      `StopAtTools`): the answer's values come from code, not from the model's words (a text
      reply is fed back asking for the call, as an invalid answer);
    - `output_mode`: how the model is asked for it — `"native"` (the default: the provider's
      structured output, OpenAI-compatible `response_format` json_schema or the llama.cpp
      server's JSON-schema grammar; a provider without it gets the schema in the system
      prompt), `"tool"` (an output tool `final_result` whose parameters are the schema: a reply
      calling it is the final answer; the other calls of that reply are not executed), or
      `"prompt"` (the schema in the instructions, nothing else);
    - `max_steps`: model calls allowed in one run (the entry agent's value governs a run);
    - `output_retries`: how often an invalid/empty final answer is fed back before FAILED;
    - `max_tool_output_chars`: the output cap (characters) of this agent's tools that set none
      (`@tool(max_output_chars=...)` overrides it); the executor cuts a longer output once,
      with a marker the model sees;
    - `parallel_tool_calls`: `False` runs the calls of one reply one after another in call
      order (and asks the provider for one call per reply where it can: OpenAI-compatible
      `parallel_tool_calls`, Anthropic `disable_parallel_tool_use`); `None` (default) or
      `True`: calls run concurrently, except around `@tool(sequential=True)` tools; `True` is
      also sent to the provider;
    - `settings`: sampling settings; `tool_choice`: `"auto"`, `"required"`, `"none"`, a tool
      name, or a pure function `(messages) -> str` choosing it per model call (e.g.
      `guided_tool_choice("lookup")`, which small local models need);
    - `approval`: a pure function `(tool_call) -> bool`: calls it returns True for wait for a
      human's decision, like the calls of tools made with `@tool(requires_approval=True)`;
    - `input_guardrails`: functions `(ctx, messages) -> GuardrailResult` (sync or async, see
      `fsm_agents.guardrails`) run on the run's input concurrently with this agent's first model
      call when it is the entry agent; a trip cancels the call → FAILED(`guardrail`);
    - `output_guardrails`: functions `(ctx, output) -> GuardrailResult` run on the validated final
      answer before DONE; a trip → FAILED(`guardrail`). Named by `__name__` or
      `guardrail(fn, name=...)`.

    Raises `InvalidDefinition` for a bad name, an `output_type` pydantic cannot build a schema
    for (or a non-frozen model or dataclass in it), an unknown `output_mode`, a tool named
    `final_result` beside the output tool, a count that is not an
    int in range (`max_steps` ≥ 1, `output_retries` ≥ 0, `max_tool_output_chars` ≥ 1), an argument
    of the wrong type (instructions — a str or a function of one `RunContext` —, description,
    model, settings, tool_choice, parallel_tool_calls), guardrails that are not functions or share
    a name (or output guardrails beside an output function), and `ToolDefinitionError` for tools
    that are not a list of tools or typed functions, or whose parameters have no JSON schema (the
    tools' input models and schemas are built here).
    """

    def __init__(
        self,
        name: str,
        instructions: str | InstructionsFn = "",
        model: Model | None = None,
        tools: Iterable[Tool | Callable[..., Any] | Toolset] | Toolset = (),
        handoffs: Iterable[Agent | str] = (),
        output_type: Any = None,
        max_steps: int = 10,
        *,
        output_mode: OutputMode = "native",
        description: str = "",
        output_retries: int = 1,
        max_tool_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        settings: ModelSettings | None = None,
        tool_choice: str | ToolChoicePolicy = "auto",
        approval: Callable[[ToolCall], bool] | None = None,
        parallel_tool_calls: bool | None = None,
        input_guardrails: Iterable[Callable[..., Any]] = (),
        output_guardrails: Iterable[Callable[..., Any]] = (),
    ) -> None:
        if not is_valid_name(name):
            raise InvalidDefinition(f"agent name {name!r} must be 1-64 letters, digits, '_' or '-'")
        for field, value, least in (
            ("max_steps", max_steps, 1),
            ("output_retries", output_retries, 0),
            ("max_tool_output_chars", max_tool_output_chars, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidDefinition(f"agent {name!r}: {field} must be an int >= {least}, got {value!r}")
        if not isinstance(description, str):
            raise InvalidDefinition(f"agent {name!r}: description must be a str, got {type(description).__name__}")
        if not isinstance(instructions, str):
            _check_instructions(name, instructions)
        if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
            raise InvalidDefinition(
                f"agent {name!r}: parallel_tool_calls must be True, False or None, got {type(parallel_tool_calls).__name__}"
            )
        if model is not None and not callable(getattr(model, "complete", None)):
            raise InvalidDefinition(
                f"agent {name!r}: model must be a fsm_agents.models.Model (async complete(request)), "
                f"got {type(model).__name__}"
            )
        if settings is not None and not isinstance(settings, ModelSettings):
            raise InvalidDefinition(f"agent {name!r}: settings must be a ModelSettings, got {type(settings).__name__}")
        if not (isinstance(tool_choice, str) or callable(tool_choice)):
            raise InvalidDefinition(
                f"agent {name!r}: tool_choice must be a str or a function of the messages, got {type(tool_choice).__name__}"
            )
        if approval is not None and not callable(approval):
            raise InvalidDefinition(
                f"agent {name!r}: approval must be a function of the tool call, got {type(approval).__name__}"
            )
        if output_mode not in _OUTPUT_MODES:
            raise InvalidDefinition(f"agent {name!r}: output_mode must be one of {_OUTPUT_MODES}, got {output_mode!r}")
        output_function: Tool | None = None
        if isinstance(output_type, Tool) or inspect.isroutine(output_type):
            output_function = output_type if isinstance(output_type, Tool) else as_tools([output_type])[0]
            try:
                output_type = typing.get_type_hints(output_function.fn).get("return")
            except Exception as exc:  # an annotation that does not resolve
                raise InvalidDefinition(
                    f"agent {name!r}: output_type {output_function.name}: its return annotation does not resolve ({exc})"
                ) from None
            if output_type is None:
                raise InvalidDefinition(
                    f"agent {name!r}: output_type {output_function.name} is an output function: annotate what it "
                    "returns (its return value is the run's output)"
                )
        if output_type is str:
            output_type = None  # plain text
        if output_type is not None:
            try:
                output_spec(output_type)
            except InvalidDefinition as exc:
                raise InvalidDefinition(f"agent {name!r}: {exc}") from None
            except TypeError:  # an unhashable type (e.g. Annotated with unhashable metadata)
                raise InvalidDefinition(
                    f"agent {name!r}: output_type {output_type!r} is not hashable: use a model or a plain type"
                ) from None
        self.name = name
        self.instructions = instructions
        self.static_instructions = instructions if isinstance(instructions, str) else ""  # what the pure core sends
        self.model = model
        plain, self.toolsets = _split_toolsets(name, tools)
        self.tools = as_tools(plain)
        if output_function is not None:
            if any(t.name == output_function.name for t in self.tools):
                raise InvalidDefinition(
                    f"agent {name!r}: the output function {output_function.name!r} is also in tools: list it once, "
                    "as output_type"
                )
            self.tools += (output_function,)
        for t in self.tools:
            if t.name.startswith(TRANSFER_PREFIX):
                raise InvalidDefinition(f"agent {name!r}: tool names starting with {TRANSFER_PREFIX!r} are reserved")
            if t.name == OUTPUT_TOOL and output_type is not None and output_mode == "tool":
                raise InvalidDefinition(
                    f"agent {name!r}: a tool is named {OUTPUT_TOOL!r}, the name of the output tool "
                    "(output_mode='tool'): rename the tool"
                )
            _ = t.spec  # builds (or finds cached) the input model and schema: ToolDefinitionError now, not mid-run
        self.handoffs: tuple[Agent | str, ...] = tuple(handoffs)
        self.output_type = output_type
        self.output_function = output_function
        self.output_mode: OutputMode = output_mode
        self.max_steps = max_steps
        self.description = description
        self.output_retries = output_retries
        self.max_tool_output_chars = max_tool_output_chars
        self.settings = settings or ModelSettings()
        self.tool_choice = tool_choice
        self.approval = approval
        self.parallel_tool_calls = parallel_tool_calls
        self.input_guardrails = as_guardrails(input_guardrails, name, "input_guardrails")
        self.output_guardrails = as_guardrails(output_guardrails, name, "output_guardrails")
        if self.output_guardrails and output_function is not None:
            raise InvalidDefinition(
                f"agent {name!r}: output_guardrails check a final answer the model writes; an output function's "
                "result ends the run without that check: validate inside the output function instead"
            )
        self._machine: AgentMachine | None = None

    @property
    def machine(self) -> AgentMachine:
        """The compiled machine of this agent (built once, on first use)."""
        if self._machine is None:
            self._machine = AgentMachine(self)
        return self._machine

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, tools={[t.name for t in self.tools]}, max_steps={self.max_steps})"


def _split_toolsets(agent: str, tools: Any) -> tuple[Any, tuple[Toolset, ...]]:
    """(the plain tools, the toolsets) of an `Agent(tools=...)` argument. Raises
    `InvalidDefinition` for one toolset given twice, and for a toolset whose every tool needs
    approval but whose calls cannot be told apart before listing (no prefix, another toolset)."""
    if _is_toolset(tools):
        return (), (tools,)
    if isinstance(tools, (Tool, str, bytes)) or callable(tools) or not isinstance(tools, Iterable):
        return tools, ()  # as_tools says what is wrong
    items = list(tools)
    toolsets = tuple(t for t in items if _is_toolset(t))
    if not toolsets:
        return items, ()
    if len({id(t) for t in toolsets}) != len(toolsets):
        raise InvalidDefinition(f"agent {agent!r}: a toolset is given twice in tools ({toolsets[0].name!r}...)")
    for t in toolsets:
        if t.requires_approval is True and t.prefix is None and len(toolsets) > 1:
            raise InvalidDefinition(
                f"agent {agent!r}: toolset {t.name!r} has requires_approval=True and no prefix, beside other "
                "toolsets: its calls cannot be told apart before its tools are listed; give it a prefix= "
                "or name the tools that need approval"
            )
    return [t for t in items if not _is_toolset(t)], toolsets


def _is_toolset(obj: Any) -> TypeGuard[Toolset]:
    """`isinstance(obj, Toolset)`, without the protocol check's cost (tens of µs) for the tools
    and functions a tool list is made of."""
    if type(obj) is Tool or callable(obj) or not hasattr(obj, "requires_approval"):
        return False
    return isinstance(obj, Toolset)


def _check_instructions(name: str, instructions: object) -> None:
    """Raise `InvalidDefinition` unless `instructions` is a function callable with one `RunContext`."""
    if not callable(instructions) or isinstance(instructions, type):
        raise InvalidDefinition(
            f"agent {name!r}: instructions must be a str or a function (ctx: RunContext) -> str, "
            f"got {type(instructions).__name__}"
        )
    try:
        inspect.signature(instructions).bind(None)
    except TypeError:
        raise InvalidDefinition(
            f"agent {name!r}: the instructions function must take exactly one argument (the RunContext)"
        ) from None
    except ValueError:  # no signature to read (some builtins): trust it
        pass


def _is_object(call: ToolCall) -> bool:
    try:
        return isinstance(json.loads(call.arguments or "{}"), dict)
    except ValueError:
        return False


@lru_cache(maxsize=256)
def _validate_output(output_type: Any, content: str | None) -> tuple[Any, str | None]:
    """(value, error): the final answer, or why it is not acceptable. Pure and cached.

    `output_type` `None`: the text itself; else the JSON `content` validated as `output_type`
    (`fsm_agents.output.validate_output`: frozen, unwrapped)."""
    if content is None or not content.strip():
        return None, "the reply was empty: answer the user, or call a tool"
    if output_type is None:
        return content, None
    return validate_output(output_type, content)


def model_calls(n: int) -> str:
    """`"1 model call"`, `"n model calls"`: the count in budget messages."""
    return f"{n} model call" if n == 1 else f"{n} model calls"


def model_request(
    agent: Agent,
    *,
    instructions: str | None = None,
    tools: Iterable[ToolSpec] = (),
    tool_choice: str | None = None,
    output_type: Any = None,
    output_tool: bool = False,
) -> ModelRequest:
    """The request template (no messages yet) a machine sends to `agent`'s model.

    Defaults come from `agent`: its instructions, its `tool_choice` when a string (`"auto"` when
    it is a per-call policy: the machine fills it in per call), its settings, its
    `parallel_tool_calls` (when tools are offered), and its `output_type`'s JSON schema
    (`fsm_agents.output.output_spec`) by its `output_mode`:
    `"native"` → `output_schema_json`; `"prompt"` → appended to the instructions; `"tool"` →
    the output tool `final_result` (schema as its parameters) after `tools`, when the machine
    handles it (`output_tool=True`, as `AgentMachine` does; otherwise native), with a
    `tool_choice` of `"none"` turned into `final_result` so the answer can still be given. An
    output function is one of `tools` already: nothing is added (a `"none"` choice names it).
    An explicit `output_type` is always native. `tools` are the specs offered. For dynamic
    instructions the template holds the static text (`""`, or what a pattern adds); the runtime
    fills in the rest.
    """
    choice = tool_choice if tool_choice is not None else agent.tool_choice
    mode = "native" if output_type is not None else agent.output_mode
    schema_type = output_type if output_type is not None else agent.output_type
    if output_type is None and agent.output_function is not None:
        schema_type = None  # the output function is one of the agent's tools: nothing else to send
        if choice == "none" and output_tool:
            choice = agent.output_function.name
    text = agent.static_instructions if instructions is None else instructions
    specs = tuple(tools)
    schema_json: str | None = None
    if schema_type is not None:
        spec = output_spec(schema_type)
        if mode == "tool" and output_tool:
            specs += (ToolSpec(name=OUTPUT_TOOL, description=OUTPUT_TOOL_DESCRIPTION, parameters_json=spec.schema_json),)
            if choice == "none":
                choice = OUTPUT_TOOL
        elif mode == "prompt":
            text = f"{text}\n\n{prompt_instructions(spec.schema_json)}".strip()
        else:
            schema_json = spec.schema_json
    return ModelRequest(
        agent=agent.name,
        instructions=text,
        tools=specs,
        tool_choice=choice if isinstance(choice, str) else "auto",
        output_schema_json=schema_json,
        settings=agent.settings,
        parallel_tool_calls=agent.parallel_tool_calls if specs else None,
    )


@lru_cache(maxsize=256)
def _text_in_tool_mode(output_type: Any, content: str | None, tool: str = OUTPUT_TOOL) -> tuple[Any, str | None]:
    value, error = _validate_output(output_type, content)
    if error is None:
        return value, None  # a text reply that validates is accepted too
    return None, f"{error} (give the final answer by calling the {tool} tool)"


@lru_cache(maxsize=64)
def _no_output_function(name: str) -> str:
    return f"a reply is not the final answer here: call the {name} tool, whose result is the answer"


def _tool_output(output_type: Any, message: AssistantMessage) -> tuple[Any, str | None]:
    """The final answer of a reply to an agent with the output tool: the arguments of its first
    `final_result` call, or (no such call) its text."""
    for c in message.tool_calls:
        if c.name == OUTPUT_TOOL:
            return _validate_output(output_type, c.arguments or "{}")
    return _text_in_tool_mode(output_type, message.content)


def _output_call_answers(message: AssistantMessage, text: str, *, ok: bool) -> list[Message]:
    """One result per call of a reply that gave the final answer through the output tool: the
    first `final_result` call gets `text`; every other call is not executed (the history stays
    well formed: each call has its result)."""
    answers: list[Message] = []
    first = True
    for c in message.tool_calls:
        if c.name == OUTPUT_TOOL and first:
            first = False
            answers.append(ToolMessage(tool_call_id=c.id, name=c.name, content=text, is_error=not ok))
        else:
            note = f"not executed: the reply called {OUTPUT_TOOL}, which gives the final answer"
            answers.append(ToolMessage(tool_call_id=c.id, name=c.name, content=note, is_error=True))
    return answers


class _Resolved:
    """Per-agent static parts of the machine, computed once at definition time."""

    __slots__ = (
        "agent",
        "answer_tool",
        "awaits",
        "checks",
        "guardrails",
        "output_function",
        "output_tool",
        "template",
        "tool_options",
        "tools",
        "toolset_approval",
        "transfers",
    )

    def __init__(self, agent: Agent, transfers: Mapping[str, str], template: ModelRequest) -> None:
        self.agent = agent
        self.guardrails: dict[str, Mapping[str, Guardrail]] = {
            "input": MappingProxyType({g.name: g for g in agent.input_guardrails}),
            "output": MappingProxyType({g.name: g for g in agent.output_guardrails}),
        }
        self.checks = tuple(g.name for g in agent.output_guardrails)  # the CheckOutput of a final answer
        self.transfers = transfers  # transfer tool name -> target agent name
        self.template = template
        self.tools: Mapping[str, Tool] = MappingProxyType({t.name: t for t in agent.tools})
        # toolsets whose calls may wait for a human (their tools are not known before a run lists them)
        self.toolset_approval = tuple(t for t in agent.toolsets if t.requires_approval)
        # some call may wait for a human
        self.awaits = any(t.requires_approval or t.asks_user for t in agent.tools) or bool(self.toolset_approval)
        self.output_tool = any(t.name == OUTPUT_TOOL for t in template.tools)  # output_mode="tool"
        self.output_function = agent.output_function.name if agent.output_function is not None else None
        # the tool that gives the final answer, which a tool_choice of "none" names instead
        self.answer_tool = OUTPUT_TOOL if self.output_tool else self.output_function
        self.tool_options: Mapping[str, Any] = MappingProxyType(
            {"max_output_chars": agent.max_tool_output_chars, "parallel": agent.parallel_tool_calls is not False}
        )

    def toolset_needs_approval(self, name: str) -> bool:
        """Whether a call of `name` (not one of the agent's own tools) is a toolset's call that
        waits for a human: decided from the toolsets' static `requires_approval` and `prefix`."""
        if name in self.transfers or name == self.answer_tool:
            return False
        for t in self.toolset_approval:
            wanted = t.requires_approval
            if wanted is True:
                if t.prefix is None or name.startswith(f"{t.prefix}_"):
                    return True
            elif wanted is not False and name in wanted:
                return True
        return False


def _collect(entry: Agent) -> dict[str, Agent]:
    agents: dict[str, Agent] = {}
    pending: list[Agent] = [entry]
    while pending:
        a = pending.pop()
        if a.name in agents:
            if agents[a.name] is not a:
                raise InvalidDefinition(f"two different agents are named {a.name!r}")
            continue
        agents[a.name] = a
        pending.extend(h for h in a.handoffs if isinstance(h, Agent))
    for a in agents.values():
        for h in a.handoffs:
            target = h if isinstance(h, str) else h.name
            if target not in agents:
                raise InvalidDefinition(
                    f"agent {a.name!r} hands off to {target!r}, which is not reachable from {entry.name!r}"
                )
    return agents


class AgentMachine(Machine):
    """The compiled agent loop for an entry `Agent` and every agent it can hand off to.

    `name` is `"agent:<entry name>"`; snapshots carry `AgentData`. Pure: `start` and `step`
    never perform I/O; the runtime performs the `CallModel` / `RunTools` effects.
    """

    chart_class: ClassVar[ChartClass] = AgentChart  # the topology this machine compiles (once, per machine)

    def __init__(self, agent: Agent) -> None:
        self.entry = agent
        self.name = f"agent:{agent.name}"
        self.max_steps = agent.max_steps
        self.agents: Mapping[str, Agent] = MappingProxyType(_collect(agent))
        resolved: dict[str, _Resolved] = {}
        for a in self.agents.values():
            transfers: dict[str, str] = {}
            specs = [t.spec for t in a.tools]
            for h in a.handoffs:
                target = self.agents[h if isinstance(h, str) else h.name]
                tname = f"{TRANSFER_PREFIX}{target.name}"
                if len(tname) > 64:  # the providers' limit on a function name
                    raise InvalidDefinition(
                        f"agent {a.name!r}: the handoff tool {tname!r} would be longer than the 64 characters "
                        f"providers accept: give {target.name!r} a name of at most {64 - len(TRANSFER_PREFIX)} characters"
                    )
                transfers[tname] = target.name
                about = target.description or target.static_instructions[:200]
                specs.append(
                    ToolSpec(name=tname, description=f"Hand the conversation over to {target.name}. {about}".strip())
                )
            template = model_request(a, tools=specs, output_tool=True)
            resolved[a.name] = _Resolved(a, MappingProxyType(transfers), template)
        self._resolved = resolved
        self._hands_off = any(r.transfers for r in resolved.values())
        self._output_tools = any(r.output_tool for r in resolved.values())
        self._dynamic: Mapping[str, InstructionsFn] = MappingProxyType(
            {a.name: a.instructions for a in self.agents.values() if not isinstance(a.instructions, str)}
        )
        self._interned: dict[tuple[int, int, int], AgentData] = {}
        # guards and actions need this agent's configuration, so each machine compiles its table
        # from its own bound methods (once, here)
        awaits = any(r.awaits or r.agent.approval is not None for r in resolved.values())
        self._screens = tuple(g.name for g in agent.input_guardrails)  # named on the first CallModel
        outputs = any(r.checks for r in resolved.values())
        output_function = any(r.output_function is not None for r in resolved.values())
        chart = _variant(self.chart_class, awaits, output_function, bool(self._screens), outputs)
        self.table = compile_chart(chart, owner=self)

    # -- resources the runtime needs (not part of any snapshot) --------------------------------
    def tools_for(self, agent: str) -> Mapping[str, Tool]:
        """The tools of `agent` by name (the runtime runs `RunTools` effects with them)."""
        return self._resolved[agent].tools

    def tool_options(self, agent: str) -> Mapping[str, Any]:
        """`agent`'s `max_tool_output_chars` and `parallel_tool_calls`, as `ToolExecutor` options."""
        return self._resolved[agent].tool_options

    def dynamic_instructions(self) -> Mapping[str, InstructionsFn]:
        """The instruction functions of this machine's agents that have one, by agent name."""
        return self._dynamic

    def guardrails_for(self, agent: str, stage: str) -> Mapping[str, Guardrail]:
        """`agent`'s guardrails of `stage` (`"input"` / `"output"`) by name."""
        return self._resolved[agent].guardrails[stage]

    def tool_specs(self, agent: str) -> tuple[ToolSpec, ...]:
        """The tools `agent`'s model is offered, `transfer_to_<agent>` handoff tools included
        (not the tools its toolsets list when a run starts: the runtime adds those)."""
        return self._resolved[agent].template.tools

    def toolsets(self) -> Mapping[str, tuple[Toolset, ...]]:
        """The toolsets of each agent that has some, by agent name (listed when a run starts)."""
        return {name: a.toolsets for name, a in self.agents.items() if a.toolsets}

    def output_tool_type(self, agent: str) -> Any:
        """The output type `agent`'s output tool `final_result` takes (`None` without one): the
        testing kit draws valid calls of it."""
        resolved = self._resolved[agent]
        return resolved.agent.output_type if resolved.output_tool else None

    def output_function_of(self, agent: str) -> tuple[str, Any] | None:
        """(name, return type) of `agent`'s output function (`None` without one, or when it
        returns text): the testing kit draws its results as values of that type."""
        resolved = self._resolved[agent]
        if resolved.output_function is None or resolved.agent.output_type is None:
            return None
        return resolved.output_function, resolved.agent.output_type

    def models(self) -> Mapping[str, Model | None]:
        """Each agent's configured model, by agent name."""
        return {name: a.model for name, a in self.agents.items()}

    def max_transitions(self) -> int:
        # each model call but the last takes ≤ 3 transitions (→EXECUTING→OBSERVING→PLANNING);
        # the last reply takes 1 (→DONE/FAILED)
        return 3 * self.max_steps

    # -- pure core ----------------------------------------------------------------------------
    def _agent_data(self, turns: int, output_retries: int, handoffs: int) -> AgentData:
        """The `AgentData` with these counts. Interned per machine (a few values per run, all
        immutable): snapshots of concurrent runs share them instead of each holding its own."""
        key = (turns, output_retries, handoffs)
        data = self._interned.get(key)
        if data is None:
            values = {"turns": turns, "output_retries": output_retries, "handoffs": handoffs}
            data = _made(AgentData, values, _AGENT_DATA_FIELDS)
            if len(self._interned) < _MAX_INTERNED:
                self._interned[key] = data
        return data

    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        """The first snapshot (PLANNING, entry agent active) and its `CallModel` effect.

        `input` is a string (one user message), a message, or a sequence of messages.
        """
        values = {
            "machine": self.name,
            "phase": Phase.PLANNING,
            "conversation": Conversation.of(*messages_from(input), id=run_id),
            "agent": self.entry.name,
            "step": 0,
            "pending": (),
            "results": (),
            "output": None,
            "failure": None,
            "context": context if context is not None else _NO_CONTEXT,
            "data": self._agent_data(1, 0, 0),
        }
        snapshot: Snapshot[AgentData] = _made(_AgentSnapshot, values, _SNAPSHOT_FIELDS)
        return Step(snapshot, (self._call_model_effect(snapshot, self._screens),))

    def _call_model_effect(self, s: Snapshot[Any], guardrails: tuple[str, ...] = ()) -> CallModel:
        agent = cast(str, s.agent)
        resolved = self._resolved[agent]
        messages = s.conversation.messages
        policy = resolved.agent.tool_choice
        if isinstance(policy, str):
            request = resolved.template.model_copy(update={"messages": messages})
        else:
            choice = policy(messages)
            if choice == "none" and resolved.answer_tool is not None:
                choice = resolved.answer_tool  # "answer now" is a call of the output tool
            request = resolved.template.model_copy(update={"messages": messages, "tool_choice": choice})
        values = {"key": effect_key(s), "agent": agent, "request": request, "guardrails": guardrails}
        return _made(CallModel, values, _CALL_MODEL_FIELDS)

    # guards -----------------------------------------------------------------------------------
    def _reply(self, s: Snapshot[Any], e: Event) -> AssistantMessage:
        return cast(ModelReplied, e).message

    # (guards on `model_replied` take the event as a ModelReplied: the chart sends no other)
    def _gives_output(self, s: Snapshot[Any], e: ModelReplied) -> bool:
        """Whether the reply calls the active agent's output tool (then it is a final answer:
        the guards below that act on tool calls let it through to the output guards)."""
        return (
            self._output_tools
            and self._resolved[cast(str, s.agent)].output_tool
            and any(c.name == OUTPUT_TOOL for c in e.message.tool_calls)
        )

    def over_budget(self, s: Snapshot[AgentData], e: ModelReplied) -> bool:
        return bool(e.message.tool_calls) and s.data.turns >= self.max_steps and not self._gives_output(s, e)

    def asks_handoff(self, s: Snapshot[Any], e: ModelReplied) -> bool:
        if not self._hands_off:
            return False
        transfers = self._resolved[cast(str, s.agent)].transfers
        return bool(transfers) and any(c.name in transfers for c in e.message.tool_calls) and not self._gives_output(s, e)

    def asks_tools(self, s: Snapshot[Any], e: ModelReplied) -> bool:
        return bool(e.message.tool_calls) and not (self._output_tools and self._gives_output(s, e))

    def _output(self, s: Snapshot[Any], e: Event) -> tuple[Any, str | None]:
        resolved = self._resolved[cast(str, s.agent)]
        message = self._reply(s, e)
        if resolved.output_tool:
            return _tool_output(resolved.agent.output_type, message)
        if resolved.output_function is not None:
            return None, _no_output_function(resolved.output_function)
        return _validate_output(resolved.agent.output_type, message.content)

    def _tool_gave(self, s: Snapshot[Any]) -> tuple[bool, Any]:
        """(found, value): the first successful result of the active agent's output function
        among the results just observed that validates as its return type."""
        resolved = self._resolved[cast(str, s.agent)]
        name = resolved.output_function
        for r in s.results:
            if r.name == name and r.ok:
                value, error = _validate_output(resolved.agent.output_type, r.content)
                if error is None:
                    return True, value
        return False, None

    # guard on `observed` (charts of agents with an output function only)
    def tool_gave_output(self, s: Snapshot[Any], e: Event) -> bool:
        return self._tool_gave(s)[0]

    def output_retry(self, s: Snapshot[AgentData], e: Event) -> bool:
        agent = self._resolved[cast(str, s.agent)].agent
        return (
            self._output(s, e)[1] is not None
            and s.data.output_retries < agent.output_retries
            and s.data.turns < self.max_steps
        )

    def output_invalid(self, s: Snapshot[Any], e: Event) -> bool:
        return self._output(s, e)[1] is not None

    def checks_output(self, s: Snapshot[Any], e: Event) -> bool:
        """The active agent has output guardrails (the reply is a valid final answer: the guards
        before this one did not hold)."""
        return bool(self._resolved[cast(str, s.agent)].checks)

    # actions: `@fused`, so s is the snapshot before the transition and `to` its target phase;
    # each builds the next snapshot with one `s.moved(to, ...)` copy ------------------------------
    def _attributed(self, s: Snapshot[Any], e: Event) -> AssistantMessage:
        message = self._reply(s, e)
        calls = message.tool_calls
        ids = [c.id for c in calls]
        if calls and (len(set(ids)) != len(ids) or not all(ids)):
            # ids must pair each call with its result: give duplicates/empties deterministic ones
            # (numbered by the step the reply leads to)
            calls = tuple(c.model_copy(update={"id": f"call_{s.step + 1}_{i}"}) for i, c in enumerate(calls))
            message = message.model_copy(update={"tool_calls": calls})
        if message.agent != s.agent:
            message = message.model_copy(update={"agent": s.agent})
        return message

    @fused
    def fail_budget(self, s: Snapshot[AgentData], e: Event, to: Phase) -> Step:
        message = self._attributed(s, e)
        note = f"not executed: the step budget of {model_calls(self.max_steps)} is exhausted"
        answers = [ToolMessage(tool_call_id=c.id, name=c.name, content=note, is_error=True) for c in message.tool_calls]
        failure = Failure(
            kind="budget_exhausted",
            message=f"{self.name} made {model_calls(s.data.turns)} (max_steps={self.max_steps}) and still asked for tools",
            detail=", ".join(c.name for c in message.tool_calls),
        )
        return Step(s.moved(to, conversation=s.conversation.append(message, *answers), failure=failure, pending=()))

    @fused
    def hand_off(self, s: Snapshot[AgentData], e: Event, to: Phase) -> Step:
        message = self._attributed(s, e)
        transfers = self._resolved[cast(str, s.agent)].transfers
        chosen = next(c for c in message.tool_calls if c.name in transfers)
        target = transfers[chosen.name]
        answers: list[Message] = []
        for c in message.tool_calls:
            if c is chosen:
                answers.append(ToolMessage(tool_call_id=c.id, name=c.name, content=f"Transferred to {target}."))
            else:
                answers.append(
                    ToolMessage(
                        tool_call_id=c.id,
                        name=c.name,
                        is_error=True,
                        content=f"not executed: control was handed off to {target}",
                    )
                )
        data = self._agent_data(s.data.turns, s.data.output_retries, s.data.handoffs + 1)
        return Step(s.moved(to, conversation=s.conversation.append(message, *answers), agent=target, data=data))

    def _awaited(self, agent: str, calls: Sequence[ToolCall]) -> tuple[InputRequest, ...]:
        """The calls of a reply that wait for a human (approval or a question), in call order."""
        resolved = self._resolved[agent]
        policy = resolved.agent.approval
        if policy is None and not resolved.awaits:
            return ()
        requests: list[InputRequest] = []
        for c in calls:
            t = resolved.tools.get(c.name)
            if t is not None and t.asks_user:
                question = json.loads(c.arguments or "{}").get("question") if _is_object(c) else None
                requests.append(
                    InputRequest(
                        call_id=c.id, tool=c.name, arguments=c.arguments, kind="question",
                        question=question if isinstance(question, str) else c.arguments,
                    )
                )
            elif (
                (t.requires_approval if t is not None else resolved.toolset_needs_approval(c.name))
                or (policy is not None and policy(c))
            ):
                requests.append(InputRequest(call_id=c.id, tool=c.name, arguments=c.arguments, kind="approval"))
        return tuple(requests)

    @fused
    def request_tools(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        message = self._attributed(s, e)
        moved = s.moved(to, conversation=s.conversation.append(message), pending=message.tool_calls, results=())
        awaited = self._awaited(cast(str, s.agent), message.tool_calls)
        if awaited:
            return Step(moved, (AwaitInput(key=effect_key(moved), agent=cast(str, s.agent), requests=awaited),))
        return Step(
            moved,
            (_made(RunTools, {"key": effect_key(moved), "agent": s.agent, "calls": message.tool_calls}, _RUN_TOOLS_FIELDS),),
        )

    @fused
    def apply_decisions(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        """The human's decisions: approved calls (and calls that awaited nothing) run; a denial or
        a missing decision is the call's error result; an answer is its result."""
        ev = cast(InputReceived, e)
        awaited = {r.call_id: r for r in self._awaited(cast(str, s.agent), s.pending)}
        to_run: list[ToolCall] = []
        decided: list[ToolResult] = []
        for c in s.pending:
            request = awaited.get(c.id)
            if request is None:
                to_run.append(c)
                continue
            d = ev.decision_for(c.id)
            if isinstance(d, Approved) and request.kind == "approval":
                to_run.append(c)
            elif isinstance(d, Answer) and request.kind == "question":
                decided.append(ToolResult(call_id=c.id, name=c.name, ok=True, content=d.text))
            elif d is None:
                decided.append(ToolResult(call_id=c.id, name=c.name, ok=False, error="not run: no decision was given"))
            elif request.kind == "question":
                decided.append(ToolResult(call_id=c.id, name=c.name, ok=False, error="the user did not answer"))
            else:
                reason = getattr(d, "reason", "") or "no reason given"
                decided.append(ToolResult(call_id=c.id, name=c.name, ok=False, error=f"denied by the user: {reason}"))
        moved = s.moved(to, results=tuple(decided))
        run = _made(RunTools, {"key": effect_key(moved), "agent": s.agent, "calls": tuple(to_run)}, _RUN_TOOLS_FIELDS)
        return Step(moved, (run,))

    @fused
    def retry_output(self, s: Snapshot[AgentData], e: Event, to: Phase) -> Step:
        message = self._attributed(s, e)
        error = self._output(s, e)[1]
        if message.tool_calls:  # the output tool's arguments are invalid: its result says why
            retry = f"{error}. Call {OUTPUT_TOOL} again with corrected arguments."
            answers = _output_call_answers(message, retry, ok=False)
        else:
            answers = [UserMessage(content=f"Your previous reply was not accepted: {error}. Reply again.")]
        data = self._agent_data(s.data.turns + 1, s.data.output_retries + 1, s.data.handoffs)
        moved = s.moved(to, conversation=s.conversation.append(message, *answers), data=data)
        return Step(moved, (self._call_model_effect(moved),))

    @fused
    def fail_output(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        message = self._attributed(s, e)
        error = self._output(s, e)[1]
        answers = _output_call_answers(message, str(error), ok=False)
        detail = message.content
        if message.tool_calls:
            detail = next((c.arguments for c in message.tool_calls if c.name == OUTPUT_TOOL), detail)
        failure = Failure(kind="invalid_output", message=f"{s.agent}: {error}", detail=detail)
        return Step(s.moved(to, conversation=s.conversation.append(message, *answers), failure=failure))

    @fused
    def finish(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        message = self._attributed(s, e)
        output = self._output(s, e)[0]
        if message.tool_calls:  # the output tool's call: it gets its result, the others are not run
            conversation = s.conversation.append(message, *_output_call_answers(message, "Final result processed.", ok=True))
        else:
            conversation = s.conversation.append(message)
        return Step(s.moved(to, conversation=conversation, output=output))

    @fused
    def finish_from_tool(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        """DONE with the output function's return value (its result is in the conversation)."""
        return Step(s.moved(to, output=self._tool_gave(s)[1]))

    @fused
    def check_output(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        """A valid final answer of an agent with output guardrails: keep it (conversation and
        `output`) and ask the runtime to check it (`CheckOutput`) before DONE."""
        message = self._attributed(s, e)
        output = self._output(s, e)[0]
        moved = s.moved(to, conversation=s.conversation.append(message), output=output, pending=(), results=())
        checks = self._resolved[cast(str, s.agent)].checks
        return Step(moved, (CheckOutput(key=effect_key(moved), agent=cast(str, s.agent), output=output, guardrails=checks),))

    @fused
    def finish_checked(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        """Every output guardrail passed: DONE with the answer `check_output` kept."""
        return Step(s.moved(to))

    @fused
    def fail_guardrail(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        """A guardrail tripped → FAILED(`guardrail`, detail = its name); an output trip keeps the
        answer in the conversation but not as the run's `output`."""
        ev = cast(GuardrailTripped, e)
        what = "input" if ev.stage == "input" else "final answer"
        reason = ev.reason or "no reason given"
        failure = Failure(
            kind="guardrail",
            message=f"{s.agent}: the {ev.stage} guardrail {ev.guardrail!r} stopped the {what}: {reason}",
            detail=ev.guardrail,
        )
        return Step(s.moved(to, output=None, failure=failure))

    @fused
    def fail_limit(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        """A usage limit was exceeded → FAILED(`usage_limit`, detail = the limit); pending tool
        calls get error results so the history stays well formed."""
        ev = cast(LimitExceeded, e)
        failure = _limit_failure(f"{s.agent}", ev)
        note = f"not executed: the run's {ev.limit} limit was exceeded"
        answers = [ToolMessage(tool_call_id=c.id, name=c.name, content=note, is_error=True) for c in s.pending]
        conversation = s.conversation.append(*answers) if answers else s.conversation
        return Step(s.moved(to, conversation=conversation, pending=(), results=(), output=None, failure=failure))

    @fused
    def fail_model(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        ev = cast(ModelFailed, e)
        return Step(s.moved(to, failure=Failure(kind="model_error", message=f"{s.agent}: {ev.error}", detail=ev.kind)))

    @fused
    def fail_uncertain(self, s: Snapshot[Any], e: Event, to: Phase) -> Step:
        ev = cast(EffectUncertain, e)
        note = "unknown whether this call ran: the run stopped while it was running and the tool is not idempotent"
        answers = [ToolMessage(tool_call_id=c.id, name=c.name, content=note, is_error=True) for c in s.pending]
        failure = Failure(
            kind="uncertain_effect",
            message=f"{s.agent}: effect {ev.effect_key} was started but never finished, and running it again "
            f"could repeat a side effect ({ev.detail or ', '.join(c.name for c in s.pending)})",
            detail=ev.detail or ", ".join(c.name for c in s.pending),
        )
        return Step(s.moved(to, conversation=s.conversation.append(*answers), pending=(), failure=failure))

    @fused
    def observe(self, s: Snapshot[Any], e: ToolsFinished, to: Phase) -> Step:
        reported = e.results
        if s.results:  # results decided by a human (apply_decisions) join the ones the tools reported
            reported = (*reported, *s.results)
        pending = s.pending
        # usually the results come in call order, one per call: then the event's tuple is kept
        same = len(reported) == len(pending)
        by_id: dict[str, ToolResult] | None = None
        results: list[ToolResult] = []
        answers: list[Message] = []
        for i, call in enumerate(pending):
            r = reported[i] if same else None
            if r is None or r.call_id != call.id:
                same = False
                if by_id is None:
                    by_id = {r.call_id: r for r in reported}
                r = by_id.get(call.id)
                if r is None:
                    r = ToolResult(call_id=call.id, name=call.name, ok=False, error="no result was reported for this call")
            results.append(r)
            # (the executor already cut the output to its cap: `Agent.max_tool_output_chars`)
            values = {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": r.text, "is_error": not r.ok}
            answers.append(_made(ToolMessage, values, _TOOL_MESSAGE_FIELDS))
        conversation = s.conversation.append(*answers)
        return Step(s.moved(to, conversation=conversation, pending=(), results=reported if same else tuple(results)))

    @fused
    def call_model(self, s: Snapshot[AgentData], e: Event, to: Phase) -> Step:
        moved = s.moved(to, data=self._agent_data(s.data.turns + 1, s.data.output_retries, s.data.handoffs))
        return Step(moved, (self._call_model_effect(moved),))


def _limit_failure(who: str, e: LimitExceeded) -> Failure:
    """FAILED(`usage_limit`) for `e`: the message names the limit, what was used and the maximum."""
    unit = " s" if e.limit == "wall_time" else ""
    used = f"{e.used:.3g}" if e.limit == "wall_time" else f"{e.used:g}"
    return Failure(
        kind="usage_limit",
        message=f"{who}: the {e.limit} limit was exceeded: used {used}{unit}, at most {e.maximum:g}{unit} "
        "(raise it in Limits, or let the run do less)",
        detail=e.limit,
    )


# the agent chart's guard and action names (tests rebuild a table with one action replaced)
# (`checks_output` is only on the charts of agents with output guardrails)
_GUARDS: Sequence[str] = ("over_budget", "asks_handoff", "asks_tools", "output_retry", "output_invalid")
_ACTIONS: Sequence[str] = (
    "fail_budget",
    "hand_off",
    "request_tools",
    "retry_output",
    "fail_output",
    "finish",
    "fail_model",
    "fail_uncertain",
    "check_output",
    "finish_checked",
    "fail_guardrail",
    "fail_limit",
    "apply_decisions",
    "observe",
    "call_model",
)
