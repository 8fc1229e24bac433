"""Records of the event log, their JSON encoding, the event registry, and integrity checks.

A conversation's log is a sequence of `Record`s numbered `seq = 0, 1, 2, ...` with no gaps. Kinds
(`Record.kind`) and the JSON object each carries in `Record.data` (format version 4; version 1
to 3 logs load unchanged, see "Integrity" below for what version 4 changed):

- `"start"`   `{"machine": name, "run_id": str, "input": Input, "continues": bool, "context": JSON | null}`
              — a run (a *segment* of the conversation) begins; `continues=True` means its input is
              the previous segment's final conversation followed by `input` (`Conversations.append`);
- `"fork"`    `{"parent": conversation id, "at_seq": int, "run_id": str}` — only at seq 0: this
              conversation shares the first `at_seq` records of `parent`; from here on the run
              cut by the fork is called `run_id` (the fork's id), so the children it runs get
              conversations of their own (`run_id/task`) instead of the parent's (since format
              version 4; an older fork record keeps the parent's run id);
- `"started"` `{"key": idempotency key, "effect": "CallModel" | "RunTools" | "RunAgents" | "AwaitInput",
              "idempotent": bool, "tools": [names], "requests": [InputRequest JSON]}` — the runtime
              is about to perform an effect (an `AwaitInput`: the run suspends for a human);
- `"event"`   `{"event": {"type": Event class name, ...fields}, "phase": Phase, "step": int}` — one
              external event fed to `step`, with the phase and step it reached (since format
              version 2, an `AgentsFinished` outcome's conversation may leave out the messages of
              its task's input: `{"id", "messages", "input_prefix": n}`, see `encode_event`; since
              version 3, an outcome whose output JSON would not load back as the same value carries
              `"output_shape"`, see `fsm_agents.codec.json_shape`);
- `"finished"` `{"key": idempotency key}` — the effect's event is in the log (same append);
- `"decision"` `{"call_id": str, "decision": {"kind": "approved" | "denied" | "answer", ...}}` — a
              human decided an awaited call while the run was suspended (`fsm-agents decide`);
              the next `resume` applies the decisions as one `InputReceived` event;
- `"end"`     `{"phase": Phase, "step": int, "digest": sha256 hex of the final snapshot's JSON}`.

`Input` is `{"text": str}`, `{"messages": [message JSON]}` or `{"json": value}` (since format
version 3 with `"shape"` when the value's JSON loses its type; `fsm_agents.codec.dump_input`). Events are
encoded as `{"type": class name, **event.model_dump(mode="json")}` and rebuilt through a registry
of every `Event` subclass (walked recursively at load time, so events defined later — by
patterns or users — are found).

Integrity. Stores add `seq`, `created_at` (Unix seconds, UTC, a float) and a hash chain, so an
edited, deleted, moved or reordered record is detected on load (`CorruptStore`):

- the stored body is `data` as compact JSON text (`Record.body`); since version 4 a lone
  surrogate (e.g. `'\\udcff'` from `os.fsdecode`) is written as its JSON escape `\\udcff`, so
  the text is valid UTF-8 and loads back as the same string (a high surrogate followed by a low
  one, two separate code points, is the one string JSON cannot carry: it loads back as the
  character the pair encodes);
- version 4 hash: `sha256(previous hash \\0 conversation_id \\0 seq \\0 kind \\0 version \\0
  repr(created_at) \\0 body)` as UTF-8 bytes, first 32 hex digits — a record moved to another
  conversation or seq, or whose `created_at` was changed, breaks the chain; versions 1 to 3:
  `sha256(previous \\0 kind \\0 version \\0 body)` (their `created_at`, id and seq are not covered);
- a *head* per conversation (`(last seq, last hash)`) is written in the same transaction as every
  append and compared with the last record on load: removing records from the end of a log (which
  a chain alone cannot see) is detected. A conversation written only by versions 1 to 3 has no
  head and loads as before; one holding a version-4 record must have a head that matches.

The chain and the head detect damage and edits made with database tools; they are not a
signature: whoever also recomputes the hashes and the head goes undetected.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from fsm_agents import codec
from fsm_agents.errors import (  # noqa: F401 - re-exported here
    ConversationNotFound,
    CorruptStore,
    FsmAgentsError,
    ReplayMismatch,
    StoreError,
    UnsupportedFormatVersion,
)
from fsm_agents.events import AgentsFinished, Effect, Event, RunAgents
from fsm_agents.state import (
    Message,
    Snapshot,
    messages_from,
)

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "ConversationNotFound",
    "CorruptStore",
    "Record",
    "ReplayMismatch",
    "StoreError",
    "UnsupportedFormatVersion",
    "chain_hash",
    "decode_event",
    "decode_input",
    "encode_event",
    "encode_input",
    "escape_surrogates",
    "json_text",
    "snapshot_digest",
    "verify",
]

FORMAT_VERSION = 4
"""The record format this code writes; loading a record with a higher version raises
`UnsupportedFormatVersion`."""

KINDS = frozenset({"start", "fork", "started", "event", "finished", "end", "decision"})
GENESIS = ""


@dataclass(frozen=True, slots=True)
class Record:
    """One log record. `kind` and `data` are what callers append; the store fills `seq`,
    `created_at` (Unix seconds) and `hash` when it writes the record, and `version` is the
    format version it was written with."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    seq: int = -1
    created_at: float = 0.0
    version: int = FORMAT_VERSION
    hash: str = ""

    def body(self) -> str:
        """`data` as compact JSON text (the stored form; see `json_text`)."""
        return json_text(self.data)


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(data: Any) -> str:
    """`data` as compact JSON text that is valid UTF-8: non-ASCII characters as themselves, a
    lone surrogate (which UTF-8 cannot encode) as its `\\uXXXX` escape, which `json.loads`
    turns back into the same character (see `escape_surrogates`)."""
    return escape_surrogates(json.dumps(data, separators=(",", ":"), ensure_ascii=False))


def escape_surrogates(text: str) -> str:
    """JSON text written by `json.dumps(..., ensure_ascii=False)` with every surrogate character
    replaced by its `\\uXXXX` escape (the same JSON value, now encodable as UTF-8). `json.dumps`
    writes such a character raw and only inside a string, never after a backslash, so the
    escape is always well placed."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def chain_hash(
    previous: str, kind: str, version: int, body: str, *, conversation_id: str = "", seq: int = 0, created_at: float = 0.0
) -> str:
    """The record's link in the hash chain: 32 hex digits of sha256 over the UTF-8 bytes of
    `previous \\0 conversation_id \\0 seq \\0 kind \\0 version \\0 repr(created_at) \\0 body` (format
    version 4 and later) or `previous \\0 kind \\0 version \\0 body` (versions 1 to 3, which did
    not cover the id, the seq and the time)."""
    h = hashlib.sha256()
    if version >= 4:
        h.update(f"{previous}\0{conversation_id}\0{seq}\0{kind}\0{version}\0{created_at!r}\0".encode())
    else:
        h.update(f"{previous}\0{kind}\0{version}\0".encode())
    h.update(body.encode())
    return h.hexdigest()[:32]


def decode_row(conversation_id: str, seq: int, kind: str, version: int, created_at: float, body: str, hash: str) -> Record:
    """A stored row as a `Record`; raises `UnsupportedFormatVersion` or `CorruptStore`."""
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UnsupportedFormatVersion(conversation_id, seq, version, FORMAT_VERSION)
    if kind not in KINDS:
        raise CorruptStore(f"conversation {conversation_id!r}, record {seq}: unknown record kind {kind!r}")
    try:
        data = json.loads(body)
    except (ValueError, TypeError) as exc:
        raise CorruptStore(f"conversation {conversation_id!r}, record {seq}: body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CorruptStore(f"conversation {conversation_id!r}, record {seq}: body is not a JSON object")
    return Record(kind=kind, data=data, seq=seq, created_at=created_at, version=version, hash=hash)


def verify(
    conversation_id: str,
    rows: Sequence[tuple[int, str, int, float, str, str]],
    head: tuple[int, str] | None = None,
) -> list[Record]:
    """Check and decode rows `(seq, kind, version, created_at, body, hash)` of one conversation,
    in seq order, against its `head` (`(last seq, last hash)` as the store recorded it with the
    last append, `None` when it has none): seqs must be 0..n-1, every hash must chain, and the
    last record must be the head (a conversation holding a version-4 record must have one).
    Raises `CorruptStore` or `UnsupportedFormatVersion`."""
    out: list[Record] = []
    previous = GENESIS
    headed = False  # a version-4 record was seen: the log must have a head
    for i, (seq, kind, version, created_at, body, h) in enumerate(rows):
        if seq != i:
            raise CorruptStore(
                f"conversation {conversation_id!r}: record {i} is missing (found seq {seq}); the log has a gap"
            )
        record = decode_row(conversation_id, seq, kind, version, created_at, body, h)
        if chain_hash(previous, kind, version, body, conversation_id=conversation_id, seq=seq, created_at=created_at) != h:
            raise CorruptStore(
                f"conversation {conversation_id!r}, record {seq}: hash chain broken — the record was edited, "
                "removed, reordered or moved from another conversation after it was written"
            )
        headed = headed or version >= 4
        previous = h
        out.append(record)
    if head is not None:
        last = (len(out) - 1, previous)
        if (int(head[0]), str(head[1])) != last:
            raise CorruptStore(
                f"conversation {conversation_id!r}: the store's head says the log ends at record {head[0]}, but it "
                f"{'holds no record' if not out else f'ends at record {last[0]}'}"
                f"{' with another hash' if head[0] == last[0] else ''} — records were removed from (or added to) "
                "its end after they were written; restore a backup"
            )
    elif headed:
        raise CorruptStore(
            f"conversation {conversation_id!r}: the store has no head for this log (its last seq and hash), "
            "which every append writes: the head or the records after it were removed; restore a backup"
        )
    return out


# -- events ------------------------------------------------------------------------------------


def encode_event(event: Event, effect: Effect | None = None) -> dict[str, Any]:
    """`{"type": class name, **event.model_dump(mode="json")}` (the `fsm_agents.codec` format).

    An `AgentsFinished` outcome whose `output` would not load back from its JSON as the same
    value (a pydantic model, a tuple) also carries `"output_shape"` (see `codec.json_shape`).

    With the `RunAgents` effect an `AgentsFinished` answered, each outcome's `conversation` is
    stored without the messages of its task's input (a child's conversation starts with them,
    and for agents run on the parent's history they are that whole history: storing them again
    in every fan-in would make a pattern's log grow quadratically). Such a conversation carries
    `"input_prefix": n`, the number of messages left out; `decode_event` needs the same effect
    to restore them.
    """
    if not (isinstance(event, AgentsFinished) and isinstance(effect, RunAgents)):
        return codec.dump(event)
    data = codec.dump(event, exclude={"outcomes": {"__all__": {"conversation"}}})
    inputs = {t.task_id: t.input for t in effect.tasks}
    for outcome, dumped in zip(event.outcomes, data["outcomes"], strict=True):
        conversation = outcome.conversation
        if conversation is None:
            dumped["conversation"] = None
            continue
        n = _input_prefix_length(conversation.messages, inputs.get(outcome.task_id))
        dumped["conversation"] = {
            "id": conversation.id,
            "messages": [_MESSAGE.dump_python(m, mode="json") for m in conversation.messages[n:]],
            **({"input_prefix": n} if n else {}),
        }
    return data


def _task_messages(task_input: Any) -> tuple[Message, ...] | None:
    try:
        return messages_from(task_input)
    except (TypeError, ValueError, ValidationError):
        return None  # a pattern's own input (not messages): nothing to leave out


def _input_prefix_length(messages: Sequence[Message], task_input: Any) -> int:
    """How many leading `messages` are exactly the task input's messages (0 if they are not)."""
    prefix = _task_messages(task_input)
    if not prefix or len(messages) < len(prefix):
        return 0
    return len(prefix) if all(a == b for a, b in zip(messages, prefix, strict=False)) else 0


def decode_event(data: Mapping[str, Any], effect: Effect | None = None, *, conversations: bool = True) -> Event:
    """Rebuild an event encoded by `encode_event` (validated; the class is looked up among every
    loaded `Event` subclass). An `AgentsFinished` stored with `input_prefix`es needs the
    `RunAgents` `effect` it answered to restore its outcomes' conversations; with
    `conversations=False` (e.g. for listing a history) they are dropped instead, and outputs stay
    plain JSON (no model class needs to be loaded). Raises `CorruptStore`, or `ReplayMismatch`
    for an output whose class no longer validates it."""
    if not isinstance(data.get("type"), str):
        raise CorruptStore(f"an event record has no type: {str(data)[:200]}")
    outcomes = data.get("outcomes")
    if isinstance(outcomes, list) and any(
        isinstance(o, dict) and "input_prefix" in (o.get("conversation") or {}) for o in outcomes
    ):
        data = {**data, "outcomes": [_restore(o, effect, conversations) for o in outcomes]}
    if not conversations and isinstance(outcomes, list):
        # a listing shows outputs as JSON: it needs no model class (its module may not be loaded)
        data = {**data, "outcomes": [_unshaped(o) for o in data["outcomes"]]}
    try:
        return codec.load_event(dict(data))
    except codec.ShapeMismatch as exc:
        raise ReplayMismatch(f"the log holds an event that no longer loads: {exc}") from None
    except codec.CodecError as exc:
        raise CorruptStore(f"the log holds an event that cannot be loaded: {exc}") from None


def _unshaped(outcome: Any) -> Any:
    if isinstance(outcome, dict) and "output_shape" in outcome:
        return {k: v for k, v in outcome.items() if k != "output_shape"}
    return outcome


def _restore(outcome: Any, effect: Effect | None, conversations: bool) -> Any:
    conversation = outcome.get("conversation") if isinstance(outcome, dict) else None
    if not isinstance(conversation, dict) or "input_prefix" not in conversation:
        return outcome
    if not conversations:
        return {**outcome, "conversation": None}
    tasks = {t.task_id: t.input for t in effect.tasks} if isinstance(effect, RunAgents) else {}
    n = conversation["input_prefix"]
    prefix = _task_messages(tasks[outcome.get("task_id")]) if outcome.get("task_id") in tasks else None
    if prefix is None or len(prefix) != n:
        raise CorruptStore(
            f"an agents_finished outcome for task {outcome.get('task_id')!r} leaves out {n} input messages, and the "
            "RunAgents effect it answered does not give them"
        )
    restored = [_MESSAGE.dump_python(m, mode="json") for m in prefix] + list(conversation.get("messages") or [])
    return {**outcome, "conversation": {"id": conversation.get("id"), "messages": restored}}


# -- inputs --------------------------------------------------------------------------------------

_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


def encode_input(value: Any) -> dict[str, Any]:
    """A run input as JSON (`fsm_agents.codec.dump_input`)."""
    return codec.dump_input(value)


def decode_input(data: Mapping[str, Any]) -> Any:
    """The inverse of `encode_input` (`fsm_agents.codec.load_input`). Raises `CorruptStore`, or
    `ReplayMismatch` for a model input whose class no longer validates it."""
    try:
        return codec.load_input(data)
    except codec.ShapeMismatch as exc:
        raise ReplayMismatch(f"a start record's input no longer loads: {exc}") from None
    except codec.CodecError as exc:
        raise CorruptStore(f"a start record's input cannot be loaded: {exc}") from None


def snapshot_digest(snapshot: Snapshot[Any]) -> str:
    """sha256 (hex) of the snapshot's JSON (`model_dump_json`): equal snapshots, equal digests.
    A snapshot holding text that JSON cannot carry as UTF-8 (a lone surrogate, which
    `model_dump_json` refuses) is hashed as `json_text(snapshot.model_dump(mode="json"))` instead
    (both are deterministic, so the digest is stable)."""
    if not isinstance(snapshot, BaseModel):
        return hashlib.sha256(json_text(snapshot).encode()).hexdigest()
    try:
        text = snapshot.model_dump_json()
    except PydanticSerializationError:
        text = json_text(snapshot.model_dump(mode="json"))
    return hashlib.sha256(text.encode()).hexdigest()
