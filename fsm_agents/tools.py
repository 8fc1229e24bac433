"""Tools: typed Python functions the model may call, and the executor that runs tool calls.

`@tool` turns a typed function (sync or async) and its docstring into a `Tool`: a pydantic model
of its arguments (so the JSON schema the provider sees and the validation the executor applies
come from one place) plus options (`timeout`, `retries`, `retry_on`, `idempotent`,
`max_output_chars`, `thread`). Docstring parameter descriptions (Google, NumPy, reST or Epydoc
style) are parsed with `docstring_parser`.

`ToolExecutor.run(calls)` never raises for a bad call: an unknown tool, arguments that are not
JSON, arguments that fail validation, an exception in the tool, a timeout, or a returned value
that cannot be serialized all become a `ToolResult(ok=False, error=...)` whose message is fed
back to the model; the other calls of the same reply keep their own results.

What a tool raises, and what becomes of it:

- an `Exception` (or a timeout): an error result, as above;
- `asyncio.CancelledError` (or another `BaseException` that is not one of the two below) raised
  by the tool itself while the run is *not* being cancelled: an error result too (a library that
  turns its own failures into a cancellation must not take the other calls' results with it);
- a real cancellation of the run (a cancel scope, a timeout or `task.cancel()` around `run`):
  propagates, as cancellation must;
- `KeyboardInterrupt` and `SystemExit`: propagate unwrapped (never inside a
  `BaseExceptionGroup`), on asyncio and on trio, once the reply's other calls are cancelled: they
  ask the program to stop, which no tool result can stand for. So does a `RunAborted`
  (a replayed test asked for a tool call the recording does not have).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property, partial
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar, get_type_hints, overload, runtime_checkable

import anyio
import docstring_parser
import pydantic_core
import sniffio
import stamina
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.fields import FieldInfo

from fsm_agents.errors import RunAborted, ToolDefinitionError
from fsm_agents.state import ToolCall, ToolResult, ToolSpec, _made, fields_set, is_valid_name

__all__ = ["SingleToolset", "Tool", "ToolExecutor", "Toolset", "ask_user", "current_run_id", "tool"]

log = logging.getLogger("fsm_agents.tools")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_OUTPUT_CHARS = 20_000


@dataclass(frozen=True, eq=False)
class Tool:
    """A callable tool.

    - `name`, `description`: what the model sees; `input_model`: the pydantic model of the
      arguments (extra arguments are rejected);
    - `timeout`: seconds per attempt (`None` = no limit);
    - `retries`: extra attempts when the tool raises one of `retry_on` (exponential backoff with
      jitter via `stamina`, starting at `retry_wait` seconds);
    - `idempotent`: safe to re-run after a crash (used by persistence);
    - `max_output_chars`: longer output is truncated with a marker;
    - `thread`: run a sync function in a worker thread (default); `False` runs it inline on the
      event loop — only for fast, non-blocking functions (a timeout cannot interrupt it);
    - `requires_approval`: a call waits for a human's `Approved()` / `Denied(reason)` (the run
      suspends; see `fsm_agents.resume`);
    - `asks_user`: the call is a question to the human (its `question` argument); the human's
      `Answer(text)` is its result and `fn` is never called (see `ask_user`);
    - `parameters_json`: the JSON schema the model sees, as given by someone else (an MCP
      server's `inputSchema`), instead of `input_model`'s; `input_model` still validates.
    """

    name: str
    description: str
    fn: Callable[..., Any] = field(repr=False)
    input_model: type[BaseModel] = field(repr=False)
    is_async: bool = False
    timeout: float | None = None
    retries: int = 0
    retry_on: tuple[type[Exception], ...] = ()
    retry_wait: float = 0.1
    idempotent: bool = False
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    thread: bool = True
    requires_approval: bool = False
    asks_user: bool = False
    parameters_json: str | None = field(default=None, repr=False)

    @cached_property
    def spec(self) -> ToolSpec:
        """The provider-neutral description: name, description, JSON schema of the arguments."""
        if self.parameters_json is not None:
            return ToolSpec(name=self.name, description=self.description, parameters_json=self.parameters_json)
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(name=self.name, description=self.description, parameters_json=pydantic_core.to_json(schema).decode())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation): tools stay usable as functions."""
        return self.fn(*args, **kwargs)


def _build_tool(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    timeout: float | None,
    retries: int,
    retry_on: Iterable[type[Exception]],
    retry_wait: float,
    idempotent: bool,
    max_output_chars: int,
    thread: bool,
    requires_approval: bool = False,
) -> Tool:
    if not callable(fn) or isinstance(fn, type):
        raise ToolDefinitionError(f"a tool is made from a function, not {type(fn).__name__}: {fn!r:.80}")
    tool_name = name or getattr(fn, "__name__", "")
    if not is_valid_name(tool_name):  # the providers' rule for function names
        hint = "; name it with @tool(name=...)" if name is None else ""
        raise ToolDefinitionError(f"tool name {tool_name!r} must be 1-64 ASCII letters, digits, '_' or '-'{hint}")
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise ToolDefinitionError(f"tool {tool_name!r}: timeout must be a positive number of seconds")
    if retries < 0:
        raise ToolDefinitionError(f"tool {tool_name!r}: retries must be >= 0")
    if max_output_chars < 1:
        raise ToolDefinitionError(f"tool {tool_name!r}: max_output_chars must be >= 1")
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    param_docs = {p.arg_name: p.description or "" for p in doc.params}
    try:
        # only the parameters matter; the return annotation may name a type we cannot resolve
        params_only = SimpleNamespace(
            __annotations__={k: v for k, v in getattr(fn, "__annotations__", {}).items() if k != "return"},
            __globals__=getattr(inspect.unwrap(fn), "__globals__", {}),
        )
        hints = get_type_hints(params_only, include_extras=True)
    except Exception as exc:  # NameError on an unresolved forward reference, mostly
        raise ToolDefinitionError(f"tool {tool_name!r}: cannot resolve its type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool {tool_name!r}: *args/**kwargs parameters are not supported ({pname})")
        if pname not in hints:
            raise ToolDefinitionError(f"tool {tool_name!r}: parameter {pname!r} needs a type annotation")
        default = ... if param.default is param.empty else param.default
        fields[pname] = (hints[pname], FieldInfo(default=default, description=param_docs.get(pname) or None))
    model_name = "".join(part.capitalize() for part in tool_name.replace("-", "_").split("_")) + "Args"
    try:
        input_model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
        input_model.model_json_schema()
    except Exception as exc:
        raise ToolDefinitionError(f"tool {tool_name!r}: its parameters have no JSON schema: {exc}") from exc
    text = (
        description
        if description is not None
        else "\n\n".join(part for part in (doc.short_description, doc.long_description) if part)
    )
    return Tool(
        name=tool_name,
        description=text,
        fn=fn,
        input_model=input_model,
        is_async=inspect.iscoroutinefunction(fn),
        timeout=timeout,
        retries=retries,
        retry_on=tuple(retry_on),
        retry_wait=retry_wait,
        idempotent=idempotent,
        max_output_chars=max_output_chars,
        thread=thread,
        requires_approval=bool(requires_approval),
    )


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_on: Iterable[type[Exception]] = (),
    retry_wait: float = 0.1,
    idempotent: bool = False,
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    thread: bool = True,
    requires_approval: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_on: Iterable[type[Exception]] = (),
    retry_wait: float = 0.1,
    idempotent: bool = False,
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    thread: bool = True,
    requires_approval: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a `Tool` from a typed function: `@tool` or `@tool(timeout=5, retries=2, ...)`.

    Every parameter needs a type annotation; the description is the docstring's summary and
    body, parameter descriptions come from its Args/Parameters section. Raises
    `ToolDefinitionError` for a function that cannot become a tool.
    """
    options = dict(
        name=name,
        description=description,
        timeout=timeout,
        retries=retries,
        retry_on=retry_on,
        retry_wait=retry_wait,
        idempotent=idempotent,
        max_output_chars=max_output_chars,
        thread=thread,
        requires_approval=requires_approval,
    )
    if fn is not None:
        return _build_tool(fn, **options)  # type: ignore[arg-type]
    return lambda f: _build_tool(f, **options)  # type: ignore[arg-type]


@runtime_checkable
class Toolset(Protocol):
    """Tools listed when a run starts, not known when the agent is made (an MCP server:
    `fsm_agents.mcp`). A toolset goes in `Agent(tools=[...])` beside plain tools.

    - `name`: names the toolset in error messages;
    - `prefix`: when not None, every tool it lists is named `<prefix>_<its name>`;
    - `requires_approval`: `True` (every tool it lists) or the names (as the model sees them)
      whose calls wait for a human's decision. Static: the pure core decides from it before
      anything is listed (with `True` and no prefix, every call of a name that is not one of
      the agent's own tools is the toolset's);
    - `open()`: an async context manager that lists the tools for one run: the runtime enters it
      when the run starts (in the run's task) and leaves it when the run ends. Raises
      `MCPServerError` (or its toolset's own `FsmAgentsError`) when it cannot list, and
      `InvalidDefinition` for a listed tool that cannot be offered to a model.

    See docs/architecture.md, "MCP toolsets".
    """

    @property
    def name(self) -> str: ...

    @property
    def prefix(self) -> str | None: ...

    @property
    def requires_approval(self) -> bool | frozenset[str]: ...

    def open(self) -> AbstractAsyncContextManager[Sequence[Tool]]: ...


class SingleToolset(Sequence[Tool]):
    """A toolset of one `Tool` kept in `self._tool`, usable where a list of tools is:
    `Agent(tools=toolset)` or `Agent(tools=[*toolset, other])`. The connectors
    (`fsm_agents.connectors`) are such toolsets, with the resources their tool needs."""

    _tool: Tool

    @overload
    def __getitem__(self, index: int) -> Tool: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Tool]: ...
    def __getitem__(self, index: int | slice) -> Tool | Sequence[Tool]:
        return (self._tool,)[index]

    def __len__(self) -> int:
        return 1


def ask_user(name: str = "ask_user", description: str | None = None) -> Tool:
    """A tool the model calls to ask the human a question: `ask_user(question: str)`. The run
    suspends with the question in `RunResult.pending`; `resume(..., decisions={call_id:
    Answer(text)})` makes `text` the call's result. The function is never called."""

    def ask(question: str) -> str:  # pragma: no cover - never called: the answer comes from the human
        raise RuntimeError("ask_user is answered by a human decision, not called")

    ask.__doc__ = description or "Ask the user a question and wait for the answer.\n\nArgs:\n    question: what to ask."
    built = _build_tool(
        ask,
        name=name,
        description=description,
        timeout=None,
        retries=0,
        retry_on=(),
        retry_wait=0.1,
        idempotent=True,
        max_output_chars=DEFAULT_MAX_OUTPUT_CHARS,
        thread=False,
    )
    return dataclasses.replace(built, asks_user=True)


def as_tools(tools: Iterable[Tool | Callable[..., Any]]) -> tuple[Tool, ...]:
    """Normalise a tool list: plain functions are wrapped with `tool`. Raises
    `ToolDefinitionError` on two tools with one name, on a single tool or function given instead
    of a list, and on an item that is neither a tool nor a function."""
    if isinstance(tools, (Tool, str, bytes)) or callable(tools):
        raise ToolDefinitionError(f"tools must be a list of tools or functions, got a single {type(tools).__name__}")
    try:
        items = list(tools)
    except TypeError:
        raise ToolDefinitionError(f"tools must be a list of tools or functions, got {type(tools).__name__}") from None
    for t in items:
        if not (isinstance(t, Tool) or callable(t)):
            raise ToolDefinitionError(f"tools must be tools or functions, got {type(t).__name__}: {t!r:.80}")
    out = tuple(t if isinstance(t, Tool) else tool(t) for t in items)
    seen: set[str] = set()
    for t in out:
        if t.name in seen:
            raise ToolDefinitionError(f"two tools are named {t.name!r}")
        seen.add(t.name)
    return out


def serialize_output(value: Any) -> str:
    """Tool output as text: strings unchanged, everything else as JSON (pydantic's encoder,
    which handles models, dataclasses, dates...; `pydantic_core.to_json(value, fallback=str)`, so
    a value it does not know becomes the JSON string of its `str()`, one value at a time: a list
    of such objects stays a JSON list). Raises whatever that `str()` raises (a `__str__` that
    fails or returns a non-string) and `ValueError` on a circular reference: the executor turns
    both into an error result."""
    if isinstance(value, str):
        return value
    return pydantic_core.to_json(value, fallback=str).decode()


def _text_of(exc: BaseException) -> str:
    """`str(exc)`, or a placeholder when the exception's own `__str__` fails."""
    try:
        text = str(exc)
    except Exception:
        return "(its message cannot be printed)"
    return text


_STOP_THE_PROGRAM = (KeyboardInterrupt, SystemExit)


def _run_is_cancelled() -> bool:
    """Whether the task running the tool is itself being cancelled (an enclosing cancel scope,
    or on asyncio a `task.cancel()`), as opposed to a tool that raised a cancellation of its own."""
    if anyio.current_effective_deadline() == -math.inf:
        return True
    if sniffio.current_async_library() == "asyncio":
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0
    return False


_TOOL_RESULT_FIELDS = fields_set(ToolResult)


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with a marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [truncated {len(text) - limit} of {len(text)} characters]"


def _validation_message(exc: ValidationError, raw: str) -> str:
    if any(err["type"] == "json_invalid" for err in exc.errors()):
        return f"the arguments are not valid JSON ({exc.errors()[0]['msg']}); received: {raw!r}"
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(arguments)'}: {err['msg']}" for err in exc.errors(include_url=False)
    )
    return f"invalid arguments: {problems}; received: {raw}"


class ToolExecutor:
    """Runs tool calls against a set of tools; calls of one reply run concurrently.

    `default_timeout` (seconds) applies to tools without their own; `max_concurrency` caps how
    many calls of one batch run at once.
    """

    def __init__(
        self,
        tools: Mapping[str, Tool] | Sequence[Tool],
        *,
        default_timeout: float | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        self.tools: Mapping[str, Tool] = dict(tools) if isinstance(tools, Mapping) else {t.name: t for t in as_tools(tools)}
        self.default_timeout = default_timeout
        self.max_concurrency = max_concurrency

    async def run(self, calls: Sequence[ToolCall]) -> tuple[ToolResult, ...]:
        """One `ToolResult` per call, in call order. Never raises for a bad call."""
        if len(calls) == 1:
            return (await self.run_one(calls[0]),)
        results: list[ToolResult | None] = [None] * len(calls)
        limiter = anyio.CapacityLimiter(self.max_concurrency) if self.max_concurrency else None

        async def one(i: int, call: ToolCall) -> None:
            if limiter is None:
                results[i] = await self.run_one(call)
            else:
                async with limiter:
                    results[i] = await self.run_one(call)

        stop: list[BaseException] = []

        async def guarded(i: int, call: ToolCall) -> None:
            try:
                await one(i, call)
            except (*_STOP_THE_PROGRAM, RunAborted) as exc:  # re-raised below, not in an exception group
                stop.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for i, call in enumerate(calls):
                tg.start_soon(guarded, i, call)
        if stop:
            raise stop[0]
        return tuple(r for r in results if r is not None)

    async def run_one(self, call: ToolCall) -> ToolResult:
        """Run one call: look up, validate, execute (timeout, retries), serialize, truncate."""
        started = time.perf_counter()
        tool_ = self.tools.get(call.name)
        if tool_ is None:
            available = ", ".join(sorted(self.tools)) or "(none)"
            return self._error(call, f"unknown tool {call.name!r}; available tools: {available}", started)
        raw = call.arguments if call.arguments.strip() else "{}"
        try:
            args = tool_.input_model.model_validate_json(raw)
        except ValidationError as exc:
            return self._error(call, _validation_message(exc, call.arguments), started)
        kwargs = dict(args.__dict__)  # the validated arguments, by parameter name
        if args.__pydantic_extra__:  # a permissive input model (extra="allow") passes the rest through
            kwargs.update(args.__pydantic_extra__)
        timeout = tool_.timeout if tool_.timeout is not None else self.default_timeout
        attempts = 0
        try:
            if tool_.retries and tool_.retry_on:
                async for attempt in stamina.retry_context(
                    on=tool_.retry_on,
                    attempts=tool_.retries + 1,
                    wait_initial=tool_.retry_wait,
                    timeout=None,
                ):
                    with attempt:
                        attempts += 1
                        value = await self._invoke(tool_, kwargs, timeout)
            elif timeout is None and not tool_.is_async and not tool_.thread:
                attempts = 1
                value = tool_.fn(**kwargs)  # an inline sync tool: no coroutine layers
                if inspect.isawaitable(value):
                    value = await value
            else:
                attempts = 1
                value = await self._invoke(tool_, kwargs, timeout)
        except TimeoutError:
            return self._error(call, f"tool {call.name!r} timed out after {timeout} s", started, attempts)
        except RunAborted:
            raise
        except Exception as exc:  # the tool's own failure is fed back to the model
            log.debug("tool %s raised", call.name, exc_info=True)
            return self._error(call, f"tool {call.name!r} raised {type(exc).__name__}: {_text_of(exc)}", started, attempts)
        except _STOP_THE_PROGRAM:
            raise
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()) and _run_is_cancelled():
                raise  # the run itself is being cancelled
            # e.g. asyncio.CancelledError raised by the tool while nothing cancelled the run
            log.debug("tool %s raised %s", call.name, type(exc).__name__, exc_info=True)
            message = f"tool {call.name!r} raised {type(exc).__name__}: {_text_of(exc)}".rstrip(": ")
            return self._error(call, message, started, attempts)
        try:
            content = truncate(serialize_output(value), tool_.max_output_chars)
        except Exception as exc:  # a __str__ that raises or returns a non-string, a circular reference
            log.debug("tool %s returned an unserializable value", call.name, exc_info=True)
            return self._error(
                call,
                f"tool {call.name!r} returned a {type(value).__name__} that cannot be turned into text "
                f"({type(exc).__name__}: {_text_of(exc)})",
                started,
                attempts,
            )
        values = {
            "call_id": call.id,
            "name": call.name,
            "ok": True,
            "content": content,
            "error": None,
            "duration_ms": (time.perf_counter() - started) * 1000.0,
            "attempts": attempts,
        }
        return _made(ToolResult, values, _TOOL_RESULT_FIELDS)

    @staticmethod
    async def _invoke(tool_: Tool, kwargs: dict[str, Any], timeout: float | None) -> Any:
        if timeout is None:
            return await _call(tool_, kwargs)
        with anyio.fail_after(timeout):
            return await _call(tool_, kwargs)

    @staticmethod
    def _error(call: ToolCall, message: str, started: float, attempts: int = 0) -> ToolResult:
        return ToolResult.model_construct(
            call_id=call.id,
            name=call.name,
            ok=False,
            content="",
            error=message,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            attempts=attempts,
        )


async def _call(tool_: Tool, kwargs: dict[str, Any]) -> Any:
    if tool_.is_async:
        return await tool_.fn(**kwargs)
    if tool_.thread:
        return await anyio.to_thread.run_sync(partial(tool_.fn, **kwargs), abandon_on_cancel=True)
    result = tool_.fn(**kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


_RUN_ID: ContextVar[str | None] = ContextVar("fsm_agents_run_id", default=None)


def current_run_id() -> str | None:
    """The id of the run whose tool call is executing (its conversation id when the run is
    persisted; a child of a pattern has its own, `<parent id>/<task id>`), or `None` outside a
    run. Set by the runtime for the duration of each run; it reaches sync tools in their worker
    thread too (anyio copies the context into it). Tools that keep per-conversation resources
    (a sandbox work folder, say) key them by it."""
    return _RUN_ID.get()
