"""The shipped diagrams as the renderers lay them out: no two DOT labels overlap (Graphviz's own
`-Tjson` layout), and every committed Mermaid file renders with mermaid-cli in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from fsm_agents.diagrams import generate

REPO = Path(__file__).resolve().parent.parent
MMDC = REPO / ".node" / "node_modules" / ".bin" / "mmdc"
CHROMIUM = shutil.which("chromium")
DOT = shutil.which("dot")

needs_dot = pytest.mark.skipif(DOT is None, reason="Graphviz `dot` is not installed (make setup)")

Box = tuple[float, float, float, float, str]  # x0, y0, x1, y1 (points), the text


def label_boxes(layout: dict[str, Any]) -> list[tuple[str, list[Box]]]:
    """The text boxes Graphviz drew, grouped by the object (node, cluster or edge label) drawing
    them: from the `T` (text) operations of `_ldraw_`/`_hldraw_`/`_tldraw_` in `-Tjson` output
    (https://graphviz.org/docs/outputs/json/, xdot ops: https://graphviz.org/docs/outputs/canon/).
    A text at baseline `y` of font size `s` spans `[y - 0.25 s, y + 0.85 s]`."""
    groups: list[tuple[str, list[Box]]] = []
    for kind in ("objects", "edges"):
        for i, obj in enumerate(layout.get(kind, [])):
            for key in ("_ldraw_", "_hldraw_", "_tldraw_"):
                size = 14.0
                boxes: list[Box] = []
                for op in obj.get(key, []):
                    if op.get("op") == "F":
                        size = float(op["size"])
                    elif op.get("op") == "T":
                        x, y = (float(v) for v in op["pt"])
                        w = float(op["width"])
                        x0 = {"l": x, "r": x - w}.get(op.get("align", "c"), x - w / 2)
                        boxes.append((x0, y - 0.25 * size, x0 + w, y + 0.85 * size, op["text"]))
                if boxes:
                    groups.append((f"{kind}[{i}].{key}", boxes))
    return groups


def overlaps(layout: dict[str, Any], margin: float = 0.5) -> list[str]:
    """Pairs of texts of different objects whose boxes intersect (by more than `margin` points)."""
    found = []
    for (a, boxes_a), (b, boxes_b) in combinations(label_boxes(layout), 2):
        for ax0, ay0, ax1, ay1, at in boxes_a:
            for bx0, by0, bx1, by1, bt in boxes_b:
                if min(ax1, bx1) - max(ax0, bx0) > margin and min(ay1, by1) - max(ay0, by0) > margin:
                    found.append(f"{at!r} ({a}) overlaps {bt!r} ({b})")
    return found


def layout_of(dot_text: str) -> dict[str, Any]:
    assert DOT is not None
    proc = subprocess.run([DOT, "-Tjson"], input=dot_text.encode(), capture_output=True, timeout=120, check=True)
    layout: dict[str, Any] = json.loads(proc.stdout)
    return layout


@pytest.fixture(scope="module")
def shipped_dot() -> dict[str, str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO))  # examples.patterns names the shipped patterns
        files = generate(svg=False)
    return {name: data.decode() for name, data in files.items() if name.endswith(".dot")}


@needs_dot
def test_the_overlap_check_sees_overlapping_labels() -> None:
    """Two nodes pinned at one spot (neato -n) overlap; two apart do not."""
    on_top = 'digraph { layout=neato; a [label="first", pos="0,0!"]; b [label="second", pos="0.2,0!"] }'
    apart = 'digraph { layout=neato; a [label="first", pos="0,0!"]; b [label="second", pos="5,0!"] }'
    assert overlaps(layout_of(on_top))
    assert not overlaps(layout_of(apart))


@needs_dot
def test_no_two_labels_of_a_shipped_diagram_overlap(shipped_dot: dict[str, str]) -> None:
    """Every shipped DOT diagram, laid out by Graphviz: no text box intersects another's."""
    assert len(shipped_dot) >= 9
    bad = {name: found for name, dot in shipped_dot.items() if (found := overlaps(layout_of(dot)))}
    assert not bad, json.dumps(bad, indent=1, ensure_ascii=False)


PUPPETEER_CONFIG = {
    "executablePath": CHROMIUM,
    # the flags Chromium needs as root in this sandbox, without background connections
    "args": [
        "--no-sandbox",
        "--headless",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ],
}


@pytest.mark.skipif(
    CHROMIUM is None or not MMDC.exists(), reason="mermaid-cli (.node/) or Debian's chromium is missing: run `make setup`"
)
def test_every_committed_mermaid_file_renders_with_mermaid_cli(tmp_path: Path) -> None:
    """mermaid-cli (Mermaid's own parser and layout, in Chromium) renders each committed .mmd:
    one Markdown file holding them all, one browser start; any parse error fails the run."""
    committed = sorted((REPO / "diagrams").glob("*.mmd"))
    assert len(committed) >= 9
    doc = "".join(f"```mermaid\n{p.read_text()}```\n\n" for p in committed)
    (tmp_path / "all.md").write_text(doc)
    (tmp_path / "puppeteer.json").write_text(json.dumps(PUPPETEER_CONFIG))
    proc = subprocess.run(
        [str(MMDC), "-q", "-p", str(tmp_path / "puppeteer.json"), "-i", "all.md", "-o", "out.md"],
        cwd=tmp_path,
        capture_output=True,
        timeout=600,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PUPPETEER_SKIP_DOWNLOAD": "1", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    svgs = sorted(tmp_path.glob("out-*.svg"))
    assert len(svgs) == len(committed)
    for svg in svgs:
        text = svg.read_text()
        assert "<svg" in text and "Syntax error" not in text
