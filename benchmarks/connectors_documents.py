"""`document_library` on a real corpus: the Python documentation of Debian's `python3-doc`
(≈530 HTML pages, 67 MB; `make sysdeps` installs it).

    .venv/bin/python benchmarks/connectors_documents.py            # full: 3 indexing rounds, 40 questions x 25
    .venv/bin/python benchmarks/connectors_documents.py --quick    # 1 round, 40 questions x 3
    .venv/bin/python benchmarks/connectors_documents.py --docs DIR # another corpus

Reported, all in this process and run:

- indexing throughput (documents/s, MB/s) of a fresh in-memory index, beside the bare cost of
  the same extraction (parse + sections, `lxml`) without indexing: the ratio is what SQLite FTS5
  adds;
- a re-scan with nothing changed (stat only) and a reopen of a persistent index (`store=`);
- query latency p50/p95 (ms) of `DocumentLibrary.search` (k=5, BM25, no re-scan) over varied
  questions, beside a naive peer: scanning every chunk's text for the query words in Python
  (no ranking), the cost an index exists to avoid.

Targets (none enforced): ≥ 50 documents/s indexing, query p95 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path("/usr/share/doc/python3-doc/html")

QUESTIONS = [
    "run coroutines concurrently and wait for results",
    "parse command line arguments",
    "read csv file rows as dictionaries",
    "frozen dataclass default values",
    "temporary directory deleted automatically",
    "regular expression named groups",
    "serialize object to json with indentation",
    "sqlite3 commit transaction",
    "format a datetime as a string",
    "walk a directory tree recursively",
    "copy a file and its permissions",
    "sort a list of dictionaries by a key",
    "open a url and read the response",
    "start a subprocess and capture its output",
    "thread pool executor map",
    "lru cache decorator",
    "generate random integers in a range",
    "compute a sha256 hash of a file",
    "compress data with gzip",
    "logging configuration to a file",
    "unit test assert raises",
    "type hints for callables and generics",
    "context manager with statement",
    "f-string formatting of floats",
    "list comprehension syntax",
    "exception chaining raise from",
    "decimal arithmetic precision",
    "struct pack binary data",
    "socket server listen accept",
    "email message with attachment",
    "xml element tree parse",
    "pathlib glob files",
    "enum members and values",
    "itertools groupby",
    "heapq priority queue",
    "bisect sorted list insert",
    "weak references",
    "abstract base classes",
    "pickle protocol",
    "signal handler",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(label: str, value: str) -> None:
    print(f"  {label:<36} {value}")


def bench_documents(docs: Path = DOCS, *, rounds: int = 3, repeats: int = 25) -> dict[str, float]:
    """Run the benchmark on `docs` (its `_sources/` reST copies left out), print a report,
    return the figures (see the module docstring)."""
    from fsm_agents.connectors import document_library
    from fsm_agents.connectors.documents import extract

    if not docs.is_dir():
        raise SystemExit(f"{docs} is missing: install Debian's python3-doc (make sysdeps) or pass --docs")
    options = {"exclude": ["_sources"], "refresh_every": None}
    with document_library(docs, **options) as probe:
        files = probe.files()
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"corpus: {docs} — {len(files)} documents, {size_mb:.1f} MB")

    extract_s, index_s = [], []
    for n in range(rounds):  # interleaved, so a change in machine load hits both alike
        started = time.perf_counter()
        for f in files:
            extract(f)
        extract_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        library = document_library(docs, **options)
        index_s.append(time.perf_counter() - started)
        if n != rounds - 1:
            library.close()
    stats = library.stats()
    extract_best, index_best = min(extract_s), min(index_s)
    print(f"\nindexing ({rounds} round(s), best): {stats['files']} files, {stats['chunks']} chunks")
    row(
        "extraction only (lxml, sections)",
        f"{len(files) / extract_best:8.1f} documents/s  {size_mb / extract_best:6.1f} MB/s",
    )
    row("document_library (extract + FTS5)", f"{len(files) / index_best:8.1f} documents/s  {size_mb / index_best:6.1f} MB/s")
    row("ratio index / extraction time", f"{index_best / extract_best:8.2f}x")

    started = time.perf_counter()
    rescan = library.refresh()
    rescan_s = time.perf_counter() - started
    row("re-scan, nothing changed", f"{rescan_s * 1000:8.1f} ms ({rescan.unchanged} unchanged)")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "index.sqlite"
        document_library(docs, store=store, **options).close()
        started = time.perf_counter()
        document_library(store=store, refresh_every=None).close()
        reopen_s = time.perf_counter() - started
        row("reopen a persistent index", f"{reopen_s * 1000:8.1f} ms (index file {store.stat().st_size / 1e6:.1f} MB)")

    latencies, hits = [], 0
    for _ in range(repeats):
        for q in QUESTIONS:
            started = time.perf_counter()
            found = library.search(q, k=5)
            latencies.append((time.perf_counter() - started) * 1000)
            hits += bool(found)
    chunks = [body for (body,) in library._db.execute("SELECT body FROM chunks_fts")]  # the naive peer's data
    naive = []
    for q in QUESTIONS:
        words = [w for w in re.findall(r"\w+", q.lower()) if len(w) > 2]
        started = time.perf_counter()
        _ = [i for i, c in enumerate(chunks) if any(w in c.lower() for w in words)]
        naive.append((time.perf_counter() - started) * 1000)
    library.close()
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    naive50 = statistics.median(naive)
    print(f"\nqueries ({len(latencies)}: {len(QUESTIONS)} questions x {repeats}, k=5): {hits}/{len(latencies)} with hits")
    row("document_library.search", f"p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")
    row(f"naive scan of {len(chunks)} chunks", f"p50 {naive50:7.2f} ms   ({naive50 / p50:.1f}x the indexed p50)")
    met = len(files) / index_best >= 50 and p95 <= 50
    print(f"\ntargets (≥ 50 documents/s, p95 ≤ 50 ms): {'met' if met else 'NOT met'}")
    return {
        "documents": len(files),
        "chunks": stats["chunks"],
        "index_docs_per_s": len(files) / index_best,
        "extract_docs_per_s": len(files) / extract_best,
        "rescan_ms": rescan_s * 1000,
        "reopen_ms": reopen_s * 1000,
        "query_p50_ms": p50,
        "query_p95_ms": p95,
        "naive_p50_ms": naive50,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args()
    import lxml

    versions = f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, lxml {lxml.__version__}"
    print(f"{versions}, {os.cpu_count()} CPUs")
    bench_documents(args.docs, rounds=1 if args.quick else 3, repeats=3 if args.quick else 25)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
