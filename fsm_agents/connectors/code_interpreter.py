"""The code interpreter: Python the model writes, run in a bubblewrap sandbox.

`code_interpreter(...)` returns a `CodeInterpreter`, a toolset (a sequence of one `Tool`,
`run_python(code)`) usable as `Agent(tools=code_interpreter())` or `Agent(tools=[*ci, other])`.
Each call runs the code as a script with Debian's `/usr/bin/python3` (by default) inside
bubblewrap (https://github.com/containers/bubblewrap, `bwrap`):

- namespaces: new user, mount, pid, network (only the sandbox's own loopback: no network, not
  even the host's 127.0.0.1), ipc, uts and cgroup namespaces (`--unshare-all`); nested user namespaces are refused
  (`--disable-userns`, bwrap ≥ 0.8); `--die-with-parent`, `--new-session` (no terminal injection);
- filesystem: a read-only system (`/usr` and the `/bin`, `/lib*` links, a few files of `/etc`),
  a fresh `/proc` and minimal `/dev`, a size-limited tmpfs `/tmp`, and the conversation's work
  folder read-write at `/workspace` (the current directory); `/dev` is read-only but for a
  size-limited `/dev/shm`; nothing else of the host (no `/home`, `/root`, project files,
  sockets) exists inside; the root is remounted read-only;
- limits (`SandboxLimits`): CPU time, address space (memory), processes + threads
  (`RLIMIT_NPROC`), file size, no core dumps — set with `setrlimit` by a small bootstrap inside the
  sandbox before the code runs; output (the host reads at most `output_bytes` of stdout and of
  stderr, then kills the sandbox), the work folder's disk use and file count (the host looks
  every 0.25 s) and wall time (the host kills the sandbox). Killing the `bwrap` process ends the
  sandbox's pid namespace and so every process the code started.

`RLIMIT_NPROC` does not apply to processes of the host's root (whatever uid they have inside a
user namespace), so a fork bomb would go unchecked: run as root, the sandbox is started as an
unprivileged uid (`sandbox_uid`, default 65534 "nobody", through `setpriv`). Linux ≥ 5.14 counts
the limit per user namespace, so sandboxes do not share it (older kernels count every process
of that uid). This needs unprivileged user namespaces, which Debian
enables; `code_interpreter()` checks it by starting one sandbox and raises `SandboxUnavailable`
(with the fix) if it cannot — it never runs code unsandboxed.

Work folders: one per conversation, keyed by `fsm_agents.tools.current_run_id()` (one shared
folder when the tool runs outside a run), under `workdir` (a temporary folder removed by
`close()` or at exit when not given). Files persist between the calls of a conversation;
`files=` are copied into each new folder. Each result lists the regular files the call created
or changed (symlinks the code makes are neither listed nor followed by the host).

Outcomes: exit status 0 → a `CodeResult`; a non-zero status or a limit → `CodeFailed` (carrying
the `CodeResult`), and code that does not parse → `CodeRejected`, both fed back to the model as
tool errors; the run goes on.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import anyio
import pydantic_core
from anyio.abc import ByteReceiveStream, Process
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fsm_agents.errors import CodeFailed, CodeRejected, SandboxUnavailable, ToolDefinitionError
from fsm_agents.tools import SingleToolset, Tool, current_run_id, tool

__all__ = ["CodeInterpreter", "CodeResult", "SandboxLimits", "WrittenFile", "code_interpreter"]

log = logging.getLogger("fsm_agents.connectors.code_interpreter")

WORKSPACE = "/workspace"
"""Where the conversation's work folder is mounted inside the sandbox (the code's current folder)."""

DEFAULT_PYTHON = "/usr/bin/python3"
INSTALL_HINT = "install it: `apt-get install bubblewrap` (Debian/Ubuntu), `dnf install bubblewrap` (Fedora)"
MAX_CODE_CHARS = 200_000
MAX_LISTED_FILES = 100
_DISK_POLL = 0.25  # seconds between two looks at the work folder's size

_MIB = 1024 * 1024
_SANDBOX_ID = "1000"  # the uid/gid the code sees inside its user namespace
_ETC_FILES = (
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/fonts",
    "/etc/mime.types",
    "/etc/matplotlibrc",
)
_SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKSPACE,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "USER": "sandbox",
    "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}
_HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

# Runs inside the sandbox: read the code from stdin (then stdin is /dev/null), set the limits,
# run the code as `__main__`; an uncaught exception prints its traceback without this frame and
# exits 1 (with a hint when the code used a path outside its folder). Arguments: CPU seconds, address
# space bytes, processes, file size bytes, and the work folder's name (unused: it names the
# conversation in the host's process list).
_BOOT = """\
import os, resource, sys
def _fsm_agents_sandbox_main():
    cpu, memory, processes, file_size = (int(v) for v in sys.argv[1:5])
    source = sys.stdin.buffer.read().decode("utf-8")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.argv = ["<code>"]
    for res, soft, hard in (
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, memory, memory),
        (resource.RLIMIT_NPROC, processes, processes),
        (resource.RLIMIT_FSIZE, file_size, file_size),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        resource.setrlimit(res, (soft, hard))
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "<code>", "exec"), namespace)
    except SystemExit:
        raise
    except BaseException as exc:
        if isinstance(exc, MemoryError):
            namespace.clear()
        import errno, linecache, traceback
        linecache.cache["<code>"] = (len(source), None, source.splitlines(True), "<code>")
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        name = getattr(exc, "filename", None)
        if (isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT)
                and isinstance(name, str) and not os.path.abspath(name).startswith(("/workspace/", "/tmp/"))):
            print("note: the sandbox sees only its work folder /workspace (the current folder), /tmp and a "
                  "read-only system, and can write only in /workspace and /tmp: use paths there", file=sys.stderr)
        sys.exit(1)
_fsm_agents_sandbox_main()
"""

LimitName = Literal["wall_time", "cpu_time", "memory", "processes", "output", "file_size", "disk"]


class SandboxLimits(BaseModel):
    """Limits of one code run. Units are in the names; every value must be positive.

    - `cpu_seconds`: CPU time per process (`RLIMIT_CPU`; SIGXCPU, then SIGKILL a second later);
    - `memory_mb`: address space per process (`RLIMIT_AS`; Python raises `MemoryError`);
    - `processes`: processes and threads the code may have at once (`RLIMIT_NPROC`, counted in
      the sandbox's user namespace);
    - `wall_seconds`: elapsed time, then the host kills the sandbox;
    - `output_bytes`: bytes read from stdout and from stderr each, then the host kills the sandbox;
    - `file_mb`: size of any one file written (`RLIMIT_FSIZE`); `tmp_mb`: size of the tmpfs `/tmp`
      (and of `/dev/shm`, the other one); `disk_mb`: the work folder's disk use (the host looks
      every 0.25 s and kills the sandbox past it, or past `max_files` files and folders; a call
      that starts over it may still run, to delete files);
    - `shown_chars`: characters of stdout and of stderr each kept in the result (the head and
      the tail; the middle is replaced by a marker).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu_seconds: int = Field(10, gt=0)
    memory_mb: int = Field(512, gt=0)
    processes: int = Field(64, gt=0)
    wall_seconds: float = Field(30.0, gt=0)
    output_bytes: int = Field(1_000_000, gt=0)
    file_mb: int = Field(100, gt=0)
    disk_mb: int = Field(1_000, gt=0)
    max_files: int = Field(10_000, gt=0)
    tmp_mb: int = Field(64, gt=0)
    shown_chars: int = Field(8_000, gt=0)


class WrittenFile(BaseModel):
    """A regular file a call created or changed: `path` relative to the work folder (POSIX
    separators), `bytes` its size."""

    model_config = ConfigDict(frozen=True)

    path: str
    bytes: int


class CodeResult(BaseModel):
    """What one run of the code produced.

    - `exit_status`: the script's exit status (128 + N when signal N ended it), `None` when the
      host killed the sandbox (the wall-time, output or disk limit);
    - `stdout`, `stderr`: the output decoded as UTF-8 (invalid bytes replaced), cut to
      `shown_chars` each; `stdout_truncated` / `stderr_truncated` say whether anything was cut or
      not read;
    - `timed_out`: the wall-time limit was reached; `limit`: which limit stopped the code, if any:
      `wall_time`, `output` and `disk` (the host enforced them), `cpu_time` (the exit status of
      SIGXCPU or SIGKILL), `memory`, `processes` and `file_size` (read from the error the code
      died of: `MemoryError`, `BlockingIOError` EAGAIN, `OSError` EFBIG);
    - `files`: regular files created or changed by this call (at most 100, by path).
    """

    model_config = ConfigDict(frozen=True)

    exit_status: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    limit: LimitName | None = None
    files: tuple[WrittenFile, ...] = ()

    @property
    def ok(self) -> bool:
        """The code exited with status 0 and no limit stopped it."""
        return self.exit_status == 0 and self.limit is None


@dataclass
class _Run:
    """What `_execute` saw: the exit status (None when killed), the output, which limit the host enforced."""

    out: _Capture
    err: _Capture
    status: int | None = None
    killed: bool = False
    timed_out: bool = False
    disk_full: bool = False


class _Capture:
    """Up to `cap` bytes of one output stream; `overflow` once more arrived."""

    __slots__ = ("cap", "data", "overflow")

    def __init__(self, cap: int) -> None:
        self.cap, self.data, self.overflow = cap, bytearray(), False

    def add(self, chunk: bytes) -> bool:
        """Keep `chunk` (what fits); True when the cap is exceeded."""
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.data += chunk[:room]
            self.overflow = True
            return True
        self.data += chunk
        return False

    def text(self, shown: int) -> tuple[str, bool]:
        text = self.data.decode("utf-8", errors="replace")
        if len(text) <= shown:
            return text, self.overflow
        head, tail = shown * 3 // 4, shown - shown * 3 // 4
        omitted = len(text) - head - tail
        return f"{text[:head]}\n… [{omitted} characters omitted] …\n{text[len(text) - tail :]}", True


def _folder_name(key: str | None) -> str:
    if key is None:
        return "default"
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:40].lstrip(".")
    return f"run-{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _scan(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Regular files under `folder` (symlinks not followed): relative path → (mtime ns, size, inode)."""
    found: dict[str, tuple[int, int, int]] = {}
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found[PurePosixPath(os.path.relpath(path, folder)).as_posix()] = (st.st_mtime_ns, st.st_size, st.st_ino)
            if len(found) >= 10_000:  # a folder full of files: list what we saw
                return found
    return found


def _usage(folder: Path, byte_cap: int, entry_cap: int) -> tuple[int, int]:
    """(disk bytes used, files and folders) under `folder` (allocated blocks; symlinks not
    followed), counted until one passes its cap."""
    used, entries = 0, 0
    stack = [str(folder)]
    while stack and used <= byte_cap and entries <= entry_cap:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    used += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    if used > byte_cap or entries > entry_cap:
                        break
        except OSError:
            continue
    return used, entries


def _strip_fences(code: str) -> str:
    """Code in a Markdown fence (```python ... ```), as small models write it, without the fence."""
    stripped = code.strip()
    if stripped.startswith("```") and stripped.endswith("```") and "\n" in stripped:
        return stripped[stripped.index("\n") + 1 : -3]
    return code


def _check_code(code: str) -> str:
    """The code to run, or `CodeRejected` (empty, too long, does not parse)."""
    code = _strip_fences(code)
    if not code.strip():
        raise CodeRejected("the code is empty: send the Python source to run")
    if len(code) > MAX_CODE_CHARS:
        raise CodeRejected(
            f"the code is {len(code)} characters long (at most {MAX_CODE_CHARS}): write data to files instead"
        )
    try:
        ast.parse(code, "<code>")
    except SyntaxError as exc:
        where = f"line {exc.lineno}, column {exc.offset}" if exc.lineno else "somewhere"
        line = f": {exc.text.rstrip()!r}" if exc.text else ""
        raise CodeRejected(f"the code does not parse ({where}): {exc.msg}{line}; nothing was run") from None
    except ValueError as exc:  # NUL characters (Python < 3.12)
        raise CodeRejected(f"the code does not parse: {exc}; nothing was run") from None
    return code


def _kill_group(proc: Process) -> None:
    """SIGKILL the sandbox's process group (the `bwrap` process; `--die-with-parent` and the end
    of its pid namespace take every process inside with it)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class CodeInterpreter(SingleToolset):
    """The code interpreter toolset: one tool, `run_python(code)` (renamed with `name=`).

    Made by `code_interpreter()`. Also usable directly: `await ci.run(code, conversation=...)`;
    `ci.folder(key)` is a conversation's work folder on the host: read the files a result lists
    from there (regular files, which nothing in the sandbox can change between two calls; other
    entries may be symlinks the code made — do not follow them);
    `close()` removes the temporary folders (also at exit); usable as a context manager.
    """

    def __init__(
        self,
        *,
        limits: SandboxLimits,
        files: Mapping[str, bytes | str | os.PathLike[str]],
        workdir: Path | None,
        python: str,
        read_only: tuple[str, ...],
        bwrap: str,
        setpriv: str | None,
        sandbox_uid: int | None,
        name: str,
    ) -> None:
        self.limits = limits
        self.python = python
        self.read_only = read_only
        self._files = dict(files)
        self._bwrap = bwrap
        self._setpriv = setpriv
        self._uid = sandbox_uid
        self._mutex = threading.Lock()
        self._busy: set[Path] = set()
        self._disable_userns = _supports_disable_userns(bwrap)
        if workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="fsm-agents-code-"))
            self._finalizer: weakref.finalize[Any, Any] | None = weakref.finalize(
                self, shutil.rmtree, str(self.workdir), ignore_errors=True
            )
            if sandbox_uid is not None:
                os.chmod(self.workdir, 0o711)  # the sandbox uid may traverse it, not list it
        else:
            workdir.mkdir(parents=True, exist_ok=True)
            self.workdir = workdir.resolve()
            self._finalizer = None
        listed = f" (it starts with: {', '.join(sorted(self._files))})" if self._files else ""
        lim = limits
        description = (
            "Run Python 3 code as a script in a sandbox and get its stdout, stderr, exit status and "
            f"the files it wrote. The current folder {WORKSPACE} keeps its files between calls{listed}; "
            "there is no network. print() what you need to see. "
            f"Limits: {lim.cpu_seconds} s CPU, {lim.wall_seconds:g} s in all, {lim.memory_mb} MB memory, "
            f"{lim.output_bytes} bytes of output."
        )

        async def run_python(code: str) -> CodeResult:
            """Run Python code in the sandbox.

            Args:
                code: the Python 3 source to run (a whole script; print what you want to see).
            """
            return await self.run(code)

        self._tool = tool(
            name=name,
            description=description,
            timeout=limits.wall_seconds + 30.0,
            max_output_chars=2 * limits.shown_chars + 4_000,
        )(run_python)
        self._probe()

    # -- the toolset -------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"CodeInterpreter(tool={self._tool.name!r}, workdir={str(self.workdir)!r}, limits={self.limits!r})"

    @property
    def tool(self) -> Tool:
        """The `run_python` tool."""
        return self._tool

    def folder(self, conversation: str | None = None) -> Path:
        """The host path of the work folder of `conversation` (a run id; `None`: the folder of
        calls made outside a run). It may not exist yet."""
        return self.workdir / _folder_name(conversation)

    def close(self) -> None:
        """Remove the temporary work folders (a `workdir` given by the caller is kept)."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> CodeInterpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running code --------------------------------------------------------------------------
    async def run(self, code: str, *, conversation: str | None = None) -> CodeResult:
        """Run `code` in the sandbox, in the work folder of `conversation` (default: the current
        run's, `current_run_id()`). Returns the `CodeResult` when the code exits with status 0;
        raises `CodeRejected` (empty, too long, does not parse), `CodeFailed` (non-zero status or
        a limit; `.result` is the `CodeResult`), `SandboxUnavailable` (the sandbox did not start).
        Calls on one folder run one at a time."""
        source = _check_code(code)
        key = conversation if conversation is not None else current_run_id()
        folder = await anyio.to_thread.run_sync(self._prepare, key)
        async with self._exclusive(folder):
            before = await anyio.to_thread.run_sync(_scan, folder)
            run = await self._execute(folder, source.encode("utf-8"))
            after = await anyio.to_thread.run_sync(_scan, folder)
        changed = [p for p in sorted(after) if before.get(p) != after[p]][:MAX_LISTED_FILES]
        written = tuple(WrittenFile(path=p, bytes=after[p][1]) for p in changed)
        return self._outcome(run, written)

    @contextlib.asynccontextmanager
    async def _exclusive(self, folder: Path) -> AsyncIterator[None]:
        while True:  # a tiny poll, not an anyio.Lock: the toolset may serve several event loops
            with self._mutex:
                if folder not in self._busy:
                    self._busy.add(folder)
                    break
            await anyio.sleep(0.02)
        try:
            yield
        finally:
            with self._mutex:
                self._busy.discard(folder)

    async def _execute(self, folder: Path, source: bytes) -> _Run:
        limits = self.limits
        run = _Run(out=_Capture(limits.output_bytes), err=_Capture(limits.output_bytes))
        # a call that starts over the disk limits may run (to delete files) but not grow the folder;
        # past the limit, a little slack absorbs what a previous call killed mid-write still flushes
        start = await anyio.to_thread.run_sync(_usage, folder, sys.maxsize, 100 * limits.max_files)
        over_already = start[0] > limits.disk_mb * _MIB or start[1] > limits.max_files
        slack = (_MIB, 8) if over_already else (0, 0)
        caps = max(limits.disk_mb * _MIB, start[0]) + slack[0], max(limits.max_files, start[1]) + slack[1]

        def over() -> bool:
            used, entries = _usage(folder, *caps)
            return used > caps[0] or entries > caps[1]

        try:
            proc = await anyio.open_process(
                self._command(folder),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=_HOST_ENV,
            )
        except OSError as exc:
            raise SandboxUnavailable(f"cannot start bubblewrap ({self._bwrap}): {exc}; {INSTALL_HINT}") from exc
        try:
            with anyio.move_on_after(limits.wall_seconds) as scope:

                async def feed() -> None:
                    assert proc.stdin is not None
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await proc.stdin.send(source)
                    await proc.stdin.aclose()

                async def drain(stream: ByteReceiveStream | None, capture: _Capture) -> None:
                    assert stream is not None
                    async for chunk in stream:
                        if capture.add(chunk):
                            run.killed = True
                            _kill_group(proc)
                            return

                async def watch_disk() -> None:
                    while True:
                        await anyio.sleep(_DISK_POLL)
                        if await anyio.to_thread.run_sync(over):
                            run.killed = run.disk_full = True
                            _kill_group(proc)
                            return

                async with anyio.create_task_group() as watcher:
                    watcher.start_soon(watch_disk)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(feed)
                        tg.start_soon(drain, proc.stdout, run.out)
                        tg.start_soon(drain, proc.stderr, run.err)
                    await proc.wait()
                    watcher.cancel_scope.cancel()
        finally:
            _kill_group(proc)  # a no-op once it exited; on a time-out or a cancellation it ends the sandbox
            with anyio.CancelScope(shield=True):
                await proc.aclose()
        run.timed_out = scope.cancelled_caught
        if not run.killed and await anyio.to_thread.run_sync(over):
            run.disk_full = True  # written since the last look
        run.status = None if (run.killed or run.timed_out) else proc.returncode
        return run

    def _outcome(self, run: _Run, files: tuple[WrittenFile, ...]) -> CodeResult:
        lim = self.limits
        status, out, err, timed_out = run.status, run.out, run.err, run.timed_out
        stdout, stdout_cut = out.text(lim.shown_chars)
        stderr, stderr_cut = err.text(lim.shown_chars)
        if status == 1 and not stdout and stderr.startswith("bwrap: "):
            raise SandboxUnavailable(f"the sandbox did not start: {stderr.strip()}")
        last = stderr.rstrip().rsplit("\n", 1)[-1]
        limit: LimitName | None = None
        if timed_out:
            limit = "wall_time"
        elif out.overflow or err.overflow:
            limit = "output"
        elif run.disk_full:
            limit = "disk"
        elif status in (128 + signal.SIGXCPU, 128 + signal.SIGKILL):
            limit = "cpu_time"
        elif last.startswith("MemoryError"):
            limit = "memory"
        elif any(f"[Errno {errno.EAGAIN}]" in line and "BlockingIOError" in line for line in stderr.splitlines()):
            limit = "processes"  # anywhere: the forked processes' tracebacks interleave, any one may end stderr
        elif f"[Errno {errno.EFBIG}]" in last:
            limit = "file_size"
        result = CodeResult(
            exit_status=status,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=stdout_cut,
            stderr_truncated=stderr_cut,
            timed_out=timed_out,
            limit=limit,
            files=files,
        )
        if result.ok:
            return result
        why = {
            "wall_time": f"the code was stopped after {lim.wall_seconds:g} s (the wall-time limit)",
            "output": f"the code was stopped: it wrote more than {lim.output_bytes} bytes of output (the limit)",
            "cpu_time": f"the code was stopped after {lim.cpu_seconds} s of CPU time (the limit)",
            "memory": f"the code ran out of memory (the limit is {lim.memory_mb} MB)",
            "processes": f"the code reached the limit of {lim.processes} processes and threads",
            "file_size": f"the code tried to write a file larger than {lim.file_mb} MB (the limit)",
            "disk": f"the work folder grew past {lim.disk_mb} MB or {lim.max_files} files (the limit): delete files",
            None: f"the code failed with exit status {status}",
        }[limit]
        raise CodeFailed(f"{why}; result: {pydantic_core.to_json(result).decode()}", result)

    # -- the sandbox -------------------------------------------------------------------------
    def _command(self, folder: Path, *, writable: bool = True) -> list[str]:
        lim = self.limits
        cmd: list[str] = []
        if self._uid is not None and self._setpriv is not None:
            cmd += [self._setpriv, f"--reuid={self._uid}", f"--regid={self._uid}", "--clear-groups", "--no-new-privs"]
        cmd += [self._bwrap, "--unshare-all", "--unshare-user"]
        if self._disable_userns:
            cmd.append("--disable-userns")
        cmd += ["--die-with-parent", "--new-session", "--uid", _SANDBOX_ID, "--gid", _SANDBOX_ID, "--hostname", "sandbox"]
        cmd += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                cmd += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                cmd += ["--ro-bind", top, top]
        for path in _ETC_FILES:
            cmd += ["--ro-bind-try", path, path]
        tmpfs = ["--perms", "1777", "--size", str(lim.tmp_mb * _MIB), "--tmpfs"]
        # /dev is a tmpfs as large as half the RAM: read-only, with a size-limited /dev/shm
        cmd += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev", *tmpfs, "/dev/shm", *tmpfs, "/tmp"]
        cmd += ["--bind" if writable else "--ro-bind", str(folder), WORKSPACE]
        for path in self.read_only:  # after the tmpfs mounts, which would hide a folder under /tmp
            cmd += ["--ro-bind", path, path]
        cmd += ["--remount-ro", "/", "--chdir", WORKSPACE]
        cmd.append("--clearenv")
        for key, value in _SANDBOX_ENV.items():
            cmd += ["--setenv", key, value]
        cmd += ["--", self.python, "-I", "-u", "-c", _BOOT]
        cmd += [
            str(lim.cpu_seconds),
            str(lim.memory_mb * _MIB),
            str(lim.processes + 1),
            str(lim.file_mb * _MIB),
            folder.name,
        ]
        return cmd

    def _probe(self) -> None:
        """Start one sandbox (`pass`, the work root read-only): `SandboxUnavailable` if it fails."""
        try:
            done = subprocess.run(
                self._command(self.workdir, writable=False), input=b"pass", capture_output=True, timeout=60, env=_HOST_ENV
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"bubblewrap ({self._bwrap}) could not be started: {exc}; {INSTALL_HINT}") from exc
        if done.returncode == 0:
            return
        detail = done.stderr.decode("utf-8", errors="replace").strip()[-800:]
        if "execvp" in detail or ("No such file" in detail and self.python in detail):
            fix = (
                f"the Python interpreter {self.python!r} is not in the sandbox: give python= a path under /usr "
                "or add its folders to read_only="
            )
        elif "Can't find source path" in detail:
            fix = (
                f"the work folder {self.workdir} (or a read_only path) cannot be reached by the sandbox user "
                f"(uid {self._uid}): choose a workdir whose parent folders every user may traverse (mode o+x)"
            )
        else:
            fix = (
                "bubblewrap needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and "
                "user.max_user_namespaces > 0; in a container, allow unshare/clone of user namespaces)"
            )
        raise SandboxUnavailable(f"the code sandbox does not start here (exit status {done.returncode}: {detail}); {fix}")

    def _prepare(self, key: str | None) -> Path:
        """The work folder of `key`, created (with the `files`) on first use."""
        folder = self.folder(key)
        if folder.is_dir():
            return folder
        with self._mutex:
            if folder.is_dir():
                return folder
            fresh = Path(tempfile.mkdtemp(prefix=".new-", dir=self.workdir))
            try:
                for name, content in self._files.items():
                    _write_new(fresh / name, content)
                if self._uid is not None:
                    for root, dirs, names in os.walk(fresh):
                        for entry in (root, *(os.path.join(root, n) for n in (*dirs, *names))):
                            os.lchown(entry, self._uid, self._uid)
                os.rename(fresh, folder)
            except BaseException:
                shutil.rmtree(fresh, ignore_errors=True)
                raise
        log.debug("work folder %s for conversation %r", folder, key)
        return folder


def _write_new(path: Path, content: bytes | str | os.PathLike[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with open(fd, "wb") as dst:
        if isinstance(content, bytes):
            dst.write(content)
        elif isinstance(content, str):
            dst.write(content.encode("utf-8"))
        else:
            with open(content, "rb") as src:
                shutil.copyfileobj(src, dst)


_DISABLE_USERNS: dict[str, bool] = {}


def _supports_disable_userns(bwrap: str) -> bool:
    """bwrap ≥ 0.8 can forbid user namespaces inside the sandbox (`--disable-userns`)."""
    if bwrap not in _DISABLE_USERNS:
        try:
            helptext = subprocess.run([bwrap, "--help"], capture_output=True, timeout=30, env=_HOST_ENV).stdout
        except (OSError, subprocess.TimeoutExpired):
            helptext = b""
        _DISABLE_USERNS[bwrap] = b"--disable-userns" in helptext
    return _DISABLE_USERNS[bwrap]


def _files_map(
    files: Mapping[str, bytes | str | os.PathLike[str]] | Iterable[str | os.PathLike[str]] | None,
) -> dict[str, Any]:
    if files is None:
        return {}
    if isinstance(files, (str, bytes, os.PathLike)):
        raise ToolDefinitionError("code_interpreter(files=...) takes a list of paths or a mapping name → content or path")
    if isinstance(files, Mapping):
        items: list[tuple[str, Any]] = list(files.items())
    else:
        items = [(Path(p).name, Path(p)) for p in files]
    out: dict[str, Any] = {}
    for name, content in items:
        parts = PurePosixPath(name).parts if isinstance(name, str) else ()
        if not parts or PurePosixPath(name).is_absolute() or any(p in ("..", ".") for p in parts) or "\0" in name:
            raise ToolDefinitionError(f"code_interpreter: file name {name!r} must be a relative path inside the work folder")
        if isinstance(content, os.PathLike) and not Path(content).is_file():
            raise ToolDefinitionError(f"code_interpreter: {os.fspath(content)!r} (for {name!r}) is not a readable file")
        if not isinstance(content, (bytes, str, os.PathLike)):
            raise ToolDefinitionError(f"code_interpreter: the content of {name!r} must be bytes, str or a path")
        out[PurePosixPath(name).as_posix()] = content
    return out


def code_interpreter(
    *,
    files: Mapping[str, bytes | str | os.PathLike[str]] | Iterable[str | os.PathLike[str]] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    python: str = DEFAULT_PYTHON,
    read_only: Iterable[str | os.PathLike[str]] = (),
    name: str = "run_python",
    cpu_seconds: int = 10,
    memory_mb: int = 512,
    processes: int = 64,
    wall_seconds: float = 30.0,
    output_bytes: int = 1_000_000,
    file_mb: int = 100,
    disk_mb: int = 1_000,
    max_files: int = 10_000,
    tmp_mb: int = 64,
    shown_chars: int = 8_000,
    bwrap: str | None = None,
    sandbox_uid: int = 65534,
) -> CodeInterpreter:
    """A code interpreter toolset: `Agent(tools=code_interpreter(files=["data.csv"]))`.

    - `files`: put in every new work folder: paths (copied, by their base name) or a mapping
      `name → bytes | str (text) | path` (names may have sub-folders);
    - `workdir`: where the work folders live (kept; default a temporary folder removed at exit);
    - `python`: the interpreter run in the sandbox (it and its libraries must be under `/usr` or
      `read_only`, extra host folders bound read-only at the same path);
    - `name`: the tool's name; the limits (see `SandboxLimits`, units in the names);
    - `bwrap`: the bubblewrap executable (default: `bwrap` on PATH); `sandbox_uid`: the uid the
      sandbox runs as when this process is root (`RLIMIT_NPROC` does not apply to root).

    Raises `SandboxUnavailable` (bubblewrap missing — install it with `apt-get install
    bubblewrap` — or unable to start a sandbox here: it starts one to check) and
    `ToolDefinitionError` (a bad limit, file or path). Never runs code unsandboxed.
    """
    try:
        limits = SandboxLimits(
            cpu_seconds=cpu_seconds,
            memory_mb=memory_mb,
            processes=processes,
            wall_seconds=wall_seconds,
            output_bytes=output_bytes,
            file_mb=file_mb,
            disk_mb=disk_mb,
            max_files=max_files,
            tmp_mb=tmp_mb,
            shown_chars=shown_chars,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ToolDefinitionError(f"code_interpreter: {problems}") from None
    found = shutil.which(bwrap or "bwrap")
    if found is None:
        raise SandboxUnavailable(
            f"the code interpreter runs code in bubblewrap, and {bwrap or 'bwrap'!r} was not found; {INSTALL_HINT}. "
            "It never runs code unsandboxed."
        )
    setpriv = None
    uid: int | None = None
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise SandboxUnavailable(
                "run as root, the code interpreter starts its sandbox as an unprivileged user with "
                "`setpriv` (util-linux), which was not found: install util-linux"
            )
        uid = sandbox_uid
        if uid == 0:
            raise ToolDefinitionError(
                "code_interpreter: sandbox_uid must not be 0 (the process limit does not apply to root)"
            )
    paths = tuple(str(Path(p).resolve()) for p in read_only)
    for p in paths:
        if not os.path.exists(p):
            raise ToolDefinitionError(f"code_interpreter: read_only path {p!r} does not exist")
    return CodeInterpreter(
        limits=limits,
        files=_files_map(files),
        workdir=None if workdir is None else Path(workdir),
        python=python,
        read_only=paths,
        bwrap=found,
        setpriv=setpriv,
        sandbox_uid=uid,
        name=name,
    )
