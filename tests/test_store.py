"""The store contract (one suite, three backends), runtime persistence, resume, conversations."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from store_helpers import cut_log

from fsm_agents import Agent, ConcurrencyConflict, FunctionModel, ScriptedModel, tool
from fsm_agents.events import EffectUncertain, ModelReplied, ToolsFinished
from fsm_agents.models.scripted import call, reply
from fsm_agents.runtime import UncertainEffect, resume, run
from fsm_agents.state import AssistantMessage, Phase, ToolResult, Usage, UserMessage
from fsm_agents.store import (
    FORMAT_VERSION,
    ConversationNotFound,
    Conversations,
    CorruptStore,
    MemoryStore,
    Record,
    ReplayMismatch,
    SQLiteStore,
    Store,
    StoreError,
    UnsupportedFormatVersion,
    history,
    replay,
)
from fsm_agents.store._records import decode_event, encode_event

BACKENDS = ["memory", "sqlite", "postgres"]


def ev(i: int) -> Record:
    return Record("event", {"event": {"type": "X"}, "i": i})


# -- the contract -----------------------------------------------------------------------------


def test_append_assigns_consecutive_seqs_and_load_returns_them(store: Store) -> None:
    assert store.load("c") == []
    assert store.append("c", 0, [ev(0), ev(1)]) == 2
    assert store.append("c", 2, [ev(2)]) == 3
    loaded = store.load("c")
    assert [r.seq for r in loaded] == [0, 1, 2]
    assert [r.data["i"] for r in loaded] == [0, 1, 2]
    assert all(r.version == FORMAT_VERSION and r.created_at > 0 and len(r.hash) == 32 for r in loaded)
    assert store.load("other") == []


def test_stale_expected_seq_is_a_conflict_and_writes_nothing(store: Store) -> None:
    store.append("c", 0, [ev(0)])
    for stale in (0, 2, 5):
        with pytest.raises(ConcurrencyConflict) as info:
            store.append("c", stale, [ev(9), ev(10)])
        assert info.value.expected_seq == stale and info.value.actual_seq == 1
    assert [r.data["i"] for r in store.load("c")] == [0]


def test_append_is_atomic_a_bad_record_writes_nothing(store: Store) -> None:
    store.append("c", 0, [ev(0)])
    with pytest.raises(StoreError):
        store.append("c", 1, [ev(1), Record("nonsense", {})])
    assert len(store.load("c")) == 1
    store.append("c", 1, [ev(1)])  # the log is still usable at the same seq
    assert len(store.load("c")) == 2


def test_conversations_are_independent_and_listed(store: Store) -> None:
    store.append("a", 0, [ev(0), ev(1)])
    store.append("b", 0, [ev(0)])
    infos = {i.id: i for i in store.conversations()}
    assert set(infos) == {"a", "b"}
    assert infos["a"].records == 2 and infos["b"].records == 1
    assert infos["a"].created_at <= infos["a"].updated_at


def test_bad_arguments_are_store_errors(store: Store) -> None:
    with pytest.raises(StoreError):
        store.append("c", 0, [])
    with pytest.raises(StoreError):
        store.append("c", -1, [ev(0)])
    with pytest.raises(StoreError):
        store.append("", 0, [ev(0)])


def test_unicode_and_large_bodies_round_trip(store: Store) -> None:
    text = "héllo ✓ 日本 " * 2000
    store.append("c", 0, [Record("event", {"text": text, "n": None, "l": [1, 2.5, True]})])
    assert store.load("c")[0].data == {"text": text, "n": None, "l": [1, 2.5, True]}


async def _agent_run(store: Store, cid: str = "conv") -> Any:
    agent, model = _calc()
    return await run(agent, "1+2?", models={"calc": model}, store=store, conversation_id=cid)


@pytest.mark.anyio
async def test_run_persists_and_resume_of_a_finished_run_needs_no_model(store: Store, anyio_backend: str) -> None:
    result = await _agent_run(store)
    assert result.phase is Phase.DONE and result.output == "3"
    kinds = [r.kind for r in store.load("conv")]
    assert kinds == [
        "start",
        "started",
        "event",
        "finished",
        "started",
        "event",
        "finished",
        "started",
        "event",
        "finished",
        "end",
    ]
    agent, _ = _calc()
    again = await resume("conv", agent, store=store)  # no model: nothing left to perform
    assert again.snapshot == result.snapshot
    assert again.events == result.events
    replayed = replay(store, "conv", agent)
    assert replayed.verified and replayed.snapshot == result.snapshot and replayed.events == 3


@pytest.mark.anyio
async def test_run_refuses_an_existing_conversation(store: Store, anyio_backend: str) -> None:
    """Starting a run under an existing conversation id is a ConcurrencyConflict that says the
    conversation exists and how to continue it (not a stale-seq message about another writer)."""
    await _agent_run(store)
    with pytest.raises(ConcurrencyConflict, match=r"already exists \(\d+ records\): continue it with resume\(\)"):
        await _agent_run(store)


# -- records, events, versions ----------------------------------------------------------------


def test_every_event_round_trips_through_its_json_encoding() -> None:
    events = [
        ModelReplied(
            message=AssistantMessage(content="x", tool_calls=(call("t", "c", a=1),), agent="a"), usage=Usage(requests=1)
        ),
        ToolsFinished(results=(ToolResult(call_id="c", name="t", ok=False, error="boom", duration_ms=1.5),)),
        EffectUncertain(effect_key="r/1/0", detail="charge"),
    ]
    for e in events:
        assert decode_event(json.loads(json.dumps(encode_event(e)))) == e


def test_an_event_class_defined_later_is_found() -> None:
    from typing import ClassVar

    from fsm_agents.events import Event

    class LateEvent(Event):
        name: ClassVar[str] = "late"
        payload: str

    assert decode_event(encode_event(LateEvent(payload="p"))) == LateEvent(payload="p")
    with pytest.raises(CorruptStore, match="NoSuchEvent"):
        decode_event({"type": "NoSuchEvent"})


def test_a_record_from_a_future_format_version_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SQLiteStore(path) as s:
        s.append("c", 0, [ev(0)])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE fsm_records SET version = ?", (FORMAT_VERSION + 1,))
    with SQLiteStore(path) as s, pytest.raises(UnsupportedFormatVersion, match="upgrade fsm_agents"):
        s.load("c")


# -- resume: idempotent effects are performed again, others fail the run -----------------------


def _calc() -> tuple[Agent, ScriptedModel]:
    @tool(idempotent=True)
    def add(a: int, b: int) -> int:
        return a + b

    return Agent("calc", "add", tools=[add]), ScriptedModel([reply(None, call("add", "c1", a=1, b=2)), "3"])


def _crashed_log(store: Store, cid: str, tool_idempotent: bool) -> tuple[Agent, list[str]]:
    """A log as a process leaves it when killed while a tool runs: start, the model reply, and
    the "started" ledger row of the RunTools effect — no event after it."""
    ran: list[str] = []

    @tool(idempotent=tool_idempotent)
    def send(to: str) -> str:
        ran.append(to)
        return "sent"

    agent = Agent("mailer", "send mail", tools=[send])
    model = ScriptedModel([reply(None, call("send", "c1", to="bob"))])

    # write the log up to the tool's start by hand, exactly as the runtime writes it
    from fsm_agents.store import _fold

    machine = agent.machine
    step = machine.start("mail bob", run_id=cid)
    store.append(cid, 0, [_fold.start_record(machine, cid, "mail bob"), _fold.started_record(step.effects[0])])
    event = ModelReplied(message=model._responses[0].message)
    step = machine.step(step.snapshot, event)
    store.append(cid, 2, [*_fold.event_records(f"{cid}/0/0", event, step, machine)])
    store.append(cid, 4, [_fold.started_record(step.effects[0], machine.tools_for("mailer"))])
    return agent, ran


@pytest.mark.anyio
async def test_resume_reruns_an_unfinished_idempotent_tool(store: Store, anyio_backend: str) -> None:
    agent, ran = _crashed_log(store, "c", tool_idempotent=True)
    result = await resume("c", agent, store=store, models={"mailer": ScriptedModel(["mailed"])})
    assert ran == ["bob"]
    assert result.phase is Phase.DONE and result.output == "mailed"
    assert [type(e).__name__ for e in result.events] == ["ModelReplied", "ToolsFinished", "ModelReplied"]
    assert replay(store, "c", agent).verified


@pytest.mark.anyio
async def test_resume_never_reruns_an_unfinished_non_idempotent_tool(store: Store, anyio_backend: str) -> None:
    agent, ran = _crashed_log(store, "c", tool_idempotent=False)
    result = await resume("c", agent, store=store, models={"mailer": ScriptedModel([])})
    assert ran == []
    assert result.phase is Phase.FAILED
    assert result.failure is not None and result.failure.kind == "uncertain_effect"
    assert result.failure.detail == "send" and "c/1/0" in result.failure.message
    assert isinstance(result.events[-1], EffectUncertain)
    # the history stays well formed: the unanswered call got an error result
    assert result.snapshot.conversation.messages[-1].role == "tool"
    assert replay(store, "c", agent).verified
    # resuming again changes nothing
    again = await resume("c", agent, store=store)
    assert again.snapshot == result.snapshot and len(store.load("c")) == 8


@pytest.mark.anyio
async def test_a_machine_without_effect_uncertain_gets_a_typed_error(anyio_backend: str) -> None:
    store = MemoryStore()
    agent, _ = _crashed_log(store, "c", tool_idempotent=False)
    machine = agent.machine
    real = machine.table

    class NoUncertain:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def accepts(self, phase: Phase) -> tuple[str, ...]:
            return tuple(e for e in real.accepts(phase) if e != "effect_uncertain")

    machine.table = NoUncertain()  # type: ignore[assignment]
    try:
        with pytest.raises(UncertainEffect, match="send"):
            await resume("c", agent, store=store, models={"mailer": ScriptedModel([])})
    finally:
        machine.table = real
    assert len(store.load("c")) == 5  # nothing written


@pytest.mark.anyio
async def test_resume_of_an_unknown_conversation_and_a_wrong_machine(anyio_backend: str) -> None:
    store = MemoryStore()
    agent, model = _calc()
    with pytest.raises(ConversationNotFound):
        await resume("nope", agent, store=store, models={"calc": model})
    await run(agent, "x", models={"calc": model}, store=store, conversation_id="c")
    other = Agent("other", "x")
    with pytest.raises(StoreError.__mro__[1], match="agent:calc"):
        await resume("c", other, store=store, models={"other": ScriptedModel([])})


# -- replay proves the outcome ----------------------------------------------------------------


@pytest.mark.anyio
async def test_replay_detects_a_changed_machine(anyio_backend: str) -> None:
    store = MemoryStore()
    agent, model = _calc()
    await run(agent, "1+2?", models={"calc": model}, store=store, conversation_id="c")
    changed = Agent("calc", "add", tools=list(agent.tools), max_steps=1)  # now the tool request exceeds the budget
    with pytest.raises(ReplayMismatch):
        replay(store, "c", changed)


def test_replay_detects_an_edited_log(tmp_path: Path) -> None:
    import anyio

    path = tmp_path / "s.db"
    agent, model = _calc()
    with SQLiteStore(path) as s:
        anyio.run(lambda: run(agent, "1+2?", models={"calc": model}, store=s, conversation_id="c"))
    with sqlite3.connect(path) as db:
        body = db.execute("SELECT body FROM fsm_records WHERE seq = 8").fetchone()[0]
        db.execute("UPDATE fsm_records SET body = ? WHERE seq = 8", (body.replace('"3"', '"4"'),))
    with SQLiteStore(path) as s, pytest.raises(CorruptStore, match="hash chain"):
        replay(s, "c", agent)


# -- conversations ----------------------------------------------------------------------------


def _support() -> tuple[Agent, Agent, FunctionModel]:
    billing = Agent("billing", "You handle invoices.")
    triage = Agent("triage", "Route the customer.", handoffs=[billing])

    def respond(request: Any) -> AssistantMessage:
        last_user = next(m.content for m in reversed(list(request.messages)) if m.role == "user")
        if request.agent == "triage":
            return reply(None, call("transfer_to_billing", "h1"))
        return reply(f"billing answers: {last_user}")

    return triage, billing, FunctionModel(respond)


@pytest.mark.anyio
async def test_conversations_start_append_history_fork_list(store: Store, anyio_backend: str) -> None:
    triage, billing, model = _support()
    convs = Conversations(store, models={"triage": model, "billing": model})
    first = await convs.start(triage, "my invoice is wrong", conversation_id="support")
    assert first.ok and first.output == "billing answers: my invoice is wrong"
    second = await convs.append("support", billing, "and the refund?")
    assert second.ok and second.output == "billing answers: and the refund?"
    # the second agent saw the whole history
    assert [m.role for m in second.snapshot.conversation.messages][:4] == ["user", "assistant", "tool", "assistant"]
    entries = await convs.history("support")
    assert [(e.type, e.role, e.agent) for e in entries] == [
        ("message.input", "user", None),
        ("agent.handoff", "assistant", "triage"),
        ("message.output", "assistant", "billing"),
        ("message.input", "user", None),
        ("message.output", "assistant", "billing"),
    ]
    assert entries[1].to_agent == "billing" and entries[3].content == "and the refund?"
    assert history(store, "support") == entries

    replayed = await convs.replay("support")
    assert replayed.verified and replayed.segments == 2 and replayed.snapshot == second.snapshot

    # fork right after the first run: the fork shares its prefix and continues differently
    cut = entries[3].seq  # the second run's start record
    fork = await convs.fork("support", cut, new_id="support-fork")
    assert await convs.history(fork) == entries[:3]
    third = await convs.append(fork, billing, "cancel instead")
    assert third.output == "billing answers: cancel instead"
    assert [e.content for e in await convs.history(fork)][-2:] == ["cancel instead", "billing answers: cancel instead"]
    assert [e.content for e in await convs.history("support")] == [e.content for e in entries]  # parent untouched
    assert (await convs.replay(fork)).verified
    assert {i.id for i in await convs.list()} == {"support", "support-fork"}
    with pytest.raises(StoreError):
        await convs.fork("support", 0)
    with pytest.raises(ConversationNotFound):
        await convs.history("missing")


@pytest.mark.anyio
async def test_a_fork_cut_mid_run_is_resumed_with_another_model(anyio_backend: str) -> None:
    store = MemoryStore()
    agent, model = _calc()
    convs = Conversations(store, agent, models={"calc": model})
    await convs.start(agent, "1+2?", conversation_id="c")
    cut = next(e.seq for e in await convs.history("c") if e.type == "tool.execution") + 1  # after the tool result
    fork = await convs.fork("c", cut)
    assert (await convs.snapshot(fork)).phase is Phase.PLANNING
    resumed = await Conversations(store, agent, models={"calc": ScriptedModel(["three"])}).resume(fork)
    assert resumed.output == "three"
    assert (await convs.snapshot("c")).output == "3"


# -- CLI --------------------------------------------------------------------------------------


def test_cli_history_and_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio
    from store_helpers import calc_agent

    from fsm_agents.cli import main

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    db = str(tmp_path / "s.db")
    model = ScriptedModel([reply(None, call("add", "c1", a=1, b=2)), "3"])
    with SQLiteStore(db) as s:
        anyio.run(lambda: run(calc_agent(), "1+2?", models={"calc": model}, store=s, conversation_id="c"))
    assert main(["history", "c", "--store", db]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "message.input" in out[0] and "1+2?" in out[0]
    assert "tool.execution" in out[1] and 'add({"a": 1, "b": 2}) -> 3' in out[1]
    assert "message.output" in out[2] and out[2].endswith("3")
    assert main(["history", "c", "--store", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[1])["name"] == "add"
    assert main(["replay", "c", "--store", db, "--machine", "store_helpers:calc_agent"]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["history", "missing", "--store", db]) == 1
    assert "no conversation 'missing'" in capsys.readouterr().err
    assert main(["history", "c", "--store", str(tmp_path / "nope.db")]) == 1


@pytest.mark.anyio
async def test_a_pattern_resumes_its_children_from_their_own_logs(anyio_backend: str) -> None:
    from fsm_agents.patterns import Sequential

    pipe = Sequential("pipe", [Agent("a", "first"), Agent("b", "second")])
    store = MemoryStore()
    models = {"a": ScriptedModel(["A says"]), "b": ScriptedModel(["B says"])}
    done = await run(pipe, "go", models=models, store=store, conversation_id="p")
    assert done.output == "B says"
    children = [i.id for i in store.conversations() if i.id != "p"]
    assert len(children) == 2 and all(c.startswith("p/") for c in children)
    # a crash after the first child finished but before the parent logged it: keep start + "started"
    cut_log(store, "p", 2)
    empty = {"a": ScriptedModel([]), "b": ScriptedModel([])}  # any model call would fail the run
    resumed = await resume("p", pipe, store=store, models=empty)
    assert resumed.snapshot == done.snapshot
    assert replay(store, "p", pipe).verified


@pytest.mark.anyio
async def test_a_fan_in_does_not_store_the_history_its_children_were_given_again(anyio_backend: str) -> None:
    from fsm_agents.patterns import Sequential
    from fsm_agents.store import _fold

    pipe = Sequential("pipe", [Agent("a", "first"), Agent("b", "second")])
    store = MemoryStore()
    models = {"a": ScriptedModel(["A says"]), "b": ScriptedModel(["B says"])}
    marker = "an early message that must be stored once " * 20
    done = await run(
        pipe, [*(UserMessage(content=f"{marker}{i}") for i in range(30))], models=models, store=store, conversation_id="p"
    )
    assert done.ok
    fan_ins = [r for r in store.load("p") if r.kind == "event" and r.data["event"]["type"] == "AgentsFinished"]
    assert fan_ins, "the pipeline persisted no fan-in"
    for r in fan_ins:
        body = json.dumps(r.data)
        assert marker not in body and '"input_prefix"' in body  # the children's input is left out...
        assert "A says" in body or "B says" in body  # ...their own messages are kept
    # ...and restored: the log folds to the same final snapshot, and resumes without any model
    assert replay(store, "p", pipe).verified
    resumed = await resume("p", pipe, store=store, models={"a": ScriptedModel([]), "b": ScriptedModel([])})
    assert resumed.snapshot == done.snapshot
    (segment,) = _fold.fold(store.load("p"), lambda name: pipe.machine)
    outcome = next(e for e in segment.events if e.name == "agents_finished").outcomes[0]  # type: ignore[attr-defined]
    assert outcome.conversation.messages[0].content == f"{marker}0"
    # without the effect it answered, a compacted fan-in is a clear error, or is listed without conversations
    with pytest.raises(CorruptStore, match="input messages"):
        decode_event(fan_ins[0].data["event"])
    assert decode_event(fan_ins[0].data["event"], conversations=False).outcomes[0].conversation is None  # type: ignore[attr-defined]
    assert [e.content for e in history(store, "p") if e.type == "message.output"][-1] == "B says"


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    score: int
    note: str = ""


def _judges() -> Any:
    """A pipeline whose output is a tuple of pydantic models, each a child agent's `output_type`."""
    from fsm_agents.patterns import Parallel, Sequential

    judges = Parallel(
        "judges",
        [
            Agent("j1", "judge", model=ScriptedModel(['{"score": 3}']), output_type=Verdict),
            Agent("j2", "judge", model=ScriptedModel(['{"score": 5, "note": "fine"}']), output_type=Verdict),
        ],
    )
    return Sequential("review", [Agent("writer", "write", model=ScriptedModel(["a draft"])), judges])


@pytest.mark.anyio
async def test_typed_child_outputs_load_back_as_the_values_the_run_folded_in(anyio_backend: str) -> None:
    """A child's output (its `output_type` model; a fan-in's tuple of them) is rebuilt from the log
    as the same value: before, it came back as plain JSON (dicts in a list), so the replayed
    snapshot differed from the live one and could not even be hashed."""
    store = MemoryStore()
    pipe = _judges()
    done = await run(pipe, "review this", store=store, conversation_id="r")
    assert done.output == (Verdict(score=3), Verdict(score=5, note="fine"))
    shapes = [
        o.get("output_shape")
        for r in store.load("r")
        if r.kind == "event" and r.data["event"]["type"] == "AgentsFinished"
        for o in r.data["event"]["outcomes"]
    ]
    assert {"tuple": [{"model": f"{__name__}:Verdict"}] * 2} in shapes
    replayed = replay(store, "r", pipe)
    assert replayed.verified
    resumed = await resume("r", pipe, store=store)
    assert resumed.snapshot == done.snapshot and type(resumed.output) is tuple
    assert all(type(v) is Verdict for v in resumed.output)
    hash(resumed.snapshot)
    listed = [e.content for e in history(store, "r") if e.type == "message.output"]
    assert '[{"score": 3, "note": ""}, {"score": 5, "note": "fine"}]' in listed  # listed as JSON, as before


def test_an_output_shape_names_a_loaded_class_or_the_error_says_what_to_import() -> None:
    """Decoding rebuilds models and tuples from `output_shape`; an unknown class is a
    `CorruptStore` naming it (nothing is imported from a name in the log), a class whose fields
    changed since the run a `ReplayMismatch`, and a malformed shape a `CorruptStore`."""
    from fsm_agents.events import AgentOutcome, AgentsFinished

    event = AgentsFinished(
        outcomes=(
            AgentOutcome(task_id="t", machine="m", phase=Phase.DONE, output=(Verdict(score=1), "text", frozenset({2}))),
        )
    )
    data = encode_event(event)
    assert decode_event(json.loads(json.dumps(data))) == event

    def with_shape(output: Any, shape: Any) -> dict[str, Any]:
        outcome = {**data["outcomes"][0], "output": output, "output_shape": shape}
        return {**data, "outcomes": [outcome]}

    with pytest.raises(CorruptStore, match="not_a_module:Gone, which is not loaded"):
        decode_event(with_shape({"score": 1}, {"model": "not_a_module:Gone"}))
    # listing a history (e.g. `fsm-agents history` in a process that never imported the class) needs no class
    listed = decode_event(with_shape({"score": 1}, {"model": "not_a_module:Gone"}), conversations=False)
    assert listed.outcomes[0].output == {"score": 1}  # type: ignore[attr-defined]
    with pytest.raises(ReplayMismatch, match="no longer validates"):
        decode_event(with_shape({"points": 1}, {"model": f"{__name__}:Verdict"}))
    for output, shape in [([1], {"tuple": [None, None]}), ({"a": 1}, {"tuple": []}), (1, {"list": []}), (1, "model")]:
        with pytest.raises(CorruptStore, match="shape"):
            decode_event(with_shape(output, shape))
    # a log written before output shapes (format version 2) still loads, with plain JSON outputs
    old = {**data, "outcomes": [{k: v for k, v in data["outcomes"][0].items() if k != "output_shape"}]}
    assert decode_event(old).outcomes[0].output == [{"score": 1, "note": ""}, "text", [2]]  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_pattern_inputs_that_are_models_load_back_so_persisted_runs_resume(anyio_backend: str) -> None:
    """A pattern's input that is a pydantic model (`RecursiveTask` for a subtask run, `EventInput`
    for an emitted event) loads back from its start record as that model. Before, it came back
    as a dict: every subtask log failed to fold with a bare ValidationError, and a bus's log
    started on an event type spelled as the dict's repr."""
    from fsm_agents.patterns import EventDriven, Recursive

    plan = {"goal": ["a", "b"], "b": ["b1", "b2"]}

    def decompose(request: Any) -> str:
        subtasks = plan.get(request.messages[-1].content or "")
        return json.dumps({"action": "DECOMPOSE", "subtasks": subtasks} if subtasks else {"action": "EXECUTE"})

    executor = Agent("exe", model=FunctionModel(lambda r: f"done:{r.messages[-1].content}"))
    rec = Recursive("rec", Agent("dec", model=FunctionModel(decompose)), executor, max_depth=2)
    store = MemoryStore()
    done = await run(rec, "goal", store=store, conversation_id="g")
    assert done.ok and "done:b2" in done.output
    subtasks = [i.id for i in store.conversations() if i.id.endswith("subtask")]
    assert len(subtasks) == 4 and all(replay(store, c, rec).verified for c in subtasks)
    cut_log(store, "g", 2)  # a crash before the parent logged its decomposition
    resumed = await resume("g", rec, store=store)
    assert resumed.snapshot == done.snapshot

    bus = EventDriven("bus", {"data.received": Agent("an", model=FunctionModel(lambda r: f"seen {len(r.messages)}"))})
    first = await bus.emit("data.received", {"rows": 3}, store=store, conversation_id="e1")
    second = await bus.emit("data.received", {"rows": 4}, store=store, conversation_id="e2")  # carries e1's history
    assert (first.output, second.output) == ("seen 1", "seen 3")
    for cid, live in (("e1", first), ("e2", second)):
        assert replay(store, cid, bus.machine).verified
        assert (await resume(cid, bus.machine, store=store)).snapshot == live.snapshot


def test_a_stored_input_the_machine_no_longer_starts_from_is_a_replay_mismatch() -> None:
    """Folding a start record whose input the machine rejects raises `ReplayMismatch` naming the
    record, not the machine's own exception."""
    from fsm_agents.patterns import EventDriven
    from fsm_agents.patterns.event_driven import EventInput

    store = MemoryStore()
    old = EventDriven("bus", {"gone": Agent("an", model=ScriptedModel(["x"]))})
    assert run_sync_(old.machine, EventInput.of("gone"), store, "b").ok
    new = EventDriven("bus", {"other": Agent("an", model=ScriptedModel(["x"]))})
    with pytest.raises(ReplayMismatch, match=r"record 0: event_driven:bus does not start from the stored input"):
        replay(store, "b", new.machine)


def run_sync_(machine: Any, value: Any, store: Store, conversation_id: str) -> Any:
    from fsm_agents import run_sync

    return run_sync(machine, value, store=store, conversation_id=conversation_id)


def test_cli_run_runs_an_agent_persists_it_and_reports_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fsm-agents run MODULE:OBJECT INPUT` prints the output and exits 0 on DONE; `--store`
    persists the run (the database is created) so `history` and `replay` read it back; `--json`
    prints phase, output and usage; an agent without a model is a one-line error (exit 1), and
    a run that ends FAILED exits 1 naming the failure."""
    from fsm_agents.cli import main

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    db = str(tmp_path / "new.db")
    assert main(["run", "store_helpers:scripted_calc", "1+2?", "--store", db, "--conversation-id", "k"]) == 0
    assert capsys.readouterr().out.strip() == "3"
    assert main(["replay", "k", "--store", db, "--machine", "store_helpers:calc_agent"]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["run", "store_helpers:scripted_calc", "1+2?", "--json", "--trace"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["phase"], summary["output"], summary["failure"], summary["steps"]) == ("DONE", "3", None, 4)
    assert "PLANNING  --model_replied--> DONE" in captured.err  # --trace went to stderr
    monkeypatch.setattr("sys.stdin", io.StringIO("1+2?"))
    assert main(["run", "store_helpers:scripted_calc"]) == 0  # the input read from stdin
    assert capsys.readouterr().out.strip() == "3"
    assert main(["run", "store_helpers:modelless", "x"]) == 1  # a configuration error: one line, no traceback
    assert (
        capsys.readouterr().err
        == "error: no model for agent(s) nomodel: give the Agent a model= or pass run(..., models={'nomodel': model})\n"
    )
    assert main(["run", "store_helpers:broken_calc", "x"]) == 1  # the run ends FAILED
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("FAILED (model_error): calc:")


def test_cli_demo_runs_the_checkouts_example_or_says_where_it_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fsm-agents demo QUESTION` calls examples/local_agent.py's main with the question (the
    main job, as `make demo`); outside a checkout, where `examples` cannot be imported, it says
    where the demo lives instead of a traceback."""
    import sys
    import types

    from fsm_agents.cli import main

    asked: list[list[str]] = []
    fake = types.ModuleType("examples.local_agent")
    fake.main = lambda argv: asked.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "examples.local_agent", fake)
    assert main(["demo", "How", "big?"]) == 0 and asked == [["How", "big?"]]
    monkeypatch.setitem(sys.modules, "examples.local_agent", None)  # import fails, as outside a checkout
    assert main(["demo"]) == 1
    assert "examples/local_agent.py of the fsm_agents repository" in capsys.readouterr().err
