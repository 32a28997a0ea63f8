# Every target installs into .venv first if needed. ARGS passes Hydra overrides:
#   make train ARGS="model.distance=l2 loss=contrastive"
VENV    ?= .venv
PYTHON  ?= $(shell command -v python3.11 || command -v python3)
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
STORE   := sqlite:///$(CURDIR)/mlruns/mlflow.db
HOST    ?= 127.0.0.1
UI_PORT ?= 5000
ARGS    ?=
# `mlflow models serve --env-manager local` and friends start tools (uvicorn) from PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup train tune report test test-fast ui clean

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

test: setup
	$(PY) -m pytest -q --timeout=900 $(ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(ARGS)

ui: setup
	@mkdir -p mlruns
	$(VENV)/bin/mlflow ui --backend-store-uri $(STORE) --host $(HOST) --port $(UI_PORT)

clean:
	rm -rf experiments mlruns .pytest_cache
