"""A stand-in for a SearXNG instance, for the research example: it answers
`GET /search?q=...&format=json` in SearXNG's JSON shape from a few canned pages, ranked by the
number of query words they contain. It runs on 127.0.0.1 (a free port) in a thread.

    with searxng_stub() as url:
        search = web_search(SearXNG(url))

The pages summarise public facts about solid-state batteries; their URLs are illustrative.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGES: list[dict[str, str]] = [
    {
        "url": "https://en.wikipedia.org/wiki/Solid-state_battery",
        "title": "Solid-state battery - Wikipedia",
        "content": "A solid-state battery uses a solid electrolyte instead of the liquid electrolytes of lithium-ion "
        "batteries. It promises higher energy density and less fire risk; costs and dendrite growth remain obstacles.",
    },
    {
        "url": "https://example.org/news/solid-state-battery-pilot-lines",
        "title": "Carmakers open solid-state battery pilot lines",
        "content": "Several carmakers run pilot production of solid-state battery cells and plan small series "
        "around 2027-2028; mass production at lithium-ion prices is not expected before the 2030s.",
    },
    {
        "url": "https://example.org/review/solid-electrolyte-dendrites",
        "title": "Review: lithium dendrites in solid electrolytes",
        "content": "Lithium dendrites can still grow through ceramic solid electrolytes at high charging rates; "
        "interface engineering and pressure management are the main mitigations studied.",
    },
    {
        "url": "https://example.org/guide/sodium-ion",
        "title": "Sodium-ion batteries explained",
        "content": "Sodium-ion batteries avoid lithium and cobalt; their energy density is lower, but they are cheap "
        "and perform well in the cold.",
    },
]


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2}


def answer(query: str) -> dict[str, Any]:
    """The SearXNG-shaped JSON answer to `query`."""
    wanted = _words(query)
    scored = sorted(
        ((len(wanted & _words(p["title"] + " " + p["content"])), i, p) for i, p in enumerate(PAGES)),
        key=lambda t: (-t[0], t[1]),
    )
    results = [
        {
            **page,
            "engine": "stub",
            "engines": ["stub"],
            "template": "default.html",
            "parsed_url": [*urlsplit(page["url"]), ""],
            "positions": [rank + 1],
            "score": float(score),
            "category": "general",
            "publishedDate": None,
        }
        for rank, (score, _, page) in enumerate(t for t in scored if t[0] > 0)
    ]
    return {
        "query": query,
        "number_of_results": len(results),
        "results": results,
        "answers": [],
        "corrections": [],
        "infoboxes": [],
        "suggestions": [],
        "unresponsive_engines": [],
    }


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = parse_qs(url.query)
        if url.path not in ("/", "/search") or params.get("format") != ["json"]:
            self.send_error(403 if url.path in ("/", "/search") else 404)
            return
        body = json.dumps(answer(params.get("q", [""])[0])).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def searxng_stub() -> Iterator[str]:
    """Serve the stub on 127.0.0.1 (a free port) for the duration of the block; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
