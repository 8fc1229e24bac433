"""Without psycopg the PostgreSQL tests skip with the reason — outside CI; in CI (`CI=1`) a
missing PostgreSQL fails the run instead of passing silently (issue 13, item 19)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

CONFTEST = f"""
import sys
sys.modules["psycopg"] = None  # as if psycopg were not installed: importing it raises ImportError
sys.path.insert(0, {str(TESTS)!r})
from store_helpers import postgres_dsn  # noqa: E402, F401
"""

TEST = """
def test_needs_postgres(postgres_dsn):
    assert postgres_dsn
"""


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_pg.py").write_text(TEST)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_without_psycopg_postgres_tests_skip_with_the_reason(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout and "psycopg is not installed" in done.stdout


@pytest.mark.parametrize("ci", ["1", "true"])
def test_in_ci_a_missing_psycopg_fails_the_run(tmp_path: Path, ci: str) -> None:
    done = run_pytest(tmp_path, ci)
    assert done.returncode != 0
    assert "PostgreSQL tests cannot run in CI: psycopg is not installed" in done.stdout
