"""The `fsm-agents` shell (issue 13, item 15): `list` and `fork`, the run id of a stored run,
not-found errors that name the CLI command, and one-line errors (exit 1 or 2, no traceback) for
the inputs that used to end in a traceback."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fsm_agents import __version__
from fsm_agents.cli import load_object, main
from fsm_agents.runtime import as_machine

EXAMPLE_TARGET = "examples.patterns.pipeline:build"  # the target the CLI's hints name


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # store_helpers:scripted_calc, ...


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_run_with_a_store_prints_the_run_id_then_list_history_and_fork_read_it(
    helpers: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "s.db")
    assert main(["run", "store_helpers:scripted_calc", "1+2?", "--store", db]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "3"  # stdout: the output alone
    run_id = captured.err.split("run id: ")[1].split()[0]
    assert f"fsm-agents history {run_id} --store {db}" in captured.err

    assert main(["list", "--store", db]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1 and listed[0].startswith(run_id) and "records" in listed[0]
    assert main(["list", "--store", db, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["id"] == run_id and info["records"] >= 3

    assert main(["history", run_id, "--store", db, "--json"]) == 0
    tool_seq = next(e["seq"] for e in map(json.loads, capsys.readouterr().out.splitlines()) if e["type"] == "tool.execution")
    assert main(["fork", run_id, "--store", db, "--at", str(tool_seq + 1), "--new-id", "branch"]) == 0
    assert capsys.readouterr().out.strip() == "branch"
    assert main(["list", "--store", db]) == 0
    assert {line.split()[0] for line in capsys.readouterr().out.splitlines()} == {run_id, "branch"}
    assert main(["fork", run_id, "--store", db, "--at", "1"]) == 0
    assert capsys.readouterr().out.strip().startswith(f"{run_id}~")


@pytest.mark.parametrize("command", ["history", "fork", "replay"])
def test_a_missing_conversation_points_to_fsm_agents_list(
    command: str, helpers: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "s.db")
    assert main(["run", "store_helpers:scripted_calc", "1+2?", "--store", db]) == 0
    capsys.readouterr()
    extra = {"history": [], "fork": ["--at", "1"], "replay": ["--machine", "store_helpers:calc_agent"]}[command]
    assert main([command, "nope", "--store", db, *extra]) == 1
    err = one_line_error(capsys)
    assert f"no conversation 'nope' in {db}: list them with `fsm-agents list --store {db}`" in err
    assert "Conversations" not in err  # not a Python API


def test_list_of_a_missing_store_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--store", str(tmp_path / "none.db")]) == 1
    assert "no store at" in one_line_error(capsys)


def takes_a_model(model: object) -> object:
    """A factory that needs an argument."""
    return model


def raises_inside() -> object:
    """A factory that fails."""
    raise RuntimeError("database down")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "test_cli:takes_a_model", "hi"], "test_cli:takes_a_model is a function that needs argument(s) model"),
        (["run", "test_cli:raises_inside", "hi"], "test_cli:raises_inside() raised RuntimeError: database down"),
        (["run", "examples.local_agent:calculate", "1+1"], "examples.local_agent:calculate is a tool, not an agent"),
        (["check", "examples.local_agent:lookup_country"], "is a tool, not an agent"),
        (["diagram", "examples.local_agent:build_team", "-o", "x.mmd"], "needs argument(s) model"),
        (["run", "store_helpers:scripted_calc", ""], "the input is empty"),
        (["run", "store_helpers:scripted_calc", "   "], "the input is empty"),
    ],
)
def test_bad_targets_and_inputs_are_one_line_errors(
    argv: list[str], expected: str, helpers: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert main(argv) == 1
    assert expected in one_line_error(capsys)


def test_empty_stdin_is_refused(helpers: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["run", "store_helpers:scripted_calc"]) == 1
    assert "the input is empty" in one_line_error(capsys)


def test_diagram_into_a_missing_folder_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "no" / "such" / "folder" / "x.mmd"
    assert main(["diagram", EXAMPLE_TARGET, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {out}: the folder {out.parent} does not exist") and err.count("\n") == 1
    assert main(["diagram", EXAMPLE_TARGET, "-o", str(tmp_path / "x.mmd")]) == 0


@pytest.mark.parametrize("value", ["-3", "0", "many"])
def test_check_examples_must_be_a_positive_number(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", EXAMPLE_TARGET, "--examples", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --examples:" in err and "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"fsm-agents {__version__}"


def test_the_usage_hint_names_an_object_that_exists(capsys: pytest.CaptureFixture[str]) -> None:
    """The example target the CLI suggests loads (a factory without arguments) and is a machine."""
    as_machine(load_object(EXAMPLE_TARGET))
    assert main(["run", "no-colon-here", "x"]) == 1
    assert EXAMPLE_TARGET in one_line_error(capsys)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert EXAMPLE_TARGET in capsys.readouterr().out
