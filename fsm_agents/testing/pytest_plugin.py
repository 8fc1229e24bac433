"""pytest plugin (entry point `pytest11: fsm_agents`), loaded automatically once fsm_agents is
installed. It imports nothing heavy: hypothesis is only needed by `check_machine`.

Fixtures:
- `scripted_model`: the `ScriptedModel` class — `scripted_model(["answer", reply(...)])`;
- `function_model`: the `FunctionModel` class — `function_model(lambda request: "answer")`.

Marker `@pytest.mark.fsm_check(module_or_objects, examples=200, full_coverage=False)`: the test
first runs `check_machine` on every machine the module exports (see `check_module`), then its
own body; the reports are passed in if the test asks for the `fsm_reports` fixture.
"""

from __future__ import annotations

from typing import Any

import pytest

from fsm_agents.models.scripted import FunctionModel, ScriptedModel


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fsm_check(target, examples=200, full_coverage=False): run fsm_agents.testing.check_machine on every "
        "machine exported by `target` (a module, or a list of agents/patterns/machines) before the test",
    )


@pytest.fixture
def scripted_model() -> type[ScriptedModel]:
    return ScriptedModel


@pytest.fixture
def function_model() -> type[FunctionModel]:
    return FunctionModel


@pytest.fixture
def fsm_reports(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The `CheckReport`s of the `fsm_check` marker, by exported name (empty without the marker)."""
    marker = request.node.get_closest_marker("fsm_check")
    if marker is None:
        return {}
    from fsm_agents.testing.check import check_module

    target = marker.args[0] if marker.args else marker.kwargs["target"]
    return check_module(
        target,
        max_examples=int(marker.kwargs.get("examples", 200)),
        assert_full_coverage=bool(marker.kwargs.get("full_coverage", False)),
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("fsm_check")
    if marker is not None and isinstance(item, pytest.Function) and "fsm_reports" not in item.fixturenames:
        item.fixturenames.append("fsm_reports")  # the marker alone is enough to run the checks
