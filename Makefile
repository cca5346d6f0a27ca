# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := true

.PHONY: install run report plots test test-fast test-integration test-all chromium bench upscale-demo serve package
.PHONY: prefect-ui retrain-schedule retrain-deploy retrain-worker retrain-now mlflow-server

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: every stage of dvc.yaml on the embedded data, then the results in a screenful
## (`srstyle report`; every metric: `dvc metrics show`, against the last commit: `dvc metrics diff`).
run: install
	dvc repro
	$(PY) -m srstyle.report

report: install
	$(PY) -m srstyle.report

## Every plot (training curves of all runs overlaid, comparison pictures) in one offline page:
## dvc_plots/index.html (the page inlines vega: .dvc/config `plots.html_template`).
plots: install
	dvc plots show

## Both test tiers (what CI runs). `make test-fast`: the unit tier (< 2 min), for the inner loop;
## `make test-integration`: real servers, `dvc repro`, flows, torchrun (tests/conftest.py).
test: install chromium
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

test-integration: install chromium
	$(PY) -m pytest -q -m integration

test-all: test

## The demo-page test drives Debian's /usr/bin/chromium: installed when missing (as root, with apt-get);
## anywhere else the test is skipped, with its reason.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (apt-get) for the demo-page test"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends chromium >/dev/null 2>&1) || \
	  echo "chromium could not be installed: the demo-page test will be skipped"; \
	else echo "no /usr/bin/chromium and no root apt-get: the demo-page test will be skipped"; fi

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
