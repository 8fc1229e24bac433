"""Sequential: a research → analysis → report pipeline sharing one conversation.

python -m examples.patterns.pipeline
"""

from __future__ import annotations

from examples.patterns._common import fixed, main_with
from fsm_agents import Agent, RunResult, run_sync
from fsm_agents.models import Model
from fsm_agents.patterns import Sequential

TOPIC = "Adoption of heat pumps in northern Europe"


def build(model: Model | None = None) -> Sequential:
    """The pipeline; agents on `model`, or on scripted models when None."""
    research = Agent(
        "research",
        "Collect the key facts about the topic as a short bullet list.",
        model or fixed("- sales doubled 2020-2023\n- subsidies in 9 countries\n- installers are scarce"),
    )
    analysis = Agent(
        "analysis",
        "Analyse the facts collected so far: drivers, risks, outlook.",
        model or fixed("Drivers: subsidies. Risk: installer shortage. Outlook: growth slows without training."),
    )
    report = Agent(
        "report",
        "Write a three-sentence executive report from the research and the analysis.",
        model
        or fixed("REPORT: Heat pump sales doubled on subsidies. Installer shortages are the main risk. Train installers."),
    )
    return Sequential("research_pipeline", [research, analysis, report])


def run(pattern: Sequential, **kwargs: object) -> RunResult:
    return run_sync(pattern, TOPIC, **kwargs)  # type: ignore[arg-type]


def main() -> int:
    return main_with(build, lambda p, kw: run(p, **kw))


if __name__ == "__main__":
    raise SystemExit(main())
