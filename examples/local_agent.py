"""The main job: a two-agent team on the embedded local model (SmolLM2-135M via llama.cpp).

    python -m examples.local_agent ["your question"]      # or: make demo

Starts the local llama.cpp server (`fsm_agents.local.serve`) and runs a `Sequential` pattern of
two agents sharing one conversation: a researcher with a lookup tool over
`examples/data/countries.csv`, then an analyst whose answer is typed: a `Density`, built by its
output function `compute_density` (the country's population / area, worked out by the safe
calculator), so the number in the answer is the one the tool computed, not one the model wrote.
Every transition of the pattern and of each agent is printed live, with the model's words as it
writes them (the run is watched through `fsm_agents.stream`), then the outcome and a transcript
summary. A 135M model is weak: each agent ends in DONE or FAILED(budget_exhausted), and the run
always keeps a complete, well-formed history. Set FSM_AGENTS_MODEL_URL (and
FSM_AGENTS_MODEL_NAME) to use any other OpenAI-compatible server instead.
"""

from __future__ import annotations

import ast
import csv
import difflib
import operator
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from fsm_agents import (
    Agent,
    AssistantMessage,
    EffectFinished,
    Finished,
    TextDelta,
    ToolCallDelta,
    ToolMessage,
    TransitionTaken,
    stream,
    tool,
)
from fsm_agents.agent import guided_tool_choice
from fsm_agents.local import serve
from fsm_agents.models import Model, ModelSettings
from fsm_agents.observers import Redactor, describe_event
from fsm_agents.patterns import Sequential
from fsm_agents.runtime import Limits, RunResult

DATA = Path(__file__).parent / "data" / "countries.csv"
QUESTION = "What is the population density of Japan (people per km²)?"

# -- tools ----------------------------------------------------------------------------------------
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large (max 100)")
        return float(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return float(_UNARY[type(node.op)](_evaluate(node.operand)))
    raise ValueError(f"unsupported expression element: {ast.dump(node)[:60]}")


@tool(timeout=2)
def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses.

    Args:
        expression: the arithmetic expression, e.g. "124500000 / 377975".
    """
    try:
        tree = ast.parse(expression.replace(",", "").strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    return _evaluate(tree)


@cache
def _countries() -> dict[str, dict[str, str]]:
    with DATA.open(newline="", encoding="utf-8") as f:
        return {row["country"].lower(): row for row in csv.DictReader(f)}


def _normalise(name: str) -> str:
    return " ".join("".join(ch if ch.isalpha() or ch == " " else " " for ch in name.lower()).split())


def _row(name: str) -> dict[str, str]:
    """The data row of a country (or of the country of a capital), forgiving small misspellings.
    Raises `ValueError` naming the known countries."""
    rows = _countries()
    key = _normalise(name)
    row = rows.get(key) or next((r for r in rows.values() if r["capital"].lower() == key), None)
    if row is None:
        close = difflib.get_close_matches(key, list(rows), n=1, cutoff=0.6)
        if not close:
            raise ValueError(f"no country named {name!r}; known: {', '.join(r['country'] for r in rows.values())}")
        row = rows[close[0]]
    return row


@tool(timeout=2)
def lookup_country(name: str) -> str:
    """Look up a country (or its capital): capital, continent, population and area in km².

    Args:
        name: the country's English name, e.g. "Japan".
    """
    row = _row(name)
    return (
        f"{row['country']}: capital {row['capital']}, continent {row['continent']}, "
        f"population {int(row['population']):,}, area {int(row['area_km2']):,} km²."
    )


class Density(BaseModel):
    """A country's population density: the analyst's typed answer."""

    model_config = ConfigDict(frozen=True)
    country: str
    people_per_km2: float


@tool(timeout=2)
def compute_density(country: str) -> Density:
    """Compute a country's population density in people per km² (population / area).

    Args:
        country: the country's English name, e.g. "Japan".
    """
    row = _row(country)
    # the numbers a 135M model would have to copy come from the data; the division is the calculator's
    value = calculate(f"{row['population']} / {row['area_km2']}")
    return Density(country=row["country"], people_per_km2=round(value, 1))


# -- the team -------------------------------------------------------------------------------------
SETTINGS = ModelSettings(temperature=0.0, seed=42, max_tokens=48)


def build_team(model: Model, *, max_steps: int = 4) -> Sequential:
    """The demo team: a researcher (lookup) then an analyst (a typed `Density`), deterministic
    sampling.

    A 135M model rarely calls a tool unprompted and, left free, calls tools forever: each agent is
    steered to call its tool first (`guided_tool_choice`), the researcher then answers in text.
    The analyst's `output_type` is its output function `compute_density`: its result ends the run
    with the computed `Density` (a 135M model cannot be trusted to copy "124,500,000" into a
    calculator call, nor a computed 329.4 into its sentence: it writes other numbers). The
    machines cope either way: budgets end a runaway agent in FAILED."""
    researcher = Agent(
        "researcher",
        "You look up facts about countries with the lookup_country tool, then state them briefly.",
        model=model,
        tools=[lookup_country],
        max_steps=max_steps,
        settings=SETTINGS,
        tool_choice=guided_tool_choice("lookup_country"),
    )
    analyst = Agent(
        "analyst",
        "You compute the population density of the country found above with the compute_density tool.",
        model=model,
        output_type=compute_density,
        max_steps=max_steps,
        settings=SETTINGS,
        tool_choice=guided_tool_choice("compute_density"),
    )
    return Sequential("geo_team", [researcher, analyst])


def summary(result: RunResult, elapsed: float) -> str:
    """A human-readable transcript summary: path through the phases, tool calls, outcome."""
    lines = ["", "── transcript summary " + "─" * 50]
    for name, run_ in [(result.snapshot.machine, result), *((r.snapshot.machine, r) for r in result.children.values())]:
        path = [run_.trace[0].source.value] if run_.trace else []
        path += [t.target.value for t in run_.trace]
        lines.append(f"{name}: {' → '.join(path)}")
    results = {m.tool_call_id: m for m in result.snapshot.conversation.messages if isinstance(m, ToolMessage)}
    calls = [c for m in result.snapshot.conversation.messages if isinstance(m, AssistantMessage) for c in m.tool_calls]
    lines.append(f"tool calls: {len(calls)}")
    for c in calls:
        answer = results.get(c.id)
        outcome = "(unanswered!)" if answer is None else ("error: " if answer.is_error else "") + answer.content[:100]
        lines.append(f"  • {c.name}({c.arguments}) → {outcome}")
    usage = result.usage
    # llama.cpp's server sends no usage on a stream (see fsm_agents.models.OpenAIChat): say so, not "0/0"
    tokens = f"{usage.input_tokens}/{usage.output_tokens}" if usage.input_tokens or usage.output_tokens else "not reported"
    lines.append(f"messages: {len(result.snapshot.conversation)}; model calls: {usage.requests}; "
                 f"tokens in/out: {tokens}; {elapsed:.1f} s")  # fmt: skip
    if result.ok:
        output = result.output
        lines.append(f"DONE: {output!r}" if isinstance(output, BaseModel) else f"DONE: {output}")
    else:
        failure = result.failure
        lines.append(f"FAILED({failure.kind if failure else '?'}): {failure.message if failure else ''}")
    return "\n".join(lines)


async def watch(team: Sequential, question: str) -> RunResult:
    """Run `team` through `fsm_agents.stream`, printing as it goes: the model's words and tool
    calls as the local model writes them, what each effect returned, every transition."""
    result: RunResult | None = None
    writing: str | None = None  # the agent whose reply is being printed
    redact = Redactor()
    async for ev in stream(team, question, limits=Limits(model_timeout=180, tool_timeout=5)):
        if isinstance(ev, (TextDelta, ToolCallDelta)):
            if writing != ev.agent:
                print(f"    ✎ {ev.agent}: ", end="")
                writing = ev.agent
            text = ev.text if isinstance(ev, TextDelta) else (f"{ev.name}(" if ev.name else "") + ev.arguments
            print(redact(text), end="", flush=True)
            continue
        if writing is not None:
            print(flush=True)
            writing = None
        if isinstance(ev, EffectFinished):
            print(redact(f"    · {describe_event(ev.event)}"), flush=True)
        elif isinstance(ev, TransitionTaken):
            t = ev.taken
            who = ev.run_id.partition("/")[2] or team.name  # a child run's id ends with its task id
            print(f"  {who:>14} step {t.step:>3}: {t.source:<9} --{t.event}--> {t.target}", flush=True)
        elif isinstance(ev, Finished):
            result = ev.result
    assert result is not None
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    question = " ".join(args) or QUESTION
    print(f"starting the local model… (question: {question!r})", flush=True)
    with serve() as model:
        print(f"model ready: {model!r}", flush=True)
        started = time.monotonic()
        result = anyio.run(watch, build_team(model), question)
        elapsed = time.monotonic() - started
    print(summary(result, elapsed), flush=True)
    return 0 if result.phase.is_final else 1


if __name__ == "__main__":
    raise SystemExit(main())
