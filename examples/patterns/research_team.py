"""Parallel: tech, market and academic researchers work at once; a synthesizer merges their findings.

python -m examples.patterns.research_team
"""

from __future__ import annotations

from examples.patterns._common import answers, fixed, main_with
from fsm_agents import Agent, RunResult, run_sync
from fsm_agents.models import Model
from fsm_agents.patterns import Parallel
from fsm_agents.state import ModelRequest

QUESTION = "Should we build our product on solid-state batteries?"


def synthesize(request: ModelRequest) -> str:
    found = [m.content for m in request.messages if m.role == "assistant" and m.content]
    return "SYNTHESIS of " + str(len(found)) + " findings: " + " | ".join(found)


def build(model: Model | None = None, *, on_failure: str = "report") -> Parallel:
    researchers = [
        Agent(
            "tech",
            "Assess the technology: maturity, performance, risks.",
            model or fixed("energy density 2x; cycle life unproven"),
        ),
        Agent(
            "market", "Assess the market: suppliers, prices, demand.", model or fixed("two suppliers; prices fall 20%/year")
        ),
        Agent("academic", "Summarise the academic literature.", model or fixed("dendrite growth solved in lab conditions")),
    ]
    synthesizer = Agent(
        "synthesizer", "Merge the researchers' findings into one recommendation.", model or answers(synthesize)
    )
    return Parallel("research_team", researchers, synthesizer=synthesizer, max_concurrency=3, on_failure=on_failure)  # type: ignore[arg-type]


def run(pattern: Parallel, **kwargs: object) -> RunResult:
    return run_sync(pattern, QUESTION, **kwargs)  # type: ignore[arg-type]


def main() -> int:
    return main_with(build, lambda p, kw: run(p, **kw))


if __name__ == "__main__":
    raise SystemExit(main())
