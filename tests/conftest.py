"""Shared fixtures: every `@pytest.mark.anyio` test runs on asyncio and on trio.

Hypothesis profiles, chosen by the environment variable HYPOTHESIS_PROFILE: `ci` (the default:
derandomized, so a run is reproducible; no deadline, CI hosts are noisy), `nightly` (`make
nightly`: many random examples), `mutation` (`make mutation`: few examples, each mutant runs
the tests again; stamina's retries keep their attempts but skip their backoff waits, which are
wall-clock time only). A test's own `@settings(max_examples=...)` takes precedence over the profile.
"""

from __future__ import annotations

import os

import pytest
import stamina
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=100)
settings.register_profile("nightly", derandomize=False, deadline=None, max_examples=2000)
settings.register_profile("mutation", derandomize=True, deadline=None, max_examples=20, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
if os.environ.get("HYPOTHESIS_PROFILE") == "mutation":
    stamina.set_testing(True, attempts=1_000, cap=True)  # every configured attempt, no waiting


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


from store_helpers import postgres_dsn, store  # noqa: E402, F401  (session fixture: a real PostgreSQL server)
