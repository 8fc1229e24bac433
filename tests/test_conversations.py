"""`Conversations` (issue 13): a fork of a pattern's conversation branches (its children are its
own), and the API is async throughout with blocking `_sync` twins."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from fsm_agents import Agent, FunctionModel, ScriptedModel
from fsm_agents.errors import EventLoopRunning
from fsm_agents.state import ModelRequest
from fsm_agents.store import Conversations, MemoryStore, SQLiteStore, Store

BACKENDS = ["memory", "sqlite", "postgres"]


# -- 12. a fork of a pattern's conversation branches --------------------------------------------


def _pipe(tag: str, asked: list[str]) -> tuple[Any, dict[str, Any]]:
    from fsm_agents.patterns import Sequential

    def model(name: str) -> FunctionModel:
        def respond(request: ModelRequest) -> str:
            asked.append(name)
            return f"{name}{tag}"

        return FunctionModel(respond)

    return Sequential("pipe", [Agent("a", "first"), Agent("b", "second")]), {"a": model("a"), "b": model("b")}


@pytest.mark.anyio
async def test_a_fork_of_a_pattern_runs_its_own_children_with_real_requests(store: Store, anyio_backend: str) -> None:
    """Resuming a fork cut before the children ran does not reuse the parent's (finished) child
    runs: its children get conversations of their own and the fork's models are asked."""
    asked: list[str] = []
    pipe, models = _pipe("1", asked)
    original = await Conversations(store, pipe, models=models).start(pipe, "go", conversation_id="p")
    assert original.output == "b1" and asked == ["a", "b"]
    asked.clear()
    pipe2, models2 = _pipe("2", asked)
    convs = Conversations(store, pipe2, models=models2)
    fork = await convs.fork("p", 1, new_id="p-fork")  # the start record alone
    resumed = await convs.resume(fork)
    assert resumed.output == "b2" and asked == ["a", "b"]
    assert resumed.run_id == "p-fork"
    ids = {i.id for i in await convs.list()}
    assert {c for c in ids if c.startswith("p-fork/")} and all(c.startswith(("p/", "p-fork")) or c == "p" for c in ids)
    assert len([c for c in ids if c.startswith("p-fork/")]) == 2
    assert (await convs.snapshot("p")).output == "b1"  # the original is untouched
    assert (await convs.replay(fork)).verified


# -- 17. Conversations: all async, with _sync twins ---------------------------------------------

ASYNC_METHODS = ("start", "append", "resume", "history", "snapshot", "replay", "fork", "list", "exists")


def test_every_conversations_method_is_async_and_has_a_sync_twin() -> None:
    for name in ASYNC_METHODS:
        assert inspect.iscoroutinefunction(getattr(Conversations, name)), name
        twin = getattr(Conversations, f"{name}_sync")
        assert not inspect.iscoroutinefunction(twin), name


def test_the_sync_twins_run_a_whole_conversation(tmp_path: Path) -> None:
    billing = Agent("billing", "You handle invoices.")
    model = FunctionModel(lambda r: f"answer {len(r.messages)}")
    with SQLiteStore(tmp_path / "c.db") as s:
        convs = Conversations(s, models={"billing": model})
        first = convs.start_sync(billing, "hello", conversation_id="c")
        second = convs.append_sync("c", billing, "more")
        assert (first.output, second.output) == ("answer 1", "answer 3")
        assert [e.content for e in convs.history_sync("c")] == ["hello", "answer 1", "more", "answer 3"]
        fork = convs.fork_sync("c", 3)
        assert convs.exists_sync(fork) and not convs.exists_sync("nope")
        assert convs.resume_sync("c").output == "answer 3"
        assert convs.snapshot_sync("c") == second.snapshot and convs.replay_sync("c").verified
        assert {i.id for i in convs.list_sync()} == {"c", fork}


@pytest.mark.anyio
async def test_a_blocking_twin_inside_an_event_loop_is_refused_before_writing(anyio_backend: str) -> None:
    store = MemoryStore()
    billing = Agent("billing", "You handle invoices.")
    convs = Conversations(store, billing, models={"billing": ScriptedModel(["one", "two"])})
    await convs.start(billing, "hello", conversation_id="c")
    before = len(store.load("c"))
    with pytest.raises(EventLoopRunning):
        convs.append_sync("c", billing, "more")
    assert len(store.load("c")) == before
    assert [e.content for e in convs.history_sync("c")] == ["hello", "one"]  # reading blocks on no loop
