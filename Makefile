# IRMI: `make run` starts everything, `make test` runs every check. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
# The serving extras; the `train` extra (TensorFlow) is only installed by the train-* targets.
RUN_EXTRAS := --extra tb --extra bc --extra gateway
TEST_EXTRAS := $(RUN_EXTRAS) --extra dev

.PHONY: help run test lint typecheck pytest venv venv-test venv-train train-chest \
        train-mammo bench load openapi clean

help:
	@echo "make run    - install what is missing, start gateway :8000, tb :8001, bc :8002"
	@echo "make test   - install what is missing, lint, type-check and run the test suite"
	@echo "make train-chest / train-mammo - retrain the committed models (TensorFlow, CPU)"
	@echo "make bench  - benchmarks (prints tables, writes bench/results/*.json)"
	@echo "make load   - 200 concurrent uploads against the running system (loopback)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# --inexact keeps packages of other extras (e.g. TensorFlow) a previous target installed.
venv: $(UV)
	$(UV) sync --frozen --inexact --python $(PYTHON) $(RUN_EXTRAS)

venv-test: $(UV)
	$(UV) sync --frozen --inexact --python $(PYTHON) $(TEST_EXTRAS)

venv-train: $(UV)
	$(UV) sync --frozen --inexact --python $(PYTHON) $(TEST_EXTRAS) --extra train

run: venv
	$(PY) scripts/run_all.py

lint: venv-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv-test
	$(VENV)/bin/mypy shared gateway tb_service bc_service

# pytest exits 5 when it collected nothing: that is a failure of the suite, said loudly.
pytest: venv-test
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test: lint typecheck pytest

train-chest: venv-train
	$(PY) -m tb_service.train all

train-mammo: venv-train
	$(PY) -m bc_service.train all

bench: venv-test
	$(PY) -m bench

load: venv-test
	$(PY) -m tests.stress.load

openapi: venv-test
	$(PY) -m gateway.openapi_export

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
