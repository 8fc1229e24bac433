"""`RunContext` in tools (a first parameter the runtime fills in) and dynamic instructions
(`Agent(instructions=fn)`, evaluated by the CallModel performer for each model call)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fsm_agents import (
    Agent,
    Approved,
    FunctionModel,
    InvalidDefinition,
    ModelFailed,
    Phase,
    RunContext,
    ScriptedModel,
    ToolCall,
    ToolDefinitionError,
    resume,
    run,
    stream,
    tool,
)
from fsm_agents.models import ModelRequest, ModelResponse, call, reply
from fsm_agents.state import AssistantMessage, Usage
from fsm_agents.tools import ToolExecutor

pytestmark = pytest.mark.anyio


@dataclass
class Deps:
    user: str
    seen: list[tuple[str, str, str, int]] = field(default_factory=list)  # (tool, user, agent, requests so far)


def tool_texts(result: Any) -> list[str]:
    return [m.content for m in result.snapshot.conversation.messages if m.role == "tool"]


def _ctx_tools() -> list[Any]:
    def threaded(ctx: RunContext[Deps], n: int) -> str:
        """A sync tool run in a worker thread."""
        ctx.deps.seen.append(("threaded", ctx.deps.user, ctx.agent, ctx.usage.requests))
        return f"threaded {n} for {ctx.deps.user}"

    @tool(thread=False)
    def inline(ctx: RunContext[Deps], n: int) -> str:
        """A sync tool run inline on the event loop."""
        ctx.deps.seen.append(("inline", ctx.deps.user, ctx.agent, ctx.usage.requests))
        return f"inline {n} for {ctx.deps.user}"

    async def asynchronous(ctx: RunContext, n: int) -> str:  # bare RunContext
        """An async tool."""
        ctx.deps.seen.append(("async", ctx.deps.user, ctx.agent, ctx.usage.requests))
        return f"async {n} for {ctx.deps.user}"

    return [threaded, inline, asynchronous]


async def test_tools_taking_a_run_context_get_deps_run_id_agent_and_usage() -> None:
    """Sync (threaded and inline) and async tools whose first parameter is a `RunContext` get
    the run's: the caller's deps, the run id, the active agent, the usage before the call; the
    parameter is not in the schema the model sees."""
    threaded, inline, asynchronous = (t if hasattr(t, "spec") else tool(t) for t in _ctx_tools())
    for t in (threaded, inline, asynchronous):
        assert t.takes_ctx and t.ctx_param == "ctx"
        assert set(t.spec.parameters["properties"]) == {"n"} and t.spec.parameters["required"] == ["n"]
    run_ids: list[str] = []

    @tool
    def whoami(ctx: RunContext[Deps]) -> str:
        """The run id."""
        run_ids.append(ctx.run_id)
        return "ok"

    script = [
        reply(None, call("threaded", "a", n=1), call("inline", "b", n=2), call("asynchronous", "c", n=3)),
        reply(None, call("whoami")),
        "done",
    ]
    model = ScriptedModel(
        [ModelResponse(message=m if isinstance(m, AssistantMessage) else reply(m), usage=Usage(requests=1)) for m in script]
    )
    agent = Agent("helper", model=model, tools=[threaded, inline, asynchronous, whoami])
    deps = Deps("ada")
    result = await run(agent, "go", deps=deps, run_id="run-ctx")
    assert result.phase is Phase.DONE
    assert tool_texts(result) == ["threaded 1 for ada", "inline 2 for ada", "async 3 for ada", "ok"]
    assert sorted(deps.seen) == [
        ("async", "ada", "helper", 1),
        ("inline", "ada", "helper", 1),
        ("threaded", "ada", "helper", 1),
    ]
    assert run_ids == ["run-ctx"]


async def test_a_tool_with_a_run_context_is_retried_with_it() -> None:
    attempts: list[str] = []

    @tool(retries=2, retry_on=(ConnectionError,), retry_wait=0.001)
    def flaky(ctx: RunContext[Deps], n: int) -> str:
        """Fails twice, then works."""
        attempts.append(ctx.deps.user)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return f"{n} for {ctx.deps.user}"

    result = await run(
        Agent("a", model=ScriptedModel([reply(None, call("flaky", n=4)), "done"]), tools=[flaky]), "go", deps=Deps("bo")
    )
    assert tool_texts(result) == ["4 for bo"] and attempts == ["bo", "bo", "bo"]


async def test_an_approved_tool_gets_the_deps_passed_to_resume() -> None:
    """A `requires_approval` tool runs after the resume: it sees the deps given to `resume` (deps
    are never stored)."""

    @tool(requires_approval=True)
    def pay(ctx: RunContext[Deps], amount: int) -> str:
        """Pay."""
        return f"{ctx.deps.user} paid {amount}"

    agent = Agent("payer", model=ScriptedModel([reply(None, call("pay", "p", amount=5))]), tools=[pay])
    suspended = await run(agent, "pay 5", deps=Deps("first"))
    assert suspended.status == "suspended"
    done = await resume(
        suspended, agent, decisions={"p": Approved()}, models={"payer": ScriptedModel(["ok"])}, deps=Deps("second")
    )
    assert done.phase is Phase.DONE and tool_texts(done) == ["second paid 5"]


async def test_a_keyword_only_run_context_is_passed_by_name_and_the_executor_alone_gives_a_bare_one() -> None:
    @tool
    def kw(*, ctx: RunContext[None], x: int) -> str:
        """Keyword-only parameters."""
        return f"{x} deps={ctx.deps} agent={ctx.agent!r} requests={ctx.usage.requests}"

    assert kw.ctx_keyword and set(kw.spec.parameters["properties"]) == {"x"}
    r = await ToolExecutor([kw]).run_one(ToolCall(id="1", name="kw", arguments='{"x": 1}'))
    assert r.ok and r.content == "1 deps=None agent='' requests=0"


def test_a_run_context_anywhere_but_first_is_a_definition_error_naming_it() -> None:
    def late(n: int, ctx: RunContext[Deps]) -> str:
        return ""

    with pytest.raises(
        ToolDefinitionError, match=r"tool 'late': parameter 'ctx' is a RunContext; a RunContext must be the first"
    ):
        tool(late)

    class Api:
        def method(self, n: int, context: RunContext) -> str:
            return ""

        def first(self, context: RunContext[Deps], n: int) -> str:
            """Self is not a parameter the model sees, and the context is first after it."""
            return context.deps.user * n

    with pytest.raises(ToolDefinitionError, match="parameter 'context' is a RunContext"):
        tool(Api().method)
    assert tool(Api().first).takes_ctx and set(tool(Api().first).spec.parameters["properties"]) == {"n"}


# -- dynamic instructions ----------------------------------------------------------------------


def _echo_instructions(seen: list[str]) -> FunctionModel:
    def fn(request: ModelRequest) -> Any:
        seen.append(request.instructions)
        if len(seen) == 1:
            return reply(None, call("noop"))
        return "done"

    return FunctionModel(fn)


@tool
def noop() -> str:
    """Does nothing."""
    return "nothing"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_dynamic_instructions_are_computed_for_each_model_call(kind: str) -> None:
    """The function sees the run context as of each call (the usage grows), and the pure core's
    effect carries only the static text."""

    def sync_fn(ctx: RunContext[Deps]) -> str:
        return f"Help {ctx.deps.user} (call {ctx.usage.requests + 1}, agent {ctx.agent})."

    async def async_fn(ctx: RunContext[Deps]) -> str:
        return sync_fn(ctx)

    model = _CountingModel()
    agent = Agent("a", sync_fn if kind == "sync" else async_fn, model, tools=[noop])
    result = await run(agent, "hi", deps=Deps("cy"))
    assert result.phase is Phase.DONE
    assert model.instructions == ["Help cy (call 1, agent a).", "Help cy (call 2, agent a)."]
    assert agent.machine.start("hi").effects[0].request.instructions == ""  # type: ignore[attr-defined]


class _CountingModel:
    """Counts model calls, records their instructions, reports one request of usage each; calls
    `noop` first, then answers."""

    def __init__(self) -> None:
        self.calls = 0
        self.instructions: list[str] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        self.instructions.append(request.instructions)
        message = (
            AssistantMessage(content=None, tool_calls=(call("noop"),)) if self.calls == 1 else AssistantMessage(content="ok")
        )
        return ModelResponse(message=message, usage=Usage(requests=1))


async def test_dynamic_instructions_also_work_when_the_run_is_streamed() -> None:
    """With a watcher the driver takes the performer path; the instructions are filled in there
    too."""
    seen: list[str] = []
    agent = Agent("a", lambda ctx: f"for {ctx.deps.user}", _echo_instructions(seen), tools=[noop])
    async with stream(agent, "hi", deps=Deps("di")) as events:
        async for _ in events:
            pass
    assert seen == ["for di", "for di"]


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda ctx: 1 / 0, "raised ZeroDivisionError: division by zero"),
        (lambda ctx: 42, "raised TypeError: it returned int, not str"),
    ],
)
async def test_an_instructions_function_that_fails_fails_the_run_without_calling_the_model(fn: Any, message: str) -> None:
    model = _CountingModel()
    result = await run(Agent("a", fn, model), "hi")
    assert result.phase is Phase.FAILED and model.calls == 0
    assert result.failure is not None and result.failure.kind == "model_error" and result.failure.detail == "instructions"
    assert f"the instructions function of agent 'a' {message}" in result.failure.message
    assert isinstance(result.events[-1], ModelFailed)


@pytest.mark.parametrize(
    ("instructions", "message"),
    [
        (5, "instructions must be a str or a function .*got int"),
        (str, "instructions must be a str or a function .*got type"),
        (lambda: "no ctx", "the instructions function must take exactly one argument"),
        (lambda a, b: "two", "the instructions function must take exactly one argument"),
    ],
)
def test_instructions_that_are_neither_text_nor_a_function_of_the_context_are_refused(
    instructions: Any, message: str
) -> None:
    with pytest.raises(InvalidDefinition, match=message):
        Agent("a", instructions)


async def test_a_routers_dynamic_classifier_instructions_come_before_its_hint() -> None:
    from fsm_agents.patterns import Router

    seen: list[str] = []

    def classify(request: ModelRequest) -> str:
        seen.append(request.instructions)
        return "billing"

    classifier = Agent("classifier", lambda ctx: f"Route for {ctx.deps.user}.", FunctionModel(classify))
    billing = Agent("billing", "Bill.", ScriptedModel(["billed"]))
    result = await run(Router("r", classifier, {"billing": billing}), "invoice?", deps=Deps("ed"))
    assert result.phase is Phase.DONE
    assert seen[0].startswith("Route for ed.\n\n") and "billing" in seen[0]


# -- the type of ctx.deps, checked by mypy ------------------------------------------------------


def test_run_context_is_generic_in_its_deps_for_mypy() -> None:
    """mypy (strict) accepts `ctx.deps.attr` on a `RunContext[MyDeps]` and reports a wrong
    attribute (tests/typing_run_context.py marks the one line it must report)."""
    from mypy import api

    module = Path(__file__).with_name("typing_run_context.py")
    stdout, stderr, _ = api.run([str(module), "--strict", "--show-error-codes", "--no-error-summary"])
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    expected = [n for n, line in enumerate(module.read_text().splitlines(), 1) if "# mypy: error" in line]
    assert len(expected) == 1, "the module marks exactly one line mypy must reject"
    assert len(errors) == 1, stdout + stderr
    assert f"typing_run_context.py:{expected[0]}:" in errors[0]
    assert '"MyDeps" has no attribute "no_such_attr"' in errors[0]
