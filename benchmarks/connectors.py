"""The connectors' costs: the code interpreter's sandbox (and, in their section, the others).

    .venv/bin/python benchmarks/connectors.py               # every section
    .venv/bin/python benchmarks/connectors.py --runs 10     # a quick check

`bench_sandbox`: a trivial `print` round-trip through `CodeInterpreter.run` (parse the code,
create/lock the conversation's work folder, list its files before and after, start bubblewrap
with its namespaces and mounts, set the limits, run the code, read the output, build the typed
result), against the bare `python3 -I -c "print(1)"` with the same interpreter and the same
`bwrap` command without our bootstrap and bookkeeping; all in one asyncio event loop, measured
in the same run and interleaved. Prints the median and p95 of each in ms and the sandbox's
overhead over bare Python. Target: the round-trip ≤ 150 ms on this machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsm_agents.connectors import code_interpreter
from fsm_agents.connectors.code_interpreter import DEFAULT_PYTHON

TARGET_MS = 150.0


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


# -- the code interpreter's sandbox --------------------------------------------------------------
def bench_sandbox(runs: int = 30) -> None:
    """Sandbox start-up + a trivial print round-trip, beside bare `python -c` and bare `bwrap`."""
    print("code interpreter: a print round-trip (ms per call)")
    bwrap_version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
    host = f"python {platform.python_version()} (host), {DEFAULT_PYTHON} in the sandbox"
    print(f"  {host}, {bwrap_version}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with code_interpreter() as interp:
        folder = interp.folder("bench")
        bare_bwrap = interp._command(folder)
        bare_bwrap = [*bare_bwrap[: bare_bwrap.index("--") + 1], DEFAULT_PYTHON, "-I", "-c", "print(1)"]

        async def sandbox() -> None:
            result = await interp.run("print(1)", conversation="bench")
            assert result.stdout == "1\n"

        async def python_c() -> None:
            assert (await anyio.run_process([DEFAULT_PYTHON, "-I", "-c", "print(1)"])).stdout == b"1\n"

        async def bwrap_c() -> None:
            assert (await anyio.run_process(bare_bwrap)).stdout == b"1\n"

        rows: dict[str, tuple[Callable[[], Awaitable[None]], list[float]]] = {
            "python3 -I -c print(1) (bare)": (python_c, []),
            "bwrap + python3 -c (no bootstrap)": (bwrap_c, []),
            "CodeInterpreter.run('print(1)')": (sandbox, []),
        }

        async def measure() -> None:
            await sandbox()  # creates the work folder the bare bwrap binds
            for fn, _ in rows.values():  # warm-up
                await fn()
            for _ in range(runs):  # interleaved, so a change in machine load hits all alike
                for fn, samples in rows.values():
                    started = time.perf_counter()
                    await fn()
                    samples.append((time.perf_counter() - started) * 1000.0)

        anyio.run(measure)
    print(f"  {'':<36} {'median':>8} {'p95':>8}")
    medians = {}
    for name, (_, samples) in rows.items():
        med, p95 = _quantiles(samples)
        medians[name] = med
        print(f"  {name:<36} {med:>8.1f} {p95:>8.1f}")
    full = medians["CodeInterpreter.run('print(1)')"]
    bare = medians["python3 -I -c print(1) (bare)"]
    print(f"  sandbox round-trip / bare python: {full / bare:.1f}x (+{full - bare:.1f} ms)")
    print(f"  target ≤ {TARGET_MS:.0f} ms: {'met' if full <= TARGET_MS else 'NOT met'} ({full:.1f} ms median)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="measured calls per variant")
    args = parser.parse_args(argv)
    bench_sandbox(args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
