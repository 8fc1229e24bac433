"""The code interpreter connector: results, work folders, the sandbox's walls and limits, bad input.

Every test that runs code needs bubblewrap (`make sysdeps` installs it); without it they are
skipped, except the one checking that the toolset refuses to start.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from fsm_agents import Agent, Phase, ScriptedModel, ToolMessage, run_sync
from fsm_agents.connectors import code_interpreter
from fsm_agents.connectors.code_interpreter import CodeInterpreter, CodeResult, _scan
from fsm_agents.errors import CodeFailed, CodeRejected, FsmAgentsError, SandboxUnavailable, ToolDefinitionError
from fsm_agents.models import call, reply
from fsm_agents.testing import history_problems

ROOT = Path(__file__).resolve().parent.parent
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (make sysdeps)")


@pytest.fixture
def ci() -> Iterator[CodeInterpreter]:
    """A code interpreter with small limits (a fork bomb on a shared 2-core machine stays short)."""
    with code_interpreter(cpu_seconds=5, memory_mb=256, processes=16, wall_seconds=10, output_bytes=100_000) as interpreter:
        yield interpreter


def go(ci: CodeInterpreter, code: str, conversation: str | None = None) -> CodeResult:
    return anyio.run(lambda: ci.run(code, conversation=conversation))


def fails(ci: CodeInterpreter, code: str, conversation: str | None = None) -> tuple[CodeFailed, CodeResult]:
    with pytest.raises(CodeFailed) as info:
        go(ci, code, conversation)
    assert isinstance(info.value.result, CodeResult)
    return info.value, info.value.result


def sandbox_processes(marker: str) -> list[str]:
    """Host processes whose command line names the work folder `marker` (bwrap and the code's)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(pid)
    return found


def assert_no_process_left(ci: CodeInterpreter, conversation: str) -> None:
    """Killed processes are reaped by the host's init: give it a moment, then none may be left."""
    marker = ci.folder(conversation).name
    deadline = time.monotonic() + 10  # not a timing assertion: a deadline for the reaper
    while sandbox_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_processes(marker) == []


# -- results and work folders ------------------------------------------------------------------
@needs_bwrap
def test_a_print_comes_back_as_a_typed_result(ci: CodeInterpreter) -> None:
    result = go(ci, "import sys\nprint(6 * 7)\nprint('warn', file=sys.stderr)")
    assert result == CodeResult(exit_status=0, stdout="42\n", stderr="warn\n")
    assert result.ok


@needs_bwrap
def test_files_persist_within_a_conversation_and_not_across(ci: CodeInterpreter) -> None:
    first = go(ci, "open('notes.txt', 'w').write('kept')", "conv-a")
    assert [(f.path, f.bytes) for f in first.files] == [("notes.txt", 4)]
    assert go(ci, "print(open('notes.txt').read())", "conv-a").stdout == "kept\n"
    assert (ci.folder("conv-a") / "notes.txt").read_text() == "kept"  # the host reads the files out
    _, other = fails(ci, "print(open('notes.txt').read())", "conv-b")
    assert "FileNotFoundError" in other.stderr


@needs_bwrap
def test_only_files_written_by_the_call_are_listed(ci: CodeInterpreter) -> None:
    go(ci, "import os\nos.makedirs('out', exist_ok=True)\nopen('out/a.csv', 'w').write('x,y\\n')", "c")
    again = go(ci, "open('b.txt', 'w').write('b'); print(open('out/a.csv').read())", "c")
    assert [f.path for f in again.files] == ["b.txt"]


@needs_bwrap
def test_files_are_put_in_every_new_folder(tmp_path: Path) -> None:
    data = ROOT / "examples" / "data" / "countries.csv"
    with code_interpreter(files=[data], wall_seconds=10) as interp:
        interp2_files = {"sub/params.json": '{"n": 3}', "blob.bin": b"\x00\x01"}
        with code_interpreter(files=interp2_files, wall_seconds=10) as interp2:
            code = "import csv\nrows = list(csv.DictReader(open('countries.csv')))\nprint(len(rows), rows[0]['country'])"
            with data.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            assert go(interp, code, "x").stdout == f"{len(rows)} {rows[0]['country']}\n"
            assert go(interp, code, "y").stdout == f"{len(rows)} {rows[0]['country']}\n"
            out = go(interp2, "import json\nprint(json.load(open('sub/params.json'))['n'], open('blob.bin','rb').read())")
            assert out.stdout == "3 b'\\x00\\x01'\n"


@needs_bwrap
def test_a_given_workdir_is_kept_and_a_temporary_one_removed() -> None:
    given = Path(tempfile.mkdtemp(prefix="fsm-agents-test-"))
    try:
        given.chmod(0o711)  # run as root, the sandbox user must be able to traverse it
        with code_interpreter(workdir=given) as interp:
            go(interp, "open('kept.txt', 'w').write('k')", "c")
        assert (given / interp.folder("c").name / "kept.txt").read_text() == "k"
        with code_interpreter(workdir=given) as again:  # a later process finds the conversation's files
            assert go(again, "print(open('kept.txt').read())", "c").stdout == "k\n"
    finally:
        shutil.rmtree(given)
    with code_interpreter() as temporary:
        go(temporary, "open('gone.txt', 'w').write('g')")
        assert temporary.folder().is_dir()
    assert not temporary.workdir.exists()


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="as root the sandbox runs as another user")
def test_as_root_a_workdir_the_sandbox_user_cannot_reach_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(SandboxUnavailable, match="cannot be reached by the sandbox user"):
        code_interpreter(workdir=private / "work")


@needs_bwrap
def test_the_conversation_key_is_the_current_run_id(ci: CodeInterpreter) -> None:
    model = ScriptedModel(
        [
            reply(None, call("run_python", "c1", code="open('state.txt', 'w').write('from call 1')")),
            reply(None, call("run_python", "c2", code="print(open('state.txt').read())")),
            "done",
        ]
    )
    result = run_sync(Agent("analyst", model=model, tools=ci), "go", run_id="conv-42")
    assert result.phase == Phase.DONE
    tool_messages = [m for m in result.snapshot.conversation.messages if isinstance(m, ToolMessage)]
    assert [m.is_error for m in tool_messages] == [False, False]
    assert json.loads(tool_messages[1].content)["stdout"] == "from call 1\n"
    assert (ci.folder("conv-42") / "state.txt").read_text() == "from call 1"
    assert not ci.folder(None).exists()


@needs_bwrap
def test_the_toolset_spreads_into_a_tool_list(ci: CodeInterpreter) -> None:
    def other(x: int) -> int:
        return x

    agent = Agent("a", model=ScriptedModel(["ok"]), tools=[*ci, other])
    assert [t.name for t in agent.tools] == ["run_python", "other"]
    assert "no network" in ci.tool.spec.description


@needs_bwrap
def test_a_markdown_fence_around_the_code_is_dropped(ci: CodeInterpreter) -> None:
    assert go(ci, "```python\nprint('fenced')\n```").stdout == "fenced\n"


@needs_bwrap
def test_it_runs_on_trio_too(ci: CodeInterpreter) -> None:
    assert anyio.run(lambda: ci.run("print('trio')"), backend="trio").stdout == "trio\n"
    conv = f"trio-{uuid.uuid4().hex}"
    with pytest.raises(CodeFailed) as info:
        anyio.run(lambda: ci.run("while True:\n    print('t', flush=True)", conversation=conv), backend="trio")
    assert info.value.result.limit == "output"
    assert_no_process_left(ci, conv)


# -- the walls ---------------------------------------------------------------------------------
@needs_bwrap
def test_no_network_even_to_a_server_on_the_host_loopback(ci: CodeInterpreter) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    print('CONNECTED')\n"
            "except OSError as exc:\n"
            "    print('REFUSED', type(exc).__name__)\n"
        )
        result = go(ci, code)
        assert result.stdout.startswith("REFUSED")
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever reached the server


@needs_bwrap
def test_no_host_file_outside_the_sandbox_can_be_read(ci: CodeInterpreter) -> None:
    secret_path = ROOT / "pyproject.toml"
    targets = [str(secret_path), str(ROOT), "/root", "/home", "/etc/passwd", "/etc/shadow", str(ci.workdir)]
    code = (
        "import os\n"
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        data = os.listdir(path) if os.path.isdir(path) else open(path).read()\n"
        "        print('READ', path, str(data)[:80])\n"
        "    except OSError as exc:\n"
        "        print('DENIED', path, type(exc).__name__)\n"
    )
    lines = go(ci, code).stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["DENIED"] * len(targets), lines


@needs_bwrap
def test_writing_outside_the_folder_is_a_clear_error_and_leaves_the_host_unchanged(
    ci: CodeInterpreter, tmp_path: Path
) -> None:
    # (a checkout under /tmp, as CI's may be, is inside the sandbox's own /tmp: written there, it
    # never reaches the host; the last check below covers that case)
    targets = [ROOT / "escaped.txt"] if not ROOT.is_relative_to("/tmp") else []
    targets += [
        Path("/usr/escaped.txt"),
        Path("/escaped.txt"),
        Path("/etc/escaped.txt"),
        Path("/root/escaped.txt"),
    ]
    for target in targets:
        failure, result = fails(ci, f"open({str(target)!r}, 'w').write('x')")
        assert result.exit_status == 1 and "can write only in /workspace and /tmp" in result.stderr
        assert "exit status 1" in str(failure)
    _, result = fails(ci, f"open({str(tmp_path / 'escaped.txt')!r}, 'w').write('x')")  # the host's /tmp is not the sandbox's
    assert "FileNotFoundError" in result.stderr
    assert go(ci, "open('/tmp/scratch', 'w').write('ok'); print(open('/tmp/scratch').read())").stdout == "ok\n"
    assert [t for t in [*targets, tmp_path / "escaped.txt", Path("/tmp/scratch")] if t.exists()] == []


@needs_bwrap
def test_a_symlink_made_by_the_code_is_not_followed_by_the_host(ci: CodeInterpreter) -> None:
    result = go(ci, "import os\nos.symlink('/etc/hostname', 'link')\nopen('real.txt', 'w').write('r')", "s")
    assert [f.path for f in result.files] == ["real.txt"]
    assert set(_scan(ci.folder("s"))) == {"real.txt"}
    assert (ci.folder("s") / "link").is_symlink()


# -- the limits (each stops the code, the tool returns an error, the host is left clean) ---------
@needs_bwrap
def test_a_fork_bomb_is_stopped(ci: CodeInterpreter) -> None:
    conv = f"fork-{uuid.uuid4().hex}"
    code = "import os\nwhile True:\n    os.fork()\n"
    _, result = fails(ci, code, conv)
    assert result.limit in ("processes", "wall_time")
    assert_no_process_left(ci, conv)
    # a fork bomb that swallows the errors spins at the process limit until the wall time
    quiet = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    with code_interpreter(processes=8, cpu_seconds=30, wall_seconds=2) as small:
        _, result = fails(small, quiet, conv)
        assert result.limit == "wall_time" and result.timed_out and result.exit_status is None
        assert_no_process_left(small, conv)


@needs_bwrap
def test_the_process_limit_counts_processes_inside_the_sandbox(ci: CodeInterpreter) -> None:
    code = (
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    for _ in range(100):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(3)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "except OSError as exc:\n"
        "    print(children, type(exc).__name__)\n"
    )
    conv = f"nproc-{uuid.uuid4().hex}"
    children, error = go(ci, code, conv).stdout.split()
    assert error == "BlockingIOError" and 0 < int(children) < 16
    assert_no_process_left(ci, conv)


@needs_bwrap
def test_a_memory_bomb_is_stopped(ci: CodeInterpreter) -> None:
    failure, result = fails(ci, "chunks = []\nwhile True:\n    chunks.append(bytearray(10_000_000))\n")
    assert result.limit == "memory" and "MemoryError" in result.stderr
    assert "out of memory (the limit is 256 MB)" in str(failure)


@needs_bwrap
def test_an_infinite_loop_is_stopped_by_the_cpu_limit(tmp_path: Path) -> None:
    with code_interpreter(cpu_seconds=1, wall_seconds=60) as interp:
        conv = f"cpu-{uuid.uuid4().hex}"
        _, result = fails(interp, "while True:\n    pass\n", conv)
        assert result.limit == "cpu_time" and not result.timed_out
        assert_no_process_left(interp, conv)


@needs_bwrap
def test_a_sleeping_loop_is_stopped_by_the_wall_time(tmp_path: Path) -> None:
    with code_interpreter(cpu_seconds=60, wall_seconds=1) as interp:
        conv = f"wall-{uuid.uuid4().hex}"
        code = "import subprocess, time\nsubprocess.Popen(['sleep', '1000'])\nprint('started', flush=True)\n"
        code += "while True:\n    time.sleep(1)\n"
        failure, result = fails(interp, code, conv)
        assert result.limit == "wall_time" and result.timed_out and result.stdout == "started\n"
        assert "after 1 s (the wall-time limit)" in str(failure)
        assert_no_process_left(interp, conv)


@needs_bwrap
def test_100_mb_of_output_is_cut_and_stopped(tmp_path: Path) -> None:
    with code_interpreter(wall_seconds=120, output_bytes=1_000_000, shown_chars=1_000) as interp:
        conv = f"out-{uuid.uuid4().hex}"
        for code in ("import sys\nsys.stdout.write('x' * 100_000_000)\n", "while True:\n    print('y' * 1000)\n"):
            _, result = fails(interp, code, conv)
            assert result.limit == "output" and result.stdout_truncated and not result.timed_out
            assert result.exit_status is None and len(result.stdout) < 1_100
            assert_no_process_left(interp, conv)


@needs_bwrap
def test_a_huge_file_is_stopped_by_the_file_size_limit(tmp_path: Path) -> None:
    with code_interpreter(file_mb=1) as interp:
        _, result = fails(interp, "open('big', 'wb').write(b'z' * 2_000_000)")
        assert result.limit == "file_size"
        assert (interp.folder() / "big").stat().st_size <= 1024 * 1024


@needs_bwrap
def test_filling_the_work_folder_is_stopped_and_the_files_can_then_be_deleted() -> None:
    with code_interpreter(disk_mb=5, max_files=50, wall_seconds=60) as interp:
        conv = f"disk-{uuid.uuid4().hex}"
        code = "import itertools\nfor i in itertools.count():\n    open(f'fill{i}', 'wb').write(b'd' * 1_000_000)\n"
        failure, result = fails(interp, code, conv)
        assert result.limit == "disk" and not result.timed_out and "delete files" in str(failure)
        assert_no_process_left(interp, conv)
        slow_cleanup = "import glob, os, time\ntime.sleep(1)\nfor p in glob.glob('fill*'):\n    os.remove(p)\nprint('clean')"
        cleaned = go(interp, slow_cleanup, conv)  # over the limit, a call may run (not grow the folder)
        assert cleaned.stdout == "clean\n" and list(interp.folder(conv).iterdir()) == []
        _, result = fails(interp, "import itertools\nfor i in itertools.count():\n    open(f'f{i}', 'w').close()\n", conv)
        assert result.limit == "disk"
        assert go(interp, "import os, time\ntime.sleep(1)\nfor p in os.listdir():\n    os.remove(p)", conv).ok
        assert list(interp.folder(conv).iterdir()) == []


@needs_bwrap
def test_memory_backed_folders_are_small_and_dev_is_read_only() -> None:
    code = (
        "import os\n"
        "for folder in ('/tmp', '/dev/shm', '/dev'):\n"
        "    written = 0\n"
        "    try:\n"
        "        with open(os.path.join(folder, 'fill'), 'wb') as f:\n"
        "            for _ in range(40):\n"
        "                f.write(b'm' * 1_000_000)\n"
        "                f.flush()\n"
        "                written += 1\n"
        "        print(folder, 'FILLED', written)\n"
        "    except OSError as exc:\n"
        "        print(folder, 'STOPPED', written, exc.strerror)\n"
    )
    with code_interpreter(tmp_mb=8) as interp:
        lines = go(interp, code).stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["/tmp", "STOPPED"], ["/dev/shm", "STOPPED"], ["/dev", "STOPPED"]]
    assert all(int(line.split()[2]) <= 8 for line in lines), lines


@needs_bwrap
def test_a_cancelled_call_kills_its_sandbox(ci: CodeInterpreter) -> None:
    conv = f"cancel-{uuid.uuid4().hex}"

    async def main() -> None:
        with anyio.move_on_after(1):
            await ci.run("import time\nprint('in', flush=True)\ntime.sleep(1000)", conversation=conv)
        raise AssertionError("the call should have been cancelled")  # pragma: no cover

    with contextlib.suppress(AssertionError):
        anyio.run(main)
    assert_no_process_left(ci, conv)


@needs_bwrap
def test_after_a_limit_the_run_goes_on(ci: CodeInterpreter) -> None:
    model = ScriptedModel(
        [
            reply(None, call("run_python", "c1", code="x = []\nwhile True:\n    x.append(bytearray(10**7))")),
            reply(None, call("run_python", "c2", code="print(1 +")),
            reply(None, call("run_python", "c3", code="print('recovered')")),
            "all good",
        ]
    )
    result = run_sync(Agent("analyst", model=model, tools=ci), "go")
    assert result.phase == Phase.DONE and result.output == "all good"
    msgs = [m for m in result.snapshot.conversation.messages if isinstance(m, ToolMessage)]
    assert [m.is_error for m in msgs] == [True, True, False]
    assert "CodeFailed: the code ran out of memory" in msgs[0].content
    assert "CodeRejected: the code does not parse (line 1" in msgs[1].content
    assert json.loads(msgs[2].content)["stdout"] == "recovered\n"
    assert not history_problems(result.snapshot.conversation)


# -- bad input ---------------------------------------------------------------------------------
@needs_bwrap
@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("print(1 +", "does not parse (line 1, column"),
        ("def f(:\n  pass", "does not parse (line 1"),
        ("   \n", "the code is empty"),
        ("x = 1\0", "does not parse"),
        ("#" * 300_000, "characters long"),
    ],
)
def test_code_that_cannot_run_is_rejected_before_anything_runs(ci: CodeInterpreter, code: str, message: str) -> None:
    with pytest.raises(CodeRejected) as info:
        go(ci, code)
    assert message in str(info.value)
    assert not ci.folder(None).exists()  # not even a work folder was made


@needs_bwrap
def test_a_non_zero_exit_status_is_a_failure_with_the_output(ci: CodeInterpreter) -> None:
    failure, result = fails(ci, "print('partial')\nraise SystemExit(3)")
    assert result.exit_status == 3 and result.stdout == "partial\n" and result.limit is None
    assert "exit status 3" in str(failure) and '"stdout":"partial\\n"' in str(failure)
    _, result = fails(ci, "def f():\n    return 1 / 0\nf()")
    assert "ZeroDivisionError" in result.stderr and 'File "<code>", line 2, in f' in result.stderr
    assert "return 1 / 0" in result.stderr and "_fsm_agents_sandbox_main" not in result.stderr


def test_without_bubblewrap_it_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailable) as info:
        code_interpreter(bwrap=str(tmp_path / "no-bwrap-here"))
    assert "apt-get install bubblewrap" in str(info.value) and "never runs code unsandboxed" in str(info.value)
    assert isinstance(info.value, FsmAgentsError)


@needs_bwrap
def test_a_python_outside_the_sandbox_is_refused_at_definition(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailable, match="python="):
        code_interpreter(python="/opt/nowhere/python3")


@needs_bwrap
def test_a_read_only_folder_is_visible_and_a_sandbox_that_breaks_later_is_a_typed_error() -> None:
    shared = Path(tempfile.mkdtemp(prefix="fsm-agents-test-"))
    try:
        shared.chmod(0o755)
        (shared / "lookup.txt").write_text("shared data")
        with code_interpreter(read_only=[shared]) as interp:
            assert go(interp, f"print(open({str(shared / 'lookup.txt')!r}).read())").stdout == "shared data\n"
            _, result = fails(interp, f"open({str(shared / 'new.txt')!r}, 'w')")
            assert "Read-only file system" in result.stderr
            shutil.rmtree(shared)
            with pytest.raises(SandboxUnavailable, match="the sandbox did not start: bwrap: "):
                go(interp, "print(1)")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cpu_seconds": 0}, "cpu_seconds"),
        ({"wall_seconds": -1}, "wall_seconds"),
        ({"files": {"../evil": b""}}, "relative path"),
        ({"files": {"/abs": b""}}, "relative path"),
        ({"files": ["/no/such/file.csv"]}, "not a readable file"),
        ({"files": "data.csv"}, "list of paths"),
        ({"read_only": ["/no/such/dir"]}, "does not exist"),
    ],
)
def test_bad_definitions_are_typed_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ToolDefinitionError, match=message):
        code_interpreter(**kwargs)  # type: ignore[arg-type]


# -- the example ---------------------------------------------------------------------------------
@needs_bwrap
def test_the_data_analyst_example_answers_from_the_csv() -> None:
    from examples.connectors import data_analyst

    expected: dict[str, tuple[int, int]] = {}
    with data_analyst.DATA.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            pop, area = expected.get(row["continent"], (0, 0))
            expected[row["continent"]] = (pop + int(row["population"]), area + int(row["area_km2"]))
    top = max(expected, key=lambda c: expected[c][0])
    result = data_analyst.run(data_analyst.build())
    assert result.ok and result.output.startswith(f"{top} has the largest total population")
    for continent, (pop, area) in expected.items():
        assert f"{continent}: population {pop}, density {pop / area:.1f} per km2" in result.output
    assert not history_problems(result.snapshot.conversation)


@needs_bwrap
def test_the_data_analyst_on_a_scripted_model(tmp_path: Path) -> None:
    from examples.connectors import data_analyst

    model = ScriptedModel([reply(None, call("run_python", code=data_analyst.ANALYSIS)), "Asia, by far."])
    with code_interpreter(files=[data_analyst.DATA]) as interp:
        result = data_analyst.run(data_analyst.build(model, interp))
    assert result.ok and result.output == "Asia, by far."
    tool_message = next(m for m in result.snapshot.conversation.messages if isinstance(m, ToolMessage))
    assert not tool_message.is_error and json.loads(tool_message.content)["stdout"].startswith("Asia: population")


@needs_bwrap
def test_the_readme_snippet_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    section = (ROOT / "README.md").read_text().split("## Connectors", 1)[1].split("\n## ", 1)[0]
    code = next(b for b in re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL) if "code_interpreter(" in b)
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md connectors", "exec"), {"__name__": "__readme__"})
    with (ROOT / "examples" / "data" / "countries.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    printed = json.loads(out.getvalue())
    assert printed["stdout"] == f"{len(rows)} countries\n" and printed["exit_status"] == 0
