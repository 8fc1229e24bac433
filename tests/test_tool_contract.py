"""The tool-call contract: ordered tools (`@tool(sequential=True)`, `Agent(parallel_tool_calls=
False)` and what the providers are sent), one output cap cut once, JSON output with a per-value
fallback, and tool definitions built lazily and shared per function."""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import anyio
import pytest
from pydantic import Field

from fsm_agents import Agent, Phase, ScriptedModel, ToolCall, ToolDefinitionError, run, tool
from fsm_agents.models import AnthropicMessages, ModelRequest, OpenAIChat, call, reply
from fsm_agents.tools import DEFAULT_MAX_OUTPUT_CHARS, ToolExecutor

pytestmark = pytest.mark.anyio


def tool_texts(result: Any) -> list[str]:
    return [m.content for m in result.snapshot.conversation.messages if m.role == "tool"]


# -- ordered tools --------------------------------------------------------------------------------


def _logging_tools(log: list[str], sequential: set[str] = frozenset()) -> list[Any]:  # type: ignore[assignment]
    """Async tools that log their start and end around a few checkpoints: calls that may overlap
    do interleave on the event loop."""

    def make(name: str) -> Any:
        async def fn(n: int) -> str:
            log.append(f"start {name}{n}")
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            log.append(f"end {name}{n}")
            return f"{name}{n}"

        fn.__name__ = name
        fn.__doc__ = f"Tool {name}."
        return tool(sequential=name in sequential)(fn)

    return [make("a"), make("s")]


def _reply_of_five() -> Any:
    return reply(
        None,
        call("a", "1", n=1),
        call("a", "2", n=2),
        call("s", "3", n=3),
        call("a", "4", n=4),
        call("a", "5", n=5),
    )


async def test_a_sequential_tools_calls_never_overlap_the_other_calls_of_the_reply() -> None:
    """Invariant: the calls before a sequential call end before it starts; the calls after it
    start after it ended; the others still overlap one another."""
    log: list[str] = []
    agent = Agent("a", model=ScriptedModel([_reply_of_five(), "done"]), tools=_logging_tools(log, {"s"}))
    result = await run(agent, "go")
    assert result.phase is Phase.DONE and tool_texts(result) == ["a1", "a2", "s3", "a4", "a5"]
    at = {entry: i for i, entry in enumerate(log)}
    assert max(at["end a1"], at["end a2"]) < at["start s3"] < at["end s3"] < min(at["start a4"], at["start a5"])
    assert at["start a2"] < at["end a1"] and at["start a5"] < at["end a4"]  # the others overlap


async def test_without_a_sequential_tool_the_calls_of_a_reply_overlap() -> None:
    """The same reply with no sequential tool: `s3` overlaps its neighbours (what the test above
    rules out)."""
    log: list[str] = []
    result = await run(Agent("a", model=ScriptedModel([_reply_of_five(), "done"]), tools=_logging_tools(log)), "go")
    assert result.phase is Phase.DONE
    assert log.index("start s3") < log.index("end a1")


async def test_parallel_tool_calls_false_runs_every_call_after_the_previous_in_call_order() -> None:
    log: list[str] = []
    agent = Agent("a", model=ScriptedModel([_reply_of_five(), "done"]), tools=_logging_tools(log), parallel_tool_calls=False)
    result = await run(agent, "go")
    assert result.phase is Phase.DONE and tool_texts(result) == ["a1", "a2", "s3", "a4", "a5"]
    assert log == [f"{edge} {name}" for name in ("a1", "a2", "s3", "a4", "a5") for edge in ("start", "end")]


class FileSystem:
    """A BFCL-style stateful API: the methods read and write one state, and a thread switch in
    the middle of one (here forced by a tiny sleep) lets another call of the reply see a half-done
    change."""

    def __init__(self) -> None:
        self.cwd = "/"
        self.files: dict[str, list[str]] = {"/": []}

    def mkdir(self, name: str) -> str:
        """Make a directory in the current one.

        Args:
            name: the new directory's name.
        """
        entries = list(self.files[self.cwd])
        time.sleep(0.001)  # (a real API does I/O here)
        self.files[self.cwd] = [*entries, name + "/"]
        self.files[self.cwd.rstrip("/") + "/" + name] = []
        return f"made {name}"

    def cd(self, name: str) -> str:
        """Change the current directory (`..` goes up)."""
        self.cwd = self.cwd.rsplit("/", 1)[0] or "/" if name == ".." else self.cwd.rstrip("/") + "/" + name
        return self.cwd

    def touch(self, name: str) -> str:
        """Create an empty file in the current directory."""
        entries = list(self.files[self.cwd])
        time.sleep(0.001)
        self.files[self.cwd] = [*entries, name]
        return f"touched {name} in {self.cwd}"

    def ls(self) -> list[str]:
        """The current directory's entries."""
        return sorted(self.files[self.cwd])


async def _bfcl_run() -> tuple[list[str], dict[str, list[str]]]:
    api = FileSystem()
    tools = [tool(getattr(api, name)) for name in ("mkdir", "cd", "touch", "ls")]
    calls = [
        call("mkdir", "1", name="docs"),
        call("mkdir", "2", name="src"),
        call("cd", "3", name="docs"),
        call("touch", "4", name="a.txt"),
        call("touch", "5", name="b.txt"),
        call("ls", "6"),
        call("cd", "7", name=".."),
        call("ls", "8"),
    ]
    agent = Agent("bfcl", model=ScriptedModel([reply(None, *calls), "done"]), tools=tools, parallel_tool_calls=False)
    result = await run(agent, "organize")
    return tool_texts(result), api.files


async def test_stateful_tools_run_in_order_give_the_same_results_twice() -> None:
    """BFCL's stateful classes: with `parallel_tool_calls=False` two identical runs agree, and
    agree with running the calls one by one (before: the reply's calls ran concurrently in
    threads and two identical runs of 100 tasks disagreed on 9)."""
    first, second = await _bfcl_run(), await _bfcl_run()
    assert first == second
    texts, files = first
    assert texts == [
        "made docs",
        "made src",
        "/docs",
        "touched a.txt in /docs",
        "touched b.txt in /docs",
        '["a.txt","b.txt"]',
        "/",
        '["docs/","src/"]',
    ]
    assert files == {"/": ["docs/", "src/"], "/docs": ["a.txt", "b.txt"], "/src": []}


def test_parallel_tool_calls_is_validated_and_reaches_the_request_only_with_tools() -> None:
    @tool
    def noop() -> str:
        """Nothing."""
        return ""

    with pytest.raises(Exception, match="parallel_tool_calls must be True, False or None, got str"):
        Agent("a", parallel_tool_calls="no")  # type: ignore[arg-type]

    def request(agent: Agent) -> ModelRequest:
        return agent.machine.start("q").effects[0].request  # type: ignore[attr-defined,no-any-return]

    assert request(Agent("a", tools=[noop], parallel_tool_calls=False)).parallel_tool_calls is False
    assert request(Agent("a", tools=[noop], parallel_tool_calls=True)).parallel_tool_calls is True
    assert request(Agent("a", tools=[noop])).parallel_tool_calls is None
    assert request(Agent("a", parallel_tool_calls=False)).parallel_tool_calls is None  # no tools offered


def test_providers_are_sent_parallel_tool_calls_where_they_accept_it() -> None:
    """OpenAI-compatible `parallel_tool_calls` (only with tools, not to servers that do not
    document it); Anthropic `tool_choice.disable_parallel_tool_use` (not with `none`)."""

    @tool
    def noop() -> str:
        """Nothing."""
        return ""

    def req(parallel: bool | None, *, tools: bool = True, choice: str = "auto") -> ModelRequest:
        return ModelRequest(agent="a", tools=(noop.spec,) if tools else (), tool_choice=choice, parallel_tool_calls=parallel)

    openai = OpenAIChat("gpt-4o", api_key="k")
    assert openai.payload(req(False))["parallel_tool_calls"] is False
    assert openai.payload(req(True))["parallel_tool_calls"] is True
    assert "parallel_tool_calls" not in openai.payload(req(None))
    assert "parallel_tool_calls" not in openai.payload(req(False, tools=False))
    assert OpenAIChat("m", "https://api.mistral.ai/v1", api_key="k").payload(req(False))["parallel_tool_calls"] is False
    assert "parallel_tool_calls" not in OpenAIChat("m", "http://127.0.0.1:8080/v1", provider="llamacpp").payload(req(False))

    anthropic = AnthropicMessages("claude", api_key="k")
    assert anthropic.payload(req(False))["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert anthropic.payload(req(True, choice="required"))["tool_choice"] == {
        "type": "any",
        "disable_parallel_tool_use": False,
    }
    assert anthropic.payload(req(False, choice="noop"))["tool_choice"] == {
        "type": "tool",
        "name": "noop",
        "disable_parallel_tool_use": True,
    }
    assert anthropic.payload(req(False, choice="none"))["tool_choice"] == {"type": "none"}
    assert anthropic.payload(req(None))["tool_choice"] == {"type": "auto"}


# -- one output cap --------------------------------------------------------------------------------


def _long(n: int, **options: Any) -> Any:
    @tool(**options)
    def long() -> str:
        """A long output."""
        return "x" * n

    return long


async def _shown(agent: Agent) -> str:
    agent.model = ScriptedModel([reply(None, call("long")), "done"])
    result = await run(agent, "go")
    return tool_texts(result)[0]


async def test_raising_the_tools_cap_alone_lets_a_long_output_through() -> None:
    """(Before: the agent's default 20,000 cut it again.)"""
    assert await _shown(Agent("a", tools=[_long(30_000, max_output_chars=50_000)])) == "x" * 30_000


async def test_raising_the_agents_cap_alone_lets_a_long_output_through() -> None:
    """(Before: the tool's default 20,000 cut it first.)"""
    assert await _shown(Agent("a", tools=[_long(30_000)], max_tool_output_chars=50_000)) == "x" * 30_000


async def test_the_tools_own_cap_wins_over_the_agents_and_the_cut_says_so() -> None:
    assert await _shown(Agent("a", tools=[_long(54_321, max_output_chars=10)], max_tool_output_chars=50_000)) == (
        "x" * 10 + "\n…[truncated: 10 of 54,321 characters shown]"
    )
    assert await _shown(Agent("a", tools=[_long(54_321)])) == (
        "x" * DEFAULT_MAX_OUTPUT_CHARS + "\n…[truncated: 20,000 of 54,321 characters shown]"
    )


async def test_a_long_error_message_is_cut_to_the_cap_too() -> None:
    @tool
    def boom() -> str:
        """Raises a long message."""
        raise ValueError("y" * 500)

    r = await ToolExecutor([boom], max_output_chars=100).run_one(ToolCall(id="1", name="boom"))
    assert not r.ok and r.error is not None and r.error.endswith("characters shown]") and len(r.error) < 160


# -- JSON output -----------------------------------------------------------------------------------


class MpfLike:
    """Like mpmath's `mpf`: a number pydantic does not know, with a `str()`."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"mpf('{self.text}')"


class Custom:
    def __str__(self) -> str:
        return "a custom thing"


async def test_output_is_json_with_a_per_value_fallback_and_strings_stay_plain() -> None:
    """One value pydantic cannot encode becomes its `str()` (a JSON string) and the rest stays
    JSON (before the fix BFCL saw `str()` of the whole value: Python repr text with `mpf(...)`)."""

    @tool
    def stats() -> dict[str, Any]:
        """Mixed values."""
        return {
            "price": Decimal("1.50"),
            "pi": MpfLike("3.14159"),
            "obj": Custom(),
            "day": date(2024, 5, 1),
            "n": [1, 2.5, None],
        }

    @tool
    def text() -> str:
        """A string."""
        return 'he said "hi"'

    ex = ToolExecutor([stats, text])
    r = await ex.run_one(ToolCall(id="1", name="stats"))
    assert json.loads(r.content) == {
        "price": "1.50",
        "pi": "3.14159",
        "obj": "a custom thing",
        "day": "2024-05-01",
        "n": [1, 2.5, None],
    }
    assert "mpf(" not in r.content
    assert (await ex.run_one(ToolCall(id="2", name="text"))).content == 'he said "hi"'


# -- lazy definitions ------------------------------------------------------------------------------


class Api:
    def move(self, source: str, destination: str, overwrite: bool = False) -> str:
        """Move a file.

        Args:
            source: the file to move.
            destination: where to.
            overwrite: replace an existing file.
        """
        return f"{source}->{destination}"


def test_bound_methods_of_many_instances_share_one_input_model_and_schema() -> None:
    first, second = tool(Api().move), tool(Api().move)
    assert first.input_model is second.input_model
    assert first.spec.parameters == second.spec.parameters
    assert list(first.spec.parameters["properties"]) == ["source", "destination", "overwrite"]  # no self
    assert first.spec.parameters["properties"]["source"]["description"] == "the file to move."
    assert first.description == "Move a file."
    renamed = tool(name="relocate")(Api().move)
    assert renamed.input_model.__name__ == "RelocateArgs" and first.input_model.__name__ == "MoveArgs"
    assert first("a", "b") == "a->b"  # still callable as the method


def test_a_tools_schema_is_built_on_first_use_and_an_agent_forces_it() -> None:
    """An annotation pydantic cannot turn into a schema: `tool()` stays lazy, `spec` and
    `Agent(...)` raise `ToolDefinitionError` naming the tool."""

    class NoSchema:
        pass

    def takes(thing: NoSchema) -> str:
        return ""

    takes.__annotations__["thing"] = NoSchema  # (resolved: the class is local)
    lazy = tool(takes)
    with pytest.raises(ToolDefinitionError, match="tool 'takes': its parameters have no JSON schema"):
        _ = lazy.spec
    with pytest.raises(ToolDefinitionError, match="tool 'takes': its parameters have no JSON schema"):
        Agent("a", tools=[takes])


def test_tools_are_immutable_and_copies_are_the_tool_itself() -> None:
    import copy

    t = tool(Api().move)
    with pytest.raises(AttributeError, match="Tool is immutable"):
        t.timeout = 5  # type: ignore[misc]
    with pytest.raises(AttributeError, match="Tool is immutable"):
        del t.name
    assert copy.copy(t) is t and copy.deepcopy({"t": t})["t"] is t


def test_a_threaded_tool_definition_is_safe_to_share_across_threads() -> None:
    """Many threads make tools of one class's methods and build their schemas at once: every
    one gets the same schema."""

    class Shared:
        def op(self, a: int, b: str = "x") -> str:
            """Op."""
            return b * a

    specs: list[str] = []

    def work() -> None:
        specs.append(tool(Shared().op).spec.parameters_json)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(specs) == 8 and len(set(specs)) == 1


def test_an_unset_parallel_tool_calls_is_left_out_of_dumps_so_older_recordings_still_match() -> None:
    """Cassettes and logs recorded before the field existed dump requests without it."""
    from fsm_agents.codec import dump
    from fsm_agents.events import CallModel

    unset = CallModel(key="k", agent="a", request=ModelRequest(agent="a"))
    assert "parallel_tool_calls" not in dump(unset)["request"]
    off = CallModel(key="k", agent="a", request=ModelRequest(agent="a", parallel_tool_calls=False))
    assert dump(off)["request"]["parallel_tool_calls"] is False
    assert ModelRequest.model_validate(dump(unset)["request"]).parallel_tool_calls is None


def test_an_annotated_field_description_reaches_the_schema_unless_the_docstring_gives_one() -> None:
    """A parameter's description comes from the docstring; without one, from its
    `Annotated[..., Field(description=...)]` hint (it used to be dropped)."""

    @tool
    def count(n: Annotated[int, Field(description="how many")], m: Annotated[int, Field(description="hint")]) -> int:
        """Count.

        Args:
            m: from the docstring
        """
        return n + m

    properties = json.loads(count.spec.parameters_json)["properties"]
    assert properties["n"]["description"] == "how many"
    assert properties["m"]["description"] == "from the docstring"
