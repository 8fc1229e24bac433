"""`document_library`: search local documents (text, Markdown, HTML, PDF) from an agent.

The library walks its paths, extracts each document's text, cuts it into chunks along its
structure and indexes them in SQLite FTS5 (stdlib `sqlite3`); a search ranks chunks with FTS5's
BM25 (https://www.sqlite.org/fts5.html#the_bm25_function) and returns `Passage`s that cite their
source: file, section (heading path and HTML anchor) or PDF page, and character offsets.

Extraction, per file suffix:

- `.txt`, `.text`, `.rst`: the file's text (UTF-8, undecodable bytes replaced), cut at blank lines;
- `.md`, `.markdown`: sections between headings, found by `markdown-it-py` (CommonMark: ATX and
  setext headings, never a `#` inside a code block); offsets are into the file's own text;
- `.html`, `.htm`: the main content (`<main>`, `[role=main]`, `<article>`, else `<body>`) parsed
  by lxml's HTML parser (libxml2; `<meta charset>` honoured), scripts, styles, navigation and
  Sphinx permalink marks dropped; sections start at each `<h1>`–`<h6>`; offsets are into the
  extracted text (`DocumentLibrary.text(file)`);
- `.pdf`: one section per page, text extracted by `pypdf`; offsets are into the page's text.

Sections longer than `chunk_chars` are cut at paragraph, then line, then word boundaries.

Incremental re-indexing: each file's size and modification time (ns) are recorded; a file whose
size or mtime changed is hashed (SHA-256) and re-indexed only when its content changed; files
that disappeared are removed. `refresh()` does this; a search does it first when the last scan
is older than `refresh_every` seconds. With `store=` the index is a SQLite file that outlives the
process, so reopening a library re-reads only what changed.

The parsers (`lxml`, `pypdf`, `markdown-it-py`) come with the extra `fsm-agents[documents]`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import io
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, computed_field

from fsm_agents.errors import FsmAgentsError, InvalidDefinition
from fsm_agents.tools import SingleToolset, Tool, tool

__all__ = [
    "DocumentLibrary",
    "DocumentLibraryError",
    "DocumentNotFound",
    "EmptyQuery",
    "IndexStats",
    "ParserMissing",
    "Passage",
    "document_library",
]

log = logging.getLogger("fsm_agents.connectors.documents")

#: Suffixes indexed when walking a folder (a file named explicitly must have one of them too).
SUFFIXES: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}

_SCHEMA_VERSION = "1"
_PARSER_VERSION = "1"  # bump when extraction changes: every file is re-indexed

# BM25 column weights: a match in the document title or the section's heading path counts more
_WEIGHTS = (4.0, 2.0, 1.0)


# Common English words left out of a query: BM25 gives them little weight anyway, and OR-ing
# them in makes every query score nearly every chunk.
def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_STOPWORDS = frozenset(
    _words(
        "a an and are as at be but by can could do does for from has have how i if in into is it its me my of on "
        "or our should so than that the their them then there these they this to was we what when where which who "
        "why will with would you your"
    )
)


class DocumentLibraryError(FsmAgentsError):
    """A document library cannot be built or used (a missing parser, an unusable index)."""


class DocumentNotFound(DocumentLibraryError, FileNotFoundError):
    """A path given to `document_library` does not exist, or is a file of an unsupported kind."""


class ParserMissing(DocumentLibraryError, ImportError):
    """The library that reads a kind of document is not installed (`fsm-agents[documents]`)."""


class EmptyQuery(DocumentLibraryError, ValueError):
    """A search query has no searchable word (empty, blank or punctuation only)."""


class Passage(BaseModel):
    """One search hit.

    - `file`: the document's path relative to the library's base folder (`/`-separated);
    - `title`: the document's title (HTML `<title>`, first Markdown heading, PDF metadata, else
      the file name); `section`: the heading path (`"Coroutines and Tasks › Awaitables"`) or
      `None`; `anchor`: the HTML `id` of the section, for `file#anchor` links; `page`: the
      1-based PDF page or `None`;
    - `start`, `end`: character offsets of `text` in the document's extracted text (the file's
      own text for text and Markdown, the page's text for PDF);
    - `score`: BM25 relevance (higher is better; comparable within one search only).
    """

    model_config = ConfigDict(frozen=True)

    file: str
    title: str
    section: str | None
    anchor: str | None
    page: int | None
    start: int
    end: int
    text: str
    score: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def citation(self) -> str:
        """A human-readable reference: `file#anchor (section), chars start-end` or `file, page n, ...`."""
        where = self.file + (f"#{self.anchor}" if self.anchor else "")
        if self.page is not None:
            where += f", page {self.page}"
        if self.section:
            where += f" ({self.section})"
        return f"{where}, chars {self.start}-{self.end}"


class IndexStats(BaseModel):
    """What one `refresh()` did: file counts and its duration in seconds."""

    model_config = ConfigDict(frozen=True)

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    chunks: int = 0
    seconds: float = 0.0


# -- extraction ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Section:
    heading: str | None  # the heading path
    anchor: str | None
    page: int | None
    start: int  # offset of `text` in the document's text
    text: str


@dataclass(frozen=True, slots=True)
class _Document:
    title: str
    text: str  # the extracted text (for PDF: the pages joined by form feeds)
    sections: tuple[_Section, ...]


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ParserMissing(
            f"reading these documents needs {module.split('.')[0]!r}: pip install 'fsm-agents[documents]'"
        ) from exc


def _decode(data: bytes) -> str:
    return data.decode("utf-8-sig", errors="replace")


def _text_document(path: Path, data: bytes) -> _Document:
    text = _decode(data)
    return _Document(title=path.name, text=text, sections=(_Section(None, None, None, 0, text),))


def _markdown_document(path: Path, data: bytes) -> _Document:
    markdown_it = _require("markdown_it")
    text = _decode(data)
    lines = text.splitlines(keepends=True)
    line_start = [0]
    for raw_line in lines:
        line_start.append(line_start[-1] + len(raw_line))
    tokens = markdown_it.MarkdownIt("commonmark").parse(text)
    headings: list[tuple[int, int, str]] = []  # (line, level, title)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.map is not None:
            title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
            headings.append((tok.map[0], int(tok.tag[1:]), title))
    sections: list[_Section] = []
    if not headings or headings[0][0] > 0:
        end_line = headings[0][0] if headings else len(lines)
        sections.append(_Section(None, None, None, 0, text[: line_start[end_line]]))
    stack: list[tuple[int, str]] = []
    for n, (line, level, title) in enumerate(headings):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        end_line = headings[n + 1][0] if n + 1 < len(headings) else len(lines)
        start, end = line_start[line], line_start[end_line]
        sections.append(_Section(" › ".join(t for _, t in stack), _slug(title), None, start, text[start:end]))
    title = next((t for _, level, t in headings if level == 1), path.name)
    return _Document(title=title or path.name, text=text, sections=tuple(sections))


def _slug(title: str) -> str:
    """The anchor GitHub-style renderers give a heading: lower case, punctuation dropped, spaces → `-`."""
    return re.sub(r"[^\w\- ]", "", title.lower()).strip().replace(" ", "-")


_BREAKS: dict[str, int] = {  # line breaks around a block element
    **dict.fromkeys(
        _words(
            "p div section article main pre table blockquote ul ol dl figure header footer aside form address "
            "h1 h2 h3 h4 h5 h6 hr details summary"
        ),
        2,
    ),
    **dict.fromkeys(_words("li dt dd tr br caption figcaption option"), 1),
}
_CELL = frozenset(("td", "th"))
_SKIP = frozenset(_words("script style noscript template head nav svg iframe button select textarea object canvas"))
_HEADING = {f"h{n}": n for n in range(1, 7)}
_SKIP_CLASSES = frozenset(("headerlink", "sphinxsidebar", "related", "toc-backref-skip"))


class _TextWriter:
    """Builds the extracted text of an HTML document, collapsing whitespace outside `<pre>` and
    keeping paragraph breaks, so that offsets into it are stable."""

    __slots__ = ("length", "newlines", "parts", "space", "trailing")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.newlines = 0  # pending line breaks (0, 1 or 2)
        self.space = False  # a pending space
        self.trailing = 0  # line breaks at the end of what was written

    def _flush(self) -> None:
        if self.newlines:
            if self.length and self.newlines > self.trailing:
                gap = "\n" * (self.newlines - self.trailing)
                self.parts.append(gap)
                self.length += len(gap)
                self.trailing = self.newlines
        elif self.space and self.length and not self.trailing and not self.parts[-1].endswith(" "):
            self.parts.append(" ")
            self.length += 1
        self.newlines, self.space = 0, False

    def block(self, breaks: int) -> None:
        if breaks > self.newlines:
            self.newlines = breaks

    def text(self, s: str, pre: bool) -> None:
        if pre:
            self._flush()
            self.parts.append(s)
            self.length += len(s)
            stripped = len(s.rstrip("\n"))
            self.trailing = len(s) - stripped + (self.trailing if stripped == 0 else 0)
            return
        words = s.split()
        if not words:
            self.space = True
            return
        if s[0].isspace():
            self.space = True
        if self.newlines or self.space:
            self._flush()
        joined = " ".join(words)
        self.parts.append(joined)
        self.length += len(joined)
        self.trailing = 0
        self.space = s[-1].isspace()

    def position(self) -> int:
        """The offset the next written character will have (pending breaks written first)."""
        self._flush()
        return self.length

    def value(self) -> str:
        return "".join(self.parts)


def _skipped(el: Any) -> bool:
    """Comments, processing instructions, scripts, navigation, permalink marks: no text."""
    tag = el.tag
    if type(tag) is not str or tag in _SKIP:
        return True
    cls = el.get("class")
    return cls is not None and not _SKIP_CLASSES.isdisjoint(cls.split())


def _html_document(path: Path, data: bytes) -> _Document:
    etree = _require("lxml.etree")
    try:
        root = etree.fromstring(data, etree.HTMLParser()) if data.strip() else None
    except Exception as exc:  # lxml's XMLSyntaxError on a binary file
        raise DocumentLibraryError(f"{path}: not parseable as HTML ({exc})") from exc
    if root is None:
        raise DocumentLibraryError(f"{path}: empty HTML document")
    title_el = root.find(".//title")
    title = " ".join("".join(title_el.itertext()).split()) if title_el is not None else ""
    title = title or path.name
    main = root.find(".//main")
    if main is None:
        found = root.xpath('.//*[@role="main"]') or root.xpath(".//article") or root.xpath(".//body")
        main = found[0] if found else root
    writer = _TextWriter()
    marks: list[tuple[int, str | None, str | None]] = [(0, None, None)]  # (offset, heading path, anchor)
    stack: list[tuple[int, str]] = []

    def walk(el: Any, pre: bool) -> None:
        tag = el.tag
        level = _HEADING.get(tag)
        if level is not None:
            heading = " ".join("".join(_heading_text(el)).split())
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
            writer.block(2)
            parent = el.getparent()
            anchor = el.get("id") or (parent.get("id") if parent is not None else None)
            marks.append((writer.position(), " › ".join(h for _, h in stack if h), anchor))
        breaks = _BREAKS.get(tag, 0)
        if breaks:
            writer.block(breaks)
        elif tag in _CELL:
            writer.space = True
        if el.text:
            writer.text(el.text, pre)
        for child in el:
            if not _skipped(child):
                walk(child, pre or child.tag == "pre")
            if child.tail:
                writer.text(child.tail, pre)
        if breaks:
            writer.block(breaks)

    if not _skipped(main):
        walk(main, main.tag == "pre")
    text = writer.value()
    sections: list[_Section] = []
    for n, (start, heading, anchor) in enumerate(marks):
        end = marks[n + 1][0] if n + 1 < len(marks) else len(text)
        if text[start:end].strip():
            sections.append(_Section(heading, anchor, None, start, text[start:end]))
    return _Document(title=title, text=text, sections=tuple(sections))


def _heading_text(el: Any) -> Iterator[str]:
    if el.text:
        yield el.text
    for child in el:
        if not _skipped(child):
            yield from _heading_text(child)
        if child.tail:
            yield child.tail


def _pdf_document(path: Path, data: bytes) -> _Document:
    pypdf = _require("pypdf")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        meta = reader.metadata
    except Exception as exc:  # pypdf's PdfReadError and friends on a damaged file
        raise DocumentLibraryError(f"{path}: not readable as PDF ({type(exc).__name__}: {exc})") from exc
    title = str(meta.title) if meta is not None and meta.title else path.name
    sections = tuple(_Section(None, None, i + 1, 0, text) for i, text in enumerate(pages) if text.strip())
    return _Document(title=title, text="\f".join(pages), sections=sections)


_EXTRACTORS = {"text": _text_document, "markdown": _markdown_document, "html": _html_document, "pdf": _pdf_document}


def extract(path: Path, data: bytes | None = None) -> _Document:
    """The extracted text and sections of one document (by its suffix, see the module docstring)."""
    kind = SUFFIXES[path.suffix.lower()]
    doc = _EXTRACTORS[kind](path, path.read_bytes() if data is None else data)
    return _Document(doc.title, doc.text, _merge_bare_headings(doc.sections))


def _merge_bare_headings(sections: Sequence[_Section]) -> tuple[_Section, ...]:
    """A section holding nothing but its heading (a title right above its first subsection) is
    joined to the section after it, so no passage is a lone heading."""
    out: list[_Section] = []
    pending: _Section | None = None
    for section in sections:
        if pending is not None and pending.page == section.page and pending.start + len(pending.text) == section.start:
            section = _Section(section.heading, section.anchor, section.page, pending.start, pending.text + section.text)
        elif pending is not None:
            out.append(pending)
        pending = section if "\n" not in section.text.strip() and section.heading is not None else None
        if pending is None:
            out.append(section)
    if pending is not None:
        out.append(pending)
    return tuple(out)


def _split(text: str, start: int, limit: int) -> Iterator[tuple[int, str]]:
    """Cut `text` (found at offset `start`) into pieces of at most `limit` characters, at
    paragraph, line or word boundaries when there is one in the second half of a piece; yields
    (offset, piece) with surrounding whitespace trimmed and blank pieces dropped."""
    pos = 0
    while pos < len(text):
        end = len(text)
        if end - pos > limit:
            end = pos + limit
            window = text[pos:end]
            for sep in ("\n\n", "\n", " "):
                cut = window.rfind(sep)
                if cut > limit // 2:
                    end = pos + cut + len(sep)
                    break
        piece = text[pos:end]
        stripped = piece.strip()
        if stripped:
            yield start + pos + (len(piece) - len(piece.lstrip())), stripped
        pos = end


def _query_expression(query: str) -> str:
    """An FTS5 query OR-ing the query's words (each quoted, so no word is read as an FTS5 operator);
    stopwords are dropped unless nothing else is left. Raises `EmptyQuery`."""
    words = list(dict.fromkeys(w.lower() for w in re.findall(r"\w+", query)))
    if not words:
        raise EmptyQuery(f"the query {query!r} has no word to search for: ask with a few keywords")
    kept = [w for w in words if w not in _STOPWORDS] or words
    return " OR ".join(f'"{w}"' for w in kept)


# -- the index -------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
    sha256 TEXT NOT NULL, title TEXT NOT NULL, text_chars INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL, section TEXT, anchor TEXT, page INTEGER,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks(file_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts
    USING fts5(title, section, body, tokenize='porter unicode61 remove_diacritics 2');
"""


class DocumentLibrary(SingleToolset):
    """A searchable library of local documents, and the toolset that lets an agent search it.

    It is a sequence of one `Tool` (named `name`, default `search_documents`; arguments `query`
    and optionally `k`, the number of passages wanted, at most `max_k`), so it goes straight into
    `Agent(tools=library)` or `Agent(tools=[*library, other_tool])`. The tool returns a JSON
    list of `Passage`s; an empty query is a tool error fed back to the model.

    Build it with `document_library(...)`. It is thread-safe (the tool runs in worker threads)
    and closes its SQLite connection with `close()` or `with`.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        store: Path | None,
        exclude: Sequence[str],
        chunk_chars: int,
        k: int,
        max_k: int,
        refresh_every: float | None,
        name: str,
        description: str | None,
    ) -> None:
        self.paths = tuple(paths)
        self.store = store
        self.exclude = tuple(exclude)
        self.chunk_chars = chunk_chars
        self.k = k
        self.max_k = max_k
        self.refresh_every = refresh_every
        self.base = _base_folder(self.paths)
        self._lock = threading.RLock()
        self._last_scan = -float("inf")
        self._closed = False
        self._failed: dict[str, tuple[int, int]] = {}  # files that could not be indexed: (mtime_ns, size)
        try:
            self._db = sqlite3.connect(
                ":memory:" if store is None else str(store), check_same_thread=False, isolation_level=None
            )
            self._open_schema()
        except sqlite3.Error as exc:
            with suppress(Exception):
                self._db.close()
            raise DocumentLibraryError(f"cannot open the index {store}: {exc}; delete it to rebuild it") from exc
        self._tool = self._make_tool(name, description)

    # -- the toolset ----------------------------------------------------------------------------------
    def _make_tool(self, name: str, description: str | None) -> Tool:
        library = self

        def search_documents(query: str, k: int | None = None) -> list[Passage]:
            """Search the document library; returns the best-matching passages with citations.

            Args:
                query: what to look for, in a few keywords or a question.
                k: how many passages to return (default: the library's).
            """
            return library.search(query, k)

        text = description or (
            "Search the document library for passages relevant to a question. Returns passages with "
            "their citation (file, section or page, character offsets); cite them in your answer."
        )
        return tool(name=name, description=text)(search_documents)

    def __repr__(self) -> str:
        return f"DocumentLibrary({[str(p) for p in self.paths]}, store={self.store}, tool={self._tool.name!r})"

    # -- lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the index (idempotent); with `store=` the index file stays for the next time."""
        with self._lock:
            self._closed = True
            self._db.close()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise DocumentLibraryError("this document library is closed: open it again with document_library(...)")
            yield

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _open_schema(self) -> None:
        db = self._db
        if self.store is not None:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
        wanted = {"schema": _SCHEMA_VERSION, "parser": _PARSER_VERSION, "chunk_chars": str(self.chunk_chars)}
        meta = {key: stored[key] for key in wanted if key in stored}
        if meta and meta != wanted:
            log.info("index %s was built with %s; rebuilding it with %s", self.store, meta, wanted)
            with self._transaction():
                db.execute("DELETE FROM chunks_fts")
                db.execute("DELETE FROM chunks")
                db.execute("DELETE FROM files")
        if meta != wanted:
            with self._transaction():
                db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", wanted.items())

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN")

        def __exit__(
            self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
        ) -> None:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def _transaction(self) -> DocumentLibrary._Tx:
        return DocumentLibrary._Tx(self._db)

    # -- indexing --------------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        """The documents the library's paths hold now (sorted; folders walked recursively,
        hidden entries and `exclude` matches skipped, only the suffixes in `SUFFIXES`)."""
        found: set[Path] = set()
        for root in self.paths:
            if root.is_file():
                found.add(root)
                continue
            for folder, dirs, names in os.walk(root, followlinks=True):
                dirs[:] = [d for d in dirs if not d.startswith(".") and not self._excluded(d)]
                for n in names:
                    if n.startswith(".") or os.path.splitext(n)[1].lower() not in SUFFIXES:
                        continue
                    path = Path(folder, n)
                    if not (self._excluded(n) or self._excluded(path.relative_to(root).as_posix())):
                        found.add(path)
        return sorted(found)

    def _excluded(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude)

    def refresh(self) -> IndexStats:
        """Bring the index up to date with the files: index new and changed files, drop deleted
        ones. A file that cannot be read or parsed is logged (warning) and left out; it is tried
        again when it changes. Returns what was done."""
        started = time.perf_counter()
        with self._locked():
            stats = self._refresh()
            self._last_scan = time.monotonic()
        return stats.model_copy(update={"seconds": time.perf_counter() - started})

    def _refresh(self) -> IndexStats:
        db = self._db
        known = {row[1]: row for row in db.execute("SELECT id, path, mtime_ns, size, sha256 FROM files")}
        counts = {"added": 0, "updated": 0, "removed": 0, "unchanged": 0, "failed": 0, "chunks": 0}
        present: set[str] = set()
        for path in self.files():
            key = str(path)
            present.add(key)
            try:
                st = path.stat()
            except OSError:
                continue  # vanished since the walk: removed below on the next scan
            row = known.get(key)
            if row is not None and row[2] == st.st_mtime_ns and row[3] == st.st_size:
                counts["unchanged"] += 1
                continue
            if self._failed.get(key) == (st.st_mtime_ns, st.st_size):
                counts["failed"] += 1  # failed before and unchanged since: not parsed again
                continue
            try:
                data = path.read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                if row is not None and row[4] == digest:
                    db.execute("UPDATE files SET mtime_ns = ?, size = ? WHERE id = ?", (st.st_mtime_ns, st.st_size, row[0]))
                    counts["unchanged"] += 1
                    continue
                doc = extract(path, data)
            except ParserMissing:
                raise
            except Exception as exc:  # an unreadable file, or a parser's failure on one odd file
                log.warning("cannot index %s: %s: %s", path, type(exc).__name__, exc)
                self._failed[key] = (st.st_mtime_ns, st.st_size)
                counts["failed"] += 1
                if row is not None:  # its old content is no longer what the file says
                    with self._transaction():
                        self._delete(row[0])
                continue
            self._failed.pop(key, None)
            with self._transaction():
                if row is not None:
                    self._delete(row[0])
                counts["chunks"] += self._insert(key, st.st_mtime_ns, st.st_size, digest, doc)
            counts["updated" if row is not None else "added"] += 1
        gone = [row[0] for key, row in known.items() if key not in present]
        if gone:
            with self._transaction():
                for file_id in gone:
                    self._delete(file_id)
        counts["removed"] = len(gone)
        if counts["added"] or counts["updated"] or gone:
            log.info("document library %s: %s", self.base, counts)
        return IndexStats(**counts)

    def _delete(self, file_id: int) -> None:
        db = self._db
        db.execute("DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE file_id = ?)", (file_id,))
        db.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))
        db.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def _insert(self, key: str, mtime_ns: int, size: int, digest: str, doc: _Document) -> int:
        db = self._db
        cur = db.execute(
            "INSERT INTO files(path, mtime_ns, size, sha256, title, text_chars) VALUES (?, ?, ?, ?, ?, ?)",
            (key, mtime_ns, size, digest, doc.title, len(doc.text)),
        )
        file_id = cur.lastrowid
        n = 0
        for section in doc.sections:
            for offset, piece in _split(section.text, section.start, self.chunk_chars):
                cur = db.execute(
                    'INSERT INTO chunks(file_id, section, anchor, page, start, "end") VALUES (?, ?, ?, ?, ?, ?)',
                    (file_id, section.heading, section.anchor, section.page, offset, offset + len(piece)),
                )
                db.execute(
                    "INSERT INTO chunks_fts(rowid, title, section, body) VALUES (?, ?, ?, ?)",
                    (cur.lastrowid, doc.title, section.heading or "", piece),
                )
                n += 1
        return n

    # -- searching -------------------------------------------------------------------------------------
    def search(self, query: str, k: int | None = None) -> list[Passage]:
        """The `k` (default `self.k`, at most `max_k`) passages that best match `query`, best
        first (BM25 over title, section heading and text, weighted 4:2:1). Raises `EmptyQuery`
        for a query without a word, `ValueError` for `k` < 1."""
        if k is None:
            k = self.k
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        k = min(k, self.max_k)
        expression = _query_expression(query)
        with self._locked():
            if self.refresh_every is not None and time.monotonic() - self._last_scan >= self.refresh_every:
                self.refresh()
            rows = self._db.execute(
                'SELECT f.path, f.title, c.section, c.anchor, c.page, c.start, c."end", chunks_fts.body, '
                "bm25(chunks_fts, ?, ?, ?) AS rank "
                "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid JOIN files f ON f.id = c.file_id "
                "WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?",
                (*_WEIGHTS, expression, k),
            ).fetchall()
        return [
            Passage(
                file=self._display(path),
                title=title,
                section=section,
                anchor=anchor,
                page=page,
                start=start,
                end=end,
                text=body,
                score=round(-rank, 4),
            )
            for path, title, section, anchor, page, start, end, body, rank in rows
        ]

    def text(self, file: str) -> str:
        """The extracted text of a document of the library (`file` as in `Passage.file`), the
        text that `Passage.start`/`end` index (for PDF: pages joined by form feeds, and offsets
        are per page). Raises `DocumentNotFound` for a file the library does not hold."""
        path = Path(os.path.normpath(self.base / file))
        with self._locked():
            row = self._db.execute("SELECT 1 FROM files WHERE path = ?", (str(path),)).fetchone()
        if row is None:
            raise DocumentNotFound(f"{file!r} is not a document of this library")
        return extract(path).text

    def stats(self) -> dict[str, int]:
        """How much is indexed: `files`, `chunks`."""
        with self._locked():
            files = self._db.execute("SELECT count(*) FROM files").fetchone()[0]
            chunks = self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return {"files": int(files), "chunks": int(chunks)}

    def _display(self, path: str) -> str:
        try:
            return Path(path).relative_to(self.base).as_posix()
        except ValueError:
            return Path(path).as_posix()


def _base_folder(paths: Sequence[Path]) -> Path:
    folders = [p if p.is_dir() else p.parent for p in paths]
    if not folders:
        return Path.cwd()
    try:
        return Path(os.path.commonpath([str(f) for f in folders]))
    except ValueError:  # different drives (Windows)
        return folders[0]


def document_library(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
    *,
    store: str | os.PathLike[str] | None = None,
    exclude: Iterable[str] = (),
    chunk_chars: int = 1200,
    k: int = 5,
    max_k: int = 20,
    refresh_every: float | None = 5.0,
    name: str = "search_documents",
    description: str | None = None,
) -> DocumentLibrary:
    """A `DocumentLibrary` over `paths` (files and folders; folders are walked recursively),
    indexed before this returns.

    - `store`: a SQLite file to keep the index in (created if missing): reopening it re-reads only
      the files that changed. Without `paths`, the library covers the folders it was built over.
      Without `store`, the index lives in memory.
    - `exclude`: glob patterns (`fnmatch`, case-sensitive) of files and folders to leave out,
      matched against each name and each path relative to its folder, e.g. `["_sources", "*.txt"]`;
    - `chunk_chars`: the longest chunk, in characters (changing it re-indexes everything);
    - `k`: passages a search returns by default (`max_k` at most, whatever the model asks);
    - `refresh_every`: seconds after which a search first re-scans the files for changes
      (`0`: every search; `None`: only when `refresh()` is called);
    - `name`, `description`: the tool's name and description as the model sees them.

    Raises `DocumentNotFound` for a path that does not exist or a file of an unsupported kind,
    `InvalidDefinition` for bad options or neither `paths` nor an existing `store`, and
    `DocumentLibraryError` when the index cannot be opened or a parser is not installed.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    resolved = [Path(p).expanduser().resolve() for p in (paths or ())]
    for p in resolved:
        if not p.exists():
            raise DocumentNotFound(f"document path {str(p)!r} does not exist: give existing files or folders")
        if p.is_file() and p.suffix.lower() not in SUFFIXES:
            raise DocumentNotFound(f"{str(p)!r} is not a supported document (suffixes: {', '.join(sorted(SUFFIXES))})")
    for option, value, least in (("chunk_chars", chunk_chars, 200), ("k", k, 1), ("max_k", max_k, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidDefinition(f"document_library: {option} must be an int >= {least}, got {value!r}")
    if refresh_every is not None and not refresh_every >= 0:
        raise InvalidDefinition(f"document_library: refresh_every must be >= 0 seconds or None, got {refresh_every!r}")
    store_path = Path(store).expanduser().resolve() if store is not None else None
    if not resolved:
        if store_path is None:
            raise InvalidDefinition("document_library needs paths to index, or the store= of an existing index")
        if not store_path.exists():
            raise DocumentNotFound(
                f"index {str(store_path)!r} does not exist: build it once with document_library(paths, store=...)"
            )
        resolved, stored_exclude = _stored_roots(store_path)
        exclude = exclude or stored_exclude
    library = DocumentLibrary(
        resolved,
        store=store_path,
        exclude=[exclude] if isinstance(exclude, str) else list(exclude),
        chunk_chars=chunk_chars,
        k=min(k, max_k),
        max_k=max_k,
        refresh_every=refresh_every,
        name=name,
        description=description,
    )
    try:
        if store_path is not None:
            with library._transaction():
                library._db.executemany(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    [("roots", "\n".join(map(str, resolved))), ("exclude", "\n".join(library.exclude))],
                )
        library.refresh()
    except BaseException:
        library.close()
        raise
    return library


def _stored_roots(store: Path) -> tuple[list[Path], list[str]]:
    """The folders and exclude patterns an index was last built with."""
    try:
        with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('roots', 'exclude')").fetchall())
    except sqlite3.Error as exc:
        raise DocumentLibraryError(f"{str(store)!r} is not a document index ({exc})") from exc
    if not meta.get("roots"):
        raise DocumentLibraryError(f"{str(store)!r} records no document paths: pass paths= to build it")
    roots = [Path(p) for p in meta["roots"].split("\n")]
    exclude = [p for p in meta.get("exclude", "").split("\n") if p]
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        raise DocumentNotFound(f"the folders index {str(store)!r} was built over no longer exist: {missing}")
    return roots, exclude
