"""Replay recorded HTTP traffic (tests/data/cassettes/) through `httpx.MockTransport`.

Loads the three vcrpy flavours (pydantic-ai `parsed_body`, plain `body` / `body.string`, gzip
`!!binary` bodies with `Content-Encoding` kept) and our llama.cpp JSON recordings into
`Interaction`s; `Replay` answers each request with the next recorded response, in order, and
keeps what was sent so a test can compare it with what was recorded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

CASSETTES = Path(__file__).parent / "data" / "cassettes"

# headers that describe the recorded bytes on the wire, not the body we hand to httpx
_DROP = {"content-length", "transfer-encoding", "connection"}


@dataclass(frozen=True)
class Interaction:
    method: str
    path: str
    request_json: Any
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def response_json(self) -> Any:
        return json.loads(self.body)


def _headers(raw: dict[str, Any] | None, *, reencoded: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (raw or {}).items():
        lname = name.lower()
        if lname in _DROP or (reencoded and lname == "content-encoding"):
            continue
        out[lname] = str(value[0] if isinstance(value, list) else value)
    return out


def _from_vcr(item: dict[str, Any]) -> Interaction:
    req, resp = item["request"], item["response"]
    if "parsed_body" in req:
        request_json = req["parsed_body"]
    else:
        body = req.get("body")
        request_json = json.loads(body) if body else None
    reencoded = "parsed_body" in resp
    if reencoded:
        body_bytes = json.dumps(resp["parsed_body"]).encode()
    else:
        raw = resp["body"]["string"] if isinstance(resp.get("body"), dict) else resp.get("body", "")
        body_bytes = raw if isinstance(raw, bytes) else str(raw).encode()
    return Interaction(
        method=req["method"],
        path=urlsplit(req["uri"]).path,
        request_json=request_json,
        status=int(resp["status"]["code"]),
        headers=_headers(resp.get("headers"), reencoded=reencoded),
        body=body_bytes,
    )


def load(name: str) -> list[Interaction]:
    """The interactions of `tests/data/cassettes/<name>` (`.yaml` vcrpy or llamacpp `.json`)."""
    path = CASSETTES / name
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        req, resp = data["request"], data["response"]
        return [
            Interaction(
                method=req["method"],
                path=req["path"],
                request_json=req.get("json"),
                status=int(resp["status"]),
                headers=_headers(resp.get("headers"), reencoded=False),
                body=resp["body"].encode(),
            )
        ]
    doc = yaml.safe_load(path.read_text())
    return [_from_vcr(item) for item in doc["interactions"]]


@dataclass
class Replay:
    """An `httpx.MockTransport` handler serving `interactions` in order.

    `sent` holds every request received (`sent_json` their JSON bodies). A request beyond the
    recording fails the test (AssertionError raised out of the client)."""

    interactions: Sequence[Interaction]
    sent: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        i = len(self.sent)
        self.sent.append(request)
        assert i < len(self.interactions), f"request {i + 1} but the cassette has {len(self.interactions)}"
        rec = self.interactions[i]
        assert request.method == rec.method
        return httpx.Response(rec.status, headers=rec.headers, content=rec.body)

    @property
    def sent_json(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.sent]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def replay(name: str, *, only: slice | int | None = None) -> Replay:
    """A `Replay` of cassette `name`, optionally of some of its interactions."""
    interactions = load(name)
    if isinstance(only, int):
        interactions = [interactions[only]]
    elif isinstance(only, slice):
        interactions = interactions[only]
    return Replay(interactions)
