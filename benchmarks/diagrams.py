"""How fast diagrams are drawn: every shipped machine, and a 1,000-step run's overlay and viewer page.

    .venv/bin/python benchmarks/diagrams.py            # 20 repetitions, medians
    .venv/bin/python benchmarks/diagrams.py --reps 5   # a quick check

For each machine in `fsm_agents.diagrams.shipped()` it times `to_mermaid` and `to_dot` (our
code: the two-level drawing, guard priorities, DOT text through pydot) and, separately,
Graphviz's own layout of that DOT to SVG (`dot -Tsvg`, a subprocess). Then it runs an agent
whose scripted model calls a tool 333 times before answering (1,000 transitions), and times the
overlay of that run (`to_dot(agent, result)`) and its viewer page (`view_html`, which includes
one Graphviz layout). The issue's targets: any shipped diagram in ≤ 50 ms excluding Graphviz's
layout, the viewer page of a 1,000-step run in ≤ 1 s. Medians of `--reps` repetitions,
`time.perf_counter`, garbage collection enabled.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `examples` is importable

from fsm_agents import Agent, ScriptedModel, run_sync
from fsm_agents.cli import load_object
from fsm_agents.diagrams import graphviz_version, render, shipped, to_dot, to_mermaid
from fsm_agents.models import call, reply
from fsm_agents.viewer import view_html


def median_ms(fn: Callable[[], Any], reps: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def long_run(tool_calls: int) -> tuple[Agent, Any]:
    replies = [reply(None, call("add", a=i, b=1)) for i in range(tool_calls)] + [reply("done")]
    agent = Agent("counter", tools=[add], model=ScriptedModel(replies), max_steps=tool_calls + 1)
    result = run_sync(agent, "count")
    return agent, result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args(argv)
    print("diagrams: drawing every shipped machine; a 1,000-step run's overlay and viewer page")
    print(
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs, pydot {version('pydot')}, "
        f"Graphviz {graphviz_version()}; median of {args.reps}"
    )
    print()
    print(f"{'machine':<16} {'mermaid ms':>10} {'dot ms':>8} {'≤ 50 ms':>8} {'graphviz svg ms':>16}")
    worst = 0.0
    for name, spec in shipped().items():
        machine = load_object(spec)
        mm = median_ms(lambda m=machine: to_mermaid(m), args.reps)
        dot_text = to_dot(machine)
        dt = median_ms(lambda m=machine: to_dot(m), args.reps)
        gv = median_ms(lambda d=dot_text: render(d, "svg"), max(1, args.reps // 4))
        worst = max(worst, mm, dt)
        print(f"{name:<16} {mm:>10.2f} {dt:>8.2f} {'yes' if max(mm, dt) <= 50 else 'NO':>8} {gv:>16.1f}")
    print()
    agent, result = long_run(333)
    steps = len(result.trace)
    overlay = median_ms(lambda: to_dot(agent, result), args.reps)
    page = median_ms(lambda: view_html(result, agent), max(1, args.reps // 4))
    size = len(view_html(result, agent).encode())
    print(f"a {steps}-step run ({len(result.events)} events):")
    print(f"  overlay (to_dot with the trace)      {overlay:8.2f} ms")
    print(
        f"  viewer page (view_html, with layout)  {page:8.1f} ms  ({size / 1024:.0f} KiB)  "
        f"≤ 1 s: {'yes' if page <= 1000 else 'NO'}"
    )
    print()
    print(f"worst shipped diagram without Graphviz: {worst:.2f} ms (target ≤ 50 ms: {'met' if worst <= 50 else 'missed'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
