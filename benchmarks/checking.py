"""How fast `check_machine` explores every shipped machine (the agent loop and each pattern).

    .venv/bin/python benchmarks/checking.py                 # 500 examples per machine
    .venv/bin/python benchmarks/checking.py --examples 100  # a quick check
    .venv/bin/python benchmarks/checking.py --no-oracle     # without python-statemachine's engine

For each machine in `fsm_agents.diagrams.shipped()` it runs `check_machine(machine,
max_examples=N, seed=0)` with all eight invariants and prints examples (every example hypothesis
ran, including the ones it discarded), runs (each example runs the machine from `start`
`runs_per_example` = 4 times), steps checked, wall time, examples/s and steps/s. The issue's
targets: ≥ 1,000 steps checked per second, and a 500-example check of any shipped machine in
under 10 s on this machine. "Steps" are events fed to `step`, each followed by every invariant
check (and the oracle, unless --no-oracle).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `examples` is importable

from fsm_agents.cli import load_object
from fsm_agents.diagrams import shipped
from fsm_agents.testing import DEFAULT, check_machine


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--no-oracle", action="store_true", help="skip invariant 8 (python-statemachine's engine)")
    args = parser.parse_args(argv)
    invariants = tuple(i for i in DEFAULT if not (args.no_oracle and i == "oracle"))
    print("checking: check_machine on every shipped machine")
    print(
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs, hypothesis {version('hypothesis')}, "
        f"python-statemachine {version('python-statemachine')}; {args.examples} examples; "
        f"invariants: {', '.join(invariants)}"
    )
    print()
    head = f"{'machine':<16} {'examples':>8} {'runs':>6} {'steps':>7} {'wall s':>7} {'examples/s':>11} {'steps/s':>8}"
    print(f"{head}  {'< 10 s':>6}")
    worst = 0.0
    total_steps, total_wall = 0, 0.0
    for name, spec in shipped().items():
        machine = load_object(spec)
        started = time.perf_counter()
        report = check_machine(machine, invariants=invariants, max_examples=args.examples, seed=0)
        wall = time.perf_counter() - started
        worst = max(worst, wall)
        total_steps += report.steps
        total_wall += wall
        ok = "yes" if wall < 10 else "NO"
        print(
            f"{name:<16} {report.examples:>8} {report.runs:>6} {report.steps:>7} {wall:>7.2f} "
            f"{report.examples / wall:>11.0f} {report.steps / wall:>8.0f}  {ok:>6}"
        )
    print()
    print(
        f"all machines: {total_steps} steps in {total_wall:.1f} s = {total_steps / total_wall:.0f} steps/s (target ≥ 1000)"
    )
    print(f"slowest machine: {worst:.1f} s for {args.examples} examples (target < 10 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
