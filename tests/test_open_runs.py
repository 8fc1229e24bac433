"""Open runs (issue 12): `iterate`, `stream`, suspension for a human and `resume` with decisions.

Every test here goes through the one driver (`fsm_agents.runtime.driver.drive`); each would fail
without the feature it names (no `iterate`/`stream`, no `AwaitInput`, no decision checks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from cassette import replay

from fsm_agents import (
    Agent,
    Answer,
    Approved,
    Denied,
    EffectFinished,
    EffectStarted,
    Finished,
    InvalidDecision,
    NotSuspended,
    ScriptedModel,
    StepItem,
    TextDelta,
    ToolCallDelta,
    TransitionTaken,
    ask_user,
    iterate,
    resume,
    run,
    stream,
    tool,
)
from fsm_agents.models import OpenAIChat, call, reply
from fsm_agents.patterns import Parallel
from fsm_agents.store import SQLiteStore
from fsm_agents.store.journal import pending_calls, record_decision

pytestmark = pytest.mark.anyio


def payer(log: list[int], *, replies: list[Any] | None = None, name: str = "payer") -> Agent:
    @tool(requires_approval=True)
    def pay(amount: int) -> str:
        """Pay an amount (needs a human's approval)."""
        log.append(amount)
        return f"paid {amount}"

    @tool
    def balance() -> int:
        """The balance (no approval needed)."""
        return 100

    script = replies or [reply(None, call("pay", amount=5), call("pay", amount=7), call("balance")), "done"]
    return Agent(name, "Pay what is asked.", ScriptedModel(script), tools=[pay, balance])


def THEN_DONE() -> dict[str, Any]:
    """The payer's model after a resume (a new ScriptedModel starts its script again)."""
    return {"payer": ScriptedModel(["done"])}


def tool_texts(result: Any) -> dict[str, str]:
    return {m.tool_call_id: m.content for m in result.snapshot.conversation.messages if m.role == "tool"}


# -- iterate ---------------------------------------------------------------------------------------


async def test_iterate_gives_one_item_per_step_in_order_and_the_result() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    agent = Agent("calc", "add", ScriptedModel([reply(None, call("add", a=1, b=2)), "3"]), tools=[add])
    items: list[StepItem] = []
    async with iterate(agent, "1+2?") as r:
        async for item in r:
            items.append(item)
    assert r.result is not None and r.result.output == "3"
    assert [i.event.name for i in items] == ["model_replied", "tools_finished", "model_replied"]
    # the items' transitions are the run's trace after start, in order
    assert [t for i in items for t in i.transitions] == list(r.result.trace)
    assert items[-1].snapshot == r.result.snapshot and items[-1].effects == ()


async def test_leaving_iterate_early_cancels_the_run_and_a_stored_run_resumes(tmp_path: Path) -> None:
    calls: list[str] = []

    @tool(idempotent=True)
    def look(q: str) -> str:
        """Look something up."""
        calls.append(q)
        return q.upper()

    def make() -> Agent:
        script = [reply(None, call("look", q="a")), reply(None, call("look", q="b")), "done"]
        return Agent("looker", "look", ScriptedModel(script), tools=[look])

    store = SQLiteStore(tmp_path / "runs.db")
    async with iterate(make(), "go", store=store, conversation_id="c1") as r:
        async for item in r:
            if item.event.name == "tools_finished":
                break  # stop after the first tool call: the run is cancelled
    assert r.result is None
    assert calls == ["a"]
    result = await resume(
        "c1", make(), store=store, models={"looker": ScriptedModel([reply(None, call("look", q="b")), "done"])}
    )
    assert result.output == "done" and calls == ["a", "b"]


# -- stream ----------------------------------------------------------------------------------------


async def test_stream_shows_effects_transitions_and_ends_with_finished() -> None:
    agent = Agent("echo", "say hi", ScriptedModel(["hi"]))
    seen = [ev async for ev in stream(agent, "hello")]
    assert [type(ev) for ev in seen] == [EffectStarted, EffectFinished, TransitionTaken, Finished]
    finished = seen[-1]
    assert isinstance(finished, Finished) and finished.result.output == "hi"
    assert {ev.run_id for ev in seen} == {finished.result.run_id}


async def test_stream_forwards_the_providers_text_and_tool_call_deltas() -> None:
    rec = replay("openai/chat_stream_tool_call_roundtrip.yaml")

    @tool
    def get_capital(country: str) -> str:
        return "London"

    model = OpenAIChat("gpt-4o-mini", api_key="sk-test", transport=rec.transport())
    agent = Agent("geo", "", model, tools=[get_capital])
    events = [ev async for ev in stream(agent, "What is the capital of the UK? Use the tool, then answer.")]
    await model.aclose()
    args = "".join(ev.arguments for ev in events if isinstance(ev, ToolCallDelta))
    text = "".join(ev.text for ev in events if isinstance(ev, TextDelta))
    assert json.loads(args) == {"country": "UK"}
    assert text == "The capital of the UK is London."
    result = events[-1].result  # type: ignore[union-attr]
    assert result.output == text
    # deltas come before the model call's EffectFinished
    first_text = next(i for i, ev in enumerate(events) if isinstance(ev, TextDelta))
    last_finished = max(i for i, ev in enumerate(events) if isinstance(ev, EffectFinished))
    assert first_text < last_finished


async def test_stream_of_a_pattern_tags_each_childs_events_with_its_run_id() -> None:
    a = Agent("a", "", ScriptedModel(["from a"]))
    b = Agent("b", "", ScriptedModel(["from b"]))
    team = Parallel("team", [a, b])
    events = [ev async for ev in stream(team, "go", run_id="top")]
    ids = {ev.run_id for ev in events}
    assert "top" in ids and len(ids) >= 3  # the pattern and each child
    assert all(i == "top" or i.startswith("top/") for i in ids)


async def test_stream_stopped_early_in_its_block_cancels_the_run() -> None:
    started = anyio.Event()
    cancelled: list[bool] = []

    @tool
    async def slow() -> str:
        started.set()
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise
        return "never"

    agent = Agent("slowpoke", "", ScriptedModel([reply(None, call("slow")), "x"]), tools=[slow])
    with anyio.fail_after(10):
        async with stream(agent, "go") as events:
            async for ev in events:
                if isinstance(ev, EffectStarted) and ev.effect.key.endswith("/1/0"):
                    await started.wait()
                    break
    assert cancelled == [True] and events.result is None


# -- suspension and decisions ----------------------------------------------------------------------


async def test_approval_suspends_then_approved_runs_once_and_denied_is_fed_back() -> None:
    log: list[int] = []
    agent = payer(log)
    first = await run(agent, "pay")
    assert first.status == "suspended" and first.phase == "EXECUTING"
    assert [(p.request.tool, p.request.kind) for p in first.pending] == [("pay", "approval"), ("pay", "approval")]
    assert log == []  # nothing ran, not even the call that needs no approval
    ids = [p.call_id for p in first.pending]
    done = await resume(first, agent, decisions={ids[0]: Approved(), ids[1]: Denied("over the limit")})
    assert done.status == "done" and done.output == "done"
    assert log == [5]
    texts = tool_texts(done)
    assert texts[ids[0]] == "paid 5"
    assert "denied by the user: over the limit" in texts[ids[1]]
    assert "100" in texts.values()  # the call needing no approval ran with the approved one


async def test_a_tool_asks_the_user_and_the_answer_is_its_result() -> None:
    agent = Agent(
        "asker", "", ScriptedModel([reply(None, call("ask_user", question="Which city?")), "ok"]), tools=[ask_user()]
    )
    first = await run(agent, "book a trip")
    (p,) = first.pending
    assert (p.request.kind, p.request.question) == ("question", "Which city?")
    with pytest.raises(InvalidDecision):
        await resume(first, agent, decisions={p.call_id: Approved()})
    done = await resume(first, agent, decisions={p.call_id: Answer("Lyon")})
    assert tool_texts(done)[p.call_id] == "Lyon" and done.output == "ok"


async def test_bad_decisions_are_typed_errors_and_change_nothing(tmp_path: Path) -> None:
    log: list[int] = []
    store = SQLiteStore(tmp_path / "runs.db")
    first = await run(payer(log), "pay", store=store, conversation_id="c1")
    ids = [p.call_id for p in first.pending]
    before = len(store.load("c1"))
    with pytest.raises(InvalidDecision, match="no awaited call"):
        await resume("c1", payer(log), store=store, decisions={"nope": Approved(), ids[0]: Approved(), ids[1]: Approved()})
    with pytest.raises(InvalidDecision, match="missing"):
        await resume("c1", payer(log), store=store, decisions={ids[0]: Approved()})
    with pytest.raises(InvalidDecision):
        await resume("c1", payer(log), store=store, decisions={ids[0]: Answer("x"), ids[1]: Approved()})
    assert len(store.load("c1")) == before and log == []
    done = await resume(
        "c1", payer(log), store=store, decisions={ids[0]: Approved(), ids[1]: Approved()}, models=THEN_DONE()
    )
    assert done.status == "done" and sorted(log) == [5, 7]  # calls of one reply run concurrently
    with pytest.raises(NotSuspended):  # a second decision: the run no longer waits
        await resume("c1", payer(log), store=store, decisions={ids[0]: Approved()})
    with pytest.raises(NotSuspended):
        await resume(done, payer(log), decisions={ids[0]: Approved()})
    assert sorted(log) == [5, 7]


async def test_approved_calls_run_exactly_once_across_a_crash_after_the_decision(tmp_path: Path) -> None:
    """The decision is stored, the approved tool starts, the process dies: resuming does not run
    the (non-idempotent) call a second time; the run fails as uncertain instead."""
    log: list[int] = []
    store = SQLiteStore(tmp_path / "runs.db")
    first = await run(payer(log), "pay", store=store, conversation_id="c1")
    ids = [p.call_id for p in first.pending]

    @tool(requires_approval=True)
    def pay(amount: int) -> str:
        """Pay."""
        log.append(amount)
        raise KeyboardInterrupt  # the process is stopped inside the tool, after the money moved

    @tool
    def balance() -> int:
        """Balance."""
        return 100

    crashing = Agent("payer", "", ScriptedModel(["unused"]), tools=[pay, balance])
    with pytest.raises(KeyboardInterrupt):
        await resume("c1", crashing, store=store, decisions={ids[0]: Approved(), ids[1]: Denied("no")})
    assert log == [5]
    again = await resume("c1", payer(log), store=store)
    assert again.status == "failed" and again.failure is not None and again.failure.kind == "uncertain_effect"
    assert log == [5]


async def test_decisions_recorded_one_by_one_apply_on_the_next_resume(tmp_path: Path) -> None:
    log: list[int] = []
    store = SQLiteStore(tmp_path / "runs.db")
    first = await run(payer(log), "pay", store=store, conversation_id="c1")
    ids = [p.call_id for p in first.pending]
    listed = pending_calls(store)
    assert [(c.conversation_id, c.call_id, c.kind) for c in listed] == [
        ("c1", ids[0], "approval"),
        ("c1", ids[1], "approval"),
    ]
    left = record_decision(store, "c1", ids[0], Approved())
    assert [c.call_id for c in left] == [ids[1]]
    with pytest.raises(InvalidDecision, match="already decided"):
        record_decision(store, "c1", ids[0], Denied())
    with pytest.raises(InvalidDecision):
        record_decision(store, "c1", "unknown", Approved())
    still = await resume("c1", payer(log), store=store)  # one call still undecided: it waits
    assert still.status == "suspended" and log == []
    record_decision(store, "c1", ids[1], Denied("no"))
    done = await resume("c1", payer(log), store=store, models=THEN_DONE())
    assert done.status == "done" and log == [5]
    assert pending_calls(store) == []
    with pytest.raises(NotSuspended):
        record_decision(store, "c1", ids[1], Approved())


async def test_a_child_that_suspends_suspends_its_pattern_and_resumes_through_it(tmp_path: Path) -> None:
    log: list[int] = []
    worker = payer(log, replies=[reply(None, call("pay", amount=3)), "paid"], name="worker")
    other = Agent("other", "", ScriptedModel(["hello"]))
    team = Parallel("team", [worker, other])
    first = await run(team, "go", run_id="t")
    assert first.status == "suspended"
    (p,) = first.pending
    assert p.run_id.startswith("t/") and p.request.tool == "pay"
    done = await resume(first, team, decisions={p.call_id: Approved()})
    assert done.status == "done" and log == [3]
    # with a store, the same round trip across processes (a new machine object)
    store = SQLiteStore(tmp_path / "runs.db")
    log.clear()
    make = lambda: Parallel(  # noqa: E731
        "team",
        [
            payer(log, replies=[reply(None, call("pay", amount=3)), "paid"], name="worker"),
            Agent("other", "", ScriptedModel(["hello"])),
        ],
    )
    first = await run(make(), "go", store=store, conversation_id="t2")
    (p,) = first.pending
    assert [c.conversation_id for c in pending_calls(store)] == [p.run_id]
    done = await resume(
        "t2", make(), store=store, decisions={p.call_id: Approved()}, models={"worker": ScriptedModel(["paid"])}
    )
    assert done.status == "done" and log == [3]


def test_cli_lists_pending_calls_and_records_decisions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fsm_agents.cli import main
    from fsm_agents.runtime import run_sync

    db = str(tmp_path / "runs.db")
    log: list[int] = []
    first = run_sync(payer(log), "pay", store=SQLiteStore(db), conversation_id="c1")
    ids = [p.call_id for p in first.pending]
    assert main(["pending", "--store", db]) == 0
    out = capsys.readouterr().out
    assert f"c1  {ids[0]}  approval" in out and '{"amount": 7}' in out
    assert main(["decide", "c1", ids[0], "approve", "--store", db]) == 0
    assert "1 call(s) still await" in capsys.readouterr().out
    assert main(["decide", "c1", "no-such-call", "approve", "--store", db]) == 1
    assert "awaits no call" in capsys.readouterr().err
    assert main(["decide", "c1", ids[1], "deny", "too", "much", "--store", db]) == 0
    assert "every call is decided" in capsys.readouterr().out
    result = anyio.run(lambda: resume("c1", payer(log), store=SQLiteStore(db), models=THEN_DONE()))
    assert result.status == "done" and log == [5]
    assert "denied by the user: too much" in tool_texts(result)[ids[1]]
    assert main(["pending", "--store", db]) == 0
    assert "no run awaits a decision" in capsys.readouterr().out


# -- the testing kit explores decisions -------------------------------------------------------------


def _approval_agent() -> Agent:
    @tool(requires_approval=True)
    def wire(amount: int) -> str:
        """Wire money (needs approval)."""
        return "ok"

    @tool
    def lookup(q: str) -> str:
        """Look up."""
        return q

    return Agent("banker", "", None, tools=[wire, lookup, ask_user()], max_steps=3)


def test_check_machine_explores_approvals_denials_and_answers() -> None:
    from fsm_agents.testing import check_machine

    report = check_machine(_approval_agent(), max_examples=60, seed=3)
    assert "decisions" in report.invariants
    taken = {(t.source, t.event, t.target) for t in report.declared if report.covered[report.key(t)]}
    assert ("EXECUTING", "input_received", "EXECUTING") in taken


def test_check_machine_catches_a_machine_that_runs_a_denied_call() -> None:
    from fsm_agents import AgentMachine, Step, fused
    from fsm_agents.events import RunTools
    from fsm_agents.testing import InvariantViolation, check_machine

    class RunsDeniedCalls(AgentMachine):
        @fused
        def apply_decisions(self, s: Any, e: Any, to: Any) -> Step:
            step = super().apply_decisions(s, e, to)
            run_all = RunTools(key=step.effects[0].key, agent=s.agent, calls=s.pending)
            return Step(step.snapshot, (run_all,))

    with pytest.raises(InvariantViolation) as info:
        check_machine(RunsDeniedCalls(_approval_agent()), max_examples=100, seed=5)
    assert info.value.invariant == "decisions", str(info.value)


async def test_resuming_a_finished_stored_pattern_run_returns_its_children(tmp_path: Path) -> None:
    """Issue 13 item 14: `resume` of a finished, stored pattern run gave empty `children`, so the
    trace overlay drew its agents as never run."""
    from fsm_agents.patterns import Sequential

    def team() -> Sequential:
        return Sequential(
            "pipe", [Agent("first", "", ScriptedModel(["draft"])), Agent("second", "", ScriptedModel(["final"]))]
        )

    store = SQLiteStore(tmp_path / "runs.db")
    live = await run(team(), "go", store=store, conversation_id="p1")
    again = await resume("p1", team(), store=store)
    assert again.output == live.output == "final"
    assert set(again.children) == set(live.children) and len(again.children) == 2
    for task_id, child in live.children.items():
        assert again.children[task_id].snapshot == child.snapshot
        assert again.children[task_id].trace == child.trace
