"""Tools: typed Python functions the model may call, and the executor that runs tool calls.

`@tool` turns a typed function (sync or async) or a bound method and its docstring into a
`Tool`: a pydantic model of its arguments (so the JSON schema the provider sees and the
validation the executor applies come from one place) plus options (`timeout`, `retries`,
`retry_on`, `idempotent`, `max_output_chars`, `thread`, `requires_approval`, `sequential`).
Docstring parameter descriptions (Google, NumPy, reST or Epydoc style) are parsed with
`docstring_parser`. The signature is read once per function; the model and schema are built on
first use and cached per function (docs/architecture.md, Tools and run context). A first
parameter annotated `RunContext[...]` receives the run's context and is not in the schema.

`ToolExecutor.run(calls, ctx)` never raises for a bad call: an unknown tool, arguments that are
not JSON, arguments that fail validation, an exception in the tool, a timeout, or a returned
value that cannot be serialized all become a `ToolResult(ok=False, error=...)` whose message is
fed back to the model; the other calls of the same reply keep their own results. Output is text:
a `str` unchanged, anything else JSON with a per-value `str()` fallback; it is cut once, here,
to the tool's `max_output_chars` or else the agent's cap, with a marker.

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
import contextlib
import inspect
import logging
import math
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from functools import partial
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar, cast, get_origin, get_type_hints, overload, runtime_checkable

import anyio
import docstring_parser
import pydantic_core
import sniffio
import stamina
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.fields import FieldInfo

from fsm_agents.context import RunContext
from fsm_agents.errors import RunAborted, ToolDefinitionError
from fsm_agents.state import ToolCall, ToolResult, ToolSpec, Usage, _made, fields_set, is_valid_name

__all__ = ["SingleToolset", "Tool", "ToolExecutor", "Toolset", "ask_user", "current_run_id", "tool"]

log = logging.getLogger("fsm_agents.tools")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_OUTPUT_CHARS = 20_000
_NO_USAGE = Usage()


class _Signature:
    """What a function's signature says about it as a tool, computed once per function and shared
    by every `Tool` made from it (bound methods of many instances of one class share the one of
    `__func__`, minus `self`): the parameters with their resolved type hints and defaults, the
    `RunContext` parameter if any, and — lazily — the docstring and the input models."""

    __slots__ = ("ctx_keyword", "ctx_param", "doc", "fields", "models", "source")

    def __init__(
        self, source: Callable[..., Any], fields: dict[str, tuple[Any, Any]], ctx_param: str | None, ctx_keyword: bool
    ) -> None:
        self.source = source  # where the docstring comes from
        self.fields = fields  # parameter -> (type hint, default or ...), without self and the RunContext
        self.ctx_param = ctx_param
        self.ctx_keyword = ctx_keyword  # the RunContext parameter is keyword-only: passed by name
        self.doc: tuple[str, dict[str, str]] | None = None  # (description, parameter descriptions)
        self.models: dict[str, tuple[type[BaseModel], str]] = {}  # model name -> (input model, schema JSON)

    def docstring(self) -> tuple[str, dict[str, str]]:
        if self.doc is None:
            parsed = docstring_parser.parse(inspect.getdoc(self.source) or "")
            text = "\n\n".join(part for part in (parsed.short_description, parsed.long_description) if part)
            self.doc = (text, {p.arg_name: p.description or "" for p in parsed.params})
        return self.doc

    def model(self, tool_name: str) -> tuple[type[BaseModel], str]:
        """The input model of the arguments (extra arguments rejected) and its JSON schema (no
        title), built on first use. Raises `ToolDefinitionError` when pydantic cannot build them."""
        model_name = "".join(part.capitalize() for part in tool_name.replace("-", "_").split("_")) + "Args"
        found = self.models.get(model_name)
        if found is None:
            param_docs = self.docstring()[1]
            # a docstring's description of a parameter, else none set: an `Annotated[..., Field(
            # description=...)]` hint keeps its own (an explicit None would override it)
            fields: dict[str, Any] = {
                pname: (
                    hint,
                    FieldInfo(default=default, description=param_docs[pname])
                    if param_docs.get(pname)
                    else FieldInfo(default=default),
                )
                for pname, (hint, default) in self.fields.items()
            }
            try:
                input_model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
                schema = input_model.model_json_schema()
            except Exception as exc:
                raise ToolDefinitionError(f"tool {tool_name!r}: its parameters have no JSON schema: {exc}") from exc
            schema.pop("title", None)
            found = self.models[model_name] = (input_model, pydantic_core.to_json(schema).decode())
        return found


_SIGNATURES: weakref.WeakKeyDictionary[Callable[..., Any], dict[bool, _Signature]] = weakref.WeakKeyDictionary()


def _is_run_context(hint: Any) -> bool:
    return hint is RunContext or get_origin(hint) is RunContext


def _signature(fn: Callable[..., Any], tool_name: str) -> _Signature:
    """The `_Signature` of `fn`, cached per underlying function (a bound method's `__func__`).
    Raises `ToolDefinitionError` for a parameter without a type annotation, `*args`/`**kwargs`,
    unresolvable type hints, or a `RunContext` parameter that is not the first."""
    bound = inspect.ismethod(fn)
    func: Callable[..., Any] = fn.__func__ if bound else fn  # type: ignore[attr-defined]
    try:
        cached = _SIGNATURES.get(func)
    except TypeError:  # not weakly referenceable (or unhashable): not cached
        cached = None
    if cached is not None:
        found = cached.get(bound)
        if found is not None:
            return found
    try:
        # only the parameters matter; the return annotation may name a type we cannot resolve
        params_only = SimpleNamespace(
            __annotations__={k: v for k, v in getattr(func, "__annotations__", {}).items() if k != "return"},
            __globals__=getattr(inspect.unwrap(func), "__globals__", {}),
        )
        hints = get_type_hints(params_only, include_extras=True)
    except Exception as exc:  # NameError on an unresolved forward reference, mostly
        raise ToolDefinitionError(f"tool {tool_name!r}: cannot resolve its type hints: {exc}") from exc
    params = list(inspect.signature(func).parameters.values())
    if bound:
        params = params[1:]  # self (or cls): supplied by the bound method
    fields: dict[str, tuple[Any, Any]] = {}
    ctx_param: str | None = None
    ctx_keyword = False
    for i, param in enumerate(params):
        pname = param.name
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool {tool_name!r}: *args/**kwargs parameters are not supported ({pname})")
        if pname not in hints:
            raise ToolDefinitionError(f"tool {tool_name!r}: parameter {pname!r} needs a type annotation")
        if _is_run_context(hints[pname]):
            if i != 0:
                raise ToolDefinitionError(
                    f"tool {tool_name!r}: parameter {pname!r} is a RunContext; a RunContext must be the first "
                    "parameter (move it first, or remove it)"
                )
            ctx_param, ctx_keyword = pname, param.kind is param.KEYWORD_ONLY
            continue
        fields[pname] = (hints[pname], ... if param.default is param.empty else param.default)
    sig = _Signature(func, fields, ctx_param, ctx_keyword)
    with contextlib.suppress(TypeError):
        _SIGNATURES.setdefault(func, {})[bound] = sig
    return sig


class Tool:
    """A callable tool (immutable).

    - `name`, `description`: what the model sees (the description defaults to the docstring's
      summary and body); `input_model`: the pydantic model of the arguments (extra arguments
      are rejected). Both, and `spec`, are built on first use and cached per function (see
      `tool`); a `Tool(...)` made directly may pass its own `input_model`;
    - `timeout`: seconds per attempt (`None` = no limit);
    - `retries`: extra attempts when the tool raises one of `retry_on` (exponential backoff via
      `stamina`: the n-th wait is `retry_wait · 2**(n-1)` seconds plus a random jitter of up to
      `retry_wait`, capped at 5 s);
    - `idempotent`: safe to re-run after a crash (used by persistence);
    - `max_output_chars`: this tool's output cap in characters; `None` (default) = the agent's
      `max_tool_output_chars` (the executor's `max_output_chars`). Longer output is cut once,
      by the executor, with a marker the model sees;
    - `thread`: run a sync function in a worker thread (default); `False` runs it inline on the
      event loop — only for fast, non-blocking functions (a timeout cannot interrupt it);
    - `requires_approval`: a call waits for a human's `Approved()` / `Denied(reason)` (the run
      suspends; see `fsm_agents.resume`);
    - `asks_user`: the call is a question to the human (its `question` argument); the human's
      `Answer(text)` is its result and `fn` is never called (see `ask_user`);
    - `sequential`: a call of this tool never overlaps another call of the same reply (the calls
      before it finish first, the calls after it start after it);
    - `takes_ctx`: `fn`'s first parameter is a `RunContext` (given by the runtime, not in the
      schema); `ctx_param` is its name;
    - `parameters_json`: the JSON schema the model sees, as given by someone else (an MCP
      server's `inputSchema`), instead of `input_model`'s; `input_model` still validates.
    """

    __slots__ = (
        "_description",
        "_input_model",
        "_sig",
        "_spec",
        "asks_user",
        "ctx_keyword",
        "ctx_param",
        "fn",
        "idempotent",
        "is_async",
        "max_output_chars",
        "name",
        "parameters_json",
        "requires_approval",
        "retries",
        "retry_on",
        "retry_wait",
        "sequential",
        "thread",
        "timeout",
    )

    name: str
    fn: Callable[..., Any]
    _description: str | None
    _input_model: type[BaseModel] | None
    _sig: _Signature | None
    _spec: ToolSpec | None
    is_async: bool
    timeout: float | None
    retries: int
    retry_on: tuple[type[Exception], ...]
    retry_wait: float
    idempotent: bool
    max_output_chars: int | None
    thread: bool
    requires_approval: bool
    asks_user: bool
    sequential: bool
    ctx_param: str | None
    ctx_keyword: bool
    parameters_json: str | None

    def __init__(
        self,
        name: str,
        description: str | None,
        fn: Callable[..., Any],
        input_model: type[BaseModel] | None = None,
        *,
        is_async: bool | None = None,
        timeout: float | None = None,
        retries: int = 0,
        retry_on: Iterable[type[Exception]] = (),
        retry_wait: float = 0.1,
        idempotent: bool = False,
        max_output_chars: int | None = None,
        thread: bool = True,
        requires_approval: bool = False,
        asks_user: bool = False,
        sequential: bool = False,
        ctx_param: str | None = None,
        parameters_json: str | None = None,
        _sig: _Signature | None = None,
    ) -> None:
        if input_model is None and _sig is None:
            _sig = _signature(fn, name)
        if _sig is not None and input_model is None:
            ctx_param = _sig.ctx_param
        setattr_ = object.__setattr__
        setattr_(self, "name", name)
        setattr_(self, "_description", description)
        setattr_(self, "fn", fn)
        setattr_(self, "_input_model", input_model)
        setattr_(self, "_sig", _sig)
        setattr_(self, "_spec", None)
        setattr_(self, "is_async", inspect.iscoroutinefunction(fn) if is_async is None else is_async)
        setattr_(self, "timeout", timeout)
        setattr_(self, "retries", retries)
        setattr_(self, "retry_on", tuple(retry_on))
        setattr_(self, "retry_wait", retry_wait)
        setattr_(self, "idempotent", idempotent)
        setattr_(self, "max_output_chars", max_output_chars)
        setattr_(self, "thread", thread)
        setattr_(self, "requires_approval", bool(requires_approval))
        setattr_(self, "asks_user", bool(asks_user))
        setattr_(self, "sequential", bool(sequential))
        setattr_(self, "ctx_param", ctx_param)
        setattr_(self, "ctx_keyword", bool(_sig is not None and _sig.ctx_keyword and ctx_param is not None))
        setattr_(self, "parameters_json", parameters_json)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Tool is immutable: cannot set {name!r} (make a new tool with tool(...))")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Tool is immutable: cannot delete {name!r}")

    def __copy__(self) -> Tool:
        return self  # immutable: a copy is the tool itself

    def __deepcopy__(self, memo: dict[int, Any]) -> Tool:
        return self

    def __repr__(self) -> str:
        return (
            f"Tool(name={self.name!r}, is_async={self.is_async}, timeout={self.timeout}, retries={self.retries}, "
            f"idempotent={self.idempotent}, max_output_chars={self.max_output_chars}, thread={self.thread}, "
            f"requires_approval={self.requires_approval}, sequential={self.sequential}, takes_ctx={self.takes_ctx})"
        )

    @property
    def takes_ctx(self) -> bool:
        """Whether `fn` takes a `RunContext` first (the executor passes it)."""
        return self.ctx_param is not None

    @property
    def description(self) -> str:
        """What the model is told the tool does (the docstring's summary and body unless given)."""
        if self._description is not None:
            return self._description
        return self._sig.docstring()[0] if self._sig is not None else ""

    @property
    def input_model(self) -> type[BaseModel]:
        """The pydantic model of the arguments (built on first use; raises `ToolDefinitionError`
        when pydantic cannot build a model or a JSON schema of the parameters)."""
        model = self._input_model
        if model is None:
            model = cast("_Signature", self._sig).model(self.name)[0]
            object.__setattr__(self, "_input_model", model)
        return model

    @property
    def spec(self) -> ToolSpec:
        """The provider-neutral description: name, description, JSON schema of the arguments
        (built on first use, shared by the tools of one function; raises `ToolDefinitionError`
        as `input_model`)."""
        spec = self._spec
        if spec is None:
            if self.parameters_json is not None:
                parameters_json = self.parameters_json
            elif self._input_model is None and self._sig is not None:
                model, parameters_json = self._sig.model(self.name)
                object.__setattr__(self, "_input_model", model)
            else:
                schema = self.input_model.model_json_schema()
                schema.pop("title", None)
                parameters_json = pydantic_core.to_json(schema).decode()
            values = {"name": self.name, "description": self.description, "parameters_json": parameters_json}
            spec = _made(ToolSpec, values, _TOOL_SPEC_FIELDS)
            object.__setattr__(self, "_spec", spec)
        return spec

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation): tools stay usable as functions."""
        return self.fn(*args, **kwargs)


_TOOL_SPEC_FIELDS = fields_set(ToolSpec)


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
    max_output_chars: int | None,
    thread: bool,
    requires_approval: bool = False,
    sequential: bool = False,
    asks_user: bool = False,
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
    if max_output_chars is not None and (
        isinstance(max_output_chars, bool) or not isinstance(max_output_chars, int) or max_output_chars < 1
    ):
        raise ToolDefinitionError(f"tool {tool_name!r}: max_output_chars must be an int >= 1 (or None: the agent's cap)")
    return Tool(
        tool_name,
        description,
        fn,
        is_async=inspect.iscoroutinefunction(fn),
        timeout=timeout,
        retries=retries,
        retry_on=retry_on,
        retry_wait=retry_wait,
        idempotent=idempotent,
        max_output_chars=max_output_chars,
        thread=thread,
        requires_approval=requires_approval,
        asks_user=asks_user,
        sequential=sequential,
        _sig=_signature(fn, tool_name),
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
    max_output_chars: int | None = None,
    thread: bool = True,
    requires_approval: bool = False,
    sequential: bool = False,
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
    max_output_chars: int | None = None,
    thread: bool = True,
    requires_approval: bool = False,
    sequential: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a `Tool` from a typed function or bound method: `@tool` or `@tool(timeout=5, ...)`.

    Every parameter needs a type annotation; the description is the docstring's summary and
    body, parameter descriptions come from its Args/Parameters section (Google, NumPy, reST or
    Epydoc style, parsed with `docstring_parser`). A first parameter annotated `RunContext[...]`
    (or bare `RunContext`) receives the run's context at each call and is not in the schema.

    Cost: the signature is read once per function (bound methods of one class share their
    `__func__`'s); the docstring, the pydantic input model and the JSON schema are built on
    first use of `spec` / `input_model` (an `Agent` forces it when it is made) and cached per
    function, so making many tools of one class's methods is cheap.

    Raises `ToolDefinitionError` here for a function that cannot become a tool (a bad name or
    option, a parameter without an annotation, `*args`/`**kwargs`, a `RunContext` parameter that
    is not the first); an annotation pydantic cannot turn into a schema raises it on first use
    of `spec` / `input_model`, i.e. at the latest when an `Agent` is made with the tool.
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
        sequential=sequential,
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
    return _build_tool(
        ask,
        name=name,
        description=description,
        timeout=None,
        retries=0,
        retry_on=(),
        retry_wait=0.1,
        idempotent=True,
        max_output_chars=None,
        thread=False,
        asks_user=True,
    )


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
    """`text` cut to `limit` characters, followed by a marker that tells the model so:
    `…[truncated: 20,000 of 54,321 characters shown]`."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n…[truncated: {limit:,} of {len(text):,} characters shown]"


def _validation_message(exc: ValidationError, raw: str) -> str:
    if any(err["type"] == "json_invalid" for err in exc.errors()):
        return f"the arguments are not valid JSON ({exc.errors()[0]['msg']}); received: {raw!r}"
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(arguments)'}: {err['msg']}" for err in exc.errors(include_url=False)
    )
    return f"invalid arguments: {problems}; received: {raw}"


class ToolExecutor:
    """Runs the tool calls of one reply against a set of tools.

    Order: calls run concurrently, except that a call of a `sequential` tool never overlaps
    another call of the reply (the calls before it finish first, the calls after it start after
    it), and with `parallel=False` (an agent's `parallel_tool_calls=False`) every call runs
    after the previous one, in call order. `default_timeout` (seconds) applies to tools without
    their own; `max_concurrency` caps how many calls run at once. `max_output_chars` is the
    output cap of tools that set none (an agent's `max_tool_output_chars`): a result is cut
    once, here, to its tool's cap, or else this one.
    """

    def __init__(
        self,
        tools: Mapping[str, Tool] | Sequence[Tool],
        *,
        default_timeout: float | None = None,
        max_concurrency: int | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        parallel: bool = True,
    ) -> None:
        self.tools: Mapping[str, Tool] = dict(tools) if isinstance(tools, Mapping) else {t.name: t for t in as_tools(tools)}
        self.default_timeout = default_timeout
        self.max_concurrency = max_concurrency
        self.max_output_chars = max_output_chars
        self.parallel = parallel
        self.takes_ctx = any(t.takes_ctx for t in self.tools.values())  # some tool wants a RunContext
        self._ordered = not parallel or any(t.sequential for t in self.tools.values())

    async def run(self, calls: Sequence[ToolCall], ctx: RunContext[Any] | None = None) -> tuple[ToolResult, ...]:
        """One `ToolResult` per call, in call order. Never raises for a bad call. `ctx` is the
        `RunContext` given to tools that take one (a context without deps when `None`)."""
        if len(calls) == 1:
            return (await self.run_one(calls[0], ctx),)
        if not self._ordered:
            return await self._concurrently(calls, ctx)
        if not self.parallel:
            return tuple([await self.run_one(call, ctx) for call in calls])
        results: list[ToolResult] = []
        group: list[ToolCall] = []  # calls that may overlap one another
        for call in calls:
            t = self.tools.get(call.name)
            if t is not None and t.sequential:
                if group:
                    results.extend(await self._concurrently(group, ctx))
                    group = []
                results.append(await self.run_one(call, ctx))
            else:
                group.append(call)
        if group:
            results.extend(await self._concurrently(group, ctx))
        return tuple(results)

    async def _concurrently(self, calls: Sequence[ToolCall], ctx: RunContext[Any] | None) -> tuple[ToolResult, ...]:
        if len(calls) == 1:
            return (await self.run_one(calls[0], ctx),)
        results: list[ToolResult | None] = [None] * len(calls)
        limiter = anyio.CapacityLimiter(self.max_concurrency) if self.max_concurrency else None

        async def one(i: int, call: ToolCall) -> None:
            if limiter is None:
                results[i] = await self.run_one(call, ctx)
            else:
                async with limiter:
                    results[i] = await self.run_one(call, ctx)

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

    async def run_one(self, call: ToolCall, ctx: RunContext[Any] | None = None) -> ToolResult:
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
        positional: tuple[Any, ...] = ()
        if tool_.ctx_param is not None:
            if ctx is None:
                ctx = RunContext(None, _RUN_ID.get() or "", "", _NO_USAGE)
            if tool_.ctx_keyword:
                kwargs[tool_.ctx_param] = ctx
            else:
                positional = (ctx,)
        timeout = tool_.timeout if tool_.timeout is not None else self.default_timeout
        attempts = 0
        try:
            if tool_.retries and tool_.retry_on:
                async for attempt in stamina.retry_context(
                    on=tool_.retry_on,
                    attempts=tool_.retries + 1,
                    wait_initial=tool_.retry_wait,
                    wait_jitter=tool_.retry_wait,  # stamina's default (1 s) would swamp a 0.1 s retry_wait
                    timeout=None,
                ):
                    with attempt:
                        attempts += 1
                        value = await self._invoke(tool_, positional, kwargs, timeout)
            elif timeout is None and not tool_.is_async and not tool_.thread:
                attempts = 1
                value = tool_.fn(*positional, **kwargs)  # an inline sync tool: no coroutine layers
                if inspect.isawaitable(value):
                    value = await value
            else:
                attempts = 1
                value = await self._invoke(tool_, positional, kwargs, timeout)
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
        limit = tool_.max_output_chars if tool_.max_output_chars is not None else self.max_output_chars
        try:
            content = truncate(serialize_output(value), limit)  # the one place a tool's output is cut
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
    async def _invoke(tool_: Tool, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None) -> Any:
        if timeout is None:
            return await _call(tool_, args, kwargs)
        with anyio.fail_after(timeout):
            return await _call(tool_, args, kwargs)

    def _error(self, call: ToolCall, message: str, started: float, attempts: int = 0) -> ToolResult:
        return ToolResult.model_construct(
            call_id=call.id,
            name=call.name,
            ok=False,
            content="",
            error=truncate(message, self.max_output_chars),  # (it may quote long arguments or a long exception)
            duration_ms=(time.perf_counter() - started) * 1000.0,
            attempts=attempts,
        )


async def _call(tool_: Tool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if tool_.is_async:
        return await tool_.fn(*args, **kwargs)
    if tool_.thread:
        return await anyio.to_thread.run_sync(partial(tool_.fn, *args, **kwargs), abandon_on_cancel=True)
    result = tool_.fn(*args, **kwargs)
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
