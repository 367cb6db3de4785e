# Quark — the two commands that matter: `make run` and `make test`.
# Everything installs itself into .venv with the versions pinned in requirements/constraints.txt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PACKAGES := shared $(wildcard plugin-hub) $(patsubst %/pyproject.toml,%,$(wildcard services/*/pyproject.toml))
PYPROJECTS := $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
PYTEST_ARGS ?=

.PHONY: install run fleet test test-fast lint format bench clean help

help:
	@echo "make run      start the whole station in one process on http://127.0.0.1:8000 (data in .quark/)"
	@echo "make fleet    start one process per module (quark dev --fleet)"
	@echo "make test     run the whole test suite (starts its own PostgreSQL, Valkey and NATS)"
	@echo "make lint     ruff + mypy"
	@echo "make bench    run the benchmarks in bench/ (BENCH=blog for one, BENCH_ARGS=--quick)"
	@echo "make clean    remove .venv and .quark"

install: $(STAMP)

$(STAMP): requirements/constraints.txt requirements/dev.txt $(PYPROJECTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements/constraints.txt -r requirements/dev.txt $(foreach p,$(PACKAGES),-e ./$(p))
	@touch $(STAMP)

run: install
	$(BIN)/quark dev

fleet: install
	$(BIN)/quark dev --fleet

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy shared/quark_sdk $(wildcard plugin-hub/quark_hub) $(filter-out %.egg-info,$(wildcard services/*/quark_*))

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark in bench/ (BENCH=blog for one, BENCH_ARGS=--quick for a smoke run); each prints ratios
# against a baseline it measures in the same run.
BENCH ?= $(basename $(notdir $(filter-out bench/__init__.py,$(wildcard bench/*.py))))
BENCH_ARGS ?=
bench: install
	@set -e; for b in $(BENCH); do echo "== bench/$$b.py $(BENCH_ARGS)"; $(BIN)/python bench/$$b.py $(BENCH_ARGS); done

clean:
	rm -rf $(VENV) .quark

# The Docker fleet (docker-compose.yml; docs/operations.md). `./quark-manager.sh` does the same with health waits.
.PHONY: up down logs ps
up:
	docker compose up -d --wait

down:
	docker compose down

logs:
	docker compose logs --tail=200 -f

ps:
	docker compose ps --all
