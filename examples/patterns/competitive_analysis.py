"""Competitive: conservative, aggressive and balanced analysts answer; an evaluator picks the best.

python -m examples.patterns.competitive_analysis
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from examples.patterns._common import answers, fixed, main_with
from fsm_agents import Agent, RunResult, run_sync
from fsm_agents.models import Model, ModelSettings
from fsm_agents.patterns import Competitive
from fsm_agents.state import ModelRequest

QUESTION = "How should we invest a 1M EUR innovation budget next year?"


class Verdict(BaseModel):
    """The evaluator's structured choice."""

    model_config = ConfigDict(frozen=True)

    winner: str
    reason: str


def judge(request: ModelRequest) -> str:
    names = [m.agent for m in request.messages if m.role == "assistant" and m.agent]
    winner = "balanced" if "balanced" in names else (names[0] if names else "none")
    return Verdict(winner=winner, reason=f"compared {len(names)} answers").model_dump_json()


def build(model: Model | None = None) -> Competitive:
    analysts = [
        Agent(
            "conservative",
            "Propose a low-risk plan.",
            model or fixed("80% proven bets, 20% reserve"),
            settings=ModelSettings(temperature=0.2),
        ),
        Agent(
            "aggressive",
            "Propose a high-risk, high-reward plan.",
            model or fixed("all in on two moonshots"),
            settings=ModelSettings(temperature=1.0),
        ),
        Agent(
            "balanced",
            "Propose a balanced plan.",
            model or fixed("60/30/10 across core, adjacent, moonshot"),
            settings=ModelSettings(temperature=0.6),
        ),
    ]
    evaluator = Agent(
        "evaluator",
        "Compare the analysts' plans and choose the best one. Reply as JSON {winner, reason}.",
        model or answers(judge),
        output_type=Verdict,
        output_retries=2,
    )
    return Competitive("investment_analysis", analysts, evaluator)


def run(pattern: Competitive, **kwargs: object) -> RunResult:
    return run_sync(pattern, QUESTION, **kwargs)  # type: ignore[arg-type]


def main() -> int:
    return main_with(build, lambda p, kw: run(p, **kw))


if __name__ == "__main__":
    raise SystemExit(main())
