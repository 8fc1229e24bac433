"""Stored pattern runs overlaid on their diagrams (children included), the run viewer page, the
`diagram --run` and `view` commands with their one-line errors, and the page in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fsm_agents import Agent, ScriptedModel, run_sync
from fsm_agents.cli import main
from fsm_agents.diagrams import to_dot
from fsm_agents.models import call, reply
from fsm_agents.state import Phase
from fsm_agents.store import ConversationNotFound, SQLiteStore
from fsm_agents.viewer import load_run, view_html

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
PIPELINE = "examples.patterns.pipeline:build"


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.chdir(REPO)


def lookup(query: str) -> str:
    """Look something up."""
    if query == "boom":
        raise ValueError("the index is down")
    return f"found {query}"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store holding a pipeline run ("pipe"), an agent run with a tool call and a tool error
    ("solo") and a failed agent run ("broken")."""
    from examples.patterns.pipeline import build

    path = tmp_path / "runs.db"
    store = SQLiteStore(str(path))
    try:
        assert run_sync(build(), "heat pumps", store=store, conversation_id="pipe").ok
        model = ScriptedModel([reply(None, call("lookup", query="x"), call("lookup", query="boom")), reply("the answer")])
        assert run_sync(Agent("solo", tools=[lookup], model=model), "q", store=store, conversation_id="solo").ok
        failing = Agent("solo", tools=[lookup], model=ScriptedModel([]))  # runs out of replies: model_failed
        assert not run_sync(failing, "q", store=store, conversation_id="broken").ok
    finally:
        store.close()
    return path


def test_a_stored_pattern_run_loads_with_its_children(db: Path) -> None:
    from examples.patterns.pipeline import build

    pipeline = build()
    store = SQLiteStore(str(db))
    try:
        run = load_run(store, "pipe", pipeline)
    finally:
        store.close()
    assert run.result.snapshot.phase is Phase.DONE
    assert [c.snapshot.machine for c in run.result.children.values()] == [
        "agent:research",
        "agent:analysis",
        "agent:report",
    ]
    dot = to_dot(pipeline, run.result)
    # every stage ran once and its own transitions are counted inside its cluster
    for i in (1, 2, 3):
        assert f"runs stage {i} ×1" in dot
    assert re.search(r'research_PLANNING -> research_DONE \[label="model_replied \[else\] ×1"', dot)
    assert "research_DONE [" in dot and "#ffe08a" in dot.split("research_DONE [", 1)[1].split("]", 1)[0]


def test_cli_diagram_overlays_a_stored_run(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.mmd"
    assert main(["diagram", PIPELINE, "--run", "pipe", "--store", str(db), "-o", str(out)]) == 0
    text = out.read_text()
    assert "runs stage 3 ×1" in text and "class " in text
    visited = next(line for line in text.splitlines() if line.endswith(" visited"))
    assert "analysis_DONE" in visited and "report_DONE" in visited


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["diagram", "fsm_agents.diagrams:SHIPPED", "-o", "{tmp}/a.svg"], "expected a machine"),
        (["diagram", PIPELINE, "--run", "nope", "--store", "{db}", "-o", "{tmp}/a.svg"], "nope"),
        (["diagram", PIPELINE, "--run", "solo", "--store", "{db}", "-o", "{tmp}/a.svg"], "agent:solo"),
        (["diagram", PIPELINE, "--run", "pipe", "-o", "{tmp}/a.svg"], "--store"),
        (["diagram", PIPELINE, "-o", "{tmp}/no/such/folder/a.svg"], "does not exist"),
        (["diagram", PIPELINE, "--depth", "-1", "-o", "{tmp}/a.svg"], "depth"),
        (["view", "nope", "--store", "{db}", "-o", "{tmp}/a.html"], "nope"),
        (["view", "pipe", "--store", "{db}", "-o", "{tmp}/no/such/folder/a.html"], "does not exist"),
        (["view", "solo", "--store", "{db}", "-o", "{tmp}/a.html"], "--machine"),
        (["view", "pipe", "--store", "{db}", "--machine", "fsm_agents.diagrams:SHIPPED", "-o", "{tmp}/a.html"], "machine"),
        (["view", "pipe", "--store", "{tmp}/missing.db", "-o", "{tmp}/a.html"], "no store"),
    ],
)
def test_bad_input_is_a_one_line_error(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    args = [a.format(tmp=tmp_path, db=db) for a in argv]
    assert main(args) == 1
    assert says in one_line_error(capsys)
    assert not (tmp_path / "a.svg").exists() and not (tmp_path / "a.html").exists()


def test_unknown_conversation_is_conversation_not_found(db: Path) -> None:
    from examples.patterns.pipeline import build

    store = SQLiteStore(str(db))
    try:
        with pytest.raises(ConversationNotFound):
            load_run(store, "nope", build())
    finally:
        store.close()


def rows(page: str, cls: str) -> list[str]:
    table = page.split(f'<table class="{cls}">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr[ >].*?</tr>", table)[1:]  # without the header


@needs_dot
def test_the_viewer_page_shows_diagram_timeline_calls_tools_children(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "pipe.html"
    assert main(["view", "pipe", "--store", str(db), "-o", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "http://" not in page.replace("http://www.w3.org", "")  # nothing fetched at view time
    assert "<script" not in page
    assert page.count("<details open>") == 3  # the three stages
    assert "agent:research" in page and "agent:report" in page
    # the pipeline's own timeline: 3 stages, each EXECUTING → OBSERVING → PLANNING (→ EXECUTING | DONE)
    assert len(rows(page, "timeline")) == 9

    solo = tmp_path / "solo.html"
    assert main(["view", "solo", "--store", str(db), "--machine", "tests.test_viewer:solo_agent", "-o", str(solo)]) == 0
    page = solo.read_text()
    calls = rows(page, "models")
    assert len(calls) == 2 and " ms</td>" in calls[0]  # latency from the store's timestamps
    tools = rows(page, "tools")
    assert len(tools) == 2
    assert "found x" in tools[0] and 'class="error"' in tools[1] and "the index is down" in tools[1]
    assert "{&quot;query&quot;: &quot;boom&quot;}" in tools[1]  # arguments, escaped

    broken = tmp_path / "broken.html"
    assert main(["view", "broken", "--store", str(db), "--machine", "tests.test_viewer:solo_agent", "-o", str(broken)]) == 0
    page = broken.read_text()
    assert '<div class="failure"><b>FAILED (model_error)</b>' in page
    assert 'class="transition last failed"' in page


def solo_agent() -> Agent:
    return Agent("solo", tools=[lookup])


def test_view_html_escapes_what_the_run_says() -> None:
    agent = Agent("solo", model=ScriptedModel([reply("<script>alert(1)</script>")]))
    result = run_sync(agent, "<b>hi</b>")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed")
    page = view_html(result, agent)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.skipif(CHROMIUM is None or shutil.which("dot") is None, reason="needs Debian's chromium and Graphviz")
def test_the_viewer_page_renders_in_headless_chromium(db: Path, tmp_path: Path) -> None:
    """Chromium loads the page from a file (no network), lays it out and paints it: the DOM it
    built holds the diagram and the first and last timeline rows, and the screenshot shows the
    diagram's visited-state amber and the last row's green."""
    from PIL import Image

    page = tmp_path / "pipe.html"
    assert main(["view", "pipe", "--store", str(db), "-o", str(page)]) == 0
    assert CHROMIUM is not None
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
    ]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, timeout=120, check=True).stdout.decode()
    assert "<svg" in dom and 'class="transition' in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1400,6000", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 6000)
    colors = {rgb for _, rgb in image.getcolors(maxcolors=1 << 20) or []}
    assert (0xFF, 0xE0, 0x8A) in colors  # a visited state of the overlaid diagram
    assert (0xC8, 0xEC, 0xD0) in colors  # the last timeline row (the run ended DONE)
