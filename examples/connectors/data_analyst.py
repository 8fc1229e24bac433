"""A data analyst: answers questions about a CSV by writing Python that runs in the code sandbox.

    python -m examples.connectors.data_analyst ["your question"]

The analyst has one tool, `run_python` from `fsm_agents.connectors.code_interpreter()`, and
`examples/data/countries.csv` in its work folder (`files=`): the code it writes runs under
bubblewrap (no network, read-only system, CPU/memory/time limits) and the tool result (stdout,
stderr, exit status, files written) goes back into the conversation. It runs on the embedded
local model (SmolLM2-135M) when that can be served — a 135M model writes poor code: its errors
come back as tool errors, and the agent ends in DONE or FAILED(budget_exhausted) with a complete
history — else on a scripted analyst that writes the analysis and reports what it printed.
Needs bubblewrap (`apt-get install bubblewrap`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from examples.patterns._common import main_with
from fsm_agents import Agent, AssistantMessage, FunctionModel, RunResult, ToolMessage, run_sync
from fsm_agents.agent import guided_tool_choice
from fsm_agents.connectors import code_interpreter
from fsm_agents.connectors.code_interpreter import CodeInterpreter
from fsm_agents.models import Model, ModelSettings, call, reply
from fsm_agents.state import ModelRequest

DATA = Path(__file__).parent.parent / "data" / "countries.csv"
QUESTION = (
    "In countries.csv, which continent has the largest total population, and what is each continent's population density?"
)
INSTRUCTIONS = (
    "You are a data analyst. The file countries.csv (columns: country, capital, continent, population, "
    "area_km2) is in your current folder. Answer by calling run_python with Python code that reads it "
    "with the csv module and prints the figures, then answer in one or two sentences with the numbers printed."
)

ANALYSIS = """\
import csv
from collections import defaultdict

population, area = defaultdict(int), defaultdict(int)
with open("countries.csv", newline="", encoding="utf-8") as f:
    for row in csv.DictReader(f):
        population[row["continent"]] += int(row["population"])
        area[row["continent"]] += int(row["area_km2"])
for continent in sorted(population, key=population.get, reverse=True):
    print(f"{continent}: population {population[continent]}, density {population[continent] / area[continent]:.1f} per km2")
"""


def scripted_analyst(request: ModelRequest) -> AssistantMessage | str:
    """The scripted model: first the analysis code, then an answer built from what it printed."""
    last = request.messages[-1] if len(request.messages) else None
    if not isinstance(last, ToolMessage):
        return reply(None, call("run_python", code=ANALYSIS))
    if last.is_error:
        return f"The analysis failed: {last.content[:300]}"
    lines = json.loads(last.content)["stdout"].splitlines()
    return f"{lines[0].split(':')[0]} has the largest total population. By continent: " + "; ".join(lines)


SETTINGS = ModelSettings(temperature=0.0, seed=42, max_tokens=256)


def build(model: Model | None = None, interpreter: CodeInterpreter | None = None, *, max_steps: int = 4) -> Agent:
    """The analyst agent on `model` (default: the scripted analyst) with `interpreter` (default:
    a code interpreter holding countries.csv; the caller closes one it passes)."""
    tools = interpreter if interpreter is not None else code_interpreter(files=[DATA], wall_seconds=20)
    return Agent(
        "data_analyst",
        INSTRUCTIONS,
        model or FunctionModel(scripted_analyst),
        tools=tools,
        max_steps=max_steps,
        settings=SETTINGS if model is not None else None,
        tool_choice=guided_tool_choice("run_python"),
    )


def run(agent: Agent, question: str = QUESTION, **kwargs: object) -> RunResult:
    return run_sync(agent, question, **kwargs)  # type: ignore[arg-type]


def transcript(result: RunResult) -> str:
    """The code the analyst ran and what came back, call by call."""
    answers = {m.tool_call_id: m for m in result.snapshot.conversation.messages if isinstance(m, ToolMessage)}
    lines = []
    for m in result.snapshot.conversation.messages:
        for c in m.tool_calls if isinstance(m, AssistantMessage) else ():
            answer = answers.get(c.id)
            status = "(unanswered)" if answer is None else ("error: " if answer.is_error else "") + answer.content[:400]
            lines += [f"── {c.name}({c.arguments[:400]})", f"   → {status}"]
    return "\n".join(lines)


def main() -> int:
    question = " ".join(sys.argv[1:]) or QUESTION

    def go(agent: Agent, kwargs: dict[str, object]) -> RunResult:
        result = run(agent, question, **kwargs)
        print(transcript(result), flush=True)
        return result

    with code_interpreter(files=[DATA], wall_seconds=20) as interpreter:
        return main_with(lambda model: build(model, interpreter), go)


if __name__ == "__main__":
    raise SystemExit(main())
