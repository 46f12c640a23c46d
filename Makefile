# Two commands a newcomer needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-stamp

.PHONY: setup demo test lint dev sandbox bench bench-full bench-scale clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

# Debian programs some tests drive (Chromium, PostgreSQL): installed with apt-get when root and
# missing; otherwise one line says which tests will be skipped (see bulk_pipeline_tests/programs.py).
setup: $(INSTALLED)
	@$(BIN)/python -m bulk_pipeline_tests.programs

demo: setup
	$(BIN)/bulk-pipeline import data/samples/contacts_messy.csv
	$(BIN)/bulk-pipeline import data/samples/companies.xlsx
	@echo
	@echo "Imports: .venv/bin/bulk-pipeline status (and report <import id>)"
	@echo "Sandbox: .venv/bin/bulk-pipeline sandbox stop stops the sandbox CRM kept for later imports"
	@echo "UI:      make dev, then open http://127.0.0.1:3000"

lint: setup
	$(BIN)/ruff check bulk_pipeline bulk_pipeline_tests bench
	$(BIN)/ruff format --check bulk_pipeline bulk_pipeline_tests bench
	$(BIN)/mypy bulk_pipeline

test: setup lint
	$(BIN)/pytest

dev: setup
	$(BIN)/bulk-pipeline dev

sandbox: setup
	$(BIN)/bulk-pipeline sandbox

# Benchmarks print figures and rewrite BENCHMARKS.md; the bench extra brings the dlt peer.
BENCH_INSTALLED := $(VENV)/.bench-installed-stamp

$(BENCH_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_INSTALLED)

bench: $(BENCH_INSTALLED)
	$(BIN)/python -m bench.run

bench-full: $(BENCH_INSTALLED)
	$(BIN)/python -m bench.run --full

# Throughput by number of CRM accounts on one PostgreSQL deployment (needs Debian's postgresql).
bench-scale: setup
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV)
