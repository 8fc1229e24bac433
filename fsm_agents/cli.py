"""The `fsm-agents` command line (argparse).

    fsm-agents run MODULE:OBJECT [INPUT ...] [--store PATH] [--conversation-id ID] [--trace] [--json]
                   [--temporal ADDR [--task-queue Q]]
    fsm-agents worker MODULE:OBJECT ... --store PATH [--temporal ADDR] [--task-queue Q]
    fsm-agents check MODULE:OBJECT [--examples N] [--seed S] [--full-coverage]
    fsm-agents diagram MODULE:OBJECT -o PATH [--run ID --store PATH] [--depth N]
    fsm-agents view ID --store PATH -o run.html [--machine MODULE:OBJECT]
    fsm-agents diagrams [--check] [--out diagrams]
    fsm-agents list --store PATH [--json]
    fsm-agents history ID --store PATH [--json]
    fsm-agents fork ID --store PATH --at SEQ [--new-id NEW]
    fsm-agents replay ID --store PATH --machine MODULE:OBJECT [--machine ...]
    fsm-agents pending --store PATH [--json]
    fsm-agents decide ID CALL_ID approve|deny|answer [TEXT] --store PATH
    fsm-agents demo [QUESTION ...]
    fsm-agents --version

Each subcommand is one `_cmd_<name>(args) -> int` function registered in `build_parser`.
Exit codes: 0 success, 1 a check/invariant failed, a run ended FAILED or an error (printed as
one `error: ...` line on stderr, never a traceback), 2 bad usage (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from fsm_agents import __version__
from fsm_agents.errors import FsmAgentsError
from fsm_agents.loading import EXAMPLE_TARGET, load_object

__all__ = ["load_object", "main"]  # load_object: from fsm_agents.loading, for compatibility


def _cmd_run(args: argparse.Namespace) -> int:
    import json

    from pydantic_core import to_jsonable_python

    from fsm_agents.observers import PrintObserver
    from fsm_agents.runtime import run_sync

    target = load_object(args.target)
    text = " ".join(args.input) if args.input else sys.stdin.read()
    if not text.strip():
        raise FsmAgentsError("the input is empty: give the user message as arguments or on stdin")
    store = _open_store(args.store, create=True) if args.store else None
    try:
        if args.temporal:
            result = _run_on_temporal(args, text, store)
        else:
            result = run_sync(
            target,
            text,
                observers=[PrintObserver(sys.stderr)] if args.trace else (),
                store=store,
                conversation_id=args.conversation_id,
            )
    finally:
        if store is not None:
            store.close()
    failure = result.failure
    if store is not None and not args.json:  # stderr: stdout stays the output alone
        cid = args.conversation_id or result.run_id
        print(f"run id: {cid} (fsm-agents history {cid} --store {args.store})", file=sys.stderr)
    if args.json:
        summary = {
            "run_id": result.run_id,
            "phase": result.phase.value,
            "output": to_jsonable_python(result.output, fallback=str),
            "failure": failure.model_dump(mode="json") if failure is not None else None,
            "usage": result.usage.model_dump(mode="json"),
            "steps": result.snapshot.step,
        }
        print(json.dumps(summary, ensure_ascii=False))
    elif result.ok:
        output = result.output
        if not isinstance(output, str):
            output = json.dumps(to_jsonable_python(output, fallback=str), ensure_ascii=False)
        print(output)
    if failure is not None and not args.json:
        print(f"FAILED ({failure.kind}): {failure.message}", file=sys.stderr)
    return 0 if result.ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        demo = importlib.import_module("examples.local_agent")
    except ImportError:
        raise FsmAgentsError(
            "the demo is examples/local_agent.py of the fsm_agents repository: run `fsm-agents demo` (or `make demo`) "
            "from a checkout"
        ) from None
    return int(demo.main(list(args.question)))


def _cmd_check(args: argparse.Namespace) -> int:
    from fsm_agents.testing import InvariantViolation, check_machine

    machine = load_object(args.target)
    try:
        report = check_machine(machine, max_examples=args.examples, seed=args.seed, assert_full_coverage=args.full_coverage)
    except InvariantViolation as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


def _cmd_diagram(args: argparse.Namespace) -> int:
    from fsm_agents.diagrams import write
    from fsm_agents.viewer import load_run

    if args.run is not None and args.store is None:
        raise FsmAgentsError("--run needs --store (the SQLite file or postgresql:// DSN the run was stored in)")
    target = load_object(args.target)
    try:
        trace = None
        if args.run is not None:
            store = _open_store(args.store)
            try:
                trace = load_run(store, args.run, target).result
            finally:
                store.close()
        path = write(target, args.output, trace, depth=args.depth)
    except TypeError as exc:  # not a machine, an Agent or a pattern
        print(f"error: {args.target}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a missing folder, no permission
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def _machine_of(store: Any, conversation_id: str, spec: str | None) -> Any:
    """The machine that made a stored conversation: `spec` (MODULE:OBJECT) when given, else the
    shipped machine (`fsm_agents.diagrams.shipped()`) its start record names."""
    from fsm_agents.diagrams import shipped
    from fsm_agents.runtime import as_machine
    from fsm_agents.store._fold import resolve

    if spec is not None:
        return load_object(spec)
    records, _ = resolve(store, conversation_id)
    name = next((str(r.data.get("machine")) for r in reversed(records) if r.kind == "start"), None)
    for candidate in shipped().values():
        try:
            obj = load_object(candidate)
        except FsmAgentsError:
            continue
        if as_machine(obj).name == name:
            return obj
    raise FsmAgentsError(
        f"conversation {conversation_id!r} is a run of {name!r}, which is not a shipped machine: "
        "name the machine that made it with --machine MODULE:OBJECT"
    )


def _cmd_view(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fsm_agents.viewer import load_run, view_html

    out = Path(args.output)
    if not out.parent.is_dir():
        raise FsmAgentsError(f"cannot write {out}: the folder {out.parent} does not exist")
    store = _open_store(args.store)
    try:
        machine = _machine_of(store, args.id, args.machine)
        try:
            run = load_run(store, args.id, machine)
        except TypeError as exc:  # --machine names something that is not a machine
            raise FsmAgentsError(f"{args.machine}: {exc}") from None
    finally:
        store.close()
    out.write_text(view_html(run, machine), encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _cmd_diagrams(args: argparse.Namespace) -> int:
    from fsm_agents.diagrams import regenerate, stale

    if args.check:
        bad, notes = stale(args.out)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        if bad:
            print(f"stale diagrams in {args.out}/ (run `fsm-agents diagrams --out {args.out}`):", file=sys.stderr)
            for rel in bad:
                print(f"  {rel}", file=sys.stderr)
            return 1
        print(f"{args.out}/ is up to date")
        return 0
    changed = regenerate(args.out)
    for rel in changed:
        print(f"updated {args.out}/{rel}")
    if not changed:
        print(f"{args.out}/ is up to date")
    return 0


def _open_store(spec: str, *, create: bool = False) -> Any:
    """`postgresql://...` / `postgres://...` → PostgresStore, anything else → SQLiteStore(path)
    (which must exist unless `create`: reading never creates a database)."""
    import os

    from fsm_agents.store import PostgresStore, SQLiteStore

    if spec.startswith(("postgresql://", "postgres://")):
        return PostgresStore(spec)
    if not create and not os.path.exists(spec):
        raise FsmAgentsError(f"no store at {spec!r}: give the SQLite file a run wrote (or a postgresql:// DSN)")
    return SQLiteStore(spec)


def _not_found(args: argparse.Namespace, conversation_id: str) -> FsmAgentsError:
    return FsmAgentsError(
        f"no conversation {conversation_id!r} in {args.store}: list them with `fsm-agents list --store {args.store}`"
    )


def _cmd_list(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from datetime import UTC, datetime

    store = _open_store(args.store)
    try:
        infos = store.conversations()
    finally:
        store.close()
    for info in infos:
        if args.json:
            print(json.dumps(dataclasses.asdict(info), ensure_ascii=False))
            continue
        updated = datetime.fromtimestamp(info.updated_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{info.id}  {info.records:>6} records  updated {updated} UTC")
    if not infos and not args.json:
        print(f"no conversations in {args.store}", file=sys.stderr)
    return 0


def _cmd_fork(args: argparse.Namespace) -> int:
    from fsm_agents.store import ConversationNotFound, Conversations

    store = _open_store(args.store)
    try:
        new_id = Conversations(store).fork_sync(args.id, args.at, new_id=args.new_id)
    except ConversationNotFound:
        raise _not_found(args, args.id) from None
    finally:
        store.close()
    print(new_id)
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from fsm_agents.store import ConversationNotFound, history

    store = _open_store(args.store)
    try:
        entries = history(store, args.id)
    except ConversationNotFound:
        raise _not_found(args, args.id) from None
    finally:
        store.close()
    for e in entries:
        if args.json:
            print(json.dumps(dataclasses.asdict(e), ensure_ascii=False))
            continue
        who = e.agent or e.role
        if e.type == "tool.execution":
            text = f"{e.name}({e.arguments}) -> {'' if e.ok else 'ERROR '}{e.content}"
        elif e.type == "agent.handoff":
            text = f"-> {e.to_agent}"
        else:
            text = e.content or ""
        print(f"{e.seq:>5}  {e.type:<15} {who:<12} {text}")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from fsm_agents.store import ConversationNotFound, ReplayMismatch, replay

    machines = [load_object(m) for m in args.machine]
    store = _open_store(args.store)
    try:
        result = replay(store, args.id, *machines)
    except ReplayMismatch as exc:
        print(f"MISMATCH: {exc}", file=sys.stderr)
        return 1
    except ConversationNotFound:
        raise _not_found(args, args.id) from None
    finally:
        store.close()
    snap = result.snapshot
    state = "verified: the final snapshot equals the stored one" if result.verified else "not ended yet: nothing to compare"
    print(f"{args.id}: {result.segments} run(s), {result.events} events, {snap.phase} at step {snap.step}; {state}")
    return 0


def _cmd_pending(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from fsm_agents.store.journal import pending_calls

    store = _open_store(args.store)
    try:
        calls = pending_calls(store)
    finally:
        store.close()
    for c in calls:
        if args.json:
            print(json.dumps(dataclasses.asdict(c), ensure_ascii=False))
            continue
        what = f"asks: {c.question}" if c.kind == "question" else f"{c.tool}({c.arguments})"
        decided = f"  [decided: {c.decision.get('kind')}]" if c.decision else ""
        print(f"{c.conversation_id}  {c.call_id}  {c.kind:<8}  {what}{decided}")
    if not calls and not args.json:
        print("no run awaits a decision")
    return 0


def _cmd_decide(args: argparse.Namespace) -> int:
    from fsm_agents.events import Answer, Approved, Denied
    from fsm_agents.store.journal import record_decision

    text = " ".join(args.text)
    decision: Approved | Denied | Answer
    if args.decision == "approve":
        decision = Approved()
    elif args.decision == "deny":
        decision = Denied(text)
    else:
        if not text:
            raise FsmAgentsError("answer needs the answer's text: fsm-agents decide ID CALL_ID answer TEXT ...")
        decision = Answer(text)
    store = _open_store(args.store)
    try:
        left = record_decision(store, args.id, args.call_id, decision)
    finally:
        store.close()
    if left:
        print(f"recorded; {len(left)} call(s) still await a decision: {', '.join(c.call_id for c in left)}")
    else:
        print(f"recorded; every call is decided: resume({args.id!r}, machine, store=...) continues the run")
    return 0


def _positive_int(text: str) -> int:
    """An argparse type: an int >= 1 (else a one-line usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _temporal() -> Any:
    try:
        return importlib.import_module("fsm_agents.temporal")
    except ImportError as exc:
        raise FsmAgentsError(f"Temporal needs the temporal extra: pip install 'fsm-agents[temporal]' ({exc})") from None


def _run_on_temporal(args: argparse.Namespace, text: str, store: Any) -> Any:
    """`run --temporal ADDR`: the run as a workflow on a worker of `--task-queue` (`fsm-agents worker`)."""
    import asyncio
    import uuid

    from temporalio.client import Client

    temporal = _temporal()

    async def go() -> Any:
        client = await Client.connect(args.temporal)
        wid = args.conversation_id or f"fsm-agents-{uuid.uuid4().hex}"
        return await temporal.run(client, args.target, text, id=wid, task_queue=args.task_queue, store=store)

    return asyncio.run(go())


def _cmd_worker(args: argparse.Namespace) -> int:
    """`worker MODULE:OBJECT ... --temporal ADDR --store PATH`: serve the machines until interrupted."""
    import asyncio

    from temporalio.client import Client

    temporal = _temporal()
    store = _open_store(args.store, create=True)

    async def serve() -> None:
        client = await Client.connect(args.temporal)
        async with temporal.worker(client, args.task_queue, list(args.targets), store):
            print(f"serving {', '.join(args.targets)} on {args.temporal}, task queue {args.task_queue}", file=sys.stderr)
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsm-agents",
        description="LLM agents as explicit state machines",
        epilog=f"example: fsm-agents run {EXAMPLE_TARGET} 'heat pumps'   (from a checkout of fsm_agents)",
    )
    parser.add_argument("--version", action="version", version=f"fsm-agents {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an agent or a pattern on an input; exit 1 if it ends FAILED")
    run.add_argument("target", help="MODULE:OBJECT naming an Agent, a pattern or a machine (or a factory), with models")
    run.add_argument("input", nargs="*", help="the user message (default: read from stdin)")
    run.add_argument("--store", help="persist the run to this SQLite file (created if missing) or postgresql:// DSN")
    run.add_argument("--conversation-id", help="the conversation id in the store (default: the run id)")
    run.add_argument("--trace", action="store_true", help="print every transition and effect to stderr")
    run.add_argument("--json", action="store_true", help="print run id, phase, output, failure, usage as JSON")
    run.add_argument("--temporal", metavar="ADDR", help="run it on Temporal (host:port) on a worker (fsm-agents worker)")
    run.add_argument("--task-queue", default="fsm-agents", help="the workers' task queue (with --temporal)")
    run.set_defaults(func=_cmd_run)

    worker = sub.add_parser("worker", help="serve machines as a Temporal worker (extra [temporal]) until interrupted")
    worker.add_argument("targets", nargs="+", help="MODULE:OBJECT of each Agent, pattern or machine to serve")
    worker.add_argument("--temporal", metavar="ADDR", default="127.0.0.1:7233", help="the Temporal server (host:port)")
    worker.add_argument("--task-queue", default="fsm-agents", help="the task queue to poll (default fsm-agents)")
    worker.add_argument("--store", required=True, help="the event store: a SQLite file or a postgresql:// DSN")
    worker.set_defaults(func=_cmd_worker)

    check = sub.add_parser("check", help="explore a machine with hypothesis and assert its invariants")
    check.add_argument("target", help="MODULE:OBJECT naming an Agent, a pattern or a machine (or a factory)")
    check.add_argument("--examples", type=_positive_int, default=200, help="hypothesis examples (default 200)")
    check.add_argument("--seed", type=int, default=None, help="make the exploration reproducible")
    check.add_argument("--full-coverage", action="store_true", help="fail when a declared transition was never taken")
    check.set_defaults(func=_cmd_check)

    diagram = sub.add_parser("diagram", help="draw a machine (.mmd, .md, .dot, .svg or .png, by suffix)")
    diagram.add_argument("target", help="MODULE:OBJECT naming an Agent, a pattern or a machine (or a factory)")
    diagram.add_argument("-o", "--output", required=True, help="output file; its suffix picks the format")
    diagram.add_argument("--run", help="overlay this stored run (a conversation id; needs --store)")
    diagram.add_argument("--store", help="SQLite file (or postgresql:// DSN) holding the run")
    diagram.add_argument("--depth", type=int, default=3, help="levels of child machines drawn (0: one box per child)")
    diagram.set_defaults(func=_cmd_diagram)

    view = sub.add_parser("view", help="write one self-contained HTML page showing a stored run")
    view.add_argument("id", help="conversation id")
    view.add_argument("--store", required=True, help="SQLite file (or postgresql:// DSN)")
    view.add_argument("-o", "--output", required=True, help="the .html file to write")
    view.add_argument("--machine", help="MODULE:OBJECT of the machine that made the run (default: a shipped one)")
    view.set_defaults(func=_cmd_view)

    diagrams = sub.add_parser("diagrams", help="regenerate the diagrams of every shipped machine")
    diagrams.add_argument("--out", default="diagrams", help="directory (default: diagrams)")
    diagrams.add_argument("--check", action="store_true", help="write nothing; exit 1 listing stale files")
    diagrams.set_defaults(func=_cmd_diagrams)

    listing = sub.add_parser("list", help="list the conversations in a store (children of patterns included)")
    listing.add_argument("--store", required=True, help="SQLite file (or postgresql:// DSN)")
    listing.add_argument("--json", action="store_true", help="one JSON object per conversation")
    listing.set_defaults(func=_cmd_list)

    fork = sub.add_parser("fork", help="branch a conversation: a new one sharing its first SEQ records; prints the new id")
    fork.add_argument("id", help="conversation id")
    fork.add_argument("--store", required=True, help="SQLite file (or postgresql:// DSN)")
    fork.add_argument(
        "--at", required=True, type=_positive_int, help="records to keep (a history entry's `seq` + 1 keeps it)"
    )
    fork.add_argument("--new-id", default=None, help="the new conversation's id (default: <id>~<8 hex digits>)")
    fork.set_defaults(func=_cmd_fork)

    history = sub.add_parser("history", help="print a persisted conversation's history")
    history.add_argument("id", help="conversation id")
    history.add_argument("--store", required=True, help="SQLite file (or postgresql:// DSN)")
    history.add_argument("--json", action="store_true", help="one JSON object per entry")
    history.set_defaults(func=_cmd_history)

    replay = sub.add_parser("replay", help="re-fold a conversation's log (no model/tool calls) and verify its outcome")
    replay.add_argument("id", help="conversation id")
    replay.add_argument("--store", required=True, help="SQLite file (or postgresql:// DSN)")
    replay.add_argument(
        "--machine", required=True, action="append", help="MODULE:OBJECT of the machine that wrote it (repeat for several)"
    )
    replay.set_defaults(func=_cmd_replay)

    pending = sub.add_parser("pending", help="list the tool calls suspended runs wait on (approvals, questions)")
    pending.add_argument("--store", required=True, help="SQLite file (or postgresql:// DSN)")
    pending.add_argument("--json", action="store_true", help="one JSON object per call")
    pending.set_defaults(func=_cmd_pending)

    decide = sub.add_parser("decide", help="record a human's decision on a call a suspended run waits on")
    decide.add_argument("id", help="the conversation that awaits it (as `pending` lists it)")
    decide.add_argument("call_id", help="the tool call's id")
    decide.add_argument("decision", choices=("approve", "deny", "answer"), help="approve or deny a call; answer a question")
    decide.add_argument("text", nargs="*", help="the reason of a denial, or the answer")
    decide.add_argument("--store", required=True, help="SQLite file (or postgresql:// DSN)")
    decide.set_defaults(func=_cmd_decide)

    demo = sub.add_parser("demo", help="the main job: a two-agent team on the embedded local model (from a checkout)")
    demo.add_argument("question", nargs="*", help="what to ask (default: the population density of Japan)")
    demo.set_defaults(func=_cmd_demo)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except FsmAgentsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
