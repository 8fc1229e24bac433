"""What the Temporal workflow and its activities send each other: small dataclasses of JSON
values (Temporal's default data converter encodes them as JSON).

**References, not payloads** (docs/architecture.md, "Temporal"): an activity's input names the
conversation in the event store and the log position the workflow knows (`conversation_id`,
`seq`) plus only what is new (an event the workflow made itself); its result is the delta (the
event that answers the effect: a model reply, tool results) and the log's new length. The
conversation itself is never an activity input.

Imported inside the workflow sandbox: nothing here performs I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["EffectInput", "EffectOutput", "LoadOutput", "Progress", "RunInput", "RunSummary", "StartInput"]

ACTIVITY_START = "fsm_agents.start"
ACTIVITY_PERFORM = "fsm_agents.perform"
ACTIVITY_JOURNAL = "fsm_agents.journal"
ACTIVITY_LOAD = "fsm_agents.load"
WORKFLOW = "fsm_agents.FsmWorkflow"
UPDATE_DECIDE = "decide"
QUERY_PROGRESS = "progress"
QUERY_SNAPSHOT = "snapshot"
SIGNAL_DELTAS = "fsm_agents.deltas"
QUERY_DELTAS = "fsm_agents.deltas"


@dataclass
class RunInput:
    """The input of `FsmWorkflow`.

    - `spec`: `MODULE:OBJECT` of the top-level machine (an `Agent`, a pattern, a machine, or a
      factory returning one); the workflow imports it inside the sandbox;
    - `machine`: its name (the worker checks it is registered); `path`: the child machine names
      from it to the machine this workflow runs (a `RunAgents` child: `[name, ...]`);
    - `conversation_id`, `run_id`: where the run's log is and its id (children:
      `<parent>/<task id>`);
    - `input`: the start input as `fsm_agents.codec.dump_input` JSON; `None` when the run
      continues (`seq` set: after continue-as-new, the log is read back);
    - `seq`: the log length the previous run of this workflow left (continue-as-new), else `None`;
    - `activity_timeout` (s, start-to-close of one effect's activity), `heartbeat_timeout` (s, or
      `None`: how soon a dead worker's activity is retried elsewhere);
    - `continue_as_new_after`: events per workflow run before continuing as new (`None`: when
      the server suggests it);
    - `return_events`: put the run's events in the result (for a caller without the store);
    - `stream`: the model calls stream their text and tool-call deltas, which the `perform`
      activity publishes to this workflow in batches (signal `fsm_agents.deltas`; children
      inherit it); `deltas_base`: how many deltas earlier runs of this workflow held (continue-as-new
      keeps the query's indices absolute).
    """

    spec: str
    machine: str
    conversation_id: str
    run_id: str
    input: dict[str, Any] | None
    path: list[str] = field(default_factory=list)
    seq: int | None = None
    activity_timeout: float = 300.0
    heartbeat_timeout: float | None = None
    continue_as_new_after: int | None = None
    return_events: bool = False
    stream: bool = False
    deltas_base: int = 0


@dataclass
class StartInput:
    """`fsm_agents.start`: write the run's `start` record (once, also when retried)."""

    machine: str
    path: list[str]
    conversation_id: str
    run_id: str
    input: dict[str, Any]


@dataclass
class EffectInput:
    """`fsm_agents.perform` / `fsm_agents.journal`: the effect at `key` of the run logged under
    `conversation_id`, whose log the workflow knows up to `seq` (exclusive). `mode` (journal):
    `"begin"` (the "started" record) or `"end"` (record `event`, the workflow's own). `stream`:
    publish a model call's deltas to this activity's workflow (signal `fsm_agents.deltas`)."""

    machine: str
    path: list[str]
    conversation_id: str
    seq: int
    key: str
    mode: str = "perform"
    event: dict[str, Any] | None = None
    stream: bool = False


@dataclass
class EffectOutput:
    """The event that answers the effect (`fsm_agents.codec.dump` JSON; `None` for a journal
    call) and the log's length after it."""

    seq: int
    event: dict[str, Any] | None = None


@dataclass
class LoadOutput:
    """`fsm_agents.load` (after continue-as-new): the run's start input, its events so far and the
    log's length."""

    run_id: str
    input: dict[str, Any]
    events: list[dict[str, Any]]
    seq: int


@dataclass
class RunSummary:
    """The result of `FsmWorkflow`: how the run ended (small: the conversation stays in the store).
    `outcome`: an `AgentsFinished` JSON with this run's one `AgentOutcome` (what a parent
    workflow folds in); `events`: the run's events when `RunInput.return_events`."""

    conversation_id: str
    run_id: str
    phase: str
    step: int
    seq: int
    outcome: dict[str, Any]
    events: list[dict[str, Any]] | None = None
    input: dict[str, Any] | None = None


@dataclass
class Progress:
    """The `progress` query: phase, step, the log length, and the calls a suspension awaits
    (`fsm_agents.events.InputRequest` JSON)."""

    phase: str
    step: int
    seq: int
    status: str
    pending: list[dict[str, Any]] = field(default_factory=list)
