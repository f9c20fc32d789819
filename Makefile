# Two commands for a fresh clone: `make run` (install, start the stack, run the demo) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test bench chaos lint lock clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv

install: $(BIN)/uv
	VIRTUAL_ENV=$(VENV) $(BIN)/uv sync --frozen --all-extras --active --compile-bytecode
	@# The project is installed editable: its own modules are compiled here too, so that a process started
	@# where PYTHONDONTWRITEBYTECODE is set (or the tree is read-only) does not compile them at every start,
	@# nor the workflow sandbox at every new run.
	$(BIN)/python -m compileall -q -j 0 agents api approvals cli countersign evals tools workers bench

run: install
	$(BIN)/countersign dev --demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest
	$(BIN)/countersign eval --all --check --no-progress

# Countersign's default stack against a bare Temporal workflow on the same server (ratios; see README).
bench: install
	$(BIN)/python -m bench.bench

# Faults injected into a running stack (worker kills, Temporal restart, database outage, decision races,
# Temporal down) on SQLite and PostgreSQL, 100 gated runs each; prints the invariants as figures.
chaos: install
	$(BIN)/python -m chaos --backend both --runs 100 --kills 10 --decisions 50

lock: $(BIN)/uv
	$(BIN)/uv lock

clean:
	rm -rf $(VENV) .countersign
