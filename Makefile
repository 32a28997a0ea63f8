# Every target installs into .venv first if needed. ARGS passes Hydra overrides:
#   make train ARGS="model.distance=l2 loss=contrastive"
VENV    ?= .venv
PYTHON  ?= $(shell command -v python3.11 || command -v python3)
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
STORE   := sqlite:///$(CURDIR)/mlruns/mlflow.db
HOST    ?= 127.0.0.1
UI_PORT ?= 5000
SERVE_PORT ?= 5001
# What make serve serves: make serve DATA=mrpc-minilm, or MODEL=runs:/<id>/model
DATA    ?= digits
MODEL   ?= models:/siamese-$(DATA)@champion
ARGS    ?=
# `mlflow models serve --env-manager local` and friends start tools (uvicorn) from PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup train tune report promote predict serve bench bench-quick test test-fast ui server clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

train: setup
	$(PY) -m siamese.train $(ARGS)

tune: setup
	$(PY) -m siamese.tune $(ARGS)

report: setup
	$(PY) -m siamese.report $(ARGS)

promote: setup
	$(PY) -m siamese.promote $(ARGS)

predict: setup
	$(PY) -m siamese.predict $(ARGS)

# The registry lives in the local store; uvicorn is found on PATH (.venv/bin, exported above).
# The model is checked first (its MLmodel and bundle.json, Keras safe mode): a model siamese did
# not log is refused before the server would run its code.
serve: setup
	MLFLOW_TRACKING_URI=$(STORE) $(PY) -m siamese.registry $(MODEL)
	MLFLOW_TRACKING_URI=$(STORE) $(VENV)/bin/mlflow models serve -m $(MODEL) --env-manager local \
	  --host $(HOST) --port $(SERVE_PORT)

bench: setup
	$(PY) -m benchmarks.run $(ARGS)

bench-quick: setup
	$(PY) -m benchmarks.run --quick $(ARGS)

test: setup
	$(PY) -m pytest -q --timeout=900 $(ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(ARGS)

ui: setup
	@mkdir -p mlruns
	@echo "runs tables (MLflow 3.17 opens on its GenAI view without ?workflowType=machine_learning):"
	@$(PY) -m siamese.runmeta $(STORE) http://$(HOST):$(UI_PORT)
	$(VENV)/bin/mlflow ui --backend-store-uri $(STORE) --host $(HOST) --port $(UI_PORT)

# A tracking server over the project's store, for workers of a study (tracking.uri=http://HOST:5000)
# and parallel jobs; artifacts are served too (a cluster's workers need no shared artifact folder).
# Bound to 127.0.0.1 unless HOST= says otherwise (it has no authentication).
server: setup
	@mkdir -p mlruns/artifacts
	$(VENV)/bin/mlflow server --backend-store-uri $(STORE) --artifacts-destination $(CURDIR)/mlruns/artifacts \
	  --host $(HOST) --port $(UI_PORT)

clean:
	rm -rf experiments mlruns .pytest_cache .cache
