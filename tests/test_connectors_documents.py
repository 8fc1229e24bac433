"""`document_library`: extraction and citations per format, incremental re-indexing, the
persistent index, bad input, an agent using it, and retrieval on a real corpus nobody here
wrote: the Python documentation Debian's `python3-doc` installs (`make sysdeps`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_agents import Agent, ToolMessage, run_sync
from fsm_agents.connectors import (
    DocumentLibrary,
    DocumentLibraryError,
    DocumentNotFound,
    EmptyQuery,
    Passage,
    document_library,
)
from fsm_agents.connectors.documents import _split
from fsm_agents.errors import InvalidDefinition
from fsm_agents.models.scripted import ScriptedModel, call, reply

PYTHON_DOCS = Path("/usr/share/doc/python3-doc/html")

GUIDE_MD = """\
# Shipping guide

Orders leave the warehouse within two business days.

## Returns

You may return any item within 30 days. Refunds reach your card in 5 business days.

```sh
# this line is code, not a heading
echo refund
```

## International shipping

Customs duties are paid by the recipient.
"""

FAQ_HTML = """\
<!DOCTYPE html>
<html><head><title>Support FAQ</title><style>.x { color: red }</style><script>var refund = 1;</script></head>
<body>
<nav><a href="/">Home</a> navigation refund link</nav>
<div role="main">
<section id="accounts"><h1>Accounts<a class="headerlink" href="#accounts">¶</a></h1>
<p>To reset your password, open <b>Settings</b> and choose
   <i>Reset password</i>.</p>
<section id="two-factor"><h2>Two-factor authentication</h2>
<p>Enable it under Security. Backup codes work once each.</p>
<pre>code   keeps
   its spacing</pre>
</section></section>
</div>
</body></html>
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_pdf(path: Path, pages: list[str]) -> Path:
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(path))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    write(root / "guide.md", GUIDE_MD)
    write(root / "faq.html", FAQ_HTML)
    write(root / "notes" / "warranty.txt", "Warranty\n\nEvery lamp has a two-year warranty.\n\nBatteries: six months.\n")
    write(root / "ignored.csv", "refund,warranty\n")
    write(root / ".hidden" / "secret.md", "# refund secret\n")
    make_pdf(root / "manual.pdf", ["Page one: unpacking the lamp.", "Page two: charging the battery overnight."])
    return root


def only(library: DocumentLibrary, query: str, file: str) -> Passage:
    hits = [p for p in library.search(query, k=10) if p.file == file]
    assert hits, f"{file} not found for {query!r}: {[p.file for p in library.search(query, k=10)]}"
    return hits[0]


def test_markdown_sections_and_offsets_into_the_file(corpus: Path) -> None:
    with document_library(corpus) as library:
        hit = library.search("refund card days")[0]
        assert (hit.file, hit.section, hit.anchor, hit.page) == ("guide.md", "Shipping guide › Returns", "returns", None)
        source = (corpus / "guide.md").read_text()
        assert source[hit.start : hit.end] == hit.text
        assert hit.text.startswith("## Returns") and "echo refund" in hit.text  # the code block stays in its section
        assert hit.citation == f"guide.md#returns (Shipping guide › Returns), chars {hit.start}-{hit.end}"
        sections = {p.section for p in library.search("code heading line refund customs", k=10) if p.file == "guide.md"}
        assert "Shipping guide › Returns › this line is code, not a heading" not in sections


def test_a_lone_heading_joins_the_section_below_it(tmp_path: Path) -> None:
    write(tmp_path / "a.md", "# Lamps\n\n## Charging\n\nUse USB-C.\n")
    with document_library(tmp_path) as library:
        [hit] = library.search("lamps charging usb", k=5)
    assert (hit.section, hit.anchor, hit.start, hit.text) == (
        "Lamps › Charging",
        "charging",
        0,
        "# Lamps\n\n## Charging\n\nUse USB-C.",
    )


def test_html_main_content_sections_and_offsets_into_extracted_text(corpus: Path) -> None:
    with document_library(corpus) as library:
        hit = only(library, "backup codes", "faq.html")
        assert (hit.title, hit.section, hit.anchor) == ("Support FAQ", "Accounts › Two-factor authentication", "two-factor")
        text = library.text("faq.html")
        assert text[hit.start : hit.end] == hit.text
        assert "code   keeps\n   its spacing" in text  # <pre> keeps its whitespace
        assert "open Settings and choose Reset password." in text  # inline tags and line breaks collapse
        assert "¶" not in text and "var refund" not in text and "navigation" not in text and "color" not in text
        account = only(library, "reset password", "faq.html")
        assert (account.section, account.anchor) == ("Accounts", "accounts")


def test_pdf_pages_and_plain_text(corpus: Path) -> None:
    with document_library(corpus) as library:
        hit = only(library, "charging battery overnight", "manual.pdf")
        assert hit.page == 2 and hit.section is None and "charging the battery" in hit.text
        page_two = library.text("manual.pdf").split("\f")[1]
        assert page_two[hit.start : hit.end] == hit.text
        txt = only(library, "warranty lamp", "notes/warranty.txt")
        assert (corpus / "notes" / "warranty.txt").read_text()[txt.start : txt.end] == txt.text


def test_exclude_patterns_are_kept_by_the_store(corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "index.sqlite"
    with document_library(corpus, store=store, exclude=["notes", "*.pdf"]) as library:
        assert {Path(p).name for p in map(str, library.files())} == {"guide.md", "faq.html"}
    with document_library(store=store) as reopened:
        assert reopened.exclude == ("notes", "*.pdf") and reopened.stats()["files"] == 2


def test_unsupported_and_hidden_files_are_not_indexed(corpus: Path) -> None:
    with document_library(corpus) as library:
        assert library.stats()["files"] == 4
        assert {p.file for p in library.search("refund secret warranty", k=20)} <= {
            "guide.md",
            "faq.html",
            "notes/warranty.txt",
            "manual.pdf",
        }


def test_incremental_reindex_on_change_touch_add_and_delete(corpus: Path) -> None:
    with document_library(corpus, refresh_every=None) as library:
        first = library.stats()
        guide = corpus / "guide.md"
        guide.write_text(GUIDE_MD.replace("30 days", "ninety days"))
        stats = library.refresh()
        assert (stats.added, stats.updated, stats.removed, stats.unchanged) == (0, 1, 0, 3)
        assert "ninety days" in only(library, "return item days", "guide.md").text
        assert not [p for p in library.search("30", k=20) if p.file == "guide.md"]

        os.utime(corpus / "faq.html", ns=(1, 1))  # new mtime, same content: hashed, not re-parsed
        stats = library.refresh()
        assert (stats.updated, stats.unchanged, stats.chunks) == (0, 4, 0)

        write(corpus / "new.md", "# Gift cards\n\nGift cards never expire.\n")
        (corpus / "notes" / "warranty.txt").unlink()
        stats = library.refresh()
        assert (stats.added, stats.removed) == (1, 1)
        assert only(library, "gift cards expire", "new.md").section == "Gift cards"
        assert not [p for p in library.search("warranty batteries", k=20) if p.file == "notes/warranty.txt"]
        assert library.stats()["files"] == first["files"]


def test_a_search_rescans_when_refresh_every_has_passed(corpus: Path) -> None:
    with document_library(corpus, refresh_every=0) as library:
        write(corpus / "late.txt", "The zeppelin arrives at noon.")
        assert library.search("zeppelin")[0].file == "late.txt"
    with document_library(corpus, refresh_every=None) as library:
        write(corpus / "later.txt", "The dirigible arrives at dusk.")
        assert library.search("dirigible") == []
        library.refresh()
        assert library.search("dirigible")[0].file == "later.txt"


def test_persistent_store_reopens_without_reindexing(corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "index.sqlite"
    with document_library(corpus, store=store) as library:
        expected = library.search("refund")
    with document_library(store=store) as reopened:  # the paths come from the index
        assert reopened.refresh().unchanged == 4
        assert reopened.search("refund") == expected
    (corpus / "guide.md").write_text("# Guide\n\nNo more refunds.\n")
    with document_library(corpus, store=store) as changed:
        assert changed.search("refunds")[0].text == "# Guide\n\nNo more refunds."
    with document_library(corpus, store=store, chunk_chars=300) as rechunked:  # new chunking: rebuilt
        assert rechunked.stats()["files"] == 4


def test_bad_definitions_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(DocumentNotFound, match="does not exist"):
        document_library(tmp_path / "nope")
    with pytest.raises(DocumentNotFound, match="not a supported document"):
        document_library(write(tmp_path / "data.csv", "a,b"))
    with pytest.raises(DocumentNotFound, match="does not exist"):
        document_library(store=tmp_path / "missing.sqlite")
    with pytest.raises(InvalidDefinition, match="needs paths"):
        document_library()
    with pytest.raises(InvalidDefinition, match="chunk_chars"):
        document_library(tmp_path, chunk_chars=10)
    assert isinstance(DocumentNotFound("x"), FileNotFoundError)


def test_a_file_that_is_not_an_index_is_a_typed_error(corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "notes.sqlite"
    store.write_bytes(b"not a database" * 100)
    with pytest.raises(DocumentLibraryError, match=r"cannot open the index.*delete it to rebuild it"):
        document_library(corpus, store=store)
    with pytest.raises(DocumentLibraryError, match="is not a document index"):
        document_library(store=store)


def test_a_file_that_cannot_be_parsed_is_skipped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    write(tmp_path / "ok.md", "# Fine\n\nreadable\n")
    with document_library(tmp_path) as library:
        assert library.stats()["files"] == 1
        assert library.search("readable")[0].file == "ok.md"
        assert any("broken.pdf" in r.getMessage() for r in caplog.records)
        caplog.clear()
        assert library.refresh().failed == 1
        assert not caplog.records  # unchanged since it failed: not parsed (nor logged) again


def test_a_file_that_stops_parsing_loses_its_old_passages(corpus: Path) -> None:
    with document_library(corpus, refresh_every=None) as library:
        assert only(library, "backup codes", "faq.html")
        (corpus / "faq.html").write_text("   \n")  # no longer an HTML document
        assert library.refresh().failed == 1
        assert "faq.html" not in {p.file for p in library.search("backup codes password", k=20)}
        write(corpus / "faq.html", FAQ_HTML)  # fixed: indexed again
        assert library.refresh().added == 1 and only(library, "backup codes", "faq.html")


def test_empty_query_is_a_typed_error_and_fed_back_to_the_model(corpus: Path) -> None:
    with document_library(corpus) as library:
        for query in ("", "   ", "?!"):
            with pytest.raises(EmptyQuery):
                library.search(query)
        model = ScriptedModel(
            [
                reply(None, call("search_documents", "c1", query="  ")),
                reply(None, call("search_documents", "c2", query="refund", k=2)),
                "Refunds take 5 business days [guide.md#returns].",
            ]
        )
        agent = Agent("support", "Answer from the documents.", model=model, tools=library)
        result = run_sync(agent, "How long do refunds take?")
    assert result.ok, result.failure
    answers = [m for m in result.snapshot.conversation.messages if isinstance(m, ToolMessage)]
    assert answers[0].is_error and "no word to search for" in answers[0].content
    assert not answers[1].is_error and '"file":"guide.md"' in answers[1].content and '"citation"' in answers[1].content


def test_a_closed_library_says_so(corpus: Path) -> None:
    library = document_library(corpus)
    library.close()
    library.close()  # idempotent
    with pytest.raises(DocumentLibraryError, match="closed"):
        library.search("refund")


def test_k_is_capped_by_max_k(corpus: Path) -> None:
    with document_library(corpus, k=2, max_k=3) as library:
        assert len(library.search("the a refund warranty lamp battery password")) == 2
        assert len(library.search("refund warranty lamp battery password shipping", k=50)) == 3
        with pytest.raises(ValueError, match="k must be"):
            library.search("refund", k=0)


@given(text=st.text(alphabet=st.sampled_from("ab \n"), max_size=400), limit=st.integers(200, 260))
def test_split_covers_the_text_with_exact_offsets(text: str, limit: int) -> None:
    """Invariant: every piece is at most `limit` characters, sits in the text at its offset, the
    pieces appear in order without overlap, and together they hold every non-blank character."""
    pieces = list(_split(text, 7, limit))
    position = 7
    for offset, piece in pieces:
        assert 0 < len(piece) <= limit and piece == piece.strip()
        assert offset >= position and text[offset - 7 : offset - 7 + len(piece)] == piece
        position = offset + len(piece)
    assert "".join(p for _, p in pieces).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


# -- the real corpus -------------------------------------------------------------------------------
QUESTIONS = [
    ("How do I run several coroutines concurrently and wait for all their results?", "library/asyncio-task.html"),
    ("parse command-line options and arguments with subcommands", "library/argparse.html"),
    ("read rows from a CSV file as dictionaries", "library/csv.html"),
    ("make a frozen dataclass with default values", "library/dataclasses.html"),
    ("create a temporary directory that is deleted automatically", "library/tempfile.html"),
    ("named groups in regular expressions", "library/re.html"),
    ("serialize an object to JSON with indentation", "library/json.html"),
    ("commit a transaction in an sqlite3 database connection", "library/sqlite3.html"),
]


@pytest.fixture(scope="module")
def python_docs() -> DocumentLibrary:
    if not PYTHON_DOCS.is_dir():
        pytest.skip("python3-doc is not installed (make sysdeps installs it)")
    library = document_library(PYTHON_DOCS, exclude=["_sources"], refresh_every=None)  # (reST copies of the pages)
    yield library  # type: ignore[misc]
    library.close()


def test_python_docs_are_indexed_whole(python_docs: DocumentLibrary) -> None:
    stats = python_docs.stats()
    assert 450 <= stats["files"] <= 600 and stats["chunks"] > 10 * stats["files"]
    assert not [p for p in python_docs.search("asyncio gather", k=20) if p.file.startswith("_sources/")]


@pytest.mark.parametrize(("question", "page"), QUESTIONS)
def test_python_docs_answering_page_is_in_the_top_5(python_docs: DocumentLibrary, question: str, page: str) -> None:
    hits = python_docs.search(question, k=5)
    assert page in [h.file for h in hits], [h.citation for h in hits]
    hit = next(h for h in hits if h.file == page)
    assert python_docs.text(page)[hit.start : hit.end] == hit.text


def test_python_docs_copy_is_reindexed_incrementally(tmp_path: Path) -> None:
    if not PYTHON_DOCS.is_dir():
        pytest.skip("python3-doc is not installed (make sysdeps installs it)")
    docs = tmp_path / "library"
    shutil.copytree(PYTHON_DOCS / "library", docs, ignore=shutil.ignore_patterns("[b-z]*"))  # the a* pages
    with document_library(docs, store=tmp_path / "i.sqlite", refresh_every=None) as library:
        n = library.stats()["files"]
        (docs / "argparse.html").unlink()
        stats = library.refresh()
        assert (stats.removed, stats.unchanged, library.stats()["files"]) == (1, n - 1, n - 1)
        assert "argparse.html" not in {p.file for p in library.search("ArgumentParser add_argument", k=10)}
