"""The README's quickstart really runs and prints what the README says it prints."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import sys
import types
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def test_quickstart_runs_and_prints_the_documented_output() -> None:
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    code = _blocks(section, "python")[0]
    expected = _blocks(section, "text")[0]
    assert len(code.strip().splitlines()) <= 20
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md quickstart", "exec"), {"__name__": "__readme__"})
    assert out.getvalue() == expected


def test_readme_names_exactly_the_two_setup_commands_and_ci_calls_the_test_one() -> None:
    text = README.read_text()
    setup = _blocks(text.split("## Set up and run", 1)[1].split("\n## ", 1)[0], "sh")[0]
    commands = [line.split("#")[0].strip() for line in setup.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def _section_outputs(heading: str, count: int) -> list[str]:
    """What each of the `count` python blocks of the README section `heading` prints, each run as
    a real module `__readme__` (so `@dataclass` finds its module)."""
    section = README.read_text().split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    codes = _blocks(section, "python")
    assert len(codes) == count
    outputs = []
    for i, code in enumerate(codes):
        out = io.StringIO()
        module = types.ModuleType("__readme__")
        sys.modules["__readme__"] = module
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"README.md {heading} {i}", "exec"), module.__dict__)
        finally:
            del sys.modules["__readme__"]
        outputs.append(out.getvalue())
    return outputs


def test_open_run_snippets_run_and_show_what_they_say() -> None:
    """The stream, iterate and approval snippets of the README run as they are."""
    outputs = _section_outputs("Open runs", 3)
    assert "Hello!" in outputs[0] and "PLANNING -> DONE" in outputs[0] and "done Hello!" in outputs[0]
    assert outputs[1].splitlines() == [
        "model_replied -> EXECUTING",
        "tools_finished -> PLANNING",
        "model_replied -> DONE",
        "5",
    ]
    first, last = outputs[2].splitlines()
    assert first.startswith("suspended [('refund', ") and "900" in first
    assert last == "done A1 refunded; B2 needs a manager."


def test_connector_snippets_run() -> None:
    """The document library and web search snippets of the README's Connectors section run as
    they are (the code interpreter's is run by tests/test_connectors_code.py, which needs bwrap)."""
    import os

    text = README.read_text()
    section = text.split("## Connectors", 1)[1].split("\n## ", 1)[0]
    codes = [c for c in _blocks(section, "python") if "document_library(" in c or "web_search(" in c]
    assert len(codes) == 2
    cwd = os.getcwd()
    os.chdir(README.parent)
    try:
        outputs = []
        for i, code in enumerate(codes):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"README.md connectors {i}", "exec"), {"__name__": "__readme__"})
            outputs.append(out.getvalue())
    finally:
        os.chdir(cwd)
    citation, answer = outputs[0].splitlines()
    assert citation.startswith("returns.md") and answer == "Within 5 business days."
    urls = ast.literal_eval(outputs[1])  # a printed list of URLs
    assert len(urls) == 2 and all(u.startswith("http") for u in urls)


def test_tool_contract_snippets_run_and_show_what_they_say() -> None:
    """The run-context, typed-output/limits, guardrail and MCP snippets of the README run as they
    are (the MCP one against the real `mcp-server-time` over stdio)."""
    outputs = [out.splitlines() for out in _section_outputs("The tool-call contract", 4)]
    assert outputs[0] == ["4200 -> A1 holds 42.00."]  # the tool read the deps
    assert outputs[1] == ["(City(name='Lima', country='Peru'),)", "failed usage_limit requests"]
    assert outputs[2] == ["failed guardrail no_account_numbers"]
    (clock,) = outputs[3]
    assert re.fullmatch(r"Asia/Tokyo \+09:00", clock)
