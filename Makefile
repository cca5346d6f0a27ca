# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := true

.PHONY: install run test test-all bench upscale-demo serve package
.PHONY: prefect-ui retrain-schedule retrain-deploy retrain-worker retrain-now mlflow-server

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: fetch -> validate -> patches -> train -> evaluate -> export_onnx on the embedded data.
run: install
	dvc repro
	dvc metrics show

## The test suite (fast; `make test-all` adds the tests marked slow).
test: install
	$(PY) -m pytest -m "not slow" -q

test-all: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench_espcn.py
	$(PY) benchmarks/bench_tiling.py
	$(PY) benchmarks/bench_video.py

upscale-demo: install
	srstyle upscale data/raw/val/chelsea.png chelsea_x3.png --model data/onnx/espcn_x3/espcn_x3.onnx

## Serve the champions of the MLflow registry filled by `make run` (SR and style) on 127.0.0.1:3000;
## the demo page is http://127.0.0.1:3000/demo/
serve: install
	BENTOML_DO_NOT_TRACK=true bentoml serve srstyle.serving.service:SRStyle --host 127.0.0.1 --port 3000

## Build a Bento that runs by itself: the champion ONNX files, and requirements pinned from constraints.txt
## (only what the service imports: no torch). Offline. tests/test_bento.py runs the same three commands.
package: install
	srstyle export-champions --out serve_models
	$(PY) -m srstyle.serving.package --constraints constraints.txt --out build/serve-requirements.txt
	BENTOML_DO_NOT_TRACK=true bentoml build -f bentofile.yaml

## --- Orchestration (pipelines/README.md). Everything listens on 127.0.0.1; nothing reaches outside. ---
PREFECT_PORT ?= 4200
MLFLOW_PORT  ?= 5000
PREFECT_POOL ?= srstyle-process
PREFECT_ENV  := PREFECT_HOME=$(CURDIR)/.prefect PREFECT_SERVER_ANALYTICS_ENABLED=false \
                PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api

## Prefect server + UI on http://127.0.0.1:4200 (state in .prefect/, git-ignored).
prefect-ui: install
	$(PREFECT_ENV) prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

## Serve the weekly (cron) and on-demand `retrain` deployments from this process (needs `make prefect-ui`).
retrain-schedule: install
	$(PREFECT_ENV) $(PY) -m pipelines.deployments serve

## Or: register them in a process work pool, and run a worker that picks their runs up.
retrain-deploy: install
	$(PREFECT_ENV) $(PY) -m pipelines.deployments deploy --pool $(PREFECT_POOL)

retrain-worker: install
	$(PREFECT_ENV) prefect worker start --pool $(PREFECT_POOL)

## One on-demand run through the server (shows up in the UI).
retrain-now: install
	$(PREFECT_ENV) prefect deployment run retrain/on-demand --watch

## MLflow tracking server on http://127.0.0.1:5000 over the project's SQLite store; point clients at it with
## MLFLOW_TRACKING_URI=http://127.0.0.1:5000 (a team server: Postgres + object store, pipelines/README.md).
mlflow-server: install
	mlflow server --backend-store-uri sqlite:///$(CURDIR)/mlruns.db --artifacts-destination $(CURDIR)/mlartifacts \
	  --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1
