"""The testing kit: hypothesis strategies and invariant checks for your own test suites.

from fsm_agents.testing import check_machine, strategies
report = check_machine(my_agent, max_examples=500)
print(report)
"""

from fsm_agents.testing import strategies
from fsm_agents.testing.cassette import Cassette, ReplayModel, record, replay, replay_tools
from fsm_agents.testing.check import (
    DEFAULT,
    CheckReport,
    InvariantViolation,
    check_machine,
    check_module,
    exported_machines,
    history_problems,
)

__all__ = [
    "DEFAULT",
    "Cassette",
    "CheckReport",
    "InvariantViolation",
    "ReplayModel",
    "check_machine",
    "check_module",
    "exported_machines",
    "history_problems",
    "record",
    "replay",
    "replay_tools",
    "strategies",
]
