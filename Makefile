# `make demo` and `make test` bootstrap .venv themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
PACKAGES := packages/panoptic-eval packages/panoptic-ops packages/panoptic-core packages/panoptic-models
STAMP := $(VENV)/.installed
# The compiled ops library, rebuilt (incrementally, by ninja) whenever a source under csrc/ changes.
OPS_LIB := packages/panoptic-ops/src/panoptic_ops/_C.so
CSRC := $(shell find csrc -type f 2>/dev/null)

.PHONY: demo demo-data test lint bench venv ops clean dist dist-build

venv: $(STAMP) $(OPS_LIB)

ops: $(OPS_LIB)

$(STAMP): requirements/dev.txt $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -r requirements/dev.txt
	$(PIP) install -q --no-build-isolation $(foreach p,$(PACKAGES),-e $(p))
	touch $@

$(OPS_LIB): $(STAMP) $(CSRC) packages/panoptic-ops/hatch_build.py
	$(PIP) install -q --no-build-isolation --no-deps -e packages/panoptic-ops
	touch $@

# Release artifacts (docs/releasing.md): sdist + wheel of each package into $(DIST). The pure
# packages are built by `hatch build`; panoptic-ops' sdist too, and its wheel is then built from
# that sdist alone, copied into an empty folder, against the installed torch (as users build it),
# which proves the sdist is self-contained. Set PANOPTIC_OPS_CUDA=1 for a CUDA wheel.
DIST ?= dist
dist: $(STAMP)
	$(MAKE) --no-print-directory dist-build

dist-build:
	rm -rf $(DIST) && mkdir -p $(DIST)
	set -e; for p in packages/panoptic-eval packages/panoptic-core packages/panoptic-models; do \
		(cd $$p && $(abspath $(VENV))/bin/hatch build -t sdist -t wheel $(abspath $(DIST))); done
	cd packages/panoptic-ops && $(abspath $(VENV))/bin/hatch build -t sdist $(abspath $(DIST))
	set -e; tmp=$$(mktemp -d); cp $(DIST)/panoptic_ops-*.tar.gz $$tmp/; \
		$(PIP) wheel -q --no-deps --no-build-isolation $$tmp/panoptic_ops-*.tar.gz -w $(DIST); rm -rf $$tmp
	ls -l $(DIST)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Two pytest workers of one thread each (the slow end-to-end tests spread over both cores; torch
# processes with several threads each would spin-wait on one another).
TEST_WORKERS ?= 2
test: $(STAMP) $(OPS_LIB) lint
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

bench: $(STAMP) $(OPS_LIB)
	$(PY) -m pytest benchmarks -q -p no:randomly --benchmark-columns=min,median,mean,rounds -o python_files="bench_*.py"

# The main job: train METHOD on the synthetic dataset (written on first use into build/synthetic)
# on the CPU, evaluate it on synthetic val (PQ table, outputs/demo/metrics.json, overlays in
# outputs/demo/vis/), then score the method's oracle on the same images for comparison.
METHOD ?= panoptic_deeplab
DEMO_DIR := outputs/demo

demo: $(STAMP) $(OPS_LIB)
	rm -rf $(DEMO_DIR)
	$(PY) examples/train.py --config examples/configs/$(METHOD)_synthetic.yaml --output-dir $(DEMO_DIR)
	$(PY) examples/oracle.py --method $(METHOD) --preset synthetic --output $(DEMO_DIR)/oracle.json \
		--gt-json build/synthetic/annotations/panoptic_val.json --gt-folder build/synthetic/panoptic_val

# The earlier demos: data pipeline and target generators; the evaluator on the COCO sample.
demo-data: $(STAMP) $(OPS_LIB)
	$(PY) examples/data_demo.py
	$(PY) examples/evaluate_demo.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks packages/*/build $(OPS_LIB) outputs
