# `make demo` and `make test` bootstrap .venv themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
PACKAGES := packages/panoptic-eval packages/panoptic-ops packages/panoptic-core packages/panoptic-models
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv clean

venv: $(STAMP)

$(STAMP): requirements/dev.txt $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -r requirements/dev.txt
	$(PIP) install -q --no-build-isolation $(foreach p,$(PACKAGES),-e $(p))
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pytest benchmarks -q -p no:randomly --benchmark-columns=min,median,mean,rounds -o python_files="bench_*.py"

demo: $(STAMP)
	$(PY) examples/evaluate_demo.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks
