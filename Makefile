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

## Serve the champion models on 127.0.0.1:3000 (from the MLflow registry filled by `make run`).
serve: install
	bentoml serve srstyle.serving.service:SRService --host 127.0.0.1 --port 3000

## Build a Bento with the current champions (offline).
package: install
	srstyle export-champions --out serve_models
	BENTOML_DO_NOT_TRACK=true bentoml build -f bentofile.yaml
