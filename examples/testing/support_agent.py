"""A user's own agent, as a user would write it: order support with two tools.

`examples/testing/test_support_agent.py` tests it three ways (invariants, a targeted property,
a replayed cassette recorded on the embedded local model). `RECORD=1 python -m
examples.testing.support_agent` re-records the cassette on the local model.
"""

from __future__ import annotations

import os
from pathlib import Path

from fsm_agents import Agent, tool
from fsm_agents.agent import guided_tool_choice
from fsm_agents.models import Model
from fsm_agents.models import ModelSettings as Settings

ORDERS = {"A100": "shipped on 2026-11-20, arriving 2026-11-24", "B200": "being packed", "C300": "delivered"}
CASSETTE = Path(__file__).parent / "cassettes" / "order_status.json"


@tool(idempotent=True)
def order_status(order_id: str) -> str:
    """Look up where an order is.

    Args:
        order_id: The order number, e.g. "A100".
    """
    status = ORDERS.get(order_id.strip().upper())
    if status is None:
        return f"No order {order_id!r}. Known orders: {', '.join(sorted(ORDERS))}."
    return f"Order {order_id.upper()}: {status}."


def support_agent(model: Model | None = None) -> Agent:
    """The order-support agent (its model can be set later with `run(..., models=...)`)."""
    return Agent(
        "support",
        "You answer questions about orders. Call order_status with the order number, then answer in one sentence.",
        model,
        tools=[order_status],
        max_steps=4,
        settings=Settings(temperature=0.0, seed=7, max_tokens=96),
        tool_choice=guided_tool_choice("order_status"),
    )


def main() -> None:  # pragma: no cover - records a cassette on the local model
    from fsm_agents import run_sync
    from fsm_agents.local import serve
    from fsm_agents.testing import record

    with serve() as model:
        result = run_sync(support_agent(model), "Where is my order A100?", run_id="order-status")
    print(result.phase, result.output, result.failure)
    if os.environ.get("RECORD"):
        record(result).save(CASSETTE)
        print(f"recorded {len(result.events)} interactions to {CASSETTE}")


if __name__ == "__main__":  # pragma: no cover
    main()
