"""Handoffs: customer service triage hands the conversation to technical, billing or sales agents.

python -m examples.patterns.customer_service ["your message"]
"""

from __future__ import annotations

import sys

from examples.patterns._common import answers, calls, last_user, main_with
from fsm_agents import Agent, AssistantMessage, RunResult, run_sync
from fsm_agents.models import Model
from fsm_agents.patterns import Handoffs
from fsm_agents.state import ModelRequest

MESSAGE = "I was charged twice for my subscription this month."
TOPICS = {
    "billing": ("charge", "invoice", "refund"),
    "technical": ("error", "login", "crash"),
    "sales": ("price", "upgrade", "plan"),
}


def triage(request: ModelRequest) -> str | AssistantMessage:
    text = last_user(request).lower()
    for agent, words in TOPICS.items():
        if any(w in text for w in words):
            return calls((f"transfer_to_{agent}", {}))
    return "Could you tell me more about your issue?"


def build(model: Model | None = None, *, max_handoffs: int = 2) -> Handoffs:
    triage_agent = Agent(
        "triage",
        "Greet the customer and transfer to technical, billing or sales.",
        model or answers(triage),
        handoffs=["technical", "billing", "sales"],
    )
    specialists = [
        Agent("technical", "Solve technical problems.", model or answers(lambda r: "Please reset your password.")),
        Agent("billing", "Handle charges and refunds.", model or answers(lambda r: "I refunded the duplicate charge.")),
        Agent("sales", "Answer plan and pricing questions.", model or answers(lambda r: "The Pro plan is 20 EUR/month.")),
    ]
    return Handoffs("customer_service", triage_agent, specialists, max_handoffs=max_handoffs)


desk = build()  # module level: a Temporal worker imports a machine by its name (README, "Temporal")


def run(pattern: Handoffs, message: str = MESSAGE, **kwargs: object) -> RunResult:
    return run_sync(pattern, message, **kwargs)  # type: ignore[arg-type]


def main() -> int:
    message = " ".join(sys.argv[1:]) or MESSAGE
    return main_with(build, lambda p, kw: run(p, message, **kw))


if __name__ == "__main__":
    raise SystemExit(main())
