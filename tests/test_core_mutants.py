"""Behaviour that mutation testing (`make mutation`, docs/mutation.md) found untested in the core:
the tool executor's concurrency limit and tool mapping, the handoff tool's spec, the reasons a
fan-out and a rejected event carry, and the charts built at import time.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import anyio
import pytest

from fsm_agents import Agent, AgentsFinished, GuardrailResult, Phase, ToolCall, ToolDefinitionError, tool
from fsm_agents.agent import agent_chart
from fsm_agents.errors import InvalidTransition
from fsm_agents.events import AgentOutcome, ModelReplied, ToolsFinished
from fsm_agents.machine import Machine, Table, compile_chart
from fsm_agents.models.scripted import reply
from fsm_agents.patterns import (
    Competitive,
    EventDriven,
    Handoffs,
    ManagerWorker,
    Parallel,
    Recursive,
    Router,
    Sequential,
    event_driven,
    manager,
    parallel,
    recursive,
    router,
    sequential,
)
from fsm_agents.state import Failure, ToolSpec
from fsm_agents.tools import ToolExecutor


# -- ToolExecutor ------------------------------------------------------------------------------
class Gauge:
    """Counts the calls running at once (entered and not yet left) and the most seen."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    def make_tool(self) -> Any:
        gauge = self

        @tool
        async def work(n: int) -> int:
            """Yield to the event loop a few times while counted as running."""
            gauge.running += 1
            gauge.peak = max(gauge.peak, gauge.running)
            for _ in range(5):
                await anyio.sleep(0)  # every other ready call gets to start meanwhile (if allowed)
            gauge.running -= 1
            return n * 10

        return work


@pytest.mark.anyio
@pytest.mark.parametrize(("limit", "expected_peak"), [(None, 6), (1, 1), (2, 2), (4, 4), (10, 6)])
async def test_max_concurrency_caps_the_calls_running_at_once(limit: int | None, expected_peak: int) -> None:
    """Observed, not timed: six async calls that each yield to the loop while running are all in
    flight together without a limit, and never more than `max_concurrency` with one; results
    stay in call order."""
    gauge = Gauge()
    executor = ToolExecutor([gauge.make_tool()], max_concurrency=limit)
    calls = [ToolCall(id=f"c{i}", name="work", arguments=f'{{"n": {i}}}') for i in range(6)]
    results = await executor.run(calls)
    assert gauge.peak == expected_peak and gauge.running == 0
    assert [(r.call_id, r.ok, r.content) for r in results] == [(f"c{i}", True, str(i * 10)) for i in range(6)]


@pytest.mark.anyio
@pytest.mark.parametrize("wrap", [dict, MappingProxyType])
async def test_an_executor_built_from_a_mapping_runs_tools_by_its_keys(wrap: Callable[[Any], Any]) -> None:
    """A mapping (what `Machine.tools_for` returns) is taken as is: calls are looked up by its keys."""

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    executor = ToolExecutor(wrap({"add": add, "plus": add}))
    assert set(executor.tools) == {"add", "plus"}
    one, two, missing = await executor.run(
        [
            ToolCall(id="1", name="add", arguments='{"a": 1, "b": 2}'),
            ToolCall(id="2", name="plus", arguments='{"a": 3, "b": 4}'),
            ToolCall(id="3", name="mul", arguments="{}"),
        ]
    )
    assert (one.ok, one.content, two.ok, two.content) == (True, "3", True, "7")
    assert not missing.ok and missing.error is not None and "available tools: add, plus" in missing.error


# -- the handoff tool --------------------------------------------------------------------------
def test_handoff_tools_describe_their_target_to_the_model() -> None:
    """The model chooses a handoff from its tool spec: the name says where to, the description
    who the target is (its description, else the start of its instructions)."""
    billing = Agent("billing", "You settle invoices. " + "x" * 300, description="Invoices, refunds and payments.")
    sales = Agent("sales", "You sell upgrades.")
    quiet = Agent("quiet")
    triage = Agent("triage", tools=[], handoffs=[billing, sales, quiet])
    specs = {s.name: s for s in triage.machine.tool_specs("triage")}
    assert specs["transfer_to_billing"] == ToolSpec(
        name="transfer_to_billing", description="Hand the conversation over to billing. Invoices, refunds and payments."
    )
    assert specs["transfer_to_sales"].description == "Hand the conversation over to sales. You sell upgrades."
    assert specs["transfer_to_quiet"].description == "Hand the conversation over to quiet."
    long = Agent("t", handoffs=[Agent("wordy", "w" * 500)]).machine.tool_specs("t")[0]
    assert long.description == "Hand the conversation over to wordy. " + "w" * 200  # instructions are cut to 200
    assert billing.machine.tool_specs("billing") == ()


# -- failures keep their reason ----------------------------------------------------------------
def outcome(i: int, machine: str, failure: Failure | None = None, output: Any = None) -> AgentOutcome:
    phase = Phase.FAILED if failure else Phase.DONE
    return AgentOutcome(task_id=f"0.{i}.{machine}", machine=machine, phase=phase, failure=failure, output=output)


def test_a_failed_fan_out_says_which_branch_failed_and_why() -> None:
    p = Parallel("team", [Agent("good"), Agent("bad"), Agent("worse")])
    s = p.start("q").snapshot
    event = AgentsFinished(
        outcomes=(
            outcome(0, "good", output="G"),
            outcome(1, "bad", Failure(kind="model_error", message="bad: HTTP 500")),
            outcome(2, "worse", Failure(kind="budget_exhausted", message="worse: out of steps")),
        )
    )
    failed = p.step(s, event).snapshot
    assert failed.phase is Phase.FAILED and failed.failure is not None
    assert failed.failure.kind == "child_failed" and failed.failure.detail == "bad,worse"
    assert failed.failure.message == (
        "parallel:team: 2 of 3 branch(es) failed: "
        "bad (model_error: bad: HTTP 500); worse (budget_exhausted: worse: out of steps)"
    )
    # the branches' results are folded into the conversation, failures included
    assert [m.content for m in failed.conversation.messages] == [
        "q",
        "[good] G",
        "[bad] (failed: model_error: bad: HTTP 500)",
        "[worse] (failed: budget_exhausted: worse: out of steps)",
    ]


def test_a_failed_synthesizer_is_named_with_its_reason() -> None:
    p = Parallel("team", [Agent("a"), Agent("b")], synthesizer=Agent("synth"))
    s = p.start("q").snapshot
    synthesizing = p.step(s, AgentsFinished(outcomes=(outcome(0, "a", output="A"), outcome(1, "b", output="B")))).snapshot
    assert synthesizing.phase is Phase.EXECUTING and len(synthesizing.conversation) == 3
    down = Failure(kind="model_error", message="down")
    failed = p.step(synthesizing, AgentsFinished(outcomes=(outcome(0, "synth", down),)))
    assert failed.snapshot.failure == Failure(
        kind="child_failed", message="parallel:team: the synthesizer failed: model_error: down", detail="synthesizer"
    )
    lost = p.step(synthesizing, AgentsFinished(outcomes=())).snapshot.failure
    assert lost is not None and lost.message == "parallel:team: the synthesizer failed: no outcome was reported"


def test_report_policy_fails_only_when_every_branch_failed_naming_them() -> None:
    p = Parallel("team", [Agent("a"), Agent("b")], on_failure="report")
    s = p.start("q").snapshot
    x, y = Failure(kind="model_error", message="x"), Failure(kind="tool_error", message="y")
    one_failed = p.step(s, AgentsFinished(outcomes=(outcome(0, "a", x), outcome(1, "b", output="B"))))
    assert one_failed.snapshot.phase is Phase.DONE and one_failed.snapshot.output == (None, "B")
    both = (outcome(0, "a", x), outcome(1, "b", y))
    failed = p.step(s, AgentsFinished(outcomes=both)).snapshot.failure
    assert failed is not None and failed.detail == "a,b"
    assert failed.message == "parallel:team: every branch(es) failed: a (model_error: x); b (tool_error: y)"


def test_invalid_transition_names_the_machine_that_rejected_the_event() -> None:
    m = Agent("clerk").machine
    done = m.step(m.start("hi").snapshot, ModelReplied(message=reply("bye"))).snapshot
    with pytest.raises(InvalidTransition) as info:
        m.step(done, ModelReplied(message=reply("again")))
    err = info.value
    assert (err.machine, err.phase, err.event, err.accepted) == ("agent:clerk", "DONE", "model_replied", ())
    assert str(err) == "agent:clerk: event 'model_replied' is not accepted in phase DONE: it is final and accepts no event"
    with pytest.raises(InvalidTransition) as info:
        m.step(m.start("hi").snapshot, ToolsFinished(results=()))
    assert info.value.machine == "agent:clerk" and str(info.value).startswith("agent:clerk: event 'tools_finished'")
    p = Sequential("pipe", [Agent("a")])
    with pytest.raises(InvalidTransition) as info:
        p.step(p.start("x").snapshot, ModelReplied(message=reply("?")))
    assert info.value.machine == "sequential:pipe" and info.value.accepted == ("agents_finished", "limit_exceeded")
    assert str(info.value) == (
        "sequential:pipe: event 'model_replied' is not accepted in phase EXECUTING: "
        "it accepts only agents_finished, limit_exceeded"
    )


# -- charts built at import time ---------------------------------------------------------------
def _passes(ctx: Any, value: Any) -> GuardrailResult:
    return GuardrailResult(tripped=False)


def _answer(text: str) -> str:
    """An output function."""
    return text


def _agent_options(awaits: bool, output_function: bool, inputs: bool, outputs: bool) -> dict[str, Any]:
    """`Agent` options that make it run each variant of its chart."""
    options: dict[str, Any] = {}
    if awaits:
        options["approval"] = lambda c: True
    if output_function:
        options["output_type"] = _answer
    if inputs:
        options["input_guardrails"] = [_passes]
    if outputs:
        options["output_guardrails"] = [_passes]
    return options


CHARTS: dict[str, tuple[Callable[[], Any], Callable[[], Machine]]] = {
    "agent": (agent_chart, lambda: Agent("a").machine),
    "agent+awaiting": (
        lambda: agent_chart(awaits_input=True, name="AwaitingAgentChart"),
        lambda: Agent("a", approval=lambda c: True).machine,
    ),
    "parallel": (lambda: parallel.parallel_chart(synthesizer=False), lambda: Parallel("p", [Agent("a")])),
    "parallel+synthesis": (
        lambda: parallel.parallel_chart(synthesizer=True, name="ParallelSynthesisChart"),
        lambda: Parallel("p", [Agent("a")], synthesizer=Agent("s")),
    ),
    "competitive": (
        lambda: parallel.parallel_chart(synthesizer=True, name="CompetitiveChart"),
        lambda: Competitive("c", [Agent("a")], Agent("judge")),
    ),
    "sequential": (sequential._sequential_chart, lambda: Sequential("s", [Agent("a")])),
    "router": (lambda: router.router_chart(has_default=False), lambda: Router("r", lambda t: "a", {"a": Agent("a")})),
    "router+default": (
        lambda: router.router_chart(has_default=True),
        lambda: Router("r", lambda t: "a", {"a": Agent("a")}, default=Agent("d")),
    ),
    "event_driven": (event_driven._event_driven_chart, lambda: EventDriven("e", {"ping": Agent("a")}).machine),
    "handoffs": (
        lambda: agent_chart(handoff_limit=True, name="HandoffsChart"),
        lambda: Handoffs("h", Agent("a"), [Agent("b")], max_handoffs=1),
    ),
    "manager": (manager._manager_chart, lambda: ManagerWorker("m", Agent("boss"), [Agent("w")])),
    # every variant of the agent's chart, built on the first agent that needs it
    **{
        f"agent{'+awaiting' * a}{'+output_function' * o}{'+input_guarded' * i}{'+output_guarded' * g}": (
            lambda a=a, o=o, i=i, g=g: agent_chart(
                awaits_input=a,
                output_function=o,
                input_guardrails=i,
                output_guardrails=g,
                name=f"{'Awaiting' * a}{'OutputFunction' * o}{'InputGuarded' * i}{'OutputGuarded' * g}AgentChart",
            ),
            lambda a=a, o=o, i=i, g=g: Agent("a", **_agent_options(a, o, i, g)).machine,
        )
        for a in (False, True)
        for o in (False, True)
        for i in (False, True)
        for g in (False, True)
        if (o or i or g) and not (o and g)  # an output function refuses output guardrails
    },
    **{
        f"recursive:{policy}{'+synthesis' if synth else ''}": (
            lambda policy=policy, synth=synth: recursive.recursive_chart(on_depth_exhausted=policy, synthesizer=synth),
            lambda policy=policy, synth=synth: Recursive(
                "r", Agent("dec"), Agent("exe"), 1, on_depth_exhausted=policy, synthesizer=Agent("s") if synth else None
            ),
        )
        for policy in ("fail", "execute")
        for synth in (False, True)
    },
}


def _shape(t: Table) -> tuple[Any, ...]:
    names = (t.chart.__name__, t.chart.__module__)
    return (*names, t.initial, t.phases, t.finals, t.events, t.internal, t.transitions, dict(t.auto))


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_a_chart_built_now_compiles_to_the_table_its_pattern_runs(name: str) -> None:
    """Pattern charts are built once, when their module is imported; building the chart again in
    this process and compiling it with the pattern's own guards and actions gives the very table
    the pattern runs (same states, events, transitions in order, guards, actions)."""
    factory, make = CHARTS[name]
    machine = make()
    table = machine.table
    guards = {g.name: g.fn for t in table for g in t.guards}
    actions: dict[str, Any] = {t.action_name: t.action for t in table if t.action_name}
    fresh = compile_chart(factory(), guards=guards, actions=actions, internal=table.internal)
    assert _shape(fresh) == _shape(table)
    assert [(t.source, t.event, t.target, t.label, t.action_name) for t in fresh] == [
        (t.source, t.event, t.target, t.label, t.action_name) for t in table
    ]


# -- tools: definitions and results the model sees ---------------------------------------------
def test_a_tool_stays_callable_with_keywords() -> None:
    @tool
    def greet(name: str, punctuation: str = "!") -> str:
        """Greet."""
        return f"hi {name}{punctuation}"

    assert greet("ann", punctuation="?") == "hi ann?" and greet(name="bob") == "hi bob!"


def test_bad_tool_names_and_options_are_explained() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    nameless = functools.partial(add, 1)  # a callable without __name__
    with pytest.raises(
        ToolDefinitionError,
        match=r"^tool name '' must be 1-64 ASCII letters, digits, '_' or '-'; name it with @tool\(name=\.\.\.\)$",
    ):
        tool(nameless)
    with pytest.raises(ToolDefinitionError, match=r"^tool name 'no spaces' must be 1-64 ASCII letters, digits, '_' or '-'$"):
        tool(name="no spaces")(add)
    with pytest.raises(ToolDefinitionError, match=r"^tool 'add': retries must be >= 0$"):
        tool(retries=-1)(add)
    cap_message = r"^tool 'add': max_output_chars must be an int >= 1 \(or None: the agent's cap\)$"
    with pytest.raises(ToolDefinitionError, match=cap_message):
        tool(max_output_chars=0)(add)
    assert tool(max_output_chars=1)(add).max_output_chars == 1


class Opaque:
    """Not JSON-serializable: shown to the model as its str(), as a JSON string."""

    def __str__(self) -> str:
        return "opaque thing"


@pytest.mark.anyio
async def test_outputs_are_serialized_and_cut_at_the_limit() -> None:
    @tool(max_output_chars=5)
    def text(s: str) -> str:
        """Echo."""
        return s

    @tool
    def opaque() -> Opaque:
        """Opaque."""
        return Opaque()

    executor = ToolExecutor([text, opaque])
    exact = await executor.run_one(ToolCall(id="1", name="text", arguments='{"s": "abcde"}'))
    over = await executor.run_one(ToolCall(id="2", name="text", arguments='{"s": "abcdef"}'))
    assert exact.content == "abcde"
    assert over.content == "abcde\n…[truncated: 5 of 6 characters shown]"
    assert (await executor.run_one(ToolCall(id="3", name="opaque"))).content == '"opaque thing"'


@pytest.mark.anyio
async def test_validation_errors_list_each_problem_with_its_location() -> None:
    @tool
    def plan(title: str, steps: list[int]) -> str:
        """Plan."""
        return title

    executor = ToolExecutor([plan])
    r = await executor.run_one(ToolCall(id="1", name="plan", arguments='{"title": 3, "steps": [1, "x"]}'))
    assert r.error == (
        "invalid arguments: title: Input should be a valid string; steps.1: Input should be a valid integer, "
        'unable to parse string as an integer; received: {"title": 3, "steps": [1, "x"]}'
    )
    r = await executor.run_one(ToolCall(id="2", name="plan", arguments="[1]"))
    assert r.error == "invalid arguments: (arguments): Input should be an object; received: [1]"


@pytest.mark.anyio
async def test_one_call_gets_its_own_result_and_error_results_are_complete() -> None:
    @tool(timeout=0.05)
    async def slow() -> str:
        """Slow."""
        await anyio.sleep(30)
        return "never"

    executor = ToolExecutor([slow])
    (one,) = await executor.run([ToolCall(id="only", name="missing")])
    assert (one.call_id, one.name, one.ok, one.content, one.attempts) == ("only", "missing", False, "", 0)
    assert one.error == "unknown tool 'missing'; available tools: slow"
    started = time.perf_counter()
    (timed_out,) = await executor.run([ToolCall(id="t", name="slow")])
    window_ms = (time.perf_counter() - started) * 1000.0
    assert (timed_out.call_id, timed_out.name, timed_out.ok, timed_out.attempts) == ("t", "slow", False, 1)
    # the recorded duration lies within the time the test saw pass, and covers the timeout
    assert 50.0 <= timed_out.duration_ms <= window_ms


@pytest.mark.anyio
async def test_inline_sync_tools_with_a_timeout_return_their_value_awaited_if_needed() -> None:
    async def later(x: int) -> int:
        return x + 1

    @tool(thread=False, timeout=5)
    def direct(x: int) -> int:
        """Direct."""
        return x * 2

    @tool(thread=False, timeout=5)
    def deferred(x: int) -> Any:
        """Returns an awaitable."""
        return later(x)

    executor = ToolExecutor([direct, deferred])
    calls = [ToolCall(id="a", name="direct", arguments='{"x": 4}'), ToolCall(id="b", name="deferred", arguments='{"x": 4}')]
    a, b = await executor.run(calls)
    assert (a.ok, a.content, b.ok, b.content) == (True, "8", True, "5")


def test_a_tool_defined_at_run_time_gets_its_spec_from_signature_and_docstring() -> None:
    """Tools built inside the test (module-level `@tool`s are built at import, before a mutant is
    switched on): description, parameter descriptions and defaults, the argument model."""

    def fetch_page(url: str, retries: int = 2, *, lang: str = "en") -> str:
        """Fetch a page.

        Follows redirects.

        Args:
            url: The address.
            retries: Attempts.
        """
        return url

    t = tool(name="fetch-page")(fetch_page)
    assert t.description == "Fetch a page.\n\nFollows redirects."
    assert tool(description="Custom.")(fetch_page).description == "Custom."
    assert tool(description="")(fetch_page).description == ""
    assert t.input_model.__name__ == "FetchPageArgs"
    params = t.spec.parameters
    assert params["required"] == ["url"] and params["additionalProperties"] is False
    assert params["properties"]["url"]["description"] == "The address."
    retries = {"default": 2, "description": "Attempts.", "title": "Retries", "type": "integer"}
    assert params["properties"]["retries"] == retries
    assert "description" not in params["properties"]["lang"]
    assert t.input_model.model_validate_json('{"url": "u"}').model_dump() == {"url": "u", "retries": 2, "lang": "en"}

    def bare() -> str:
        return "x"

    assert tool(bare).description == "" and tool(bare).input_model.__name__ == "BareArgs"


@pytest.mark.anyio
async def test_a_run_time_tool_rejects_extra_arguments_and_uses_defaults() -> None:
    def scale(x: int, factor: int = 3) -> int:
        """Scale."""
        return x * factor

    executor = ToolExecutor([tool(scale)])
    ok = await executor.run_one(ToolCall(id="1", name="scale", arguments='{"x": 2}'))
    extra = await executor.run_one(ToolCall(id="2", name="scale", arguments='{"x": 2, "y": 1}'))
    assert ok.content == "6"
    assert not extra.ok and "y: Extra inputs are not permitted" in (extra.error or "")


def test_a_parameter_type_without_json_schema_is_a_definition_error() -> None:
    def takes(handler: Callable[[int], int]) -> int:
        return 0

    lazy = tool(takes)  # the schema is built on first use (an Agent forces it)
    with pytest.raises(ToolDefinitionError, match=r"^tool 'takes': its parameters have no JSON schema: "):
        _ = lazy.spec
    with pytest.raises(ToolDefinitionError, match=r"^tool 'takes': its parameters have no JSON schema: "):
        Agent("a", tools=[lazy])


@pytest.mark.anyio
async def test_inline_sync_tools_without_a_timeout_run_once_on_the_loop() -> None:
    async def later(x: int) -> int:
        return x + 1

    @tool(thread=False)
    def direct(x: int) -> int:
        """Direct."""
        return x * 2

    @tool(thread=False)
    def deferred(x: int) -> Any:
        """Returns an awaitable."""
        return later(x)

    executor = ToolExecutor([direct, deferred])
    a = await executor.run_one(ToolCall(id="a", name="direct", arguments='{"x": 4}'))
    b = await executor.run_one(ToolCall(id="b", name="deferred", arguments='{"x": 4}'))
    assert (a.ok, a.content, a.attempts, b.ok, b.content, b.attempts) == (True, "8", 1, True, "5", 1)


@pytest.mark.anyio
async def test_the_executor_default_timeout_applies_to_tools_without_their_own() -> None:
    @tool
    async def slow() -> str:
        """Slow."""
        await anyio.sleep(30)
        return "never"

    r = await ToolExecutor([slow], default_timeout=0.05).run_one(ToolCall(id="1", name="slow"))
    assert not r.ok and r.error == "tool 'slow' timed out after 0.05 s"
    none = await ToolExecutor([]).run_one(ToolCall(id="2", name="slow"))
    assert none.error == "unknown tool 'slow'; available tools: (none)"


@pytest.mark.anyio
async def test_sync_tools_run_in_a_worker_thread_unless_told_otherwise() -> None:
    loop_thread = threading.get_ident()

    @tool
    def where() -> bool:
        """Whether it ran on the event loop's thread."""
        return threading.get_ident() == loop_thread

    @tool(thread=False)
    def inline() -> bool:
        """Same, inline."""
        return threading.get_ident() == loop_thread

    executor = ToolExecutor([where, inline])
    threaded, on_loop = await executor.run([ToolCall(id="1", name="where"), ToolCall(id="2", name="inline")])
    assert (threaded.content, on_loop.content) == ("false", "true")


@pytest.mark.anyio
async def test_an_async_tool_marked_thread_false_still_times_out() -> None:
    @tool(thread=False, timeout=0.05)
    async def hang() -> str:
        """Hang."""
        await anyio.sleep(30)
        return "never"

    r = await ToolExecutor([hang]).run_one(ToolCall(id="1", name="hang"))
    assert not r.ok and r.error == "tool 'hang' timed out after 0.05 s"
